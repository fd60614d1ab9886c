"""Tests for the board data files in constraints/ and their loader, flows/boards.py.

Every file must pass the schema check of `flows.boards.load_board`; the budgets must equal the
vendor figures verified for each part (see each file's "source"); unknown names and malformed
files must give clear `UsageError`s.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from flows.boards import BACKENDS, CONSTRAINTS_DIR, RESOURCE_KINDS, available_boards, load_board
from flows.errors import UsageError

# Verified budgets (LUT, FF, DSP, BRAM36 = 36 Kb blocks, URAM) and parts.
EXPECTED = {
    "pynq-z2": ("xc7z020clg400-1", "VivadoAccelerator", 10.0, (53200, 106400, 220, 140, 0)),
    "pynq-z1": ("xc7z020clg400-1", "VivadoAccelerator", 10.0, (53200, 106400, 220, 140, 0)),
    "zedboard": ("xc7z020clg484-1", "Vivado", 10.0, (53200, 106400, 220, 140, 0)),
    "arty-a7-35t": ("xc7a35ticsg324-1L", "Vivado", 10.0, (20800, 41600, 90, 50, 0)),
    "arty-a7-100t": ("xc7a100tcsg324-1", "Vivado", 10.0, (63400, 126800, 240, 135, 0)),
    "ultra96-v2": ("xczu3eg-sbva484-1-e", "Vitis", 5.0, (70560, 141120, 360, 216, 0)),
    "zcu104": ("xczu7ev-ffvc1156-2-e", "Vitis", 5.0, (230400, 460800, 1728, 312, 96)),
    "kv260": ("xck26-sfvc784-2LV-c", "Vitis", 5.0, (117120, 234240, 1248, 144, 64)),
}

BOARD_FILES = sorted(p.stem for p in CONSTRAINTS_DIR.glob("*.json"))


def _hls4ml_supported_boards() -> dict | None:
    spec = importlib.util.find_spec("hls4ml")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(list(spec.submodule_search_locations)[0]) / "backends" / "vivado_accelerator" / "supported_boards.json"
    return json.loads(path.read_text()) if path.is_file() else None


def test_expected_boards_have_files() -> None:
    assert set(EXPECTED) <= set(available_boards())


@pytest.mark.parametrize("name", BOARD_FILES)
def test_every_board_file_loads(name: str) -> None:
    board = load_board(name)
    assert board.name == name
    assert board.backend in BACKENDS
    assert set(board.resources) == set(RESOURCE_KINDS)
    assert board.description
    assert 50.0 <= board.clock_mhz <= 500.0


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_verified_budgets(name: str) -> None:
    part, backend, period, budget = EXPECTED[name]
    board = load_board(name)
    assert board.part == part
    assert board.backend == backend
    assert board.clock_period_ns == period
    assert tuple(board.resources[k] for k in RESOURCE_KINDS) == budget
    # 7-series and UltraScale+ slices/CLBs have two flip-flops per LUT
    assert board.resources["FF"] == 2 * board.resources["LUT"]
    assert "DS" in board.source  # names the AMD data sheet


@pytest.mark.parametrize("name", BOARD_FILES)
def test_backend_fits_the_part(name: str) -> None:
    board = load_board(name)
    seven_series = board.part.startswith("xc7")
    ultrascale_plus = board.part.startswith(("xczu", "xck", "xcu"))
    assert seven_series or ultrascale_plus, board.part
    if board.backend == "VivadoAccelerator":
        assert board.hls4ml_board
        supported = _hls4ml_supported_boards()
        if supported is not None:
            assert board.hls4ml_board in supported
            assert supported[board.hls4ml_board]["part"] == board.part
    elif seven_series:
        assert board.backend == "Vivado"
        assert board.hls4ml_board is None
    else:
        assert board.backend == "Vitis"
        assert board.hls4ml_board is None
    assert board.clock_period_ns == (10.0 if seven_series else 5.0)
    if seven_series:
        assert board.resources["URAM"] == 0


def test_pynq_z1_reuses_the_pynq_z2_accelerator_board() -> None:
    z1, z2 = load_board("pynq-z1"), load_board("pynq-z2")
    assert (z1.part, z1.hls4ml_board) == (z2.part, "pynq-z2")
    assert "pynq-z2" in z1.description and "same part" in z1.description


def test_unknown_board_lists_valid_names() -> None:
    with pytest.raises(UsageError) as info:
        load_board("pynq-z3")
    msg = str(info.value)
    assert "unknown board 'pynq-z3'" in msg
    for name in EXPECTED:
        assert name in msg


def test_unknown_board_in_empty_folder(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match=r"valid boards: \(none\)"):
        load_board("kv260", constraints_dir=tmp_path)


# ------------------------------------------------------------------------------------------
# Malformed files, written into tmp_path
# ------------------------------------------------------------------------------------------

VALID = {
    "name": "toy",
    "description": "a test board",
    "part": "xc7a35ticsg324-1L",
    "clock_period_ns": 10.0,
    "backend": "Vivado",
    "resources": {"LUT": 20800, "FF": 41600, "DSP": 90, "BRAM36": 50, "URAM": 0},
    "source": "AMD DS180 7 Series FPGAs Data Sheet: Overview",
}


_DROP = object()


def _with(**changes) -> dict:
    data = json.loads(json.dumps(VALID))
    for key, value in changes.items():
        if value is _DROP:
            data.pop(key)
        else:
            data[key] = value
    return data


def test_valid_toy_board_loads(tmp_path: Path) -> None:
    (tmp_path / "toy.json").write_text(json.dumps(VALID))
    board = load_board("toy", constraints_dir=tmp_path)
    assert board.resources["BRAM36"] == 50.0 and board.clock_mhz == 100.0
    assert board.to_dict()["part"] == "xc7a35ticsg324-1L"


@pytest.mark.parametrize(
    "data,match",
    [
        ([1, 2], "top level must be a JSON object"),
        (_with(part=_DROP), r"missing keys \['part'\]"),
        (_with(budget=1), r"unknown keys \['budget'\]"),
        (_with(name="other"), "name 'other' must equal the file name 'toy'"),
        (_with(part="7z020clg400-1"), "must be a Xilinx part string"),
        (_with(clock_period_ns=0.1), r"clock_period_ns 0.1 must be a number of nanoseconds"),
        (_with(clock_period_ns="10"), "clock_period_ns '10' must be a number"),
        (_with(backend="Quartus"), "backend 'Quartus' must be one of"),
        (_with(backend="VivadoAccelerator"), "needs 'hls4ml_board'"),
        (_with(resources={"LUT": 1, "FF": 2, "DSP": 3, "BRAM_18K": 4, "URAM": 0}), "resources must have exactly"),
        (_with(resources={"LUT": 1, "FF": 2, "DSP": -3, "BRAM36": 4, "URAM": 0}), "resources.DSP = -3"),
        (_with(resources={"LUT": 0, "FF": 2, "DSP": 3, "BRAM36": 4, "URAM": 0}), "FF must be positive"),
        (_with(source="DS180"), "source must name the vendor document"),
    ],
    ids=[
        "list", "missing-key", "unknown-key", "name-mismatch", "bad-part", "clock-range", "clock-type",
        "bad-backend", "accelerator-without-board", "resource-keys", "negative", "zero-lut", "short-source",
    ],
)  # fmt: skip
def test_malformed_board_file(tmp_path: Path, data, match: str) -> None:
    path = tmp_path / "toy.json"
    path.write_text(json.dumps(data))
    with pytest.raises(UsageError, match=match) as info:
        load_board("toy", constraints_dir=tmp_path)
    assert str(path) in str(info.value)


@pytest.mark.parametrize("text", ["", "{", '{"name": "toy",}', "not json"])
def test_invalid_json(tmp_path: Path, text: str) -> None:
    path = tmp_path / "toy.json"
    path.write_text(text)
    with pytest.raises(UsageError, match="not valid JSON") as info:
        load_board("toy", constraints_dir=tmp_path)
    assert str(path) in str(info.value)
    assert info.value.__cause__ is None
