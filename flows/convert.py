"""Convert the cleaned QONNX graph into an hls4ml project for the board.

The board file decides the backend: `VivadoAccelerator` (PYNQ boards: AXI-stream wrapper
`myproject_axi`, block design `design.tcl`, PYNQ driver `axi_stream_driver.py`), or plain
`Vivado`/`Vitis` IP for the part. Precisions come from the QONNX quantizers (hls4ml's 'auto'), except
the input, which is set to exactly the grid of the network's input quantizer: hls4ml's default input
type truncates before the quantizer rounds (TOOLCHAIN.md pitfall 3).

The project is written into a staging folder and renamed into place, so an interrupted conversion
never leaves a project that a rerun would trust.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import warnings
from contextlib import redirect_stdout
from dataclasses import dataclass
from io import StringIO
from pathlib import Path

from flows.boards import Board
from flows.config import HLSConfig, QuantConfig
from flows.errors import ToolError, UsageError

log = logging.getLogger(__name__)

PROJECT_DIR = "hls4ml_prj"


@dataclass
class HLSSettings:
    """Resolved conversion settings (what goes into hls4ml)."""

    backend: str
    board: str | None
    part: str
    clock_period_ns: float
    io_type: str
    strategy: str
    project_name: str


def resolve_settings(hls: HLSConfig, board: Board) -> HLSSettings:
    return HLSSettings(
        backend=board.backend,
        board=board.hls4ml_board if board.backend == "VivadoAccelerator" else None,
        part=board.part,
        clock_period_ns=hls.clock_period_ns or board.clock_period_ns,
        io_type=hls.io_type,
        strategy=hls.strategy,
        project_name=hls.project_name,
    )


def input_precision(quant: QuantConfig, signed: bool = False) -> str:
    """The exact fixed-point type of the quantized input grid (8-bit unsigned [0,1): fixed<10,2>)."""
    frac = quant.input_bits if not signed else quant.input_bits - 1
    return f"fixed<{frac + 2},2>"


def valid_reuse_factors(layer) -> list[int]:
    """Reuse factors hls4ml accepts for a Dense/Conv layer (its own rule)."""
    backend = layer.model.config.backend
    if hasattr(backend, "get_valid_reuse_factors"):
        n_in = layer.get_attr("n_in") or 1
        n_out = layer.get_attr("n_out") or 1
        try:
            return list(backend.get_valid_reuse_factors(n_in, n_out))
        except Exception:  # backend signature differs across versions
            return []
    return []


def make_hls_config(wrapper, hls: HLSConfig, quant: QuantConfig, settings: HLSSettings, trace: bool = False) -> dict:
    """hls4ml's per-layer config for the QONNX graph with our strategy, reuse and input precision."""
    import hls4ml

    with redirect_stdout(StringIO()):
        config = hls4ml.utils.config.config_from_onnx_model(
            wrapper,
            granularity="name",
            backend=settings.backend,
            default_precision=hls.default_precision,
            default_reuse_factor=max(1, hls.reuse_factor),
        )
    config["Model"]["Strategy"] = hls.strategy
    layers = config.get("LayerName", {})
    input_name = wrapper.graph.input[0].name
    from flows.export import INPUT_PRECISION_KEY

    absorbed = wrapper.get_metadata_prop(INPUT_PRECISION_KEY)
    if input_name in layers:
        layers[input_name].setdefault("Precision", {})["result"] = absorbed or input_precision(quant)
    for name, rf in hls.layer_reuse.items():
        if name not in layers:
            raise UsageError(
                f"hls.layer_reuse names layer {name!r}, which the model does not have; its layers: {sorted(layers)}"
            )
        layers[name]["ReuseFactor"] = rf
    for key, precision in hls.layer_precision.items():
        name, _, kind = key.partition("/")
        if name not in layers:
            raise UsageError(
                f"hls.layer_precision names layer {name!r}, which the model does not have; its layers: {sorted(layers)}"
            )
        layers[name].setdefault("Precision", {})[kind or "result"] = precision
    if trace:
        for layer in layers.values():
            layer["Trace"] = True
    return config


HLS_PREFIXES = ("Conv2D_", "Conv1D_", "Dense_", "Conv_", "Pool_")


def config_key(hls_layer: str, config: dict) -> str | None:
    """The hls4ml config entry (ONNX node name) behind an hls4ml layer name ('Conv2D_Conv_0' -> 'Conv_0')."""
    layers = config.get("LayerName", {})
    if hls_layer in layers:
        return hls_layer
    for prefix in HLS_PREFIXES:
        if hls_layer.startswith(prefix) and hls_layer[len(prefix) :] in layers:
            return hls_layer[len(prefix) :]
    return None


def _to_hls(wrapper, kwargs: dict):
    import hls4ml

    buf = StringIO()
    try:
        with redirect_stdout(buf), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return hls4ml.converters.convert_from_onnx_model(wrapper, **kwargs)
    except Exception as exc:
        log.debug("hls4ml output:\n%s", buf.getvalue())
        raise ToolError(f"hls4ml could not convert the model: {exc}") from exc


def convert(
    wrapper,
    out_dir: Path,
    hls: HLSConfig,
    quant: QuantConfig,
    board: Board,
    project_dir: str = PROJECT_DIR,
    write: bool = True,
    trace: bool = False,
    layer_settings: dict[str, dict] | None = None,
):
    """QONNX ModelWrapper -> hls4ml ModelGraph written to `out_dir/project_dir` (atomically).

    `layer_settings` maps hls4ml layer names to {"ReuseFactor": n, "Strategy": "Latency"|"Resource"}
    (what the fit-to-board search chose). With `hls.exact_accumulators`, a first conversion measures
    the worst-case accumulator ranges (flows/precision.py) and the second uses those exact types.
    """
    from flows.hls_passes import fuse_relu_into_mac
    from flows.precision import exact_layer_types

    settings = resolve_settings(hls, board)
    config = make_hls_config(wrapper, hls, quant, settings, trace)
    for name, values in (layer_settings or {}).items():
        key = config_key(name, config)
        if key is None:
            raise UsageError(f"layer {name!r} is not in the hls4ml config; layers: {sorted(config['LayerName'])}")
        config["LayerName"][key].update(values)
    final = Path(out_dir) / project_dir
    staging = Path(out_dir) / f".{project_dir}.staging"
    if staging.exists():
        shutil.rmtree(staging)
    kwargs = {
        "output_dir": str(staging),
        "project_name": settings.project_name,
        "io_type": settings.io_type,
        "backend": settings.backend,
        "hls_config": config,
        "part": settings.part,
        "clock_period": settings.clock_period_ns,
    }
    if settings.board:
        kwargs["board"] = settings.board
        kwargs["interface"] = "axi_stream"
        kwargs["driver"] = "python"
    log.info(
        "hls4ml: backend %s, part %s, %s, %s strategy, clock %.2f ns",
        settings.backend,
        settings.part,
        settings.io_type,
        settings.strategy,
        settings.clock_period_ns,
    )
    if hls.exact_accumulators:
        user_set = {key.partition("/")[0] for key in hls.layer_precision}
        narrowed = []
        for name, types in exact_layer_types(_to_hls(wrapper, kwargs)).items():
            key = config_key(name, config)
            if key is None or key in user_set:
                continue
            config["LayerName"][key].setdefault("Precision", {}).update(types)
            narrowed.append(f"{name} {types['accum']}")
        if narrowed:
            log.info("exact accumulator types: %s", ", ".join(narrowed))
    hls_model = _to_hls(wrapper, kwargs)
    if hls.fuse_relu:
        fuse_relu_into_mac(hls_model)
    if settings.io_type == "io_stream" and hls.fifo_depth == "rows":
        set_fifo_depths(hls_model)
    if not write:
        return hls_model, config
    try:
        with redirect_stdout(StringIO()), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            hls_model.write()
    except Exception as exc:
        shutil.rmtree(staging, ignore_errors=True)
        raise ToolError(f"hls4ml could not write the project: {exc}") from exc
    if settings.backend == "VivadoAccelerator" and hls.pipeline_axi:
        pipeline_axi_loops(staging, settings.project_name)
    if settings.io_type == "io_stream" and hls.fifo_depth == "rows":
        bind_srl_fifos(staging, settings.project_name, settings.backend)
    if final.exists():
        shutil.rmtree(final)
    os.replace(staging, final)
    _retarget_output_dir(final, staging)
    hls_model.config.config["OutputDir"] = str(final)
    return hls_model, config


def fifo_depth_for(shape: tuple[int, ...], current: int) -> int:
    """Two padded rows plus 16: enough for a 3x3 window (with its padding) to fill on one branch of a
    Fire fork while the other branch's outputs wait at the Concat; hls4ml's default is the whole
    image (H*W), which puts every inter-layer FIFO of a CNN into block RAM."""
    if len(shape) != 3:
        return current
    _, w, _ = shape
    return int(min(current, 2 * (w + 2) + 16))


SRL_MAX_DEPTH = 64  # FIFOs up to this depth are bound to shift registers (LUTs), not block RAM


def set_fifo_depths(hls_model) -> dict[str, int]:
    """Apply `fifo_depth_for` to every io_stream FIFO (the STREAM pragma of each output variable) and
    mark the shallow ones for shift-register storage (written by `bind_srl_fifos`)."""
    depths = {}
    for name, var in hls_model.output_vars.items():
        pragma = getattr(var, "pragma", None)
        if not pragma or pragma[0] != "stream":
            continue
        depth = fifo_depth_for(tuple(var.shape), int(pragma[1]))
        var.pragma = (pragma[0], depth)
        if depth <= SRL_MAX_DEPTH:
            var.fifo_impl = "srl"
        depths[name] = depth
    return depths


_STREAM_PRAGMA = re.compile(r"^(\s*)#pragma HLS STREAM variable=(\w+) depth=(\d+)\s*$", re.MULTILINE)


def bind_srl_fifos(project: Path, project_name: str, backend: str) -> int:
    """Add a storage pragma after every STREAM pragma of depth <= SRL_MAX_DEPTH in the top function.

    Vivado HLS: `RESOURCE core=FIFO_SRL`; Vitis HLS: `BIND_STORAGE type=fifo impl=srl`. Returns the count."""
    path = Path(project) / "firmware" / f"{project_name}.cpp"
    text = path.read_text()

    def add(match: re.Match) -> str:
        indent, var, depth = match.group(1), match.group(2), int(match.group(3))
        if depth > SRL_MAX_DEPTH:
            return match.group(0)
        if backend == "Vitis":
            bind = f"#pragma HLS BIND_STORAGE variable={var} type=fifo impl=srl"
        else:
            bind = f"#pragma HLS RESOURCE variable={var} core=FIFO_SRL"
        return f"{match.group(0)}\n{indent}{bind}"

    if "FIFO_SRL" in text or "impl=srl" in text:  # already bound
        return 0
    new, count = _STREAM_PRAGMA.subn(add, text)
    path.write_text(new)
    return sum(1 for m in _STREAM_PRAGMA.finditer(text) if int(m.group(3)) <= SRL_MAX_DEPTH)


_AXI_LOOP = re.compile(r"(\n(\s*)for\(unsigned i = 0; i < N_(?:IN|OUT) / (?:input|result)_t::size; \+\+i\) \{\n)")
AXI_PRAGMA = "#pragma HLS PIPELINE II=1 // fireflow: one AXI-stream word per clock"


def pipeline_axi_loops(project: Path, project_name: str) -> int:
    """Pipeline the AXI wrapper's copy loops (hls4ml leaves them sequential: ~7 cycles per pixel).

    Returns how many loops were pipelined; the C simulation is unaffected (pragmas only)."""
    path = Path(project) / "firmware" / f"{project_name}_axi.cpp"
    if not path.exists():
        return 0
    text = path.read_text()
    if AXI_PRAGMA in text:
        return 0
    new, count = _AXI_LOOP.subn(lambda m: f"{m.group(1)}{m.group(2)}    {AXI_PRAGMA}\n", text)
    if count:
        path.write_text(new)
    else:
        log.warning("%s: AXI copy loops not found; the wrapper is left as hls4ml wrote it", path)
    return count


def _retarget_output_dir(final: Path, staging: Path) -> None:
    """The project was written under the staging name: fix the paths hls4ml recorded."""
    for name in ("hls4ml_config.yml",):
        path = final / name
        if path.exists():
            text = path.read_text()
            path.write_text(text.replace(str(staging), str(final)))


def layer_table(hls_model) -> list[dict]:
    """One row per hls4ml layer: name, class, output shape, precisions, reuse factor."""
    rows = []
    for layer in hls_model.get_layers():
        types = {}
        for key, var in getattr(layer, "types", {}).items():
            types[key] = str(var.precision)
        out = layer.get_output_variable() if layer.outputs else None
        rows.append(
            {
                "name": layer.name,
                "class": layer.class_name,
                "shape": list(out.shape) if out is not None else [],
                "reuse_factor": layer.get_attr("reuse_factor"),
                "strategy": layer.get_attr("strategy"),
                "types": types,
            }
        )
        if layer.get_attr("fused_activation"):
            rows[-1]["fused_activation"] = layer.get_attr("fused_activation")
    return rows


_SO_RE = re.compile(r"LIB_STAMP=(\w+)")


def library_path(project: Path, project_name: str) -> Path:
    """The shared library build_lib.sh writes: firmware/<name>-<stamp>.so."""
    script = (Path(project) / "build_lib.sh").read_text()
    match = _SO_RE.search(script)
    if not match:
        raise ToolError(f"{project}/build_lib.sh has no LIB_STAMP; was the project written by hls4ml?")
    return Path(project) / "firmware" / f"{project_name}-{match.group(1)}.so"
