"""Curves users can follow (issue 15 item 3): per-epoch validation accuracy in every training stage,
metrics.csv on one continuous epoch axis, --tensorboard, the training/weights plots, and tables that name
the model they measured."""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import numpy as np
import pytest

from flows.api import run_build
from flows.errors import UsageError
from flows.metrics import COLUMNS, METRICS_CSV, TENSORBOARD_DIR, metrics_rows
from flows.reporting.compression import compression_section
from flows.reporting.plots import plot_layer_weights, plot_training
from flows.results import RESULT_TYPES, Results

# lenet300_100 with every training stage that needs no channel groups: train, prune (2 rounds), share, qat
STAGES = {
    "data.dataset": "digits",
    "data.download": False,
    "data.max_train": 400,
    "data.val_size": 40,
    "train.epochs": 2,
    "train.qat_epochs": 1,
    "train.lr": 0.005,
    "compress.enabled": True,
    "compress.iterations": 2,
    "compress.retrain_epochs": 1,
    "compress.share_epochs": 1,
    "compress.density": {"ip1": 0.2, "ip2": 0.3, "ip3": 0.6},
}


def read_csv(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_rows_continue_across_stages_and_pruning_rounds():
    """Pruning's rounds each restart their epoch count at 1: on the global axis they must not."""
    h = lambda e, **kw: {"epoch": e, "loss": 1.0, "train_acc": 0.5, "lr": 0.1, **kw}  # noqa: E731
    stages = [
        ("train", [h(1), h(2)]),
        ("prune", [h(1, round=1), h(1, round=2), h(1, round=3)]),
        ("qat", [h(1, val_acc=0.9, sparsity=0.7)]),
    ]
    rows = metrics_rows(stages)
    assert [r["global_epoch"] for r in rows] == [1, 2, 3, 4, 5, 6]
    assert [(r["stage"], r["epoch"]) for r in rows] == [
        ("train", 1),
        ("train", 2),
        ("prune", 1),
        ("prune", 2),
        ("prune", 3),
        ("qat", 1),
    ]
    assert rows[-1]["val_accuracy"] == 0.9 and rows[0]["val_accuracy"] is None and rows[-1]["sparsity"] == 0.7


@pytest.fixture(scope="module")
def staged_build(tmp_path_factory):
    out = tmp_path_factory.mktemp("stages")
    results = run_build("lenet300_100", "pynq-z2", {**STAGES, "out_dir": str(out)}, until="qat")
    return out, results


def test_metrics_csv_has_a_row_per_epoch_of_every_stage(staged_build):
    out, results = staged_build
    rows = read_csv(out / METRICS_CSV)
    assert tuple(rows[0]) == COLUMNS
    assert [(r["stage"], r["epoch"]) for r in rows] == [
        ("train", "1"),
        ("train", "2"),
        ("prune", "1"),
        ("prune", "2"),
        ("share", "1"),
        ("qat", "1"),
    ]
    assert [int(r["global_epoch"]) for r in rows] == list(range(1, 7))
    assert all(0 <= float(r["val_accuracy"]) <= 1 for r in rows)  # held-out accuracy in every stage
    sparsity = [float(r["sparsity"]) for r in rows]
    assert sparsity[0] == 0 and sparsity[2] < sparsity[3]  # pruning's two rounds
    assert sparsity[3] == pytest.approx(sparsity[5], abs=1e-9)  # later stages keep pruned weights at zero
    # the rows are the steps' own histories: the CSV's last validation accuracy is QAT's last epoch
    assert float(rows[-1]["val_accuracy"]) == pytest.approx(results["qat"]["history"][-1]["val_acc"])
    for stage in ("train", "prune", "share", "qat"):
        assert 0 <= results[stage]["val_accuracy"] <= 1


def test_metrics_csv_is_rewritten_when_every_stage_is_reused(staged_build, tmp_path):
    out, _ = staged_build
    before = (out / METRICS_CSV).read_text()
    (out / METRICS_CSV).unlink()
    run_build("lenet300_100", "pynq-z2", {**STAGES, "out_dir": str(out)}, until="qat")
    steps = json.loads((out / "steps.json").read_text())["steps"]
    assert all(steps[s]["skipped"] for s in ("train", "prune", "share", "qat"))
    assert (out / METRICS_CSV).read_text() == before


def test_training_plot_from_the_build(staged_build, tmp_path):
    out, results = staged_build
    histories = Results(**{k: RESULT_TYPES[k].from_dict(v) for k, v in results.items()}).histories()
    assert plot_training(histories, "lenet300_100", tmp_path / "training.png")
    assert (tmp_path / "training.png").stat().st_size > 5000


def test_weights_plot_has_a_row_per_layer(tmp_path):
    rng = np.random.default_rng(0)
    w = rng.normal(size=200)
    pruned = np.where(np.abs(w) > 0.5, w, 0)
    shared = np.where(pruned != 0, np.round(pruned * 4) / 4, 0)
    stages = [("before pruning", w), ("after pruning", pruned), ("after sharing", shared)]
    from PIL import Image

    one = plot_layer_weights([("a", stages)], tmp_path / "one.png")
    two = plot_layer_weights([("a", stages), ("b", stages)], tmp_path / "two.png")
    assert Image.open(two).height > 1.5 * Image.open(one).height


def test_tensorboard_without_the_package_is_a_usage_error_before_anything_is_written(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # as if tensorboard were not installed
    out = tmp_path / "b"
    with pytest.raises(UsageError, match="pip install tensorboard"):
        run_build("lenet300_100", "pynq-z2", {**STAGES, "out_dir": str(out), "tensorboard": True})
    assert not out.exists()


def test_tensorboard_events_on_one_axis(tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out = tmp_path / "b"
    run_build("lenet300_100", "pynq-z2", {**STAGES, "out_dir": str(out), "tensorboard": True}, until="qat")
    acc = EventAccumulator(str(out / TENSORBOARD_DIR))
    acc.Reload()
    steps = [e.step for e in acc.Scalars("accuracy/validation")]
    assert steps == list(range(1, 7))
    assert [e.value for e in acc.Scalars("loss/train")] == pytest.approx(
        [float(r["loss"]) for r in read_csv(out / METRICS_CSV)]
    )


def _encode_result() -> dict:
    layer = {
        "name": "ip1",
        "total": 100,
        "nonzero": 20,
        "stored_entries": 22,
        "index_bits": 4,
        "bytes_bias": 40,
        "weight_bits": 4,
        "fillers": 2,
        "weights_mode": "huffman",
        "index_mode": "huffman",
        "bytes_dense": 440,
        "bytes_total_fixed": 60,
        "bytes_total": 50,
    }
    keys = ("weights", "indices", "codebooks", "code_tables", "bias", "layer_metadata", "header")
    sizes = {"dense_float32": 440, "total_fixed": 60, "total": 50, **dict.fromkeys(keys, 1)}
    return {"bytes": sizes, "layers": [layer]}


def _results(structured: bool) -> Results:
    data = {
        "train": {"accuracy": 0.99, "loss": 0.1, "params": 200, "bytes_float": 800, "dataset": "d",
                  "train_samples": 9, "test_samples": 3},
        "encode": _encode_result(),
    }  # fmt: skip
    if structured:
        data["structure"] = {"arch": {}, "accuracy": 0.97, "loss": 0.2, "structure": {}}
    return Results(**{k: RESULT_TYPES[k].from_dict(v) for k, v in data.items()})


def test_compression_table_names_the_channel_pruned_network():
    plain = compression_section(_results(structured=False))
    assert (plain["stages"][0]["stage"], plain["stages"][0]["model"]) == ("float", "float32")
    assert plain["stages"][0]["accuracy"] == 0.99
    structured = compression_section(_results(structured=True))
    first = structured["stages"][0]
    assert first["stage"] == "channel-pruned" and "channel-pruned" in first["model"]
    assert first["accuracy"] == 0.97 and "99.00%" in first["note"]  # and it names the float32 model before it
    assert "| channel-pruned | float32, channel-pruned" in structured["markdown"]
    assert "\n| float |" not in structured["markdown"] and "\n| float |" in plain["markdown"]
