"""lenet5_fire on the PYNQ-Z2 against FINN's LFC-w1a2, and the fit objectives side by side.

One float/QAT training, two hardware mappings of the same quantized network (the second build copies
the first's folder, so only convert -> csim -> report rerun):

- `hls.objective=latency`: the fastest design that fits the board (the fit search alone);
- `hls.objective=area` (the default): then area recovery raises reuse factors where a layer has slack,
  keeping the II.

Both are compared with FINN's LFC-w1a2 on the same board, from FINN's published figures (constants
below: Vivado post-synthesis LUTs, measured throughput). Our LUT/FF/BRAM figures are estimates of what
Vivado HLS C synthesis reports (flows/estimate.py); HLS C synthesis over-reports LUTs against Vivado's
own synthesis (median +116% on the reference runs of bench/results/estimator.json), so comparing them
with FINN's post-synthesis LUTs favours FINN. Writes bench/results/hardware.{json,md}.

    python bench/hardware.py                       # full MNIST from ../shared/data, whole test set in csim
    python bench/hardware.py --quick               # digits, few epochs: checks the script only
    python bench/hardware.py --force convert       # same trainings, new hardware mapping (after a code change)
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

from _common import RESULTS, base_parser, build_overrides, table, write_results

# FINN LFC-w1a2 on the PYNQ-Z2 (xc7z020), the figures issue 5 sets as the bar (FINN-R / finn-examples).
FINN_LFC_W1A2 = {
    "name": "FINN LFC-w1a2 (published)",
    "accuracy": 0.9849,
    "images_per_second": 356_000,
    "LUT": 48_981,
    "source": "FINN's published figures: Vivado post-synthesis LUTs, measured throughput",
}


def csynth_over_vivado_lut() -> float | None:
    """Median csynth/Vivado LUT ratio of the reference runs (bench/estimator.py's output), if present."""
    path = RESULTS / "estimator.json"
    if not path.is_file():
        return None
    stats = json.loads(path.read_text())["summary"].get("csynth_vs_vivado", {}).get("LUT")
    return 1.0 + stats["median_signed_rel_error"] if stats else None


def run_pair(args) -> dict:
    from flows.api import run_build
    from flows.config import parse_override

    common = build_overrides(args, **{"hls.require_fit": False})
    for item in args.set or []:
        path, value = parse_override(item)
        common[".".join(path)] = value
    out = Path(args.out)
    fast_dir, small_dir = out / "hardware-latency", out / "hardware-area"
    fast = run_build(
        args.model, "pynq-z2", {**common, "out_dir": str(fast_dir), "hls.objective": "latency"}, force=args.force
    )
    if not small_dir.exists():  # same training: copy everything but the HLS project
        shutil.copytree(fast_dir, small_dir, ignore=shutil.ignore_patterns("hls4ml_prj", ".*staging*"))
    small = run_build(
        args.model, "pynq-z2", {**common, "out_dir": str(small_dir), "hls.objective": "area"}, force=args.force
    )
    return {"latency": fast, "area": small}


def summary(report: dict) -> dict:
    res, lat = report["resources"], report["latency"]
    return {
        "accuracy": report["accuracy"]["quantized"],
        "csim_accuracy": report["accuracy"].get("csim"),
        "csim": report["csim"],
        "LUT": res["LUT"],
        "FF": res["FF"],
        "DSP": res["DSP"],
        "BRAM36": res["BRAM36"],
        "fits": res["fits"],
        "ii_cycles": lat["ii"],
        "latency_cycles": lat["cycles"],
        "images_per_second": lat["images_per_second"],
        "source": res["source"],
        "layer_settings": res.get("fit", {}).get("layer_settings", {}),
        "dataset": report["dataset_source"],
    }


def main() -> None:
    p = base_parser(__doc__)
    p.add_argument("--model", default="lenet5_fire")
    p.add_argument("--csim-samples", type=int, default=None, help="default: the whole test set")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="config override for both builds")
    p.add_argument("--force", metavar="STEP", help="rerun STEP and the steps after it (e.g. convert)")
    args = p.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    from flows.api import quiet_libraries

    quiet_libraries()
    reports = run_pair(args)
    rows_data = {k: summary(v) for k, v in reports.items()}
    ratio = csynth_over_vivado_lut()
    finn = FINN_LFC_W1A2
    rows = [
        [
            finn["name"],
            f"{100 * finn['accuracy']:.2f}%",
            "",
            f"{finn['LUT']:,}",
            "1.00",
            "",
            f"{finn['images_per_second']:,.0f}",
            "1.00",
            "Vivado synthesis (published)",
        ]
    ]
    for key in ("latency", "area"):
        r = rows_data[key]
        c = r["csim"]
        rows.append(
            [
                f"{args.model}, hls.objective={key}",
                f"{100 * r['accuracy']:.2f}% ({100 * (r['accuracy'] - finn['accuracy']):+.2f} pp)",
                f"{c['samples']:,}: {100 * c['bit_exact_fraction']:.2f}% bit-exact",
                f"{r['LUT']:,.0f}" + (f" (~{r['LUT'] / ratio:,.0f} Vivado)" if ratio else ""),
                f"{r['LUT'] / finn['LUT']:.2f}",
                f"{r['FF']:,.0f} / {r['DSP']:.0f} / {r['BRAM36']:.1f}",
                f"{r['images_per_second']:,.0f}",
                f"{r['images_per_second'] / finn['images_per_second']:.2f}",
                "estimate of HLS C synthesis",
            ]
        )
    a, f = rows_data["area"], rows_data["latency"]
    md = f"# {args.model} on the PYNQ-Z2 against FINN LFC-w1a2\n\n"
    md += (
        f"Data: {a['dataset']}{' (QUICK RUN: not a claim)' if args.quick else ''}. Accuracy is the quantized "
        "(hardware) model on the test set; the C simulation column says how many test images ran through the "
        "generated C++ and matched the PyTorch model bit for bit. Throughput at 100 MHz from the estimated II.\n\n"
    )
    md += table(
        [
            "design",
            "accuracy",
            "C simulation",
            "LUT",
            "LUT / FINN",
            "FF / DSP / BRAM36",
            "images/s",
            "rate / FINN",
            "source",
        ],
        rows,
    )
    md += (
        f"\n\nArea recovery (`hls.objective=area` vs `latency`): LUT x{a['LUT'] / f['LUT']:.2f}, "
        f"FF x{a['FF'] / f['FF']:.2f}, II {f['ii_cycles']:.0f} -> {a['ii_cycles']:.0f} cycles, latency "
        f"{f['latency_cycles']:.0f} -> {a['latency_cycles']:.0f} cycles.\n"
    )
    if ratio:
        md += (
            f"\nThe '~ Vivado' figure divides the estimate by {ratio:.2f}, the median csynth/Vivado-synthesis LUT "
            "ratio of the 10 reference runs that have both (bench/results/estimator.md): a projection, not a "
            "measurement. No Vivado ran here.\n"
        )
    js, mdp = write_results(
        "hardware",
        {"quick": args.quick, "model": args.model, "finn": finn, "csynth_over_vivado_lut": ratio, **rows_data},
        md,
    )
    print(f"wrote {js} and {mdp}")


if __name__ == "__main__":
    main()
