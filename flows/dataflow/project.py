"""The dataflow simulation in a build: FIFO sizing at conversion (`prepare_dataflow`), the check after it.

`prepare_dataflow(hls_model, project, cfg, pipeline_axi, estimate)` runs in the convert step, right
after hls4ml wrote the project: it compiles the concurrent simulation beside it (`<project>/dataflow/`;
the simulation reads the project's kernels and weights, never its top function, so one compile serves
any depths) and, with `dataflow.size`, searches the smallest passing depths (flows/dataflow/sizing.py)
on 2 back-to-back images, sets the chosen depths on the ModelGraph's stream variables (the STREAM
pragma and the shift-register binding of flows/hls_passes.py), and writes the project again through
hls4ml's writer (flows/hls_writer.py `write_project`): the HLS pragmas carry the depths, and the
estimate the convert step makes next costs them. The estimate's stream-FIFO figures before and after
are kept. `design.json` records the final depths.

`check_project(project, x, timeout_s)` runs that simulation on the project's depths; `fifo_rows`
tabulates the FIFOs for dataflow.json and the report.
"""

from __future__ import annotations

import logging
import time
import warnings
from collections.abc import Callable
from contextlib import redirect_stdout
from io import StringIO
from pathlib import Path

import numpy as np

from flows.config import DataflowConfig
from flows.dataflow.design import Design, design_from_model, unsupported
from flows.dataflow.generate import read_design, write_design
from flows.dataflow.runner import SimRun, compile_simulator, simulate, simulator_path
from flows.dataflow.sizing import diagnose, search_depths
from flows.errors import ToolError
from flows.hls_passes import FIFO_IMPL_ATTR, MIN_DEPTH_ATTR, SRL_MAX_DEPTH
from flows.hls_writer import write_project

log = logging.getLogger(__name__)

SEARCH_IMAGES = 2  # back-to-back images per sizing run: the second one overlaps the first's tail


def apply_depths(hls_model, depths: dict[str, int]) -> int:
    """Set each named stream variable's STREAM pragma depth (and SRL binding); returns how many changed."""
    changed = 0
    for var in {id(v): v for v in [*hls_model.output_vars.values(), *hls_model.get_input_variables()]}.values():
        pragma = getattr(var, "pragma", None)
        if var.name not in depths or not (isinstance(pragma, tuple) and pragma and pragma[0] == "stream"):
            continue
        depth = max(int(depths[var.name]), int(getattr(var, MIN_DEPTH_ATTR, 0) or 0))
        changed += int(pragma[1]) != depth
        var.pragma = (pragma[0], depth)
        if depth <= SRL_MAX_DEPTH:
            setattr(var, FIFO_IMPL_ATTR, "srl")
        elif getattr(var, FIFO_IMPL_ATTR, None):
            setattr(var, FIFO_IMPL_ATTR, None)
    return changed


def fifo_figures(est) -> dict[str, float]:
    """The stream-FIFO share of a design estimate: totals less the layers and the AXI wrapper."""
    out = {}
    for k, total in est.resources.items():
        rest = total - sum(lay.resources.get(k, 0.0) for lay in est.layers)
        if est.wrapper is not None:
            rest -= est.wrapper.resources.get(k, 0.0)
        out[k] = round(max(0.0, rest), 1)
    return out


def search_inputs(n_in: int, images: int = SEARCH_IMAGES) -> np.ndarray:
    """Inputs for the search: hls4ml's stream kernels read and write a fixed number of words whatever the values."""
    return np.random.default_rng(0).random((images, n_in))


def prepare_dataflow(
    hls_model, project: Path, cfg: DataflowConfig, pipeline_axi: bool, estimate: Callable | None = None
) -> dict:
    """Compile the simulation beside the written project and size its FIFOs (see the module docstring).

    Returns the summary the convert step keeps: {"compile_seconds", "fork_joins", "sizing", "fifo_estimate"},
    or {"skipped": reason} for a design the simulation does not model. Raises DeadlockError when even
    the flow's depths, doubled a few times, deadlock (flows/dataflow/sizing.py)."""
    reason = unsupported(hls_model)
    if reason:
        log.warning("dataflow simulation skipped: %s", reason)
        return {"skipped": reason}
    design = design_from_model(hls_model)
    t0 = time.perf_counter()
    exe = compile_simulator(project, design)
    summary: dict = {
        "compile_seconds": round(time.perf_counter() - t0, 2),
        "fork_joins": [g.name for g in design.groups],
        "sizing": None,
    }
    if cfg.size:
        before = fifo_figures(estimate(hls_model)) if estimate else None
        x = search_inputs(design.n_in)
        sizing = search_depths(
            lambda depths: simulate(exe, x, depths, cfg.timeout_s), design, cfg.margin, cfg.min_depth, SEARCH_IMAGES
        )
        apply_depths(hls_model, sizing.chosen)
        try:
            with redirect_stdout(StringIO()), warnings.catch_warnings():
                warnings.simplefilter("ignore")
                write_project(hls_model, pipeline_axi)
        except Exception as exc:
            if isinstance(exc, ToolError):
                raise
            raise ToolError(f"hls4ml could not write the project with the sized FIFOs: {exc}") from exc
        design = design_from_model(hls_model)
        summary["sizing"] = sizing.to_dict()
        if estimate:
            summary["fifo_estimate"] = {"before": before, "after": fifo_figures(estimate(hls_model))}
    write_design(project, design)
    return summary


def check_project(project: Path, x: np.ndarray, timeout_s: float) -> tuple[Design, SimRun]:
    """Run the project's compiled simulation on `x` with the depths its pragmas carry."""
    try:
        design = read_design(project)
    except (OSError, ValueError, TypeError, KeyError) as exc:
        raise ToolError(f"{project} has no readable dataflow/design.json ({exc}): rerun the convert step") from None
    exe = simulator_path(project, design)
    if not exe.is_file():
        raise ToolError(f"{project} has no compiled dataflow simulation ({exe.name}): rerun the convert step")
    return design, simulate(exe, x, design.depths(), timeout_s)


def fifo_rows(design: Design, sizing: dict | None, run: SimRun | None = None) -> list[dict]:
    """One row per FIFO: producer, consumer, width, depth in the project, the flow's analytical depth,
    the minimum found, the fork/joins it belongs to, and the highest fill the check reached."""
    sizing = sizing or {}
    rows = []
    for s in design.streams:
        row = {
            "stream": s.name,
            "producer": s.producer,
            "consumer": s.consumer,
            "width": s.width,
            "depth": s.depth,
            "analytical": sizing.get("analytical", {}).get(s.name),
            "minimum": sizing.get("minimum", {}).get(s.name),
            "fork_joins": [g.name for g in design.groups_of(s.name)],
        }
        if run is not None and run.high_water:
            row["max_fill"] = run.high_water.get(s.name)
        rows.append(row)
    return rows


def describe_failure(design: Design, run: SimRun) -> dict:
    """`diagnose` for a failed check (re-exported for the step)."""
    return diagnose(design, run)
