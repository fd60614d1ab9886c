"""The step runner: an ordered list of steps, each cached by the hash of its inputs and its code.

A step is `Step(name, run, result_type, config_keys, outputs)`; `run(ctx) -> result` writes its
artifacts (the paths in `outputs`, relative to the build folder, which only this step writes) and
returns a typed result (`flows/results.py`). `steps.json` records per step: status, seconds, input
hash, output hash, the result (`metrics`), and the full error text of a failure.

The input hash covers the step's name, the hash of its code (`flows/codehash.py`: the step module and
every first-party module it imports), the config sections it reads and the output hashes of every
step before it: changing `hls.io_type` reruns conversion and C simulation but not training, and an
edited or upgraded flow reruns what its change touches. A rerun skips a step only when its input hash
matches *and* its outputs still hash to what was recorded: a damaged or edited artifact is rebuilt,
and the log says so. A step about to rerun first removes its own outputs and those of every later
step, so a failure never leaves an older report that looks current. Each step gets a fresh scratch
folder `.tmp/<step>/`, removed when the step ends and at the start of the next run.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Protocol

from flows import stepcache
from flows.atomic import atomic_write_json, hash_json, hash_path
from flows.codehash import code_hash
from flows.errors import FlowError, UsageError

log = logging.getLogger(__name__)

STEPS_FILE = "steps.json"
TMP_DIR = ".tmp"


class Context(Protocol):
    """What the runner needs of a build context (flows/context.py's BuildContext has it)."""

    out: Path
    cfg: Any  # .section(*names) -> dict
    results: Any  # .set(name, result)
    tmp: Path | None


@dataclass(frozen=True)
class Step:
    """One stage of the build."""

    name: str
    run: Callable[[Any], Any]
    result_type: type
    config_keys: tuple[str, ...] = ()
    outputs: tuple[str, ...] = ()  # paths relative to the build folder, written by this step only
    description: str = ""
    # inputs beyond the config and earlier steps (e.g. the data's content hash), part of the cache key
    inputs: Callable[[Any], Any] | None = None
    # False when the outputs depend on the build folder itself (e.g. a compiled library with its absolute
    # path): never stored in or restored from a shared step cache (flows/stepcache.py)
    shared: bool = True
    # `apply(ctx, result)` after the step ran, was reused or restored: for a step whose result changes the
    # config later steps read (the `search` step); their cache keys are computed after it
    apply: Callable[[Any, Any], None] | None = None


@dataclass
class StepRecord:
    status: str
    seconds: float
    input_hash: str
    output_hash: str = ""
    metrics: dict = field(default_factory=dict)  # the step's result (to_dict)
    finished: str = ""
    error: str = ""
    skipped: bool = False
    cached: bool = False  # restored from a shared step cache (flows/stepcache.py) instead of run


def load_records(out: Path) -> dict[str, StepRecord]:
    path = Path(out) / STEPS_FILE
    if not path.exists():
        return {}
    try:
        data = json.loads(path.read_text())
        return {name: StepRecord(**rec) for name, rec in data.get("steps", {}).items()}
    except (ValueError, TypeError, AttributeError, OSError) as exc:
        log.warning("ignoring unreadable %s (%s): every step reruns", path, exc)
        return {}


def save_records(out: Path, records: dict[str, StepRecord]) -> None:
    atomic_write_json(Path(out) / STEPS_FILE, {"version": 2, "steps": {k: vars(v) for k, v in records.items()}})


def output_hash(out: Path, step: Step, result: Any) -> str:
    if step.outputs:
        return hash_json([hash_path(out / p) if (out / p).exists() else None for p in step.outputs])
    return hash_json(result.to_dict())


def step_key(ctx: Context, step: Step, upstream: list[str]) -> str:
    return hash_json(
        {
            "step": step.name,
            "code": code_hash(step.run.__module__),
            "config": ctx.cfg.section(*step.config_keys) if step.config_keys else {},
            "inputs": step.inputs(ctx) if step.inputs else None,
            "upstream": upstream,
        }
    )


def _reusable(ctx: Context, step: Step, rec: StepRecord | None, key: str) -> Any | None:
    """The stored result when the step can be skipped, else None (with the reason logged)."""
    if rec is None or rec.status != "done" or rec.input_hash != key:
        return None
    out = Path(ctx.out)
    missing = [p for p in step.outputs if not (out / p).exists()]
    if missing:
        log.info("step %-9s reruns: %s missing", step.name, ", ".join(missing))
        return None
    try:
        result = step.result_type.from_dict(rec.metrics)
    except TypeError:
        log.info("step %-9s reruns: its stored result is from another version of the flow", step.name)
        return None
    if step.outputs and output_hash(out, step, result) != rec.output_hash:
        log.warning("step %-9s reruns: its artifacts changed since it ran (%s)", step.name, ", ".join(step.outputs))
        return None
    return result


def run_steps(
    ctx: Context, steps: list[Step], force: str | None = None, until: str | None = None, cache: str | None = None
) -> dict:
    """Run (or skip) the steps in order; returns the records of every step that ran or was reused.

    `cache` is a step-cache folder shared between build folders: a step whose input hash is stored there
    is restored from it instead of run, and every finished shareable step is stored into it."""
    names = [s.name for s in steps]
    for label, value in (("--force", force), ("--until", until)):
        if value is not None and value not in names:
            raise UsageError(f"{label} {value!r} is not a step; steps: {', '.join(names)}")
    forced_from = names.index(force) if force else len(steps)
    stop_at = names.index(until) if until else len(steps) - 1
    out = Path(ctx.out)
    shutil.rmtree(out / TMP_DIR, ignore_errors=True)  # scratch of an interrupted run
    records = load_records(out)
    upstream: list[str] = []
    for i, step in enumerate(steps[: stop_at + 1]):
        try:
            key = step_key(ctx, step, upstream)  # may read the step's inputs (the data) and fail
        except BaseException:  # keep the artifacts (they are verified on the next run), drop the summary
            _invalidate_downstream(out, steps[-1:], records)  # that would look like this run's result
            raise
        rec = records.get(step.name)
        result = _reusable(ctx, step, rec, key) if i < forced_from else None
        if result is not None:
            log.info("step %-9s skipped (inputs unchanged; %.1f s when it ran)", step.name, rec.seconds)
            rec.skipped = True
            ctx.results.set(step.name, result)
            if step.apply:
                step.apply(ctx, result)
            upstream.append(rec.output_hash)
            continue
        _invalidate_downstream(out, steps[i:], records)
        if cache and step.shared and i < forced_from:
            rec = _from_cache(ctx, step, key, Path(cache))
            if rec is not None:
                records[step.name] = rec
                save_records(out, records)
                upstream.append(rec.output_hash)
                continue
        log.info("step %-9s running%s", step.name, f": {step.description}" if step.description else "")
        ctx.tmp = out / TMP_DIR / step.name
        ctx.tmp.mkdir(parents=True, exist_ok=True)
        t0 = time.perf_counter()
        try:
            result = step.run(ctx)
            if not isinstance(result, step.result_type):
                raise TypeError(f"step {step.name} returned {type(result).__name__}, not {step.result_type.__name__}")
        except BaseException as exc:
            seconds = time.perf_counter() - t0
            if isinstance(exc, FlowError):
                message = str(exc)
            else:
                message = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
            records[step.name] = StepRecord("failed", round(seconds, 2), key, error=message, finished=_now())
            save_records(out, records)
            raise
        finally:
            shutil.rmtree(ctx.tmp, ignore_errors=True)
            ctx.tmp = None
        seconds = time.perf_counter() - t0
        out_hash = output_hash(out, step, result)
        records[step.name] = StepRecord("done", round(seconds, 2), key, out_hash, result.to_dict(), _now())
        ctx.results.set(step.name, result)
        if step.apply:
            step.apply(ctx, result)
        save_records(out, records)
        log.info("step %-9s done in %.1f s", step.name, seconds)
        if cache and step.shared:
            stepcache.store(Path(cache), step.name, key, out, step.outputs, _cache_record(records[step.name]))
        upstream.append(out_hash)
    save_records(out, records)  # also when every step was reused: the records say so
    shutil.rmtree(out / TMP_DIR, ignore_errors=True)
    return {n: records[n] for n in names if n in records}


def _from_cache(ctx: Context, step: Step, key: str, cache: Path) -> StepRecord | None:
    """Restore the step from the shared cache into the build folder; its record, or None on a miss."""
    entry = stepcache.lookup(cache, step.name, key)
    if entry is None:
        return None
    out = Path(ctx.out)
    try:
        result = step.result_type.from_dict(entry.metrics)
        if not stepcache.restore(entry, out, step.outputs):
            return None
    except (TypeError, OSError) as exc:
        log.warning("step %-9s: ignoring its step-cache entry %s (%s)", step.name, entry.path, exc)
        return None
    if output_hash(out, step, result) != entry.output_hash:
        log.warning("step %-9s: its step-cache entry %s is damaged; the step runs", step.name, entry.path)
        for rel in step.outputs:
            stepcache.remove(out / rel)
        shutil.rmtree(entry.path, ignore_errors=True)  # the step's run stores a sound one
        return None
    log.info("step %-9s restored from the step cache (%.1f s when it ran)", step.name, entry.seconds)
    ctx.results.set(step.name, result)
    if step.apply:
        step.apply(ctx, result)
    return StepRecord("done", entry.seconds, key, entry.output_hash, entry.metrics, _now(), cached=True)


def _cache_record(rec: StepRecord) -> dict:
    return {"metrics": rec.metrics, "output_hash": rec.output_hash, "seconds": rec.seconds}


def _invalidate_downstream(out: Path, steps: list[Step], records: dict[str, StepRecord]) -> None:
    """A step is about to rerun: its outputs and those of every later step are stale. Remove them, so
    that a failure now never leaves an older report (or project) that looks current."""
    changed = False
    for step in steps:
        for rel in step.outputs:
            path = out / rel
            if path.is_dir():
                shutil.rmtree(path)
            elif path.exists():
                path.unlink()
        if step.name in records:
            del records[step.name]
            changed = True
    if changed:
        save_records(out, records)


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")
