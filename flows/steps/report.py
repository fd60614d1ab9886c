"""Step `report`: `report.json`, `report.md` and `plots/*.png` from the typed results of every step
that ran (flows/reporting/)."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from flows.atomic import atomic_write_json, atomic_write_text
from flows.context import PLOTS_DIR, PRUNED_CKPT, REPORT_JSON, REPORT_MD, SHARED_CKPT, BuildContext
from flows.reporting.plots import (
    plot_density,
    plot_layer_weights,
    plot_stage_accuracy,
    plot_training,
    plot_utilization,
)
from flows.reporting.search import plot_sensitivity, search_markdown, search_section
from flows.reporting.summary import build_report, render_markdown
from flows.results import ReportResult

log = logging.getLogger(__name__)


def run(ctx: BuildContext) -> ReportResult:
    report = build_report(ctx.cfg, ctx.board, ctx.out, ctx.results)
    plots_dir = ctx.path(PLOTS_DIR)
    plots_dir.mkdir(parents=True, exist_ok=True)
    plots = []
    if plot_training(ctx.results.histories(), ctx.cfg.model, plots_dir / "training.png"):
        plots.append("training.png")
    if "compression" in report:
        plots += compression_plots(ctx, report["compression"], plots_dir)
    if "resources" in report:
        plot_utilization(report["resources"], ctx.board.name, plots_dir / "utilization.png")
        plots.append("utilization.png")
    if ctx.results.search is not None:  # --max-accuracy-drop: the choices, their cost, the final budget check
        report["search"] = search_section(ctx)
        if plot_sensitivity(report["search"], plots_dir / "sensitivity.png"):
            plots.append("sensitivity.png")
    report["plots"] = [f"{PLOTS_DIR}/{p}" for p in plots]
    atomic_write_json(ctx.path(REPORT_JSON), report)
    md = render_markdown(report)
    if "search" in report:
        md += search_markdown(report["search"])
    if plots:
        md += "\n" + "\n".join(f"![{Path(p).stem}]({p})" for p in report["plots"]) + "\n"
    atomic_write_text(ctx.path(REPORT_MD), md)
    log.info("report: %s", ctx.path(REPORT_MD))
    return ReportResult(report=REPORT_JSON, plots=report["plots"])


def compression_plots(ctx: BuildContext, section: dict, plots_dir: Path) -> list[str]:
    """Weight histograms (before/after pruning, after sharing), per-layer density, accuracy per stage."""
    stages = [("before pruning", ctx.base_checkpoint), ("after pruning", PRUNED_CKPT), ("after sharing", SHARED_CKPT)]
    stages = [(label, ck) for label, ck in stages if ctx.path(ck).exists()]
    states = [(label, ctx.load_state(ck)) for label, ck in stages]  # every layer: pruning and sharing show in each
    layers = [
        (lay["name"], [(label, np.asarray(st[f"{lay['name']}.weight"].flatten().numpy())) for label, st in states])
        for lay in section["layers"]
    ]
    written = [plot_layer_weights(layers, plots_dir / "weights.png")]
    written.append(plot_density(section["layers"], plots_dir / "sparsity.png"))
    written.append(plot_stage_accuracy(section["stages"], plots_dir / "accuracy_stages.png"))
    return [Path(p).name for p in written]
