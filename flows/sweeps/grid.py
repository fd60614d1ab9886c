"""The trials of a sweep: `--grid key=v1,v2` parsed into a grid, expanded into one override set per trial.

Values are JSON where they parse (`4`, `true`, `[48,48]`, `{"ip1": 0.1}`), else strings; commas inside
brackets or braces do not split values. Every trial gets a stable id from its index and a hash of its
overrides, so a resumed sweep finds its trial folders again. Trials that differ only in late keys
(`hls.*`, `csim.*`) share a "prefix group": one of them runs first and the others reuse its trained
steps through the step cache (flows/stepcache.py) instead of training the same network at once; trials
that differ only after float training share a "train group" (its float model is trained once, first).
"""

from __future__ import annotations

import itertools
import json

from flows.atomic import hash_json
from flows.configfile import reject_json_constant
from flows.errors import UsageError

# config sections read only by steps that run after the trained model exists (convert, csim, synth)
LATE_SECTIONS = ("hls", "csim")
# config sections (and top-level keys) the float training step reads
TRAIN_SECTIONS = ("model", "arch", "seed", "data", "train")


def split_values(text: str) -> list[str]:
    """`a,[1,2],b` -> ['a', '[1,2]', 'b']: split on commas outside brackets, braces and quotes."""
    parts, depth, quote, cur = [], 0, None, []
    for ch in text:
        if quote:
            quote = None if ch == quote else quote
        elif ch in "\"'":
            quote = ch
        elif ch in "[{":
            depth += 1
        elif ch in "]}":
            depth -= 1
        elif ch == "," and depth == 0:
            parts.append("".join(cur))
            cur = []
            continue
        cur.append(ch)
    parts.append("".join(cur))
    return [p.strip() for p in parts]


def parse_value(raw: str):
    try:
        return json.loads(raw, parse_constant=reject_json_constant)
    except json.JSONDecodeError:
        return raw


def parse_grid(items: list[str]) -> dict[str, list]:
    """['train.epochs=1,2', 'hls.objective=area,latency'] -> {key: [values]} (insertion order kept)."""
    grid: dict[str, list] = {}
    for item in items:
        if "=" not in item:
            raise UsageError(f"--grid {item!r}: expected KEY=V1,V2,..., e.g. --grid quant.weight_bits=4,5")
        key, raw = item.split("=", 1)
        key = key.strip()
        if not key:
            raise UsageError(f"--grid {item!r}: the key is empty")
        if key in grid:
            raise UsageError(f"--grid {key} is given twice; list all its values once: {key}=V1,V2")
        values = [parse_value(v) for v in split_values(raw)]
        if any(v == "" for v in values):
            raise UsageError(f"--grid {item!r}: an empty value; separate values with single commas")
        grid[key] = values
    return grid


def expand_grid(grid: dict[str, list]) -> list[dict]:
    """The cartesian product of the grid, the last key varying fastest; one empty trial for no grid."""
    keys = list(grid)
    return [dict(zip(keys, combo)) for combo in itertools.product(*(grid[k] for k in keys))]


def trial_id(index: int, overrides: dict) -> str:
    return f"t{index:03d}-{hash_json(overrides)[:8]}"


def prefix_group(overrides: dict) -> str:
    """Trials with the same group differ only in late keys (hls.*, csim.*): their steps up to the
    hardware conversion are the same, so one trains and the others restore its steps from the cache."""
    early = {k: v for k, v in overrides.items() if k.split(".")[0] not in LATE_SECTIONS}
    return hash_json(early)[:12]


def train_group(overrides: dict) -> str:
    """Trials with the same train group train the same float network (their other keys act later)."""
    early = {k: v for k, v in overrides.items() if k.split(".")[0] in TRAIN_SECTIONS}
    return hash_json(early)[:12]
