"""Analytical resource and latency estimates for hls4ml designs, and a search that fits a design to a board.

Vivado/Vitis HLS are not available to most users of this flow, so they need numbers they can trust
*before* synthesis. This module predicts what the HLS csynth report would say for an hls4ml 1.3
project (LUT, FF, DSP, BRAM36, URAM; latency and initiation interval in clock cycles) from the
structure hls4ml generates, and it chooses reuse factors and strategies that make a design fit.
Every figure it produces carries ``source="estimate"``. `bench/estimator.py` measures the error
against 23 real csynth reports; `bench/results/estimator.md` has the numbers and the known misses.

API: `describe_hls_model` (ModelGraph -> list of `LayerSpec`), `estimate_layer`, `estimate_design`
(-> `DesignEstimate`), `fit_to_budget` (-> `FitResult`), `valid_reuse_factors`, `calibration_for`.

The model follows hls4ml's templates (``templates/vivado/nnet_utils``). ``a``/``w`` are the input and
weight widths, ``acc = min(accum_bits, a + w + ceil(log2(nonzeros per output)))`` the adder width
(HLS trims adders to the bits they can carry), ``T`` the clock period, ``T_eff = T (1 - uncertainty)``.

* **Multiplications** of a Dense/Conv kernel: ``n_in x n_out`` weights (convolution: ``n_in =
  kernel * n_chan``, ``n_out = n_filt``), ``nnz`` of them nonzero (hls4ml's ``n_zeros`` are dropped).

  - *Latency* strategy (``nnet_dense_latency.h``): weights are constants. hls4ml caps the multipliers
    at ``multiplier_limit = ceil(n_in*n_out/RF) - n_zeros // RF``. Narrow products (weights
    ``<= const_lut_weight_bits`` or both operands ``<= lut_mult_max_bits``) become shift-add logic,
    one block per nonzero weight that RF does not share: ``LUT = lut_per_constmult_bit2 * a * w``
    each. Wide products use DSPs: ``multiplier_limit`` of them, at RF 1 only ``const_dsp_fraction``
    of them (HLS turns powers of two into shifts), plus operand muxes when shared
    (``lut_mux_per_bit * (a + w) * (ways - 1)`` each, ``ways = min(RF, ceil(nnz / multipliers))``).
    Adders: one per nonzero weight. With RF > 1 every product is registered until the tree sums it
    (``ff_prod_reg_per_bit * nnz * min(a + w, acc)``) and the tree's registers scale by
    ``ff_shared_tree_factor``.
  - *Resource* strategy (``nnet_dense_resource.h``): weights sit in a ROM and are not folded;
    ``block_factor = ceil(n_in*n_out/RF)`` multipliers (zeros included) run RF cycles, LUT
    multipliers (``lut_per_lutmult_bit2 * a * w``) when both operands ``<= lut_mult_max_bits``, else
    DSPs; one adder per multiplier; operand/accumulator steering ``lut_res_per_mult_bit * (a + acc)``
    LUTs and ``ff_res_per_mult_bit * (a + w + acc)`` FFs per multiplier; with RF > n_in every output
    accumulator is selected at run time: ``lut_accmux_per_bit * n_out * acc * ceil(log2(RF/n_in + 1))``.
  - DSPs per product: tiles of the 25x18 DSP48E1, ``ceil(max(a,w)/25) * ceil(min(a,w)/18)``.
  - Adders: ``lut_per_adder_bit * adders * acc`` LUTs (x ``1 + lut_sat_factor`` for AP_SAT accumulators);
    ``ff_per_adder_bit * adders * acc * tree_registers`` FFs, where ``tree_registers`` counts the partial
    sums the ``depth - 1`` pipeline cuts hold (`_tree_registers`: the sums halve per tree level in
    Vivado HLS, ``ff_tree_decay = 1``; Vitis HLS keeps a full copy per stage, ``ff_tree_decay = 0``);
    shared multipliers add ``ff_per_mult_bit * (a + w) * floor(t_mult_ns / T_eff)`` FFs each.

* **Memories** (``BRAM36 = BRAM_18K / 2``): a resource-strategy weight ROM has depth RF and width
  ``block_factor * w`` and goes to BRAM when it holds ``>= rom_bram_min_bits`` (else LUTs); a BRAM_18K
  is 36 bits wide up to 512 words, 18/9/4/2/1 up to 1K/2K/4K/8K/16K. With ``io_stream`` every layer
  output is a FIFO of depth ``H*W`` (hls4ml's default) and width ``channels * bits``: an SRL up to
  ``fifo_srl_max_depth`` words, else BRAM at ``fifo_bits_per_bram18`` bits per BRAM_18K up to 1K
  words (18 for Vivado HLS, 36 for Vitis). Conv line buffers (``ap_shift_reg``) are SRLs:
  ``(fh-1) * n_chan * a * ceil(W/32)`` LUTs; the kernel window ``fh * fw * n_chan * a`` FFs (pooling
  windows x ``ff_pool_window_factor``). In ``io_parallel`` the top is one pipeline whose layer outputs
  are registered: ``ff_parallel_reg_per_bit`` per output bit of every layer.

* **Element-wise layers** (ReLU, pooling, padding, concat, clone, ...): per lane (one stream word in
  ``io_stream``, the whole tensor in ``io_parallel``) ``lut_elem_per_bit * (in + out bits) / 2`` LUTs,
  plus ``lut_act_narrow_per_elem`` when an activation narrows (clip and round); registers per stream
  word, or per pipeline stage in ``io_parallel`` (none when the activation fits in one cycle: HLS
  inlines it). Softmax: ``n`` DSPs, ``ceil(n/2) + 1`` BRAM_18K tables, ``lut_softmax_per_elem * n``
  LUTs, ``ff_softmax_base + ff_softmax_per_elem * n * depth`` FFs. Every layer adds
  ``lut_layer_base``/``ff_layer_base`` of control.

* **Latency and II**. Kernel depth ``= ceil((t_mult_ns + t_add_ns * ceil(log2(nnz/n_out + 1))) /
  (T_eff - t_reg_ns)) + depth_extra_cycles``.
  ``io_parallel`` (the top is one pipeline): a latency-strategy layer has II ``ceil(nnz / shared
  multipliers)`` (1 when nothing is shared) and latency ``depth + II - 1``; resource: II ``RF``, latency
  ``RF + depth + resource_extra_cycles``; the design's latency is the sum (+ ``parallel_layer_cycles``
  per layer), its II the largest. ``io_stream`` (dataflow): a latency conv takes ``max(RF,
  stream_conv_min_ii)`` cycles per input pixel (loop pipelined at II=RF); a resource conv
  ``RF + resource_conv_overhead`` per output pixel and ``resource_conv_skip_cycles`` per other pixel
  (loop not pipelined); element-wise layers one pixel per cycle; a dense layer needs its whole input.
  First/last output times are propagated through the graph (``first_out = first_in + fill``,
  ``last_out = max(last_in + tail, first_in + busy)``); latency is the last output, II the busiest layer.

* **VivadoAccelerator wrapper** (``myproject_axi``, float in/out): ``axi_lut_base``/``axi_ff_base`` for
  the two converters. ``io_parallel`` adds ``axi_lut_parallel_extra`` and ``axi_per_io_bit`` per bit
  of the in/out arrays, latency ``+ n_in + n_out + axi_latency_cycles``, and the top is not pipelined
  (II = latency + 1). ``io_stream`` adds the ``in_local``/``out_local`` FIFOs and loops that are not
  pipelined: ``ceil(axi_elem_ns / T_eff)`` cycles per element, which often sets the II of image models.

The constants are the fields of `Calibration`. `VIVADO_HLS_CALIBRATION` (the default: the
VivadoAccelerator backend for PYNQ-Z2 runs Vivado HLS) and `VITIS_HLS_CALIBRATION` are fitted by
``python bench/estimator.py --fit`` on all runs of each tool, top-level and per-layer figures; the
bench also reports leave-one-network-out cross-validated errors, the ones to expect on a new network.
`fit_to_budget` searches reuse factors (only the values hls4ml accepts, `valid_reuse_factors`) and
strategies, greedily on the binding resource. Estimates target csynth, which over-reports LUTs
relative to Vivado synthesis.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from functools import lru_cache

from flows.boards import RESOURCE_KINDS

log = logging.getLogger(__name__)

SOURCE = "estimate"
STRATEGIES = ("latency", "resource")
IO_TYPES = ("io_parallel", "io_stream")
MAC_KINDS = ("dense", "conv1d", "conv2d", "pointwise_conv1d", "pointwise_conv2d")
KINDS = MAC_KINDS + (
    "pooling",
    "global_pooling",
    "activation",
    "batchnorm",
    "merge",
    "concat",
    "zeropad",
    "upsample",
    "reshape",
    "flatten",
    "clone",
    "input",
    "other",
)
# Layers that move no data in io_stream (hls4ml aliases their stream to the producer's).
_FREE_KINDS = ("input", "reshape", "flatten")


# --------------------------------------------------------------------------------------------------
# Calibration constants
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Calibration:
    """The constants of the model, in one place.

    Field defaults are hand-set starting values (device facts and per-layer report readings); the
    presets `VIVADO_HLS_CALIBRATION`/`VITIS_HLS_CALIBRATION` hold the values fitted by
    ``bench/estimator.py --fit``. ``const_dsp_fraction`` (a step function of DSP counts, which least
    squares cannot move) is read off the RF-1 runs: 664/896 (Vivado HLS), 2557/4256 to 110/120 (Vitis).
    Units are in the names: ``lut_*``/``ff_*`` are LUTs/flip-flops, ``*_bits`` bit widths, ``*_ns``
    nanoseconds of combinational delay, ``*_cycles`` clock cycles.
    """

    # DSP vs LUT multipliers
    dsp_a_bits: int = 25  # DSP48E1 multiplier port widths (7-series); 27x18 on UltraScale+
    dsp_b_bits: int = 18
    lut_mult_max_bits: int = 10  # both operands at most this wide: Vivado HLS maps the product to LUTs
    const_lut_weight_bits: int = 8  # latency strategy: constant weights this narrow become shift-add logic
    const_dsp_fraction: float = 0.75  # RF 1, latency, wide constants: share of nonzero products kept on DSPs
    # LUT costs
    lut_per_adder_bit: float = 1.0
    lut_per_lutmult_bit2: float = 0.6  # generic a x w LUT multiplier: k * a * w LUTs
    lut_per_constmult_bit2: float = 0.25  # multiplication by a constant (shift-add): k * a * w LUTs
    lut_per_dsp_mult: float = 4.0  # glue logic per DSP multiplier
    lut_mux_per_bit: float = 0.35  # RF:1 operand multiplexers when multipliers are shared
    lut_accmux_per_bit: float = 1.0  # resource strategy with RF > n_in: accumulator select per output bit
    lut_res_per_mult_bit: float = 1.0  # resource strategy: operand/accumulator steering per multiplier and bit
    lut_sat_factor: float = 1.0  # saturating (AP_SAT) accumulators: extra adder LUTs, as a fraction
    lut_layer_base: float = 60.0  # control (FSM, handshakes) per layer
    lut_elem_per_bit: float = 1.5  # element-wise layers (ReLU, casts, pooling compare): per element and bit
    lut_act_narrow_per_elem: float = 40.0  # activation whose output is narrower than its input (clip/round)
    lut_softmax_per_elem: float = 60.0
    lut_per_rom_bit: float = 1.0 / 32  # a ROM kept in LUTs (LUTRAM/logic)
    lut_fifo_bram: float = 35.0  # control of a BRAM FIFO
    lut_fifo_srl: float = 10.0  # control of an SRL FIFO (plus one LUT per bit and 32 words)
    # FF costs
    ff_per_adder_bit: float = 0.3  # per adder bit and pipeline stage
    ff_shared_tree_factor: float = 1.0  # latency strategy with RF > 1: tree registers relative to RF 1
    ff_tree_decay: float = 1.0  # 1: a cut after k of L tree levels holds 2^-k of the sums; 0: a full copy per cut
    ff_per_mult_bit: float = 0.5  # per multiplier operand bit and multiplier pipeline stage
    ff_res_per_mult_bit: float = 1.0  # resource strategy: registers per multiplier and (a + w + acc) bit
    ff_layer_base: float = 40.0
    ff_elem_per_bit: float = 0.5  # element-wise layers in io_stream (pipeline registers)
    ff_fifo_bram: float = 50.0  # pointers and output register of a BRAM FIFO
    ff_fifo_srl: float = 6.0
    ff_parallel_reg_per_bit: float = 0.0  # io_parallel: registers between the layers of the top pipeline
    ff_pool_window_factor: float = 1.0  # io_stream pooling: window registers relative to pool * chan * bits
    ff_softmax_per_elem: float = 5.0  # per element and pipeline stage
    ff_softmax_base: float = 0.0  # the sum, its inverse and the table reads, once per softmax
    ff_prod_reg_per_bit: float = 0.0  # latency strategy with RF > 1: every product is held until the tree sums it
    # Timing
    t_mult_ns: float = 3.5  # multiplier incl. routing
    t_add_ns: float = 2.0  # one adder-tree level
    t_elem_ns: float = 3.0  # element-wise op; a register stage is added when the period is shorter
    t_softmax_ns: float = 40.0
    clock_uncertainty: float = 0.125  # hls4ml's default ClockUncertainty
    t_reg_ns: float = 0.0  # register overhead per pipeline stage (clock-to-out, setup, routing)
    depth_extra_cycles: int = 1  # kernel depth = ceil(delay / usable period) + this
    resource_extra_cycles: int = 2  # resource strategy: kernel latency = RF + depth + this
    resource_conv_overhead: int = 9  # io_stream resource conv: cycles per output pixel = RF + this
    resource_conv_skip_cycles: int = 4  # ... and per input pixel that yields no output
    stream_conv_min_ii: int = 1  # io_stream latency conv: cycles per input pixel = max(RF, this)
    parallel_layer_cycles: int = 1  # io_parallel: register/call overhead per layer
    elem_depth_cycles: int = 2  # pipeline depth of element-wise stream layers
    # Memories
    fifo_srl_max_depth: int = 16  # deeper FIFOs go to BRAM
    fifo_bits_per_bram18: int = 18  # FIFO width per BRAM_18K up to 1K words (Vivado HLS)
    rom_bram_min_bits: int = 1024  # smaller weight ROMs stay in LUTs
    # Latency-strategy layers larger than this fail in HLS (complete partitioning, hls4ml MaximumSize)
    latency_max_weights: int = 4096
    # VivadoAccelerator AXI wrapper (float in/out)
    axi_lut_base: float = 2200.0  # one float->fixed and one fixed->float converter, AXI-stream handshakes
    axi_lut_parallel_extra: float = 3300.0  # io_parallel wrapper (not pipelined top, is_last logic)
    axi_ff_base: float = 1700.0
    axi_ff_parallel_extra: float = 0.0
    axi_per_io_bit: float = 1.0  # io_parallel: in_local/out_local arrays, LUT and FF per bit
    axi_latency_cycles: int = 8
    axi_elem_ns: float = 48.0  # io_stream wrapper loops (not pipelined): ns per converted element

    def to_dict(self) -> dict:
        return asdict(self)


# Fitted by `python bench/estimator.py --fit` on all runs of each tool; bench/results/estimator.md has the
# in-sample and the leave-one-network-out cross-validated errors.
VIVADO_HLS_CALIBRATION = Calibration(
    lut_per_constmult_bit2=0.1557,
    lut_per_dsp_mult=2.823,
    lut_mux_per_bit=0.6997,
    lut_accmux_per_bit=1.741,
    lut_res_per_mult_bit=5.494,
    lut_sat_factor=0.5742,
    lut_layer_base=142.4,
    lut_elem_per_bit=2.692,
    lut_act_narrow_per_elem=43.19,
    lut_softmax_per_elem=95.21,
    lut_fifo_bram=43.55,
    lut_fifo_srl=16.33,
    ff_per_adder_bit=1.111,
    ff_shared_tree_factor=0.8285,
    ff_per_mult_bit=0.4401,
    ff_res_per_mult_bit=2.453,
    ff_layer_base=106.0,
    ff_elem_per_bit=0.9024,
    ff_parallel_reg_per_bit=0.5242,
    ff_pool_window_factor=2.212,
    ff_softmax_per_elem=6.367,
    ff_softmax_base=56.44,
    ff_prod_reg_per_bit=0.9672,
    t_mult_ns=2.0,
    t_add_ns=0.75,
    t_reg_ns=0.5,
    depth_extra_cycles=0,
    resource_conv_overhead=11,
    axi_lut_base=2222.0,
    axi_lut_parallel_extra=3417.0,
    axi_ff_base=1352.0,
    axi_ff_parallel_extra=28.26,
    axi_elem_ns=60.0,
)
VITIS_HLS_CALIBRATION = Calibration(
    lut_per_constmult_bit2=0.2223,
    lut_per_dsp_mult=4.633,
    lut_mux_per_bit=0.8637,
    lut_layer_base=83.56,
    lut_elem_per_bit=2.053,
    lut_act_narrow_per_elem=61.52,
    lut_softmax_per_elem=76.93,
    lut_fifo_bram=34.93,
    lut_fifo_srl=9.993,
    ff_per_adder_bit=0.582,
    ff_shared_tree_factor=1.396,
    ff_tree_decay=0.0,
    ff_layer_base=35.53,
    ff_elem_per_bit=2.116,
    ff_parallel_reg_per_bit=1.261,
    ff_softmax_per_elem=6.051,
    ff_softmax_base=31.23,
    ff_prod_reg_per_bit=1.225,
    t_mult_ns=1.0,
    t_add_ns=1.5,
    t_reg_ns=1.5,
    depth_extra_cycles=0,
    resource_conv_overhead=5,
    fifo_bits_per_bram18=36,
    axi_elem_ns=20.0,
)
DEFAULT_CALIBRATION = VIVADO_HLS_CALIBRATION  # the VivadoAccelerator backend (PYNQ-Z2) runs Vivado HLS


# What to expect: the median |relative error| of each tool's estimates on networks its calibration did
# not see (leave-one-network-out cross-validation, `cv` in bench/results/estimator.json, rounded to the
# percent; tests/test_estimate.py checks that they match that file).
EXPECTED_ERROR: dict[str, dict[str, float]] = {
    "vivado_hls": {"LUT": 0.06, "FF": 0.25, "DSP": 0.02, "BRAM36": 0.0, "latency": 0.08, "II": 0.01},
    "vitis_hls": {"LUT": 0.31, "FF": 0.42, "DSP": 0.0, "BRAM36": 0.09, "latency": 0.4, "II": 0.0},
}


def tool_of(backend: str) -> str:
    """The HLS tool an hls4ml backend runs: ``vitis_hls`` for ``Vitis``, ``vivado_hls`` otherwise."""
    return "vitis_hls" if backend.lower().startswith("vitis") else "vivado_hls"


def calibration_for(backend: str) -> Calibration:
    """The calibration of the HLS tool an hls4ml backend runs: Vitis HLS for ``Vitis``, Vivado HLS otherwise."""
    return VITIS_HLS_CALIBRATION if tool_of(backend) == "vitis_hls" else VIVADO_HLS_CALIBRATION


# --------------------------------------------------------------------------------------------------
# Layer description
# --------------------------------------------------------------------------------------------------


@dataclass
class LayerSpec:
    """One hls4ml layer as the estimator sees it.

    Shapes are channels-last without the batch dimension: ``(H, W, C)``, ``(W, C)`` or ``(N,)``.
    For MAC layers (`MAC_KINDS`) ``n_in``/``n_out`` are the sizes of the multiplication kernel as
    hls4ml sees it (``FPGABackend.get_layer_mult_size``): dense ``n_in, n_out``; convolution
    ``filt_h * filt_w * n_chan, n_filt``. For other layers they count input/output elements.
    ``n_nonzero`` counts nonzero weights (hls4ml: ``n_weights - nzeros``).
    """

    name: str
    kind: str
    input_shape: tuple[int, ...] = ()
    output_shape: tuple[int, ...] = ()
    n_in: int = 0
    n_out: int = 0
    kernel: tuple[int, ...] = ()
    stride: tuple[int, ...] = ()
    n_chan: int = 0
    filters: int = 0
    n_weights: int = 0
    n_nonzero: int = 0
    weight_bits: int = 0
    input_bits: int = 16
    accum_bits: int = 0
    result_bits: int = 16
    reuse_factor: int = 1
    strategy: str = "latency"
    io_type: str = "io_parallel"
    class_name: str = ""
    activation: str = ""  # for kind "activation": relu, linear, softmax, ...
    n_inputs: int = 1  # for merge/concat
    n_output_streams: int = 1  # clone: one FIFO per copy
    mult_impl: str = "auto"  # "auto" | "dsp" | "fabric" (Vivado HLS `config_op mul -impl`)
    accum_saturate: bool = False  # accumulator type saturates (AP_SAT): costlier adders
    extra: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"layer {self.name!r}: unknown kind {self.kind!r} (one of {list(KINDS)})")
        self.strategy = self.strategy.lower()
        if self.strategy not in STRATEGIES:
            raise ValueError(f"layer {self.name!r}: strategy {self.strategy!r} must be one of {list(STRATEGIES)}")
        if self.io_type not in IO_TYPES:
            raise ValueError(f"layer {self.name!r}: io_type {self.io_type!r} must be one of {list(IO_TYPES)}")
        if self.mult_impl not in ("auto", "dsp", "fabric"):
            raise ValueError(f"layer {self.name!r}: mult_impl {self.mult_impl!r} must be auto, dsp or fabric")
        self.input_shape = tuple(int(x) for x in self.input_shape)
        self.output_shape = tuple(int(x) for x in self.output_shape)
        self.reuse_factor = max(1, int(self.reuse_factor))
        if self.is_mac:
            if self.n_in <= 0 or self.n_out <= 0:
                raise ValueError(f"layer {self.name!r}: a {self.kind} layer needs n_in and n_out")
            if self.n_weights <= 0:
                self.n_weights = self.n_in * self.n_out
            if not 0 <= self.n_nonzero <= self.n_weights:
                raise ValueError(f"layer {self.name!r}: n_nonzero {self.n_nonzero} not in [0, {self.n_weights}]")
            if self.weight_bits <= 0:
                raise ValueError(f"layer {self.name!r}: weight_bits must be positive")
            if self.accum_bits <= 0:
                self.accum_bits = self.result_bits

    # -- derived quantities ------------------------------------------------------------------------
    @property
    def is_mac(self) -> bool:
        return self.kind in MAC_KINDS

    @property
    def n_zeros(self) -> int:
        return self.n_weights - self.n_nonzero

    @property
    def in_channels(self) -> int:
        return self.input_shape[-1] if self.input_shape else max(self.n_in, 1)

    @property
    def out_channels(self) -> int:
        return self.output_shape[-1] if self.output_shape else max(self.n_out, 1)

    @property
    def in_pixels(self) -> int:
        return math.prod(self.input_shape[:-1]) if len(self.input_shape) > 1 else 1

    @property
    def out_pixels(self) -> int:
        return math.prod(self.output_shape[:-1]) if len(self.output_shape) > 1 else 1

    @property
    def in_elems(self) -> int:
        return math.prod(self.input_shape) if self.input_shape else max(self.n_in, 1)

    @property
    def out_elems(self) -> int:
        return math.prod(self.output_shape) if self.output_shape else max(self.n_out, 1)

    @property
    def in_pack(self) -> int:
        """Elements per word of the input stream (io_stream)."""
        return int(self.extra.get("in_pack", self.in_channels))

    @property
    def out_pack(self) -> int:
        return int(self.extra.get("out_pack", self.out_channels))

    def with_config(self, reuse_factor: int, strategy: str) -> LayerSpec:
        """A copy with another reuse factor and strategy."""
        return replace(self, reuse_factor=reuse_factor, strategy=strategy, extra=dict(self.extra))

    def to_dict(self) -> dict:
        d = asdict(self)
        d["input_shape"] = list(self.input_shape)
        d["output_shape"] = list(self.output_shape)
        d["kernel"] = list(self.kernel)
        d["stride"] = list(self.stride)
        return d


# --------------------------------------------------------------------------------------------------
# Results
# --------------------------------------------------------------------------------------------------


def _zero_resources() -> dict[str, float]:
    return {k: 0.0 for k in RESOURCE_KINDS}


@dataclass
class LayerEstimate:
    """Estimated cost of one layer. ``resources`` is keyed by `RESOURCE_KINDS`; BRAM36 in 36 Kb units.

    ``latency_cycles``/``ii_cycles``: for the layer alone (io_stream: ``ii_cycles`` is the time the
    layer is busy with one image). ``fill_cycles``/``tail_cycles`` are used by the dataflow model.
    ``parts`` breaks the resources down by component (multipliers, adders, FIFOs, ...).
    """

    name: str
    kind: str
    resources: dict[str, float] = field(default_factory=_zero_resources)
    latency_cycles: int = 0
    ii_cycles: int = 1
    fill_cycles: int = 0
    tail_cycles: int = 0
    reuse_factor: int = 1
    strategy: str = "latency"
    multipliers: int = 0
    ii_cycles_in: int = 0  # AXI wrapper only: time of its input / output conversion loops
    ii_cycles_out: int = 0
    parts: dict[str, dict[str, float]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    source: str = SOURCE

    def add(self, part: str, **res: float) -> None:
        bucket = self.parts.setdefault(part, {})
        for kind, value in res.items():
            if kind not in RESOURCE_KINDS:
                raise KeyError(kind)
            self.resources[kind] += float(value)
            bucket[kind] = bucket.get(kind, 0.0) + float(value)

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "kind": self.kind,
            "reuse_factor": self.reuse_factor,
            "strategy": self.strategy,
            "multipliers": self.multipliers,
            "resources": {k: _figure(v, _unit(k)) for k, v in self.resources.items()},
            "latency_cycles": _figure(self.latency_cycles, "cycles"),
            "ii_cycles": _figure(self.ii_cycles, "cycles"),
            "parts": {p: {k: round(v, 2) for k, v in r.items()} for p, r in self.parts.items()},
            "notes": list(self.notes),
            "source": self.source,
        }


def _unit(kind: str) -> str:
    return {"BRAM36": "36Kb blocks"}.get(kind, "count")


def _figure(value: float, unit: str) -> dict:
    """One reported number with its provenance, as in every JSON the flow writes."""
    return {"value": round(float(value), 2), "unit": unit, "source": SOURCE}


@dataclass
class DesignEstimate:
    """Estimated totals of a design (layers + FIFOs + the accelerator wrapper)."""

    layers: list[LayerEstimate]
    resources: dict[str, float]
    latency_cycles: int
    ii_cycles: int
    clock_period_ns: float
    io_type: str
    backend: str
    wrapper: LayerEstimate | None = None
    notes: list[str] = field(default_factory=list)
    source: str = SOURCE

    @property
    def latency_us(self) -> float:
        return self.latency_cycles * self.clock_period_ns / 1000.0

    @property
    def throughput_per_s(self) -> float:
        return 1e9 / (self.ii_cycles * self.clock_period_ns)

    def utilization(self, budget: Mapping[str, float]) -> dict[str, float]:
        """Fraction of the budget used per resource (inf where the budget is 0 and usage is not)."""
        out = {}
        for k in RESOURCE_KINDS:
            have = float(budget.get(k, 0.0))
            use = self.resources.get(k, 0.0)
            out[k] = use / have if have > 0 else (0.0 if use <= 0 else math.inf)
        return out

    def fits(self, budget: Mapping[str, float]) -> bool:
        return all(u <= 1.0 for u in self.utilization(budget).values())

    def layer(self, name: str) -> LayerEstimate:
        for lay in self.layers:
            if lay.name == name:
                return lay
        raise KeyError(name)

    def to_dict(self) -> dict:
        return {
            "source": self.source,
            "clock_period_ns": self.clock_period_ns,
            "io_type": self.io_type,
            "backend": self.backend,
            "resources": {k: _figure(v, _unit(k)) for k, v in self.resources.items()},
            "latency_cycles": _figure(self.latency_cycles, "cycles"),
            "ii_cycles": _figure(self.ii_cycles, "cycles"),
            "latency_us": _figure(self.latency_us, "us"),
            "layers": [lay.to_dict() for lay in self.layers],
            "wrapper": self.wrapper.to_dict() if self.wrapper else None,
            "notes": list(self.notes),
        }


# --------------------------------------------------------------------------------------------------
# Building blocks
# --------------------------------------------------------------------------------------------------


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def _clog2(x: float) -> int:
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
        return _ceil_div(depth, 16384) * width
    return _ceil_div(width, per)


def dsp_per_multiplier(a_bits: int, b_bits: int, calib: Calibration = DEFAULT_CALIBRATION) -> int:
    """DSP slices for one ``a x b`` product: tiles of the ``dsp_a_bits x dsp_b_bits`` multiplier."""
    hi, lo = max(a_bits, b_bits), min(a_bits, b_bits)
    return _ceil_div(hi, calib.dsp_a_bits) * _ceil_div(lo, calib.dsp_b_bits)


def _mult_class(spec: LayerSpec, calib: Calibration) -> str:
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
        return _ceil_div(total, rf)
    if spec.n_nonzero == 0:
        return 0
    limit = _ceil_div(total, rf) - (total - spec.n_nonzero) // rf
    return max(1, min(limit, spec.n_nonzero))


def _effective_period(clock_period_ns: float, calib: Calibration) -> float:
    return clock_period_ns * (1.0 - calib.clock_uncertainty)


def kernel_depth(spec: LayerSpec, clock_period_ns: float, calib: Calibration = DEFAULT_CALIBRATION) -> int:
    """Pipeline depth (cycles) of one multiply-accumulate:
    ``ceil((t_mult + t_add*levels) / (T_eff - t_reg)) + depth_extra_cycles``."""
    per_out = max(1.0, spec.n_nonzero / max(1, spec.n_out))
    levels = _clog2(per_out + 1)
    t = calib.t_mult_ns + calib.t_add_ns * levels
    t_eff = _effective_period(clock_period_ns, calib)
    usable = max(0.25 * t_eff, t_eff - calib.t_reg_ns)
    return int(math.ceil(t / usable)) + calib.depth_extra_cycles


def _acc_bits(spec: LayerSpec) -> int:
    per_out = max(1.0, spec.n_nonzero / max(1, spec.n_out))
    return max(1, min(spec.accum_bits, spec.input_bits + spec.weight_bits + _clog2(per_out)))


def _tree_registers(spec: LayerSpec, stages: int, decay: float = 1.0) -> float:
    """Register copies of the adder tree, per adder, when its ``stages`` pipeline cuts are spread evenly.

    A cut after ``k`` of ``L`` tree levels holds ``2^-k`` of the partial sums, so the cuts of an
    ``L``-level tree in ``S + 1`` equal slices hold ``sum_{k=1..S} 2^(-d k L / (S + 1))`` adders' worth
    of bits. Vivado HLS behaves like ``d = 1`` (well below one copy per stage); Vitis HLS keeps the
    products and partial sums much longer (``d`` near 0: about one full copy per stage).
    """
    if stages <= 0:
        return 0.0
    levels = _clog2(max(1.0, spec.n_nonzero / max(1, spec.n_out)) + 1)
    return sum(2.0 ** (-decay * k * levels / (stages + 1)) for k in range(1, stages + 1))


def _elem_latency(clock_period_ns: float, calib: Calibration) -> int:
    return int(calib.t_elem_ns // _effective_period(clock_period_ns, calib))


def fifo_cost(
    depth: int, width: int, calib: Calibration = DEFAULT_CALIBRATION, force_srl: bool = False
) -> dict[str, float]:
    """Resources of one FIFO: SRL (LUTs) up to ``fifo_srl_max_depth`` words (or when the project binds it
    to SRL, ``force_srl``), else BRAM."""
    if depth <= 0 or width <= 0:
        return {}
    if depth <= calib.fifo_srl_max_depth or force_srl:
        return {"LUT": calib.lut_fifo_srl + width * _ceil_div(depth, 32), "FF": calib.ff_fifo_srl}
    b18 = bram18_for(depth, width, calib.fifo_bits_per_bram18)
    return {"BRAM36": b18 / 2.0, "LUT": calib.lut_fifo_bram, "FF": calib.ff_fifo_bram + 2 * _clog2(depth)}


# --------------------------------------------------------------------------------------------------
# Per-layer estimates
# --------------------------------------------------------------------------------------------------


def _estimate_mac(spec: LayerSpec, clock_period_ns: float, calib: Calibration, est: LayerEstimate) -> None:
    a, w = spec.input_bits, spec.weight_bits
    rf = spec.reuse_factor
    total = spec.n_in * spec.n_out
    nnz = spec.n_nonzero
    acc = _acc_bits(spec)
    cls = _mult_class(spec, calib)
    n_mult = multiplier_count(spec)
    depth = kernel_depth(spec, clock_period_ns, calib)
    est.multipliers = n_mult

    if spec.strategy == "latency":
        if total > calib.latency_max_weights:
            est.notes.append(
                f"latency strategy with {total} weights (> {calib.latency_max_weights}): HLS partitions every "
                "array completely; expect very long synthesis or failure - use the resource strategy"
            )
        n_adders = nnz
        shared = 0
        if cls == "dsp":
            frac = calib.const_dsp_fraction if (rf == 1 and spec.mult_impl == "auto") else 1.0
            n_dsp = int(math.ceil(n_mult * frac))
            est.add("multipliers", DSP=n_dsp * dsp_per_multiplier(a, w, calib), LUT=n_dsp * calib.lut_per_dsp_mult)
            if rf == 1 and nnz > n_dsp:  # constants that HLS turned into shift-add logic
                est.add("const_mult", LUT=(nnz - n_dsp) * calib.lut_per_constmult_bit2 * a * w)
            shared = n_dsp if rf > 1 else 0
        elif cls == "lut":
            est.add("multipliers", LUT=n_mult * calib.lut_per_lutmult_bit2 * a * w)
            shared = n_mult if rf > 1 else 0
        else:  # constant multiplications: one shift-add block per nonzero weight, never shared
            est.add("const_mult", LUT=nnz * calib.lut_per_constmult_bit2 * a * w)
        if shared:
            # each shared multiplier selects among the products it serves: at most RF, fewer when pruned
            ways = min(rf, _ceil_div(nnz, shared))
            est.add("mux", LUT=shared * (a + w) * (ways - 1) * calib.lut_mux_per_bit)
        if spec.io_type == "io_stream":
            ii = rf  # PIPELINE II=RF is the target of the stream loop
        else:
            # io_parallel: the top is pipelined as a whole; the II is what the shared multipliers need
            ii = _ceil_div(nnz, shared) if shared else 1
        latency = depth + ii - 1
    else:
        n_adders = n_mult
        if cls == "dsp":
            est.add("multipliers", DSP=n_mult * dsp_per_multiplier(a, w, calib), LUT=n_mult * calib.lut_per_dsp_mult)
        else:
            est.add("multipliers", LUT=n_mult * calib.lut_per_lutmult_bit2 * a * w)
        steer = n_mult * (a + acc)
        est.add(
            "steering", LUT=steer * calib.lut_res_per_mult_bit, FF=n_mult * (a + w + acc) * calib.ff_res_per_mult_bit
        )
        if rf > 1:
            if rf > spec.n_in:  # each multiplier feeds RF/n_in different accumulators over the reuse loop
                est.add("mux", LUT=spec.n_out * acc * calib.lut_accmux_per_bit * _clog2(rf / spec.n_in + 1))
            rom_bits = total * w
            if rom_bits >= calib.rom_bram_min_bits:
                est.add("weights", BRAM36=bram18_for(rf, n_mult * w, 36) / 2.0)
            else:
                est.add("weights", LUT=rom_bits * calib.lut_per_rom_bit)
        est.add("accumulators", FF=spec.n_out * acc)
        latency = rf + depth + calib.resource_extra_cycles
        ii = rf

    stages = max(0, depth - 1)
    add_lut = n_adders * acc * calib.lut_per_adder_bit * (1.0 + (calib.lut_sat_factor if spec.accum_saturate else 0.0))
    tree_ff = n_adders * acc * calib.ff_per_adder_bit * _tree_registers(spec, stages, calib.ff_tree_decay)
    if spec.strategy == "latency" and rf > 1:  # the tree runs at II = RF: HLS relaxes its registers
        tree_ff *= calib.ff_shared_tree_factor
    est.add("adders", LUT=add_lut, FF=tree_ff)
    mult_stages = int(calib.t_mult_ns // _effective_period(clock_period_ns, calib))
    # pipelined multipliers shared over the reuse loop (resource strategy, or latency with RF > 1)
    shared_mults = n_mult if (spec.strategy == "resource" or (rf > 1 and cls != "const")) else 0
    if shared_mults and mult_stages:
        est.add("multipliers", FF=shared_mults * (a + w) * calib.ff_per_mult_bit * mult_stages)
    if spec.strategy == "latency" and rf > 1:
        # the reuse loop computes the nonzero products over RF cycles; each is registered until the sum
        est.add("products", FF=nnz * min(a + w, acc) * calib.ff_prod_reg_per_bit)
    est.add("control", LUT=calib.lut_layer_base, FF=calib.ff_layer_base)
    if spec.extra.get("fused_activation"):
        # the fused ReLU's round-and-saturate cast, costed like a narrowing activation, per output lane
        est.add("output_cast", LUT=spec.n_out * calib.lut_act_narrow_per_elem)

    if spec.io_type == "io_parallel":
        if spec.kind != "dense":
            # hls4ml 1.3 io_parallel convolution: the kernel is instantiated ParallelizationFactor times and
            # iterates over out_pixels / ParallelizationFactor partitions
            pf = max(1, int(spec.extra.get("parallelization", 1)))
            if pf > 1:
                for part, res in list(est.parts.items()):
                    if part != "control":
                        est.add(part, **{k: v * (pf - 1) for k, v in res.items()})
            n_iter = _ceil_div(max(1, spec.out_pixels), pf)
            latency, ii = n_iter * ii + (latency - ii), n_iter * ii
        est.latency_cycles, est.ii_cycles = latency, ii
        est.fill_cycles = est.tail_cycles = est.latency_cycles
        return

    # io_stream
    if spec.kind == "dense":
        reads = _ceil_div(spec.n_in, max(1, spec.in_pack))
        writes = _ceil_div(spec.n_out, max(1, spec.out_pack))
        busy = reads + latency + writes
        est.latency_cycles = busy
        est.ii_cycles = busy
        est.fill_cycles = busy
        est.tail_cycles = latency + writes
        est.add("stream_io", FF=spec.n_in * a)  # the input array is registered
        return

    # convolutions: line buffer + window, one input pixel at a time
    kh, kw = (spec.kernel + (1, 1))[:2] if spec.kind.endswith("2d") else (1, (spec.kernel or (1,))[0])
    n_chan = spec.n_chan or spec.in_channels
    in_w = spec.input_shape[-2] if len(spec.input_shape) >= 2 else 1
    if kh > 1:
        est.add("line_buffer", LUT=(kh - 1) * n_chan * a * _ceil_div(in_w, 32))
    if kh * kw > 1:
        est.add("window", FF=kh * kw * n_chan * a)
    n_in_px, n_out_px = spec.in_pixels, spec.out_pixels
    if spec.strategy == "latency":
        px = max(rf, calib.stream_conv_min_ii)
        busy = n_in_px * px + depth
        fill_px = px
    else:
        px = rf + calib.resource_conv_overhead
        busy = n_out_px * px + max(0, n_in_px - n_out_px) * calib.resource_conv_skip_cycles + depth
        fill_px = calib.resource_conv_skip_cycles
    est.latency_cycles = busy
    est.ii_cycles = busy
    est.fill_cycles = ((kh - 1) * in_w + kw) * fill_px + latency
    est.tail_cycles = latency + px


def _estimate_other(spec: LayerSpec, clock_period_ns: float, calib: Calibration, est: LayerEstimate) -> None:
    kind = spec.kind
    stream = spec.io_type == "io_stream"
    ib, ob = spec.input_bits, spec.result_bits
    elem_lat = _elem_latency(clock_period_ns, calib)
    t_eff = _effective_period(clock_period_ns, calib)
    # elements handled in parallel: a whole tensor (io_parallel) or one stream word (io_stream)
    lanes_in = spec.in_pack if stream else spec.in_elems
    lanes_out = spec.out_pack if stream else spec.out_elems
    busy = 0
    depth = calib.elem_depth_cycles if stream else elem_lat

    if kind in _FREE_KINDS:
        est.latency_cycles = 0
        est.ii_cycles = 1
        return
    if kind == "activation" and spec.activation.lower() in ("softmax", "softmax_stable", "softmax_latency"):
        n = lanes_out if stream else spec.out_elems
        n = max(1, spec.out_channels if stream else n)
        # exp table read n times per cycle (dual-port copies) + one 1/x table, 1024 x 18 bits each
        est.add("tables", BRAM36=(_ceil_div(n, 2) + 1) / 2.0)
        if spec.mult_impl == "fabric":  # the n products by 1/sum in LUTs
            est.add("datapath", LUT=n * (calib.lut_softmax_per_elem + calib.lut_per_lutmult_bit2 * 18 * ob))
        else:
            est.add("datapath", DSP=n, LUT=n * calib.lut_softmax_per_elem)
        depth = int(math.ceil(calib.t_softmax_ns / t_eff))
        # every element's exp, product and the running sum are carried through each pipeline stage
        est.add("datapath", FF=n * depth * calib.ff_softmax_per_elem + calib.ff_softmax_base)
        busy = spec.out_pixels if stream else 1
    elif kind in ("activation", "batchnorm"):
        per_bit = calib.lut_elem_per_bit * (1.0 if kind == "activation" else 0.5)
        narrow = calib.lut_act_narrow_per_elem if (kind == "activation" and ob < ib) else 0.0
        est.add("datapath", LUT=lanes_in * ((ib + ob) * per_bit / 2.0 + narrow))
        if stream or elem_lat:  # registered once per stream word, or per pipeline stage of the top
            est.add("pipeline", FF=lanes_in * (ib + ob) * calib.ff_elem_per_bit / 2.0 * (1 if stream else elem_lat))
        busy = spec.in_pixels if stream else 1
    elif kind == "pooling":
        pool = math.prod(spec.kernel) if spec.kernel else 4
        n_chan = spec.in_channels
        windows = 1 if stream else spec.out_pixels  # io_parallel: every window at once
        est.add("compare", LUT=windows * n_chan * ib * max(1, pool - 1) * calib.lut_elem_per_bit)
        if stream:
            ph = spec.kernel[0] if len(spec.kernel) == 2 else 1
            in_w = spec.input_shape[-2] if len(spec.input_shape) >= 2 else 1
            if ph > 1:
                est.add("line_buffer", LUT=(ph - 1) * n_chan * ib * _ceil_div(in_w, 32))
            est.add("window", FF=pool * n_chan * ib * calib.ff_pool_window_factor)
            busy = spec.in_pixels
        else:
            busy = 1
    elif kind == "global_pooling":
        est.add("accumulate", LUT=spec.in_channels * (ib + 4) * calib.lut_elem_per_bit, FF=spec.in_channels * (ib + 4))
        busy = spec.in_pixels if stream else 1
    elif kind == "merge":
        est.add("datapath", LUT=lanes_out * ob * calib.lut_elem_per_bit * max(1, spec.n_inputs - 1))
        busy = spec.out_pixels if stream else 1
    elif kind in ("concat", "zeropad", "upsample", "clone"):
        est.add("datapath", LUT=lanes_out * ob * 0.25 * calib.lut_elem_per_bit)
        if stream:
            est.add("pipeline", FF=lanes_out * ob * 0.25)
        if stream and kind == "upsample" and len(spec.input_shape) >= 2:
            # nearest-neighbour upsampling re-emits each input row: the row sits in registers and is
            # read back through a W:1 multiplexer (4 inputs per LUT6) per channel bit
            in_w, n_chan = spec.input_shape[-2], spec.in_channels
            est.add("row_buffer", FF=in_w * n_chan * ib, LUT=n_chan * ib * _ceil_div(in_w, 4))
        busy = spec.out_pixels if stream and kind != "clone" else (spec.in_pixels if stream else 1)
    else:  # "other": a generic element-wise layer, flagged
        est.add("datapath", LUT=lanes_out * (ib + ob) * calib.lut_elem_per_bit)
        busy = spec.out_pixels if stream else 1
        est.notes.append(f"{spec.class_name or kind}: no specific model, estimated as an element-wise layer")
    # io_parallel activations that fit in one cycle are inlined into the top: logic but no registers
    inlined = not stream and kind in ("activation", "batchnorm") and not elem_lat and "datapath" in est.parts
    inlined = inlined and "tables" not in est.parts
    est.add("control", LUT=calib.lut_layer_base, FF=0.0 if inlined else calib.ff_layer_base)

    if stream:
        est.latency_cycles = busy + depth
        est.ii_cycles = max(1, busy)
        est.fill_cycles = depth + 1
        est.tail_cycles = depth + 1
        if kind == "pooling" and len(spec.kernel) >= 1:
            ph = spec.kernel[0]
            pw = spec.kernel[-1]
            in_w = spec.input_shape[-2] if len(spec.input_shape) >= 2 else 1
            est.fill_cycles = (ph - 1) * in_w + pw + depth
    else:
        est.latency_cycles = depth
        est.ii_cycles = 1
        est.fill_cycles = est.tail_cycles = est.latency_cycles


def estimate_layer(
    spec: LayerSpec, clock_period_ns: float = 10.0, calib: Calibration = DEFAULT_CALIBRATION
) -> LayerEstimate:
    """Estimate one layer's resources, latency and II (FIFOs between layers are added by `estimate_design`)."""
    est = LayerEstimate(name=spec.name, kind=spec.kind, reuse_factor=spec.reuse_factor, strategy=spec.strategy)
    if spec.is_mac:
        _estimate_mac(spec, clock_period_ns, calib, est)
    else:
        _estimate_other(spec, clock_period_ns, calib, est)
    return est


# --------------------------------------------------------------------------------------------------
# Whole design
# --------------------------------------------------------------------------------------------------


def _stream_fifos(specs: Sequence[LayerSpec]) -> list[tuple[int, int, int, bool]]:
    """(layer index, depth, width, SRL-bound) of every inter-layer FIFO in io_stream (hls4ml: depth = H*W)."""
    fifos = []
    last = len(specs) - 1
    for i, spec in enumerate(specs):
        if spec.kind in _FREE_KINDS or i == last:
            continue
        depth = int(spec.extra.get("fifo_depth", spec.out_pixels))
        split = max(1, int(spec.extra.get("fifo_split", 1)))  # hls4ml < 0.6: one FIFO per channel
        width = _ceil_div(spec.out_pack, split) * spec.result_bits
        srl = spec.extra.get("fifo_impl") == "srl"
        for _ in range(max(1, spec.n_output_streams) * split):
            fifos.append((i, depth, width, srl))
    return fifos


def _wrapper_estimate(
    specs: Sequence[LayerSpec], io_type: str, clock_period_ns: float, calib: Calibration, pipelined: bool = False
) -> LayerEstimate:
    first = next((s for s in specs if s.kind != "input"), specs[0])
    inp = specs[0] if specs[0].kind == "input" else first
    n_in = inp.out_elems if inp.kind == "input" else first.in_elems
    in_bits = inp.result_bits if inp.kind == "input" else first.input_bits
    last = specs[-1]
    n_out = last.out_elems
    est = LayerEstimate(name="axi_wrapper", kind="other")
    est.add("converters", LUT=calib.axi_lut_base, FF=calib.axi_ff_base)
    if io_type == "io_parallel":
        io_bits = n_in * in_bits + n_out * last.result_bits
        est.add(
            "io_arrays",
            LUT=calib.axi_lut_parallel_extra + calib.axi_per_io_bit * io_bits,
            FF=calib.axi_ff_parallel_extra + calib.axi_per_io_bit * io_bits,
        )
        est.latency_cycles = n_in + n_out + calib.axi_latency_cycles
        est.ii_cycles = 1
    else:
        in_pack = inp.out_pack if inp.kind == "input" else first.in_pack
        in_px = max(1, n_in // max(1, in_pack))
        out_px = max(1, n_out // max(1, last.out_pack))
        for part, res in (
            ("in_local", fifo_cost(in_px, in_pack * in_bits, calib)),
            ("out_local", fifo_cost(out_px, last.out_pack * last.result_bits, calib)),
        ):
            if res:
                est.add(part, **res)
        # hls4ml's copy loops run sequentially (~axi_elem_ns per element); fireflow pipelines them (II=1)
        cyc = 1 if pipelined else int(math.ceil(calib.axi_elem_ns / _effective_period(clock_period_ns, calib)))
        est.ii_cycles_in = n_in * cyc
        est.ii_cycles_out = n_out * cyc
        est.ii_cycles = max(n_in, n_out) * cyc
        est.latency_cycles = calib.axi_latency_cycles
        est.fill_cycles = in_pack * cyc + calib.axi_latency_cycles
        est.tail_cycles = last.out_pack * cyc + calib.axi_latency_cycles
    return est


def estimate_design(
    specs: Sequence[LayerSpec],
    clock_period_ns: float = 10.0,
    io_type: str | None = None,
    *,
    backend: str = "VivadoAccelerator",
    calib: Calibration = DEFAULT_CALIBRATION,
    layer_estimates: Sequence[LayerEstimate] | None = None,
    axi_pipelined: bool = False,
) -> DesignEstimate:
    """Estimate a whole design: the layers in graph order, FIFOs (io_stream) and the AXI wrapper.

    ``backend="VivadoAccelerator"`` adds the ``myproject_axi`` wrapper; ``"Vivado"``/``"Vitis"`` do not.
    ``axi_pipelined``: the wrapper's copy loops carry ``PIPELINE II=1`` (fireflow adds it; hls4ml does not).
    ``layer_estimates`` may pass precomputed per-layer estimates (used by `fit_to_budget`).
    """
    if not specs:
        raise ValueError("estimate_design needs at least one layer")
    io_type = io_type or specs[0].io_type
    if io_type not in IO_TYPES:
        raise ValueError(f"io_type {io_type!r} must be one of {list(IO_TYPES)}")
    layers = (
        list(layer_estimates)
        if layer_estimates is not None
        else [estimate_layer(s, clock_period_ns, calib) for s in specs]
    )
    totals = _zero_resources()
    notes: list[str] = []
    for lay in layers:
        for k, v in lay.resources.items():
            totals[k] += v
        notes.extend(f"{lay.name}: {n}" for n in lay.notes)

    fifo_res = _zero_resources()
    if io_type == "io_stream":
        for _i, depth, width, srl in _stream_fifos(specs):
            for k, v in fifo_cost(depth, width, calib, force_srl=srl).items():
                fifo_res[k] += v
        for k, v in fifo_res.items():
            totals[k] += v

    if io_type == "io_parallel" and calib.ff_parallel_reg_per_bit:
        # the top is one pipeline: every layer's output array is registered between the layers
        reg_bits = sum(s.out_elems * s.result_bits for s in specs if s.kind not in _FREE_KINDS)
        totals["FF"] += reg_bits * calib.ff_parallel_reg_per_bit
        notes.append(f"layer output registers of the top pipeline: {reg_bits * calib.ff_parallel_reg_per_bit:.0f} FF")

    wrapper = None
    if backend == "VivadoAccelerator":
        wrapper = _wrapper_estimate(specs, io_type, clock_period_ns, calib, axi_pipelined)
        for k, v in wrapper.resources.items():
            totals[k] += v

    # latency / II
    if io_type == "io_parallel":
        # the layers run back to back in one pipeline; the top adds parallel_layer_cycles between them
        n_steps = sum(1 for s in specs if s.kind not in _FREE_KINDS)
        latency = sum(lay.latency_cycles for lay in layers) + calib.parallel_layer_cycles * n_steps
        ii = max((lay.ii_cycles for lay in layers), default=1)
        if wrapper is not None:
            latency += wrapper.latency_cycles
            ii = latency + 1  # myproject_axi is not pipelined
    else:
        latency, ii = _dataflow_timing(specs, layers, wrapper)
        if wrapper is not None and wrapper.ii_cycles >= ii:
            notes.append(
                f"axi_wrapper: the float<->fixed conversion loops ({wrapper.ii_cycles} cycles per image) "
                f"limit the throughput, not the network ({ii} cycles)"
            )
            ii = wrapper.ii_cycles
    est = DesignEstimate(
        layers=layers,
        resources=totals,
        latency_cycles=int(latency),
        ii_cycles=int(max(1, ii)),
        clock_period_ns=clock_period_ns,
        io_type=io_type,
        backend=backend,
        wrapper=wrapper,
        notes=notes,
    )
    if io_type == "io_stream":
        est.notes.append(
            "stream FIFOs: " + ", ".join(f"{k} {v:.1f}" for k, v in fifo_res.items() if v)
            if any(fifo_res.values())
            else "stream FIFOs: none"
        )
    return est


def _dataflow_timing(
    specs: Sequence[LayerSpec], layers: Sequence[LayerEstimate], wrapper: LayerEstimate | None = None
) -> tuple[int, int]:
    """First/last output times through the dataflow graph (layers in topological order).

    Producers are found by tensor names in ``spec.extra["inputs"]``/``["outputs"]`` when present,
    otherwise each layer consumes the previous one. With the AXI wrapper, its input loop is a first
    stage (one element every ``cyc`` cycles) and its output loop a last stage.
    """
    produced: dict[str, tuple[int, int]] = {}
    prev = (0, 0)
    if wrapper is not None:
        prev = (wrapper.fill_cycles, wrapper.ii_cycles_in)
    for spec, lay in zip(specs, layers):
        ins = spec.extra.get("inputs")
        times = [produced[t] for t in ins if t in produced] if ins else []
        if not times:
            times = [prev]
        first_in = max(t[0] for t in times)
        last_in = max(t[1] for t in times)
        if spec.kind in _FREE_KINDS:
            first_out, last_out = first_in, last_in
        else:
            first_out = first_in + lay.fill_cycles
            last_out = max(last_in + lay.tail_cycles, first_in + lay.latency_cycles)
        prev = (first_out, last_out)
        for t in spec.extra.get("outputs", []) or []:
            produced[t] = prev
    ii = max((lay.ii_cycles for s, lay in zip(specs, layers) if s.kind not in _FREE_KINDS), default=1)
    latency = prev[1]
    if wrapper is not None:
        latency = max(prev[1] + wrapper.tail_cycles, prev[0] + wrapper.ii_cycles_out)
    return int(latency), int(ii)


# --------------------------------------------------------------------------------------------------
# Reading an hls4ml ModelGraph
# --------------------------------------------------------------------------------------------------

_CLASS_KIND = {
    "Dense": "dense",
    "Conv1D": "conv1d",
    "Conv2D": "conv2d",
    "Conv2DBatchnorm": "conv2d",
    "PointwiseConv1D": "pointwise_conv1d",
    "PointwiseConv2D": "pointwise_conv2d",
    "Pooling1D": "pooling",
    "Pooling2D": "pooling",
    "GlobalPooling1D": "global_pooling",
    "GlobalPooling2D": "global_pooling",
    "Activation": "activation",
    "ParametrizedActivation": "activation",
    "PReLU": "activation",
    "Softmax": "activation",
    "HardActivation": "activation",
    "BatchNormalization": "batchnorm",
    "Merge": "merge",
    "Concatenate": "concat",
    "ZeroPadding1D": "zeropad",
    "ZeroPadding2D": "zeropad",
    "Resize": "upsample",
    "Reshape": "reshape",
    "Flatten": "flatten",
    "Clone": "clone",
    "Input": "input",
    "InputLayer": "input",
}


def _width(type_obj: object, default: int) -> int:
    prec = getattr(type_obj, "precision", type_obj)
    width = getattr(prec, "width", None)
    return int(width) if width else default


def _kind_of(layer: object) -> str:
    for cls in type(layer).__mro__:
        kind = _CLASS_KIND.get(cls.__name__)
        if kind:
            return kind
    return _CLASS_KIND.get(getattr(layer, "class_name", ""), "other")


def describe_hls_model(hls_model: object) -> list[LayerSpec]:
    """Read an hls4ml 1.3 ``ModelGraph`` into `LayerSpec`s (graph order).

    Takes kinds from the layer classes, shapes and sizes from the attributes hls4ml's templates use
    (``n_in``, ``n_chan``, ``filt_height``, ...), bit widths from the precision types (``result_t``,
    ``accum_t``, the weight variable's type), zero counts from ``WeightVariable.nzeros``, reuse factor
    and strategy as the backend validated them, and ``IOType`` from the model config.
    """
    config = hls_model.config
    io_type = config.get_config_value("IOType") or "io_parallel"
    specs: list[LayerSpec] = []
    for layer in hls_model.get_layers():
        specs.append(_describe_layer(layer, io_type))
    return specs


def _var_pack(var: object) -> int | None:
    typ = getattr(var, "type", None)
    n_elem = getattr(typ, "n_elem", None)
    n_pack = getattr(typ, "n_pack", 1) or 1
    if n_elem is None:
        return None
    return int(n_elem) * int(n_pack) if getattr(typ, "unpack", False) else max(1, int(n_elem) // int(n_pack))


def _describe_layer(layer: object, io_type: str) -> LayerSpec:
    kind = _kind_of(layer)
    attr = layer.get_attr
    out_var = layer.get_output_variable()
    in_vars = [layer.get_input_variable(i) for i in (layer.inputs or [])]
    in_vars = [v for v in in_vars if v is not None]
    in_var = in_vars[0] if in_vars else None
    out_shape = tuple(int(x) for x in out_var.shape)
    in_shape = tuple(int(x) for x in in_var.shape) if in_var is not None else out_shape
    result_bits = _width(out_var.type, 16)
    input_bits = _width(in_var.type, 16) if in_var is not None else result_bits
    accum_t = attr("accum_t")
    accum_bits = _width(accum_t, result_bits) if accum_t is not None else result_bits
    accum_prec = getattr(accum_t, "precision", None)
    accum_saturate = "SAT" in str(getattr(accum_prec, "saturation_mode", "") or "").upper()
    extra: dict = {
        "inputs": list(layer.inputs or []),
        "outputs": list(layer.outputs or []),
    }
    if io_type == "io_stream":
        pack = _var_pack(out_var)
        if pack:
            extra["out_pack"] = pack
        if in_var is not None:
            ipack = _var_pack(in_var)
            if ipack:
                extra["in_pack"] = ipack
        pragma = getattr(out_var, "pragma", None)
        if isinstance(pragma, tuple) and len(pragma) == 2 and pragma[0] == "stream":
            extra["fifo_depth"] = int(pragma[1])
        if getattr(out_var, "fifo_impl", None) == "srl":  # set by flows.convert.set_fifo_depths
            extra["fifo_impl"] = "srl"

    kw: dict = {
        "name": layer.name,
        "kind": kind,
        "class_name": layer.class_name,
        "input_shape": in_shape,
        "output_shape": out_shape,
        "input_bits": input_bits,
        "result_bits": result_bits,
        "accum_bits": accum_bits,
        "accum_saturate": accum_saturate,
        "reuse_factor": int(attr("reuse_factor", 1) or 1),
        "strategy": "resource" if str(attr("strategy", "latency")).lower().startswith("resource") else "latency",
        "io_type": io_type,
        "n_in": int(math.prod(in_shape)) if in_shape else 0,
        "n_out": int(math.prod(out_shape)) if out_shape else 0,
        "extra": extra,
    }
    if kind in MAC_KINDS:
        if attr("fused_activation"):  # flows/hls_passes.py: a ReLU became this layer's output cast
            extra["fused_activation"] = str(attr("fused_activation"))
        weight = layer.get_weights("weight")
        n_weights = int(weight.data.size)
        nzeros = int(getattr(weight, "nzeros", 0) or 0)
        kw["weight_bits"] = _width(weight.type, 16)
        kw["n_weights"] = n_weights
        kw["n_nonzero"] = n_weights - nzeros
        if kind == "dense":
            kw["n_in"], kw["n_out"] = int(attr("n_in")), int(attr("n_out"))
        else:
            n_chan, n_filt = int(attr("n_chan")), int(attr("n_filt"))
            fw = int(attr("filt_width", 1))
            fh = int(attr("filt_height", 1)) if kind.endswith("2d") else 1
            kw["n_chan"], kw["filters"] = n_chan, n_filt
            kw["kernel"] = (fh, fw) if kind.endswith("2d") else (fw,)
            sw = int(attr("stride_width", 1))
            kw["stride"] = (int(attr("stride_height", 1)), sw) if kind.endswith("2d") else (sw,)
            kw["n_in"], kw["n_out"] = fh * fw * n_chan, n_filt
            extra["parallelization"] = int(attr("parallelization_factor", 1) or 1)
    elif kind == "pooling":
        if attr("pool_height") is not None:
            kw["kernel"] = (int(attr("pool_height")), int(attr("pool_width")))
            kw["stride"] = (int(attr("stride_height", 1)), int(attr("stride_width", 1)))
        else:
            kw["kernel"] = (int(attr("pool_width", 2)),)
            kw["stride"] = (int(attr("stride_width", 1)),)
    elif kind == "activation":
        act = str(attr("activation", "") or layer.class_name)
        kw["activation"] = "softmax" if "softmax" in act.lower() or layer.class_name == "Softmax" else act.lower()
    elif kind in ("concat", "merge"):
        kw["n_inputs"] = len(in_vars)
    elif kind == "clone":
        kw["n_output_streams"] = len(layer.outputs or [1, 1])
    return LayerSpec(**kw)


# --------------------------------------------------------------------------------------------------
# Valid reuse factors (hls4ml's rules, computed fast)
# --------------------------------------------------------------------------------------------------


def _is_valid_rf(n_in: int, n_out: int, rf: int) -> bool:
    """hls4ml's ``FPGABackend._validate_reuse_factor`` (functional correctness and QoR rules)."""
    multfactor = min(n_in, rf)
    multiplier_limit = _ceil_div(n_in * n_out, multfactor)
    ok = (multiplier_limit % n_out == 0) or (rf >= n_in)
    ok = ok and ((rf % n_in == 0) or (rf < n_in))
    return ok and ((n_in * n_out) % rf == 0)


@lru_cache(maxsize=4096)
def _valid_rfs_cached(n_in: int, n_out: int) -> tuple[int, ...]:
    n = n_in * n_out
    divisors: set[int] = set()
    i = 1
    while i * i <= n:
        if n % i == 0:
            divisors.add(i)
            divisors.add(n // i)
        i += 1
    return tuple(rf for rf in sorted(divisors) if _is_valid_rf(n_in, n_out, rf))


def valid_reuse_factors(n_in: int, n_out: int) -> list[int]:
    """The reuse factors hls4ml accepts for a kernel of ``n_in x n_out`` (same set as
    ``FPGABackend.get_valid_reuse_factors``, found among the divisors of ``n_in*n_out``)."""
    if n_in <= 0 or n_out <= 0:
        return [1]
    return list(_valid_rfs_cached(int(n_in), int(n_out)))


# --------------------------------------------------------------------------------------------------
# Fit to a board's budget
# --------------------------------------------------------------------------------------------------


@dataclass
class LayerChoice:
    """The configuration chosen for one MAC layer."""

    name: str
    reuse_factor: int
    strategy: str

    def to_dict(self) -> dict:
        return {"name": self.name, "reuse_factor": self.reuse_factor, "strategy": self.strategy}


@dataclass
class FitResult:
    """Outcome of `fit_to_budget`: one choice per MAC layer, the estimate it gives, and why."""

    fits: bool
    choices: dict[str, LayerChoice]
    estimate: DesignEstimate
    specs: list[LayerSpec]
    budget: dict[str, float]
    explanation: str
    steps: int = 0
    source: str = SOURCE

    def hls_config(self) -> dict:
        """The per-layer part of an hls4ml config: ``{"LayerName": {name: {"ReuseFactor", "Strategy"}}}``."""
        return {
            "LayerName": {
                c.name: {"ReuseFactor": c.reuse_factor, "Strategy": c.strategy.capitalize()}
                for c in self.choices.values()
            }
        }

    def to_dict(self) -> dict:
        return {
            "fits": self.fits,
            "choices": [c.to_dict() for c in self.choices.values()],
            "budget": dict(self.budget),
            "utilization": {k: round(v, 4) for k, v in self.estimate.utilization(self.budget).items()},
            "estimate": self.estimate.to_dict(),
            "explanation": self.explanation,
            "steps": self.steps,
            "source": self.source,
        }


def _max_ratio(res: Mapping[str, float], budget: Mapping[str, float]) -> tuple[float, str]:
    worst, which = 0.0, "LUT"
    for k in RESOURCE_KINDS:
        have = float(budget.get(k, 0.0))
        use = float(res.get(k, 0.0))
        r = use / have if have > 0 else (0.0 if use <= 1e-9 else math.inf)
        if r > worst:
            worst, which = r, k
    return worst, which


def _candidate_configs(spec: LayerSpec, strategies: Iterable[str], calib: Calibration) -> list[tuple[int, str]]:
    """All (RF, strategy) pairs hls4ml accepts for a MAC layer, fastest first."""
    rfs = valid_reuse_factors(spec.n_in, spec.n_out)
    out = []
    for strat in strategies:
        if strat == "latency" and spec.n_in * spec.n_out > calib.latency_max_weights:
            continue
        out.extend((rf, strat) for rf in rfs)
    return out


@dataclass
class _Evaluator:
    """Cached layer estimates per (layer index, RF, strategy) and whole-design estimates, for the searches."""

    specs: Sequence[LayerSpec]
    clock_period_ns: float
    io_type: str
    backend: str
    calib: Calibration
    axi_pipelined: bool
    cache: dict = field(default_factory=dict)

    def layer(self, i: int, rf: int, strat: str) -> LayerEstimate:
        key = (i, rf, strat)
        if key not in self.cache:
            self.cache[key] = estimate_layer(self.specs[i].with_config(rf, strat), self.clock_period_ns, self.calib)
        return self.cache[key]

    def design(self, cur: Sequence[LayerSpec], lays: Sequence[LayerEstimate]) -> DesignEstimate:
        return estimate_design(
            cur,
            self.clock_period_ns,
            self.io_type,
            backend=self.backend,
            calib=self.calib,
            layer_estimates=lays,
            axi_pipelined=self.axi_pipelined,
        )


def fit_to_budget(
    specs: Sequence[LayerSpec],
    budget: Mapping[str, float],
    clock_period_ns: float = 10.0,
    *,
    io_type: str | None = None,
    backend: str = "VivadoAccelerator",
    calib: Calibration = DEFAULT_CALIBRATION,
    strategies: Sequence[str] = STRATEGIES,
    margin: float = 1.0,
    max_steps: int = 2000,
    axi_pipelined: bool = False,
) -> FitResult:
    """Choose reuse factors and strategies so that the estimate fits ``budget`` (each resource scaled by ``margin``).

    If the design fits as given it is returned unchanged. Otherwise a greedy search runs:

    1. Start from the fastest configuration: RF 1 for every MAC layer, latency strategy where allowed
       (resource strategy for layers with more than ``calib.latency_max_weights`` weights).
    2. Find the binding resource (highest used/budget). For every MAC layer and every other valid
       (RF, strategy) of that layer (`valid_reuse_factors`, the values hls4ml accepts), compute the
       saving in the binding resource and the cost: the cycles it adds to the design II (weighted
       1000x) and to the layer latency. Take the move with the best ``saving / (1 + cost)``: moves that
       do not lengthen the II (the layer stays faster than the slowest one) come first.
    3. Repeat until the design fits, or no move saves anything on the binding resource; then
       ``fits=False`` with the smallest design seen (lowest maximum utilization) and an explanation.

    Layer estimates are cached per (layer, RF, strategy), so a step costs a few dictionary lookups per
    candidate; visited configurations are not revisited.
    """
    if not specs:
        raise ValueError("fit_to_budget needs at least one layer")
    io_type = io_type or specs[0].io_type
    strategies = tuple(s.lower() for s in strategies)
    bad = [s for s in strategies if s not in STRATEGIES]
    if bad or not strategies:
        raise ValueError(f"strategies {list(strategies)} must be a non-empty subset of {list(STRATEGIES)}")
    eff_budget = {k: float(budget.get(k, 0.0)) * margin for k in RESOURCE_KINDS}
    specs = [replace(s, io_type=io_type, extra=dict(s.extra)) for s in specs]
    mac_idx = [i for i, s in enumerate(specs) if s.is_mac]

    def choices_of(cur: Sequence[LayerSpec]) -> dict[str, LayerChoice]:
        return {cur[i].name: LayerChoice(cur[i].name, cur[i].reuse_factor, cur[i].strategy) for i in mac_idx}

    ev = _Evaluator(specs, clock_period_ns, io_type, backend, calib, axi_pipelined)
    design = ev.design
    layer_est = ev.layer

    given_layers = [estimate_layer(s, clock_period_ns, calib) for s in specs]
    given = design(specs, given_layers)
    if given.fits(eff_budget):
        return FitResult(
            True,
            choices_of(specs),
            given,
            list(specs),
            eff_budget,
            "The design fits as configured: " + _utilization_text(given, eff_budget) + ".",
            0,
        )

    cands = {i: _candidate_configs(specs[i], strategies, calib) for i in mac_idx}
    for i in mac_idx:
        if not cands[i]:
            raise ValueError(f"layer {specs[i].name}: no strategy in {list(strategies)} is possible")
    cur = list(specs)
    lays = list(given_layers)
    for i in mac_idx:  # fastest start
        rf, strat = cands[i][0]
        cur[i] = specs[i].with_config(rf, strat)
        lays[i] = layer_est(i, rf, strat)
    est = design(cur, lays)
    best_est, best_specs = est, list(cur)
    best_ratio = _max_ratio(est.resources, eff_budget)[0]
    seen = {tuple((cur[i].reuse_factor, cur[i].strategy) for i in mac_idx)}
    steps = 0
    while steps < max_steps:
        ratio, binding = _max_ratio(est.resources, eff_budget)
        if ratio <= 1.0:
            break
        steps += 1
        state = [(cur[i].reuse_factor, cur[i].strategy) for i in mac_idx]
        best_move: tuple[float, int, int, str] | None = None
        for pos, i in enumerate(mac_idx):
            now = lays[i]
            for rf, strat in cands[i]:
                if (rf, strat) == state[pos]:
                    continue
                nl = layer_est(i, rf, strat)
                saving = now.resources[binding] - nl.resources[binding]
                if saving <= 1e-9:
                    continue
                nxt = state[:pos] + [(rf, strat)] + state[pos + 1 :]
                if tuple(nxt) in seen:
                    continue
                d_ii = max(0, nl.ii_cycles - est.ii_cycles)
                d_lat = max(0, nl.latency_cycles - now.latency_cycles)
                score = saving / (1.0 + 1000.0 * d_ii + d_lat)
                if best_move is None or score > best_move[0]:
                    best_move = (score, i, rf, strat)
        if best_move is None:
            break
        _score, i, rf, strat = best_move
        cur[i] = specs[i].with_config(rf, strat)
        lays[i] = layer_est(i, rf, strat)
        seen.add(tuple((cur[j].reuse_factor, cur[j].strategy) for j in mac_idx))
        est = design(cur, lays)
        r = _max_ratio(est.resources, eff_budget)[0]
        if r < best_ratio:
            best_ratio, best_est, best_specs = r, est, list(cur)

    if est.fits(eff_budget):
        text = (
            f"Fits after {steps} step(s): " + _utilization_text(est, eff_budget) + f"; II {est.ii_cycles} cycles, "
            f"latency {est.latency_cycles} cycles ({est.latency_us:.1f} us at {clock_period_ns:g} ns). "
            + _choices_text(cur, mac_idx)
        )
        log.info("fit_to_budget: %s", text)
        return FitResult(True, choices_of(cur), est, cur, eff_budget, text, steps)

    text = _infeasible_text(best_est, best_specs, eff_budget, mac_idx)
    log.warning("fit_to_budget: %s", text)
    return FitResult(False, choices_of(best_specs), best_est, best_specs, eff_budget, text, steps)


def _area(res: Mapping[str, float], budget: Mapping[str, float]) -> float:
    """Size of a design in board fractions: sum of used/budget over the resources the board has."""
    return sum(float(res.get(k, 0.0)) / float(budget[k]) for k in RESOURCE_KINDS if float(budget.get(k, 0.0)) > 0)


def shrink_to_ii(
    specs: Sequence[LayerSpec],
    budget: Mapping[str, float],
    clock_period_ns: float = 10.0,
    *,
    target_ii: int | None = None,
    io_type: str | None = None,
    backend: str = "VivadoAccelerator",
    calib: Calibration = DEFAULT_CALIBRATION,
    strategies: Sequence[str] = STRATEGIES,
    pinned: Iterable[str] = (),
    axi_pipelined: bool = False,
    max_steps: int = 500,
) -> FitResult:
    """Area recovery: the smallest design whose II stays at most ``target_ii`` (FINN's folding to a target rate).

    Starts from ``specs`` as configured (normally the output of `fit_to_budget`); ``target_ii`` defaults to
    their II, so the throughput is kept and only layers with slack get slower. Greedy: each step takes the
    (RF, strategy) move of one MAC layer that lowers the area most, where area is the sum of used/budget
    over the board's resources; a move is kept only if the design's II stays at most ``target_ii`` and,
    if the design fitted ``budget``, it still does. Latency may grow (a layer with slack finishes later).
    Layers named in ``pinned`` (reuse factors the user set) are left alone. Returns a `FitResult` whose
    ``fits`` says whether the
    final design fits the budget.
    """
    if not specs:
        raise ValueError("shrink_to_ii needs at least one layer")
    io_type = io_type or specs[0].io_type
    strategies = tuple(s.lower() for s in strategies)
    specs = [replace(s, io_type=io_type, extra=dict(s.extra)) for s in specs]
    pinned = set(pinned)
    free = [i for i, s in enumerate(specs) if s.is_mac and s.name not in pinned]
    mac_idx = [i for i, s in enumerate(specs) if s.is_mac]
    eff_budget = {k: float(budget.get(k, 0.0)) for k in RESOURCE_KINDS}
    ev = _Evaluator(specs, clock_period_ns, io_type, backend, calib, axi_pipelined)
    design = ev.design
    layer_est = ev.layer

    cur = list(specs)
    lays = [
        layer_est(i, s.reuse_factor, s.strategy) if s.is_mac else estimate_layer(s, clock_period_ns, calib)
        for i, s in enumerate(specs)
    ]
    est = design(cur, lays)
    start_est = est
    goal = int(target_ii) if target_ii else est.ii_cycles
    cands = {i: [c for c in _candidate_configs(specs[i], strategies, calib)] for i in free}
    rejected: set[tuple[int, int, str]] = set()
    steps = 0
    while steps < max_steps:
        area = _area(est.resources, eff_budget)
        moves = []
        for i in free:
            now = lays[i]
            for rf, strat in cands[i]:
                if (rf, strat) == (cur[i].reuse_factor, cur[i].strategy) or (i, rf, strat) in rejected:
                    continue
                nl = layer_est(i, rf, strat)
                if nl.ii_cycles > goal:
                    continue
                gain = _area(now.resources, eff_budget) - _area(nl.resources, eff_budget)
                if gain > 1e-9:
                    moves.append((gain, i, rf, strat, nl))
        if not moves:
            break
        moves.sort(key=lambda m: -m[0])
        taken = False
        for _gain, i, rf, strat, nl in moves:
            trial = list(cur)
            trial[i] = specs[i].with_config(rf, strat)
            trial_lays = list(lays)
            trial_lays[i] = nl
            t_est = design(trial, trial_lays)
            keeps_fit = t_est.fits(eff_budget) or not est.fits(eff_budget)
            if t_est.ii_cycles <= goal and keeps_fit and _area(t_est.resources, eff_budget) < area:
                cur, lays, est, taken = trial, trial_lays, t_est, True
                break
            rejected.add((i, rf, strat))
        if not taken:
            break
        steps += 1

    saved = {k: start_est.resources[k] - est.resources[k] for k in RESOURCE_KINDS}
    text = (
        f"Area recovery at II <= {goal} cycles ({steps} step(s)): "
        + _utilization_text(est, eff_budget)
        + f"; II {est.ii_cycles} cycles, latency {est.latency_cycles} cycles"
        + (f" (saved LUT {saved['LUT']:.0f}, FF {saved['FF']:.0f}, DSP {saved['DSP']:.0f})" if steps else "")
        + ". "
        + _choices_text(cur, mac_idx)
    )
    log.info("shrink_to_ii: %s", text)
    choices = {cur[i].name: LayerChoice(cur[i].name, cur[i].reuse_factor, cur[i].strategy) for i in mac_idx}
    return FitResult(est.fits(eff_budget), choices, est, cur, eff_budget, text, steps)


def _utilization_text(est: DesignEstimate, budget: Mapping[str, float]) -> str:
    util = est.utilization(budget)
    return ", ".join(
        f"{k} {est.resources[k]:.0f}/{budget.get(k, 0):.0f} ({100 * util[k]:.0f}%)"
        for k in RESOURCE_KINDS
        if budget.get(k, 0) > 0 or est.resources[k] > 0
    )


def _choices_text(cur: Sequence[LayerSpec], mac_idx: Sequence[int]) -> str:
    return "Choices: " + ", ".join(f"{cur[i].name} RF {cur[i].reuse_factor} {cur[i].strategy}" for i in mac_idx) + "."


def _infeasible_text(
    est: DesignEstimate, specs: Sequence[LayerSpec], budget: Mapping[str, float], mac_idx: Sequence[int]
) -> str:
    util = est.utilization(budget)
    over = [k for k in RESOURCE_KINDS if util[k] > 1.0]
    parts = []
    for k in over:
        contrib: dict[str, float] = {}
        for lay in est.layers:
            for part, res in lay.parts.items():
                if res.get(k):
                    label = f"{lay.name}/{part}"
                    contrib[label] = contrib.get(label, 0.0) + res[k]
        fifo_total = est.resources[k] - sum(lay.resources[k] for lay in est.layers)
        if est.wrapper is not None:
            fifo_total -= est.wrapper.resources[k]
            if est.wrapper.resources[k]:
                contrib["axi_wrapper"] = est.wrapper.resources[k]
        if fifo_total > 1e-9:
            contrib["stream FIFOs"] = fifo_total
        top = sorted(contrib.items(), key=lambda kv: -kv[1])[:4]
        have = budget.get(k, 0.0)
        parts.append(
            f"{k} needs {est.resources[k]:.0f} but the budget is {have:.0f} ({100 * util[k]:.0f}%"
            + (")" if have > 0 else ", none available)")
            + "; largest users: "
            + ", ".join(f"{n} {v:.0f}" for n, v in top)
        )
    return (
        "Does not fit even with the largest valid reuse factors: "
        + "; ".join(parts)
        + ". Raising reuse factors cannot shrink FIFOs, line buffers, activations or the AXI wrapper; "
        "reduce the network (fewer channels, narrower precisions, pruning) or pick a larger board. "
        "Smallest design found: " + _utilization_text(est, budget) + ". " + _choices_text(specs, mac_idx)
    )
