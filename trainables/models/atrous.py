"""The attacker: an atrous (dilated) CNN that outputs a perturbation in (0, 1).

At width 1: four 5x5 convolutions without bias (64, 128, 64, 1 channels; dilation 1, 2, 4, 8;
padding keeping the size), batch norm after each, ReLU, and a sigmoid after the last.
413,314 parameters; 19.7 GFLOP (multiply-adds x 2) forward per (1, 373, 64) input, so about
60 GFLOP per sample per training step (forward and backward).
"""

from __future__ import annotations

import torch
from torch import nn

from trainables.models import register, scaled


@register("atrous")
class AtrousAttacker(nn.Module):
    def __init__(self, in_channels: int = 1, width: float = 1.0) -> None:
        super().__init__()
        channels = [in_channels, scaled(64, width), scaled(128, width), scaled(64, width),
                    in_channels]
        layers: list[nn.Module] = []
        for i, dilation in enumerate((1, 2, 4, 8)):
            layers += [nn.Conv2d(channels[i], channels[i + 1], 5, padding=2 * dilation,
                                 dilation=dilation, bias=False),
                       nn.BatchNorm2d(channels[i + 1]),
                       nn.ReLU(inplace=True) if i < 3 else nn.Sigmoid()]
        self.layers = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` (B, C, T, F) -> perturbation ``eta`` (B, C, T, F) in (0, 1)."""
        return self.layers(x)
