"""Convert the cleaned QONNX graph into an hls4ml project for the board.

The board file decides the backend: `VivadoAccelerator` (PYNQ boards: AXI-stream wrapper
`myproject_axi`, block design `design.tcl`, PYNQ driver `axi_stream_driver.py`), or plain
`Vivado`/`Vitis` IP for the part. Precisions come from the QONNX quantizers (hls4ml's 'auto'), except
the input, which is set to exactly the grid of the network's input quantizer: hls4ml's default input
type truncates before the quantizer rounds (TOOLCHAIN.md pitfall 3).

One conversion runs hls4ml's flow for the backend with this flow's passes registered into it
(flows/hls_passes.py: exact accumulators, ReLU fusion, FIFO sizing, per the `hls` config switches);
the writers of flows/hls_writer.py emit the shift-register FIFO and AXI pipeline pragmas. The
project is written into a staging folder and renamed into place, so an interrupted conversion never
leaves a project that a rerun would trust.
"""

from __future__ import annotations

import logging
import os
import shutil
import warnings
from contextlib import redirect_stdout
from dataclasses import dataclass
from io import StringIO
from pathlib import Path

import hls4ml

from flows.boards import Board
from flows.config import HLSConfig, QuantConfig
from flows.da.hls_pass import COST_ATTR as DA_COST_ATTR
from flows.da.hls_pass import DA_STRATEGY, da_flow, set_solver_config
from flows.da.hls_pass import FALLBACK_ATTR as DA_FALLBACK_ATTR
from flows.da.solver import SolverOptions
from flows.errors import FlowError, ToolError, UsageError
from flows.export import INPUT_PRECISION_KEY
from flows.hls_names import config_key
from flows.hls_passes import EXACT_ATTR, FUSED_ATTR, fireflow_flow
from flows.hls_writer import write_project
from flows.sparse.extension import FALLBACK_ATTR, with_sparse_dense
from flows.sparse.extension import STRATEGY as SPARSE_STRATEGY
from flows.sparse.layout import LAYER_CLASS as SPARSE_CLASS

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


def make_hls_config(wrapper, hls: HLSConfig, quant: QuantConfig, settings: HLSSettings, trace: bool = False) -> dict:
    """hls4ml's config for the QONNX graph: our strategy, reuse and input precision, and the flow with our passes."""
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
    config["Flows"] = [
        fireflow_flow(
            settings.backend,
            exact_accumulators=hls.exact_accumulators,
            fuse_relu=hls.fuse_relu,
            fifo_rows=settings.io_type == "io_stream" and hls.fifo_depth == "rows",
        )
    ]
    input_name = wrapper.graph.input[0].name
    absorbed = wrapper.get_metadata_prop(INPUT_PRECISION_KEY)
    if input_name in layers:
        layers[input_name].setdefault("Precision", {})["result"] = absorbed or input_precision(quant)
    for name, rf in hls.layer_reuse.items():
        if name not in layers:
            raise UsageError(
                f"hls.layer_reuse names layer {name!r}, which the model does not have; its layers: {sorted(layers)}"
            )
        layers[name]["ReuseFactor"] = rf
    for name, strategy in hls.layer_strategy.items():
        if name not in layers:
            raise UsageError(
                f"hls.layer_strategy names layer {name!r}, which the model does not have; its layers: {sorted(layers)}"
            )
        if strategy == DA_STRATEGY and layers[name].get("ReuseFactor", 1) != 1:
            raise UsageError(f"hls.layer_strategy.{name}: distributed arithmetic is fully parallel (reuse factor 1)")
        layers[name]["Strategy"] = strategy if strategy in (SPARSE_STRATEGY, DA_STRATEGY) else strategy.capitalize()
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


def _to_hls(wrapper, kwargs: dict):
    buf = StringIO()
    try:
        with redirect_stdout(buf), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return hls4ml.converters.convert_from_onnx_model(wrapper, **kwargs)
    except FlowError:  # our own passes' one-line errors (e.g. a bad SparsePEs) keep their exit code
        raise
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
    """QONNX ModelWrapper -> hls4ml ModelGraph, written to `out_dir/project_dir` (atomically) unless not `write`.

    `layer_settings` maps hls4ml layer names to {"ReuseFactor": n, "Strategy": "Latency"|"Resource"}
    (what the fit-to-board search chose). Returns the ModelGraph and the hls4ml config it was built from.
    """
    settings = resolve_settings(hls, board)
    config = make_hls_config(wrapper, hls, quant, settings, trace)
    for name, values in (layer_settings or {}).items():
        key = config_key(name, config["LayerName"])
        if key is None:
            raise UsageError(f"layer {name!r} is not in the hls4ml config; layers: {sorted(config['LayerName'])}")
        config["LayerName"][key].update(values)
    strategies = {str(v.get("Strategy", "")).lower() for v in config["LayerName"].values()}
    if SPARSE_STRATEGY in strategies:
        config["Flows"] = [with_sparse_dense(config["Flows"][0])]
    if DA_STRATEGY in strategies:  # da4ml solutions are cached on disk (solves of big layers take minutes)
        config["Flows"] = [da_flow(config["Flows"][0])]
        set_solver_config(config, SolverOptions())
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
    hls_model = _to_hls(wrapper, kwargs)
    _log_rewrites(hls_model)
    if not write:
        return hls_model, config
    try:
        with redirect_stdout(StringIO()), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            write_project(hls_model, pipeline_axi=hls.pipeline_axi)
    except Exception as exc:
        shutil.rmtree(staging, ignore_errors=True)
        if isinstance(exc, ToolError):
            raise
        raise ToolError(f"hls4ml could not write the project: {exc}") from exc
    if final.exists():
        shutil.rmtree(final)
    os.replace(staging, final)
    _retarget_output_dir(final, staging)
    hls_model.config.config["OutputDir"] = str(final)
    return hls_model, config


def _log_rewrites(hls_model) -> None:
    layers = hls_model.get_layers()
    narrowed = [f"{layer.name} {layer.get_attr(EXACT_ATTR)}" for layer in layers if layer.get_attr(EXACT_ATTR)]
    if narrowed:
        log.info("exact accumulator types: %s", ", ".join(narrowed))
    fused = [str(layer.get_attr(FUSED_ATTR)) for layer in layers if layer.get_attr(FUSED_ATTR)]
    if fused:
        log.info("fused %d ReLU(s) into their conv/dense layers: %s", len(fused), ", ".join(fused))
    da = [
        f"{layer.name} ({layer.get_attr(DA_COST_ATTR)['LUT']} LUT, da4ml)"
        for layer in layers
        if layer.get_attr(DA_COST_ATTR)
    ]
    if da:
        log.info("distributed arithmetic: %s", ", ".join(da))
    sparse = [f"{layer.name} ({layer.get_attr('n_pe')} PEs)" for layer in layers if layer.class_name == SPARSE_CLASS]
    if sparse:
        log.info("sparse weight-shared kernels: %s", ", ".join(sparse))
    for layer in layers:
        if layer.get_attr(FALLBACK_ATTR):
            log.warning("%s stays hls4ml's dense layer: %s", layer.name, layer.get_attr(FALLBACK_ATTR))


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
        if layer.class_name == SPARSE_CLASS:
            rows[-1]["sparse"] = {"pes": layer.get_attr("n_pe"), "steps": layer.get_attr("n_steps")}
        if layer.get_attr(FALLBACK_ATTR):
            rows[-1]["sparse_fallback"] = layer.get_attr(FALLBACK_ATTR)
        if layer.get_attr(DA_COST_ATTR):
            cost = layer.get_attr(DA_COST_ATTR)
            rows[-1]["da"] = {k: cost[k] for k in ("source", "LUT", "adders", "adder_depth", "n_nonzero")}
        if layer.get_attr(DA_FALLBACK_ATTR):
            rows[-1]["da_fallback"] = layer.get_attr(DA_FALLBACK_ATTR)
    return rows
