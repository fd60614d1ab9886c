"""Fitting a design to a board: reuse factors and strategies per MAC layer (`fit_to_budget`, `shrink_to_ii`).

`fit_to_budget` searches, greedily on the binding resource, for the fastest design that fits a
budget; `shrink_to_ii` then recovers area where layers have slack, keeping the II (FINN's folding to
a target rate). Both try only the reuse factors hls4ml accepts
(`flows.estimator.hls4ml_adapter.valid_reuse_factors`) and return a `FitResult`: one `LayerChoice`
per MAC layer, the estimate, and an explanation (`flows.estimator.explain`).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace

from flows.boards import RESOURCE_KINDS
from flows.estimator.calibration import DEFAULT_CALIBRATION, Calibration
from flows.estimator.dataflow import DesignEstimate, estimate_design
from flows.estimator.explain import choices_text, infeasible_text, utilization_text
from flows.estimator.hls4ml_adapter import valid_reuse_factors
from flows.estimator.layers import estimate_layer
from flows.estimator.spec import SOURCE, STRATEGIES, LayerEstimate, LayerSpec

log = logging.getLogger(__name__)


@dataclass
class LayerChoice:
    """The configuration chosen for one MAC layer."""

    name: str
    reuse_factor: int
    strategy: str

    def to_dict(self) -> dict:
        return {"name": self.name, "reuse_factor": self.reuse_factor, "strategy": self.strategy}


@dataclass
class FitResult:
    """Outcome of `fit_to_budget` or `shrink_to_ii`: one choice per MAC layer, the estimate it gives, and why."""

    fits: bool
    choices: dict[str, LayerChoice]
    estimate: DesignEstimate
    specs: list[LayerSpec]
    budget: dict[str, float]
    explanation: str
    steps: int = 0
    source: str = SOURCE

    def hls_config(self) -> dict:
        """The per-layer part of an hls4ml config: ``{"LayerName": {name: {"ReuseFactor", "Strategy"}}}``."""
        return {
            "LayerName": {
                c.name: {"ReuseFactor": c.reuse_factor, "Strategy": c.strategy.capitalize()}
                for c in self.choices.values()
            }
        }

    def to_dict(self) -> dict:
        return {
            "fits": self.fits,
            "choices": [c.to_dict() for c in self.choices.values()],
            "budget": dict(self.budget),
            "utilization": {k: round(v, 4) for k, v in self.estimate.utilization(self.budget).items()},
            "estimate": self.estimate.to_dict(),
            "explanation": self.explanation,
            "steps": self.steps,
            "source": self.source,
        }


def _max_ratio(res: Mapping[str, float], budget: Mapping[str, float]) -> tuple[float, str]:
    worst, which = 0.0, "LUT"
    for k in RESOURCE_KINDS:
        have = float(budget.get(k, 0.0))
        use = float(res.get(k, 0.0))
        r = use / have if have > 0 else (0.0 if use <= 1e-9 else math.inf)
        if r > worst:
            worst, which = r, k
    return worst, which


def _candidate_configs(spec: LayerSpec, strategies: Iterable[str], calib: Calibration) -> list[tuple[int, str]]:
    """All (RF, strategy) pairs hls4ml accepts for a MAC layer, fastest first."""
    rfs = valid_reuse_factors(spec.n_in, spec.n_out)
    out = []
    for strat in strategies:
        if strat == "latency" and spec.n_in * spec.n_out > calib.latency_max_weights:
            continue
        out.extend((rf, strat) for rf in rfs)
    return out


@dataclass
class _Evaluator:
    """Cached layer estimates per (layer index, RF, strategy) and whole-design estimates, for the searches."""

    specs: Sequence[LayerSpec]
    clock_period_ns: float
    io_type: str
    backend: str
    calib: Calibration
    axi_pipelined: bool
    cache: dict = field(default_factory=dict)

    def layer(self, i: int, rf: int, strat: str) -> LayerEstimate:
        key = (i, rf, strat)
        if key not in self.cache:
            self.cache[key] = estimate_layer(self.specs[i].with_config(rf, strat), self.clock_period_ns, self.calib)
        return self.cache[key]

    def design(self, cur: Sequence[LayerSpec], lays: Sequence[LayerEstimate]) -> DesignEstimate:
        return estimate_design(
            cur,
            self.clock_period_ns,
            self.io_type,
            backend=self.backend,
            calib=self.calib,
            layer_estimates=lays,
            axi_pipelined=self.axi_pipelined,
        )


def fit_to_budget(
    specs: Sequence[LayerSpec],
    budget: Mapping[str, float],
    clock_period_ns: float = 10.0,
    *,
    io_type: str | None = None,
    backend: str = "VivadoAccelerator",
    calib: Calibration = DEFAULT_CALIBRATION,
    strategies: Sequence[str] = STRATEGIES,
    max_steps: int = 2000,
    axi_pipelined: bool = False,
) -> FitResult:
    """Choose reuse factors and strategies so that the estimate fits ``budget``.

    If the design fits as given it is returned unchanged. Otherwise a greedy search runs:

    1. Start from the fastest configuration: RF 1 for every MAC layer, latency strategy where allowed
       (resource strategy for layers with more than ``calib.latency_max_weights`` weights).
    2. Find the binding resource (highest used/budget). For every MAC layer and every other valid
       (RF, strategy) of that layer (`valid_reuse_factors`, the values hls4ml accepts), compute the
       saving in the binding resource and the cost: the cycles it adds to the design II (weighted
       1000x) and to the layer latency. Take the move with the best ``saving / (1 + cost)``: moves that
       do not lengthen the II (the layer stays faster than the slowest one) come first.
    3. Repeat until the design fits, or no move saves anything on the binding resource; then
       ``fits=False`` with the smallest design seen (lowest maximum utilization) and an explanation.

    Layer estimates are cached per (layer, RF, strategy), so a step costs a few dictionary lookups per
    candidate; visited configurations are not revisited.
    """
    if not specs:
        raise ValueError("fit_to_budget needs at least one layer")
    io_type = io_type or specs[0].io_type
    strategies = tuple(s.lower() for s in strategies)
    bad = [s for s in strategies if s not in STRATEGIES]
    if bad or not strategies:
        raise ValueError(f"strategies {list(strategies)} must be a non-empty subset of {list(STRATEGIES)}")
    eff_budget = {k: float(budget.get(k, 0.0)) for k in RESOURCE_KINDS}
    specs = [replace(s, io_type=io_type, extra=dict(s.extra)) for s in specs]
    mac_idx = [i for i, s in enumerate(specs) if s.is_mac]

    def choices_of(cur: Sequence[LayerSpec]) -> dict[str, LayerChoice]:
        return {cur[i].name: LayerChoice(cur[i].name, cur[i].reuse_factor, cur[i].strategy) for i in mac_idx}

    ev = _Evaluator(specs, clock_period_ns, io_type, backend, calib, axi_pipelined)
    design = ev.design
    layer_est = ev.layer

    given_layers = [estimate_layer(s, clock_period_ns, calib) for s in specs]
    given = design(specs, given_layers)
    if given.fits(eff_budget):
        return FitResult(
            True,
            choices_of(specs),
            given,
            list(specs),
            eff_budget,
            "The design fits as configured: " + utilization_text(given, eff_budget) + ".",
            0,
        )

    cands = {i: _candidate_configs(specs[i], strategies, calib) for i in mac_idx}
    for i in mac_idx:
        if not cands[i]:
            raise ValueError(f"layer {specs[i].name}: no strategy in {list(strategies)} is possible")
    cur = list(specs)
    lays = list(given_layers)
    for i in mac_idx:  # fastest start
        rf, strat = cands[i][0]
        cur[i] = specs[i].with_config(rf, strat)
        lays[i] = layer_est(i, rf, strat)
    est = design(cur, lays)
    best_est, best_specs = est, list(cur)
    best_ratio = _max_ratio(est.resources, eff_budget)[0]
    seen = {tuple((cur[i].reuse_factor, cur[i].strategy) for i in mac_idx)}
    steps = 0
    while steps < max_steps:
        ratio, binding = _max_ratio(est.resources, eff_budget)
        if ratio <= 1.0:
            break
        steps += 1
        state = [(cur[i].reuse_factor, cur[i].strategy) for i in mac_idx]
        best_move: tuple[float, int, int, str] | None = None
        for pos, i in enumerate(mac_idx):
            now = lays[i]
            for rf, strat in cands[i]:
                if (rf, strat) == state[pos]:
                    continue
                nl = layer_est(i, rf, strat)
                saving = now.resources[binding] - nl.resources[binding]
                if saving <= 1e-9:
                    continue
                nxt = state[:pos] + [(rf, strat)] + state[pos + 1 :]
                if tuple(nxt) in seen:
                    continue
                d_ii = max(0, nl.ii_cycles - est.ii_cycles)
                d_lat = max(0, nl.latency_cycles - now.latency_cycles)
                score = saving / (1.0 + 1000.0 * d_ii + d_lat)
                if best_move is None or score > best_move[0]:
                    best_move = (score, i, rf, strat)
        if best_move is None:
            break
        _score, i, rf, strat = best_move
        cur[i] = specs[i].with_config(rf, strat)
        lays[i] = layer_est(i, rf, strat)
        seen.add(tuple((cur[j].reuse_factor, cur[j].strategy) for j in mac_idx))
        est = design(cur, lays)
        r = _max_ratio(est.resources, eff_budget)[0]
        if r < best_ratio:
            best_ratio, best_est, best_specs = r, est, list(cur)

    if est.fits(eff_budget):
        text = (
            f"Fits after {steps} step(s): " + utilization_text(est, eff_budget) + f"; II {est.ii_cycles} cycles, "
            f"latency {est.latency_cycles} cycles ({est.latency_us:.1f} us at {clock_period_ns:g} ns). "
            + choices_text(cur, mac_idx)
        )
        log.info("fit_to_budget: %s", text)
        return FitResult(True, choices_of(cur), est, cur, eff_budget, text, steps)

    text = infeasible_text(best_est, best_specs, eff_budget, mac_idx)
    log.warning("fit_to_budget: %s", text)
    return FitResult(False, choices_of(best_specs), best_est, best_specs, eff_budget, text, steps)


def _area(res: Mapping[str, float], budget: Mapping[str, float]) -> float:
    """Size of a design in board fractions: sum of used/budget over the resources the board has."""
    return sum(float(res.get(k, 0.0)) / float(budget[k]) for k in RESOURCE_KINDS if float(budget.get(k, 0.0)) > 0)


def shrink_to_ii(
    specs: Sequence[LayerSpec],
    budget: Mapping[str, float],
    clock_period_ns: float = 10.0,
    *,
    target_ii: int | None = None,
    io_type: str | None = None,
    backend: str = "VivadoAccelerator",
    calib: Calibration = DEFAULT_CALIBRATION,
    strategies: Sequence[str] = STRATEGIES,
    pinned: Iterable[str] = (),
    axi_pipelined: bool = False,
    max_steps: int = 500,
) -> FitResult:
    """Area recovery: the smallest design whose II stays at most ``target_ii`` (FINN's folding to a target rate).

    Starts from ``specs`` as configured (normally the output of `fit_to_budget`); ``target_ii`` defaults to
    their II, so the throughput is kept and only layers with slack get slower. Greedy: each step takes the
    (RF, strategy) move of one MAC layer that lowers the area most, where area is the sum of used/budget
    over the board's resources; a move is kept only if the design's II stays at most ``target_ii`` and,
    if the design fitted ``budget``, it still does. Latency may grow (a layer with slack finishes later).
    Layers named in ``pinned`` (reuse factors the user set) are left alone. Returns a `FitResult` whose
    ``fits`` says whether the
    final design fits the budget.
    """
    if not specs:
        raise ValueError("shrink_to_ii needs at least one layer")
    io_type = io_type or specs[0].io_type
    strategies = tuple(s.lower() for s in strategies)
    specs = [replace(s, io_type=io_type, extra=dict(s.extra)) for s in specs]
    pinned = set(pinned)
    free = [i for i, s in enumerate(specs) if s.is_mac and s.name not in pinned]
    mac_idx = [i for i, s in enumerate(specs) if s.is_mac]
    eff_budget = {k: float(budget.get(k, 0.0)) for k in RESOURCE_KINDS}
    ev = _Evaluator(specs, clock_period_ns, io_type, backend, calib, axi_pipelined)
    design = ev.design
    layer_est = ev.layer

    cur = list(specs)
    lays = [
        layer_est(i, s.reuse_factor, s.strategy) if s.is_mac else estimate_layer(s, clock_period_ns, calib)
        for i, s in enumerate(specs)
    ]
    est = design(cur, lays)
    start_est = est
    goal = int(target_ii) if target_ii else est.ii_cycles
    cands = {i: [c for c in _candidate_configs(specs[i], strategies, calib)] for i in free}
    rejected: set[tuple[int, int, str]] = set()
    steps = 0
    while steps < max_steps:
        area = _area(est.resources, eff_budget)
        moves = []
        for i in free:
            now = lays[i]
            for rf, strat in cands[i]:
                if (rf, strat) == (cur[i].reuse_factor, cur[i].strategy) or (i, rf, strat) in rejected:
                    continue
                nl = layer_est(i, rf, strat)
                if nl.ii_cycles > goal:
                    continue
                gain = _area(now.resources, eff_budget) - _area(nl.resources, eff_budget)
                if gain > 1e-9:
                    moves.append((gain, i, rf, strat, nl))
        if not moves:
            break
        moves.sort(key=lambda m: -m[0])
        taken = False
        for _gain, i, rf, strat, nl in moves:
            trial = list(cur)
            trial[i] = specs[i].with_config(rf, strat)
            trial_lays = list(lays)
            trial_lays[i] = nl
            t_est = design(trial, trial_lays)
            keeps_fit = t_est.fits(eff_budget) or not est.fits(eff_budget)
            if t_est.ii_cycles <= goal and keeps_fit and _area(t_est.resources, eff_budget) < area:
                cur, lays, est, taken = trial, trial_lays, t_est, True
                break
            rejected.add((i, rf, strat))
        if not taken:
            break
        steps += 1

    saved = {k: start_est.resources[k] - est.resources[k] for k in RESOURCE_KINDS}
    text = (
        f"Area recovery at II <= {goal} cycles ({steps} step(s)): "
        + utilization_text(est, eff_budget)
        + f"; II {est.ii_cycles} cycles, latency {est.latency_cycles} cycles"
        + (f" (saved LUT {saved['LUT']:.0f}, FF {saved['FF']:.0f}, DSP {saved['DSP']:.0f})" if steps else "")
        + ". "
        + choices_text(cur, mac_idx)
    )
    log.info("shrink_to_ii: %s", text)
    choices = {cur[i].name: LayerChoice(cur[i].name, cur[i].reuse_factor, cur[i].strategy) for i in mac_idx}
    return FitResult(est.fits(eff_budget), choices, est, cur, eff_budget, text, steps)
