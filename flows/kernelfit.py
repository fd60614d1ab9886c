"""The fitted design with the board's kernels: one call shared by the build and the accuracy-budget search.

`fit_with_board_kernels` converts the design once as configured, picks its candidates for the sparse
weight-shared kernel (`flows.hardware.sparse_candidates`, when ``hls.sparse == "auto"``) and for
distributed arithmetic (`flows.hardware.da_candidates`, when ``hls.da == "auto"``), fits each design
variant to the board (`flows.hardware.fit_design`: ``hls.objective``, the interval
``hls.target_images_per_second`` asks for, the user's pinned layers) and keeps the best one
(`flows.variants.fit_with_kernels`). The convert step builds the chosen design; the search step
(flows/steps/search.py) costs each candidate compression with the same call, so a candidate the sparse
kernel or DA make small looks small to the search as well.

`kernel_of` names the kernel each layer of a fitted design uses ("sparse", "da", or hls4ml's strategy).
"""

from __future__ import annotations

from flows.da.hls_pass import DA_STRATEGY
from flows.estimator import MAC_KINDS
from flows.hardware import FitOutcome, da_candidates, fit_design, sparse_candidates
from flows.sparse.extension import STRATEGY as SPARSE_STRATEGY
from flows.sparse.pace import dense_shapes
from flows.variants import fit_with_kernels


def fit_with_board_kernels(convert_fn, hls_cfg, board, clock_period_ns: float, pipelined: bool) -> FitOutcome:
    """The best fitted design variant (as converted, sparse kernels, DA, both, DA per layer) by `hls.objective`.

    `convert_fn(io_type, layer_settings) -> hls_model` converts without writing; `hls_cfg` is the build's
    `HLSConfig` (io type, fit search, objective, target rate, sparse/DA switches and bounds, pinned layers)."""
    target_ii = None  # the interval hls.target_images_per_second asks for
    if hls_cfg.target_images_per_second:
        target_ii = max(1, int(1e9 / (hls_cfg.target_images_per_second * clock_period_ns)))
    pinned = (*hls_cfg.layer_reuse, *hls_cfg.layer_strategy)

    def fit(fn):
        return fit_design(
            fn,
            board,
            clock_period_ns,
            hls_cfg.io_type,
            pipelined,
            hls_cfg.fit,
            objective=hls_cfg.objective,
            target_ii=target_ii,
            pinned=pinned,
        )

    base = convert_fn(hls_cfg.io_type, {})
    sparse = sparse_candidates(base, hls_cfg.sparse_max_density, pinned) if hls_cfg.sparse == "auto" else {}
    da = da_candidates(base, hls_cfg.da_max_nonzero, pinned, exclude=sparse) if hls_cfg.da == "auto" else {}
    return fit_with_kernels(
        lambda extra: fit(lambda io_type, layer_settings: convert_fn(io_type, {**extra, **layer_settings})),
        sparse,
        da,
        board,
        hls_cfg.objective,
        dense_shapes(base),
        target_ii,
    )


def kernel_of(outcome: FitOutcome) -> dict[str, str]:
    """``{hls4ml layer: "sparse" | "da" | "latency" | "resource"}`` for the multiplying layers (dense, conv)
    of a fitted design: the per-layer setting the fit chose, else the strategy the layer was estimated with."""
    names = {SPARSE_STRATEGY: "sparse", DA_STRATEGY: "da"}
    out = {layer.name: layer.strategy for layer in outcome.estimate.layers if layer.kind in MAC_KINDS}
    for layer, settings in outcome.layer_settings.items():
        strategy = settings.get("Strategy")
        if strategy and (layer in out or strategy in names):
            out[layer] = names.get(strategy, str(strategy).lower())
    return out
