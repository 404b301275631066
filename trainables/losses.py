"""The attack loss: alpha x C&W margin (averaged over the stage's defences) + (1 - alpha) x MSE."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


def cw_margin(log_probs: torch.Tensor, target: torch.Tensor, reduction: str = "none") -> torch.Tensor:
    """C&W margin ``max(z_true - max_{c != true} z_c, 0)`` on log-probabilities ``(B, C)``.

    Log-softmax values are all negative, so the true class is masked with -inf before taking the
    maximum over the others: masking with zero (a known bug in some attack libraries) would make
    the masked true class the maximum and the margin always zero.
    Returns ``(B,)`` with ``reduction="none"``, else its mean.
    """
    true = log_probs.gather(1, target[:, None]).squeeze(1)
    classes = torch.arange(log_probs.shape[1], device=log_probs.device)
    others = log_probs.masked_fill(classes == target[:, None], float("-inf"))
    margin = torch.clamp(true - others.amax(dim=1), min=0)
    if reduction == "none":
        return margin
    if reduction == "mean":
        return margin.mean()
    raise ValueError(f"reduction must be 'none' or 'mean', got {reduction!r}")


def attack_loss(eta: torch.Tensor, x: torch.Tensor, target: torch.Tensor,
                defences: Sequence[nn.Module], alpha: float, margin_scale: float = 1.0
                ) -> torch.Tensor:
    """Per-sample attack loss ``(B,)`` for perturbation ``eta`` on input ``x`` ``(B, 1, T, F)``.

    ``alpha * margin_scale * mean_d margin_d(x + eta) + (1 - alpha) * MSE(x + eta, x)``; the MSE
    of ``x + eta`` against ``x`` is the mean of ``eta ** 2`` per sample. Computed in fp32.
    ``margin_scale`` = the training batch size gives, averaged over a batch, the released code's
    balance (margin summed over the batch, MSE averaged); it is a constant, not this call's
    batch size, so that per-sample gradients (the Fisher) see the same objective.
    """
    adversarial = x + eta
    margins = torch.stack([cw_margin(d(adversarial).float(), target) for d in defences])
    mse = eta.float().pow(2).flatten(1).mean(dim=1)
    return alpha * margin_scale * margins.mean(dim=0) + (1 - alpha) * mse
