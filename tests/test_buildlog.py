"""build.log (issue 15): the build folder keeps the full DEBUG log and the traceback of a failure,
while the terminal keeps its one-line error and its level; steps.json keeps the full error text."""

from __future__ import annotations

import json
import logging
import sys

import pytest

import flows.steps.train as train_step
from flows import build
from flows.api import run_build
from flows.errors import VerificationError
from flows.logs import BUILD_LOG

TINY = {"data.dataset": "digits", "train.epochs": 1, "structure.enabled": False, "compress.enabled": False}


class _Stderr(logging.StreamHandler):
    """Writes to whatever sys.stderr is at the time (pytest swaps it between phases)."""

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value):
        pass


@pytest.fixture
def terminal(capsys):
    """A stderr handler on the root logger at INFO, as the CLI's logging.basicConfig sets up."""
    root = logging.getLogger()
    handler = _Stderr()
    handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    old_level, flows_level = root.level, logging.getLogger("flows").level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    logging.getLogger("flows").setLevel(logging.NOTSET)  # conftest pins it to INFO; the CLI does not
    yield capsys
    root.removeHandler(handler)
    root.setLevel(old_level)
    logging.getLogger("flows").setLevel(flows_level)


def _fail_with(exc: BaseException):
    def check_shapes(model, ctx):
        logging.getLogger("flows.steps.train").debug("about to fail: a debug line for build.log only")
        raise exc

    return check_shapes


def test_flow_error_traceback_in_build_log_one_line_on_the_terminal(tmp_path, monkeypatch, terminal):
    message = "the first line of the error\nand a second line with the details"
    monkeypatch.setattr(train_step, "check_shapes", _fail_with(VerificationError(message)))
    out = tmp_path / "b"
    code = build.main(["lenet5_fire", "--out", str(out), *[f"--set={k}={json.dumps(v)}" for k, v in TINY.items()]])
    assert code == VerificationError.exit_code
    err = terminal.readouterr().err
    assert "Traceback" not in err and "debug line" not in err and "config: {" not in err
    assert err.endswith(f"\nerror: {message}\n")  # the terminal ends with the error itself, no traceback
    assert "INFO step train" in err  # the terminal still gets its INFO lines
    text = (out / BUILD_LOG).read_text()
    assert "DEBUG" in text and "debug line for build.log only" in text and "config: {" in text
    assert "Traceback (most recent call last)" in text and "in check_shapes" in text
    assert "VerificationError: the first line of the error\nand a second line with the details" in text
    record = json.loads((out / "steps.json").read_text())["steps"]["train"]
    assert record["status"] == "failed" and record["error"] == message  # the full text, both lines
    # the handler, the filter and the levels are gone after the build
    assert all(not isinstance(h, logging.FileHandler) for h in logging.getLogger("flows").handlers)
    assert logging.getLogger("flows").level == logging.NOTSET and logging.getLogger("fireflow").level == 0
    logging.getLogger("flows.x").debug("after the build")
    assert "after the build" not in (out / BUILD_LOG).read_text()


def test_unexpected_exception_traceback_in_build_log_and_steps_json(tmp_path, monkeypatch):
    monkeypatch.setattr(train_step, "check_shapes", _fail_with(ZeroDivisionError("a bug, not a user error")))
    out = tmp_path / "b"
    with pytest.raises(ZeroDivisionError):
        run_build("lenet5_fire", "pynq-z2", {**TINY, "out_dir": str(out)})
    text = (out / BUILD_LOG).read_text()
    assert "==== build failed: ZeroDivisionError" in text and "in check_shapes" in text
    record = json.loads((out / "steps.json").read_text())["steps"]["train"]
    assert "Traceback (most recent call last)" in record["error"] and "ZeroDivisionError: a bug" in record["error"]
    # a second run appends to the same log
    with pytest.raises(ZeroDivisionError):
        run_build("lenet5_fire", "pynq-z2", {**TINY, "out_dir": str(out)})
    assert (out / BUILD_LOG).read_text().count("==== build started") == 2
