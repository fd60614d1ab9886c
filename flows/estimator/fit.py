"""The calibration fitter: the estimator's constants fitted on the reference runs, written to calibration.json.

Per HLS tool (`flows.estimator.runs.ReferenceRun.family`), `fit` first sets the step-valued timing
constants (`TIMING_GRID`) by grid search and coordinate descent on latency and II, then fits the
continuous LUT, FF and DSP constants (`FIT_PARAMS`) by scipy's robust least squares on
log(estimate / real) of the run totals and the per-layer module figures, with a weak prior towards the
hand-set defaults of `Calibration`. `fit_all` fits every tool; `cross_validate` measures how well that
generalizes (leave one network out: each network's runs estimated with constants fitted without it).
``python bench/estimator.py --fit`` runs them and stores the result with
`flows.estimator.calibration.save_calibrations`, from which the library loads it.
"""

from __future__ import annotations

import itertools
import logging
import math
from dataclasses import replace

import numpy as np
from scipy.optimize import least_squares

from flows.estimator.calibration import ERROR_METRICS, TOOLS, Calibration
from flows.estimator.evaluation import SUBSETS, error_stats, in_subset
from flows.estimator.runs import METRICS, Calibrations, ReferenceRun, csynth_figures, estimate_run, layer_rows, rel_err

log = logging.getLogger(__name__)

# (field, lower bound, upper bound): the continuous constants refit by least squares
FIT_PARAMS: tuple[tuple[str, float, float], ...] = (
    ("const_dsp_fraction", 0.5, 1.0),
    ("lut_per_constmult_bit2", 0.02, 1.0),
    ("lut_per_dsp_mult", 0.0, 40.0),
    ("lut_mux_per_bit", 0.05, 2.0),
    ("lut_res_per_mult_bit", 0.2, 8.0),
    ("ff_res_per_mult_bit", 0.1, 8.0),
    ("lut_accmux_per_bit", 0.0, 5.0),
    ("lut_sat_factor", 0.0, 4.0),
    ("lut_layer_base", 20.0, 400.0),
    ("lut_elem_per_bit", 0.2, 5.0),
    ("lut_act_narrow_per_elem", 0.0, 120.0),
    ("lut_softmax_per_elem", 10.0, 300.0),
    ("lut_fifo_bram", 0.0, 120.0),
    ("lut_fifo_srl", 0.0, 60.0),
    ("ff_per_adder_bit", 0.02, 3.0),
    ("ff_tree_decay", 0.0, 1.5),
    ("ff_shared_tree_factor", 0.2, 1.5),
    ("ff_parallel_reg_per_bit", 0.0, 3.0),
    ("ff_pool_window_factor", 0.3, 4.0),
    ("ff_per_mult_bit", 0.0, 5.0),
    ("ff_layer_base", 10.0, 400.0),
    ("ff_elem_per_bit", 0.0, 4.0),
    ("ff_softmax_per_elem", 0.5, 50.0),
    ("ff_softmax_base", 0.0, 1000.0),
    ("ff_prod_reg_per_bit", 0.0, 3.0),
    ("axi_lut_base", 500.0, 5000.0),
    ("axi_lut_parallel_extra", 0.0, 8000.0),
    ("axi_ff_base", 200.0, 4000.0),
    ("axi_ff_parallel_extra", 0.0, 4000.0),
)
# What the per-module reports say about a tool, kept out of the least squares (which would trade it
# away against runs of other versions): Vitis HLS keeps about one full copy of the products/partial
# sums per pipeline stage (13_jet: FF / (nonzeros * acc bits) is close to each kernel's latency), and
# the control of an hls4ml layer is its FSM and one enable bit per pipeline stage (the register
# tables of the Vitis reports), tens of FFs.
# const_dsp_fraction is read off the RF 1 runs (see `Calibration`), not fitted.
FAMILY_FIXED: dict[str, dict[str, float]] = {
    "vitis_hls": {"ff_tree_decay": 0.0, "const_dsp_fraction": 0.75},
    "vivado_hls": {"ff_tree_decay": 1.0, "const_dsp_fraction": 0.75},
}
FAMILY_BOUNDS: dict[str, dict[str, tuple[float, float]]] = {"vitis_hls": {"ff_layer_base": (10.0, 100.0)}}
# step-valued constants (cycles come out of ceil()): fitted by grid search on latency and II
TIMING_GRID: dict[str, tuple[float, ...]] = {
    "t_mult_ns": (0.5, 1.0, 2.0, 3.0, 4.0, 5.0),
    "t_add_ns": (0.75, 1.0, 1.5, 2.0, 2.5, 3.0, 3.5, 4.0),
    "parallel_layer_cycles": (0, 1, 2),
    "resource_conv_overhead": (5, 7, 9, 11, 13),
    "axi_elem_ns": (20.0, 30.0, 40.0, 48.0, 60.0),
    "t_reg_ns": (0.0, 0.5, 1.0, 1.5),
    "depth_extra_cycles": (0, 1),
}
FIT_PRIOR = 0.1  # weight of the prior towards the hand-set constants (see _fit_group)
# robust least squares on log(estimate / real). FF uses the Cauchy loss, which gives up on outliers:
# tool versions differ by up to 8x in registers for the same network (04 vs 13), and a loss that
# keeps pulling towards such a run distorts every other constant.
FIT_LOSS: dict[str, tuple[str, float]] = {"DSP": ("soft_l1", 0.2), "LUT": ("soft_l1", 0.2), "FF": ("cauchy", 0.2)}


def fit(cases: list[ReferenceRun], base: Calibration) -> Calibration:
    """Fit one tool's constants on ``cases`` (runs of that tool): the step-valued timing constants by grid
    search on latency and II (totals and layers), then the LUT, FF and DSP constants by `_fit_group`."""
    reals = {c.key: csynth_figures(c.csynth_path) for c in cases}
    family = cases[0].family
    with_layers = [c for c in cases if c.modules]

    def timing_cost(calib: Calibration) -> float:
        cost = 0.0
        for c in cases:
            est = estimate_run(c, {family: calib})
            for m in ("latency", "II"):
                cost += min(abs(math.log((est[m] + 1.0) / (reals[c.key][m] + 1.0))), 1.0)
        for c in with_layers:  # per-layer latencies, each run's layers weighted like one total
            rows = layer_rows(c, {family: calib})
            weight = 1.0 / math.sqrt(max(1, len(rows)))
            for r in rows:
                err = math.log((r["estimate"]["latency"] + 1.0) / (r["csynth"]["latency"] + 1.0))
                cost += weight * min(abs(err), 1.0)
        return cost

    # the four constants of the kernel depth on a full grid, then coordinate descent over all of them
    # (a full grid of everything is too slow with the per-layer terms)
    keys = list(TIMING_GRID)
    depth_keys = ("t_mult_ns", "t_add_ns", "t_reg_ns", "depth_extra_cycles")
    best = min(
        (
            replace(base, **dict(zip(depth_keys, combo)))
            for combo in itertools.product(*(TIMING_GRID[k] for k in depth_keys))
        ),
        key=timing_cost,
    )
    best_cost = timing_cost(best)
    for _ in range(4):
        improved = False
        for k in keys:
            for v in TIMING_GRID[k]:
                trial = replace(best, **{k: v})
                cost = timing_cost(trial)
                if cost < best_cost - 1e-9:
                    best, best_cost, improved = trial, cost, True
        if not improved:
            break
    log.info("timing grid: %s", {k: getattr(best, k) for k in keys})

    fixed = FAMILY_FIXED.get(family, {})
    best = replace(best, **fixed)
    bounds = FAMILY_BOUNDS.get(family, {})
    # LUT, FF and DSP constants do not interact: each group is fitted on its own metric, which keeps
    # the (non-smooth: ceil, min) problems small enough for least squares to find their minimum
    for metrics in (("DSP",), ("LUT",), ("FF",)):
        params = [
            (n, *bounds.get(n, (lo_, hi_)))
            for n, lo_, hi_ in FIT_PARAMS
            if n not in fixed and _param_metric(n) in metrics
        ]
        best = _fit_group(best, params, metrics, cases, with_layers, reals)
    return best


def _param_metric(name: str) -> str:
    """The metric a fitted constant moves."""
    if name == "const_dsp_fraction":
        return "DSP"
    return "FF" if name.startswith(("ff_", "axi_ff")) else "LUT"


def _fit_group(
    base: Calibration,
    params: list[tuple[str, float, float]],
    metrics: tuple[str, ...],
    cases: list[ReferenceRun],
    with_layers: list[ReferenceRun],
    reals: dict[str, dict[str, float]],
) -> Calibration:
    """Robust least squares of ``params`` on log(estimate / real) of ``metrics``: run totals plus the
    per-layer module figures (each run's layers weighted about like its total)."""
    if not params:
        return base
    family = cases[0].family
    names = [p[0] for p in params]
    lo = np.array([p[1] for p in params])
    hi = np.array([p[2] for p in params])
    layer_metrics = [m for m in metrics if m in ("LUT", "FF")]

    def residuals(x: np.ndarray) -> np.ndarray:
        calib = replace(base, **dict(zip(names, (float(v) for v in x))))
        res = []
        for c in cases:
            est = estimate_run(c, {family: calib})
            real = reals[c.key]
            for m in metrics:
                res.append(math.log((est[m] + 1.0) / (real[m] + 1.0)))
        for c in with_layers if layer_metrics else []:
            rows = layer_rows(c, {family: calib})
            weight = 1.0 / math.sqrt(max(1, len(rows)))
            for r in rows:
                for m in layer_metrics:
                    res.append(weight * math.log((r["estimate"][m] + 1.0) / (r["csynth"][m] + 1.0)))
        # a weak prior towards the hand-set values, in units of a quarter of each constant's range: it
        # settles constants the runs barely determine instead of letting them drift to a bound
        res.extend(FIT_PRIOR * 4.0 * (x - prior) / (hi - lo))
        return np.array(res)

    # starts: the current constants, the hand-set defaults and the middle of the bounds (a constant
    # sitting on a bound can keep one start in a poor local minimum); the lowest robust cost wins
    prior = np.clip(np.array([getattr(Calibration(), n) for n in names], dtype=float), lo, hi)
    starts = [
        np.clip(np.array([getattr(base, n) for n in names], dtype=float), lo, hi),
        prior,
        np.sqrt(np.maximum(lo, 1e-3) * hi),
    ]
    loss, f_scale = FIT_LOSS[metrics[0]]
    sols = [least_squares(residuals, x, bounds=(lo, hi), loss=loss, f_scale=f_scale, x_scale="jac") for x in starts]
    sol = min(sols, key=lambda r: r.cost)
    log.info(
        "fit %s: %d constants, %d residuals, cost from the starts: %s",
        "/".join(metrics),
        len(names),
        len(sol.fun),
        ", ".join(f"{r.cost:.3f}" for r in sols),
    )
    return replace(base, **dict(zip(names, (float(v) for v in sol.x))))


# --------------------------------------------------------------------------------------------------
# Evaluation and output
# --------------------------------------------------------------------------------------------------


def fit_all(base: Calibrations, cases: list[ReferenceRun]) -> Calibrations:
    """Each tool's constants fitted on all its runs in ``cases``, starting from ``base``."""
    out = dict(base)
    for family in base:
        mine = [c for c in cases if c.family == family]
        if mine:
            out[family] = fit(mine, base[family])
    return out


def cross_validate(base: Calibrations, cases: list[ReferenceRun]) -> dict:
    """Leave-one-network-out cross-validation: each network's runs are estimated with constants fitted
    on the other networks of the same tool (timing grid and least squares, as `fit_all` does).

    These are the errors to expect on a network the calibration has not seen; the in-sample errors of
    `evaluate` are lower because every run also helped fit the constants.
    """
    runs: dict[str, dict] = {}
    for family in base:
        groups = sorted({c.network for c in cases if c.family == family})
        for group in groups:
            held = [c for c in cases if c.family == family and c.network == group]
            rest = [c for c in cases if c.family == family and c.network != group]
            calib = fit(rest, base[family])
            log.info("cv: %s without %s (%d runs held out)", family, group, len(held))
            for run in held:
                real = csynth_figures(run.csynth_path)
                est = estimate_run(run, {family: calib})
                runs[run.key] = {
                    "calibration": family,
                    "part": run.part,
                    "tool": run.tool,
                    "network": group,
                    "estimate": {m: round(est[m], 1) for m in METRICS},
                    "rel_error": {m: round(rel_err(est[m], real[m]), 4) for m in METRICS},
                }
    rows = [runs[c.key] for c in cases if c.key in runs]
    summary = {}
    for subset in SUBSETS:
        sel = [r for r in rows if in_subset(r, subset)]
        summary[subset] = {m: error_stats([r["rel_error"][m] for r in sel]) for m in METRICS}
    return {"runs": runs, "summary": summary}


def expected_error(cv: dict) -> dict[str, dict[str, float]]:
    """Each tool's cross-validated median |relative error| (of `cross_validate`), rounded to the percent:
    what `flows.estimator.calibration.EXPECTED_ERROR` holds."""
    summary = cv["summary"]
    return {tool: {m: round(summary[tool][m]["median_abs_rel_error"], 2) for m in ERROR_METRICS} for tool in TOOLS}
