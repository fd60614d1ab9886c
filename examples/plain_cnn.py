"""A plain float PyTorch CNN (no Brevitas): the flow quantizes it itself (README, "Your own network").

    python flows/build.py examples.plain_cnn:net --board pynq-z2 --data-dir ../shared/data --epochs 3

Conv 16@3x3 + BatchNorm + ReLU, max-pool, conv 32@3x3 + BatchNorm + ReLU, max-pool, fc to the classes.
"""

from __future__ import annotations

import torch
from torch import nn


class PlainCNN(nn.Module):
    """Written as anyone would: torch layers, `torch.relu`, `torch.flatten`; nothing of the flow's."""

    def __init__(self, in_channels: int = 1, num_classes: int = 10, side: int = 28, width: int = 16):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, width, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, 2 * width, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(2 * width)
        self.pool = nn.MaxPool2d(2)
        self.fc = nn.Linear(2 * width * (side // 4) ** 2, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(torch.relu(self.bn1(self.conv1(x))))
        x = self.pool(torch.relu(self.bn2(self.conv2(x))))
        return self.fc(torch.flatten(x, 1))


def net(quant, in_shape, num_classes, arch):
    """The entry point (`examples.plain_cnn:net`): the flow's builder signature; `quant` is not used."""
    return PlainCNN(in_shape[0], num_classes, in_shape[1], **arch)
