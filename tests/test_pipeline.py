"""The step cache: skip what did not change, rerun what did (and everything after), record failures,
never leave stale downstream artifacts, verify artifacts before trusting them, key on the code,
write atomically."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import pytest

import flows.pipeline as pipeline
from flows.atomic import atomic_write_text
from flows.errors import UsageError
from flows.pipeline import Step, load_records, run_steps
from flows.results import StepResult


@dataclass
class FakeConfig:
    values: dict

    def section(self, *names):
        return {n: self.values.get(n) for n in names}


@dataclass
class Value(StepResult):
    value: object


class FakeResults(dict):
    def set(self, name, result):
        self[name] = result


@dataclass
class FakeBuild:
    out: Path
    cfg: FakeConfig
    results: FakeResults = field(default_factory=FakeResults)
    calls: list = field(default_factory=list)
    tmp: Path | None = None


def _writer(name: str, text_from: str | None = None, fail: bool = False):
    def run(build: FakeBuild) -> Value:
        build.calls.append(name)
        assert build.tmp is not None and build.tmp.is_dir()  # each step has its own scratch folder
        (build.tmp / "scratch").write_text("x")
        if fail:
            raise RuntimeError(f"{name} broke")
        value = build.cfg.values.get(text_from, "") if text_from else ""
        atomic_write_text(build.out / f"{name}.txt", f"{name}:{value}")
        return Value(value)

    return run


def _steps(fail_c: bool = False) -> list[Step]:
    return [
        Step("a", _writer("a", "x"), Value, ("x",), ("a.txt",)),
        Step("b", _writer("b", "y"), Value, ("y",), ("b.txt",)),
        Step("c", _writer("c", fail=fail_c), Value, (), ("c.txt",)),
    ]


def _build(tmp_path, **values) -> FakeBuild:
    return FakeBuild(tmp_path, FakeConfig({"x": 1, "y": 1, **values}))


def test_rerun_skips_everything(tmp_path):
    run_steps(_build(tmp_path), _steps())
    again = _build(tmp_path)
    records = run_steps(again, _steps())
    assert again.calls == []
    assert all(r.skipped for r in records.values())
    assert again.results["a"] == Value(1)  # typed results of skipped steps are available downstream


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


def test_damaged_artifact_is_rebuilt_not_trusted(tmp_path, caplog):
    run_steps(_build(tmp_path), _steps())
    (tmp_path / "b.txt").write_text("b:tampered")
    again = _build(tmp_path)
    with caplog.at_level("WARNING"):
        run_steps(again, _steps())
    assert again.calls == ["b", "c"]
    assert (tmp_path / "b.txt").read_text() == "b:1"
    assert "artifacts changed" in caplog.text


def test_changed_code_reruns_the_step(tmp_path, monkeypatch):
    run_steps(_build(tmp_path), _steps())
    real = pipeline.code_hash
    monkeypatch.setattr(pipeline, "code_hash", lambda module: real(module) + "-edited")
    again = _build(tmp_path)
    run_steps(again, _steps())
    assert again.calls == ["a", "b", "c"]


def test_failure_keeps_the_full_error_and_scratch_is_cleaned(tmp_path):
    with pytest.raises(RuntimeError):
        run_steps(_build(tmp_path), _steps(fail_c=True))
    records = load_records(tmp_path)
    assert "Traceback" in records["c"].error and "c broke" in records["c"].error
    assert not (tmp_path / ".tmp" / "c").exists()


def test_stored_result_of_another_shape_reruns(tmp_path):
    run_steps(_build(tmp_path), _steps())
    data = json.loads((tmp_path / "steps.json").read_text())
    data["steps"]["a"]["metrics"] = {"old_key": 1}
    (tmp_path / "steps.json").write_text(json.dumps(data))
    again = _build(tmp_path)
    run_steps(again, _steps())
    assert again.calls == ["a", "b", "c"]


def test_a_steps_code_hash_covers_what_it_imports_and_nothing_else():
    from flows.codehash import closure, code_hash

    train = closure("flows.steps.train")
    assert {"flows.steps.train", "flows.train", "flows.context", "models.fire", "models.quant"} <= set(train)
    assert "flows.steps.csim" not in train and "flows.csim" not in train  # a csim change does not retrain
    assert "flows.csim" in closure("flows.steps.csim")
    assert code_hash("flows.steps.train") != code_hash("flows.steps.csim")


def test_the_real_steps_are_keyed_on_their_code(tmp_path):
    from flows.flow import STEP_LOOKUP

    keys = {name: pipeline.code_hash(step.run.__module__) for name, step in STEP_LOOKUP.items()}
    assert len(set(keys.values())) == len(keys)  # every step module has its own code hash
