"""The Deep Compression section of the report: per-stage and per-layer tables (total / pruned /
active weights, thresholds, bits, bytes, compression rate, accuracy, loss) from the typed results of
the train/structure, prune, share, encode, qat and csim steps.

Weight sharing here is the paper's k-means on float weights, which defines the stored model. The
hardware model is the Brevitas QAT model fine-tuned from it at the same b bits per layer (uniform
power-of-two levels, so at most 2^b distinct values per layer, checked after QAT); the tables label
each figure with the model it belongs to.
"""

from __future__ import annotations

from flows.results import Results


def _pct(x: float | None) -> str:
    return "—" if x is None else f"{100 * x:.2f}%"


def _kb(x: float | None) -> str:
    return "—" if x is None else f"{x / 1024:.1f} KB"


def compression_section(results: Results) -> dict | None:
    """report.json's `compression` {ratio, bytes_float, bytes_compressed, stages, layers} + markdown."""
    if results.encode is None:
        return None
    # compression starts from the network it is given: the structured one when that step ran
    m = results.to_dict()
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

    base = share_m or prune_m or train_m  # the Huffman stage stores the last float model losslessly
    structured = "structure" in m
    # the network compression starts from: the float32 model of `train`, or the narrower one `structure` made of it
    first = ("channel-pruned", "float32, channel-pruned (structure step)") if structured else ("float", "float32")
    base_model = "k-means codebook" if share_m else "float32, masked" if prune_m else first[1]
    rows = [
        # (shown when, stage, model, accuracy, loss, active weights, bytes, note)
        (True, *first, train_m.get("accuracy"), train_m.get("loss"), total, bytes_float,
         "dense float32 weights and biases" + (
             f" of the channel-pruned network (before it, the float32 model: {_pct(m['train'].get('accuracy'))})"
             if structured else "")),
        (bool(prune_m), "pruned", "float32, masked", prune_m.get("accuracy"), prune_m.get("loss"),
         prune_m.get("active", active), pruned_bytes, "sparse: float32 values + relative indices"),
        (bool(share_m), "shared", "k-means codebook", share_m.get("accuracy"), share_m.get("loss"), active,
         b["total_fixed"], "fixed-width codes and indices + codebooks"),
        (True, "huffman", base_model, base.get("accuracy"), base.get("loss"), active, b["total"],
         "model.bundle: Huffman-coded codes and indices (lossless: the accuracy of the stage it stores)"),
        (bool(qat_m), "hardware QAT", "Brevitas, uniform b-bit", qat_m.get("accuracy"), qat_m.get("loss"),
         qat_m.get("active_weights", active), None,
         "the HLS project weights: b-bit constants, zero weights compiled out"),
        (bool(csim_m), "C simulation", "hls4ml g++", csim_m.get("accuracy_csim"), None,
         qat_m.get("active_weights", active), None, "bit-exact with the hardware QAT model"),
    ]  # fmt: skip
    stages = [stage(*row[1:]) for row in rows if row[0]]

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
        f"**{sec['ratio']:.1f}x**: {_kb(sec['bytes_float'])} float32"
        f"{' (the channel-pruned network)' if sec['stages'][0]['stage'] == 'channel-pruned' else ''} -> "
        f"{_kb(sec['bytes_compressed'])} "
        f"(`model.bundle`). Weight sharing: {sec['weight_sharing']}.",
        "",
        "Each row is the model that stage produced, measured on the test set; `rate` is relative to the dense "
        "float32 weights of the first row's network.",
        "",
        "| stage | model | test accuracy | error | loss | weights | active | pruned | bytes | rate | what is stored |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for s in sec["stages"]:
        rate = "—" if s["compression_rate"] is None else f"{s['compression_rate']:.1f}x"
        loss = "—" if s["loss"] is None else f"{s['loss']:.4f}"
        lines.append(
            f"| {s['stage']} | {s['model']} | {_pct(s['accuracy'])} | {_pct(s['error'])} | {loss} | "
            f"{s['total_weights']:,} | {s['active_weights']:,} | {_pct(s['pruned_fraction'])} | "
            f"{_kb(s['bytes'])} | {rate} | {s['note']} |"
        )
    lines += [
        "",
        "| layer | weights | active | pruned | threshold (q x std) | bits w/idx | clusters | bytes float32 | "
        "bytes pruned | bytes quantized | bytes Huffman | rate |",
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
