"""The sentences the fit search gives as its explanation: utilization, choices, why a design does not fit.

`flows.estimator.search` puts them in `FitResult.explanation`, which the build logs and reports.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from flows.boards import RESOURCE_KINDS
from flows.estimator.dataflow import DesignEstimate
from flows.estimator.spec import LayerSpec


def utilization_text(est: DesignEstimate, budget: Mapping[str, float]) -> str:
    """``LUT used/budget (pct%), ...`` for the resources the board has or the design uses."""
    util = est.utilization(budget)
    return ", ".join(
        f"{k} {est.resources[k]:.0f}/{budget.get(k, 0):.0f} ({100 * util[k]:.0f}%)"
        for k in RESOURCE_KINDS
        if budget.get(k, 0) > 0 or est.resources[k] > 0
    )


def choices_text(cur: Sequence[LayerSpec], mac_idx: Sequence[int]) -> str:
    """``Choices: <layer> RF <n> <strategy>, ...`` for the MAC layers at ``mac_idx``."""
    return "Choices: " + ", ".join(f"{cur[i].name} RF {cur[i].reuse_factor} {cur[i].strategy}" for i in mac_idx) + "."


def infeasible_text(
    est: DesignEstimate, specs: Sequence[LayerSpec], budget: Mapping[str, float], mac_idx: Sequence[int]
) -> str:
    """Why a design does not fit: per resource over budget, its largest users (layer parts, FIFOs, the
    AXI wrapper), what reuse factors cannot shrink, and the smallest design the search found."""
    util = est.utilization(budget)
    over = [k for k in RESOURCE_KINDS if util[k] > 1.0]
    parts = []
    for k in over:
        contrib: dict[str, float] = {}
        for lay in est.layers:
            for part, res in lay.parts.items():
                if res.get(k):
                    label = f"{lay.name}/{part}"
                    contrib[label] = contrib.get(label, 0.0) + res[k]
        fifo_total = est.resources[k] - sum(lay.resources[k] for lay in est.layers)
        if est.wrapper is not None:
            fifo_total -= est.wrapper.resources[k]
            if est.wrapper.resources[k]:
                contrib["axi_wrapper"] = est.wrapper.resources[k]
        if fifo_total > 1e-9:
            contrib["stream FIFOs"] = fifo_total
        top = sorted(contrib.items(), key=lambda kv: -kv[1])[:4]
        have = budget.get(k, 0.0)
        parts.append(
            f"{k} needs {est.resources[k]:.0f} but the budget is {have:.0f} ({100 * util[k]:.0f}%"
            + (")" if have > 0 else ", none available)")
            + "; largest users: "
            + ", ".join(f"{n} {v:.0f}" for n, v in top)
        )
    return (
        "Does not fit even with the largest valid reuse factors: "
        + "; ".join(parts)
        + ". Raising reuse factors cannot shrink FIFOs, line buffers, activations or the AXI wrapper; "
        "reduce the network (fewer channels, narrower precisions, pruning) or pick a larger board. "
        "Smallest design found: " + utilization_text(est, budget) + ". " + choices_text(specs, mac_idx)
    )
