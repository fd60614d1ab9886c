"""The one typed build configuration: dataclasses, validation, JSON/YAML round trip, `--set` overrides.

Everything needed to rebuild is in `BuildConfig`; it is saved as `config.json` in every build folder.
Config files may be JSON or YAML (parsed with `yaml.safe_load`: data only, nothing executes).
Invalid values raise `UsageError` naming the field and the valid choices; nothing is silently
replaced. Per-model default recipes (models/__init__.py) are applied before user overrides.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import asdict, dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any, get_args, get_origin, get_type_hints

from flows.configfile import dump_yaml, read_config_file, reject_json_constant
from flows.dataconfig import DATASETS, DataConfig, validate_data  # noqa: F401 (DATASETS: re-exported)
from flows.errors import UsageError
from flows.searchconfig import SearchConfig, validate_search

IO_TYPES = ("io_stream", "io_parallel")
STRATEGIES = ("Latency", "Resource")
LAYER_STRATEGIES = ("latency", "resource", "sparse", "distributed_arithmetic")
DEVICES = ("auto", "cpu", "cuda")


@dataclass
class TrainConfig:
    """Float pre-training, then quantization-aware fine-tuning (same optimizer recipe)."""

    epochs: int = 12  # float pre-training epochs
    qat_epochs: int = 6  # quantization-aware fine-tuning epochs
    batch_size: int = 128
    lr: float = 2e-3
    qat_lr: float = 5e-4
    weight_decay: float = 1e-4
    threads: int = 1  # torch threads; more threads slow small nets down on few, busy cores
    device: str = "auto"  # auto (cuda when available), cpu or cuda: training and evaluation (export stays on CPU)
    weights: str | None = None  # a state dict file (torch weights_only or .safetensors) loaded instead of training


@dataclass
class QuantConfig:
    """Bit widths of the hardware model (Brevitas, power-of-two scales, 32-bit integer biases)."""

    weight_bits: int = 5
    conv_weight_bits: int | None = None
    fc_weight_bits: int | None = None
    act_bits: int = 8
    input_bits: int = 8


@dataclass
class StructureConfig:
    """Structured (channel/filter) pruning after float training: the network physically shrinks.

    `ratio` is the fraction of channels removed from every group (a conv's filters and everything that
    consumes them); `ratios` overrides it per group (e.g. "features.fire1.squeeze": 0.5).
    """

    enabled: bool = False
    ratio: float = 0.3
    ratios: dict[str, float] = field(default_factory=dict)
    min_channels: int = 2
    norm: str = "l1"  # filter importance: "l1" or "l2"
    epochs: int = 3  # fine-tuning epochs after pruning
    lr: float = 1e-3


@dataclass
class CompressConfig:
    """Deep Compression: magnitude pruning with retraining, k-means weight sharing, Huffman coding.

    Per-layer pruning is set by `quality` (threshold = q x std of the layer's weights) or by a target
    `density` (fraction kept; q is derived from it on the trained weights), else `default_quality`.
    Keys are PyTorch module names (e.g. "ip1", "features.fire1.squeeze").
    """

    enabled: bool = False
    prune: bool = True
    iterations: int = 3  # prune/retrain rounds (the quality parameter ramps up over them)
    retrain_epochs: int = 2  # retraining epochs per round
    retrain_lr: float = 1e-3
    quality: dict[str, float] = field(default_factory=dict)
    density: dict[str, float] = field(default_factory=dict)
    default_quality: float | None = None
    share: bool = True
    conv_bits: int = 8  # k-means codebook 2^b per layer (the paper: 8 conv, 5 fc)
    fc_bits: int = 5
    share_epochs: int = 2  # centroid fine-tuning epochs
    share_lr: float = 2e-4
    conv_index_bits: int = 8  # relative-index width in the sparse storage
    fc_index_bits: int = 5


@dataclass
class HLSConfig:
    """hls4ml conversion settings. `reuse_factor` 0 lets the flow choose per layer."""

    io_type: str = "io_stream"
    strategy: str = "Latency"
    reuse_factor: int = 1
    default_precision: str = "fixed<16,6>"
    project_name: str = "myproject"
    clock_period_ns: float | None = None  # None: the board's default clock
    layer_reuse: dict[str, int] = field(default_factory=dict)  # per hls4ml layer name overrides
    layer_precision: dict[str, str] = field(default_factory=dict)  # "layer" or "layer/accum" -> "fixed<8,2>"
    # per layer (ONNX node name, e.g. MatMul_0): "latency", "resource", "sparse" (the sparse weight-shared kernel
    # of flows/sparse/) or "distributed_arithmetic" (da4ml shift-and-add, flows/da/; fully parallel)
    layer_strategy: dict[str, str] = field(default_factory=dict)
    # "auto": dense layers (io_stream) with at most sparse_max_density nonzero weights get the sparse kernel when
    # the fitted design is better with it (flows/variants.py choose_design); "off": never unless layer_strategy says
    sparse: str = "auto"
    sparse_max_density: float = 0.3
    # "auto": io_stream conv/pointwise/dense layers (not given the sparse kernel) with at most da_max_nonzero
    # nonzero weights become distributed arithmetic (da4ml, fully parallel) when the fitted design is better
    # with it (flows/variants.py choose_design); "off": only where layer_strategy says so
    da: str = "auto"
    da_max_nonzero: int = 4096  # bounds da4ml's solve time (a 784x300 layer at 90% zeros takes minutes)
    # DA layers' Verilog through yosys (synth_xilinx) and verilator (128 vectors) when the tools are on PATH
    # ("auto"), or never ("off": e.g. quick exploratory builds; verilator compiles take a minute per layer)
    rtl: str = "auto"
    exact_accumulators: bool = True  # narrowest overflow-free accumulator types (flows/precision.py)
    pipeline_axi: bool = True  # pipeline the AXI wrapper's copy loops (VivadoAccelerator)
    fuse_relu: bool = True  # quantized ReLUs become the output cast of the conv/dense before them
    fifo_depth: str = "rows"  # io_stream FIFOs: "rows" (2 padded rows + 16) or "full" (hls4ml: H*W)
    fit: bool = True  # choose reuse factors/strategies so the design fits the board (estimate)
    # after fitting: "area" raises reuse factors of layers with slack while the II stays at the fastest
    # fitting design's (or at hls.target_images_per_second); "latency" keeps the fastest fitting design
    objective: str = "area"
    target_images_per_second: float | None = None  # "area": the throughput to keep (None: the fastest fit's)
    require_fit: bool = True  # exit non-zero (after the report) when the design does not fit the board
    synth: bool = False  # run Vivado/Vitis HLS C synthesis (needs the tool on PATH)
    vsynth: bool = False  # and Vivado logic synthesis after it
    # PYNQ boards: hls4ml's VivadoAccelerator build to a .bit + .hwh in deploy/ (skipped, with a message,
    # without vivado_hls and vivado on PATH)
    bitstream: bool = False


@dataclass
class CSimConfig:
    """C simulation: how many test images (None = the whole test set), testbench samples to write."""

    samples: int | None = None
    tb_samples: int = 100
    diagnose_samples: int = 8  # samples traced layer by layer when outputs disagree


@dataclass
class DataflowConfig:
    """Concurrent bounded-FIFO C simulation of io_stream designs (flows/dataflow/): at conversion it sizes
    the FIFOs (`size`: the smallest depths that pass, plus `margin`, instead of hls.fifo_depth's), then the
    `dataflow` step runs `images` test images back to back, bit for bit against the C simulation; a
    deadlock fails the build (exit 7) with its diagnosis in dataflow.json."""

    enabled: bool = True
    images: int = 20  # test images fed back to back in the check (>= 2)
    timeout_s: float = 60.0  # watchdog: a run with no stream operation for this long fails
    size: bool = True
    margin: float = 0.5  # chosen depth = max(min_depth, ceil(minimum * (1 + margin)))
    min_depth: int = 2  # no FIFO shallower than this (Vivado HLS's default depth)


@dataclass
class BuildConfig:
    """A whole build: model, board, data, training recipe, quantization, HLS and csim settings."""

    model: str
    board: str = "pynq-z2"
    seed: int = 0
    out_dir: str | None = None  # default hls/<model>-<board>
    step_cache: str | None = None  # finished steps shared between builds (flows/stepcache.py; sweeps set it)
    arch: dict[str, Any] = field(default_factory=dict)  # model architecture knobs
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    quant: QuantConfig = field(default_factory=QuantConfig)
    structure: StructureConfig = field(default_factory=StructureConfig)
    compress: CompressConfig = field(default_factory=CompressConfig)
    hls: HLSConfig = field(default_factory=HLSConfig)
    csim: CSimConfig = field(default_factory=CSimConfig)
    search: SearchConfig = field(default_factory=SearchConfig)
    dataflow: DataflowConfig = field(default_factory=DataflowConfig)
    tensorboard: bool = False  # also log every training epoch to <build>/tensorboard (pip install tensorboard)

    def to_dict(self) -> dict:
        return asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    def section(self, *names: str) -> dict:
        """The named parts of the config as a dict (what a step's cache key depends on)."""
        d = self.to_dict()
        return {n: d[n] for n in names}


def _convert(value: Any, hint: Any, where: str) -> Any:
    """Check/convert one JSON value to the annotated type; raise UsageError naming the field."""
    origin = get_origin(hint)
    args = get_args(hint)
    if hint is Any:
        return value
    if origin is type(None) or hint is type(None):
        if value is not None:
            raise UsageError(f"config {where}: expected null, got {value!r}")
        return None
    if origin in (dataclasses.InitVar,):
        return value
    if args and type(None) in args:  # Optional[X]
        if value is None:
            return None
        (inner,) = [a for a in args if a is not type(None)]
        return _convert(value, inner, where)
    if origin is dict:
        if not isinstance(value, dict):
            raise UsageError(f"config {where}: expected an object, got {value!r}")
        kt, vt = args or (Any, Any)
        return {_convert(k, kt, where): _convert(v, vt, f"{where}.{k}") for k, v in value.items()}
    if is_dataclass(hint):
        return _from_dict(hint, value, where)
    if hint is bool:
        if isinstance(value, bool):
            return value
        raise UsageError(f"config {where}: expected true/false, got {value!r}")
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise UsageError(f"config {where}: expected an integer, got {value!r}")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise UsageError(f"config {where}: expected a number, got {value!r}")
        if not math.isfinite(value):
            raise UsageError(f"config {where}: expected a finite number, got {value!r}")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise UsageError(f"config {where}: expected a string, got {value!r}")
        return value
    return value


def _from_dict(cls: type, data: Any, where: str) -> Any:
    if not isinstance(data, dict):
        raise UsageError(f"config {where or 'root'}: expected an object, got {data!r}")
    hints = get_type_hints(cls)
    names = {f.name for f in fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise UsageError(f"config {where or 'root'}: unknown keys {unknown}; valid keys: {sorted(names)}")
    kwargs = {k: _convert(v, hints[k], f"{where}.{k}" if where else k) for k, v in data.items()}
    try:
        return cls(**kwargs)
    except TypeError as exc:
        raise UsageError(f"config {where or 'root'}: {exc}") from None


def config_from_dict(data: dict) -> BuildConfig:
    cfg = _from_dict(BuildConfig, data, "")
    validate(cfg)
    return cfg


def load_config(path: str | Path, model: str | None = None, board: str | None = None) -> BuildConfig:
    """A config file (JSON or YAML); `model`/`board` (from the command line) fill or replace its own."""
    data = read_config_file(path)
    if model is not None:
        data["model"] = model
    if board is not None:
        data["board"] = board
    if "model" not in data:
        raise UsageError(f"config file {path} has no 'model' key; name the model on the command line")
    return config_from_dict(data)


def to_yaml(cfg: BuildConfig) -> str:
    """The config as YAML (what `config.yaml` in a build folder holds; `--config` reads it back)."""
    return dump_yaml(cfg.to_dict())


def parse_override(text: str) -> tuple[list[str], Any]:
    """`train.epochs=3` -> (["train", "epochs"], 3). Values are JSON, or plain strings."""
    if "=" not in text:
        raise UsageError(f"--set {text!r}: expected KEY=VALUE, e.g. train.epochs=3")
    key, raw = text.split("=", 1)
    try:
        value = json.loads(raw, parse_constant=reject_json_constant)
    except json.JSONDecodeError:
        value = raw
    return key.strip().split("."), value


# tables keyed by layer name
FREE_FORM_TABLES = ("layer_reuse", "layer_precision", "layer_strategy", "quality", "density", "ratios")


def apply_overrides(data: dict, overrides: dict[str, Any]) -> dict:
    """Set dotted keys (`train.epochs`) in a nested config dict; returns a new dict."""
    out = json.loads(json.dumps(data))
    for dotted, value in overrides.items():
        path = dotted.split(".")
        if len(path) > 3 and path[1] in FREE_FORM_TABLES:  # layer names contain dots: features.fire1.squeeze
            path = [path[0], path[1], ".".join(path[2:])]
        node = out
        for part in path[:-1]:
            if part not in node or not isinstance(node[part], dict):
                raise UsageError(f"config key {dotted!r}: {part!r} is not a section")
            node = node[part]
        free_form = path[0] == "arch" or (len(path) > 2 and path[1] in FREE_FORM_TABLES)
        if path[-1] not in node and not free_form:
            raise UsageError(f"config key {dotted!r} does not exist; see config.json of a build for valid keys")
        node[path[-1]] = value
    return out


def make_config(model: str, overrides: dict[str, Any] | None = None, model_defaults: dict | None = None) -> BuildConfig:
    """Defaults < the model's recipe < the user's overrides, validated."""
    base = BuildConfig(model=model).to_dict()
    base = apply_overrides(base, dict(model_defaults or {}))
    base = apply_overrides(base, dict(overrides or {}))
    return config_from_dict(base)


def _choice(where: str, value: Any, choices: tuple) -> None:
    if value not in choices:
        raise UsageError(f"config {where} = {value!r} is not valid; choose one of {list(choices)}")


def _positive(where: str, value: Any, allow_zero: bool = False) -> None:
    if value is None:
        return
    if value < 0 or (value == 0 and not allow_zero):
        raise UsageError(f"config {where} = {value!r} must be {'>= 0' if allow_zero else '> 0'}")


SEED_MAX = 2**32 - 1  # what every random generator of the flow (torch, numpy, scikit-learn) accepts


def validate(cfg: BuildConfig) -> None:
    """Range and choice checks that types alone do not catch."""
    if not 0 <= cfg.seed <= SEED_MAX:
        raise UsageError(f"config seed = {cfg.seed} must be in 0..{SEED_MAX}")
    validate_data(cfg.data)
    _choice("train.device", cfg.train.device, DEVICES)
    _choice("hls.io_type", cfg.hls.io_type, IO_TYPES)
    _choice("hls.strategy", cfg.hls.strategy, STRATEGIES)
    _choice("hls.fifo_depth", cfg.hls.fifo_depth, ("rows", "full"))
    _choice("hls.objective", cfg.hls.objective, ("area", "latency"))
    validate_search(cfg.search)
    _positive("hls.target_images_per_second", cfg.hls.target_images_per_second)
    if cfg.hls.target_images_per_second and (cfg.hls.objective != "area" or not cfg.hls.fit):
        raise UsageError(
            "config hls.target_images_per_second is used by the area recovery only: "
            "set hls.objective=area and hls.fit=true, or drop the target"
        )
    _positive("train.epochs", cfg.train.epochs, allow_zero=True)
    _positive("train.qat_epochs", cfg.train.qat_epochs, allow_zero=True)
    _positive("train.batch_size", cfg.train.batch_size)
    _positive("train.lr", cfg.train.lr)
    _positive("train.qat_lr", cfg.train.qat_lr)
    _positive("train.threads", cfg.train.threads, allow_zero=True)
    _positive("csim.samples", cfg.csim.samples)
    if cfg.dataflow.images < 2:
        raise UsageError(f"config dataflow.images = {cfg.dataflow.images} must be >= 2 (images run back to back)")
    _positive("dataflow.timeout_s", cfg.dataflow.timeout_s)
    _positive("dataflow.margin", cfg.dataflow.margin, allow_zero=True)
    _positive("dataflow.min_depth", cfg.dataflow.min_depth)
    _positive("csim.tb_samples", cfg.csim.tb_samples, allow_zero=True)
    _positive("hls.reuse_factor", cfg.hls.reuse_factor, allow_zero=True)
    _positive("hls.clock_period_ns", cfg.hls.clock_period_ns)
    for name in ("weight_bits", "conv_weight_bits", "fc_weight_bits"):
        bits = getattr(cfg.quant, name)
        if bits is not None and not 2 <= bits <= 16:
            raise UsageError(f"config quant.{name} = {bits} must be in 2..16")
    for name in ("act_bits", "input_bits"):
        bits = getattr(cfg.quant, name)
        if not 2 <= bits <= 16:
            raise UsageError(f"config quant.{name} = {bits} must be in 2..16")
    if not cfg.hls.project_name.isidentifier():
        raise UsageError(f"config hls.project_name = {cfg.hls.project_name!r} must be a C identifier")
    prec = cfg.hls.default_precision.replace(" ", "")
    if not (prec.startswith(("fixed<", "ap_fixed<")) and prec.endswith(">")):
        raise UsageError(f"config hls.default_precision = {cfg.hls.default_precision!r}: use e.g. 'fixed<16,6>'")
    st = cfg.structure
    if not 0 <= st.ratio < 1:
        raise UsageError(f"config structure.ratio = {st.ratio} must be in [0, 1)")
    for group, r in st.ratios.items():
        if not 0 <= r < 1:
            raise UsageError(f"config structure.ratios.{group} = {r} must be in [0, 1)")
    _choice("structure.norm", st.norm, ("l1", "l2"))
    _positive("structure.min_channels", st.min_channels)
    _positive("structure.epochs", st.epochs, allow_zero=True)
    c = cfg.compress
    _positive("compress.iterations", c.iterations)
    _positive("compress.retrain_epochs", c.retrain_epochs, allow_zero=True)
    _positive("compress.share_epochs", c.share_epochs, allow_zero=True)
    for name in ("conv_bits", "fc_bits", "conv_index_bits", "fc_index_bits"):
        if not 1 <= getattr(c, name) <= 16:
            raise UsageError(f"config compress.{name} = {getattr(c, name)} must be in 1..16")
    for layer, d in c.density.items():
        if not 0 < d <= 1:
            raise UsageError(f"config compress.density.{layer} = {d} must be a fraction in (0, 1]")
    for layer, q in c.quality.items():
        if q < 0:
            raise UsageError(f"config compress.quality.{layer} = {q} must be >= 0")
    for layer, prec in cfg.hls.layer_precision.items():
        if not (prec.replace(" ", "").startswith(("fixed<", "ufixed<", "ap_fixed<", "ap_ufixed<", "int<", "uint<"))):
            raise UsageError(f"config hls.layer_precision.{layer} = {prec!r}: use e.g. 'fixed<8,2>' or 'ufixed<8,0>'")
    _choice("hls.sparse", cfg.hls.sparse, ("auto", "off"))
    _choice("hls.da", cfg.hls.da, ("auto", "off"))
    _choice("hls.rtl", cfg.hls.rtl, ("auto", "off"))
    _positive("hls.da_max_nonzero", cfg.hls.da_max_nonzero)
    if not 0 < cfg.hls.sparse_max_density <= 1:
        raise UsageError(f"config hls.sparse_max_density = {cfg.hls.sparse_max_density} must be in (0, 1]")
    for layer, strategy in cfg.hls.layer_strategy.items():
        _choice(f"hls.layer_strategy.{layer}", strategy, LAYER_STRATEGIES)
    for layer, rf in cfg.hls.layer_reuse.items():
        if not isinstance(rf, int) or rf < 1:
            raise UsageError(f"config hls.layer_reuse.{layer} = {rf!r} must be an integer >= 1")
