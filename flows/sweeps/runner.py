"""Runs the trials of a sweep as Ray tasks (Ray schedules them; this module writes no scheduler).

`ray.init()` starts a local Ray instance on this machine's cores unless an address names a cluster.
Each trial is one task with one CPU (torch single-threaded, `OMP_NUM_THREADS=1`) and, when the cluster
has GPUs, a share of one. A trial is a normal build (`build_fn`, i.e. `flows.api.run_build`, passed in
by the caller) in its own folder with the sweep's shared step cache; it never raises: a failure is
returned as a record (status, exit code, message). Trials of one prefix group (flows/sweeps/grid.py)
wait for the group's first trial (a Ray object dependency), so the others restore its trained steps
from the cache instead of training the same network in parallel.
"""

from __future__ import annotations

import logging
import os
import time
import traceback
from collections import Counter
from collections.abc import Callable
from pathlib import Path

from flows.errors import FlowError, ToolError
from flows.sweeps.grid import train_group
from flows.sweeps.state import TRIALS_DIR, SweepState, TrialRecord, cache_hits, metrics_from_report, val_from_steps

log = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parents[2]  # the folder holding flows/, models/, constraints/


def run_trial(
    build_fn: Callable, model: str, board: str, overrides: dict, out: str, until: str | None = None, *after
) -> dict:
    """One trial's build; returns the fields of its TrialRecord that the run decides. Never raises."""
    del after  # results of the tasks this trial waits for (its group's leader): only a dependency
    t0 = time.perf_counter()
    status, code, error, metrics = "done", 0, "", {}
    try:
        report = build_fn(model, board, {**overrides, "out_dir": out}, until=until)
        metrics = metrics_from_report(report)
        if metrics.get("val_quantized") is None:
            metrics.update(val_from_steps(Path(out)))
    except FlowError as exc:
        status, code, error = "failed", exc.exit_code, str(exc)
    except Exception as exc:  # a bug in the flow: keep its traceback in the record
        status, code, error = "failed", 1, "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    cached, ran = cache_hits(Path(out))
    return {
        "status": status,
        "exit_code": code,
        "error": error,
        "seconds": round(time.perf_counter() - t0, 2),
        "cache_hits": len(cached),
        "cached_steps": cached,
        "steps_run": ran,
        "metrics": metrics,
    }


def import_ray():
    try:
        import ray
    except ImportError:
        raise ToolError('sweeps run on Ray, which is not installed: pip install -e ".[sweep]"') from None
    return ray


def start_ray(address: str | None = None, num_cpus: int | None = None) -> None:
    """Start a local Ray instance (or connect to the cluster at `address`) whose workers import this project."""
    ray = import_ray()
    env = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "RAY_DEDUP_LOGS": "0"}
    if address:  # a cluster: ship the project's packages to its workers
        import constraints
        import flows
        import models

        runtime_env = {"py_modules": [flows, models, constraints], "env_vars": env}
    else:  # this machine: the workers import the project from where it is
        path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
        runtime_env = {"env_vars": {**env, "PYTHONPATH": path}}
    try:
        ray.init(
            address=address,
            num_cpus=None if address else num_cpus,
            runtime_env=runtime_env,
            include_dashboard=False,
            log_to_driver=False,
            configure_logging=False,
        )
    except (ConnectionError, RuntimeError, ValueError) as exc:
        where = f"the Ray cluster at {address}" if address else "a local Ray instance"
        raise ToolError(f"could not start or reach {where}: {str(exc).splitlines()[0]}") from None


def run_trials(
    build_fn: Callable,
    state: SweepState,
    out: Path,
    cache: Path,
    address: str | None = None,
    num_cpus: int | None = None,
    gpus_per_trial: float = 0.25,
    on_result: Callable[[TrialRecord], None] | None = None,
    until: str | None = None,
) -> SweepState:
    """Run every trial not yet finished; the state file is rewritten after each one.

    Dependencies (Ray object references, no scheduler of ours): the first trial of each train group
    first trains alone (`until="train"`, a warm-up task in its own folder) and every trial of that group
    waits for it; within a prefix group the first trial runs whole before the others, which then restore
    its steps from the step cache."""
    todo = [t for t in state.trials if t.status not in ("done", "failed")]
    if not todo:
        return state
    ray = import_ray()
    started = not ray.is_initialized()  # a caller's running Ray (a notebook, a test) is used as it is
    if started:
        start_ray(address, num_cpus)
    try:
        gpus = ray.cluster_resources().get("GPU", 0)
        task = ray.remote(run_trial).options(
            num_cpus=1, num_gpus=gpus_per_trial if gpus else 0, max_retries=0, name="fireflow-trial"
        )
        log.info(
            "sweep: %d trial(s) on Ray (%s CPUs, %s GPUs)",
            len(todo),
            ray.cluster_resources().get("CPU", 0),
            gpus,
        )
        warm_tasks: dict[str, object] = {}
        leaders: dict[str, object] = {}
        refs: dict[object, TrialRecord] = {}
        sizes = Counter(train_group(t.overrides) for t in todo)
        for trial in todo:
            folder = str((out / TRIALS_DIR / trial.id).resolve())
            overrides = {**state.fixed, **trial.overrides, "step_cache": str(cache.resolve())}
            tgroup = train_group(trial.overrides)
            if tgroup not in warm_tasks and sizes[tgroup] > 1 and until != "train":
                warm_tasks[tgroup] = task.remote(build_fn, state.model, state.board, overrides, folder, "train")
            after = [leaders[trial.group]] if trial.group in leaders else [warm_tasks.get(tgroup)]
            ref = task.remote(build_fn, state.model, state.board, overrides, folder, until, *[a for a in after if a])
            leaders.setdefault(trial.group, ref)
            refs[ref] = trial
        pending = list(refs)
        while pending:
            done, pending = ray.wait(pending, num_returns=1, timeout=1.0)  # short waits: Ctrl-C is seen
            if not done:
                continue
            trial = refs[done[0]]
            try:
                fields = ray.get(done[0])
            except Exception as exc:  # the worker died (out of memory, killed): recorded, not fatal
                fields = {"status": "failed", "exit_code": 1, "error": f"Ray task failed: {exc}"}
            for key, value in fields.items():
                setattr(trial, key, value)
            state.save(out)
            if on_result:
                on_result(trial)
    finally:
        if started:
            ray.shutdown()
    return state
