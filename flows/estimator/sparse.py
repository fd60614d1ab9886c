"""Resource and latency estimate of the sparse, weight-shared Dense kernel (``flows/sparse/nnet_sparse_dense.h``).

An **estimate** derived from the kernel's structure, term by term; it has not been compared with a
synthesis report of this kernel (none exists yet), so it carries ``source="estimate"`` and a note
saying so. The constants are the estimator's `Calibration` fields, fitted on hls4ml's own kernels.
``a``, ``w``, ``acc``, ``r``, ``b`` are the input, weight, accumulator, result and bias widths,
``P`` the PEs, ``S`` the rows (outputs) per PE, ``L`` the steps (entries) per PE, ``e`` the entry
width (code + index bits), ``K`` the codebook entries.

Per PE (``x P``):

* ``multipliers``: one ``a x w`` product per clock: a LUT multiplier ``lut_per_lutmult_bit2 * a * w``
  when both operands are narrow (``<= lut_mult_max_bits``, or one ``<= 3`` bits), else
  ``dsp_per_multiplier(a, w)`` DSPs and ``lut_per_dsp_mult`` LUTs of glue; FFs for the product
  register ``a + w`` and ``ff_per_mult_bit * (a + w)`` per multiplier pipeline stage.
* ``codebook``: the PE's lookup of the code's weight, a constant table: ``w * ceil(K / 64)`` LUTs (one
  LUT6 per output bit and 64 entries).
* ``accumulator``: the running sum, reset to the row's bias on a row change (the mux folds into the
  adder's LUTs): ``lut_per_adder_bit * acc`` LUTs, ``acc`` FFs.
* ``index``: the column counter (add the gap, compare with ``n_in``, subtract, the padding select of
  the read address: ``4 * col_bits`` LUTs) and the row counter (``row_bits``); FFs: both counters,
  the entry register ``e`` and the input register ``a``.
* ``rom``: the bias ROM (``S x b`` bits), in block RAM (`bram18_for`, 36-bit words up to 512 deep)
  from ``rom_bram_min_bits`` (1 Kbit) up, else in LUTs at ``lut_per_rom_bit``.
* ``output_cast``: the cast of the sum to the result type when the PE leaves a row; with a fused ReLU
  a rounding, saturating cast, ``lut_act_narrow_per_elem`` (as the per-output cast of hls4ml's
  dense in `flows.estimator.layers`), else truncation (wires).

Shared:

* ``rom``: the entry ROM, one word of all P entries per step (``L x P*e`` bits: the PEs read in
  lockstep, the kernel reshapes the array), in block RAM or LUTs by the bias ROM's rule.
* ``input_buffer``: ``ceil(P / 2)`` copies of the input (two PEs read one dual-port copy), each
  ping-ponged between images: ``2 x n_in x a`` bits per copy, two banks of `bram18_for(n_in, a)`
  BRAM_18K from 1 Kbit per bank up, else dual-port LUTRAM ``2 * lut_per_rom_bit`` LUTs per bit. The
  load unpacks the stream word one element per clock: a word register ``in_pack * a`` FFs and an
  ``in_pack``:1 multiplexer ``a * ceil(in_pack / 4)`` LUTs.
* ``results``: the ``S x P`` result registers (``r`` bits each, every one written by its PE); packing
  them into stream words of ``out_pack`` results: when there is more than one word,
  ``out_pack * r * ceil(words / 4)`` LUTs of multiplexers and an ``out_pack * r`` FF word register.
* ``control``: two dataflow processes, ``lut_layer_base``/``ff_layer_base`` each.

`spec_from_hls_layer` reads a converted ``SparseDense`` layer, `spec_from_layout` a layout before any
conversion (a search); `describe_hls_model` attaches the estimate of a converted layer to its spec, so
`estimate_design` and the fit searches cost sparse layers here.

Timing (II=1 walk): load ``n_in + 2`` cycles (one element per clock, loop entry); compute
``L + depth + S + words + 2`` (walk, the tail that settles each PE's last rows, the result words,
loop entries); ``depth = 3 + ceil(t_mult_ns / T_eff)`` (entry ROM read, input read, multiply,
accumulate). Load and compute overlap (ping-pong), so the II is the longer of the two and the
latency their sum.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from flows.estimator.blocks import bram18_for, ceil_div, dsp_per_multiplier, effective_period
from flows.estimator.calibration import DEFAULT_CALIBRATION, Calibration
from flows.estimator.spec import LayerEstimate, var_pack
from flows.hls_passes import FUSED_ATTR
from flows.sparse.layout import PES_PER_COPY, SIZE_NAMES, SparseLayout

STRATEGY = "sparse"
WALK_FIXED_STAGES = 3  # entry ROM read, input buffer read, accumulate (the multiplier adds its own)
LUT6_ENTRIES = 64
MUX_INPUTS_PER_LUT = 4
NOTE = "sparse kernel: a structural estimate, not yet compared with a synthesis report of this kernel"


@dataclass(frozen=True)
class SparseDenseSpec:
    """One sparse Dense layer as the estimate sees it: the walk's sizes and the bit widths."""

    name: str
    n_in: int
    n_out: int
    n_pe: int
    n_rows: int  # outputs per PE
    n_steps: int  # entries per PE
    n_codes: int  # codebook entries, the zero included
    code_bits: int
    index_bits: int
    input_bits: int
    weight_bits: int
    accum_bits: int
    result_bits: int
    bias_bits: int
    in_pack: int  # elements per input stream word
    out_pack: int  # elements per output stream word
    nnz: int = 0
    fused_activation: bool = False
    mult_impl: str = "auto"  # "auto" | "dsp" | "fabric"

    def __post_init__(self) -> None:
        if min(self.n_in, self.n_out, self.n_pe, self.n_rows, self.n_steps, self.in_pack, self.out_pack) < 1:
            raise ValueError(f"sparse layer {self.name!r}: sizes must be positive")
        if self.n_pe * self.n_rows < self.n_out:
            raise ValueError(f"sparse layer {self.name!r}: {self.n_pe} PEs x {self.n_rows} rows < {self.n_out} outputs")
        if self.mult_impl not in ("auto", "dsp", "fabric"):
            raise ValueError(f"sparse layer {self.name!r}: mult_impl {self.mult_impl!r} must be auto, dsp or fabric")

    @property
    def entry_bits(self) -> int:
        return self.code_bits + self.index_bits

    @property
    def n_copies(self) -> int:
        return ceil_div(self.n_pe, PES_PER_COPY)

    @property
    def col_bits(self) -> int:
        return max(1, (2 * self.n_in - 1).bit_length())

    @property
    def row_bits(self) -> int:
        return max(1, (self.n_rows - 1).bit_length())


def _width(precision: object, default: int = 16) -> int:
    return int(getattr(precision, "width", default) or default)


def spec_from_hls_layer(layer: object) -> SparseDenseSpec:
    """Read a ``SparseDense`` hls4ml layer (made by `flows.sparse.extension`) into a `SparseDenseSpec`.

    Only attributes are read: this module does not import hls4ml."""
    attr = layer.get_attr
    in_var, out_var = layer.get_input_variable(), layer.get_output_variable()
    return SparseDenseSpec(
        name=layer.name,
        **{name: int(attr(name)) for name in SIZE_NAMES},
        input_bits=_width(in_var.type.precision),
        weight_bits=_width(layer.get_weights("codebook").type.precision),
        accum_bits=_width(layer.types["accum_t"].precision, 32),
        result_bits=_width(out_var.type.precision),
        bias_bits=_width(layer.get_weights("bias").type.precision, 32),
        in_pack=var_pack(in_var) or int(list(in_var.shape)[-1]),
        out_pack=var_pack(out_var) or int(list(out_var.shape)[-1]),
        fused_activation=bool(attr(FUSED_ATTR)),
    )


def spec_from_layout(
    name: str,
    layout: SparseLayout,
    input_bits: int,
    weight_bits: int,
    accum_bits: int,
    result_bits: int,
    bias_bits: int = 32,
    in_pack: int | None = None,
    out_pack: int | None = None,
    fused_activation: bool = False,
) -> SparseDenseSpec:
    """The spec of a layer laid out by `flows.sparse.layout` (before any hls4ml conversion, e.g. in a search).

    The stream words default to the whole vector (a Dense after a flat input, as hls4ml streams it)."""
    return SparseDenseSpec(
        name=name,
        **layout.sizes(),
        input_bits=input_bits,
        weight_bits=weight_bits,
        accum_bits=accum_bits,
        result_bits=result_bits,
        bias_bits=bias_bits,
        in_pack=in_pack or layout.n_in,
        out_pack=out_pack or layout.n_out,
        fused_activation=fused_activation,
    )


def _rom(est: LayerEstimate, part: str, depth: int, width: int, copies: int, calib: Calibration) -> None:
    """`copies` ROMs of ``depth x width`` bits: block RAM from `rom_bram_min_bits` up, else LUTs."""
    bits = depth * width
    if bits >= calib.rom_bram_min_bits:
        est.add(part, BRAM36=copies * bram18_for(depth, width, 36) / 2.0)
    elif bits:
        est.add(part, LUT=copies * bits * calib.lut_per_rom_bit)


def _narrow(a: int, w: int, calib: Calibration) -> bool:
    return max(a, w) <= calib.lut_mult_max_bits or min(a, w) <= 3


def estimate_sparse_dense(
    spec: SparseDenseSpec, clock_period_ns: float = 10.0, calib: Calibration = DEFAULT_CALIBRATION
) -> LayerEstimate:
    """Resources, latency and II of one sparse Dense layer (see the module docstring for each term)."""
    est = LayerEstimate(name=spec.name, kind="dense", strategy=STRATEGY, reuse_factor=1, multipliers=spec.n_pe)
    P, a, w, acc, r = spec.n_pe, spec.input_bits, spec.weight_bits, spec.accum_bits, spec.result_bits
    mult_stages = int(math.ceil(calib.t_mult_ns / effective_period(clock_period_ns, calib)))
    fabric = spec.mult_impl == "fabric" or (spec.mult_impl == "auto" and _narrow(a, w, calib))
    if fabric:
        est.add("multipliers", LUT=P * calib.lut_per_lutmult_bit2 * a * w)
    else:
        est.add("multipliers", DSP=P * dsp_per_multiplier(a, w, calib), LUT=P * calib.lut_per_dsp_mult)
    est.add("multipliers", FF=P * (a + w) * (1 + calib.ff_per_mult_bit * mult_stages))
    est.add("codebook", LUT=P * w * ceil_div(spec.n_codes, LUT6_ENTRIES))
    est.add("accumulator", LUT=P * acc * calib.lut_per_adder_bit, FF=P * acc)
    est.add(
        "index",
        LUT=P * (4 * spec.col_bits + spec.row_bits),
        FF=P * (spec.col_bits + spec.row_bits + spec.entry_bits + a),
    )
    _rom(est, "rom", spec.n_steps, spec.entry_bits * P, 1, calib)  # one word of P entries per step
    _rom(est, "rom", spec.n_rows, spec.bias_bits, P, calib)
    if spec.fused_activation:
        est.add("output_cast", LUT=P * calib.lut_act_narrow_per_elem)

    bank_bits = spec.n_in * a
    if bank_bits >= calib.rom_bram_min_bits:
        est.add("input_buffer", BRAM36=spec.n_copies * 2 * bram18_for(spec.n_in, a, 36) / 2.0)
    else:
        est.add("input_buffer", LUT=spec.n_copies * 2 * bank_bits * 2 * calib.lut_per_rom_bit)
    est.add("input_buffer", FF=spec.in_pack * a)
    if spec.in_pack > 1:
        est.add("input_buffer", LUT=a * ceil_div(spec.in_pack, MUX_INPUTS_PER_LUT))
    words = ceil_div(spec.n_out, spec.out_pack)
    est.add("results", FF=spec.n_rows * P * r)
    if words > 1:
        est.add("results", LUT=spec.out_pack * r * ceil_div(words, MUX_INPUTS_PER_LUT), FF=spec.out_pack * r)
    est.add("control", LUT=2 * calib.lut_layer_base, FF=2 * calib.ff_layer_base)

    depth = WALK_FIXED_STAGES + mult_stages
    load = spec.n_in + 2
    compute = spec.n_steps + depth + spec.n_rows + words + 2
    est.ii_cycles = max(load, compute)
    est.latency_cycles = load + compute
    est.fill_cycles = est.latency_cycles  # the first result needs the whole input
    est.tail_cycles = compute
    est.notes.append(NOTE)
    return est
