"""The three LeNets on the PYNQ-Z2 with today's hls4ml strategies and with the new ones, side by side.

For each model one training; two hardware mappings of the same quantized network (the second build
copies the first's folder without its HLS project, so only convert -> csim -> report rerun):

- `new`: the defaults: the fit search may choose the sparse weight-shared kernel (flows/sparse/) and
  distributed arithmetic (flows/da/, da4ml) per layer, beside hls4ml's latency/resource strategies;
- `hls4ml only`: `hls.sparse=off hls.da=off`: hls4ml's latency/resource strategies, fitted the same way.

Then density scaling: `lenet300_100` dense (no pruning) and pruned to its recipe's densities times
1, 2 and 4 (same float training), each mapped with the new strategies: how LUT and BRAM follow the
number of weights kept. FINN's published LFC-w1a2 row is the bar (bench/hardware.py). Every figure
is labelled by its source (our estimate of HLS C synthesis; da4ml's cost inside it for DA layers).
Writes bench/results/strategies.{json,md}.

    python bench/strategies.py                  # full MNIST from ../shared/data, whole test set in csim
    python bench/strategies.py --quick          # digits, few epochs: checks the script only
    python bench/strategies.py --models lenet5_fire --no-density
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

from _common import base_parser, build_overrides, table, write_results
from hardware import FINN_LFC_W1A2, summary

MODELS = ("lenet300_100", "lenet5", "lenet5_fire")
HLS4ML_ONLY = {"hls.sparse": "off", "hls.da": "off"}
DENSITY_MODEL = "lenet300_100"
DENSITY_SCALES = (1, 2, 4)  # times the recipe's per-layer densities (capped at 1)


def copy_training(src: Path, dst: Path) -> None:
    """The build folder without its HLS project: the next build reuses every training step."""
    if not dst.exists():
        skip = shutil.ignore_patterns("hls4ml_prj", ".*staging*", "synth", "csim", "dataflow")
        shutil.copytree(src, dst, ignore=skip)


def model_pair(run_build, model: str, common: dict, out: Path) -> dict:
    new_dir, old_dir = out / f"{model}-new", out / f"{model}-hls4ml"
    new = run_build(model, "pynq-z2", {**common, "out_dir": str(new_dir)})
    copy_training(new_dir, old_dir)
    old = run_build(model, "pynq-z2", {**common, **HLS4ML_ONLY, "out_dir": str(old_dir)})
    return {"new": summary(new), "hls4ml only": summary(old)}


def density_scaling(run_build, common: dict, out: Path) -> list[dict]:
    from flows.api import resolve_config

    recipe = resolve_config(DENSITY_MODEL, "pynq-z2").compress.density
    first = out / f"{DENSITY_MODEL}-new"  # model_pair's build: its float training is reused
    rows = []
    dense_dir = out / f"{DENSITY_MODEL}-dense"
    copy_training(first, dense_dir)
    dense = run_build(DENSITY_MODEL, "pynq-z2", {**common, "compress.enabled": False, "out_dir": str(dense_dir)})
    rows.append({"density": "dense (no pruning)", "scale": None, **summary(dense)})
    for scale in DENSITY_SCALES:
        density = {k: min(1.0, v * scale) for k, v in recipe.items()}
        d = out / f"{DENSITY_MODEL}-density-x{scale}"
        copy_training(first, d)
        report = run_build(DENSITY_MODEL, "pynq-z2", {**common, "compress.density": density, "out_dir": str(d)})
        rows.append({"density": density, "scale": scale, **summary(report)})
    return rows


def _share(r: dict, budget: dict) -> float:
    return r["LUT"] / budget["LUT"] + r["BRAM36"] / budget["BRAM36"]


def render(results: dict, density: list[dict], quick: bool, budget: dict) -> str:
    finn = FINN_LFC_W1A2
    headers = ["model", "strategies", "accuracy", "C simulation", "LUT", "LUT / FINN", "FF", "BRAM36", "DSP"]
    headers += ["fits", "II", "images/s", "rate / FINN", "source"]
    rows = [
        [finn["name"], "FINN", f"{100 * finn['accuracy']:.2f}%", "", f"{finn['LUT']:,}", "1.00", "", "", ""]
        + ["yes", "", f"{finn['images_per_second']:,}", "1.00", "Vivado synthesis, measured (published)"]
    ]
    for model, pair in results.items():
        for kind, r in pair.items():
            c = r["csim"]
            rows.append(
                [model, kind, f"{100 * r['accuracy']:.2f}%", f"{c['samples']:,}: {100 * c['bit_exact_fraction']:.2f}%"]
                + [f"{r['LUT']:,.0f}", f"{r['LUT'] / finn['LUT']:.2f}", f"{r['FF']:,.0f}", f"{r['BRAM36']:.1f}"]
                + [f"{r['DSP']:.0f}", "yes" if r["fits"] else "**no**", f"{r['ii_cycles']:,.0f}"]
                + [f"{r['images_per_second']:,.0f}", f"{r['images_per_second'] / finn['images_per_second']:.2f}"]
                + [r["source"] + " (HLS C synthesis; DA layers: da4ml's cost)"]
            )
    md = "# The LeNets on the PYNQ-Z2: hls4ml's strategies vs the sparse kernel and distributed arithmetic\n\n"
    if quick:
        md += "**QUICK RUN (digits, few epochs): checks the script, not the claims.**\n\n"
    md += (
        "Accuracy: the quantized (hardware) model on the test set; C simulation: test images through the generated "
        "C++, bit-exact fraction. Throughput at 100 MHz from the estimated II. `new` = the defaults (the fit search "
        "may choose sparse kernels and DA per layer); `hls4ml only` = `hls.sparse=off hls.da=off`.\n\n"
    )
    md += table(headers, rows) + "\n"
    if density:
        dense = density[0]
        md += f"\n## Density scaling: {DENSITY_MODEL}, same float training, new strategies\n\n"
        drows = []
        for r in density:
            label = (
                r["density"]
                if isinstance(r["density"], str)
                else f"recipe x{r['scale']}: " + ", ".join(f"{k} {100 * v:.0f}%" for k, v in r["density"].items())
            )
            drows.append(
                [label, f"{100 * r['accuracy']:.2f}%", f"{r['LUT']:,.0f}", f"{r['BRAM36']:.1f}"]
                + [f"{_share(r, budget) / _share(dense, budget):.3f}", "yes" if r["fits"] else "no"]
                + [f"{r['images_per_second']:,.0f}"]
            )
        md += table(["weights kept", "accuracy", "LUT", "BRAM36", "LUT+BRAM vs dense", "fits", "images/s"], drows)
        md += "\n\n`LUT+BRAM vs dense`: (LUT/budget + BRAM36/budget) of the row over the same for the dense network.\n"
    return md


def main() -> None:
    p = base_parser(__doc__)
    p.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)
    p.add_argument("--no-density", action="store_true", help="skip the density scaling builds")
    p.add_argument("--csim-samples", type=int, default=None, help="default: the whole test set")
    args = p.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    from flows.api import quiet_libraries, run_build
    from flows.boards import load_board

    quiet_libraries()
    common = build_overrides(args, **{"hls.require_fit": False})
    out = Path(args.out) / "strategies"
    results = {m: model_pair(run_build, m, common, out) for m in args.models}
    density = []
    if not args.no_density and DENSITY_MODEL in args.models:
        density = density_scaling(run_build, common, out)
    budget = load_board("pynq-z2").resources
    md = render(results, density, args.quick, budget)
    js, mdp = write_results(
        "strategies", {"quick": args.quick, "finn": FINN_LFC_W1A2, "models": results, "density": density}, md
    )
    print(f"wrote {js} and {mdp}")


if __name__ == "__main__":
    main()
