"""Hardware figures of a build: estimates, the fit to the board, real synthesis when the tools exist.

- `fit_design`: estimate the converted design (flows/estimate.py); if it does not fit the board's
  budget, search reuse factors and strategies per layer (and then the other io type) for the least
  latency that fits, or fail with the search's explanation. With `hls.objective=area` the fitting
  design then gets area recovery (`flows.estimate.shrink_to_ii`): reuse factors rise wherever a layer
  has slack, keeping the II (or the one `hls.target_images_per_second` asks for).
- `find_hls_tool` / `run_synthesis`: Vivado HLS (`vivado_hls`) for the Vivado and VivadoAccelerator
  backends, Vitis HLS (`vitis-run`) for Vitis; reports are read with flows/hls_reports.py.
- `resources_section` / `latency_section`: report.json's `resources` and `latency`, each with one
  `source` ("estimate", "vivado" or "vitis"): sources are never mixed in one total.
"""

from __future__ import annotations

import io
import logging
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flows.errors import ToolError

log = logging.getLogger(__name__)

RESOURCES = ("LUT", "FF", "DSP", "BRAM36", "URAM")


@dataclass
class FitOutcome:
    io_type: str
    layer_settings: dict[str, dict]  # hls4ml layer name -> {"ReuseFactor", "Strategy"}
    estimate: Any  # flows.estimate.DesignEstimate
    searched: bool
    explanation: str
    fits: bool = True


def estimate_model(hls_model, board, clock_period_ns: float, io_type: str, pipelined_axi: bool):
    from flows.estimate import describe_hls_model, estimate_design

    specs = describe_hls_model(hls_model)
    est = estimate_design(specs, clock_period_ns, io_type, backend=board.backend, axi_pipelined=pipelined_axi)
    return specs, est


def _pinned_layers(specs, pinned_keys) -> set[str]:
    """hls4ml layer names whose reuse factor the user set (config keys 'Conv_0' match 'Conv2D_Conv_0')."""
    from flows.convert import HLS_PREFIXES

    keys = set(pinned_keys)
    out = set()
    for spec in specs:
        stripped = [spec.name[len(p) :] for p in HLS_PREFIXES if spec.name.startswith(p)]
        if spec.name in keys or any(k in keys for k in stripped):
            out.add(spec.name)
    return out


def _recover_area(outcome: FitOutcome, specs, board, clock_period_ns, pipelined_axi, target_ii, pinned) -> FitOutcome:
    """Objective "area": raise reuse factors where a layer has slack, keeping the II (flows.estimate.shrink_to_ii)."""
    from flows.estimate import shrink_to_ii

    settings = outcome.layer_settings
    if settings:  # the fit search changed the configuration: start from its choices
        specs = [
            s.with_config(settings[s.name]["ReuseFactor"], settings[s.name]["Strategy"].lower())
            if s.name in settings
            else s
            for s in specs
        ]
    fastest_ii = outcome.estimate.ii_cycles
    if target_ii is not None and target_ii < fastest_ii:
        log.warning(
            "the target rate needs an II of %d cycles, but the fastest design that fits %s has %d; keeping that",
            target_ii,
            board.name,
            fastest_ii,
        )
        outcome.explanation += f"; the target II of {target_ii} cycles cannot be reached (fastest fit: {fastest_ii})"
        return outcome
    shrunk = shrink_to_ii(
        specs,
        board.resources,
        clock_period_ns,
        target_ii=target_ii or fastest_ii,
        io_type=outcome.io_type,
        backend=board.backend,
        pinned=_pinned_layers(specs, pinned),
        axi_pipelined=pipelined_axi,
    )
    if not shrunk.steps:
        return outcome
    log.info("area recovery on %s: %s", board.name, shrunk.explanation)
    return FitOutcome(
        outcome.io_type,
        shrunk.hls_config()["LayerName"],
        shrunk.estimate,
        True,
        f"{outcome.explanation} | {shrunk.explanation}",
    )


def fit_design(
    convert_fn,
    board,
    clock_period_ns: float,
    io_type: str,
    pipelined_axi: bool,
    search: bool,
    *,
    objective: str = "latency",
    target_ii: int | None = None,
    pinned: tuple[str, ...] | set[str] = (),
):
    """`convert_fn(io_type, layer_settings) -> hls_model` (not written). Returns a FitOutcome.

    The configured io type is tried first, then the other one. When nothing fits, the outcome is the
    smallest design found for the configured io type, with `fits=False` and the search's explanation:
    the build still writes and verifies that project and its report, then fails (DoesNotFitError).
    With ``objective="area"`` (and the search on) the fitting design then gets area recovery: reuse
    factors rise where a layer has slack, keeping the II at ``target_ii`` (default: the fitting design's);
    layers in ``pinned`` (config keys of user-set reuse factors) are left as configured."""
    from flows.estimate import fit_to_budget

    def finish(outcome: FitOutcome, specs) -> FitOutcome:
        if objective == "area" and search:
            return _recover_area(outcome, specs, board, clock_period_ns, pipelined_axi, target_ii, pinned)
        return outcome

    tried, smallest = [], None
    for io_kind in (io_type, "io_parallel" if io_type == "io_stream" else "io_stream"):
        hls_model = convert_fn(io_kind, {})
        specs, est = estimate_model(hls_model, board, clock_period_ns, io_kind, pipelined_axi)
        if est.fits(board.resources):
            return finish(FitOutcome(io_kind, {}, est, False, "fits with the configured reuse factors"), specs)
        if not search:
            return FitOutcome(io_kind, {}, est, False, "does not fit; the fit search is off (hls.fit=false)", False)
        fit = fit_to_budget(
            specs, board.resources, clock_period_ns, io_type=io_kind, backend=board.backend, axi_pipelined=pipelined_axi
        )
        tried.append(f"{io_kind}: {fit.explanation}")
        settings = fit.hls_config()["LayerName"]
        if fit.fits:
            if io_kind != io_type:
                log.warning("the design does not fit %s in %s; using %s", board.name, io_type, io_kind)
            log.info("fit to %s: %s", board.name, fit.explanation)
            return finish(FitOutcome(io_kind, settings, fit.estimate, True, fit.explanation), specs)
        if smallest is None:
            smallest = FitOutcome(io_kind, settings, fit.estimate, True, "", False)
    smallest.explanation = (
        f"the design does not fit {board.name} ({board.part}) with any reuse factor, strategy or io type; "
        + " | ".join(tried)
    )
    log.warning("%s", smallest.explanation)
    return smallest


# ------------------------------------------------------------------------------------ real synthesis


def find_hls_tool(backend: str) -> list[str] | None:
    """The command that runs hls4ml's build_prj.tcl for this backend, if the tool is on PATH."""
    if backend == "Vitis":
        return ["vitis-run", "--tcl", "build_prj.tcl", "--mode", "hls"] if shutil.which("vitis-run") else None
    if shutil.which("vivado_hls"):
        return ["vivado_hls", "-f", "build_prj.tcl"]
    return None


def run_synthesis(project: Path, backend: str, vsynth: bool = False) -> dict:
    """C synthesis (and optionally Vivado logic synthesis) of the project; returns the parsed reports."""
    from flows.report import load_project_reports

    cmd = find_hls_tool(backend)
    if cmd is None:
        need = "vitis-run (Vitis HLS)" if backend == "Vitis" else "vivado_hls (Vivado HLS)"
        raise ToolError(f"--synth needs {need} on PATH; without it the build reports estimates (source 'estimate')")
    opts = {
        "reset": 1,
        "csim": 0,
        "synth": 1,
        "cosim": 0,
        "validation": 0,
        "export": 0,
        "vsynth": int(vsynth),
        "fifo_opt": 0,
    }
    if backend == "Vitis":
        (Path(project) / "build_opt.tcl").write_text(
            "array set opt {\n" + "".join(f"    {k} {v}\n" for k, v in opts.items()) + "}\n"
        )
    else:
        cmd = [*cmd, " ".join(f"{k}={v}" for k, v in opts.items())]
    log_path = Path(project) / "synth.log"
    log.info("running %s in %s (log: %s)", " ".join(cmd[:2]), project, log_path)
    with open(log_path, "w") as out:
        proc = subprocess.run(cmd, cwd=project, stdout=out, stderr=subprocess.STDOUT)
    if proc.returncode != 0:
        raise ToolError(f"{cmd[0]} failed with exit code {proc.returncode}; see {log_path}")
    return load_project_reports(project)


def synthesis_figures(reports: dict, project_name: str) -> dict:
    """The figures of the top that a board sees (`<name>_axi` for VivadoAccelerator, else `<name>`)."""
    hls = reports.get("hls", [])
    if not hls:
        raise ToolError("synthesis finished but wrote no csynth report")
    by_top = {r["top"]: r for r in hls}
    top = by_top.get(f"{project_name}_axi") or by_top.get(project_name) or hls[0]
    return top


# ------------------------------------------------------------------------------------------- report


def resources_section(
    figures: dict[str, float], source: str, board, layers: list[dict] | None = None, fit: dict | None = None
) -> dict:
    budget = {k: board.resources[k] for k in RESOURCES}
    used = {k: float(figures.get(k, 0.0)) for k in RESOURCES}
    util = {k: (used[k] / budget[k] if budget[k] else (0.0 if used[k] == 0 else float("inf"))) for k in RESOURCES}
    return {
        "source": source,
        **used,
        "budget": budget,
        "utilization": util,
        "fits": all(u <= 1.0 for u in util.values()),
        "layers": layers or [],
        "fit": fit or {},
    }


def latency_section(cycles: float, ii: float, clock_period_ns: float, source: str) -> dict:
    return {
        "source": source,
        "cycles": cycles,
        "ii": ii,
        "clock_period_ns": clock_period_ns,
        "latency_us": cycles * clock_period_ns / 1000.0,
        "images_per_second": 1e9 / (ii * clock_period_ns) if ii else None,
    }


def estimate_sections(est, board) -> tuple[dict, dict]:
    """resources/latency sections from a DesignEstimate (source 'estimate'), with the typical error of
    the board's HLS tool (`EXPECTED_ERROR`)."""
    from flows.estimate import EXPECTED_ERROR, tool_of

    d = est.to_dict()
    layers = []
    for lay in d.get("layers", []):
        res = lay.get("resources", {})
        layers.append(
            {
                "name": lay.get("name"),
                "kind": lay.get("kind"),
                **{k: _value(res.get(k)) for k in RESOURCES},
                "latency": _value(lay.get("latency_cycles")),
                "ii": _value(lay.get("ii_cycles")),
                "reuse_factor": lay.get("reuse_factor"),
                "strategy": lay.get("strategy"),
            }
        )
    totals = {k: _value(d["resources"].get(k)) for k in RESOURCES}
    resources = resources_section(totals, "estimate", board, layers)
    resources["notes"] = d.get("notes", [])
    tool = tool_of(board.backend)
    resources["expected_error"] = {"tool": tool, "median_abs_rel_error": dict(EXPECTED_ERROR[tool])}
    latency = latency_section(_value(d["latency_cycles"]), _value(d["ii_cycles"]), est.clock_period_ns, "estimate")
    return resources, latency


def _value(v: Any) -> Any:
    return v.get("value") if isinstance(v, dict) else v


def hardware_markdown(resources: dict, latency: dict, board) -> str:
    src = resources["source"]
    label = {
        "estimate": "analytical estimate (flows/estimate.py; no vendor tool ran)",
        "vivado": "Vivado HLS synthesis report",
        "vitis": "Vitis HLS synthesis report",
    }.get(src, src)
    lines = [
        f"## Hardware on {board.name} ({board.part}) — source: {label}",
        "",
        "| resource | used | budget | utilization |",
        "|---|---:|---:|---:|",
    ]
    for k in RESOURCES:
        lines.append(
            f"| {k} | {resources[k]:,.1f} | {resources['budget'][k]:,.0f} | {100 * resources['utilization'][k]:.1f}% |"
        )
    ips = latency.get("images_per_second")
    lines += [
        "",
        f"Fits: **{'yes' if resources['fits'] else 'no'}**. Latency {latency['cycles']:,.0f} cycles "
        f"({latency['latency_us']:.1f} us), initiation interval {latency['ii']:,.0f} cycles: "
        f"**{ips:,.0f} images/s** at {1000 / latency['clock_period_ns']:.0f} MHz (source: {latency['source']})."
        if ips
        else "",
    ]
    expected = resources.get("expected_error")
    if expected:
        errs = expected["median_abs_rel_error"]
        lines += [
            "",
            f"Typical error of these estimates ({expected['tool'].replace('_', ' ')}, median |error| against "
            "real csynth reports of networks the calibration did not see): "
            + ", ".join(f"{k} {100 * v:.0f}%" for k, v in errs.items())
            + " (bench/results/estimator.md). They predict HLS C synthesis, which counts more LUTs than Vivado's "
            "own synthesis.",
        ]
    fit = resources.get("fit") or {}
    if fit.get("explanation"):
        lines += ["", f"Fit search: {fit['explanation']}"]
    if resources.get("layers"):
        lines += [
            "",
            "| layer | kind | reuse | strategy | LUT | FF | DSP | BRAM36 | latency | II |",
            "|---|---|---:|---|---:|---:|---:|---:|---:|---:|",
        ]
        for lay in resources["layers"]:
            if not any(lay.get(k) for k in ("LUT", "FF", "DSP", "BRAM36")):
                continue
            lines.append(
                f"| {lay['name']} | {lay['kind']} | {lay.get('reuse_factor') or '—'} | "
                f"{lay.get('strategy') or '—'} | {lay['LUT'] or 0:,.0f} | {lay['FF'] or 0:,.0f} | "
                f"{lay['DSP'] or 0:,.0f} | {lay['BRAM36'] or 0:,.1f} | {lay.get('latency') or 0:,} | "
                f"{lay.get('ii') or 0:,} |"
            )
    for note in resources.get("notes", []):
        lines.append(f"- {note}")
    return "\n".join(lines)


def plot_utilization(resources: dict, board, path: Path) -> str | None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from flows.pipeline import atomic_write_bytes

    kinds = [k for k in RESOURCES if resources["budget"][k] > 0]
    util = [100 * resources["utilization"][k] for k in kinds]
    fig, ax = plt.subplots(figsize=(6, 3.2))
    colors = ["tab:red" if u > 100 else "tab:blue" for u in util]
    ax.bar(kinds, util, color=colors)
    ax.axhline(100, color="black", linestyle="--", linewidth=1)
    for i, (k, u) in enumerate(zip(kinds, util)):
        ax.text(i, u, f"{resources[k]:,.0f}\n{u:.0f}%", ha="center", va="bottom", fontsize=8)
    ax.set(
        ylabel="% of budget",
        title=f"{board.name} utilization ({resources['source']})",
        ylim=(0, max(110, max(util) * 1.25)),
    )
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())
    return str(path)
