"""The report's pictures (`plots/*.png`): training curves (every stage on one epoch axis, with the
validation accuracy), every layer's weights before/after pruning and sharing, per-layer density, test
accuracy per stage, resource utilization. One helper saves every PNG atomically."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.ticker import FuncFormatter  # noqa: E402

from flows.atomic import atomic_write_bytes  # noqa: E402
from flows.boards import RESOURCE_KINDS  # noqa: E402
from flows.metrics import metrics_rows  # noqa: E402


def save_png(fig: Any, path: Path) -> str:
    """Render `fig` to `path` (atomically) and close it; returns the path."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())
    return str(path)


def plot_training(stages: list[tuple[str, list[dict]]], title: str, path: Path) -> bool:
    """Loss and accuracy (training batches, and the validation split when there is one) per epoch of every
    training stage on one continuous epoch axis (flows/metrics.py's `global_epoch`; pruning rounds go on,
    they do not restart), stages shaded and named. One PNG."""
    rows = metrics_rows(stages)
    if not rows:
        return False
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 3.8))
    spans = []  # (stage, first global epoch, last)
    for row in rows:
        if spans and spans[-1][0] == row["stage"]:
            spans[-1][2] = row["global_epoch"]
        else:
            spans.append([row["stage"], row["global_epoch"], row["global_epoch"]])
    for i, (stage, first, last) in enumerate(spans):
        mine = [r for r in rows if first <= r["global_epoch"] <= last]
        xs = [r["global_epoch"] for r in mine]
        color = f"C{i % 10}"
        ax1.plot(xs, [r["loss"] for r in mine], marker=".", color=color, label=stage)
        ax2.plot(xs, [100 * r["train_accuracy"] for r in mine], marker=".", color=color)
        val = [(r["global_epoch"], 100 * r["val_accuracy"]) for r in mine if r["val_accuracy"] is not None]
        if val:
            ax2.plot(*zip(*val), marker="o", markersize=4, linestyle="--", color=color)
        for ax in (ax1, ax2):
            if i % 2:
                ax.axvspan(first - 0.5, last + 0.5, color="0.93", zorder=0)
    ax1.set(xlabel="epoch (all stages)", ylabel="training loss", yscale="log")
    plain = FuncFormatter(lambda v, _: f"{v:g}")
    ax1.yaxis.set_major_formatter(plain)
    ax1.yaxis.set_minor_formatter(plain)
    ax1.tick_params(axis="y", which="minor", labelsize=7)
    ax2.set(xlabel="epoch (all stages)", ylabel="accuracy (%)")
    ax1.legend(fontsize=7, title="stage", title_fontsize=7)
    has_val = any(r["val_accuracy"] is not None for r in rows)
    styles = [Line2D([], [], color="0.3", marker=".", label="training batches (augmented)")]
    if has_val:
        styles.append(Line2D([], [], color="0.3", marker="o", markersize=4, linestyle="--", label="validation split"))
    ax2.legend(handles=styles, fontsize=7)
    for ax in (ax1, ax2):
        ax.grid(alpha=0.3)
    fig.suptitle(f"{title}: training, every stage on one epoch axis")
    fig.tight_layout()
    save_png(fig, path)
    return True


def plot_weights(layer_name: str, stages: list[tuple[str, np.ndarray]], path: Path) -> str:
    """Histograms of one layer's weights at each compression stage (zeros left out after pruning)."""
    return plot_layer_weights([(layer_name, stages)], path)


def plot_layer_weights(layers: list[tuple[str, list[tuple[str, np.ndarray]]]], path: Path) -> str:
    """Every layer's weights at each compression stage, one row per layer: all weights before pruning,
    the surviving ones after it (with the fraction kept), and the shared values with their counts after
    weight sharing (with the number of distinct values), so pruning and sharing show in every layer."""
    n_cols = max(len(stages) for _, stages in layers)
    fig, axes = plt.subplots(
        len(layers), n_cols, figsize=(4.0 * n_cols, 2.3 * len(layers) + 0.4), squeeze=False, sharex="row"
    )
    for row, (layer_name, stages) in zip(axes, layers):
        total = max(len(w) for _, w in stages)
        for ax, (label, w) in zip(row, stages):
            if label == "before pruning":
                ax.hist(w, bins=120, color="tab:blue")
                text = f"{len(w):,} weights"
            elif label == "after sharing":
                values, counts = np.unique(w[w != 0], return_counts=True)
                ax.vlines(values, 0, counts, color="tab:purple")
                text = f"{len(values)} distinct values, {counts.sum():,} of {total:,} kept"
            else:
                kept = w[w != 0]
                ax.hist(kept, bins=120, color="tab:green")
                text = f"{len(kept):,} of {total:,} kept ({100 * len(kept) / max(total, 1):.1f}%)"
            ax.set_title(f"{layer_name}: {label}\n{text}", fontsize=8)
            ax.tick_params(labelsize=7)
            ax.grid(alpha=0.3)
        for ax in row[len(stages) :]:
            ax.set_visible(False)
    axes[-1][0].set_xlabel("weight value", fontsize=8)
    fig.tight_layout()
    return save_png(fig, path)


def plot_density(layers: list[dict], path: Path) -> str:
    fig, ax = plt.subplots(figsize=(max(4, 0.9 * len(layers) + 2), 3.2))
    ax.bar([lay["name"] for lay in layers], [100 * lay["density"] for lay in layers], color="tab:green")
    for i, lay in enumerate(layers):
        ax.text(i, 100 * lay["density"], f"{100 * lay['density']:.1f}%", ha="center", va="bottom", fontsize=8)
    ax.set(ylabel="weights kept (%)", title="per-layer density after pruning")
    ax.tick_params(axis="x", rotation=30)
    fig.tight_layout()
    return save_png(fig, path)


def plot_stage_accuracy(stages: list[dict], path: Path) -> str:
    fig, ax = plt.subplots(figsize=(7, 3.2))
    st = [s for s in stages if s["accuracy"] is not None]
    ax.plot([s["stage"] for s in st], [100 * s["accuracy"] for s in st], marker="o")
    for s in st:
        ax.annotate(
            f"{100 * s['accuracy']:.2f}%",
            (s["stage"], 100 * s["accuracy"]),
            textcoords="offset points",
            xytext=(0, 6),
            ha="center",
            fontsize=8,
        )
    ax.set(ylabel="test accuracy (%)", title="test accuracy per stage (the model each stage produced)")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return save_png(fig, path)


def plot_utilization(resources: dict, board_name: str, path: Path) -> str:
    kinds = [k for k in RESOURCE_KINDS if resources["budget"][k] > 0]
    util = [100 * resources["utilization"][k] for k in kinds]
    fig, ax = plt.subplots(figsize=(6, 3.2))
    ax.bar(kinds, util, color=["tab:red" if u > 100 else "tab:blue" for u in util])
    ax.axhline(100, color="black", linestyle="--", linewidth=1)
    for i, (k, u) in enumerate(zip(kinds, util)):
        ax.text(i, u, f"{resources[k]:,.0f}\n{u:.0f}%", ha="center", va="bottom", fontsize=8)
    ax.set(
        ylabel="% of budget",
        title=f"{board_name} utilization ({resources['source']})",
        ylim=(0, max(110, max(util) * 1.25)),
    )
    fig.tight_layout()
    return save_png(fig, path)
