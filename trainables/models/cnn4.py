"""CNN-4 defence: 4 x [conv 5x5 (64, 128, 256, 512), BN, ReLU, 2x2 max-pool], global max-pool,
linear to the classes. At width 1 and (1, 373, 64): 4,308,871 parameters, 7.4 GFLOP forward."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from trainables.models import scaled


class CNN4(nn.Module):
    def __init__(self, in_channels: int = 1, num_classes: int = 7, width: float = 1.0) -> None:
        super().__init__()
        blocks: list[nn.Module] = []
        previous = in_channels
        for channels in (64, 128, 256, 512):
            channels = scaled(channels, width)
            blocks += [nn.Conv2d(previous, channels, 5, padding=2), nn.BatchNorm2d(channels),
                       nn.ReLU(inplace=True), nn.MaxPool2d(2)]
            previous = channels
        self.features = nn.Sequential(*blocks)
        self.classifier = nn.Linear(previous, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` (B, C, T, F) -> log-probabilities (B, num_classes)."""
        pooled = torch.amax(self.features(x), dim=(2, 3))
        return F.log_softmax(self.classifier(pooled), dim=1)
