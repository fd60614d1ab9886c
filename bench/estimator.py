"""Calibrate and validate the analytical estimator (`flows/estimate.py`) against real HLS reports.

The reports are the public hls4ml projects in ``../shared/reports`` (see its MANIFEST.md): csynth
top-level reports (Vivado HLS 2019.2-2020.1, Vitis HLS 2021.1-2025.1) and, where present, Vivado
``report_utilization``. For each run this script rebuilds the network by hand as a list of
`LayerSpec` (structure, precisions, reuse factors, strategy, io type and zero-weight counts as the
MANIFEST and the reports give them; assumptions are written next to each network), runs the
estimator, and compares LUT, FF, DSP, BRAM36 (csynth's BRAM_18K / 2), latency and II.

    python bench/estimator.py            # evaluate DEFAULT_CALIBRATION, write bench/results/estimator.{json,md}
    python bench/estimator.py --fit      # refit the constants on all runs, print them, then evaluate
    python bench/estimator.py --no-cv    # skip the leave-one-network-out cross-validation

The committed constants are fitted on every run; generalization is measured by leave-one-network-out
cross-validation (each network's runs estimated with constants fitted on the other networks).
Relative error is ``(estimate - real) / max(real, 1)``. The script exits 0 and says so when
``../shared/reports`` is absent.
"""

from __future__ import annotations

if __package__ in (None, ""):
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import argparse
import json
import logging
import math
import re
import statistics
import sys
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass, field, fields, replace
from functools import cache
from pathlib import Path

from flows.estimate import (
    VITIS_HLS_CALIBRATION,
    VIVADO_HLS_CALIBRATION,
    Calibration,
    LayerSpec,
    estimate_design,
    estimate_layer,
)

log = logging.getLogger("bench.estimator")

ROOT = Path(__file__).resolve().parent.parent
REPORTS = ROOT.parent / "shared" / "reports"
RESULTS = ROOT / "bench" / "results"
METRICS = ("LUT", "FF", "DSP", "BRAM36", "latency", "II")
TOLERANCE = 0.20

# --------------------------------------------------------------------------------------------------
# Reading reports (a small reader of our own: the flow's report parser is someone else's module)
# --------------------------------------------------------------------------------------------------


@cache
def read_csynth(path: Path) -> dict[str, float]:
    """Top-level numbers of a csynth report (XML preferred, text report otherwise)."""
    if path.suffix == ".xml":
        root = ET.parse(path).getroot()
        res = root.find("AreaEstimates/Resources")
        lat = root.find("PerformanceEstimates/SummaryOfOverallLatency")

        def num(node: ET.Element | None, *tags: str) -> float:
            for tag in tags:
                text = node.findtext(tag) if node is not None else None
                if text not in (None, ""):
                    return float(text)
            return 0.0

        ii = num(lat, "Interval-max")
        if ii == 0.0 and lat is not None:
            ii = num(lat.find("DataflowPipelineThroughput/range"), "max")
        return {
            "LUT": num(res, "LUT"),
            "FF": num(res, "FF"),
            "DSP": num(res, "DSP48E", "DSP"),
            "BRAM36": num(res, "BRAM_18K") / 2.0,
            "latency": num(lat, "Worst-caseLatency"),
            "II": ii,
        }
    text = path.read_text(errors="replace")
    total = re.search(r"^\|Total\s*\|\s*(\d+)\|\s*(\d+)\|\s*(\d+)\|\s*(\d+)\|", text, re.M)
    if total is None:
        raise ValueError(f"{path}: no Total row")
    bram, dsp, ff, lut = (float(x) for x in total.groups())
    lat = re.search(r"Latency \(cycles\).*?\n(?:.*\n)*?\s*\|\s*(\d+)\|\s*(\d+)\|.*?\|\s*(\d+)\|\s*(\d+)\|", text)
    latency, ii = (float(lat.group(2)), float(lat.group(4))) if lat else (0.0, 0.0)
    return {"LUT": lut, "FF": ff, "DSP": dsp, "BRAM36": bram / 2.0, "latency": latency, "II": ii}


@cache
def read_instances(path: Path) -> dict[str, dict[str, float]]:
    """Per-module figures from the instance tables of a csynth text report (``*_csynth.rpt``).

    Every top-level report lists its sub-modules twice: in the latency detail (min/max latency per
    instance) and in the utilization detail (BRAM_18K, DSP, FF, LUT, URAM per instance). Keyed by module
    name; the first instance of a module wins. Used for the layers of runs whose per-module reports were
    not kept.
    """
    text = path.read_text(errors="replace")
    util_at = text.find("== Utilization Estimates")
    if util_at < 0:
        return {}
    perf, util = text[:util_at], text[util_at:]
    row = re.compile(r"^\s*\|\s*(\S+?)\s*\|\s*(\S+?)\s*\|(.*)$", re.M)
    out: dict[str, dict[str, float]] = {}
    inst = util.split("* Instance:", 1)
    if len(inst) == 2:
        for m in row.finditer(inst[1].split("* DSP", 1)[0]):
            cells = [c.strip() for c in m.group(3).split("|") if c.strip()]
            if m.group(1) in ("Instance", "Total") or len(cells) < 4 or not cells[0].isdigit():
                continue
            bram, dsp, ff, lut = (float(c) for c in cells[:4])
            out.setdefault(m.group(2), {"LUT": lut, "FF": ff, "DSP": dsp, "BRAM36": bram / 2.0})
    lat = perf.split("* Instance:", 1)
    if len(lat) == 2:
        for m in row.finditer(lat[1].split("* Loop:", 1)[0]):
            cells = [c.strip() for c in m.group(3).split("|") if c.strip()]
            if m.group(2) in out and cells and cells[1].isdigit() and "latency" not in out[m.group(2)]:
                out[m.group(2)]["latency"] = float(cells[1])
    return out


def read_utilization(path: Path) -> dict[str, float]:
    """LUT, FF, BRAM36 (Block RAM tiles) and DSP from a Vivado ``report_utilization`` (first match)."""
    text = path.read_text(errors="replace")

    def first(*labels: str) -> float:
        for label in labels:
            m = re.search(r"^\|\s*" + re.escape(label) + r"\s*\|\s*([\d.]+)\s*\|", text, re.M)
            if m:
                return float(m.group(1))
        return math.nan

    return {
        "LUT": first("Slice LUTs*", "Slice LUTs", "CLB LUTs*", "CLB LUTs"),
        "FF": first("Slice Registers", "CLB Registers", "Register as Flip Flop"),
        "BRAM36": first("Block RAM Tile"),
        "DSP": first("DSPs"),
    }


# --------------------------------------------------------------------------------------------------
# A small builder for hand-written networks
# --------------------------------------------------------------------------------------------------


class Net:
    """Builds a chain of `LayerSpec` while tracking the tensor shape and bit width."""

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

    def _push(self, kind: str, out_shape: tuple[int, ...], result_bits: int | None = None, **kw: object) -> Net:
        result_bits = self.bits if result_bits is None else result_bits
        name = f"{kind}{len(self.specs)}"
        self.specs.append(
            LayerSpec(
                name,
                kind,
                self.shape,
                tuple(out_shape),
                input_bits=self.bits,
                result_bits=result_bits,
                io_type=self.io_type,
                **kw,
            )
        )
        if self.fifo_per_channel:
            self.specs[-1].extra["fifo_split"] = out_shape[-1]
        self.shape, self.bits = tuple(out_shape), result_bits
        return self

    @staticmethod
    def _nnz(total: int, density: float, nnz: int | None) -> int:
        return int(nnz) if nnz is not None else int(round(total * density))

    def dense(
        self,
        n_out: int,
        *,
        rf: int = 1,
        strategy: str = "latency",
        wbits: int = 16,
        accum: int = 16,
        result: int = 16,
        density: float = 1.0,
        nnz: int | None = None,
        mult_impl: str = "auto",
        sat: bool = False,
    ) -> Net:
        n_in = math.prod(self.shape)
        total = n_in * n_out
        return self._push(
            "dense",
            (n_out,),
            result,
            n_in=n_in,
            n_out=n_out,
            n_weights=total,
            n_nonzero=self._nnz(total, density, nnz),
            weight_bits=wbits,
            accum_bits=accum,
            reuse_factor=rf,
            strategy=strategy,
            mult_impl=mult_impl,
            accum_saturate=sat,
        )

    def conv2d(
        self,
        filters: int,
        k: int,
        *,
        stride: int = 1,
        rf: int = 1,
        strategy: str = "latency",
        wbits: int = 16,
        accum: int = 16,
        result: int = 16,
        density: float = 1.0,
        nnz: int | None = None,
    ) -> Net:
        h, w, c = self.shape
        oh, ow = (h - k) // stride + 1, (w - k) // stride + 1
        total = k * k * c * filters
        kind = "pointwise_conv2d" if k == 1 else "conv2d"
        return self._push(
            kind,
            (oh, ow, filters),
            result,
            n_in=k * k * c,
            n_out=filters,
            kernel=(k, k),
            stride=(stride, stride),
            n_chan=c,
            filters=filters,
            n_weights=total,
            n_nonzero=self._nnz(total, density, nnz),
            weight_bits=wbits,
            accum_bits=accum,
            reuse_factor=rf,
            strategy=strategy,
        )

    def conv1d(
        self,
        filters: int,
        k: int,
        *,
        stride: int = 1,
        rf: int = 1,
        strategy: str = "latency",
        wbits: int = 16,
        accum: int = 16,
        result: int = 16,
        density: float = 1.0,
        nnz: int | None = None,
        sat: bool = False,
    ) -> Net:
        w, c = self.shape
        ow = (w - k) // stride + 1
        total = k * c * filters
        return self._push(
            "conv1d",
            (ow, filters),
            result,
            n_in=k * c,
            n_out=filters,
            kernel=(k,),
            stride=(stride,),
            n_chan=c,
            filters=filters,
            n_weights=total,
            n_nonzero=self._nnz(total, density, nnz),
            weight_bits=wbits,
            accum_bits=accum,
            reuse_factor=rf,
            strategy=strategy,
            accum_saturate=sat,
        )

    def act(self, name: str = "relu", result: int | None = None) -> Net:
        return self._push("activation", self.shape, result, activation=name)

    def softmax(self, result: int = 16) -> Net:
        return self._push("activation", self.shape, result, activation="softmax")

    def batchnorm(self) -> Net:
        return self._push("batchnorm", self.shape)

    def pool(self, p: int) -> Net:
        if len(self.shape) == 3:
            h, w, c = self.shape
            return self._push("pooling", (h // p, w // p, c), kernel=(p, p), stride=(p, p))
        w, c = self.shape
        return self._push("pooling", (w // p, c), kernel=(p,), stride=(p,))

    def global_pool(self) -> Net:
        return self._push("global_pooling", (self.shape[-1],))

    def zeropad(self, *pads: int) -> Net:
        if len(self.shape) == 3:
            t, b, left, r = pads
            h, w, c = self.shape
            return self._push("zeropad", (h + t + b, w + left + r, c))
        left, r = pads
        w, c = self.shape
        return self._push("zeropad", (w + left + r, c))

    def upsample(self, f: int = 2) -> Net:
        h, w, c = self.shape
        return self._push("upsample", (h * f, w * f, c))

    def flatten(self) -> Net:
        self._push("flatten", (math.prod(self.shape),))
        self.specs[-1].extra["out_pack"] = self.specs[-1].input_shape[-1]  # the stream keeps its packing
        return self

    def done(self) -> list[LayerSpec]:
        # io_stream: a layer reading a flattened stream reads the producer's words
        for prev, cur in zip(self.specs, self.specs[1:]):
            if prev.kind == "flatten":
                cur.extra["in_pack"] = prev.input_shape[-1]
        return self.specs


# --------------------------------------------------------------------------------------------------
# The runs (see ../shared/reports/MANIFEST.md for where each fact comes from)
# --------------------------------------------------------------------------------------------------


@dataclass
class Case:
    """One synthesis run: how to rebuild it, where its reports are, and which set it belongs to."""

    key: str
    folder: str
    csynth: str  # top-level csynth report, relative to the folder
    build: Callable[[], list[LayerSpec]]
    clock_ns: float
    backend: str  # "VivadoAccelerator" adds the AXI wrapper (compare with the myproject_axi top)
    tool: str
    part: str
    vivado: str | None = None  # report_utilization, relative to the folder
    vivado_scope: str = ""
    assumptions: list[str] = field(default_factory=list)
    uncertainty: float = 0.125
    # per-layer module reports (file stems next to the top report), one per layer after the input;
    # None where the layer has no module of its own (flatten) or the module is not in the folder
    modules: tuple[str | None, ...] = ()
    network: str = ""  # cross-validation group: runs of one network are left out together (default: folder)

    @property
    def group(self) -> str:
        return self.network or self.folder

    @property
    def family(self) -> str:
        """Which calibration applies: the HLS tool that produced the report."""
        return "vitis_hls" if self.tool.startswith("Vitis") else "vivado_hls"


def _svhn_cnn(quantized: bool) -> list[LayerSpec]:
    # hls4ml tutorial part 6: pruned to 50 % sparsity except the output layer (tutorial's pruning_params)
    wb = 6 if quantized else 16
    n = Net("io_stream", (32, 32, 3), fifo_per_channel=True)
    for filters in (16, 16, 24):
        n.conv2d(filters, 3, wbits=wb, density=0.5).act("relu").pool(2)
    n.flatten()
    n.dense(42, wbits=wb, density=0.5)
    if quantized:
        n.batchnorm()
    n.act("relu").dense(64, wbits=wb, density=0.5)
    if quantized:
        n.batchnorm()
    n.act("relu").dense(10, wbits=16).softmax()
    return n.done()


def _har_conv1d() -> list[LayerSpec]:
    n = Net("io_stream", (128, 9))
    n.zeropad(1, 1).conv1d(16, 3).act("relu").global_pool().dense(6).softmax()
    return n.done()


def _jet_mlp(io: str = "io_parallel", **dense_kw: object) -> list[LayerSpec]:
    n = Net(io, (16,))
    n.dense(64, **dense_kw).act("relu").dense(32, **dense_kw).act("relu").dense(32, **dense_kw).act("relu")
    n.dense(5, **dense_kw).softmax()
    return n.done()


def _mnist_cnn(strategy: str, conv_rf: int, dense_rf: int, softmax: bool) -> list[LayerSpec]:
    n = Net("io_stream", (28, 28, 1), fifo_per_channel=True)
    n.conv2d(4, 3, rf=conv_rf, strategy=strategy).act("relu").pool(4)
    n.conv2d(8, 3, rf=conv_rf, strategy=strategy).act("relu").pool(2)
    n.flatten().dense(10, rf=dense_rf, strategy=strategy)
    if softmax:
        n.softmax()
    return n.done()


def _dense_rf1() -> list[LayerSpec]:
    return Net("io_parallel", (4,)).dense(128).act("relu").dense(3).softmax().done()


def _denoise_ae() -> list[LayerSpec]:
    # ap_fixed<32,16> everywhere, Resource; RFs are the ReuseLoop trip counts of the per-layer reports
    kw = {"strategy": "resource", "wbits": 32, "accum": 32, "result": 32}
    n = Net("io_stream", (32, 32, 1), input_bits=32, fifo_per_channel=True)
    n.zeropad(1, 1, 1, 1).conv2d(8, 3, rf=9, **kw).act("relu").pool(2)
    n.zeropad(1, 1, 1, 1).conv2d(4, 3, rf=72, **kw).act("relu").pool(2)
    n.zeropad(1, 1, 1, 1).conv2d(4, 3, rf=36, **kw).act("relu").pool(2)
    n.zeropad(1, 1, 1, 1).conv2d(4, 3, rf=36, **kw).act("relu").upsample()
    n.zeropad(1, 1, 1, 1).conv2d(4, 3, rf=36, **kw).act("relu").upsample()
    n.zeropad(1, 1, 1, 1).conv2d(8, 3, rf=36, **kw).act("relu").upsample()
    n.zeropad(1, 1, 1, 1).conv2d(1, 3, rf=72, **kw).act("relu")
    return n.done()


def _jet_pynq_latency() -> list[LayerSpec]:
    # fixed<6,1> weights, ufixed<6,0> ReLU, ap_fixed<16,6> default; ~75 % pruned (n_zeros), RF 64
    kw = {"rf": 64, "wbits": 6, "density": 0.25}
    n = Net("io_parallel", (16,))
    n.dense(64, **kw).act("relu", 6).dense(32, **kw).act("relu", 6).dense(32, **kw).act("relu", 6)
    n.dense(5, **kw).softmax()
    return n.done()


def _jet_pynq_resource() -> list[LayerSpec]:
    # ap_fixed<7,1> weights and ReLU, ap_fixed<16,6> default, Resource, RF 64 (32 on the last layer)
    kw = {"strategy": "resource", "wbits": 7}
    n = Net("io_parallel", (16,))
    n.dense(64, rf=64, **kw).act("relu", 7).dense(32, rf=64, **kw).act("relu", 7).dense(32, rf=64, **kw)
    n.act("relu", 7).dense(5, rf=32, **kw).softmax()
    return n.done()


def _encoder_conv1d() -> list[LayerSpec]:
    # ap_int<16> input, ap_fixed<8,1> weights, ap_fixed<24,16> activations; shapes from the FIFO table
    kw = {"strategy": "resource", "wbits": 8, "accum": 24, "result": 24, "sat": True}
    n = Net("io_stream", (64, 1), input_bits=16, fifo_per_channel=True)
    n.zeropad(1, 1).conv1d(8, 3, rf=3, **kw)
    n.zeropad(2, 2).conv1d(8, 5, rf=2, **kw)
    n.zeropad(1, 2).conv1d(4, 5, stride=2, rf=2, **kw)
    n.zeropad(1, 2).conv1d(4, 5, stride=2, rf=2, **kw)
    n.flatten().dense(16, rf=2, **kw).act("linear", 16)
    return n.done()


def _iris() -> list[LayerSpec]:
    return Net("io_parallel", (4,)).dense(8).act("relu").dense(8).act("relu").dense(3).softmax().done()


# jet MLP sweep (ArgyKokk): nonzero weights per layer = per-layer DSPs of DSP_reuse1 (every nonzero
# product on its own DSP when `config_op mul -impl dsp` and RF 1); 8-bit input, 8-bit weights,
# 16-bit accumulators/results, ufixed<8,0> ReLU.
_JET_NNZ = (247, 275, 202, 85)
_BC_NNZ = (25, 7, 1)


def _jet_sweep(rf: int, impl: str) -> list[LayerSpec]:
    kw = {"wbits": 8, "accum": 16, "result": 16, "mult_impl": impl}
    rfs = (rf, rf, rf, 1 if rf == 2 else rf)
    n = Net("io_parallel", (16,), input_bits=8)
    for i, width in enumerate((64, 32, 32)):
        n.dense(width, rf=rfs[i], nnz=_JET_NNZ[i], **kw).act("relu", 8)
    n.dense(5, rf=rfs[3], nnz=_JET_NNZ[3], **kw).softmax()
    n.specs[-1].mult_impl = impl
    return n.done()


def _bc_sweep(rf: int, impl: str) -> list[LayerSpec]:
    kw = {"wbits": 8, "accum": 16, "result": 16, "mult_impl": impl}
    n = Net("io_parallel", (10,), input_bits=8)
    n.dense(5, rf=rf, nnz=_BC_NNZ[0], **kw).act("relu", 8)
    n.dense(3, rf=rf, nnz=_BC_NNZ[1], **kw).batchnorm().act("relu", 8)
    n.dense(2, rf=rf, nnz=_BC_NNZ[2], **kw).batchnorm().softmax()
    n.specs[-1].mult_impl = impl
    return n.done()


_R = "myproject_prj/solution1/syn/report/"
_P16 = "ap_fixed_16_6_5_3_0"
_MOD_05 = (
    f"conv_2d_cl_array_ap_fixed_1u_array_{_P16}_4u_config2_s",
    f"relu_array_ap_fixed_4u_array_{_P16}_4u_relu_config3_s",
    f"pooling2d_cl_array_ap_fixed_4u_array_{_P16}_4u_config4_s",
    f"conv_2d_cl_array_ap_fixed_4u_array_{_P16}_8u_config5_s",
    f"relu_array_ap_fixed_8u_array_{_P16}_8u_relu_config6_s",
    f"pooling2d_cl_array_ap_fixed_8u_array_{_P16}_8u_config7_s",
    None,
    f"dense_array_ap_fixed_8u_array_{_P16}_10u_config9_s",
)
_MOD_06 = (
    "dense_latency_" + "0_" * 32 + "0_s",
    f"relu_{_P16}_{_P16}_relu_config3_s",
    "dense_latency_ap_fixed_ap_fixed_16_6_5_3_0_config4_0_0_0_0",
    f"softmax_stable_ap_fixed_{_P16}_softmax_config5_s",
)
_AE = "conv_2d_cl_array_array_ap_fixed_{}u_config{}_s"
_MOD_08 = tuple(
    x
    for zp, (cw, cc), (rw, rc), post in (
        ("1u_config22", (8, 2), (8, 3), "pooling2d_cl_array_array_ap_fixed_8u_config4_s"),
        ("8u_config23", (4, 5), (4, 6), "pooling2d_cl_array_array_ap_fixed_4u_config7_s"),
        ("4u_config24", (4, 8), (4, 9), "pooling2d_cl_array_array_ap_fixed_4u_config10_s"),
        ("4u_config25", (4, 11), (4, 12), "resize_nearest_array_ap_fixed_4u_config13_s"),
        ("4u_config26", (4, 14), (4, 15), "resize_nearest_array_ap_fixed_4u_config16_s"),
        ("4u_config27", (8, 17), (8, 18), "resize_nearest_array_ap_fixed_8u_config19_s"),
        ("8u_config28", (1, 20), (1, 21), None),
    )
    for x in (
        f"zeropad2d_cl_array_array_ap_fixed_{zp}_s",
        _AE.format(cw, cc),
        f"relu_array_array_ap_fixed_{rw}u_relu_config{rc}_s",
    )
    + ((post,) if post else ())
)
_Z = "0_" * 32 + "0"
_MOD_09 = (
    f"dense_latency_{_Z}_s",
    f"relu_{_P16}_ap_ufixed_6_0_4_0_0_relu_config4_s",
    f"dense_latency_{_Z}_1",
    f"relu_{_P16}_ap_ufixed_6_0_4_0_0_relu_config7_s",
    f"dense_latency_{_Z}",
    f"relu_{_P16}_ap_ufixed_6_0_4_0_0_relu_config10_s",
    f"dense_latency_ap_ufixed_{_P16}_config11_0_0_0_0_0_0",
    f"softmax_stable_ap_fixed_{_P16}_softmax_config13_s",
)
_MOD_10 = (
    "dense_resource_3",
    "relu_1",
    "dense_resource_1",
    "relu",
    "dense_resource",
    "relu_2",
    "dense_resource_2",
    "softmax_latency",
)
_F24 = "ap_fixed_24_16_0_0_0"
_MOD_11 = (
    "zeropad1d_cl_array_ap_int_16_1u_array_ap_int_16_1u_config18_s",
    f"conv_1d_cl_array_ap_int_16_1u_array_{_F24}_8u_config2_s",
    f"zeropad1d_cl_array_array_{_F24}_8u_config19_s",
    f"conv_1d_cl_array_ap_fixed_8u_array_{_F24}_8u_config5_s",
    f"zeropad1d_cl_array_array_{_F24}_8u_config20_s",
    f"conv_1d_cl_array_ap_fixed_8u_array_{_F24}_4u_config8_s",
    f"zeropad1d_cl_array_array_{_F24}_4u_config21_s",
    f"conv_1d_cl_array_ap_fixed_4u_array_{_F24}_4u_config11_s",
    None,
    f"dense_array_ap_fixed_4u_array_{_F24}_16u_config15_s",
    "linear_array_array_ap_fixed_16_16_0_0_0_16u_linear_config17_s",
)
_MOD_12 = (
    f"dense_latency_{_P16}_{_P16}_config2_s",
    f"relu_{_P16}_{_P16}_relu_config3_s",
    f"dense_latency_{_P16}_{_P16}_config4_s",
    f"relu_{_P16}_{_P16}_relu_config5_s",
    f"dense_latency_{_P16}_{_P16}_config6_s",
    f"softmax_stable_ap_fixed_{_P16}_softmax_config7_s",
)
_MOD_03 = (
    f"zeropad1d_cl_array_ap_fixed_9u_array_{_P16}_9u_config8_s",
    f"conv_1d_cl_array_ap_fixed_9u_array_{_P16}_16u_config2_s",
    f"relu_array_ap_fixed_16u_array_{_P16}_16u_relu_config4_s",
    f"global_pooling1d_cl_array_array_{_P16}_16u_config5_s",
    f"dense_array_ap_fixed_16u_array_{_P16}_6u_config6_s",
    f"softmax_array_array_{_P16}_6u_softmax_config7_s",
)
_SV = "conv_2d_cl_array_array_ap_fixed_{}u_config{}_s", "relu_array_array_ap_fixed_{}u_relu_config{}_s"
_SVP = "pooling2d_cl_array_array_ap_fixed_{}u_config{}_s"
_SVD = "dense_array_array_ap_fixed_16_6_5_3_0_{}u_config{}_s"
_MOD_01 = (
    _SV[0].format(16, 2), _SV[1].format(16, 5), _SVP.format(16, 6),
    _SV[0].format(16, 7), _SV[1].format(16, 10), _SVP.format(16, 11),
    _SV[0].format(24, 12), _SV[1].format(24, 15), _SVP.format(24, 16),
    None,
    _SVD.format(42, 17), _SV[1].format(42, 20), _SVD.format(64, 21), _SV[1].format(64, 24), _SVD.format(10, 25),
    "softmax_array_array_ap_fixed_10u_softmax_config27_s",
)  # fmt: skip
_MOD_02 = (
    _SV[0].format(16, 2), _SV[1].format(16, 4), _SVP.format(16, 5),
    _SV[0].format(16, 6), _SV[1].format(16, 8), _SVP.format(16, 9),
    _SV[0].format(24, 10), _SV[1].format(24, 12), _SVP.format(24, 13),
    None,
    _SVD.format(42, 14), "normalize_array_array_ap_fixed_42u_config16_s", _SV[1].format(42, 17),
    _SVD.format(64, 18), "normalize_array_array_ap_fixed_64u_config20_s", _SV[1].format(64, 21),
    _SVD.format(10, 22), "softmax_array_array_ap_fixed_10u_softmax_config24_s",
)  # fmt: skip
_MOD_04 = tuple(
    f"dense_latency_{_P16}_{_P16}_config{c}_s" if k == "d" else f"relu_{_P16}_{_P16}_relu_config{c}_s"
    for k, c in (("d", 2), ("r", 4), ("d", 5), ("r", 7), ("d", 8), ("r", 10), ("d", 11))
) + (f"softmax_stable_ap_fixed_{_P16}_softmax_config13_s",)
_F8, _U8, _F164 = "ap_fixed_8_2_5_3_0", "ap_ufixed_8_0_4_0_0", "ap_fixed_16_4_5_3_0"
_MOD_13 = (
    f"dense_latency_{_F8}_{_F164}_config2_s", f"relu_{_F164}_{_U8}_relu_config4_s",
    f"dense_latency_{_U8}_{_F164}_config5_s", f"relu_{_F164}_{_U8}_relu_config7_s",
    f"dense_latency_{_U8}_{_F164}_config8_s", f"relu_{_F164}_{_U8}_relu_config10_s",
    f"dense_latency_{_U8}_{_F164}_config11_s", f"softmax_stable_ap_fixed_{_F164}_softmax_config13_s",
)  # fmt: skip
_MOD_14 = (
    f"dense_latency_{_F8}_{_F164}_config2_s", f"relu_{_F164}_{_U8}_relu_config4_s",
    f"dense_latency_{_U8}_{_F164}_config5_s", f"normalize_{_F164}_{_F164}_config11_s",
    f"relu_{_F164}_{_U8}_relu_config7_s", f"dense_latency_{_U8}_{_F164}_config8_s",
    f"normalize_{_F164}_{_F164}_config12_s", f"softmax_stable_ap_fixed_{_F164}_softmax_config10_s",
)  # fmt: skip
_TUT = "hls4ml tutorial part 6 network; 50 % sparsity except the output layer assumed (not in the reports)"
_JET_NOTE = "nonzero weights per layer taken from DSP_reuse1's per-layer DSPs (the DSP counts of that run are circular)"

CASES: list[Case] = [
    Case(
        "01_pruned_cnn",
        "fastmachinelearning__hls4ml-tutorial__pruned_cnn",
        _R + "myproject_csynth.rpt",
        lambda: _svhn_cnn(False),
        5.0,
        "Vivado",
        "Vivado HLS 2020.1",
        "xcu250",
        "vivado_synth.rpt",
        "synth",
        [_TUT],
        modules=_MOD_01,
    ),
    Case(
        "02_quantized_pruned_cnn",
        "fastmachinelearning__hls4ml-tutorial__quantized_pruned_cnn",
        _R + "myproject_csynth.rpt",
        lambda: _svhn_cnn(True),
        5.0,
        "Vivado",
        "Vivado HLS 2020.1",
        "xcu250",
        "vivado_synth.rpt",
        "synth",
        [_TUT, "6-bit weights assumed (QKeras quantized_bits(6)); activations kept at ap_fixed<16,6>"],
        modules=_MOD_02,
        network="fastmachinelearning__hls4ml-tutorial__pruned_cnn",  # the same network as run 01, quantized
    ),
    Case(
        "03_har_conv1d",
        "seanlipps__ECE226_CoDesign__har_conv1d_vitis",
        _R + "myproject_csynth.xml",
        _har_conv1d,
        5.0,
        "Vitis",
        "Vitis HLS 2024.1",
        "xcu250",
        "vivado_synth.rpt",
        "synth",
        ["unpruned assumed"],
        uncertainty=0.27,
        modules=_MOD_03,
    ),
    Case(
        "04_jet_mlp_vitis",
        "nrp-nautilus__6nrp-hls4ml__jet_mlp_vitis",
        _R + "myproject_csynth.xml",
        _jet_mlp,
        5.0,
        "Vitis",
        "Vitis HLS 2022.2",
        "xcu250",
        assumptions=["unpruned"],
        modules=_MOD_04,
    ),
    Case(
        "05_mnist_cnn_stream_rf16",
        "pominiq__DNNonSilicon__mnist_cnn_stream_rf16",
        _R + "myproject_csynth.xml",
        lambda: _mnist_cnn("latency", 16, 16, True),
        25.0,
        "Vivado",
        "Vivado HLS 2020.1",
        "xc7z020",
        "vivado_synth.rpt",
        "synth",
        modules=_MOD_05 + (f"softmax_array_array_{_P16}_10u_softmax_config10_s",),
    ),
    Case(
        "06_dense_rf1_noprune",
        "pominiq__DNNonSilicon__dense_rf1_noprune",
        _R + "myproject_csynth.xml",
        _dense_rf1,
        25.0,
        "Vivado",
        "Vivado HLS 2020.1",
        "xc7z020",
        "vivado_synth.rpt",
        "synth",
        modules=_MOD_06,
    ),
    Case(
        "07_cnn_stream_resource_rf8",
        "pominiq__DNNonSilicon__cnn_stream_resource_rf8",
        _R + "myproject_csynth.xml",
        lambda: _mnist_cnn("resource", 9, 8, False),
        10.0,
        "Vivado",
        "Vivado HLS 2020.1",
        "xc7z020",
        "vivado_synth.rpt",
        "synth",
        modules=_MOD_05,
    ),
    Case(
        "08_denoise_ae_pynqz2",
        "ChiRuiChen__AutoEncoder_hls4ml__denoise_ae_pynqz2",
        _R + "myproject_axi_csynth.xml",
        _denoise_ae,
        5.0,
        "VivadoAccelerator",
        "Vivado HLS 2019.2",
        "xc7z020",
        assumptions=["RFs from the ReuseLoop trip counts of the per-layer reports"],
        modules=_MOD_08,
    ),
    Case(
        "09_jet_mlp_pynqz2_latency",
        "Hector-Plata__hls4ml-tutorial__part7_jet_mlp_pynqz2",
        _R + "myproject_axi_csynth.xml",
        _jet_pynq_latency,
        5.0,
        "VivadoAccelerator",
        "Vivado HLS 2019.2",
        "xc7z020",
        "myproject_vivado_accelerator/project_1.runs/design_1_myproject_axi_0_0_synth_1/"
        "design_1_myproject_axi_0_0_utilization_synth.rpt",
        "IP out-of-context synth",
        ["75 % sparsity spread evenly over the layers (MANIFEST: 'about 75 %')"],
        modules=_MOD_09,
    ),
    Case(
        "10_jet_mlp_pynqz2_resource",
        "nicologhielmetti__hls4ml-pynq__jet_mlp_rf64_pynqz2",
        "cpp_nn_v2/" + _R + "myproject_axi_csynth.xml",
        _jet_pynq_resource,
        5.0,
        "VivadoAccelerator",
        "Vivado HLS 2019.2",
        "xc7z020",
        "dma_test_pynq_v2/dma_test_pynq.runs/design_1_myproject_axi_0_3_synth_1/"
        "design_1_myproject_axi_0_3_utilization_synth.rpt",
        "IP out-of-context synth",
        modules=_MOD_10,
    ),
    Case(
        "11_encoder_conv1d",
        "Berk-Bilgin__ML-fpga__encoder_conv1d_artix7",
        "Encoder_prj/solution1/syn/report/Encoder_csynth.xml",
        _encoder_conv1d,
        10.0,
        "Vivado",
        "Vivado HLS 2020.1",
        "xc7a200t",
        "vivado_synth.rpt",
        "synth",
        ["per-layer RF 3/2 and kernel sizes inferred from the per-layer DSP counts"],
        modules=_MOD_11,
    ),
    Case(
        "12_iris_mlp_vitis",
        "Thifjj__Iris_hls4ml_pynqZ2__iris_mlp_vitis_pynqz2",
        "projeto_iris_hls_ip_axi/" + _R + "myproject_csynth.xml",
        _iris,
        5.0,
        "Vitis",
        "Vitis HLS 2025.1",
        "xc7z020",
        "vivado_project/iris_hardware/iris_hardware.runs/synth_1/design_1_wrapper_utilization_synth.rpt",
        "whole PS+DMA system synth",
        uncertainty=0.27,
        modules=_MOD_12,
    ),
]
for _rf in (1, 2, 100):
    for _impl in ("dsp", "fabric"):
        if _rf == 1 and _impl == "fabric":
            continue  # LUT_reuse1 reports are byte-identical to DSP_reuse1 (MANIFEST)
        _v = f"{'DSP' if _impl == 'dsp' else 'LUT'}_reuse{_rf}"
        CASES.append(
            Case(
                f"13_jet_sweep_{_v}",
                "ArgyKokk__hls4ml_MLP_estimator__jet_tagging_mlp_sweep",
                f"{_v}/{_R}myproject_csynth.xml",
                lambda rf=_rf, impl=_impl: _jet_sweep(rf, impl),
                3.33,
                "Vitis",
                "Vitis HLS 2021.1",
                "xc7z007s",
                assumptions=[_JET_NOTE],
                modules=_MOD_13,
            )
        )
    for _impl in ("dsp", "fabric"):
        _v = f"{'DSP' if _impl == 'dsp' else 'LUT'}_reuse{_rf}"
        CASES.append(
            Case(
                f"14_breast_cancer_{_v}",
                "ArgyKokk__hls4ml_MLP_estimator__breast_cancer_mlp_sweep",
                f"{_v}/{_R}myproject_csynth.xml",
                lambda rf=_rf, impl=_impl: _bc_sweep(rf, impl),
                5.0,
                "Vitis",
                "Vitis HLS 2021.1",
                "xc7z007s",
                assumptions=["nonzero weights per layer from DSP_reuse1's per-layer DSPs"],
                modules=_MOD_14,
            )
        )


Calibrations = dict[str, Calibration]
DEFAULT_CALIBRATIONS: Calibrations = {"vivado_hls": VIVADO_HLS_CALIBRATION, "vitis_hls": VITIS_HLS_CALIBRATION}


def _calib_for(case: Case, calibs: Calibrations) -> Calibration:
    """The run's tool calibration with per-run facts that are not model constants: the part's DSP
    width (27x18 on UltraScale+) and the run's clock uncertainty."""
    dsp_a = 27 if case.part.startswith("xcu") else 25
    return replace(calibs[case.family], dsp_a_bits=dsp_a, clock_uncertainty=case.uncertainty)


def estimate_case(case: Case, calibs: Calibrations) -> dict[str, float]:
    specs = case.build()
    est = estimate_design(specs, case.clock_ns, specs[0].io_type, backend=case.backend, calib=_calib_for(case, calibs))
    out = dict(est.resources)
    out["latency"] = float(est.latency_cycles)
    out["II"] = float(est.ii_cycles)
    return out


def layer_rows(case: Case, calibs: Calibrations) -> list[dict]:
    """Per-layer comparison with the module reports listed in ``case.modules``."""
    if not case.modules:
        return []
    specs = case.build()[1:]
    if len(specs) != len(case.modules):
        raise ValueError(f"{case.key}: {len(specs)} layers but {len(case.modules)} module names")
    calib = _calib_for(case, calibs)
    report_dir = (REPORTS / case.folder / case.csynth).parent
    top_rpt = (REPORTS / case.folder / case.csynth).with_suffix(".rpt")
    instances: dict[str, dict[str, float]] | None = None
    rows = []
    for spec, stem in zip(specs, case.modules):
        if stem is None:
            continue
        path = report_dir / f"{stem}_csynth.xml"
        if path.is_file():
            real = read_csynth(path)
        else:  # the module's own report was not kept: its row in the top report's instance tables
            if instances is None:
                instances = read_instances(top_rpt) if top_rpt.is_file() else {}
            if stem not in instances:
                raise FileNotFoundError(f"{path} (and no instance {stem!r} in {top_rpt})")
            real = instances[stem]
        lay = estimate_layer(spec, case.clock_ns, calib)
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


LAYER_METRICS = ("LUT", "FF", "DSP", "BRAM36", "latency")


def rel_err(est: float, real: float) -> float:
    return (est - real) / max(real, 1.0)


# --------------------------------------------------------------------------------------------------
# Fitting
# --------------------------------------------------------------------------------------------------

# (field, lower bound, upper bound): the continuous constants refit by --fit (least squares)
FIT_PARAMS: tuple[tuple[str, float, float], ...] = (
    ("const_dsp_fraction", 0.5, 1.0),
    ("lut_per_constmult_bit2", 0.02, 1.0),
    ("lut_per_dsp_mult", 0.0, 40.0),
    ("lut_mux_per_bit", 0.05, 2.0),
    ("lut_res_per_mult_bit", 0.2, 8.0),
    ("ff_res_per_mult_bit", 0.1, 8.0),
    ("lut_accmux_per_bit", 0.0, 5.0),
    ("lut_sat_factor", 0.0, 4.0),
    ("lut_layer_base", 20.0, 400.0),
    ("lut_elem_per_bit", 0.2, 5.0),
    ("lut_act_narrow_per_elem", 0.0, 120.0),
    ("lut_softmax_per_elem", 10.0, 300.0),
    ("lut_fifo_bram", 0.0, 120.0),
    ("lut_fifo_srl", 0.0, 60.0),
    ("ff_per_adder_bit", 0.02, 3.0),
    ("ff_tree_decay", 0.0, 1.5),
    ("ff_shared_tree_factor", 0.2, 1.5),
    ("ff_parallel_reg_per_bit", 0.0, 3.0),
    ("ff_pool_window_factor", 0.3, 4.0),
    ("ff_per_mult_bit", 0.0, 5.0),
    ("ff_layer_base", 10.0, 400.0),
    ("ff_elem_per_bit", 0.0, 4.0),
    ("ff_softmax_per_elem", 0.5, 50.0),
    ("ff_softmax_base", 0.0, 1000.0),
    ("ff_prod_reg_per_bit", 0.0, 3.0),
    ("axi_lut_base", 500.0, 5000.0),
    ("axi_lut_parallel_extra", 0.0, 8000.0),
    ("axi_ff_base", 200.0, 4000.0),
    ("axi_ff_parallel_extra", 0.0, 4000.0),
)
# What the per-module reports say about a tool, kept out of the least squares (which would trade it
# away against runs of other versions): Vitis HLS keeps about one full copy of the products/partial
# sums per pipeline stage (13_jet: FF / (nonzeros * acc bits) is close to each kernel's latency), and
# the control of an hls4ml layer is its FSM and one enable bit per pipeline stage (the register
# tables of the Vitis reports), tens of FFs.
# const_dsp_fraction is read off the RF 1 runs (see `Calibration`), not fitted.
FAMILY_FIXED: dict[str, dict[str, float]] = {
    "vitis_hls": {"ff_tree_decay": 0.0, "const_dsp_fraction": 0.75},
    "vivado_hls": {"ff_tree_decay": 1.0, "const_dsp_fraction": 0.75},
}
FAMILY_BOUNDS: dict[str, dict[str, tuple[float, float]]] = {"vitis_hls": {"ff_layer_base": (10.0, 100.0)}}
# step-valued constants (cycles come out of ceil()): fitted by grid search on latency and II
TIMING_GRID: dict[str, tuple[float, ...]] = {
    "t_mult_ns": (0.5, 1.0, 2.0, 3.0, 4.0, 5.0),
    "t_add_ns": (0.75, 1.0, 1.5, 2.0, 2.5, 3.0, 3.5, 4.0),
    "parallel_layer_cycles": (0, 1, 2),
    "resource_conv_overhead": (5, 7, 9, 11, 13),
    "axi_elem_ns": (20.0, 30.0, 40.0, 48.0, 60.0),
    "t_reg_ns": (0.0, 0.5, 1.0, 1.5),
    "depth_extra_cycles": (0, 1),
}
FIT_PRIOR = 0.1  # weight of the prior towards the hand-set constants (see _fit_group)
# robust least squares on log(estimate / real). FF uses the Cauchy loss, which gives up on outliers:
# tool versions differ by up to 8x in registers for the same network (04 vs 13), and a loss that
# keeps pulling towards such a run distorts every other constant.
FIT_LOSS: dict[str, tuple[str, float]] = {"DSP": ("soft_l1", 0.2), "LUT": ("soft_l1", 0.2), "FF": ("cauchy", 0.2)}


def fit(cases: list[Case], base: Calibration) -> Calibration:
    """Fit one tool's constants on ``cases``: the step-valued timing constants by grid search on latency
    and II (totals and layers), then the LUT, FF and DSP constants by `_fit_group`."""
    import itertools

    reals = {c.key: read_csynth(REPORTS / c.folder / c.csynth) for c in cases}
    family = cases[0].family
    with_layers = [c for c in cases if c.modules]

    def timing_cost(calib: Calibration) -> float:
        cost = 0.0
        for c in cases:
            est = estimate_case(c, {family: calib})
            for m in ("latency", "II"):
                cost += min(abs(math.log((est[m] + 1.0) / (reals[c.key][m] + 1.0))), 1.0)
        for c in with_layers:  # per-layer latencies, each run's layers weighted like one total
            rows = layer_rows(c, {family: calib})
            weight = 1.0 / math.sqrt(max(1, len(rows)))
            for r in rows:
                err = math.log((r["estimate"]["latency"] + 1.0) / (r["csynth"]["latency"] + 1.0))
                cost += weight * min(abs(err), 1.0)
        return cost

    # the four constants of the kernel depth on a full grid, then coordinate descent over all of them
    # (a full grid of everything is too slow with the per-layer terms)
    keys = list(TIMING_GRID)
    depth_keys = ("t_mult_ns", "t_add_ns", "t_reg_ns", "depth_extra_cycles")
    best = min(
        (
            replace(base, **dict(zip(depth_keys, combo)))
            for combo in itertools.product(*(TIMING_GRID[k] for k in depth_keys))
        ),
        key=timing_cost,
    )
    best_cost = timing_cost(best)
    for _ in range(4):
        improved = False
        for k in keys:
            for v in TIMING_GRID[k]:
                trial = replace(best, **{k: v})
                cost = timing_cost(trial)
                if cost < best_cost - 1e-9:
                    best, best_cost, improved = trial, cost, True
        if not improved:
            break
    log.info("timing grid: %s", {k: getattr(best, k) for k in keys})

    fixed = FAMILY_FIXED.get(family, {})
    best = replace(best, **fixed)
    bounds = FAMILY_BOUNDS.get(family, {})
    # LUT, FF and DSP constants do not interact: each group is fitted on its own metric, which keeps
    # the (non-smooth: ceil, min) problems small enough for least squares to find their minimum
    for metrics in (("DSP",), ("LUT",), ("FF",)):
        params = [
            (n, *bounds.get(n, (lo_, hi_)))
            for n, lo_, hi_ in FIT_PARAMS
            if n not in fixed and _param_metric(n) in metrics
        ]
        best = _fit_group(best, params, metrics, cases, with_layers, reals)
    return best


def _param_metric(name: str) -> str:
    """The metric a fitted constant moves."""
    if name == "const_dsp_fraction":
        return "DSP"
    return "FF" if name.startswith(("ff_", "axi_ff")) else "LUT"


def _fit_group(
    base: Calibration,
    params: list[tuple[str, float, float]],
    metrics: tuple[str, ...],
    cases: list[Case],
    with_layers: list[Case],
    reals: dict[str, dict[str, float]],
) -> Calibration:
    """Robust least squares of ``params`` on log(estimate / real) of ``metrics``: run totals plus the
    per-layer module figures (each run's layers weighted about like its total)."""
    import numpy as np
    from scipy.optimize import least_squares

    if not params:
        return base
    family = cases[0].family
    names = [p[0] for p in params]
    lo = np.array([p[1] for p in params])
    hi = np.array([p[2] for p in params])
    layer_metrics = [m for m in metrics if m in ("LUT", "FF")]

    def residuals(x: np.ndarray) -> np.ndarray:
        calib = replace(base, **dict(zip(names, (float(v) for v in x))))
        res = []
        for c in cases:
            est = estimate_case(c, {family: calib})
            real = reals[c.key]
            for m in metrics:
                res.append(math.log((est[m] + 1.0) / (real[m] + 1.0)))
        for c in with_layers if layer_metrics else []:
            rows = layer_rows(c, {family: calib})
            weight = 1.0 / math.sqrt(max(1, len(rows)))
            for r in rows:
                for m in layer_metrics:
                    res.append(weight * math.log((r["estimate"][m] + 1.0) / (r["csynth"][m] + 1.0)))
        # a weak prior towards the hand-set values, in units of a quarter of each constant's range: it
        # settles constants the runs barely determine instead of letting them drift to a bound
        res.extend(FIT_PRIOR * 4.0 * (x - prior) / (hi - lo))
        return np.array(res)

    # starts: the current constants, the hand-set defaults and the middle of the bounds (a constant
    # sitting on a bound can keep one start in a poor local minimum); the lowest robust cost wins
    prior = np.clip(np.array([getattr(Calibration(), n) for n in names], dtype=float), lo, hi)
    starts = [
        np.clip(np.array([getattr(base, n) for n in names], dtype=float), lo, hi),
        prior,
        np.sqrt(np.maximum(lo, 1e-3) * hi),
    ]
    loss, f_scale = FIT_LOSS[metrics[0]]
    sols = [least_squares(residuals, x, bounds=(lo, hi), loss=loss, f_scale=f_scale, x_scale="jac") for x in starts]
    sol = min(sols, key=lambda r: r.cost)
    log.info(
        "fit %s: %d constants, %d residuals, cost from the starts: %s",
        "/".join(metrics),
        len(names),
        len(sol.fun),
        ", ".join(f"{r.cost:.3f}" for r in sols),
    )
    return replace(base, **dict(zip(names, (float(v) for v in sol.x))))


# --------------------------------------------------------------------------------------------------
# Evaluation and output
# --------------------------------------------------------------------------------------------------


def evaluate(calibs: Calibrations) -> dict:
    rows = []
    for case in CASES:
        real = read_csynth(REPORTS / case.folder / case.csynth)
        est = estimate_case(case, calibs)
        row = {
            "key": case.key,
            "folder": case.folder,
            "network": case.group,
            "tool": case.tool,
            "calibration": case.family,
            "part": case.part,
            "backend": case.backend,
            "clock_ns": case.clock_ns,
            "io_type": case.build()[0].io_type,
            "assumptions": case.assumptions,
            "estimate": {m: round(est[m], 1) for m in METRICS},
            "csynth": {m: real[m] for m in METRICS},
            "rel_error": {m: round(rel_err(est[m], real[m]), 4) for m in METRICS},
            "source": {"estimate": "estimate", "csynth": "csynth report"},
            "layers": layer_rows(case, calibs),
        }
        if case.vivado:
            viv = read_utilization(REPORTS / case.folder / case.vivado)
            row["vivado"] = {"scope": case.vivado_scope, **viv}
            row["vivado_rel_error"] = {
                m: round(rel_err(est[m], viv[m]), 4) for m in ("LUT", "FF", "DSP", "BRAM36") if not math.isnan(viv[m])
            }
            row["csynth_vs_vivado"] = {
                m: round(rel_err(real[m], viv[m]), 4) for m in ("LUT", "FF", "DSP", "BRAM36") if not math.isnan(viv[m])
            }
        rows.append(row)
    return {"runs": rows, "summary": summarize(rows)}


def fit_all(base: Calibrations, cases: list[Case] | None = None) -> Calibrations:
    """Each tool's constants fitted on all its runs in ``cases`` (default: every run)."""
    cases = CASES if cases is None else cases
    out = dict(base)
    for family in base:
        mine = [c for c in cases if c.family == family]
        if mine:
            out[family] = fit(mine, base[family])
    return out


def cross_validate(base: Calibrations) -> dict:
    """Leave-one-network-out cross-validation: each network's runs are estimated with constants fitted
    on the other networks of the same tool (timing grid and least squares, as ``--fit`` does).

    These are the errors to expect on a network the calibration has not seen; the in-sample errors of
    `evaluate` are lower because every run also helped fit the constants.
    """
    runs: dict[str, dict] = {}
    for family in base:
        groups = sorted({c.group for c in CASES if c.family == family})
        for group in groups:
            held = [c for c in CASES if c.family == family and c.group == group]
            rest = [c for c in CASES if c.family == family and c.group != group]
            calib = fit(rest, base[family])
            log.info("cv: %s without %s (%d runs held out)", family, group, len(held))
            for case in held:
                real = read_csynth(REPORTS / case.folder / case.csynth)
                est = estimate_case(case, {family: calib})
                runs[case.key] = {
                    "calibration": family,
                    "part": case.part,
                    "tool": case.tool,
                    "network": group,
                    "estimate": {m: round(est[m], 1) for m in METRICS},
                    "rel_error": {m: round(rel_err(est[m], real[m]), 4) for m in METRICS},
                }
    rows = [runs[c.key] for c in CASES if c.key in runs]
    summary = {}
    for subset in SUBSETS:
        sel = [r for r in rows if _in_subset(r, subset)]
        summary[subset] = {m: _stats([r["rel_error"][m] for r in sel]) for m in METRICS}
    return {"runs": runs, "summary": summary}


def _in_subset(row: dict, subset: str) -> bool:
    if subset == "all":
        return True
    if subset == "7series_vivado_hls":
        return not row["part"].startswith("xcu") and row["tool"].startswith("Vivado")
    return subset == row["calibration"]


def _stats(errs: list[float]) -> dict:
    if not errs:
        return {"n": 0}
    absd = [abs(e) for e in errs]
    return {
        "n": len(errs),
        "median_abs_rel_error": round(statistics.median(absd), 4),
        "max_abs_rel_error": round(max(absd), 4),
        "within_20pct": round(sum(a <= TOLERANCE for a in absd) / len(absd), 4),
        "median_signed_rel_error": round(statistics.median(errs), 4),
    }


def summarize(rows: list[dict]) -> dict:
    out: dict = {}
    for subset in SUBSETS:
        sel = [r for r in rows if _in_subset(r, subset)]
        out[subset] = {m: _stats([r["rel_error"][m] for r in sel]) for m in METRICS}
    viv = [r for r in rows if "vivado_rel_error" in r]
    out["vs_vivado"] = {
        m: _stats([r["vivado_rel_error"][m] for r in viv if m in r["vivado_rel_error"]])
        for m in ("LUT", "FF", "DSP", "BRAM36")
    }
    out["csynth_vs_vivado"] = {
        m: _stats([r["csynth_vs_vivado"][m] for r in viv if m in r["csynth_vs_vivado"]])
        for m in ("LUT", "FF", "DSP", "BRAM36")
    }
    layers = [(r, lay) for r in rows for lay in r["layers"]]
    out["layers"] = {
        fam: {m: _stats([lay["rel_error"][m] for r, lay in layers if r["calibration"] == fam]) for m in LAYER_METRICS}
        for fam in ("vivado_hls", "vitis_hls")
    }
    return out


def _target_sentence(summary: dict, kind: str) -> str:
    """Which metrics meet the issue's ±20 % target in the median, per subset (computed, not written)."""
    parts = []
    for subset in ("all", "vivado_hls", "vitis_hls"):
        met = [m for m in TARGET_METRICS if summary[subset][m]["median_abs_rel_error"] <= TOLERANCE]
        missed = [
            f"{m} {100 * summary[subset][m]['median_abs_rel_error']:.0f}%" for m in TARGET_METRICS if m not in met
        ]
        text = f"{subset}: " + (", ".join(met) or "none") + " within ±20 %"
        parts.append(text + (f" (missed: {', '.join(missed)})" if missed else ""))
    return f"Target (median |error| within ±20 % for {', '.join(TARGET_METRICS)}), {kind}: " + "; ".join(parts) + "."


TARGET_METRICS = ("LUT", "FF", "DSP", "BRAM36", "latency")


def _pct(x: float) -> str:
    return f"{100 * x:+.0f}%"


def markdown(result: dict, calibs: Calibrations) -> str:
    lines = [
        "# Estimator vs real HLS reports",
        "",
        "Generated by `python bench/estimator.py` from `../shared/reports` (see its MANIFEST.md). Estimates come "
        "from `flows/estimate.py` with the calibration of the tool that made each report (`VIVADO_HLS_CALIBRATION` "
        "or `VITIS_HLS_CALIBRATION`); real numbers are the csynth top-level report (`myproject_axi` for "
        "VivadoAccelerator runs). Relative error = (estimate - real) / max(real, 1). BRAM36 = BRAM_18K / 2. "
        "Layer figures come from the per-module reports, or from the instance tables of the top report where "
        "the module reports were not kept.",
        "",
        "Two kinds of error. **In-sample**: the committed constants, fitted on all 23 runs (`--fit`). "
        "**Cross-validated** (leave one network out): each network's runs estimated with constants fitted "
        "without that network (runs 01/02 are one network, each sweep is one). The cross-validated figures are "
        "what to expect on a new network; the in-sample ones are optimistic.",
        "",
        "## Summary (estimate vs csynth)",
        "",
        "| subset | metric | n | in-sample median abs err | cross-validated median abs err | "
        "cross-validated within ±20% | cross-validated max abs err |",
        "|---|---|---|---|---|---|---|",
    ]
    cv = result.get("cv")
    for subset in SUBSETS:
        for m in METRICS:
            st = result["summary"][subset][m]
            if not st.get("n"):
                continue
            cst = cv["summary"][subset][m] if cv else None
            cv_cells = (
                f"{100 * cst['median_abs_rel_error']:.0f}% | {100 * cst['within_20pct']:.0f}% | "
                f"{100 * cst['max_abs_rel_error']:.0f}%"
                if cst and cst.get("n")
                else "not run | | "
            )
            lines.append(f"| {subset} | {m} | {st['n']} | {100 * st['median_abs_rel_error']:.0f}% | {cv_cells} |")
    lines += [
        "",
        "## Per layer (module reports, or the instance tables of the top report), in-sample",
        "",
        "| tool | metric | n | median abs err | within ±20% | median signed |",
        "|---|---|---|---|---|---|",
    ]
    for fam, stats in result["summary"]["layers"].items():
        for m, st in stats.items():
            if st.get("n"):
                lines.append(
                    f"| {fam} | {m} | {st['n']} | {100 * st['median_abs_rel_error']:.0f}% | "
                    f"{100 * st['within_20pct']:.0f}% | {_pct(st['median_signed_rel_error'])} |"
                )
    lines += [
        "",
        "## Per run (estimate / csynth, in-sample error; cross-validated error; **x** = cross-validated outside ±20%)",
        "",
        "| run | tool, part, clock | " + " | ".join(METRICS) + " |",
        "|---|---|" + "---|" * len(METRICS),
    ]
    for r in result["runs"]:
        cells = []
        cv_err = cv["runs"].get(r["key"], {}).get("rel_error") if cv else None
        for m in METRICS:
            e, c, err = r["estimate"][m], r["csynth"][m], r["rel_error"][m]
            if cv_err:
                flag = "" if abs(cv_err[m]) <= TOLERANCE else " **x**"
                cells.append(f"{e:.0f} / {c:.0f} ({_pct(err)}; {_pct(cv_err[m])}){flag}")
            else:
                cells.append(f"{e:.0f} / {c:.0f} ({_pct(err)})")
        lines.append(f"| {r['key']} | {r['tool']}, {r['part']}, {r['clock_ns']:g} ns | " + " | ".join(cells) + " |")
    lines += [
        "",
        "## Against Vivado report_utilization (where present)",
        "",
        "The estimator predicts csynth. Vivado's synthesis differs from csynth by the amounts in the last "
        "column (HLS over-reports LUTs; Vivado caps DSPs at the device size and moves the rest to LUTs).",
        "",
        "| run | scope | metric | estimate | Vivado | est. error | csynth vs Vivado |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in result["runs"]:
        if "vivado" not in r:
            continue
        for m in ("LUT", "FF", "DSP", "BRAM36"):
            if m not in r["vivado_rel_error"]:
                continue
            lines.append(
                f"| {r['key']} | {r['vivado']['scope']} | {m} | {r['estimate'][m]:.0f} | "
                f"{r['vivado'][m]:g} | {_pct(r['vivado_rel_error'][m])} | "
                f"{_pct(r['csynth_vs_vivado'][m])} |"
            )
    lines += ["", "## Assumptions per run", ""]
    for r in result["runs"]:
        if r["assumptions"]:
            lines.append(f"- {r['key']}: " + "; ".join(r["assumptions"]))
    lines += [
        "",
        "## What is claimed (checked by tests/test_estimate.py; cross-validated claims by a slow test)",
        "",
        "| kind | subset | metric | median abs err at most | within ±20% at least |",
        "|---|---|---|---|---|",
    ]
    lines += [f"| in-sample | {sub} | {m} | {100 * a:.0f}% | {100 * b:.0f}% |" for (sub, m), (a, b) in CLAIMS.items()]
    lines += [
        f"| cross-validated | {sub} | {m} | {100 * a:.0f}% | {100 * b:.0f}% |" for (sub, m), (a, b) in CV_CLAIMS.items()
    ]
    failures = check_claims(result["summary"])
    if cv:
        failures += [f"cross-validated {f}" for f in check_claims(cv["summary"], CV_CLAIMS)]
    lines += ["", "All claims hold." if not failures else "Claims that do NOT hold: " + "; ".join(failures)]
    lines += ["", _target_sentence(result["summary"], "in-sample")]
    if cv:
        lines += ["", _target_sentence(cv["summary"], "cross-validated")]
    lines += ["", "## Known misses", ""] + [f"- {m}" for m in KNOWN_MISSES]
    for family, calib in calibs.items():
        lines += ["", f"## Constants: {family}", "", "```"]
        lines += [f"{f.name} = {getattr(calib, f.name)!r}" for f in fields(calib)]
        lines += ["```"]
    lines.append("")
    return "\n".join(lines)


KNOWN_MISSES: list[str] = [
    "In-sample vs cross-validated: with 13 networks, constants fitted on all of them fit each one better "
    "than a new network will be fitted. FF and latency generalize worst (cross-validated medians in the "
    "summary); LUT, DSP and BRAM36 hold. Per layer, FF errors are large (Vivado HLS median ~55 %) and "
    "partly cancel in the totals.",
    "FF depends on the tool version and the clock more than any per-bit constant can follow: for the same "
    "kind of dense layer Vitis 2022.2 (run 04) and 2024.1 (run 03) schedule one or two cycles and keep "
    "~6 FF per product, Vitis 2021.1/2025.1 (runs 12-14) 6-8 cycles and ~100 FF per product. The FF fit "
    "uses a Cauchy loss so that runs 03/04 do not distort the other constants; they stay at +141..+376 %.",
    "Vitis 2021.1 at 3.33 ns (run 13) spends about twice the LUTs per product of the 5 ns runs (deep "
    "pipelines: delay lines and enables): LUT -47..-60 %. A per-stage LUT term fixed it in-sample but made "
    "the cross-validated Vitis LUT error worse (about 30 % -> 45 %), so it is not in the model.",
    "Vitis 2021.1 ignores hls4ml's `ALLOCATION ... mul limit` at RF 2 (runs 13/14 DSP_reuse2 keep the RF 1 "
    "DSP count: -41..-43 %); at RF 100 it uses ceil(nonzero/II) DSPs for the II it reaches (-50 %).",
    "Latency strategy with RF > 1 in io_parallel (runs 09, 13 reuse100): HLS does not keep II = RF; "
    "with narrow constant weights nothing is shared and the II is set by the few real multipliers. "
    "Latency/II off by 40-90 %; the estimate keeps hls4ml's intent.",
    "Run 03 (Vitis 2024.1, 5 ns, 27 % uncertainty): the conv loop misses II=1 (II violation, 3 cycles per "
    "pixel), latency -59 %. Vivado HLS reaches 1 cycle per pixel at RF 1 (runs 01/02).",
    "Run 04 (Vitis 2022.2) schedules four dense layers in 15 cycles; the other Vitis versions take 2-3x longer "
    "per layer (+120 % latency here).",
    "Runs 05/07 were made by hls4ml < 0.6: a serial stream softmax (1 DSP instead of 10), a conv loop that is not "
    "pipelined (13 cycles per pixel at RF 16, the model says RF), pooling line buffers in registers, "
    "and resource-strategy kernels with runtime input indexing.",
    "Run 02: the QKeras precisions are assumed (6-bit weights, 16-bit activations); DSP +44 %.",
    "Run 11 (24-bit resource-strategy convs at RF 2-3): FF +77 %. Registers per resource-strategy multiplier "
    "grow with RF in the other runs (08, 10); a log2(RF) term fitted that but made cross-validated FF worse "
    "(by about 10 points on Vivado HLS), so it is not in the model.",
    "Against Vivado synthesis (not the estimator's target): csynth's LUT count is 30-210 % above Vivado's; "
    "Vivado moves shallow resource-strategy weight ROMs (depth = RF <= 64) from BRAM to LUTs (runs 07, 10, 11: "
    "5-8x fewer BRAM) and caps DSPs at the device (run 06: 664 -> 220). A design the estimate rejects by a "
    "small LUT margin may still fit after Vivado synthesis.",
]

# What we claim (and tests/test_estimate.py checks) about DEFAULT_CALIBRATIONS:
# (subset, metric) -> (max median |relative error|, min fraction of runs within ±20 %).
# "layers/<tool>" subsets are the per-layer comparisons with the module reports. CLAIMS are in-sample
# (checked on every test run); CV_CLAIMS are leave-one-network-out (checked by a slow test: it refits
# the constants 13 times).
CLAIMS: dict[tuple[str, str], tuple[float, float]] = {
    ("all", "LUT"): (0.20, 0.60),
    ("all", "FF"): (0.20, 0.60),
    ("all", "DSP"): (0.05, 0.65),
    ("all", "BRAM36"): (0.05, 0.85),
    ("all", "latency"): (0.20, 0.50),
    ("vivado_hls", "LUT"): (0.10, 0.85),
    ("vivado_hls", "FF"): (0.10, 0.70),
    ("vivado_hls", "DSP"): (0.05, 0.60),
    ("vivado_hls", "BRAM36"): (0.05, 0.85),
    ("vivado_hls", "latency"): (0.10, 0.60),
    ("vivado_hls", "II"): (0.05, 0.70),
    ("layers/vivado_hls", "DSP"): (0.05, 0.85),
    ("layers/vivado_hls", "BRAM36"): (0.05, 0.95),
    ("layers/vivado_hls", "latency"): (0.05, 0.70),
    ("layers/vivado_hls", "LUT"): (0.25, 0.45),
    ("vitis_hls", "LUT"): (0.30, 0.40),
    ("vitis_hls", "FF"): (0.15, 0.50),
    ("vitis_hls", "DSP"): (0.05, 0.65),
    ("vitis_hls", "BRAM36"): (0.10, 0.85),
    ("vitis_hls", "latency"): (0.25, 0.45),
}
CV_CLAIMS: dict[tuple[str, str], tuple[float, float]] = {
    ("all", "LUT"): (0.20, 0.55),
    ("all", "FF"): (0.35, 0.20),
    ("all", "DSP"): (0.05, 0.65),
    ("all", "BRAM36"): (0.05, 0.85),
    ("all", "latency"): (0.30, 0.30),
    ("vivado_hls", "LUT"): (0.15, 0.80),
    ("vivado_hls", "FF"): (0.30, 0.30),
    ("vivado_hls", "latency"): (0.10, 0.60),
}


def check_claims(summary: dict, claims: dict[tuple[str, str], tuple[float, float]] | None = None) -> list[str]:
    """The claims (default `CLAIMS`) that the summary does not meet, as readable lines (empty when all hold)."""
    failures = []
    for (subset, metric), (max_median, min_within) in (CLAIMS if claims is None else claims).items():
        node = summary
        for key in subset.split("/"):
            node = node[key]
        st = node[metric]
        if st["median_abs_rel_error"] > max_median or st["within_20pct"] < min_within:
            failures.append(
                f"{subset}/{metric}: median |err| {st['median_abs_rel_error']:.2f} (claim <= {max_median}), "
                f"within 20% {st['within_20pct']:.2f} (claim >= {min_within})"
            )
    return failures


SUBSETS = ("all", "vivado_hls", "vitis_hls", "7series_vivado_hls")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fit", action="store_true", help="refit the constants on all runs first")
    parser.add_argument(
        "--no-cv", action="store_true", help="skip the leave-one-network-out cross-validation (about a minute)"
    )
    parser.add_argument("--no-write", action="store_true", help="do not write bench/results")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if not (REPORTS / "MANIFEST.md").is_file():
        print(f"SKIP: {REPORTS} is absent; the estimator bench needs the shared HLS reports.")
        return 0
    calibs = dict(DEFAULT_CALIBRATIONS)
    if args.fit:
        calibs = fit_all(calibs)
        for family in calibs:
            print(f"fitted constants for {family} (paste into flows/estimate.py):")
            print(
                "    "
                + ", ".join(
                    f"{n}={getattr(calibs[family], n):.4g}" for n in [p[0] for p in FIT_PARAMS] + list(TIMING_GRID)
                )
            )
    result = evaluate(calibs)
    result["calibrations"] = {k: v.to_dict() for k, v in calibs.items()}
    if not args.no_cv:
        result["cv"] = cross_validate(calibs)
    for subset in ("vivado_hls", "vitis_hls", "all"):
        print(f"[{subset}]  median |err| in-sample" + ("" if args.no_cv else " / cross-validated"))
        for m in METRICS:
            st = result["summary"][subset][m]
            line = f"  {m:8s} n={st['n']:2d}  {100 * st['median_abs_rel_error']:5.1f}%"
            if "cv" in result:
                cst = result["cv"]["summary"][subset][m]
                line += f" / {100 * cst['median_abs_rel_error']:5.1f}%"
                line += f"  (cv within 20%: {100 * cst['within_20pct']:3.0f}%)"
            print(line)
    if not args.no_write:
        RESULTS.mkdir(parents=True, exist_ok=True)
        (RESULTS / "estimator.json").write_text(json.dumps(result, indent=1) + "\n")
        (RESULTS / "estimator.md").write_text(markdown(result, calibs))
        print(f"wrote {RESULTS / 'estimator.json'} and {RESULTS / 'estimator.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
