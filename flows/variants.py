"""Which kernels a design gets: the fit search over design variants (sparse kernels, distributed arithmetic).

`fit_with_kernels` fits the design as converted, with the sparse weight-shared kernel on its candidates
(`flows.hardware.sparse_candidates`), with distributed arithmetic on its candidates
(`flows.hardware.da_candidates`), with both, and with DA only where da4ml's adders are cheaper than the
same layer without DA (`cheaper_as_da`); each variant with sparse layers is also tried paced to its own
interval (`flows.sparse.pace`). `choose_design` keeps the best by `hls.objective`: fitting designs
first; then, for ``area``, the smallest of the designs that keep the fastest fitting variant's interval
(or the target rate's; the same rule area recovery follows within one design), for ``latency`` the
fastest. Every variant is logged with its LUT, BRAM and II.
"""

from __future__ import annotations

import logging

from flows.boards import RESOURCE_KINDS
from flows.hardware import FitOutcome
from flows.sparse.pace import paced_settings

log = logging.getLogger(__name__)


def _rank(outcome: FitOutcome, board, objective: str, ii_ref: int | None = None) -> tuple:
    """Sort key of a fit outcome: fitting designs first, then the objective (area: the designs that keep
    the throughput `ii_ref` first, then the summed share of the budget; latency: the initiation interval,
    then area)."""
    used, budget = outcome.estimate.resources, board.resources
    area = sum(used[k] / budget[k] for k in RESOURCE_KINDS if budget[k])
    worst = max((used[k] / budget[k] for k in RESOURCE_KINDS if budget[k]), default=0.0)
    ii = outcome.estimate.ii_cycles
    if not outcome.fits:
        return (1, worst, area)
    if objective != "area":
        return (0, ii, area)
    return (0, ii_ref is not None and ii > ii_ref, area, ii)


def reference_ii(variants: dict[str, FitOutcome], target_ii: int | None = None) -> int | None:
    """The interval the area objective keeps across design variants, as area recovery does within one: the
    fastest fitting variant's, or the target's when it is slower (`hls.target_images_per_second`)."""
    fitting = [o.estimate.ii_cycles for o in variants.values() if o.fits]
    if not fitting:
        return None
    return max(min(fitting), target_ii) if target_ii else min(fitting)


def with_settings(outcome: FitOutcome, settings: dict, label: str) -> FitOutcome:
    """A fit outcome of a design converted with extra per-layer `settings` (sparse kernels, DA), labelled."""
    return FitOutcome(
        outcome.io_type,
        {**settings, **outcome.layer_settings},
        outcome.estimate,
        True,
        f"{label}; {outcome.explanation}",
        outcome.fits,
    )


def cheaper_as_da(da: FitOutcome, other: FitOutcome, da_settings: dict, board) -> dict[str, dict]:
    """The DA layers of the fitted design `da` whose share of the board is smaller than the same layer's
    in the fitted design `other` (e.g. a classifier that area recovery folds is cheaper without DA, a
    conv with few nonzero weights is cheaper with it): the per-layer mix to try next."""
    budget = board.resources

    def share(layer) -> float:
        return sum(layer.resources.get(k, 0.0) / budget[k] for k in RESOURCE_KINDS if budget[k])

    mine = {layer.name: layer for layer in da.estimate.layers}
    theirs = {layer.name: layer for layer in other.estimate.layers}
    return {
        name: value
        for name, value in da_settings.items()
        if name in mine and name in theirs and share(mine[name]) < share(theirs[name])
    }


def choose_design(
    variants: dict[str, FitOutcome], board, objective: str, target_ii: int | None = None
) -> FitOutcome:
    """The best of the fitted design variants (`_rank`): e.g. all-dense, sparse kernels, DA, both; with
    the area objective, the smallest of those that keep `reference_ii`. Each variant is logged with its
    LUT and II, so the report's log says why one was chosen."""
    ii_ref = reference_ii(variants, target_ii)
    chosen_name = min(variants, key=lambda n: _rank(variants[n], board, objective, ii_ref))
    for name, o in variants.items():
        log.info(
            "design %-18s %s: LUT %.0f, BRAM36 %.1f, II %d cycles%s",
            name,
            "chosen" if name == chosen_name else "      ",
            o.estimate.resources["LUT"],
            o.estimate.resources["BRAM36"],
            o.estimate.ii_cycles,
            "" if o.fits else " (does not fit)",
        )
    return variants[chosen_name]


def fit_with_kernels(
    fit, sparse: dict, da: dict, board, objective: str, shapes: dict | None = None, target_ii: int | None = None
) -> FitOutcome:
    """The best fitted design among: as converted, with the sparse kernel on `sparse`, with DA on `da`,
    with both, and with DA only on the layers where it is cheaper than in the best design without DA
    (`cheaper_as_da`). Each variant with sparse layers is also tried paced to its own interval
    (`flows.sparse.pace`, given the Dense `shapes`). `fit(extra_layer_settings) -> FitOutcome` converts
    and fits one variant; `target_ii` as in `choose_design`."""

    def variant(on_sparse: dict, on_da: dict) -> FitOutcome:
        extra = {**on_sparse, **on_da}
        label = [f"sparse weight-shared kernels for {', '.join(on_sparse)}"] if on_sparse else []
        label += [f"distributed arithmetic for {', '.join(on_da)}"] if on_da else []
        return with_settings(fit(extra), extra, "; ".join(label))

    def rank(name: str) -> tuple:
        return _rank(variants[name], board, objective, reference_ii(variants, target_ii))

    def add(name: str, on_sparse: dict, on_da: dict) -> str:
        """Fit the variant, and its sparse layers paced to its interval; the better one's name."""
        variants[name] = variant(on_sparse, on_da)
        paced = paced_settings(on_sparse, shapes or {}, variants[name].estimate.ii_cycles)
        if paced == on_sparse:
            return name
        variants[f"{name}, paced"] = variant(paced, on_da)
        return f"{name}, paced" if rank(f"{name}, paced") < rank(name) else name

    variants = {"all-dense": fit({})}
    best_sparse = add("sparse", sparse, {}) if sparse else "all-dense"
    if da:
        variants["da"] = variant({}, da)
        if sparse:
            add("sparse+da", sparse, da)
        keep = sparse if sparse and rank(best_sparse) < rank("all-dense") else {}
        without = best_sparse if keep else "all-dense"
        mixed = cheaper_as_da(variants["sparse+da" if keep else "da"], variants[without], da, board)
        if mixed and mixed != da:
            add(f"{'sparse' if keep else 'all-dense'}+da per layer", keep, mixed)
    return choose_design(variants, board, objective, target_ii) if len(variants) > 1 else variants["all-dense"]
