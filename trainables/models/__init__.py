"""One registry of models, built by name: ``build("resnet50", in_channels=1, num_classes=7)``.

Every model takes ``(B, in_channels, T, F)`` spectrograms and a ``width`` channel multiplier
(1.0 is the paper's size). Defences return log-softmax ``(B, num_classes)``; the attacker returns
a perturbation of its input's shape in (0, 1). ``MODELS`` is the only list of their names; a
model's module is imported when it is first built (``trainables.registry``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from trainables.registry import Entry

if TYPE_CHECKING:
    from torch import nn

MODELS: dict[str, Entry] = {
    "atrous": Entry("trainables.models.atrous:AtrousAttacker", role="attacker"),
    "universal": Entry("trainables.models.universal:UniversalPerturbation",
                       role="perturbation"),
    "cnn4": Entry("trainables.models.cnn4:CNN4", role="defence", label="CNN-4"),
    "vgg16": Entry("trainables.models.vgg16:VGG16", role="defence", label="VGG-16"),
    "resnet50": Entry("trainables.models.resnet50:ResNet50", role="defence", label="ResNet-50"),
    "crnn": Entry("trainables.models.crnn:CRNN", role="defence", label="CRNN"),
}


def names(role: str) -> list[str]:
    """The registered models of one role: ``defence``, ``attacker`` or ``perturbation``."""
    return [name for name, entry in MODELS.items() if entry.role == role]


def build(name: str, **options) -> "nn.Module":
    """Build the model registered as ``name``: the attackers ``atrous`` and ``universal``, the
    defences ``cnn4``, ``vgg16``, ``resnet50`` and ``crnn``."""
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; registered: {', '.join(MODELS)}")
    return MODELS[name].load()(**options)


def scaled(channels: int, width: float) -> int:
    """Channels after the width multiplier, at least one."""
    return max(1, round(channels * width))
