"""Exact accumulator widths: the narrowest fixed-point types that can never overflow.

hls4ml's 'auto' precision sizes a layer's accumulator from the *bias* type Brevitas exports
(int32), giving 33-bit accumulators and 33-bit result streams between every convolution and its
activation. With the quantized weights and the input type known, the worst case is computable: for
an input range [x_min, x_max] and output channel o,

    acc_max(o) = b(o) + sum_i max(w_io * x_max, w_io * x_min)
    acc_min(o) = b(o) + sum_i min(w_io * x_max, w_io * x_min)

and every partial sum lies in [min(0, b, acc_min), max(0, b, acc_max)]. The product LSB is the input
LSB times the weight LSB, and the int32 bias sits on that grid too (Brevitas' Int32Bias scale is the
input scale times the weight scale). So `fixed<I+F, I>` with F = F_in + F_w fractional bits and I
integer bits covering that range represents every value exactly: the C simulation stays bit-exact
while the multiply-accumulate and the FIFOs shrink (about 33 -> 16-20 bits here).

`exact_accumulator(layer)` computes that type for one hls4ml conv/dense layer; the
`ExactAccumulators` pass (flows/hls_passes.py) applies it while hls4ml infers the types.
"""

from __future__ import annotations

import logging
import math
import re
from dataclasses import dataclass

import numpy as np

log = logging.getLogger(__name__)

_TYPE_RE = re.compile(r"^(u?)fixed<\s*(-?\d+)\s*,\s*(-?\d+)")


@dataclass(frozen=True)
class FixedType:
    signed: bool
    width: int
    integer: int  # integer bits, sign included for signed types

    @property
    def frac(self) -> int:
        return self.width - self.integer

    @property
    def max(self) -> float:
        return 2.0 ** (self.integer - (1 if self.signed else 0)) - 2.0**-self.frac

    @property
    def min(self) -> float:
        return -(2.0 ** (self.integer - 1)) if self.signed else 0.0

    def __str__(self) -> str:
        return f"{'' if self.signed else 'u'}fixed<{self.width},{self.integer}>"


def parse_fixed(text: str) -> FixedType | None:
    """'ufixed<8,0,RND_CONV,SAT,0>' -> FixedType(False, 8, 0); None for non-fixed types."""
    match = _TYPE_RE.match(str(text).replace("ap_", ""))
    if not match:
        return None
    return FixedType(signed=match.group(1) != "u", width=int(match.group(2)), integer=int(match.group(3)))


def exact_type(lo: float, hi: float, frac: int) -> FixedType:
    """The narrowest signed fixed type with `frac` fractional bits holding every value in [lo, hi]."""
    span = max(abs(lo), hi + 2.0**-frac, 2.0**-frac)
    integer = max(1, math.ceil(math.log2(span)) + 1)
    while -(2.0 ** (integer - 1)) > lo or 2.0 ** (integer - 1) - 2.0**-frac < hi:
        integer += 1
    return FixedType(True, integer + frac, integer)


def accumulator_bounds(weight: np.ndarray, bias: np.ndarray | None, x: FixedType) -> tuple[float, float]:
    """Worst-case [min, max] of every partial sum over all output channels (weights: ..., n_out)."""
    w = weight.reshape(-1, weight.shape[-1]).astype(np.float64)
    hi_terms = np.maximum(w * x.max, w * x.min)
    lo_terms = np.minimum(w * x.max, w * x.min)
    b = np.zeros(w.shape[1]) if bias is None else bias.reshape(-1).astype(np.float64)
    acc_hi = b + hi_terms.sum(axis=0)
    acc_lo = b + lo_terms.sum(axis=0)
    return float(min(0.0, b.min(), acc_lo.min())), float(max(0.0, b.max(), acc_hi.max()))


def exact_accumulator(layer) -> FixedType | None:
    """The exact accumulator type of an hls4ml conv/dense layer, or None to keep hls4ml's.

    Needs the layer's input, weight and accumulator types resolved. None when a type is not
    fixed-point, when the bias is off the product grid, or when hls4ml's accumulator is already as
    narrow."""
    x = parse_fixed(layer.get_input_variable().type.precision)
    w_type = parse_fixed(layer.weights["weight"].type.precision)
    if x is None or w_type is None:
        return None
    bias = layer.weights.get("bias")
    b_data = None if bias is None else np.asarray(bias.data, dtype=np.float64)
    w_data = np.asarray(layer.weights["weight"].data, dtype=np.float64)
    n_out = layer.get_attr("n_filt") or layer.get_attr("n_out") or (len(b_data) if b_data is not None else None)
    if n_out and w_data.shape[-1] != n_out and w_data.shape[0] == n_out:
        w_data = np.moveaxis(w_data, 0, -1)  # the Resource strategy stores weights output-major
    frac = x.frac + w_type.frac
    if b_data is not None:
        scaled = b_data * 2.0**frac
        if not np.all(scaled == np.round(scaled)):  # a bias off the product grid: keep hls4ml's types
            log.warning("%s: bias is not on the accumulator grid; keeping hls4ml's accumulator type", layer.name)
            return None
    lo, hi = accumulator_bounds(w_data, b_data, x)
    t = exact_type(lo, hi, frac)
    current = parse_fixed(layer.types["accum_t"].precision) if "accum_t" in layer.types else None
    if current is not None and current.width <= t.width:
        return None
    return t
