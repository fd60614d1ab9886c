"""Design sweeps on Ray (issue 14, item 3): grid parsing, the shared step cache, a failing trial, resume,
the table, the Pareto plot and the best design's config.

The default-run test runs a tiny sweep on scikit-learn digits through a local Ray instance, stopped
after QAT (no hls4ml compile) to stay fast; the full sweep of >= 8 lenet5_fire configurations through
the C simulation is `-m slow`.
"""

from __future__ import annotations

import json

import pytest

from flows.api import run_build
from flows.configfile import read_config_file
from flows.errors import UsageError
from flows.sweeps import parse_grid, plan_sweep, run_sweep
from flows.sweeps.grid import expand_grid, prefix_group, split_values, train_group
from flows.sweeps.outputs import choose_best, pareto_ids, write_outputs
from flows.sweeps.runner import start_ray
from flows.sweeps.state import STATE_FILE, TRIALS_DIR, load_state

ray = pytest.importorskip("ray")

TINY = {
    "data.dataset": "digits",
    "data.max_train": 600,
    "train.epochs": 1,
    "train.qat_epochs": 1,
    "train.lr": 0.005,
    "csim.samples": 40,
    "csim.tb_samples": 5,
    "structure.enabled": False,
    "compress.enabled": False,
}


def test_grid_values_split_outside_brackets():
    assert split_values('4,[48,48],{"a": 1, "b": 2},x') == ["4", "[48,48]", '{"a": 1, "b": 2}', "x"]
    grid = parse_grid(["quant.weight_bits=4,5", "arch.expand=[48,48],[24,24]", "hls.objective=area,latency"])
    assert grid == {
        "quant.weight_bits": [4, 5],
        "arch.expand": [[48, 48], [24, 24]],
        "hls.objective": ["area", "latency"],
    }
    assert len(expand_grid(grid)) == 8
    for bad in (["quant.weight_bits"], ["=4"], ["a=1,,2"], ["a=1", "a=2"]):
        with pytest.raises(UsageError):
            parse_grid(bad)


def test_groups_separate_training_from_hardware_keys():
    a = {"quant.weight_bits": 4, "hls.objective": "area"}
    b = {"quant.weight_bits": 4, "hls.objective": "latency"}
    c = {"quant.weight_bits": 5, "hls.objective": "area"}
    d = {"train.epochs": 2, "hls.objective": "area"}
    assert prefix_group(a) == prefix_group(b) != prefix_group(c)
    assert train_group(a) == train_group(c) != train_group(d)


def test_step_cache_shares_steps_between_build_folders(tmp_path):
    """A second build folder restores a cached step instead of running it; a folder-bound step always runs;
    a damaged cache entry is ignored (the step runs)."""
    from test_pipeline import FakeBuild, FakeConfig, Value, _writer

    from flows.pipeline import Step, run_steps
    from flows.stepcache import entry_dir

    cache = tmp_path / "cache"
    steps = [
        Step("a", _writer("a", "x"), Value, ("x",), ("a.txt",)),
        Step("b", _writer("b", "y"), Value, ("y",), ("b.txt",), shared=False),
    ]
    first = FakeBuild(tmp_path / "one", FakeConfig({"x": 1, "y": 1}))
    first.out.mkdir()
    run_steps(first, steps, cache=str(cache))
    second = FakeBuild(tmp_path / "two", FakeConfig({"x": 1, "y": 2}))
    second.out.mkdir()
    records = run_steps(second, steps, cache=str(cache))
    assert second.calls == ["b"] and records["a"].cached and not records["b"].cached
    assert (second.out / "a.txt").read_text() == "a:1" and second.results["a"] == Value(1)
    entries = [d for d in cache.glob("*/*") if d.is_dir()]
    assert len(entries) == 1  # the folder-bound step is never stored
    (entries[0] / "outputs" / "a.txt").write_text("tampered")
    third = FakeBuild(tmp_path / "three", FakeConfig({"x": 1, "y": 1}))
    third.out.mkdir()
    records = run_steps(third, steps, cache=str(cache))
    assert third.calls == ["a", "b"] and not records["a"].cached
    assert (third.out / "a.txt").read_text() == "a:1"
    assert (entry_dir(cache, records["a"].input_hash) / "outputs" / "a.txt").read_text() == "a:1"  # replaced


def _row(i, acc, lut, ips, fits=True, status="done", drop=0.1):
    return {"id": f"t{i:03d}-x", "status": status, "accuracy": acc, "LUT": lut, "images_per_second": ips,
            "fits": fits, "drop_pp": drop}


def test_best_design_and_pareto_front():
    table = [
        _row(0, 0.95, 30000, 5000),
        _row(1, 0.97, 40000, 5000),
        _row(2, 0.94, 35000, 4000),  # dominated by 0
        _row(3, 0.99, 20000, 9000, fits=False),  # best everywhere but does not fit
        _row(4, 0.93, 25000, 6000, drop=2.0),
        _row(5, None, None, None, status="failed"),
    ]
    assert pareto_ids(table) == {"t003-x"}
    assert choose_best(table, "lut", None)["id"] == "t004-x"
    assert choose_best(table, "lut", 1.0)["id"] == "t000-x"  # t004 misses the budget
    assert choose_best(table, "accuracy", None)["id"] == "t001-x"
    assert choose_best(table, "images_per_second", 1.0)["id"] in ("t000-x", "t001-x")
    assert choose_best([r for r in table if r["fits"] is False], "lut", None) is None


def test_write_outputs_draws_the_pareto_plot(tmp_path):
    state = plan_sweep("lenet5_fire", "pynq-z2", {"hls.objective": ["area", "latency"]}, {})
    for t, lut in zip(state.trials, (30000.0, 50000.0)):
        t.status = "done"
        t.metrics = {"accuracy_float": 0.95, "accuracy_csim": 0.94, "LUT": lut, "images_per_second": 4000.0,
                     "fits": lut < 53200}
        folder = tmp_path / TRIALS_DIR / t.id
        folder.mkdir(parents=True)
        cfg = {"model": "lenet5_fire", "out_dir": str(folder), "step_cache": "/x", "hls": {"objective": "area"}}
        (folder / "config.json").write_text(json.dumps(cfg))
    table, best = write_outputs(state, tmp_path, "lut", 2.0)
    assert best["id"] == state.trials[0].id
    assert (tmp_path / "pareto.png").stat().st_size > 5000
    cfg = read_config_file(tmp_path / "best_config.yaml")
    assert "out_dir" not in cfg and "step_cache" not in cfg and cfg["hls"]["objective"] == "area"
    assert "**best**" in (tmp_path / "table.md").read_text()


@pytest.fixture
def local_ray():
    """One local Ray instance (one CPU: one worker imports the flow once) for both runs of a test."""
    start_ray(num_cpus=1)
    yield
    ray.shutdown()


def test_tiny_sweep_on_ray_shares_training_and_survives_a_failing_trial(tmp_path, local_ray):
    """6 trials: weight bits 4, 5 and an invalid 1, each with two hls objectives; stopped after QAT."""
    out = tmp_path / "sweep"
    grid = parse_grid(["quant.weight_bits=4,5,1", "hls.objective=area,latency"])
    summary = run_sweep(run_build, "lenet5_fire", "pynq-z2", grid, TINY, out, until="qat")
    rows = {tuple(r["overrides"].values()): r for r in summary["trials"]}
    assert len(rows) == 6
    failed = [r for r in rows.values() if r["status"] == "failed"]
    assert sorted(r["overrides"]["quant.weight_bits"] for r in failed) == [1, 1]
    assert all(r["exit_code"] == 2 and "weight_bits" in r["error"] for r in failed)
    done = [r for r in rows.values() if r["status"] == "done"]
    assert len(done) == 4 and all(r["accuracy"] is not None for r in done)
    # float training ran once for the four good trials; every other trial restored it from the step cache
    trained = [r for r in done if "train" not in r["cached_steps"]]
    assert len(trained) == 1
    # trials that differ only in an hls key restored QAT too (the same quantized network)
    for bits in (4, 5):
        area, latency = rows[(bits, "area")], rows[(bits, "latency")]
        assert "qat" in area["cached_steps"] or "qat" in latency["cached_steps"]
        assert area["accuracy"] == latency["accuracy"]
    assert summary["cache_hits"] == sum(len(r["cached_steps"]) for r in done) >= 5
    for name in ("table.json", "table.md", STATE_FILE):
        assert (out / name).exists()
    assert f"steps restored from the step cache: {summary['cache_hits']}." in (out / "table.md").read_text()

    # a killed sweep resumes: a trial left unfinished runs again (from the cache), the others are kept
    state = load_state(out)
    victim = next(t for t in state.trials if t.status == "done" and t.overrides["hls.objective"] == "latency")
    victim.status, victim.metrics = "pending", {}
    state.save(out)
    again = run_sweep(run_build, "lenet5_fire", "pynq-z2", grid, TINY, out, until="qat")
    row = next(r for r in again["trials"] if r["id"] == victim.id)
    assert row["status"] == "done" and row["accuracy"] == rows[tuple(victim.overrides.values())]["accuracy"]
    steps = json.loads((out / TRIALS_DIR / victim.id / "steps.json").read_text())["steps"]
    assert set(steps) == {"train", "qat"}


def test_sweep_cli_rejects_bad_input(tmp_path, capsys):
    from flows.sweep import main

    assert main(["lenet5_fire", "--out", str(tmp_path)]) == 2
    assert "no --grid" in capsys.readouterr().err
    assert main(["nope", "--grid", "hls.objective=area", "--out", str(tmp_path)]) == 2
    assert main(["lenet5_fire", "--grid", "out_dir=a,b", "--out", str(tmp_path)]) == 2
    assert "sets it per trial" in capsys.readouterr().err
    args = ["lenet5_fire", "--grid", "hls.objective=area", "--set", "train.epochs=-1", "--out", str(tmp_path)]
    assert main(args) == 2



@pytest.mark.slow
def test_sweep_of_lenet5_fire_on_digits_through_the_c_simulation(tmp_path):
    """12 trials of the lenet5_fire recipe (structure, prune, share, encode, qat) at digits size: 3 weight
    widths x 2 hls objectives x 2 throughput targets, of which the 3 with objective=latency and a target
    are invalid (a trial that fails); through the C simulation, table, Pareto plot and best config."""
    out = tmp_path / "sweep"
    fixed = {
        "data.dataset": "digits",
        "train.epochs": 4,
        "train.qat_epochs": 2,
        "train.lr": 0.005,
        "structure.epochs": 1,
        "compress.iterations": 1,
        "compress.retrain_epochs": 1,
        "compress.share_epochs": 1,
        "csim.samples": 200,
        "csim.tb_samples": 5,
        # other features' slow checks (each has its own tests): yosys/verilator per DA layer, the dataflow run
        "hls.rtl": "off",
        "hls.da": "off",
        "dataflow.enabled": False,
    }
    grid = parse_grid(
        ["quant.weight_bits=3,4,5", "hls.objective=area,latency", "hls.target_images_per_second=null,2000"]
    )
    summary = run_sweep(run_build, "lenet5_fire", "pynq-z2", grid, fixed, out, budget=5.0)
    print((out / "table.md").read_text())
    trials = summary["trials"]
    assert len(trials) == 12
    failed = [r for r in trials if r["status"] == "failed"]
    assert len(failed) == 3 and all(r["overrides"]["hls.objective"] == "latency" for r in failed)
    done = [r for r in trials if r["status"] == "done"]
    assert len(done) == 9 and all(r["LUT"] and r["images_per_second"] and r["accuracy"] is not None for r in done)
    # float training, structured pruning, pruning, sharing and encoding ran once; QAT and export once per width
    first_steps = ("train", "structure", "prune", "share", "encode")
    assert sum(1 for r in done if not set(first_steps) <= set(r["cached_steps"])) == 1
    for bits in (3, 4, 5):
        same = [r for r in done if r["overrides"]["quant.weight_bits"] == bits]
        assert sum("qat" not in r["cached_steps"] for r in same) == 1
    assert summary["cache_hits"] >= 5 * 8 + 2 * 6
    assert (out / "pareto.png").stat().st_size > 5000
    if summary["best"]:
        assert (out / "best_config.yaml").exists()
