"""Boards as data: one JSON file per board in `constraints/`, validated on load.

A board file names the FPGA part, the default clock, the resource budget of the part and the hls4ml
backend that fits it. Example (`constraints/pynq-z2.json`):

    {"name": "pynq-z2", "part": "xc7z020clg400-1", "clock_period_ns": 10.0,
     "backend": "VivadoAccelerator", "hls4ml_board": "pynq-z2",
     "resources": {"LUT": 53200, "FF": 106400, "DSP": 220, "BRAM36": 140, "URAM": 0},
     "description": "...", "source": "vendor document the budget was checked against"}

`backend` is one of `VivadoAccelerator` (needs `hls4ml_board`: adds the AXI-stream wrapper, the
block design tcl and the PYNQ driver), `Vivado` or `Vitis` (plain HLS IP for the part).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path

from flows.errors import UsageError

CONSTRAINTS_DIR = Path(str(files("constraints")))  # package data: found in editable and plain installs
RESOURCE_KINDS = ("LUT", "FF", "DSP", "BRAM36", "URAM")
BACKENDS = ("VivadoAccelerator", "Vivado", "Vitis")
_REQUIRED = ("name", "part", "clock_period_ns", "backend", "resources", "source")


@dataclass(frozen=True)
class Board:
    """A target board: FPGA part, default clock, resource budget, hls4ml backend."""

    name: str
    part: str
    clock_period_ns: float
    backend: str
    resources: dict[str, float]
    source: str
    description: str = ""
    hls4ml_board: str | None = None

    @property
    def clock_mhz(self) -> float:
        return 1000.0 / self.clock_period_ns

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "description": self.description,
            "part": self.part,
            "clock_period_ns": self.clock_period_ns,
            "backend": self.backend,
            "hls4ml_board": self.hls4ml_board,
            "resources": dict(self.resources),
            "source": self.source,
        }


def available_boards(constraints_dir: Path = CONSTRAINTS_DIR) -> list[str]:
    """Names of the boards that have a data file."""
    return sorted(p.stem for p in Path(constraints_dir).glob("*.json"))


def _fail(path: Path, what: str) -> UsageError:
    return UsageError(f"board file {path}: {what}")


def parse_board(data: dict, path: Path) -> Board:
    """Validate the parsed JSON of one board file and return a `Board`."""
    if not isinstance(data, dict):
        raise _fail(path, "top level must be a JSON object")
    missing = [k for k in _REQUIRED if k not in data]
    if missing:
        raise _fail(path, f"missing keys {missing}")
    unknown = sorted(set(data) - set(_REQUIRED) - {"description", "hls4ml_board"})
    if unknown:
        raise _fail(path, f"unknown keys {unknown} (allowed: {sorted(_REQUIRED) + ['description', 'hls4ml_board']})")
    if data["name"] != path.stem:
        raise _fail(path, f"name {data['name']!r} must equal the file name {path.stem!r}")
    if not isinstance(data["part"], str) or not data["part"].startswith("xc"):
        raise _fail(path, f"part {data['part']!r} must be a Xilinx part string like 'xc7z020clg400-1'")
    period = data["clock_period_ns"]
    if not isinstance(period, (int, float)) or not 0.5 <= period <= 100:
        raise _fail(path, f"clock_period_ns {period!r} must be a number of nanoseconds in [0.5, 100]")
    if data["backend"] not in BACKENDS:
        raise _fail(path, f"backend {data['backend']!r} must be one of {list(BACKENDS)}")
    hls4ml_board = data.get("hls4ml_board")
    if data["backend"] == "VivadoAccelerator" and not hls4ml_board:
        raise _fail(path, "backend VivadoAccelerator needs 'hls4ml_board' (e.g. 'pynq-z2')")
    res = data["resources"]
    if not isinstance(res, dict) or set(res) != set(RESOURCE_KINDS):
        raise _fail(path, f"resources must have exactly the keys {list(RESOURCE_KINDS)}")
    for k, v in res.items():
        if not isinstance(v, (int, float)) or v < 0:
            raise _fail(path, f"resources.{k} = {v!r} must be a non-negative number")
    if res["LUT"] <= 0 or res["FF"] <= 0:
        raise _fail(path, "resources.LUT and resources.FF must be positive")
    if not isinstance(data["source"], str) or len(data["source"]) < 10:
        raise _fail(path, "source must name the vendor document the budget was checked against")
    return Board(
        name=data["name"],
        part=data["part"],
        clock_period_ns=float(period),
        backend=data["backend"],
        resources={k: float(res[k]) for k in RESOURCE_KINDS},
        source=data["source"],
        description=data.get("description", ""),
        hls4ml_board=hls4ml_board,
    )


def load_board(name: str, constraints_dir: Path = CONSTRAINTS_DIR) -> Board:
    """Load and validate `constraints/<name>.json`; unknown names list the valid ones."""
    path = Path(constraints_dir) / f"{name}.json"
    if not path.is_file():
        valid = ", ".join(available_boards(constraints_dir)) or "(none)"
        raise UsageError(f"unknown board {name!r}; valid boards: {valid}")
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise _fail(path, f"not valid JSON ({exc})") from None
    return parse_board(data, path)
