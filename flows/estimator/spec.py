"""What the estimator reads and writes per layer: `LayerSpec` (one hls4ml layer) and `LayerEstimate`.

`LayerSpec` is the estimator's view of one hls4ml layer (kind, shapes, bit widths, weights and
nonzeros, reuse factor, strategy, io type); `flows.estimator.hls4ml_adapter` builds them from an
hls4ml ``ModelGraph``, tests and the reference runs build them by hand. `LayerEstimate` holds one
layer's resources (keyed by `flows.boards.RESOURCE_KINDS`), latency and II, broken down by part.
Every figure carries ``source="estimate"`` (`SOURCE`), as in every JSON the flow writes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

from flows.boards import RESOURCE_KINDS

SOURCE = "estimate"
STRATEGIES = ("latency", "resource")
FIXED_ESTIMATE = "fixed_estimate"  # LayerSpec.extra key: a layer costed by its own model (not searchable)
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
FREE_KINDS = ("input", "reshape", "flatten")


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


def zero_resources() -> dict[str, float]:
    """Zero of every resource kind."""
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
    resources: dict[str, float] = field(default_factory=zero_resources)
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
            "resources": {k: figure(v, resource_unit(k)) for k, v in self.resources.items()},
            "latency_cycles": figure(self.latency_cycles, "cycles"),
            "ii_cycles": figure(self.ii_cycles, "cycles"),
            "parts": {p: {k: round(v, 2) for k, v in r.items()} for p, r in self.parts.items()},
            "notes": list(self.notes),
            "source": self.source,
        }


def resource_unit(kind: str) -> str:
    """The unit of a resource kind in reports: 36 Kb blocks for BRAM36, a count otherwise."""
    return {"BRAM36": "36Kb blocks"}.get(kind, "count")


def figure(value: float, unit: str) -> dict:
    """One reported number with its provenance, as in every JSON the flow writes."""
    return {"value": round(float(value), 2), "unit": unit, "source": SOURCE}


def var_pack(var: object) -> int | None:
    """Elements per word of an io_stream variable (its packed type), or None when it has no packed type."""
    typ = getattr(var, "type", None)
    n_elem = getattr(typ, "n_elem", None)
    n_pack = getattr(typ, "n_pack", 1) or 1
    if n_elem is None:
        return None
    return int(n_elem) * int(n_pack) if getattr(typ, "unpack", False) else max(1, int(n_elem) // int(n_pack))
