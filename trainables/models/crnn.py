"""CRNN defence, a held-out target of another kind than the three CNNs the attacks train on:
3 x [conv 3x3 (64, 128, 128), BN, ReLU, max-pool over frequency only (4, 4, 4)], then a
bidirectional GRU (128 per direction) over the frames, mean over time, linear to the classes.
Time keeps its full resolution, so the recurrent layer sees every frame. At width 1, 64 Mel
bands and 7 classes: 422,663 parameters."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from trainables.models import scaled


class CRNN(nn.Module):
    def __init__(self, in_channels: int = 1, num_classes: int = 7, width: float = 1.0) -> None:
        super().__init__()
        blocks: list[nn.Module] = []
        previous = in_channels
        for channels in (64, 128, 128):
            channels = scaled(channels, width)
            # ceil_mode: a band count that 4 does not divide (or a single band) still pools
            blocks += [nn.Conv2d(previous, channels, 3, padding=1), nn.BatchNorm2d(channels),
                       nn.ReLU(inplace=True), nn.MaxPool2d((1, 4), ceil_mode=True)]
            previous = channels
        self.features = nn.Sequential(*blocks)
        hidden = scaled(128, width)
        self.gru = nn.GRU(previous, hidden, batch_first=True, bidirectional=True)
        self.classifier = nn.Linear(2 * hidden, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` (B, C, T, F) -> log-probabilities (B, num_classes)."""
        maps = self.features(x)  # (B, C', T, F')
        # Frequency max-pooled away, time kept: one feature vector per frame.
        frames = torch.amax(maps, dim=3).transpose(1, 2).contiguous()  # (B, T, C')
        output, _ = self.gru(frames)
        return F.log_softmax(self.classifier(output.mean(dim=1)), dim=1)
