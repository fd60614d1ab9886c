"""Magnitude pruning with retraining (Han et al., 2015; Deep Compression stage 1).

Per layer, the pruning threshold is a *quality parameter* times the standard deviation of the layer's
weights: `threshold_l = q_l * std(W_l)`, and every weight with |w| <= threshold is removed. Pruning is
iterative: over `iterations` rounds the quality parameter ramps up to its final value, each round
prunes (masks only grow), then retrains the surviving weights with the mask fixed. The final masks
are kept fixed by every later stage (weight sharing, QAT).

A layer's quality parameter can be given directly (`quality`, ramped linearly over the rounds) or
follow from a target density (`density`, the fraction of weights to keep): then round k keeps
density^(k/iterations) of the layer, and its quality parameter is the one that does so on the
current weights, q_k = quantile(|W|, 1 - d_k) / std(W). Either way the rule that prunes is the
paper's threshold = q x std, and the report prints q, std and the threshold per layer.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import torch
from torch import nn

log = logging.getLogger(__name__)


@dataclass
class LayerPruning:
    """What pruning did to one layer."""

    name: str
    kind: str  # "conv" or "fc"
    total: int
    active: int
    quality: float
    std: float
    threshold: float

    @property
    def pruned(self) -> int:
        return self.total - self.active

    @property
    def density(self) -> float:
        return self.active / self.total if self.total else 0.0


@dataclass
class PruneResult:
    masks: dict[str, torch.Tensor]  # parameter name ("ip1.weight") -> 0/1 float mask
    layers: list[LayerPruning] = field(default_factory=list)
    history: list[dict] = field(default_factory=list)


def prunable_layers(model: nn.Module) -> list[tuple[str, nn.Module, str]]:
    """(module name, module, kind) of every conv and fully connected layer."""
    out = []
    for name, module in model.named_modules():
        if isinstance(module, nn.Conv2d):
            out.append((name, module, "conv"))
        elif isinstance(module, nn.Linear):
            out.append((name, module, "fc"))
    return out


def quality_for_density(weight: torch.Tensor, density: float, std: float | None = None) -> float:
    """The quality parameter that keeps `density` of the weights under the q x std rule."""
    if not 0 < density <= 1:
        raise ValueError(f"density must be in (0, 1], got {density}")
    w = weight.detach().abs().flatten()
    std = float(weight.detach().std()) if std is None else std
    if density >= 1 or std == 0:
        return 0.0
    k = max(1, int(round((1 - density) * w.numel())))
    threshold = float(torch.kthvalue(w, k).values)
    return threshold / std


def check_layer_names(model: nn.Module, *settings: dict) -> None:
    layers = {name for name, _, _ in prunable_layers(model)}
    unknown = sorted(set().union(*[set(x) for x in settings]) - layers)
    if unknown:
        raise ValueError(f"pruning settings name unknown layers {unknown}; layers: {sorted(layers)}")


@torch.no_grad()
def prune_round(
    model: nn.Module,
    k: int,
    iterations: int,
    quality: dict[str, float],
    density: dict[str, float],
    default_quality: float | None,
    stds: dict[str, float],
    masks: dict[str, torch.Tensor],
) -> list[LayerPruning]:
    """Round k of `iterations`: zero |w| <= q_k * std (std of the layer before pruning); masks only shrink."""
    report = []
    for name, module, kind in prunable_layers(model):
        key = f"{name}.weight" if name else "weight"
        w = module.weight
        mask = masks.get(key, torch.ones_like(w))
        std = stds[name]
        if name in density:
            q = quality_for_density(w * mask, density[name] ** (k / iterations), std)
        elif name in quality or default_quality is not None:
            q = quality.get(name, default_quality) * k / iterations
        else:
            q = 0.0
        threshold = q * std
        if q > 0:
            mask = mask * (w.abs() > threshold).to(w.dtype)
        masks[key] = mask
        w.mul_(mask)
        report.append(LayerPruning(name, kind, w.numel(), int(mask.sum()), q, std, threshold))
    return report


def log_layers(layers: list[LayerPruning], title: str) -> None:
    log.info("%s", title)
    for lp in layers:
        log.info(
            "  %-22s %-4s threshold %.5f (q %.3f x std %.5f): %7d of %7d weights kept (%.1f%%)",
            lp.name,
            lp.kind,
            lp.threshold,
            lp.quality,
            lp.std,
            lp.active,
            lp.total,
            100 * lp.density,
        )


def magnitude_prune(
    model: nn.Module,
    iterations: int,
    retrain,  # callable(model, masks, round_index) -> list[dict] (training history)
    quality: dict[str, float] | None = None,
    density: dict[str, float] | None = None,
    default_quality: float | None = None,
) -> PruneResult:
    """Iterative pruning: each round prunes (see `prune_round`), then retrains with the masks fixed."""
    if iterations < 1:
        raise ValueError(f"pruning iterations must be >= 1, got {iterations}")
    quality, density = dict(quality or {}), dict(density or {})
    check_layer_names(model, quality, density)
    for name, d in density.items():
        if not 0 < d <= 1:
            raise ValueError(f"density of {name} must be in (0, 1], got {d}")
    stds = {name: float(m.weight.detach().std()) for name, m, _ in prunable_layers(model)}
    masks: dict[str, torch.Tensor] = {}
    result = PruneResult(masks)
    for k in range(1, iterations + 1):
        layers = prune_round(model, k, iterations, quality, density, default_quality, stds, masks)
        log_layers(layers, f"pruning round {k}/{iterations}")
        history = retrain(model, masks, k) or []
        result.history.extend({**h, "round": k} for h in history)
        result.layers = layers
    # retraining never revives a weight (masks are re-applied after every step); recount to be sure
    modules = dict(model.named_modules())
    result.layers = [
        LayerPruning(
            lp.name, lp.kind, lp.total, int((modules[lp.name].weight != 0).sum()), lp.quality, lp.std, lp.threshold
        )
        for lp in result.layers
    ]
    return result
