"""Compression chosen for an accuracy budget: per-layer sensitivity analysis and candidate settings.

Deep Compression chose each layer's pruning from a sensitivity analysis (its Figures 5 and 6: accuracy
against the fraction of weights kept, one curve per layer, no retraining). This module measures the same
curves on the validation split, plus accuracy against each layer's weight bit width (power-of-two
fixed-point rounding, what the hardware quantizers do), and turns them into candidate settings: for a
tolerance t, every knob takes its most aggressive value whose own accuracy loss stays within t
(per-layer densities, conv/fc weight bits, activation bits, the structured-pruning ratio). A ladder of
tolerances gives a ladder of candidates from mild to aggressive; the `search` step
(flows/steps/search.py) costs each one with the hardware estimator and keeps the cheapest whose
accuracy, after a short fine-tuning, stays within the budget.

Accuracies here are fractions (0..1); budgets and drops in the report are percentage points.
"""

from __future__ import annotations

import copy
import logging
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import torch
from torch import nn

from flows.prune import prunable_layers

log = logging.getLogger(__name__)

DENSITIES = (1.0, 0.7, 0.5, 0.35, 0.25, 0.15, 0.1, 0.05)
WEIGHT_BITS = (8, 6, 5, 4, 3)
ACT_BITS = (8, 6, 5, 4)
STRUCTURE_RATIOS = (0.0, 0.25, 0.5)
# tolerances tried, as multiples of the budget: single-knob losses before retraining overstate what a
# retrained network loses, and several knobs add up, so the ladder spans both sides of the budget
TOLERANCES = (0.25, 0.5, 1.0, 2.0, 4.0)


@dataclass
class Candidate:
    """One setting of every knob the search controls (what the flow's config keys take)."""

    tolerance_pp: float
    density: dict[str, float]
    conv_bits: int
    fc_bits: int
    act_bits: int
    structure_ratio: float
    # filled by the step: hardware estimate and accuracy after fine-tuning
    hardware: dict = field(default_factory=dict)
    val_accuracy: float | None = None
    predicted_drop_pp: float | None = None

    def key(self) -> tuple:
        return (tuple(sorted(self.density.items())), self.conv_bits, self.fc_bits, self.act_bits, self.structure_ratio)

    def to_dict(self) -> dict:
        return asdict(self)


def keep_top(weight: torch.Tensor, density: float) -> torch.Tensor:
    """Mask (1 = kept) of the largest-magnitude `density` fraction of the weights."""
    if density >= 1:
        return torch.ones_like(weight)
    k = max(1, int(round(density * weight.numel())))
    threshold = torch.topk(weight.detach().abs().flatten(), k).values[-1]
    return (weight.detach().abs() >= threshold).to(weight.dtype)


def fake_quant(weight: torch.Tensor, bits: int) -> torch.Tensor:
    """Symmetric narrow-range rounding to `bits` with a power-of-two scale covering the largest weight."""
    top = float(weight.detach().abs().max())
    if top == 0:
        return weight.detach().clone()
    levels = 2 ** (bits - 1) - 1
    scale = 2.0 ** math.ceil(math.log2(top / levels))
    return torch.clamp(torch.round(weight.detach() / scale), -levels, levels) * scale


def layer_sensitivity(
    model: nn.Module,
    accuracy: Callable[[nn.Module], float],
    densities: tuple[float, ...] = DENSITIES,
    weight_bits: tuple[int, ...] = WEIGHT_BITS,
) -> dict[str, dict]:
    """Per conv/fc layer: accuracy with only that layer pruned to each density, and with only that
    layer's weights rounded to each bit width (no retraining; the model is restored after each)."""
    out = {}
    for name, module, kind in prunable_layers(model):
        original = module.weight.detach().clone()
        row = {"kind": kind, "params": int(original.numel()), "density": {}, "weight_bits": {}}
        with torch.no_grad():
            for d in densities:
                module.weight.copy_(original * keep_top(original, d))
                row["density"][str(d)] = accuracy(model)
            for b in weight_bits:
                module.weight.copy_(fake_quant(original, b))
                row["weight_bits"][str(b)] = accuracy(model)
            module.weight.copy_(original)
        out[name] = row
        log.info(
            "sensitivity %-26s density %s | bits %s",
            name,
            " ".join(f"{float(d):g}:{a:.3f}" for d, a in row["density"].items()),
            " ".join(f"{b}:{a:.3f}" for b, a in row["weight_bits"].items()),
        )
    return out


def most_aggressive(curve: dict[str, float], base: float, tolerance: float, smaller_is_more: bool = True):
    """The most aggressive setting (smallest value, or largest with smaller_is_more=False) whose accuracy
    stays within `tolerance` (a fraction) of `base`; the mildest setting when none does."""
    values = sorted(curve, key=float, reverse=not smaller_is_more)  # most aggressive first
    for v in values:
        if base - curve[v] <= tolerance + 1e-9:
            return float(v)
    return float(values[-1])


def candidate_for(
    tolerance_pp: float,
    base: float,
    layers: dict[str, dict],
    act_curve: dict[str, float],
    structure_curve: dict[str, float],
) -> Candidate:
    """Every knob at its most aggressive value within the tolerance (on its own, before retraining)."""
    t = tolerance_pp / 100
    density = {name: most_aggressive(row["density"], base, t) for name, row in layers.items()}
    bits = {}
    for kind in ("conv", "fc"):
        rows = [row for row in layers.values() if row["kind"] == kind]
        # a width serves every layer of the kind: the most aggressive that each layer tolerates
        bits[kind] = int(max((most_aggressive(r["weight_bits"], base, t) for r in rows), default=8))
    # activation widths are judged against the widest one tried (a Brevitas model before QAT already loses
    # some accuracy at any width, which QAT recovers): the cost of going narrower
    act = int(most_aggressive(act_curve, act_reference(act_curve), t)) if act_curve else 8
    ratio = most_aggressive(structure_curve, base, t, smaller_is_more=False) if structure_curve else 0.0
    return Candidate(tolerance_pp, density, bits["conv"], bits["fc"], act, ratio)


def candidates(
    budget_pp: float,
    base: float,
    layers: dict[str, dict],
    act_curve: dict[str, float],
    structure_curve: dict[str, float],
    tolerances: tuple[float, ...] = TOLERANCES,
) -> list[Candidate]:
    """The distinct candidates of the tolerance ladder, mildest first."""
    seen, out = set(), []
    for mult in sorted(tolerances):
        c = candidate_for(max(budget_pp, 0.05) * mult, base, layers, act_curve, structure_curve)
        if c.key() not in seen:
            seen.add(c.key())
            out.append(c)
    return out


def act_reference(act_curve: dict[str, float]) -> float:
    """The accuracy at the widest activation width tried."""
    return act_curve[max(act_curve, key=float)] if act_curve else 0.0


def kept_fraction(density: dict[str, float], layers: dict[str, dict]) -> float:
    """Fraction of all conv/fc weights a candidate keeps."""
    total = sum(row["params"] for row in layers.values())
    return sum(density.get(name, 1.0) * row["params"] for name, row in layers.items()) / max(total, 1)


@torch.no_grad()
def apply_weights(model: nn.Module, density: dict[str, float], bits: dict[str, int]) -> dict[str, torch.Tensor]:
    """Prune each layer to its density and round its weights to its kind's width, in place; the masks."""
    masks = {}
    for name, module, kind in prunable_layers(model):
        mask = keep_top(module.weight, density.get(name, 1.0))
        module.weight.copy_(fake_quant(module.weight * mask, bits[kind]) * mask)
        masks[f"{name}.weight" if name else "weight"] = mask
    return masks


def quantized_copy(model: nn.Module, cand: Candidate) -> nn.Module:
    """A copy with the candidate's pruning and weight rounding applied (what its hardware would compute,
    up to activation rounding)."""
    m = copy.deepcopy(model)
    apply_weights(m, cand.density, {"conv": cand.conv_bits, "fc": cand.fc_bits})
    return m


def config_overrides(cand: Candidate, structure: bool) -> dict:
    """The config keys a candidate sets for the steps after the search (dotted, as `--set` takes them)."""
    out = {
        "compress.enabled": True,
        "compress.prune": True,
        "compress.share": True,
        "compress.density": dict(cand.density),
        "compress.quality": {},
        "compress.conv_bits": cand.conv_bits,
        "compress.fc_bits": cand.fc_bits,
        "quant.weight_bits": max(cand.conv_bits, cand.fc_bits),
        "quant.conv_weight_bits": cand.conv_bits,
        "quant.fc_weight_bits": cand.fc_bits,
        "quant.act_bits": cand.act_bits,
    }
    if structure:
        out["structure.ratio"] = cand.structure_ratio
        out["structure.ratios"] = {}
        if cand.structure_ratio == 0:  # no channel removed: nothing to fine-tune (the step copies the weights)
            out["structure.epochs"] = 0
    return out
