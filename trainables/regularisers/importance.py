"""Parameter-importance estimates: the diagonal Fisher (two estimators) and MAS sensitivity.

Both Fisher estimators square gradients of the stage's attack loss, with the model in eval mode
(batch norm on its running statistics), so that a sample's gradient does not depend on the other
samples of its batch and the two estimators agree exactly at batch size 1.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn
from torch.func import functional_call, grad, vmap

from trainables.regularisers.base import StageLoss, Tensors


class _EvalMode:
    def __init__(self, model: nn.Module) -> None:
        self.model, self.was_training = model, model.training

    def __enter__(self) -> nn.Module:
        self.model.eval()
        return self.model

    def __exit__(self, *exc) -> None:
        self.model.train(self.was_training)


def per_sample_fisher(model: nn.Module, loss: StageLoss,
                      batches: Sequence[tuple[torch.Tensor, torch.Tensor]]) -> Tensors:
    """The textbook diagonal Fisher: the mean over samples of squared per-sample gradients,
    vectorised with ``torch.func.vmap`` (one backward pass per batch, not per sample)."""
    params = {n: p.detach() for n, p in model.named_parameters() if p.requires_grad}
    buffers = {n: b.detach() for n, b in model.named_buffers()}

    def sample_loss(p: Tensors, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        eta = functional_call(model, (p, buffers), (x[None],))
        return loss(eta, x[None], y[None])[0]

    per_sample_grads = vmap(grad(sample_loss), in_dims=(None, 0, 0))
    total = {n: torch.zeros_like(p) for n, p in params.items()}
    count = 0
    with _EvalMode(model), torch.autocast(params[next(iter(params))].device.type, enabled=False):
        for x, y in batches:
            grads = per_sample_grads(params, x.float(), y)
            for n in total:
                total[n] += grads[n].float().pow(2).sum(dim=0)
            count += len(x)
    return {n: t / count for n, t in total.items()}


def _mean_over_batches(model: nn.Module,
                       batches: Sequence[tuple[torch.Tensor, torch.Tensor]],
                       objective: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
                       transform: Callable[[torch.Tensor], torch.Tensor]) -> Tensors:
    """Mean over minibatches of ``transform(d objective(x, y) / d theta)``, in eval mode, fp32."""
    params = {n: p for n, p in model.named_parameters() if p.requires_grad}
    total = {n: torch.zeros_like(p) for n, p in params.items()}
    with _EvalMode(model), torch.autocast(next(iter(params.values())).device.type, enabled=False):
        for x, y in batches:
            grads = torch.autograd.grad(objective(x.float(), y), list(params.values()))
            for n, g in zip(params, grads):
                total[n] += transform(g)
    return {n: t / len(batches) for n, t in total.items()}


def minibatch_fisher(model: nn.Module, loss: StageLoss,
                     batches: Sequence[tuple[torch.Tensor, torch.Tensor]]) -> Tensors:
    """The released code's estimate: the mean over minibatches of the squared gradient of the
    minibatch's mean loss. Cheaper, but smaller than the Fisher by about the batch size when
    per-sample gradients disagree: a known pitfall, kept as an option for reproduction."""
    return _mean_over_batches(model, batches, lambda x, y: loss(model(x), x, y).mean(),
                              torch.square)


def output_sensitivity(model: nn.Module,
                       batches: Sequence[tuple[torch.Tensor, torch.Tensor]]) -> Tensors:
    """Memory Aware Synapses: the mean absolute gradient of the squared L2 norm of the model's
    output (here, the perturbation) per sample; needs no labels."""
    return _mean_over_batches(
        model, batches, lambda x, _: model(x).pow(2).flatten(1).sum(dim=1).mean(), torch.abs)


FISHER_ESTIMATORS = {"per_sample": per_sample_fisher, "minibatch": minibatch_fisher}
