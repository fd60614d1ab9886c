"""Step `synth` (with --synth): Vivado/Vitis HLS C synthesis of a copy of the project (`synth/`), with
the C simulation's testbench data; real resources and latency (source "vivado" or "vitis")."""

from __future__ import annotations

import shutil

from flows.context import CSIM_DIR, SYNTH_DIR, BuildContext
from flows.convert import PROJECT_DIR
from flows.errors import ToolError
from flows.hardware import find_hls_tool, latency_section, resources_section, run_synthesis, synthesis_figures
from flows.results import SynthResult


def run(ctx: BuildContext) -> SynthResult:
    conv = ctx.results.convert
    if find_hls_tool(ctx.board.backend) is None:
        need = "vitis-run (Vitis HLS)" if ctx.board.backend == "Vitis" else "vivado_hls (Vivado HLS)"
        raise ToolError(f"--synth needs {need} on PATH; without it the build reports estimates (source 'estimate')")
    project = ctx.path(SYNTH_DIR) / PROJECT_DIR
    shutil.copytree(ctx.path(conv.project), project, ignore=shutil.ignore_patterns("*.so", "*.o"))
    tb = ctx.path(CSIM_DIR) / "tb_data"
    if tb.is_dir():
        shutil.copytree(tb, project / "tb_data", dirs_exist_ok=True)
    reports = run_synthesis(project, ctx.board.backend, vsynth=ctx.cfg.hls.vsynth)
    top = synthesis_figures(reports, conv.project_name)
    source = top["tool"]
    figures = {"LUT": top["lut"], "FF": top["ff"], "DSP": top["dsp"], "BRAM36": top["bram36"], "URAM": top["uram"]}
    resources = resources_section(figures, source, ctx.board)
    resources["report"] = top.get("file")
    clock = top.get("target_clock_ns") or ctx.board.clock_period_ns
    latency = latency_section(top["latency_max"] or 0, top["interval_max"] or 0, clock, source)
    return SynthResult(resources=resources, latency=latency, reports=reports, project=str(project.relative_to(ctx.out)))
