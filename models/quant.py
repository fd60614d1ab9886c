"""Brevitas quantizer presets shared by every network, chosen so that hls4ml's C simulation is bit-exact.

Rules (measured, see ../shared/TOOLCHAIN.md):
- power-of-two (fixed-point) scales for weights, activations and the input: hls4ml's scale-moving pass
  mishandles float scales on a Fire module's fork;
- biases quantized to 32-bit integers at scale = input scale x weight scale (`Int32Bias`), so hls4ml's
  fixed-point bias type holds them exactly;
- the input is quantized by the network itself (an unsigned or signed 8-bit fixed-point identity) and
  the C simulation is fed those already-quantized values.

`QuantSpec` is the part of the build config these presets read.
"""

from __future__ import annotations

from dataclasses import dataclass

import brevitas.nn as qnn
from brevitas.core.scaling import ScalingImplType
from brevitas.quant import (
    Int8ActPerTensorFixedPoint,
    Int8WeightPerTensorFixedPoint,
    Int32Bias,
    Uint8ActPerTensorFixedPoint,
)
from brevitas.quant.fixed_point import Uint8ActPerTensorFixedPointMaxInit
from torch import nn


@dataclass(frozen=True)
class QuantSpec:
    """Bit widths of the quantized network. Weights 5-bit by default (Deep Compression's FC width).

    `conv_weight_bits` / `fc_weight_bits` override `weight_bits` for conv or fully connected layers
    (Deep Compression shares conv weights on 8 bits and FC weights on 5). `enabled=False` builds the
    float twin of a network (plain torch layers, same parameter names) for float pre-training.
    """

    weight_bits: int = 5
    conv_weight_bits: int | None = None
    fc_weight_bits: int | None = None
    act_bits: int = 8
    input_bits: int = 8
    input_signed: bool = False
    input_max: float = 1.0
    enabled: bool = True

    def bits_for(self, kind: str) -> int:
        """Weight bits of a layer kind, "conv" or "fc"."""
        override = self.conv_weight_bits if kind == "conv" else self.fc_weight_bits
        return override if override is not None else self.weight_bits


def weight_quant(bits: int) -> type:
    """Narrow-range signed per-tensor weight quantizer with a power-of-two scale from max |w|."""
    return type(f"Int{bits}WeightPerTensorFixedPoint", (Int8WeightPerTensorFixedPoint,), {"bit_width": bits})


def act_quant(bits: int, signed: bool = False) -> type:
    """Per-tensor activation quantizer with a learned power-of-two scale (unsigned after ReLU)."""
    base = Int8ActPerTensorFixedPoint if signed else Uint8ActPerTensorFixedPoint
    return type(f"{'Int' if signed else 'Uint'}{bits}ActPerTensorFixedPoint", (base,), {"bit_width": bits})


def input_quant(spec: QuantSpec) -> type:
    """Constant power-of-two input quantizer covering [0, input_max) or [-input_max, input_max).

    The scale is fixed (not learned): the data range is known, and a constant input grid lets the
    data pipeline, the C simulation test bench and the board driver all quantize inputs the same way.
    """
    attrs = {
        "bit_width": spec.input_bits,
        "scaling_impl_type": ScalingImplType.CONST,
        "scaling_init": spec.input_max,
        "max_val": spec.input_max,
    }
    if spec.input_signed:
        attrs["min_val"] = -spec.input_max
        base = Int8ActPerTensorFixedPoint
    else:
        base = Uint8ActPerTensorFixedPointMaxInit
    return type("InputQuant", (base,), attrs)


def quant_input(spec: QuantSpec) -> nn.Module:
    if not spec.enabled:
        return nn.Identity()
    return qnn.QuantIdentity(act_quant=input_quant(spec), return_quant_tensor=True)


def quant_relu(spec: QuantSpec) -> nn.Module:
    if not spec.enabled:
        return nn.ReLU()
    return qnn.QuantReLU(act_quant=act_quant(spec.act_bits), return_quant_tensor=True)


def quant_conv(spec: QuantSpec, cin: int, cout: int, k: int, padding: int = 0, stride: int = 1) -> nn.Module:
    if not spec.enabled:
        return nn.Conv2d(cin, cout, k, stride=stride, padding=padding, bias=True)
    return qnn.QuantConv2d(
        cin,
        cout,
        k,
        stride=stride,
        padding=padding,
        bias=True,
        weight_quant=weight_quant(spec.bits_for("conv")),
        bias_quant=Int32Bias,
        return_quant_tensor=False,
    )


def quant_linear(spec: QuantSpec, fin: int, fout: int) -> nn.Module:
    if not spec.enabled:
        return nn.Linear(fin, fout, bias=True)
    return qnn.QuantLinear(
        fin,
        fout,
        bias=True,
        weight_quant=weight_quant(spec.bits_for("fc")),
        bias_quant=Int32Bias,
        return_quant_tensor=False,
    )
