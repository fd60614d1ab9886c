"""Design sweeps: many builds of one model over a grid of config keys, run as Ray tasks.

    from flows.api import run_build
    from flows.sweeps import run_sweep
    summary = run_sweep(run_build, "lenet5_fire", "pynq-z2", {"hls.objective": ["area", "latency"]},
                        fixed={"data.dataset": "digits"}, out=Path("sweeps/fire"))

`run_sweep` expands the grid (`grid`), keeps the finished trials of an earlier run of the same sweep
(`state`, `sweep.json`), runs the rest on Ray with a shared step cache (`runner`, flows/stepcache.py)
and writes the table, the Pareto plot and the best design's config (`outputs`). The build function is
passed in (layering: this library sits below flows.api); `flows/sweep.py` is its command line.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

from flows.errors import UsageError
from flows.sweeps.grid import expand_grid, parse_grid, prefix_group, trial_id
from flows.sweeps.outputs import OBJECTIVES, write_outputs
from flows.sweeps.runner import run_trials
from flows.sweeps.state import STATE_FILE, SweepState, TrialRecord, load_state, merge_state

__all__ = ["OBJECTIVES", "STATE_FILE", "SWEEP_DEFAULTS", "parse_grid", "plan_sweep", "run_sweep"]

log = logging.getLogger(__name__)

CACHE_DIR = "step_cache"
# every trial reports a design that does not fit instead of failing on it: the table shows the fit
SWEEP_DEFAULTS = {"hls.require_fit": False}


def plan_sweep(model: str, board: str, grid: dict[str, list], fixed: dict) -> SweepState:
    """The sweep's trials (all pending) from its grid and the overrides every trial shares."""
    for key in grid:
        if key in ("out_dir", "step_cache", "model", "board"):
            raise UsageError(f"--grid {key}: the sweep sets it per trial; sweep over config keys such as hls.objective")
    combos = expand_grid(grid)
    trials = [TrialRecord(trial_id(i, o), o, prefix_group(o)) for i, o in enumerate(combos)]
    return SweepState(model, board, {**SWEEP_DEFAULTS, **fixed}, trials)


def run_sweep(
    build_fn: Callable,
    model: str,
    board: str,
    grid: dict[str, list],
    fixed: dict | None = None,
    out: Path = Path("sweeps"),
    objective: str = "lut",
    budget: float | None = None,
    address: str | None = None,
    num_cpus: int | None = None,
    gpus_per_trial: float = 0.25,
    retry_failed: bool = False,
    on_result: Callable[[TrialRecord], None] | None = None,
    until: str | None = None,
) -> dict:
    """Run (or resume) a sweep; returns table.json's content."""
    if objective not in OBJECTIVES:
        raise UsageError(f"objective {objective!r} is not valid; choose one of {list(OBJECTIVES)}")
    if budget is not None and budget < 0:
        raise UsageError(f"budget {budget} pp must be >= 0")
    out = Path(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"cannot create the sweep folder {out} ({exc.strerror or exc}); use another --out") from None
    state = merge_state(load_state(out), plan_sweep(model, board, grid, dict(fixed or {})), retry_failed)
    state.save(out)
    resumed = sum(t.status in ("done", "failed") for t in state.trials)
    if resumed:
        log.info("sweep: %d of %d trials already finished (resumed from %s)", resumed, len(state.trials), STATE_FILE)
    state = run_trials(build_fn, state, out, out / CACHE_DIR, address, num_cpus, gpus_per_trial, on_result, until)
    table, best = write_outputs(state, out, objective, budget)
    return {"trials": table, "best": best, "cache_hits": sum(r["cache_hits"] for r in table), "out": str(out)}
