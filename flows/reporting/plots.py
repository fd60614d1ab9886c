"""The report's pictures (`plots/*.png`): training curves, weights before/after pruning and sharing,
per-layer density, accuracy per stage, resource utilization. One helper saves every PNG atomically."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from flows.atomic import atomic_write_bytes  # noqa: E402
from flows.boards import RESOURCE_KINDS  # noqa: E402


def save_png(fig: Any, path: Path) -> str:
    """Render `fig` to `path` (atomically) and close it; returns the path."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())
    return str(path)


def plot_training(stages: list[tuple[str, list[dict]]], title: str, path: Path) -> bool:
    """Loss and training accuracy per epoch for every training stage, one PNG."""
    if not stages:
        return False
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.5))
    offset = 0
    for name, hist in stages:
        xs = [offset + h["epoch"] for h in hist]
        ax1.plot(xs, [h["loss"] for h in hist], marker=".", label=name)
        ax2.plot(xs, [h["train_acc"] for h in hist], marker=".", label=name)
        offset = xs[-1]
    ax1.set(xlabel="epoch", ylabel="training loss", yscale="log")
    ax2.set(xlabel="epoch", ylabel="training accuracy (augmented)")
    for ax in (ax1, ax2):
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(f"{title}: training")
    fig.tight_layout()
    save_png(fig, path)
    return True


def plot_weights(layer_name: str, stages: list[tuple[str, np.ndarray]], path: Path) -> str:
    """Histograms of one layer's weights at each compression stage (zeros left out after pruning)."""
    fig, axes = plt.subplots(1, len(stages), figsize=(4.2 * len(stages), 3.2), sharex=True)
    for ax, (label, w) in zip(np.atleast_1d(axes), stages):
        shown = w if label == "before pruning" else w[w != 0]
        ax.hist(shown, bins=200 if label != "after sharing" else 400, color="tab:blue")
        ax.set(title=f"{layer_name}: {label}", xlabel="weight value", ylabel="count")
        ax.grid(alpha=0.3)
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
    ax.set(ylabel="test accuracy (%)", title="accuracy per stage")
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
