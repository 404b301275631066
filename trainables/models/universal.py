"""The universal perturbation: one learnt ``eta`` for every input, the input-independent
baseline of the atrous attacker.

A tensor of the input's shape, squashed by a sigmoid to (0, 1) like the attacker's output and
starting at ``eta_init`` everywhere. Trained by the same stage loop and loss as the attacker,
it shows what the attacker's dependence on its input buys."""

from __future__ import annotations

import math

import torch
from torch import nn


class UniversalPerturbation(nn.Module):
    def __init__(self, input_shape: tuple[int, int, int], eta_init: float = 0.01) -> None:
        """``input_shape``: ``(channels, frames, bands)`` of the inputs it perturbs."""
        super().__init__()
        if not 0 < eta_init < 1:
            raise ValueError(f"eta_init must be in (0, 1), got {eta_init}")
        self.input_shape = tuple(input_shape)
        self.logit = nn.Parameter(torch.full((1, *self.input_shape),
                                             math.log(eta_init / (1 - eta_init))))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` (B, C, T, F) -> the same ``eta`` (B, C, T, F) in (0, 1) for every input."""
        if tuple(x.shape[1:]) != self.input_shape:
            raise ValueError(f"the universal perturbation has shape {self.input_shape}, the "
                             f"input {tuple(x.shape[1:])}")
        return torch.sigmoid(self.logit).expand(x.shape[0], -1, -1, -1)
