"""Bad input at the command line: one clear line, the right exit code, no traceback, no artifacts."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from flows.build import main

ROOT = Path(__file__).resolve().parents[1]


def _run_main(capsys, *argv) -> tuple[int, str]:
    code = main(list(argv))
    err = capsys.readouterr().err
    return code, err


def test_unknown_model_lists_valid_names(capsys):
    code, err = _run_main(capsys, "resnet50", "--board", "pynq-z2")
    assert code == 2
    assert "unknown model 'resnet50'" in err and "lenet5_fire" in err and "lenet300_100" in err
    assert "Traceback" not in err


def test_unknown_board_lists_valid_names(capsys):
    code, err = _run_main(capsys, "lenet5_fire", "--board", "pynq-z9")
    assert code == 2
    assert "unknown board 'pynq-z9'" in err and "pynq-z2" in err


def test_unwritable_output_folder(capsys, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    code, err = _run_main(capsys, "lenet5_fire", "--out", str(blocker / "sub"), "--dataset", "digits")
    assert code == 2
    assert "cannot write to the output folder" in err and "--out" in err


def test_missing_data_offline_says_how_to_provide_it(capsys, tmp_path):
    code, err = _run_main(
        capsys,
        "lenet5_fire",
        "--out",
        str(tmp_path / "b"),
        "--cache-dir",
        str(tmp_path / "c"),
        "--set",
        "data.download=false",
    )
    assert code == 3
    assert "--data-dir" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "b" / "report.json").exists()


def test_data_dir_without_mnist(capsys, tmp_path):
    code, err = _run_main(capsys, "lenet5_fire", "--out", str(tmp_path / "b"), "--data-dir", str(tmp_path))
    assert code == 3 and "has no MNIST/ folder" in err


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--set", "hls.io_type=io_magic"], "hls.io_type"),
        (["--set", "train.nope=1"], "train.nope"),
        (["--set", "quant.weight_bits=1"], "quant.weight_bits"),
        (["--set", "train.epochs=-3"], "train.epochs"),
        (["--set", "epochs"], "KEY=VALUE"),
    ],
)
def test_bad_config_values(capsys, tmp_path, args, needle):
    code, err = _run_main(capsys, "lenet5_fire", "--out", str(tmp_path / "b"), *args)
    assert code == 2 and needle in err and "Traceback" not in err


def test_force_unknown_step(capsys, tmp_path):
    code, err = _run_main(
        capsys, "lenet5_fire", "--out", str(tmp_path / "b"), "--dataset", "digits", "--force", "training"
    )
    assert code == 2 and "steps: train, structure, prune" in err


def test_script_entry_point_runs_from_anywhere(tmp_path):
    """`python flows/build.py` works as a script (not only as the installed module)."""
    proc = subprocess.run(
        [sys.executable, str(ROOT / "flows" / "build.py"), "nosuchmodel"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().startswith("error: unknown model 'nosuchmodel'")
    assert "Traceback" not in proc.stderr
    listing = subprocess.run(
        [sys.executable, str(ROOT / "flows" / "build.py"), "--list"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert listing.returncode == 0 and "pynq-z2" in listing.stdout and "lenet5_fire" in listing.stdout
