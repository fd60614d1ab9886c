"""Deep Compression, reproduced inside the build, side by side with the paper (Han et al., ICLR 2016).

Runs `lenet300_100` and `lenet5` with their default recipes (prune -> share -> Huffman, then the
hardware QAT model) on MNIST and writes bench/results/deep_compression.{json,md}: compression ratio,
top-1 error of the compressed (k-means shared) model, where the bytes go, and the paper's figures.

    python bench/deep_compression.py                 # full MNIST from ../shared/data (about 45 min on 2 cores)
    python bench/deep_compression.py --quick         # digits, few epochs: checks the script only
"""

from __future__ import annotations

import logging

from _common import base_parser, table, write_results

# Tables 1-3 of the paper: float size, compressed size, ratio, top-1 error, weights kept by pruning
PAPER = {
    "lenet300_100": {
        "bytes_float": 1070e3,
        "bytes_compressed": 27e3,
        "ratio": 40,
        "error": 0.0158,
        "density": {"ip1": 0.08, "ip2": 0.09, "ip3": 0.26},
        "bits": "6 (fc)",
    },
    "lenet5": {
        "bytes_float": 1720e3,
        "bytes_compressed": 44e3,
        "ratio": 39,
        "error": 0.0074,
        "density": {"conv1": 0.66, "conv2": 0.12, "ip1": 0.08, "ip2": 0.19},
        "bits": "8 (conv) / 5 (fc)",
    },
}
QUICK = {
    "data.dataset": "digits",
    "train.epochs": 4,
    "train.qat_epochs": 1,
    "train.lr": 0.005,
    "compress.iterations": 2,
    "compress.retrain_epochs": 1,
    "compress.share_epochs": 1,
}


def run(model: str, args) -> dict:
    from flows.api import run_build

    overrides = {"out_dir": f"{args.out}/dc-{model}", "hls.require_fit": False}
    if args.quick:
        overrides.update(QUICK)
    elif args.data_dir:
        overrides["data.data_dir"] = args.data_dir
    metrics = run_build(model, "pynq-z2", overrides, until="qat")
    enc, share, qat = metrics["encode"], metrics.get("share", {}), metrics["qat"]
    prune = metrics.get("prune", {})
    total = sum(layer["total"] for layer in enc["layers"])
    active = sum(layer["nonzero"] for layer in enc["layers"])
    b = enc["bytes"]
    return {
        "model": model,
        "dataset": metrics["train"]["dataset"],
        "bytes_float": b["dense_float32"],
        "bytes_compressed": b["total"],
        "bytes_fixed_width": b["total_fixed"],
        "ratio": b["dense_float32"] / b["total"],
        "error_float": 1 - metrics["train"]["accuracy"],
        "error_compressed": 1 - share.get("accuracy", prune.get("accuracy", 0.0)),
        "error_hardware_qat": 1 - qat["accuracy"],
        "weights_kept": active / total,
        "density": {layer["name"]: layer["density"] for layer in prune.get("layers", [])},
        "bytes_breakdown": {
            k: b[k] for k in ("weights", "indices", "codebooks", "code_tables", "bias", "layer_metadata", "header")
        },
    }


def main() -> None:
    args = base_parser(__doc__).parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    from flows.api import quiet_libraries

    quiet_libraries()
    results = [run(m, args) for m in ("lenet300_100", "lenet5")]
    rows = []
    for r in results:
        p = PAPER[r["model"]]
        rows.append(
            [
                r["model"],
                "paper",
                f"{p['bytes_float'] / 1e3:.0f} KB",
                f"{p['bytes_compressed'] / 1e3:.0f} KB",
                f"{p['ratio']}x",
                f"{100 * p['error']:.2f}%",
                "—",
                ", ".join(f"{k} {100 * v:.0f}%" for k, v in p["density"].items()),
            ]
        )
        rows.append(
            [
                r["model"],
                "fireflow",
                f"{r['bytes_float'] / 1e3:.0f} KB",
                f"{r['bytes_compressed'] / 1e3:.1f} KB",
                f"{r['ratio']:.1f}x",
                f"{100 * r['error_compressed']:.2f}%",
                f"{100 * r['error_hardware_qat']:.2f}%",
                ", ".join(f"{k} {100 * v:.1f}%" for k, v in r["density"].items()),
            ]
        )
    md = "# Deep Compression: fireflow vs the paper\n\n"
    md += (
        "Compressed = `model.bundle` (sparse relative indices + Huffman coding, codebooks, header, float32 "
        "biases) against float32 weights and biases of the same network. Error = top-1 on the test set of "
        f"the k-means-shared model; hardware QAT = the Brevitas model the HLS project implements. "
        f"Data: {results[0]['dataset']}{' (QUICK RUN: not a claim)' if args.quick else ''}.\n\n"
    )
    md += table(
        ["model", "source", "float", "compressed", "ratio", "error", "error (hardware QAT)", "weights kept per layer"],
        rows,
    )
    md += "\n\nWhere the bytes go (fireflow):\n\n"
    md += table(
        ["model", *results[0]["bytes_breakdown"].keys()],
        [[r["model"], *[f"{v:,}" for v in r["bytes_breakdown"].values()]] for r in results],
    )
    js, mdp = write_results("deep_compression", {"quick": args.quick, "paper": PAPER, "results": results}, md)
    print(f"wrote {js} and {mdp}")


if __name__ == "__main__":
    main()
