"""Shared fixtures: small real builds on scikit-learn's digits (no downloads, no ../shared needed).

The session-scoped builds run the real flow end to end (train, QAT, export, hls4ml, g++ csim) at a
size that keeps the default test run within minutes on 2 cores; other tests reuse their folders.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import pytest

from flows.api import quiet_libraries, run_build

SHARED = Path(__file__).resolve().parents[2] / "shared"

# a recipe that learns digits in seconds: enough for varied activations, not for accuracy claims
SMALL = {
    "data.dataset": "digits",
    "train.epochs": 6,
    "train.qat_epochs": 2,
    "train.lr": 0.005,
    "train.qat_lr": 0.001,
    "csim.samples": 120,
    "csim.tb_samples": 10,
    # the spine tests use the plain networks; the model recipes' pruning and bit widths have their own tests
    "structure.enabled": False,
    "compress.enabled": False,
    "quant.weight_bits": 5,
    "quant.act_bits": 8,
    # the slow checks that have their own tests: yosys/verilator of DA layers (test_yosys, marker) and the
    # bounded-FIFO dataflow check (test_dataflow; fire_stream_build keeps it on)
    "hls.rtl": "off",
    "dataflow.enabled": False,
}


def pytest_configure(config):
    quiet_libraries()
    logging.getLogger("flows").setLevel(logging.INFO)


@pytest.fixture(scope="session")
def fire_stream_build(tmp_path_factory):
    """lenet5_fire, io_stream, pynq-z2: the spine of the flow at test size."""
    out = tmp_path_factory.mktemp("fire_stream")
    report = run_build("lenet5_fire", "pynq-z2", {**SMALL, "dataflow.enabled": True, "out_dir": str(out)})
    return out, report


def copy_build(src: Path, dst: Path) -> Path:
    """A copy of a finished build folder (so a test can rerun parts of it without side effects)."""
    shutil.copytree(src, dst)
    return dst


@pytest.fixture()
def cli(capsys, caplog, monkeypatch, tmp_path):
    """`flows/build.py` as a user runs it (from `tmp_path`): `run(*argv) -> (exit code, stderr, log)`.
    tests/test_bad_inputs.py has its own, stricter one."""
    from flows.build import main as build_main

    monkeypatch.chdir(tmp_path)
    caplog.set_level(logging.INFO)

    def run(*argv):
        code = build_main([str(a) for a in argv])
        return code, capsys.readouterr().err, caplog.text

    return run
