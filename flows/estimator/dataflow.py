"""Whole-design estimates: layers, stream FIFOs, the AXI wrapper and dataflow timing (`estimate_design`).

* **FIFOs** (``io_stream``): every layer output is a FIFO of depth ``H*W`` (hls4ml's default, or the
  depth the project set) and width ``channels * bits``, costed by `flows.estimator.blocks.fifo_cost`.
  In ``io_parallel`` the top is one pipeline whose layer outputs are registered:
  ``ff_parallel_reg_per_bit`` per output bit of every layer.
* **Latency and II**. ``io_parallel``: the design's latency is the sum of the layers'
  (+ ``parallel_layer_cycles`` per layer), its II the largest. ``io_stream`` (dataflow): first/last
  output times are propagated through the graph (``first_out = first_in + fill``,
  ``last_out = max(last_in + tail, first_in + busy)``); latency is the last output, II the busiest layer.
* **VivadoAccelerator wrapper** (``myproject_axi``, float in/out): ``axi_lut_base``/``axi_ff_base`` for
  the two converters. ``io_parallel`` adds ``axi_lut_parallel_extra`` and ``axi_per_io_bit`` per bit
  of the in/out arrays, latency ``+ n_in + n_out + axi_latency_cycles``, and the top is not pipelined
  (II = latency + 1). ``io_stream`` adds the ``in_local``/``out_local`` FIFOs and loops that are not
  pipelined: ``ceil(axi_elem_ns / T_eff)`` cycles per element, which often sets the II of image
  models (one cycle per element when fireflow pipelines the loops, ``axi_pipelined``).

`DesignEstimate` holds the totals, with the per-layer estimates and the wrapper; estimates target
csynth, which over-reports LUTs relative to Vivado synthesis.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from flows.boards import RESOURCE_KINDS
from flows.estimator.blocks import ceil_div, effective_period, fifo_cost
from flows.estimator.calibration import DEFAULT_CALIBRATION, Calibration
from flows.estimator.layers import estimate_layer
from flows.estimator.spec import (
    FREE_KINDS,
    IO_TYPES,
    SOURCE,
    LayerEstimate,
    LayerSpec,
    figure,
    resource_unit,
    zero_resources,
)


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
        """Latency in microseconds at the clock period."""
        return self.latency_cycles * self.clock_period_ns / 1000.0

    def utilization(self, budget: Mapping[str, float]) -> dict[str, float]:
        """Fraction of the budget used per resource (inf where the budget is 0 and usage is not)."""
        out = {}
        for k in RESOURCE_KINDS:
            have = float(budget.get(k, 0.0))
            use = self.resources.get(k, 0.0)
            out[k] = use / have if have > 0 else (0.0 if use <= 0 else math.inf)
        return out

    def fits(self, budget: Mapping[str, float]) -> bool:
        """Whether every resource is within the budget."""
        return all(u <= 1.0 for u in self.utilization(budget).values())

    def layer(self, name: str) -> LayerEstimate:
        """The estimate of the layer called ``name`` (KeyError if there is none)."""
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
            "resources": {k: figure(v, resource_unit(k)) for k, v in self.resources.items()},
            "latency_cycles": figure(self.latency_cycles, "cycles"),
            "ii_cycles": figure(self.ii_cycles, "cycles"),
            "latency_us": figure(self.latency_us, "us"),
            "layers": [lay.to_dict() for lay in self.layers],
            "wrapper": self.wrapper.to_dict() if self.wrapper else None,
            "notes": list(self.notes),
        }


def _stream_fifos(specs: Sequence[LayerSpec]) -> list[tuple[int, int, int, bool]]:
    """(layer index, depth, width, SRL-bound) of every inter-layer FIFO in io_stream (hls4ml: depth = H*W)."""
    fifos = []
    last = len(specs) - 1
    for i, spec in enumerate(specs):
        if spec.kind in FREE_KINDS or i == last:
            continue
        depth = int(spec.extra.get("fifo_depth", spec.out_pixels))
        split = max(1, int(spec.extra.get("fifo_split", 1)))  # hls4ml < 0.6: one FIFO per channel
        width = ceil_div(spec.out_pack, split) * spec.result_bits
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
        # the wrapper's FIFOs take the depth of the graph's input/output streams (flows.hls_writer): hls4ml's
        # default is every word (in_px, out_px); the FIFO sizing or the sparse kernel's repacking may set less
        if inp.kind == "input":
            in_px = min(in_px, max(1, int(inp.extra.get("fifo_depth", in_px))))
        for part, res in (
            ("in_local", fifo_cost(in_px, in_pack * in_bits, calib)),
            ("out_local", fifo_cost(out_px, last.out_pack * last.result_bits, calib)),
        ):
            if res:
                est.add(part, **res)
        # hls4ml's copy loops run sequentially (~axi_elem_ns per element); fireflow pipelines them (II=1)
        cyc = 1 if pipelined else int(math.ceil(calib.axi_elem_ns / effective_period(clock_period_ns, calib)))
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
    totals = zero_resources()
    notes: list[str] = []
    for lay in layers:
        for k, v in lay.resources.items():
            totals[k] += v
        notes.extend(f"{lay.name}: {n}" for n in lay.notes)

    fifo_res = zero_resources()
    if io_type == "io_stream":
        for _i, depth, width, srl in _stream_fifos(specs):
            for k, v in fifo_cost(depth, width, calib, force_srl=srl).items():
                fifo_res[k] += v
        for k, v in fifo_res.items():
            totals[k] += v

    if io_type == "io_parallel" and calib.ff_parallel_reg_per_bit:
        # the top is one pipeline: every layer's output array is registered between the layers
        reg_bits = sum(s.out_elems * s.result_bits for s in specs if s.kind not in FREE_KINDS)
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
        n_steps = sum(1 for s in specs if s.kind not in FREE_KINDS)
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
        if spec.kind in FREE_KINDS:
            first_out, last_out = first_in, last_in
        else:
            first_out = first_in + lay.fill_cycles
            last_out = max(last_in + lay.tail_cycles, first_in + lay.latency_cycles)
        prev = (first_out, last_out)
        for t in spec.extra.get("outputs", []) or []:
            produced[t] = prev
    ii = max((lay.ii_cycles for s, lay in zip(specs, layers) if s.kind not in FREE_KINDS), default=1)
    latency = prev[1]
    if wrapper is not None:
        latency = max(prev[1] + wrapper.tail_cycles, prev[0] + wrapper.ii_cycles_out)
    return int(latency), int(ii)
