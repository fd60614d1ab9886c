"""The Deep Compression paper's MNIST networks, quantization-aware (Brevitas).

- `LeNet300100`: 784-300-100-10 fully connected, 266,610 parameters.
- `LeNet5`: the Caffe LeNet-5 Deep Compression used: conv 20@5x5, max-pool, conv 50@5x5, max-pool,
  fc 500, fc 10; 431,080 parameters (1,720 KB in float32).

Both take widths as arguments so that structured pruning can rebuild them smaller.
"""

from __future__ import annotations

import torch
from torch import nn

from models.groups import ChannelGroup
from models.quant import QuantSpec, quant_conv, quant_input, quant_linear, quant_relu


class LeNet300100(nn.Module):
    """784-300-100-10 multilayer perceptron with quantized weights, activations and input."""

    def __init__(
        self,
        spec: QuantSpec,
        in_shape: tuple[int, int, int] = (1, 28, 28),
        num_classes: int = 10,
        hidden: tuple[int, int] = (300, 100),
    ):
        super().__init__()
        c, h, w = in_shape
        self.inp = quant_input(spec)
        self.ip1 = quant_linear(spec, c * h * w, hidden[0])
        self.relu1 = quant_relu(spec)
        self.ip2 = quant_linear(spec, hidden[0], hidden[1])
        self.relu2 = quant_relu(spec)
        self.ip3 = quant_linear(spec, hidden[1], num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.inp(torch.flatten(x, 1))
        x = self.relu1(self.ip1(x))
        x = self.relu2(self.ip2(x))
        return self.ip3(x)

    def channel_groups(self) -> list[ChannelGroup]:
        return [ChannelGroup("ip1", "ip1", (("ip2", 0, 1),)), ChannelGroup("ip2", "ip2", (("ip3", 0, 1),))]

    def arch_for_widths(self, widths: dict[str, int]) -> dict:
        return {"hidden": (widths.get("ip1", self.ip1.out_features), widths.get("ip2", self.ip2.out_features))}


class LeNet5(nn.Module):
    """Caffe LeNet-5 (conv 20@5x5, pool, conv 50@5x5, pool, fc 500, fc 10), quantization-aware."""

    def __init__(
        self,
        spec: QuantSpec,
        in_shape: tuple[int, int, int] = (1, 28, 28),
        num_classes: int = 10,
        conv: tuple[int, int] = (20, 50),
        fc: int = 500,
    ):
        super().__init__()
        c, h, w = in_shape
        self.inp = quant_input(spec)
        self.conv1 = quant_conv(spec, c, conv[0], 5)
        self.relu_c1 = quant_relu(spec)
        self.pool1 = nn.MaxPool2d(2)
        self.conv2 = quant_conv(spec, conv[0], conv[1], 5)
        self.relu_c2 = quant_relu(spec)
        self.pool2 = nn.MaxPool2d(2)
        side_h, side_w = ((h - 4) // 2 - 4) // 2, ((w - 4) // 2 - 4) // 2
        self.ip1 = quant_linear(spec, conv[1] * side_h * side_w, fc)
        self.relu1 = quant_relu(spec)
        self.ip2 = quant_linear(spec, fc, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.inp(x)
        x = self.pool1(self.relu_c1(self.conv1(x)))
        x = self.pool2(self.relu_c2(self.conv2(x)))
        x = torch.flatten(x, 1)
        x = self.relu1(self.ip1(x))
        return self.ip2(x)

    def channel_groups(self) -> list[ChannelGroup]:
        per_channel = self.ip1.in_features // self.conv2.out_channels
        return [
            ChannelGroup("conv1", "conv1", (("conv2", 0, 1),)),
            ChannelGroup("conv2", "conv2", (("ip1", 0, per_channel),)),
            ChannelGroup("ip1", "ip1", (("ip2", 0, 1),)),
        ]

    def arch_for_widths(self, widths: dict[str, int]) -> dict:
        return {
            "conv": (widths.get("conv1", self.conv1.out_channels), widths.get("conv2", self.conv2.out_channels)),
            "fc": widths.get("ip1", self.ip1.out_features),
        }
