"""A plain (non-editable) install works from another folder: the wheel carries every module, the board
files (package data) and the console scripts, and a build runs from it (issue 10, packaging)."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """fireflow's wheel, built from this checkout and unpacked into a folder of its own."""
    tmp = tmp_path_factory.mktemp("wheel")
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp), str(ROOT)],
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        pytest.fail(f"pip wheel failed: {proc.stderr[-2000:]}")
    (wheel,) = tmp.glob("fireflow-*.whl")
    site = tmp / "site"
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
        zf.extractall(site)
    assert "constraints/pynq-z2.json" in names
    assert "flows/estimator/calibration.json" in names
    assert "flows/sparse/nnet_sparse_dense.h" in names
    assert any(n.endswith("entry_points.txt") for n in names)
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    assert "fireflow-build = flows.build:main" in (site / entry_points).read_text()
    return site


def _run(site: Path, cwd: Path, code: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(site)}
    return subprocess.run([sys.executable, "-c", code], cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


def test_the_installed_package_finds_its_boards_from_another_folder(installed, tmp_path):
    proc = _run(
        installed,
        tmp_path,
        "import flows, flows.boards as b; print(flows.__file__); print(b.available_boards()); "
        "print(b.load_board('pynq-z2').part)",
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = proc.stdout.splitlines()
    assert lines[0].startswith(str(installed))  # the wheel's copy, not this checkout
    assert "pynq-z2" in lines[1] and lines[2] == "xc7z020clg400-1"


def test_the_installed_cli_builds_from_another_folder(installed, tmp_path):
    args = [
        "lenet5_fire",
        "--board",
        "pynq-z2",
        "--dataset",
        "digits",
        "--epochs",
        "1",
        "--set",
        "data.max_train=256",
        "--set",
        "data.max_test=64",
        "--set",
        "structure.enabled=false",
        "--set",
        "compress.enabled=false",
        "--until",
        "train",
        "--out",
        str(tmp_path / "build"),
    ]
    proc = _run(installed, tmp_path, f"import sys; from flows.build import main; sys.exit(main({args!r}))")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert (tmp_path / "build" / "model" / "float.pt").is_file()
    assert (tmp_path / "build" / "config.yaml").is_file()
