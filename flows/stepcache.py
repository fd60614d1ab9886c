"""A content-addressed store of finished steps, shared between build folders (e.g. the trials of a sweep).

An entry is keyed by the step's input hash (flows/pipeline.py `step_key`: the step's code, config
sections, inputs and the output hashes of the steps before it), so two builds whose first steps see the
same inputs share those steps' artifacts: a sweep over `hls.*` keys trains once. An entry holds copies
of the step's outputs and its stored record (result, output hash); restoring copies the outputs into a
build folder and checks they hash to the recorded value, else the entry is ignored (and the step runs).

Layout: `<cache>/<key[:2]>/<key>/{entry.json, outputs/<the step's output paths>}`. Entries are written
into a scratch folder and renamed into place, so a reader never sees half an entry; when two builds
store the same key at once, the first rename wins and the other copy is dropped. Nothing read from the
cache executes code: checkpoints are loaded by the steps with `weights_only=True` as always.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path

from flows.atomic import atomic_write_json

log = logging.getLogger(__name__)

ENTRY_FILE = "entry.json"
OUTPUTS_DIR = "outputs"


@dataclass
class CacheEntry:
    """A stored step: where its copies are, the step's result (`metrics`) and the hash of its outputs."""

    path: Path
    step: str
    metrics: dict
    output_hash: str
    seconds: float


def entry_dir(cache: Path, key: str) -> Path:
    return Path(cache) / key[:2] / key


def lookup(cache: Path, step: str, key: str) -> CacheEntry | None:
    """The entry for `key`, or None (absent, unreadable, or of another step)."""
    folder = entry_dir(cache, key)
    try:
        data = json.loads((folder / ENTRY_FILE).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or data.get("step") != step or data.get("key") != key:
        return None
    try:
        return CacheEntry(folder, step, dict(data["metrics"]), str(data["output_hash"]), float(data["seconds"]))
    except (KeyError, TypeError, ValueError):
        return None


def restore(entry: CacheEntry, out: Path, outputs: tuple[str, ...]) -> bool:
    """Copy the entry's outputs into the build folder `out`; False (nothing left behind) when one is missing."""
    src_root = entry.path / OUTPUTS_DIR
    if any(not (src_root / rel).exists() for rel in outputs):
        return False
    for rel in outputs:
        src, dst = src_root / rel, Path(out) / rel
        remove(dst)
        dst.parent.mkdir(parents=True, exist_ok=True)
        tmp = dst.with_name(f".{dst.name}.cache-{uuid.uuid4().hex[:8]}")
        try:
            if src.is_dir():
                shutil.copytree(src, tmp)
            else:
                shutil.copy2(src, tmp)
            os.replace(tmp, dst)
        except BaseException:
            remove(tmp)
            raise
    return True


def remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


def store(cache: Path, step: str, key: str, out: Path, outputs: tuple[str, ...], record: dict) -> bool:
    """Copy a finished step's outputs and record into the cache; True when this call added the entry.

    Failures (a full disk, a read-only cache) are logged and ignored: the cache only saves time."""
    cache = Path(cache)
    final = entry_dir(cache, key)
    if final.exists():
        return False
    tmp = cache / f".tmp-{key[:16]}-{uuid.uuid4().hex[:8]}"
    try:
        for rel in outputs:
            src, dst = Path(out) / rel, tmp / OUTPUTS_DIR / rel
            dst.parent.mkdir(parents=True, exist_ok=True)
            if src.is_dir():
                shutil.copytree(src, dst)
            elif src.exists():
                shutil.copy2(src, dst)
        atomic_write_json(tmp / ENTRY_FILE, {"step": step, "key": key, **record})
        final.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.rename(tmp, final)
        except OSError:  # another build stored the same key first
            shutil.rmtree(tmp, ignore_errors=True)
            return False
        return True
    except OSError as exc:
        log.warning("step cache %s: could not store step %s (%s); the build goes on", cache, step, exc)
        shutil.rmtree(tmp, ignore_errors=True)
        return False
