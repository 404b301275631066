"""A frozen defence with its batch norms folded into the convolutions before them.

In eval mode a batch norm is a fixed per-channel affine map, so a convolution followed by one is a
single convolution with rescaled weights and a shifted bias: the same function, to rounding, one
layer less (a pass over every activation map saved). An attack trial runs its defences thousands of
times (every training step goes forward and back through them, every evaluation forward twice): on
this project's 2-core CPU, folding made a width-0.125 defence's forward and backward at batch 32
30-40 % faster (VGG-16 28 -> 17 ms, ResNet-50 25 -> 18 ms) and its evaluation forward at 128 8-23 %
faster, and the default run's attack trials took 690 trial-seconds instead of 904. Under bf16 the
folded defence is as close to the fp32 one as the unfolded (on the default run's trained defences:
the same predictions, the input gradient's cosine with fp32's 0.980-0.999 against 0.977-0.999).
"""

from __future__ import annotations

from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval


def fold_batch_norm(model: nn.Module) -> nn.Module:
    """Fold, in place, every ``BatchNorm2d`` that directly follows a ``Conv2d`` inside an
    ``nn.Sequential`` (where order is data flow) into that convolution; the batch norm becomes
    an ``nn.Identity``. ``model`` is put in eval mode, which it must stay: call this on a loaded,
    frozen defence, never on a model that trains (its batch norm would stop learning) or whose
    state dict is saved afterwards (the keys change). Returns ``model``."""
    model.eval()
    for parent in model.modules():
        if not isinstance(parent, nn.Sequential):
            continue
        names = list(parent._modules)
        for conv_name, norm_name in zip(names, names[1:]):
            conv, norm = parent._modules[conv_name], parent._modules[norm_name]
            if isinstance(conv, nn.Conv2d) and isinstance(norm, nn.BatchNorm2d) and \
                    norm.track_running_stats:
                parent._modules[conv_name] = fuse_conv_bn_eval(conv, norm)
                parent._modules[norm_name] = nn.Identity()
    return model
