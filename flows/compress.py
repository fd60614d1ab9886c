"""Deep Compression inside the build: the prune, share and encode steps and their report section.

- `step_prune`: iterative magnitude pruning with retraining (flows/prune.py) -> `model/pruned.pt`.
- `step_share`: k-means weight sharing (2^b - 1 shared values plus the pruned zero per layer) and
  centroid fine-tuning (flows/share.py) -> `model/shared.pt`.
- `step_encode`: relative-index sparse storage + Huffman coding of the shared model
  (flows/encode.py) -> `model.bundle`, decoded again and compared bit for bit.
- `compression_section`: the per-stage and per-layer tables (total / pruned / active weights,
  thresholds, bits, bytes, compression rate, accuracy, loss) and the plots.

Weight sharing here is the paper's k-means on float weights, which defines the stored model. The
hardware model is the Brevitas QAT model fine-tuned from it at the same b bits per layer (uniform
power-of-two levels, so at most 2^b distinct values per layer, checked after export); the report
labels each figure with the model it belongs to.
"""

from __future__ import annotations

import io
import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch

from flows.pipeline import atomic_write_bytes
from flows.prune import magnitude_prune, prunable_layers
from flows.train import TrainRecipe, evaluate, set_threads, train

log = logging.getLogger(__name__)

PRUNED_CKPT = "model/pruned.pt"
SHARED_CKPT = "model/shared.pt"
BUNDLE_FILE = "model.bundle"


def masks_from_zeros(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Pruning masks as the zero pattern of the weights (pruned weights are exactly 0)."""
    masks = {}
    for name, module, _ in prunable_layers(model):
        w = module.weight.detach()
        if (w == 0).any():
            masks[f"{name}.weight"] = (w != 0).to(w.dtype)
    return masks


def compressed_source(build: Any) -> str:
    """The checkpoint QAT starts from: the last compression stage that ran, else the float model."""

    c = build.cfg.compress
    if c.enabled and c.share:
        return SHARED_CKPT
    if c.enabled and c.prune:
        return PRUNED_CKPT
    return build.base_checkpoint


def _bits(build: Any) -> dict[str, int]:
    return {"conv": build.cfg.compress.conv_bits, "fc": build.cfg.compress.fc_bits}


def step_prune(build: Any) -> dict:
    """Magnitude pruning (threshold = quality x std per layer), iterative, with retraining."""
    from flows.steps import save_checkpoint

    set_threads(build.cfg.train.threads)
    c, t = build.cfg.compress, build.cfg.train
    model = build.load_model(build.base_checkpoint, quantized=False)

    def retrain(m, masks, k):
        recipe = TrainRecipe(
            c.retrain_epochs,
            c.retrain_lr,
            t.batch_size,
            t.weight_decay,
            build.cfg.data.augment,
            build.cfg.seed + 10 + k,
            f"prune {k}/{c.iterations}",
        )
        return train(m, build.data.train, recipe, masks=masks)

    try:
        result = magnitude_prune(model, c.iterations, retrain, c.quality, c.density, c.default_quality)
    except ValueError as exc:
        from flows.errors import UsageError

        raise UsageError(f"compress: {exc}") from None
    ev = evaluate(model, build.data.test)
    save_checkpoint(model, build.path(PRUNED_CKPT))
    layers = [
        {
            "name": lp.name,
            "kind": lp.kind,
            "total": lp.total,
            "active": lp.active,
            "pruned": lp.pruned,
            "density": lp.density,
            "quality": lp.quality,
            "std": lp.std,
            "threshold": lp.threshold,
        }
        for lp in result.layers
    ]
    total = sum(lp.total for lp in result.layers)
    active = sum(lp.active for lp in result.layers)
    log.info(
        "pruned model: %d of %d weights kept (%.2f%%), test accuracy %.4f",
        active,
        total,
        100 * active / total,
        ev["accuracy"],
    )
    return {
        "accuracy": ev["accuracy"],
        "loss": ev["loss"],
        "layers": layers,
        "total": total,
        "active": active,
        "history": result.history,
    }


def step_share(build: Any) -> dict:
    """k-means weight sharing per layer and centroid fine-tuning (masks and assignments fixed)."""
    from flows.share import attach_sharing, bake_sharing, centroid_parameters
    from flows.steps import save_checkpoint

    set_threads(build.cfg.train.threads)
    c, t = build.cfg.compress, build.cfg.train
    source = PRUNED_CKPT if c.prune else build.base_checkpoint
    model = build.load_model(source, quantized=False)
    bits = _bits(build)
    log.info("weight sharing (k-means, linear initialisation):")
    attach_sharing(model, bits, seed=build.cfg.seed)
    before = evaluate(model, build.data.test)
    recipe = TrainRecipe(
        c.share_epochs, c.share_lr, t.batch_size, 0.0, build.cfg.data.augment, build.cfg.seed + 20, "share"
    )
    history = train(model, build.data.train, recipe, params=centroid_parameters(model))
    layers = bake_sharing(model, bits)
    ev = evaluate(model, build.data.test)
    save_checkpoint(model, build.path(SHARED_CKPT))
    log.info(
        "shared model: test accuracy %.4f before centroid fine-tuning, %.4f after", before["accuracy"], ev["accuracy"]
    )
    return {
        "accuracy": ev["accuracy"],
        "loss": ev["loss"],
        "accuracy_before_finetune": before["accuracy"],
        "layers": [vars(lay) for lay in layers],
        "history": history,
    }


def step_encode(build: Any) -> dict:
    """Write model.bundle (sparse relative indices + Huffman) and check that it decodes exactly."""
    from flows.encode import LayerPayload, read_bundle, write_bundle
    from flows.errors import VerificationError

    c = build.cfg.compress
    model = build.load_model(compressed_source(build), quantized=False)
    payloads = []
    for name, module, kind in prunable_layers(model):
        payloads.append(
            LayerPayload(
                name=name,
                weight=module.weight.detach().numpy().astype(np.float32),
                weight_bits=c.conv_bits if kind == "conv" else c.fc_bits,
                index_bits=c.conv_index_bits if kind == "conv" else c.fc_index_bits,
                bias=None if module.bias is None else module.bias.detach().numpy().astype(np.float32),
            )
        )
    sizes = write_bundle(build.path(BUNDLE_FILE), payloads)
    decoded = read_bundle(build.path(BUNDLE_FILE))
    for p in payloads:
        w, b = decoded[p.name]
        same_w = np.array_equal(w, p.weight + 0.0)  # + 0.0: -0.0 of a pruned weight is stored as 0
        same_b = (b is None and p.bias is None) or np.array_equal(b.view(np.uint32), p.bias.view(np.uint32))
        if not (same_w and same_b):
            raise VerificationError(f"model.bundle does not decode to the weights of layer {p.name}")
    totals = sizes.totals()
    layers = []
    for payload, ls in zip(payloads, sizes.layers):
        layers.append(
            {
                **{k: v for k, v in vars(ls).items()},
                "bytes_dense": ls.bytes_dense,
                "bytes_total_fixed": ls.bytes_total_fixed,
                "weight_bits": payload.weight_bits,
                "index_bits": payload.index_bits,
            }
        )
    log.info(
        "model.bundle: %d bytes (%.1fx smaller than float32 %d bytes); exact decode checked",
        sizes.bytes_total,
        totals["compression_ratio"],
        totals["dense_float32"],
    )
    return {"bytes": totals, "layers": layers}


# --------------------------------------------------------------------------------------------- report


def _pct(x: float | None) -> str:
    return "—" if x is None else f"{100 * x:.2f}%"


def _kb(x: float | None) -> str:
    return "—" if x is None else f"{x / 1024:.1f} KB"


def compression_section(build: Any) -> dict | None:
    """report.json's `compression` {ratio, bytes_float, bytes_compressed, stages, layers} + markdown."""
    m = build.metrics
    if not build.cfg.compress.enabled or "encode" not in m:
        return None
    # compression starts from the network it is given: the structured one when that step ran
    train_m = m.get("structure") or m.get("train", {})
    prune_m, share_m, enc = m.get("prune", {}), m.get("share", {}), m["encode"]
    qat_m, csim_m = m.get("qat", {}), m.get("csim", {})
    b = enc["bytes"]
    bytes_float = b["dense_float32"]
    total = sum(lay["total"] for lay in enc["layers"])
    active = sum(lay["nonzero"] for lay in enc["layers"])
    pruned_bytes = sum(
        (lay["stored_entries"] * 32 + lay["stored_entries"] * lay["index_bits"]) / 8 + lay["bytes_bias"]
        for lay in enc["layers"]
    )

    def stage(name, model, acc, loss, weights_active, nbytes, note=""):
        return {
            "stage": name,
            "model": model,
            "accuracy": acc,
            "error": None if acc is None else 1 - acc,
            "loss": loss,
            "total_weights": total,
            "active_weights": weights_active,
            "pruned_weights": total - weights_active,
            "pruned_fraction": 1 - weights_active / total,
            "bytes": nbytes,
            "compression_rate": None if not nbytes else bytes_float / nbytes,
            "note": note,
        }

    stages = [
        stage(
            "float",
            "float32",
            train_m.get("accuracy"),
            train_m.get("loss"),
            total,
            bytes_float,
            "dense float32 weights and biases" + (" of the channel-pruned network" if "structure" in m else ""),
        )
    ]
    if prune_m:
        stages.append(
            stage(
                "pruned",
                "float32, masked",
                prune_m.get("accuracy"),
                prune_m.get("loss"),
                prune_m.get("active", active),
                pruned_bytes,
                "sparse: float32 values + relative indices",
            )
        )
    if share_m:
        stages.append(
            stage(
                "shared",
                "k-means codebook",
                share_m.get("accuracy"),
                share_m.get("loss"),
                active,
                b["total_fixed"],
                "fixed-width codes and indices + codebooks",
            )
        )
    stages.append(
        stage(
            "huffman",
            "k-means codebook",
            (share_m or prune_m or train_m).get("accuracy"),
            (share_m or prune_m or train_m).get("loss"),
            active,
            b["total"],
            "model.bundle: Huffman-coded codes and indices (lossless)",
        )
    )
    if qat_m:
        stages.append(
            stage(
                "hardware QAT",
                "Brevitas, uniform b-bit",
                qat_m.get("accuracy"),
                qat_m.get("loss"),
                qat_m.get("active_weights", active),
                None,
                "the HLS project weights: b-bit constants, zero weights compiled out",
            )
        )
    if csim_m:
        stages.append(
            stage(
                "C simulation",
                "hls4ml g++",
                csim_m.get("accuracy_csim"),
                None,
                qat_m.get("active_weights", active),
                None,
                "bit-exact with the hardware QAT model",
            )
        )

    prune_layers = {lay["name"]: lay for lay in prune_m.get("layers", [])}
    share_layers = {lay["name"]: lay for lay in share_m.get("layers", [])}
    layers = []
    for lay in enc["layers"]:
        p = prune_layers.get(lay["name"], {})
        s = share_layers.get(lay["name"], {})
        layers.append(
            {
                "name": lay["name"],
                "total": lay["total"],
                "active": lay["nonzero"],
                "pruned": lay["total"] - lay["nonzero"],
                "density": lay["nonzero"] / lay["total"],
                "threshold": p.get("threshold"),
                "quality": p.get("quality"),
                "std": p.get("std"),
                "weight_bits": lay["weight_bits"],
                "index_bits": lay["index_bits"],
                "clusters": s.get("clusters"),
                "fillers": lay["fillers"],
                "weights_mode": lay["weights_mode"],
                "index_mode": lay["index_mode"],
                "bytes_float": lay["bytes_dense"],
                "bytes_pruned": (lay["stored_entries"] * (32 + lay["index_bits"])) / 8 + lay["bytes_bias"],
                "bytes_quantized": lay["bytes_total_fixed"],
                "bytes_huffman": lay["bytes_total"],
                "compression_rate": lay["bytes_dense"] / lay["bytes_total"],
            }
        )
    section = {
        "ratio": bytes_float / b["total"],
        "bytes_float": bytes_float,
        "bytes_compressed": b["total"],
        "bytes_breakdown": {
            k: b[k] for k in ("weights", "indices", "codebooks", "code_tables", "bias", "layer_metadata", "header")
        },
        "weight_sharing": "k-means per layer on float weights (2^b-1 centroids + zero), centroids fine-tuned; "
        "hardware: Brevitas QAT at the same b bits",
        "stages": stages,
        "layers": layers,
    }
    section["markdown"] = compression_markdown(section)
    return section


def compression_markdown(sec: dict) -> str:
    lines = [
        "## Compression (Deep Compression)",
        "",
        f"**{sec['ratio']:.1f}x**: {_kb(sec['bytes_float'])} float32 -> {_kb(sec['bytes_compressed'])} "
        f"(`model.bundle`). Weight sharing: {sec['weight_sharing']}.",
        "",
        "| stage | model | accuracy | error | loss | weights | active | pruned | bytes | rate |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for s in sec["stages"]:
        rate = "—" if s["compression_rate"] is None else f"{s['compression_rate']:.1f}x"
        loss = "—" if s["loss"] is None else f"{s['loss']:.4f}"
        lines.append(
            f"| {s['stage']} | {s['model']} | {_pct(s['accuracy'])} | {_pct(s['error'])} | {loss} | "
            f"{s['total_weights']:,} | {s['active_weights']:,} | {_pct(s['pruned_fraction'])} | "
            f"{_kb(s['bytes'])} | {rate} |"
        )
    lines += [
        "",
        "| layer | weights | active | pruned | threshold (q x std) | bits w/idx | clusters | float | "
        "pruned | quantized | Huffman | rate |",
        "|---|---:|---:|---:|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for lay in sec["layers"]:
        thr = "—" if lay["threshold"] is None else f"{lay['threshold']:.4f} ({lay['quality']:.2f} x {lay['std']:.4f})"
        lines.append(
            f"| {lay['name']} | {lay['total']:,} | {lay['active']:,} ({100 * lay['density']:.1f}%) | "
            f"{lay['pruned']:,} | {thr} | {lay['weight_bits']}/{lay['index_bits']} | "
            f"{lay['clusters'] if lay['clusters'] is not None else '—'} | {_kb(lay['bytes_float'])} | "
            f"{_kb(lay['bytes_pruned'])} | {_kb(lay['bytes_quantized'])} | {_kb(lay['bytes_huffman'])} | "
            f"{lay['compression_rate']:.1f}x |"
        )
    bd = sec["bytes_breakdown"]
    lines += ["", "Where the bytes of `model.bundle` go: " + ", ".join(f"{k} {v:,} B" for k, v in bd.items()) + "."]
    return "\n".join(lines)


def plot_compression(build: Any, plots_dir: Path) -> list[str]:
    """Weight histograms (before/after pruning, after sharing), per-layer density, accuracy per stage."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sec = compression_section(build)
    if sec is None:
        return []
    written = []
    stages = [("before pruning", build.base_checkpoint), ("after pruning", PRUNED_CKPT), ("after sharing", SHARED_CKPT)]
    stages = [(label, ck) for label, ck in stages if build.path(ck).exists()]
    layer_name = max(sec["layers"], key=lambda lay: lay["total"])["name"]
    fig, axes = plt.subplots(1, len(stages), figsize=(4.2 * len(stages), 3.2), sharex=True)
    for ax, (label, ck) in zip(np.atleast_1d(axes), stages):
        state = torch.load(build.path(ck), map_location="cpu", weights_only=True)
        w = state[f"{layer_name}.weight"].flatten().numpy()
        shown = w if label == "before pruning" else w[w != 0]
        ax.hist(shown, bins=200 if label != "after sharing" else 400, color="tab:blue")
        ax.set(title=f"{layer_name}: {label}", xlabel="weight value", ylabel="count")
        ax.grid(alpha=0.3)
    fig.tight_layout()
    written.append(_save(fig, plots_dir / "weights.png"))
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(max(4, 0.9 * len(sec["layers"]) + 2), 3.2))
    names = [lay["name"] for lay in sec["layers"]]
    ax.bar(names, [100 * lay["density"] for lay in sec["layers"]], color="tab:green")
    for i, lay in enumerate(sec["layers"]):
        ax.text(i, 100 * lay["density"], f"{100 * lay['density']:.1f}%", ha="center", va="bottom", fontsize=8)
    ax.set(ylabel="weights kept (%)", title="per-layer density after pruning")
    ax.tick_params(axis="x", rotation=30)
    fig.tight_layout()
    written.append(_save(fig, plots_dir / "sparsity.png"))
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(7, 3.2))
    st = [s for s in sec["stages"] if s["accuracy"] is not None]
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
    written.append(_save(fig, plots_dir / "accuracy_stages.png"))
    plt.close(fig)
    return [f"plots/{Path(p).name}" for p in written]


def _save(fig: Any, path: Path) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    atomic_write_bytes(path, buf.getvalue())
    return str(path)
