"""The attacker: an atrous (dilated) CNN that outputs a perturbation in (0, 1).

At width 1: four 5x5 convolutions without bias (64, 128, 64, 1 channels; dilation 1, 2, 4, 8;
padding keeping the size), batch norm after each, ReLU, and a sigmoid after the last.
413,314 parameters; 19.7 GFLOP (multiply-adds x 2) forward per (1, 373, 64) input, so about
60 GFLOP per sample per training step (forward and backward).

The last batch norm's bias starts at ``logit(eta_init)``, so that the perturbation starts near
zero. Why: in training mode the batch mean of the last pre-sigmoid map *is* that bias, and Adam
moves it by about the learning rate per step; from PyTorch's default bias of 0 (eta = 0.5) the
paper's schedule cannot bring the mean of eta below about 0.3 even on the distortion term alone,
and every attack becomes a loud offset shared by all inputs. Same architecture, same parameters.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from trainables.models import scaled


class AtrousAttacker(nn.Module):
    def __init__(self, in_channels: int = 1, width: float = 1.0, eta_init: float = 0.01) -> None:
        super().__init__()
        if not 0 < eta_init < 1:
            raise ValueError(f"eta_init must be in (0, 1), got {eta_init}")
        channels = [in_channels, scaled(64, width), scaled(128, width), scaled(64, width),
                    in_channels]
        layers: list[nn.Module] = []
        for i, dilation in enumerate((1, 2, 4, 8)):
            layers += [nn.Conv2d(channels[i], channels[i + 1], 5, padding=2 * dilation,
                                 dilation=dilation, bias=False),
                       nn.BatchNorm2d(channels[i + 1]),
                       nn.ReLU(inplace=True) if i < 3 else nn.Sigmoid()]
        self.layers = nn.Sequential(*layers)
        last_norm = self.layers[-2]
        nn.init.constant_(last_norm.bias, math.log(eta_init / (1 - eta_init)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` (B, C, T, F) -> perturbation ``eta`` (B, C, T, F) in (0, 1)."""
        return self.layers(x)
