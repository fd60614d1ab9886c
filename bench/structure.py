"""Structured pruning, measured: MACs, parameters, accuracy and C-simulation parity, before and after.

For each model, two builds from the same float training (the second reuses the first's `train` step
through the step cache): without structured pruning, and with it (`structure.enabled`, ratio 0.3 by
default). Writes bench/results/structure.{json,md}.

    python bench/structure.py                              # lenet5_fire on full MNIST (../shared/data)
    python bench/structure.py --models lenet5_fire lenet5 --csim-samples 2000
    python bench/structure.py --quick                      # digits, few epochs: checks the script only
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

from _common import base_parser, build_overrides, table, write_results


def build_pair(model: str, args) -> dict:
    from flows.api import run_build

    common = build_overrides(args, **{"hls.require_fit": False})
    base_dir = Path(args.out) / f"structure-{model}-base"
    pruned_dir = Path(args.out) / f"structure-{model}-pruned"
    base = run_build(model, "pynq-z2", {**common, "out_dir": str(base_dir), "structure.enabled": False})
    if not pruned_dir.exists():  # reuse the float training of the base build (same config section)
        pruned_dir.mkdir(parents=True)
        for rel in ("model/float.pt", "steps.json", "config.json"):
            (pruned_dir / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(base_dir / rel, pruned_dir / rel)
    pruned = run_build(
        model,
        "pynq-z2",
        {**common, "out_dir": str(pruned_dir), "structure.enabled": True, "structure.ratio": args.ratio},
    )
    st = pruned["structure"]
    return {
        "model": model,
        "ratio": args.ratio,
        "macs_before": st["macs_before"],
        "macs_after": st["macs_after"],
        "params_before": st["params_before"],
        "params_after": st["params_after"],
        "accuracy_before": base["accuracy"]["quantized"],
        "accuracy_after": pruned["accuracy"]["quantized"],
        "csim_before": base["csim"],
        "csim_after": pruned["csim"],
        "resources_before": {k: base.get("resources", {}).get(k) for k in ("LUT", "FF", "DSP", "BRAM36")},
        "resources_after": {k: pruned.get("resources", {}).get(k) for k in ("LUT", "FF", "DSP", "BRAM36")},
        "ii_before": base.get("latency", {}).get("ii"),
        "ii_after": pruned.get("latency", {}).get("ii"),
        "dataset": base["dataset_source"],
    }


def main() -> None:
    p = base_parser(__doc__)
    p.add_argument("--models", nargs="+", default=["lenet5_fire"])
    p.add_argument("--ratio", type=float, default=0.3)
    p.add_argument("--csim-samples", type=int, default=None, help="default: the whole test set")
    args = p.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    from flows.api import quiet_libraries

    quiet_libraries()
    results = [build_pair(m, args) for m in args.models]
    rows = []
    for r in results:
        for tag in ("before", "after"):
            c = r[f"csim_{tag}"]
            res = r[f"resources_{tag}"]
            rows.append(
                [
                    r["model"],
                    tag,
                    f"{r[f'params_{tag}']:,}",
                    f"{r[f'macs_{tag}']:,}",
                    f"{100 * r[f'accuracy_{tag}']:.2f}%",
                    f"{c['samples']}: {100 * c['bit_exact_fraction']:.2f}% bit-exact",
                    f"{res['LUT'] or 0:,.0f}",
                    f"{r[f'ii_{tag}'] or 0:,.0f}",
                ]
            )
        rows.append(
            [
                r["model"],
                "change",
                f"{100 * (r['params_after'] / r['params_before'] - 1):+.1f}%",
                f"{100 * (r['macs_after'] / r['macs_before'] - 1):+.1f}%",
                f"{100 * (r['accuracy_after'] - r['accuracy_before']):+.2f} pp",
                "",
                "",
                "",
            ]
        )
    md = "# Structured pruning: before and after\n\n"
    md += (
        f"Channel pruning ratio {args.ratio} per group (L1 filter norm, dependency-aware), then fine-tuning, "
        "QAT, export and g++ C simulation. Accuracy = quantized (hardware) model on the test set; LUT and "
        f"II are estimates (flows/estimate.py). Data: {results[0]['dataset']}"
        f"{' (QUICK RUN: not a claim)' if args.quick else ''}.\n\n"
    )
    md += table(["model", "", "params", "MACs", "accuracy", "csim parity", "LUT (est.)", "II cycles (est.)"], rows)
    js, mdp = write_results("structure", {"quick": args.quick, "results": results}, md)
    print(f"wrote {js} and {mdp}")


if __name__ == "__main__":
    main()
