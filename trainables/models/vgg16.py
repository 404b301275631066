"""VGG-16 defence as in the paper's released code: 13 conv 3x3 + BN + ReLU in blocks of 2, 2, 3,
3, 3 (64 to 512 channels) with 2x2 max-pools, global max-pool, linear to the classes (no
4096-unit layers). At width 1 and (1, 373, 64): 14,725,575 parameters, 14.5 GFLOP forward."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from trainables.models import scaled

BLOCKS = ((64, 2), (128, 2), (256, 3), (512, 3), (512, 3))


class VGG16(nn.Module):
    def __init__(self, in_channels: int = 1, num_classes: int = 7, width: float = 1.0) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        previous = in_channels
        for channels, repeats in BLOCKS:
            channels = scaled(channels, width)
            for _ in range(repeats):
                layers += [nn.Conv2d(previous, channels, 3, padding=1), nn.BatchNorm2d(channels),
                           nn.ReLU(inplace=True)]
                previous = channels
            layers.append(nn.MaxPool2d(2))
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(previous, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` (B, C, T, F) -> log-probabilities (B, num_classes)."""
        pooled = torch.amax(self.features(x), dim=(2, 3))
        return F.log_softmax(self.classifier(pooled), dim=1)
