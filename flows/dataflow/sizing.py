"""What a failed run means (`diagnose`), and the smallest FIFO depths that pass (`search_depths`).

`diagnose(design, run)` turns the state the simulation recorded into a one-line message and a table:
which process is blocked reading or writing which stream, each stream's fill and capacity, and the
fork/join whose branches hold the blocked FIFOs (a fork blocked writing a full branch FIFO while its
join waits on an empty one is the classic Fire-module deadlock).

`search_depths(run, design, margin, floor)` searches, under the simulation's pessimistic model, for
small depths that pass: every FIFO at 1 if that passes; else all FIFOs outside fork/joins at 1 (one
run; one by one if that fails), then a binary search per fork/join FIFO in network order, the others
held where they are. Adding depth never causes a deadlock (the simulation is a Kahn network with
blocking reads and writes: its outcome does not depend on thread timing), so each binary search is
exact given the others, and the result is minimal: lowering any one FIFO deadlocks. The depths the
flow writes are `max(floor, ceil(minimum * (1 + margin)))`; they pass too (each is >= the minimum).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

from flows.dataflow.design import Design, ForkJoin
from flows.dataflow.runner import SimRun
from flows.errors import DeadlockError, ToolError

log = logging.getLogger(__name__)

ESCALATIONS = 4  # the flow's depths deadlock: double them up to this many times before giving up


def _stream_rows(run: SimRun) -> dict[str, dict]:
    return {s["name"]: s for s in (run.state or {}).get("streams", [])}


def diagnose(design: Design, run: SimRun) -> dict:
    """The diagnosis of a failed run: {"message", "image", "blocked": [...], "fork_joins": [...], "streams": [...]}."""
    state = run.state or {}
    streams = _stream_rows(run)
    procs = state.get("processes", [])
    blocked = []
    for p in procs:
        if p["state"] not in ("blocked_read", "blocked_write") or not p.get("stream"):
            continue
        s = streams.get(p["stream"], {})
        blocked.append(
            {
                "process": p["name"],
                "op": "read" if p["state"] == "blocked_read" else "write",
                "stream": p["stream"],
                "fill": s.get("fill"),
                "capacity": s.get("capacity"),
            }
        )
    image = 1 + min((p["calls"] for p in procs), default=0)
    implicated = _implicated(design, blocked)
    parts = []
    for g in implicated:
        fork_b = [b for b in blocked if b["process"] == g.fork and b["stream"] in g.streams]
        join_b = [b for b in blocked if b["process"] == g.join and b["stream"] in g.streams]
        branch_fill = " | ".join(", ".join(_fill(streams, s) for s in br) for br in g.branches)
        what = "; ".join(_describe(b) for b in fork_b + join_b) or "its branches are blocked"
        parts.append(f"the fork/join {g.name}: {what} (branch FIFOs fill/depth: {branch_fill})")
    if run.status == "deadlock":
        head = f"deadlock in image {image}"
    else:
        head = f"{run.reason} in image {image}"
    if parts:
        message = f"{head} at " + "; and at ".join(parts)
    else:
        message = f"{head}: " + ("; ".join(_describe(b) for b in blocked[:6]) or "no process is blocked on a stream")
    return {
        "status": run.status,
        "message": message,
        "image": image,
        "blocked": blocked,
        "fork_joins": [g.name for g in implicated],
        "streams": list(streams.values()),
    }


def _fill(streams: dict[str, dict], name: str) -> str:
    row = streams.get(name, {})
    return f"{name} {row.get('fill', '?')}/{row.get('capacity', '?')}"


def _describe(b: dict) -> str:
    verb, kind = ("writing", "full") if b["op"] == "write" else ("reading", "empty")
    return f"{b['process']} blocked {verb} {b['stream']} ({kind}, {b['fill']}/{b['capacity']})"


def _implicated(design: Design, blocked: list[dict]) -> list[ForkJoin]:
    """Fork/joins whose fork is blocked writing, or whose join is blocked reading, one of their branch FIFOs."""
    out = []
    for g in design.groups:
        fork_w = any(b["process"] == g.fork and b["op"] == "write" and b["stream"] in g.streams for b in blocked)
        join_r = any(b["process"] == g.join and b["op"] == "read" and b["stream"] in g.streams for b in blocked)
        if fork_w or join_r:
            out.append((0 if fork_w and join_r else 1, g))
    return [g for _, g in sorted(out, key=lambda t: t[0])]


@dataclass
class Sizing:
    """The outcome of `search_depths` (depths per stream name)."""

    analytical: dict[str, int]  # what the project had (the flow's analytical depths)
    minimum: dict[str, int]  # the smallest passing depths found
    chosen: dict[str, int]  # minimum plus the margin, at least `floor`
    margin: float
    floor: int
    images: int  # back-to-back images per search run
    runs: int
    seconds: float
    escalated: int = 0  # how many times the analytical depths had to be doubled to pass

    def to_dict(self) -> dict:
        return asdict(self)


def chosen_depth(minimum: int, margin: float, floor: int) -> int:
    return max(floor, math.ceil(minimum * (1.0 + margin)))


def search_depths(
    run: Callable[[dict[str, int]], SimRun], design: Design, margin: float, floor: int, images: int
) -> Sizing:
    """Search small passing depths (see the module docstring); `run(depths)` simulates `images` images.

    Raises DeadlockError when the design's own depths, doubled ESCALATIONS times, still deadlock."""
    t0 = time.perf_counter()
    count = [0]

    def passes(depths: dict[str, int]) -> bool:
        count[0] += 1
        return run(depths).ok

    analytical = design.depths()
    current = dict(analytical)
    escalated = 0
    last = run(current)
    count[0] += 1
    while not last.ok:
        if last.status not in ("deadlock", "timeout"):  # a crash is not a FIFO problem: say what happened
            raise ToolError(f"the dataflow simulation did not run: {last.reason}")
        if escalated >= ESCALATIONS:
            raise DeadlockError(
                f"the FIFOs deadlock even at {2**escalated}x the flow's depths: {diagnose(design, last)['message']}. "
                "A process reads a stream more often than it is written, or a FIFO needs more than a whole image"
            )
        escalated += 1
        current = {s: 2 * d for s, d in current.items()}
        last = run(current)
        count[0] += 1
    ones = {s: 1 for s in current}
    if passes(ones):
        current = ones
    else:
        outside = [s.name for s in design.streams if not design.groups_of(s.name)]
        inside = [s.name for s in design.streams if design.groups_of(s.name)]
        trial = {**current, **{s: 1 for s in outside}}
        if passes(trial):
            current = trial
        else:
            inside = outside + inside
        for s in inside:
            if current[s] > 1 and passes({**current, s: 1}):  # most FIFOs: one run
                current[s] = 1
                continue
            lo, hi = 2, current[s]
            while lo < hi:
                mid = (lo + hi) // 2
                if passes({**current, s: mid}):
                    hi = mid
                else:
                    lo = mid + 1
            current[s] = hi
    chosen = {s: chosen_depth(m, margin, floor) for s, m in current.items()}
    final = run(chosen)
    count[0] += 1
    if not final.ok:  # cannot happen for a Kahn network; a failure here means the model is broken
        raise DeadlockError(
            f"the chosen FIFO depths (>= the passing minimum) fail: {diagnose(design, final)['message']}"
        )
    seconds = round(time.perf_counter() - t0, 2)
    sizing = Sizing(analytical, current, chosen, margin, floor, images, count[0], seconds, escalated)
    log.info(
        "FIFO sizing: %d runs in %.1f s; fork/join FIFOs minimum -> chosen: %s",
        sizing.runs,
        sizing.seconds,
        ", ".join(f"{s} {current[s]}->{chosen[s]}" for g in design.groups for s in g.streams) or "none",
    )
    return sizing
