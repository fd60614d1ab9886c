"""The report's `search` section (builds with `--max-accuracy-drop`): what the search chose, what each
choice cost in accuracy, the sensitivity plot (Deep Compression's Figures 5/6 view), and the final
budget check of the built hardware model on the validation split.

The final check is the verdict: the QAT model (bit-exact with the C simulation) and the float model are
both evaluated on the whole validation split; a drop above the budget is reported as missed, loudly.
"""

from __future__ import annotations

import logging
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from flows.context import FLOAT_CKPT, QAT_CKPT, BuildContext  # noqa: E402
from flows.reporting.plots import save_png  # noqa: E402
from flows.train import evaluate  # noqa: E402

log = logging.getLogger(__name__)


def _drop_pp(base: float, acc: float | None) -> float | None:
    return None if acc is None else round(100 * (base - acc), 3)


def search_section(ctx: BuildContext) -> dict:
    """report.json's `search`: budget, choices with their own accuracy cost, and the final check."""
    r = ctx.results.search
    chosen, sens, base = r.chosen, r.sensitivity, r.val_float
    layers = []
    for name, row in sens["layers"].items():
        d = chosen["density"].get(name, 1.0)
        bits = chosen["conv_bits"] if row["kind"] == "conv" else chosen["fc_bits"]
        layers.append(
            {
                "layer": name,
                "kind": row["kind"],
                "params": row["params"],
                "density": d,
                "density_drop_pp": _drop_pp(base, _at(row["density"], d)),
                "weight_bits": bits,
                "bits_drop_pp": _drop_pp(base, _at(row["weight_bits"], bits)),
            }
        )
    section = {
        "budget_pp": r.budget_pp,
        "objective": r.objective,
        "chosen": {k: chosen[k] for k in ("density", "conv_bits", "fc_bits", "act_bits", "structure_ratio")},
        "overrides": r.overrides,
        "layers": layers,
        "act_bits_drop_pp": _drop_pp(_widest(sens["act_bits"]), _at(sens["act_bits"], chosen["act_bits"])),
        "structure_ratio_drop_pp": _drop_pp(base, _at(sens["structure_ratio"], chosen["structure_ratio"])),
        "predicted_drop_pp": chosen["predicted_drop_pp"],
        "predicted_within_budget": r.within_budget,
        "hardware_estimate": chosen["hardware"],
        "candidates": [
            {k: c[k] for k in ("tolerance_pp", "conv_bits", "fc_bits", "act_bits", "structure_ratio",
                               "hardware", "val_accuracy", "predicted_drop_pp")}
            for c in r.candidates
        ],
        "sensitivity": sens,
        "analysis_samples": r.val_samples,
        "final": final_check(ctx, r.budget_pp),
    }
    return section


def _widest(curve: dict) -> float:
    return curve[max(curve, key=float)] if curve else 0.0


def _at(curve: dict, value) -> float | None:
    for k, v in curve.items():
        if abs(float(k) - float(value)) < 1e-9:
            return v
    return None


def final_check(ctx: BuildContext, budget_pp: float) -> dict:
    """The built hardware model against the float model on the whole validation split."""
    val = ctx.data.val
    if ctx.results.qat is None or val is None or len(val) == 0:
        return {"checked": False, "reason": "no QAT model or no validation split"}
    acc_float = getattr(ctx.results.train, "val_accuracy", None)  # measured on the whole split by the steps
    acc_hw = getattr(ctx.results.qat, "val_accuracy", None)
    if acc_float is None:
        float_model = ctx.new_model(False, arch=ctx.cfg.arch)
        float_model.load_state_dict(ctx.load_state(FLOAT_CKPT))
        acc_float = evaluate(float_model.eval(), val)["accuracy"]
    if acc_hw is None:
        acc_hw = evaluate(ctx.load_model(QAT_CKPT), val)["accuracy"]
    drop = round(100 * (acc_float - acc_hw), 3)
    within = drop <= budget_pp + 1e-9
    (log.info if within else log.warning)(
        "accuracy budget %s: hardware model %.4f vs float %.4f on %d validation images: drop %.2f pp (budget %.2f pp)",
        "kept" if within else "MISSED",
        acc_hw,
        acc_float,
        len(val),
        drop,
        budget_pp,
    )
    return {
        "checked": True,
        "val_samples": len(val),
        "val_float": acc_float,
        "val_hardware": acc_hw,
        "drop_pp": drop,
        "within_budget": within,
        "test_float": ctx.results.train.accuracy if ctx.results.train else None,
        "test_hardware": ctx.results.qat.accuracy,
        "test_csim": ctx.results.csim.accuracy_csim if ctx.results.csim else None,
    }


def search_markdown(sec: dict) -> str:
    f, c = sec["final"], sec["chosen"]
    lines = ["", "## Compression chosen for the accuracy budget", ""]
    if f.get("checked"):
        verdict = "**kept**" if f["within_budget"] else "**MISSED** (the hardware model loses more than the budget)"
        lines.append(
            f"Budget {sec['budget_pp']} pp on the validation split ({f['val_samples']} images): {verdict}: float "
            f"{f['val_float']:.4f}, hardware model {f['val_hardware']:.4f}, drop {f['drop_pp']:.2f} pp. "
            f"Test set (reported only): float {f['test_float']:.4f}, hardware {f['test_hardware']:.4f}"
            + (f", C simulation {f['test_csim']:.4f}." if f.get("test_csim") is not None else ".")
        )
    else:
        lines.append(f"Budget {sec['budget_pp']} pp: not checked ({f.get('reason')}).")
    hw = sec["hardware_estimate"]
    lines += [
        "",
        f"Chosen (objective {sec['objective']}, predicted drop after a short fine-tuning "
        f"{sec['predicted_drop_pp']:.2f} pp{'' if sec['predicted_within_budget'] else ', NOT within the budget'}): "
        f"weights {c['conv_bits']} bits (conv) / {c['fc_bits']} bits (fc), activations {c['act_bits']} bits "
        f"(own cost vs the widest tried {_pp(sec['act_bits_drop_pp'])}), "
        f"structured-pruning ratio {c['structure_ratio']:g} "
        f"(own cost after a short fine-tuning {_pp(sec['structure_ratio_drop_pp'])}); "
        f"search's estimate LUT {hw.get('LUT', 0):.0f}, "
        f"{hw.get('images_per_second') or 0:.0f} images/s, fits {hw.get('fits')}.",
        "",
        "Each choice's own cost is the validation accuracy lost with only that change, before retraining "
        "(the sensitivity analysis; the structure ratio's after a short fine-tuning); retraining recovers part "
        "of it.",
        "",
        "| layer | kind | weights | density | cost (pp) | weight bits | cost (pp) |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in sec["layers"]:
        lines.append(
            f"| {row['layer']} | {row['kind']} | {row['params']} | {row['density']:g} | {_pp(row['density_drop_pp'])} "
            f"| {row['weight_bits']} | {_pp(row['bits_drop_pp'])} |"
        )
    lines += ["", "| candidate tolerance (pp) | weights kept | weight bits conv/fc | act bits | structure | LUT "
              "| images/s | fits | kernels (layers) | predicted drop (pp) |", "|---" * 10 + "|"]
    for cand in sec["candidates"]:
        hw = cand["hardware"]
        lines.append(
            f"| {cand['tolerance_pp']:.2f} | {hw.get('weights_kept', 1):.3f} | {cand['conv_bits']}/{cand['fc_bits']} "
            f"| {cand['act_bits']} "
            f"| {cand['structure_ratio']:g} | {hw.get('LUT', 0):.0f} | {hw.get('images_per_second') or 0:.0f} "
            f"| {hw.get('fits')} | {_kernels(hw)} | {_pp(cand['predicted_drop_pp'])} |"
        )
    return "\n".join(lines) + "\n"


def _kernels(hw: dict) -> str:
    """'da 7, sparse 1': how many multiplying layers of the costed design use each kernel."""
    counts: dict[str, int] = {}
    for kernel in (hw.get("kernels") or {}).values():
        counts[kernel] = counts.get(kernel, 0) + 1
    return ", ".join(f"{k} {n}" for k, n in sorted(counts.items())) or "-"


def _pp(value) -> str:
    return "-" if value is None else f"{value:.2f}"


def plot_sensitivity(sec: dict, path: Path) -> bool:
    """Accuracy vs density per layer (Deep Compression Fig. 5/6), vs weight bits per layer, and vs
    activation bits / structured-pruning ratio; the chosen settings marked."""
    sens = sec["sensitivity"]
    if not sens.get("layers"):
        return False
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    for name, row in sens["layers"].items():
        xs = [float(k) for k in row["density"]]
        (line,) = axes[0].plot(xs, [100 * v for v in row["density"].values()], marker=".", label=name)
        chosen = sec["chosen"]["density"].get(name)
        if chosen is not None and _at(row["density"], chosen) is not None:
            axes[0].scatter([chosen], [100 * _at(row["density"], chosen)], s=80, facecolors="none",
                            edgecolors=line.get_color())
        axes[1].plot([int(k) for k in row["weight_bits"]], [100 * v for v in row["weight_bits"].values()],
                     marker=".", label=name)
    axes[0].set(xlabel="fraction of weights kept (this layer only)", ylabel="validation accuracy, %",
                title="pruning sensitivity (no retraining)")
    axes[0].invert_xaxis()
    axes[1].set(xlabel="weight bits (this layer only)", ylabel="validation accuracy, %", title="weight bits")
    axes[1].invert_xaxis()
    if sens.get("act_bits"):
        axes[2].plot([int(k) for k in sens["act_bits"]], [100 * v for v in sens["act_bits"].values()], marker="o",
                     label="activation bits (all layers)")
        axes[2].invert_xaxis()
    if sens.get("structure_ratio"):
        ax = axes[2].twiny()
        ax.plot([float(k) for k in sens["structure_ratio"]], [100 * v for v in sens["structure_ratio"].values()],
                marker="s", color="tab:red", label="structured-pruning ratio")
        ax.set_xlabel("structured-pruning ratio (red)")
    axes[2].set(xlabel="activation bits", ylabel="validation accuracy, %", title="activations, channels")
    for ax in axes:
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=6)
    fig.suptitle(f"sensitivity on the validation split; budget {sec['budget_pp']} pp")
    fig.tight_layout()
    save_png(fig, path)
    return True
