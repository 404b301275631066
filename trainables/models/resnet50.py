"""ResNet-50 defence: 7x7 stride-2 first conv on one channel, 3x3 stride-2 max-pool, bottleneck
blocks [3, 4, 6, 3], global average pool, linear 2048 to the classes. At width 1 and
(1, 373, 64): 23,516,103 parameters, 3.9 GFLOP forward."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from trainables.models import scaled


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, inputs: int, planes: int, stride: int) -> None:
        super().__init__()
        outputs = planes * self.expansion
        self.body = nn.Sequential(
            nn.Conv2d(inputs, planes, 1, bias=False), nn.BatchNorm2d(planes), nn.ReLU(inplace=True),
            nn.Conv2d(planes, planes, 3, stride=stride, padding=1, bias=False),
            nn.BatchNorm2d(planes), nn.ReLU(inplace=True),
            nn.Conv2d(planes, outputs, 1, bias=False), nn.BatchNorm2d(outputs))
        self.shortcut = (nn.Identity() if stride == 1 and inputs == outputs else nn.Sequential(
            nn.Conv2d(inputs, outputs, 1, stride=stride, bias=False), nn.BatchNorm2d(outputs)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.body(x) + self.shortcut(x))


class ResNet50(nn.Module):
    def __init__(self, in_channels: int = 1, num_classes: int = 7, width: float = 1.0) -> None:
        super().__init__()
        stem = scaled(64, width)
        self.stem = nn.Sequential(nn.Conv2d(in_channels, stem, 7, stride=2, padding=3, bias=False),
                                  nn.BatchNorm2d(stem), nn.ReLU(inplace=True),
                                  nn.MaxPool2d(3, stride=2, padding=1))
        layers: list[nn.Module] = []
        inputs = stem
        for index, (planes, blocks) in enumerate(((64, 3), (128, 4), (256, 6), (512, 3))):
            planes = scaled(planes, width)
            for block in range(blocks):
                stride = 2 if index > 0 and block == 0 else 1
                layers.append(Bottleneck(inputs, planes, stride))
                inputs = planes * Bottleneck.expansion
        self.layers = nn.Sequential(*layers)
        self.classifier = nn.Linear(inputs, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` (B, C, T, F) -> log-probabilities (B, num_classes)."""
        pooled = self.layers(self.stem(x)).mean(dim=(2, 3))
        return F.log_softmax(self.classifier(pooled), dim=1)
