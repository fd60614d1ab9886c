"""The reference runs: real csynth reports of public hls4ml projects, and the networks behind them.

``reference_runs.json`` (beside this module, `REFERENCE_RUNS_FILE`) lists each synthesis run: where
its reports are under the shared reports folder (``../shared/reports``, see its MANIFEST.md), the
tool, part, backend and clock, and the network rebuilt by hand as `NetBuilder` operations (structure,
precisions, reuse factors, strategy, io type and zero-weight counts as the MANIFEST and the reports
give them; assumptions are written next to each run). `load_reference_runs` reads it into
`ReferenceRun`s; `estimate_run` and `layer_rows` put the estimator next to the reports, which are
read with the one report parser, `flows.hlsreport`. The fitter (`flows.estimator.fit`) and the
comparison (`flows.estimator.evaluation`) work on these.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field, replace
from functools import cache
from pathlib import Path

from flows.errors import DataError
from flows.estimator.calibration import Calibration
from flows.estimator.dataflow import estimate_design
from flows.estimator.layers import estimate_layer
from flows.estimator.spec import LayerSpec
from flows.hlsreport import parse_csynth, parse_csynth_instances, parse_utilization

REFERENCE_RUNS_FILE = Path(__file__).resolve().parent / "reference_runs.json"
METRICS = ("LUT", "FF", "DSP", "BRAM36", "latency", "II")
LAYER_METRICS = ("LUT", "FF", "DSP", "BRAM36", "latency")
VIVADO_METRICS = ("LUT", "FF", "DSP", "BRAM36")

Calibrations = dict[str, Calibration]
"""Calibration per HLS tool (``vivado_hls``, ``vitis_hls``)."""


def rel_err(est: float, real: float) -> float:
    """Relative error ``(estimate - real) / max(real, 1)``."""
    return (est - real) / max(real, 1.0)


class NetBuilder:
    """Builds a chain of `LayerSpec` while tracking the tensor shape and bit width.

    The operations are the ``layers`` of a run's ``net`` in ``reference_runs.json``:
    ``dense``, ``conv2d``, ``conv1d`` (``rf``, ``strategy``, ``wbits``, ``accum``, ``result`` bits,
    ``density`` or ``nnz``), ``act``, ``softmax``, ``batchnorm``, ``pool``, ``global_pool``,
    ``zeropad``, ``upsample`` and ``flatten``. Layer names are ``<kind><index>``.
    """

    def __init__(
        self, io_type: str, input_shape: tuple[int, ...], input_bits: int = 16, fifo_per_channel: bool = False
    ):
        self.io_type = io_type
        self.fifo_per_channel = fifo_per_channel  # hls4ml < 0.6 split every stream into one FIFO per channel
        self.shape = tuple(input_shape)
        self.bits = input_bits
        self.specs: list[LayerSpec] = [
            LayerSpec(
                "input", "input", self.shape, self.shape, result_bits=input_bits, input_bits=input_bits, io_type=io_type
            )
        ]

    def _push(self, kind: str, out_shape: tuple[int, ...], result_bits: int | None = None, **kw: object) -> None:
        result_bits = self.bits if result_bits is None else result_bits
        name = f"{kind}{len(self.specs)}"
        spec = LayerSpec(
            name,
            kind,
            self.shape,
            tuple(out_shape),
            input_bits=self.bits,
            result_bits=result_bits,
            io_type=self.io_type,
            **kw,
        )
        if self.fifo_per_channel:
            spec.extra["fifo_split"] = out_shape[-1]
        self.specs.append(spec)
        self.shape, self.bits = tuple(out_shape), result_bits

    def _mac(self, kind: str, out_shape: tuple[int, ...], n_in: int, n_out: int, total: int, **kw: object) -> None:
        density, nnz = kw.pop("density", 1.0), kw.pop("nnz", None)
        self._push(
            kind,
            out_shape,
            kw.pop("result", 16),
            n_in=n_in,
            n_out=n_out,
            n_weights=total,
            n_nonzero=int(nnz) if nnz is not None else int(round(total * density)),
            weight_bits=kw.pop("wbits", 16),
            accum_bits=kw.pop("accum", 16),
            reuse_factor=kw.pop("rf", 1),
            strategy=kw.pop("strategy", "latency"),
            accum_saturate=kw.pop("sat", False),
            **kw,
        )

    def dense(self, n_out: int, **kw: object) -> None:
        n_in = math.prod(self.shape)
        self._mac("dense", (n_out,), n_in, n_out, n_in * n_out, **kw)

    def conv2d(self, filters: int, k: int, stride: int = 1, **kw: object) -> None:
        h, w, c = self.shape
        out = ((h - k) // stride + 1, (w - k) // stride + 1, filters)
        kind = "pointwise_conv2d" if k == 1 else "conv2d"
        geometry = {"kernel": (k, k), "stride": (stride, stride), "n_chan": c, "filters": filters}
        self._mac(kind, out, k * k * c, filters, k * k * c * filters, **geometry, **kw)

    def conv1d(self, filters: int, k: int, stride: int = 1, **kw: object) -> None:
        w, c = self.shape
        geometry = {"kernel": (k,), "stride": (stride,), "n_chan": c, "filters": filters}
        self._mac("conv1d", ((w - k) // stride + 1, filters), k * c, filters, k * c * filters, **geometry, **kw)

    def act(self, name: str = "relu", result: int | None = None) -> None:
        self._push("activation", self.shape, result, activation=name)

    def softmax(self, result: int = 16, mult_impl: str = "auto") -> None:
        self._push("activation", self.shape, result, activation="softmax", mult_impl=mult_impl)

    def batchnorm(self) -> None:
        self._push("batchnorm", self.shape)

    def pool(self, size: int) -> None:
        if len(self.shape) == 3:
            h, w, c = self.shape
            self._push("pooling", (h // size, w // size, c), kernel=(size, size), stride=(size, size))
        else:
            w, c = self.shape
            self._push("pooling", (w // size, c), kernel=(size,), stride=(size,))

    def global_pool(self) -> None:
        self._push("global_pooling", (self.shape[-1],))

    def zeropad(self, pads: list[int]) -> None:
        if len(self.shape) == 3:
            top, bottom, left, right = pads
            h, w, c = self.shape
            self._push("zeropad", (h + top + bottom, w + left + right, c))
        else:
            left, right = pads
            w, c = self.shape
            self._push("zeropad", (w + left + right, c))

    def upsample(self, factor: int = 2) -> None:
        h, w, c = self.shape
        self._push("upsample", (h * factor, w * factor, c))

    def flatten(self) -> None:
        self._push("flatten", (math.prod(self.shape),))
        self.specs[-1].extra["out_pack"] = self.specs[-1].input_shape[-1]  # the stream keeps its packing

    def done(self) -> list[LayerSpec]:
        """The specs; in io_stream a layer reading a flattened stream reads the producer's words."""
        for prev, cur in zip(self.specs, self.specs[1:]):
            if prev.kind == "flatten":
                cur.extra["in_pack"] = prev.input_shape[-1]
        return self.specs


OPERATIONS = (
    "dense",
    "conv2d",
    "conv1d",
    "act",
    "softmax",
    "batchnorm",
    "pool",
    "global_pool",
    "zeropad",
    "upsample",
    "flatten",
)


@dataclass
class ReferenceRun:
    """One synthesis run: where its reports are, how to rebuild its network, and its cross-validation group."""

    key: str
    folder: str
    csynth: str  # top-level csynth report, relative to the folder
    tool: str
    part: str
    backend: str  # "VivadoAccelerator" adds the AXI wrapper (compare with the myproject_axi top)
    clock_ns: float
    net: dict  # io_type, input_shape, input_bits, fifo_per_channel, layers (NetBuilder operations)
    root: Path  # the shared reports folder
    modules: tuple[str | None, ...] = ()  # per-layer module report stems, one per layer after the input
    vivado: str | None = None  # report_utilization, relative to the folder
    vivado_scope: str = ""
    assumptions: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    uncertainty: float = 0.125
    group: str = ""  # cross-validation group: runs of one network are left out together (default: folder)

    @property
    def network(self) -> str:
        """The cross-validation group."""
        return self.group or self.folder

    @property
    def family(self) -> str:
        """Which calibration applies: the HLS tool that produced the report."""
        return "vitis_hls" if self.tool.startswith("Vitis") else "vivado_hls"

    @property
    def csynth_path(self) -> Path:
        """The top-level csynth report."""
        return self.root / self.folder / self.csynth

    def build(self) -> list[LayerSpec]:
        """The network as `LayerSpec`s, input layer first."""
        net = self.net
        builder = NetBuilder(
            net["io_type"], tuple(net["input_shape"]), net.get("input_bits", 16), net.get("fifo_per_channel", False)
        )
        for op in net["layers"]:
            args = dict(op)
            name = args.pop("op", None)
            if name not in OPERATIONS:
                raise DataError(f"reference run {self.key}: unknown layer operation {name!r} (one of {OPERATIONS})")
            try:
                getattr(builder, name)(**args)
            except (TypeError, ValueError) as exc:
                raise DataError(f"reference run {self.key}: layer {op}: {exc}") from None
        return builder.done()

    def calibration(self, calibs: Calibrations) -> Calibration:
        """The run's tool calibration with per-run facts that are not model constants: the part's DSP
        width (27x18 on UltraScale+) and the run's clock uncertainty."""
        dsp_a = 27 if self.part.startswith("xcu") else 25
        return replace(calibs[self.family], dsp_a_bits=dsp_a, clock_uncertainty=self.uncertainty)


def load_reference_runs(reports: Path, path: Path = REFERENCE_RUNS_FILE) -> list[ReferenceRun]:
    """The runs of ``path`` (default `REFERENCE_RUNS_FILE`), their reports under ``reports``."""
    try:
        data = json.loads(Path(path).read_text())
        runs = [
            ReferenceRun(**{**r, "modules": tuple(r.get("modules", ())), "root": Path(reports)}) for r in data["runs"]
        ]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise DataError(f"cannot read the reference runs {path}: {exc}") from None
    return runs


def known_misses(path: Path = REFERENCE_RUNS_FILE) -> list[str]:
    """Where the estimator is known to miss on the reference runs, and why (``known_misses`` of ``path``)."""
    return list(json.loads(Path(path).read_text()).get("known_misses", []))


@cache
def csynth_figures(path: Path) -> dict[str, float]:
    """``LUT FF DSP BRAM36 latency II`` of a csynth report (BRAM36 = BRAM_18K / 2; latency and II the maxima)."""
    r = parse_csynth(path)
    return {
        "LUT": float(r.lut),
        "FF": float(r.ff),
        "DSP": float(r.dsp),
        "BRAM36": r.bram_18k / 2.0,
        "latency": float(r.latency_max or 0),
        "II": float(r.interval_max or 0),
    }


@cache
def instance_figures(path: Path) -> dict[str, dict[str, float]]:
    """Per-module figures of a csynth text report's instance tables (`flows.hlsreport.parse_csynth_instances`)."""
    return parse_csynth_instances(path)


def utilization_figures(path: Path) -> dict[str, float]:
    """``LUT FF DSP BRAM36`` of a Vivado report_utilization (BRAM36: Block RAM tiles)."""
    r = parse_utilization(path)
    return {"LUT": float(r.lut), "FF": float(r.ff), "BRAM36": float(r.bram36), "DSP": float(r.dsp)}


def estimate_run(run: ReferenceRun, calibs: Calibrations) -> dict[str, float]:
    """The estimator's ``LUT FF DSP BRAM36 URAM latency II`` for a run, with the run's calibration."""
    specs = run.build()
    est = estimate_design(specs, run.clock_ns, specs[0].io_type, backend=run.backend, calib=run.calibration(calibs))
    out = dict(est.resources)
    out["latency"] = float(est.latency_cycles)
    out["II"] = float(est.ii_cycles)
    return out


def layer_rows(run: ReferenceRun, calibs: Calibrations) -> list[dict]:
    """Per-layer comparison with the module reports listed in ``run.modules``: the module's own
    ``<stem>_csynth.xml`` next to the top report, else its row in the top report's instance tables."""
    if not run.modules:
        return []
    specs = run.build()[1:]
    if len(specs) != len(run.modules):
        raise DataError(f"reference run {run.key}: {len(specs)} layers but {len(run.modules)} module names")
    calib = run.calibration(calibs)
    report_dir = run.csynth_path.parent
    top_rpt = run.csynth_path.with_suffix(".rpt")
    rows = []
    for spec, stem in zip(specs, run.modules):
        if stem is None:
            continue
        path = report_dir / f"{stem}_csynth.xml"
        if path.is_file():
            real = csynth_figures(path)
        else:  # the module's own report was not kept: its row in the top report's instance tables
            instances = instance_figures(top_rpt) if top_rpt.is_file() else {}
            if stem not in instances:
                raise DataError(f"reference run {run.key}: no {path} and no instance {stem!r} in {top_rpt}")
            real = instances[stem]
        lay = estimate_layer(spec, run.clock_ns, calib)
        est = dict(lay.resources)
        est["latency"] = float(lay.latency_cycles)
        rows.append(
            {
                "layer": spec.name,
                "kind": spec.activation if spec.activation == "softmax" else spec.kind,
                "module": stem,
                "estimate": {m: round(est[m], 1) for m in LAYER_METRICS},
                "csynth": {m: real[m] for m in LAYER_METRICS},
                "rel_error": {m: round(rel_err(est[m], real[m]), 4) for m in LAYER_METRICS},
            }
        )
    return rows
