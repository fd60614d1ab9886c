"""Compile the generated concurrent simulation and run it, under a watchdog, as a child process.

`compile_simulator(project, design)` builds `<project>/dataflow/<project>_dataflow` with g++, with
the C simulation's flags (flows/csim.py `compile_flags`, at -O1: the run is bound by thread hand-offs,
not arithmetic) plus `-pthread`, and the include path `dataflow/include` *before* hls4ml's
`firmware/ap_types`, so that every `#include "hls_stream.h"` finds fireflow's bounded stream.

`simulate(exe, x, depths, timeout_s)` runs it on images `x` (N, n_in) with one FIFO capacity per
stream. The program's own watchdog stops it when no stream operation happened for `timeout_s`
seconds; the parent kills it (and its threads) when it overruns that by a wide margin. A deadlock is
found exactly, without waiting: every live process is blocked. The outcome is a `SimRun`.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from flows.csim import CXX, compile_flags, first_error, run_compiler
from flows.dataflow.design import Design
from flows.dataflow.generate import DATAFLOW_DIR, write_sources
from flows.errors import ToolError

log = logging.getLogger(__name__)

OPT_LEVEL = "-O1"


@dataclass
class SimRun:
    """One run of the concurrent simulation."""

    status: str  # ok, deadlock, timeout, error
    reason: str
    seconds: float
    outputs: np.ndarray | None = None
    state: dict | None = None  # processes and streams when it stopped (for a deadlock: where each blocked)
    high_water: dict[str, int] = field(default_factory=dict)  # the largest fill each stream reached

    @property
    def ok(self) -> bool:
        return self.status == "ok"


def simulator_path(project: Path, design: Design) -> Path:
    return Path(project) / DATAFLOW_DIR / f"{design.project_name}_dataflow"


def compile_simulator(project: Path, design: Design) -> Path:
    """Write the sources and g++ the simulation program; returns its path (ToolError when g++ fails)."""
    project = Path(project).resolve()
    source = write_sources(project, design)
    exe = simulator_path(project, design)
    partial = exe.with_name(f".{exe.name}.{secrets.token_hex(4)}.partial")
    flags = [OPT_LEVEL if f.startswith("-O") else f for f in compile_flags(axi_wrapper=design.axi)]
    cmd = [
        CXX,
        *flags,
        "-pthread",
        f"-I{DATAFLOW_DIR}/include",  # before hls4ml's ap_types: fireflow's hls_stream.h wins
        "-Ifirmware",
        "-Ifirmware/ap_types",
        "-D",
        f'WEIGHTS_DIR="{project / "firmware" / "weights"}"',
        str(source.relative_to(project)),
        "-o",
        str(partial),
    ]
    t0 = time.time()
    try:
        code, output = run_compiler(cmd, project)
        if code != 0:
            log.debug("%s output:\n%s", CXX, output)
            raise ToolError(f"{CXX} could not compile the dataflow simulation in {project}: {first_error(output)}")
        os.replace(partial, exe)
    finally:
        partial.unlink(missing_ok=True)
    log.info("compiled the dataflow simulation in %.1f s", time.time() - t0)
    return exe


def simulate(exe: Path, x: np.ndarray, depths: dict[str, int], timeout_s: float) -> SimRun:
    """Run the simulation program on `x` (N, n_in) with these FIFO capacities (see the module docstring)."""
    x = np.ascontiguousarray(x.reshape(len(x), -1), dtype=np.float64)
    with tempfile.TemporaryDirectory(prefix="fireflow-dataflow-") as tmp:
        tmp = Path(tmp)
        (tmp / "capacities.txt").write_text("".join(f"{name} {int(d)}\n" for name, d in depths.items()))
        (tmp / "inputs.bin").write_bytes(x.tobytes())
        cmd = [str(exe), "capacities.txt", "inputs.bin", "outputs.bin", str(len(x)), str(timeout_s), "result.json"]
        t0 = time.perf_counter()
        try:
            proc = subprocess.run(cmd, cwd=tmp, capture_output=True, text=True, timeout=2 * timeout_s + 30)
        except subprocess.TimeoutExpired:
            return SimRun("timeout", f"killed after {2 * timeout_s + 30:.0f} s", time.perf_counter() - t0)
        seconds = time.perf_counter() - t0
        result_file = tmp / "result.json"
        if not result_file.is_file():
            tail = (proc.stderr or proc.stdout or "").strip().splitlines()[-3:]
            return SimRun("error", f"exit status {proc.returncode}: {' | '.join(tail) or 'no output'}", seconds)
        result = json.loads(result_file.read_text())
        outputs = None
        if result["status"] == "ok" and (tmp / "outputs.bin").is_file():
            outputs = np.frombuffer((tmp / "outputs.bin").read_bytes(), dtype=np.float64).reshape(len(x), -1).copy()
        return SimRun(
            result["status"],
            result["reason"],
            float(result.get("seconds", seconds)),
            outputs,
            result.get("state"),
            {k: int(v) for k, v in (result.get("high_water") or {}).items()},
        )
