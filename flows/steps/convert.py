"""Step `convert`: the hls4ml project for the board (`hls4ml_prj/`), sized by the estimator's fit
search over design variants with the sparse and DA kernels (flows/kernelfit.py), then compiled with g++
into the C-simulation library the csim step runs.
io_stream FIFO depths come from the concurrent dataflow simulation compiled beside the project
(flows/dataflow/, `dataflow` config: the smallest passing depths plus a margin) before the estimate.
Distributed-arithmetic layers are also synthesized with yosys when it is on PATH (`hls4ml_prj/da_rtl/`,
figures labelled `yosys`; skipped and labelled without it).

The project is written by hls4ml with the project's own optimizer passes (flows/convert.py); the
library is built from the build script this step has just written, never from one found on disk.
"""

from __future__ import annotations

import logging
from dataclasses import replace

from qonnx.core.modelwrapper import ModelWrapper

from flows.context import QONNX_FILE, BuildContext
from flows.convert import PROJECT_DIR, convert, layer_table, resolve_settings
from flows.csim import compile_project
from flows.da.rtl import synthesize_da_layers
from flows.dataflow import prepare_dataflow
from flows.hardware import estimate_model, estimate_sections
from flows.kernelfit import fit_with_board_kernels
from flows.results import ConvertResult

log = logging.getLogger(__name__)


def run(ctx: BuildContext) -> ConvertResult:
    cfg, board = ctx.cfg, ctx.board
    wrapper = ModelWrapper(str(ctx.path(QONNX_FILE)))
    settings = resolve_settings(cfg.hls, board)
    pipelined = board.backend == "VivadoAccelerator" and cfg.hls.pipeline_axi

    def convert_fn(io_type: str, layer_settings: dict):
        hls = replace(cfg.hls, io_type=io_type)
        return convert(wrapper, ctx.out, hls, cfg.quant, board, write=False, layer_settings=layer_settings)[0]

    outcome = fit_with_board_kernels(convert_fn, cfg.hls, board, settings.clock_period_ns, pipelined)
    hls = replace(cfg.hls, io_type=outcome.io_type)
    hls_model, _ = convert(wrapper, ctx.out, hls, cfg.quant, board, layer_settings=outcome.layer_settings)
    dataflow = {}
    if outcome.io_type == "io_stream" and cfg.dataflow.enabled:  # the FIFO depths from the dataflow simulation
        dataflow = prepare_dataflow(
            hls_model,
            ctx.path(PROJECT_DIR),
            cfg.dataflow,
            cfg.hls.pipeline_axi,
            estimate=lambda m: estimate_model(m, board, settings.clock_period_ns, outcome.io_type, pipelined)[1],
        )
    _, est = estimate_model(hls_model, board, settings.clock_period_ns, outcome.io_type, pipelined)
    resources, latency = estimate_sections(est, board)
    resources["fit"] = {
        "searched": outcome.searched,
        "explanation": outcome.explanation,
        "layer_settings": outcome.layer_settings,
    }
    log.info(
        "estimate: LUT %.0f, FF %.0f, DSP %.0f, BRAM36 %.1f; II %d cycles = %.0f images/s",
        resources["LUT"],
        resources["FF"],
        resources["DSP"],
        resources["BRAM36"],
        latency["ii"],
        latency["images_per_second"] or 0,
    )
    library = compile_project(ctx.path(PROJECT_DIR), settings.project_name)
    rtl = synthesize_da_layers(hls_model, ctx.path(PROJECT_DIR) / "da_rtl", board.part, enabled=cfg.hls.rtl == "auto")
    return ConvertResult(
        project=PROJECT_DIR,
        backend=settings.backend,
        part=settings.part,
        board=settings.board,
        io_type=outcome.io_type,
        strategy=settings.strategy,
        clock_period_ns=settings.clock_period_ns,
        project_name=settings.project_name,
        layers=layer_table(hls_model),
        resources=resources,
        latency=latency,
        library=str(library.relative_to(ctx.out)),
        rtl=rtl,
        dataflow=dataflow,
    )
