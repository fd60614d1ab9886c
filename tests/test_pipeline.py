"""The step cache: skip what did not change, rerun what did (and everything after), record failures,
never leave stale downstream artifacts, write atomically."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from flows.errors import UsageError
from flows.pipeline import Step, atomic_write_text, load_records, run_steps


@dataclass
class FakeConfig:
    values: dict

    def section(self, *names):
        return {n: self.values.get(n) for n in names}


@dataclass
class FakeBuild:
    out: Path
    cfg: FakeConfig
    metrics: dict = field(default_factory=dict)
    calls: list = field(default_factory=list)


def _writer(name: str, text_from: str | None = None, fail: bool = False):
    def run(build: FakeBuild) -> dict:
        build.calls.append(name)
        if fail:
            raise RuntimeError(f"{name} broke")
        value = build.cfg.values.get(text_from, "") if text_from else ""
        atomic_write_text(build.out / f"{name}.txt", f"{name}:{value}")
        return {"value": value}

    return run


def _steps(fail_c: bool = False) -> list[Step]:
    return [
        Step("a", _writer("a", "x"), ("x",), ("a.txt",)),
        Step("b", _writer("b", "y"), ("y",), ("b.txt",)),
        Step("c", _writer("c", fail=fail_c), (), ("c.txt",)),
    ]


def _build(tmp_path, **values) -> FakeBuild:
    return FakeBuild(tmp_path, FakeConfig({"x": 1, "y": 1, **values}))


def test_rerun_skips_everything(tmp_path):
    run_steps(_build(tmp_path), _steps())
    again = _build(tmp_path)
    records = run_steps(again, _steps())
    assert again.calls == []
    assert all(r.skipped for r in records.values())
    assert again.metrics["a"] == {"value": 1}  # metrics of skipped steps are available downstream


def test_config_change_reruns_that_step_and_downstream_only(tmp_path):
    run_steps(_build(tmp_path), _steps())
    changed = _build(tmp_path, y=2)
    run_steps(changed, _steps())
    assert changed.calls == ["b", "c"]
    assert (tmp_path / "b.txt").read_text() == "b:2"


def test_force_reruns_from_the_named_step(tmp_path):
    run_steps(_build(tmp_path), _steps())
    forced = _build(tmp_path)
    run_steps(forced, _steps(), force="b")
    assert forced.calls == ["b", "c"]


def test_until_stops_early_and_unknown_step_is_a_usage_error(tmp_path):
    partial = _build(tmp_path)
    run_steps(partial, _steps(), until="a")
    assert partial.calls == ["a"]
    with pytest.raises(UsageError, match="steps: a, b, c"):
        run_steps(_build(tmp_path), _steps(), force="nope")


def test_missing_output_reruns_the_step(tmp_path):
    run_steps(_build(tmp_path), _steps())
    (tmp_path / "b.txt").unlink()
    again = _build(tmp_path)
    run_steps(again, _steps())
    assert again.calls == ["b", "c"]


def test_failure_is_recorded_and_stale_outputs_removed(tmp_path):
    run_steps(_build(tmp_path), _steps())
    assert (tmp_path / "c.txt").exists()
    broken = _build(tmp_path, y=5)
    with pytest.raises(RuntimeError, match="c broke"):
        run_steps(broken, _steps(fail_c=True))
    records = load_records(tmp_path)
    assert records["c"].status == "failed" and "c broke" in records["c"].error
    assert records["b"].status == "done"
    assert not (tmp_path / "c.txt").exists()  # the old c output would describe the old config
    fixed = _build(tmp_path, y=5)
    run_steps(fixed, _steps())
    assert fixed.calls == ["c"]


def test_steps_json_is_complete_json_and_no_temp_files_remain(tmp_path):
    run_steps(_build(tmp_path), _steps())
    data = json.loads((tmp_path / "steps.json").read_text())
    assert set(data["steps"]) == {"a", "b", "c"}
    assert all(r["seconds"] >= 0 and r["input_hash"] and r["output_hash"] for r in data["steps"].values())
    assert not list(tmp_path.glob(".*.tmp"))


def test_unreadable_steps_json_reruns_everything(tmp_path):
    run_steps(_build(tmp_path), _steps())
    (tmp_path / "steps.json").write_text("{not json")
    again = _build(tmp_path)
    run_steps(again, _steps())
    assert again.calls == ["a", "b", "c"]
