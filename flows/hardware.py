"""Hardware figures of a build: estimates, the fit to the board, real synthesis when the tools exist.

- `fit_design`: estimate the converted design (flows/estimator); if it does not fit the board's
  budget, search reuse factors and strategies per layer (and then the other io type) for the least
  latency that fits, or fail with the search's explanation. With `hls.objective=area` the fitting
  design then gets area recovery (`flows.estimator.shrink_to_ii`): reuse factors rise wherever a layer
  has slack, keeping the II (or the one `hls.target_images_per_second` asks for).
- `find_hls_tool` / `run_synthesis`: Vivado HLS (`vivado_hls`) for the Vivado and VivadoAccelerator
  backends, Vitis HLS (`vitis-run`) for Vitis; reports are read with flows/hlsreport.
- `resources_section` / `latency_section`: report.json's `resources` and `latency`, each with one
  `source` ("estimate", "vivado" or "vitis"): sources are never mixed in one total.
"""

from __future__ import annotations

import logging
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from flows.boards import RESOURCE_KINDS
from flows.da.hls_pass import DA_CLASSES, DA_STRATEGY
from flows.errors import ToolError
from flows.estimator import EXPECTED_ERROR, describe_hls_model, estimate_design, fit_to_budget, shrink_to_ii, tool_of
from flows.hls_names import config_names
from flows.hlsreport import load_project_reports
from flows.sparse.extension import STRATEGY as SPARSE_STRATEGY

log = logging.getLogger(__name__)


@dataclass
class FitOutcome:
    io_type: str
    layer_settings: dict[str, dict]  # hls4ml layer name -> {"ReuseFactor", "Strategy"}
    estimate: Any  # flows.estimator.DesignEstimate
    searched: bool
    explanation: str
    fits: bool = True


def estimate_model(hls_model, board, clock_period_ns: float, io_type: str, pipelined_axi: bool):

    specs = describe_hls_model(hls_model)
    est = estimate_design(specs, clock_period_ns, io_type, backend=board.backend, axi_pipelined=pipelined_axi)
    return specs, est


def _pinned_layers(specs, pinned_keys) -> set[str]:
    """hls4ml layer names whose reuse factor the user set (config keys 'Conv_0' match 'Conv2D_Conv_0')."""
    keys = set(pinned_keys)
    return {spec.name for spec in specs if keys.intersection(config_names(spec.name))}


def _recover_area(outcome: FitOutcome, specs, board, clock_period_ns, pipelined_axi, target_ii, pinned) -> FitOutcome:
    """Objective "area": raise reuse factors where a layer has slack, keeping the II (flows.estimator.shrink_to_ii)."""

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


def sparse_candidates(hls_model, max_density: float, pinned_keys=()) -> dict[str, dict]:
    """Dense layers of an io_stream design whose nonzero fraction is at most `max_density`, as hls4ml
    layer settings for the sparse weight-shared kernel (flows/sparse/); layers the user pinned are left."""
    if hls_model.config.get_config_value("IOType") != "io_stream":
        return {}
    keys, out = set(pinned_keys), {}
    for layer in hls_model.get_layers():
        weight = layer.weights.get("weight") if layer.class_name == "Dense" else None
        if weight is None or keys.intersection(config_names(layer.name)):
            continue
        data = np.asarray(weight.data)
        density = float(np.count_nonzero(data)) / max(1, data.size)
        if density <= max_density:
            out[layer.name] = {"Strategy": SPARSE_STRATEGY}
            log.info(
                "%s: %.1f%% of its weights are nonzero: candidate for the sparse kernel", layer.name, 100 * density
            )
    return out


def da_candidates(hls_model, max_nonzero: int, pinned_keys=(), exclude=()) -> dict[str, dict]:
    """Conv/pointwise/dense layers of an io_stream design with at most `max_nonzero` nonzero weights, as
    hls4ml layer settings for distributed arithmetic (flows/da/); layers in `exclude` (given the sparse
    kernel) or pinned by the user are left. The bound keeps da4ml's solves short (they are cached)."""
    if hls_model.config.get_config_value("IOType") != "io_stream":
        return {}
    keys, out = set(pinned_keys), {}
    for layer in hls_model.get_layers():
        weight = layer.weights.get("weight") if isinstance(layer, DA_CLASSES) else None
        if weight is None or layer.name in exclude or keys.intersection(config_names(layer.name)):
            continue
        nonzero = int(np.count_nonzero(np.asarray(weight.data)))
        if 0 < nonzero <= max_nonzero:
            out[layer.name] = {"Strategy": DA_STRATEGY, "ReuseFactor": 1}
    if out:
        log.info("distributed-arithmetic candidates (<= %d nonzero weights): %s", max_nonzero, ", ".join(out))
    return out


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
    budget = {k: board.resources[k] for k in RESOURCE_KINDS}
    used = {k: float(figures.get(k, 0.0)) for k in RESOURCE_KINDS}
    util = {k: (used[k] / budget[k] if budget[k] else (0.0 if used[k] == 0 else float("inf"))) for k in RESOURCE_KINDS}
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

    d = est.to_dict()
    layers = []
    for lay in d.get("layers", []):
        res = lay.get("resources", {})
        layers.append(
            {
                "name": lay.get("name"),
                "kind": lay.get("kind"),
                **{k: _value(res.get(k)) for k in RESOURCE_KINDS},
                "latency": _value(lay.get("latency_cycles")),
                "ii": _value(lay.get("ii_cycles")),
                "reuse_factor": lay.get("reuse_factor"),
                "strategy": lay.get("strategy"),
            }
        )
    totals = {k: _value(d["resources"].get(k)) for k in RESOURCE_KINDS}
    resources = resources_section(totals, "estimate", board, layers)
    resources["notes"] = d.get("notes", [])
    tool = tool_of(board.backend)
    resources["expected_error"] = {"tool": tool, "median_abs_rel_error": dict(EXPECTED_ERROR[tool])}
    latency = latency_section(_value(d["latency_cycles"]), _value(d["ii_cycles"]), est.clock_period_ns, "estimate")
    return resources, latency


def _value(v: Any) -> Any:
    return v.get("value") if isinstance(v, dict) else v
