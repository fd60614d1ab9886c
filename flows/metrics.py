"""Per-epoch training metrics users can follow: `metrics.csv` and TensorBoard, one x-axis across stages.

Every training stage (float training, structure fine-tuning, pruning retraining over all its rounds,
centroid fine-tuning, QAT) adds one row per epoch:

    stage, epoch, global_epoch, loss, train_accuracy, val_accuracy, lr, sparsity

`epoch` counts within the stage (pruning's rounds continue it), `global_epoch` across the whole build,
so the curves of consecutive stages join instead of restarting at 1. `train_accuracy` is measured on
the augmented training batches, `val_accuracy` on the validation split (empty when it is disabled),
`sparsity` is the fraction of zero conv/fc weights. The rows come from the steps' typed results
(their `history`), so a build that reuses cached stages still writes every row.

`EpochLog` is what a training step hands to `flows.train.train(on_epoch=...)`: after each epoch it
rewrites `metrics.csv` (atomically) and, with `--tensorboard`, adds the epoch to
`<build>/tensorboard` (torch's SummaryWriter; `pip install tensorboard`). `write_metrics` rewrites both
from all histories at the end of a build.
"""

from __future__ import annotations

import csv
import io
import logging
import shutil
from pathlib import Path

from flows.atomic import atomic_write_text
from flows.errors import UsageError

log = logging.getLogger(__name__)

METRICS_CSV = "metrics.csv"
TENSORBOARD_DIR = "tensorboard"
COLUMNS = ("stage", "epoch", "global_epoch", "loss", "train_accuracy", "val_accuracy", "lr", "sparsity")
TENSORBOARD_HINT = "pip install tensorboard (or pip install -e '.[tensorboard]')"

Histories = list[tuple[str, list[dict]]]  # (stage, per-epoch rows of flows.train.train)


def metrics_rows(stages: Histories) -> list[dict]:
    """The CSV rows of every stage's history, numbered on one continuous `global_epoch` axis."""
    rows, g = [], 0
    for stage, history in stages:
        for i, h in enumerate(history, 1):
            g += 1
            rows.append(
                {
                    "stage": stage,
                    "epoch": i,
                    "global_epoch": g,
                    "loss": h.get("loss"),
                    "train_accuracy": h.get("train_acc"),
                    "val_accuracy": h.get("val_acc"),
                    "lr": h.get("lr"),
                    "sparsity": h.get("sparsity"),
                }
            )
    return rows


def csv_text(rows: list[dict]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: "" if row[k] is None else row[k] for k in COLUMNS})
    return buf.getvalue()


def summary_writer_class():
    """torch's SummaryWriter; without the tensorboard package a one-line UsageError with the pip command."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise UsageError(f"--tensorboard needs the tensorboard package: {TENSORBOARD_HINT}") from None
    return SummaryWriter


def require_tensorboard(enabled: bool) -> None:
    """Fail before any training when `--tensorboard` is asked for and cannot work."""
    if enabled:
        summary_writer_class()


def add_row(writer, row: dict) -> None:
    step = row["global_epoch"]
    scalars = {
        "loss/train": row["loss"],
        "accuracy/train": row["train_accuracy"],
        "accuracy/validation": row["val_accuracy"],
        "lr": row["lr"],
        "sparsity": row["sparsity"],
    }
    for tag, value in scalars.items():
        if value is not None:
            writer.add_scalar(tag, value, step)
    if row["epoch"] == 1:
        writer.add_text("stage", f"{row['stage']} starts at epoch {step}", step)


def open_tensorboard(out: Path, rows: list[dict]):
    """A fresh `<out>/tensorboard` holding `rows`; returns the open writer."""
    logdir = Path(out) / TENSORBOARD_DIR
    shutil.rmtree(logdir, ignore_errors=True)
    writer = summary_writer_class()(log_dir=str(logdir))
    for row in rows:
        add_row(writer, row)
    writer.flush()
    return writer


def write_metrics(out: Path, stages: Histories, tensorboard: bool = False) -> list[dict]:
    """metrics.csv (and with `tensorboard` the event files) of a build from every stage's history."""
    rows = metrics_rows(stages)
    atomic_write_text(Path(out) / METRICS_CSV, csv_text(rows))
    if tensorboard:
        open_tensorboard(out, rows).close()
    return rows


class EpochLog:
    """The `on_epoch` callback of one training stage: rows of the stages before it plus its own epochs."""

    def __init__(self, out: Path, stage: str, earlier: Histories, tensorboard: bool = False):
        self.out, self.stage, self.earlier = Path(out), stage, list(earlier)
        self.history: list[dict] = []
        rows = metrics_rows(self.earlier)
        atomic_write_text(self.out / METRICS_CSV, csv_text(rows))
        self.writer = open_tensorboard(self.out, rows) if tensorboard else None

    def __call__(self, row: dict) -> None:
        self.history.append(row)
        rows = metrics_rows([*self.earlier, (self.stage, self.history)])
        atomic_write_text(self.out / METRICS_CSV, csv_text(rows))
        if self.writer is not None:
            add_row(self.writer, rows[-1])
            self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None

    def __enter__(self) -> EpochLog:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
