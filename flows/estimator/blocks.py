"""Building blocks of the cost model: multipliers, pipeline depth, adder trees, memories and FIFOs.

``a``/``w`` are the input and weight widths, ``T_eff = T (1 - clock_uncertainty)`` the usable period.

* DSPs per product: tiles of the 25x18 DSP48E1 (27x18 on UltraScale+),
  ``ceil(max(a,w)/25) * ceil(min(a,w)/18)`` (`dsp_per_multiplier`). How HLS implements a kernel's
  products (`mult_class`): ``dsp``, ``lut`` (a shared LUT multiplier) or ``const`` (shift-add logic
  for a constant weight of the latency strategy).
* Multipliers hls4ml instantiates (`multiplier_count`): latency strategy ``multiplier_limit =
  ceil(n_in*n_out/RF) - n_zeros // RF``; resource strategy ``block_factor = ceil(n_in*n_out/RF)``.
* Kernel depth (`kernel_depth`): ``ceil((t_mult_ns + t_add_ns * ceil(log2(nnz/n_out + 1))) /
  (T_eff - t_reg_ns)) + depth_extra_cycles``. Adders are `acc_bits` wide; `tree_registers` counts the
  partial sums the ``depth - 1`` pipeline cuts hold.
* Memories (``BRAM36 = BRAM_18K / 2``, `bram18_for`): a BRAM_18K is 36 bits wide up to 512 words,
  18/9/4/2/1 up to 1K/2K/4K/8K/16K. A FIFO (`fifo_cost`) is an SRL up to ``fifo_srl_max_depth``
  words (or when the project binds it to SRL), else BRAM at ``fifo_bits_per_bram18`` bits per
  BRAM_18K up to 1K words (18 for Vivado HLS, 36 for Vitis).
"""

from __future__ import annotations

import math

from flows.estimator.calibration import DEFAULT_CALIBRATION, Calibration
from flows.estimator.spec import LayerSpec


def ceil_div(a: int, b: int) -> int:
    """``ceil(a / b)`` for integers."""
    return -(-a // b)


def clog2(x: float) -> int:
    """``ceil(log2(x))``, 0 for ``x <= 1``."""
    return int(math.ceil(math.log2(x))) if x > 1 else 0


def bram18_for(depth: int, width: int, bits_per_bram18_at_1k: int = 18) -> int:
    """BRAM_18K blocks for a ``depth x width`` memory (RAMB18 aspect ratios).

    Up to 512 words a RAMB18 is 36 bits wide when ``bits_per_bram18_at_1k`` is 36 (ROMs, Vitis FIFOs),
    otherwise 18 bits up to 1K words (Vivado HLS FIFOs); then 9/4/2/1 bits up to 2K/4K/8K/16K words.
    """
    if depth <= 0 or width <= 0:
        return 0
    if depth <= 512:
        per = bits_per_bram18_at_1k
    elif depth <= 1024:
        per = 18
    elif depth <= 2048:
        per = 9
    elif depth <= 4096:
        per = 4
    elif depth <= 8192:
        per = 2
    else:
        return ceil_div(depth, 16384) * width
    return ceil_div(width, per)


def dsp_per_multiplier(a_bits: int, b_bits: int, calib: Calibration = DEFAULT_CALIBRATION) -> int:
    """DSP slices for one ``a x b`` product: tiles of the ``dsp_a_bits x dsp_b_bits`` multiplier."""
    hi, lo = max(a_bits, b_bits), min(a_bits, b_bits)
    return ceil_div(hi, calib.dsp_a_bits) * ceil_div(lo, calib.dsp_b_bits)


def mult_class(spec: LayerSpec, calib: Calibration) -> str:
    """How HLS implements the kernel's products: "dsp", "lut" (shared LUT multiplier) or "const" (shift-add)."""
    a, w = spec.input_bits, spec.weight_bits
    if spec.mult_impl == "dsp":
        return "dsp"
    if spec.mult_impl == "fabric":
        return "lut"
    narrow = max(a, w) <= calib.lut_mult_max_bits or min(a, w) <= 3
    if spec.strategy == "latency":
        if w <= calib.const_lut_weight_bits or narrow:
            return "const"
        return "dsp"
    return "lut" if narrow else "dsp"


def multiplier_count(spec: LayerSpec) -> int:
    """Multipliers hls4ml instantiates for a MAC layer.

    Latency: ``multiplier_limit = ceil(n_in*n_out / RF) - n_zeros // RF`` (hls4ml's ALLOCATION limit).
    Resource: ``block_factor = ceil(n_in*n_out / RF)`` (zeros are not removed: weights are in a ROM).
    """
    total = spec.n_in * spec.n_out
    rf = spec.reuse_factor
    if spec.strategy == "resource":
        return ceil_div(total, rf)
    if spec.n_nonzero == 0:
        return 0
    limit = ceil_div(total, rf) - (total - spec.n_nonzero) // rf
    return max(1, min(limit, spec.n_nonzero))


def effective_period(clock_period_ns: float, calib: Calibration) -> float:
    """The usable clock period ``T_eff = T (1 - clock_uncertainty)``."""
    return clock_period_ns * (1.0 - calib.clock_uncertainty)


def kernel_depth(spec: LayerSpec, clock_period_ns: float, calib: Calibration = DEFAULT_CALIBRATION) -> int:
    """Pipeline depth (cycles) of one multiply-accumulate:
    ``ceil((t_mult + t_add*levels) / (T_eff - t_reg)) + depth_extra_cycles``."""
    per_out = max(1.0, spec.n_nonzero / max(1, spec.n_out))
    levels = clog2(per_out + 1)
    t = calib.t_mult_ns + calib.t_add_ns * levels
    t_eff = effective_period(clock_period_ns, calib)
    usable = max(0.25 * t_eff, t_eff - calib.t_reg_ns)
    return int(math.ceil(t / usable)) + calib.depth_extra_cycles


def acc_bits(spec: LayerSpec) -> int:
    """Adder width: ``min(accum_bits, a + w + ceil(log2(nonzeros per output)))`` (HLS trims adders to the
    bits they can carry)."""
    per_out = max(1.0, spec.n_nonzero / max(1, spec.n_out))
    return max(1, min(spec.accum_bits, spec.input_bits + spec.weight_bits + clog2(per_out)))


def tree_registers(spec: LayerSpec, stages: int, decay: float = 1.0) -> float:
    """Register copies of the adder tree, per adder, when its ``stages`` pipeline cuts are spread evenly.

    A cut after ``k`` of ``L`` tree levels holds ``2^-k`` of the partial sums, so the cuts of an
    ``L``-level tree in ``S + 1`` equal slices hold ``sum_{k=1..S} 2^(-d k L / (S + 1))`` adders' worth
    of bits. Vivado HLS behaves like ``d = 1`` (well below one copy per stage); Vitis HLS keeps the
    products and partial sums much longer (``d`` near 0: about one full copy per stage).
    """
    if stages <= 0:
        return 0.0
    levels = clog2(max(1.0, spec.n_nonzero / max(1, spec.n_out)) + 1)
    return sum(2.0 ** (-decay * k * levels / (stages + 1)) for k in range(1, stages + 1))


def elem_latency(clock_period_ns: float, calib: Calibration) -> int:
    """Register stages of an element-wise op: ``floor(t_elem_ns / T_eff)`` (0: it fits in one cycle)."""
    return int(calib.t_elem_ns // effective_period(clock_period_ns, calib))


def fifo_cost(
    depth: int, width: int, calib: Calibration = DEFAULT_CALIBRATION, force_srl: bool = False
) -> dict[str, float]:
    """Resources of one FIFO: SRL (LUTs) up to ``fifo_srl_max_depth`` words (or when the project binds it
    to SRL, ``force_srl``), else BRAM."""
    if depth <= 0 or width <= 0:
        return {}
    if depth <= calib.fifo_srl_max_depth or force_srl:
        return {"LUT": calib.lut_fifo_srl + width * ceil_div(depth, 32), "FF": calib.ff_fifo_srl}
    b18 = bram18_for(depth, width, calib.fifo_bits_per_bram18)
    return {"BRAM36": b18 / 2.0, "LUT": calib.lut_fifo_bram, "FF": calib.ff_fifo_bram + 2 * clog2(depth)}
