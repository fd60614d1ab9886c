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
    if input_name in layers:
        layers[input_name].setdefault("Precision", {})["result"] = input_precision(quant)
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


def convert(
    wrapper,
    out_dir: Path,
    hls: HLSConfig,
    quant: QuantConfig,
    board: Board,
    project_dir: str = PROJECT_DIR,
    write: bool = True,
    trace: bool = False,
):
    """QONNX ModelWrapper -> hls4ml ModelGraph written to `out_dir/project_dir` (atomically)."""
    import hls4ml

    settings = resolve_settings(hls, board)
    config = make_hls_config(wrapper, hls, quant, settings, trace)
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
    buf = StringIO()
    try:
        with redirect_stdout(buf), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            hls_model = hls4ml.converters.convert_from_onnx_model(wrapper, **kwargs)
            if write:
                hls_model.write()
    except Exception as exc:
        log.debug("hls4ml output:\n%s", buf.getvalue())
        shutil.rmtree(staging, ignore_errors=True)
        raise ToolError(f"hls4ml could not convert the model: {exc}") from exc
    log.debug("hls4ml output:\n%s", buf.getvalue())
    if not write:
        return hls_model, config
    if final.exists():
        shutil.rmtree(final)
    os.replace(staging, final)
    _retarget_output_dir(final, staging)
    hls_model.config.config["OutputDir"] = str(final)
    return hls_model, config


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
    return rows


_SO_RE = re.compile(r"LIB_STAMP=(\w+)")


def library_path(project: Path, project_name: str) -> Path:
    """The shared library build_lib.sh writes: firmware/<name>-<stamp>.so."""
    script = (Path(project) / "build_lib.sh").read_text()
    match = _SO_RE.search(script)
    if not match:
        raise ToolError(f"{project}/build_lib.sh has no LIB_STAMP; was the project written by hls4ml?")
    return Path(project) / "firmware" / f"{project_name}-{match.group(1)}.so"
