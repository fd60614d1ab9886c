"""The step runner: an ordered list of steps, each cached by the hash of its inputs.

A step is `Step(name, run, config_keys, outputs)`; `run(build) -> metrics` writes its artifacts into
the build folder. `steps.json` records per step: status, seconds, input hash, output hash, metrics.
The input hash covers the step's name and version, the fireflow version, the config sections it
reads and the output hashes of every step before it, so changing `hls.io_type` reruns conversion and
C simulation but not training. A rerun skips a step whose input hash matches and whose outputs
exist; `force` reruns a step and everything after it. Files are written to a temporary name and renamed into place.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from flows import __version__
from flows.atomic import atomic_write_bytes
from flows.errors import FlowError, UsageError

log = logging.getLogger(__name__)

STEPS_FILE = "steps.json"


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def atomic_write_json(path: Path, data: Any) -> None:
    atomic_write_text(path, json.dumps(data, indent=2, sort_keys=False, default=_json_default) + "\n")


def _json_default(obj: Any) -> Any:
    if hasattr(obj, "item"):
        return obj.item()
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serializable: {type(obj).__name__}")


def hash_json(data: Any) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=_json_default).encode()).hexdigest()[:16]


def hash_path(path: Path) -> str:
    """Content hash of a file, or of every file under a folder (names and contents)."""
    path = Path(path)
    h = hashlib.sha256()
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    for p in files:
        if p.suffix in (".so", ".o"):
            continue
        h.update(str(p.relative_to(path.parent if path.is_file() else path)).encode())
        with open(p, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()[:16]


@dataclass(frozen=True)
class Step:
    """One stage of the build."""

    name: str
    run: Callable[[Any], dict]
    config_keys: tuple[str, ...] = ()
    outputs: tuple[str, ...] = ()  # paths relative to the build folder
    version: int = 1  # bump when the step's code changes what it produces
    description: str = ""


@dataclass
class StepRecord:
    status: str
    seconds: float
    input_hash: str
    output_hash: str = ""
    metrics: dict = field(default_factory=dict)
    finished: str = ""
    error: str = ""
    skipped: bool = False


def load_records(out: Path) -> dict[str, StepRecord]:
    path = Path(out) / STEPS_FILE
    if not path.exists():
        return {}
    try:
        data = json.loads(path.read_text())
        return {name: StepRecord(**rec) for name, rec in data.get("steps", {}).items()}
    except (json.JSONDecodeError, TypeError) as exc:
        log.warning("ignoring unreadable %s (%s): every step reruns", path, exc)
        return {}


def save_records(out: Path, records: dict[str, StepRecord]) -> None:
    atomic_write_json(Path(out) / STEPS_FILE, {"version": 1, "steps": {k: vars(v) for k, v in records.items()}})


def run_steps(
    build: Any, steps: list[Step], force: str | None = None, until: str | None = None
) -> dict[str, StepRecord]:
    """Run (or skip) the steps in order; returns the records of every step that ran or was reused."""
    names = [s.name for s in steps]
    for label, value in (("--force", force), ("--until", until)):
        if value is not None and value not in names:
            raise UsageError(f"{label} {value!r} is not a step; steps: {', '.join(names)}")
    forced_from = names.index(force) if force else len(steps)
    stop_at = names.index(until) if until else len(steps) - 1
    out = Path(build.out)
    records = load_records(out)
    upstream: list[str] = []
    for i, step in enumerate(steps[: stop_at + 1]):
        key = hash_json(
            {
                "step": step.name,
                "version": step.version,
                "fireflow": __version__,
                "config": build.cfg.section(*step.config_keys) if step.config_keys else {},
                "upstream": upstream,
            }
        )
        rec = records.get(step.name)
        outputs_exist = all((out / p).exists() for p in step.outputs)
        if i < forced_from and rec and rec.status == "done" and rec.input_hash == key and outputs_exist:
            log.info("step %-9s skipped (inputs unchanged; %.1f s when it ran)", step.name, rec.seconds)
            rec.skipped = True
            build.metrics[step.name] = rec.metrics
            upstream.append(rec.output_hash)
            continue
        _invalidate_downstream(out, steps[i:], records)
        log.info("step %-9s running%s", step.name, f": {step.description}" if step.description else "")
        t0 = time.perf_counter()
        try:
            metrics = step.run(build) or {}
        except BaseException as exc:
            seconds = time.perf_counter() - t0
            message = str(exc) if isinstance(exc, FlowError) else f"{type(exc).__name__}: {exc}"
            records[step.name] = StepRecord(
                "failed", round(seconds, 2), key, error=message.splitlines()[0][:500], finished=_now()
            )
            save_records(out, records)
            raise
        seconds = time.perf_counter() - t0
        out_hash = hash_json([hash_path(out / p) for p in step.outputs] if step.outputs else metrics)
        records[step.name] = StepRecord("done", round(seconds, 2), key, out_hash, metrics, _now())
        build.metrics[step.name] = metrics
        save_records(out, records)
        log.info("step %-9s done in %.1f s", step.name, seconds)
        upstream.append(out_hash)
    # drop records of steps that are no longer in the list (renamed/removed steps)
    return {n: records[n] for n in names if n in records}


def _invalidate_downstream(out: Path, steps: list[Step], records: dict[str, StepRecord]) -> None:
    """A step is about to rerun: its outputs and those of every later step are stale. Remove them, so
    that a failure now never leaves an older report (or project) that looks current."""
    import shutil

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
