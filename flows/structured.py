"""Structured (channel/filter) pruning: the network physically shrinks, and the exported HLS with it.

Each network lists its channel groups (models/groups.py): a producer's output channels and every
consumer of them (both expand convs behind a Fire squeeze, the two halves of a Fire Concat at their
offsets, the Linear after a flatten with H*W inputs per channel). For every group, the channels with
the smallest L1 (or L2) norm of their filters are removed (Li et al., "Pruning Filters for Efficient
ConvNets", 2017); a narrower network is built from the model's own `arch_for_widths` and the kept
slices of every weight are copied into it, so nothing is masked: the exported QONNX graph and the
hls4ml project have the reduced channel counts. Fine-tuning follows.

Why not Torch-Pruning: version 1.6.1's dependency graph produced a Linear with 342 inputs for 252
features on our Fire network (its Concat -> Flatten index mapping), the kind of Concat bug the issue
warned about; our networks declare their dependencies explicitly instead, and tests check them.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from models.groups import ChannelGroup

log = logging.getLogger(__name__)


@dataclass
class LayerShape:
    name: str
    kind: str
    in_channels: int
    out_channels: int
    params: int
    macs: int


def layer_shapes(model: nn.Module, in_shape: tuple[int, ...]) -> list[LayerShape]:
    """Channels, parameters and multiply-accumulates of every conv/linear layer (one image)."""
    shapes: list[LayerShape] = []
    hooks = []

    def hook(name):
        def fn(module, inputs, output):
            out = output.value if hasattr(output, "value") else output
            params = module.weight.numel() + (module.bias.numel() if module.bias is not None else 0)
            if isinstance(module, nn.Conv2d):
                k = module.kernel_size[0] * module.kernel_size[1] * module.in_channels // module.groups
                macs = int(out.shape[2] * out.shape[3] * module.out_channels * k)
                shapes.append(LayerShape(name, "conv", module.in_channels, module.out_channels, params, macs))
            else:
                shapes.append(
                    LayerShape(
                        name,
                        "fc",
                        module.in_features,
                        module.out_features,
                        params,
                        module.in_features * module.out_features,
                    )
                )

        return fn

    for name, module in model.named_modules():
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            hooks.append(module.register_forward_hook(hook(name)))
    was_training = model.training
    model.eval()
    with torch.no_grad():
        model(torch.zeros((1, *in_shape)))
    model.train(was_training)
    for h in hooks:
        h.remove()
    return shapes


def channel_importance(producer: nn.Module, norm: str = "l1") -> torch.Tensor:
    """Per output channel: the L1 (or L2) norm of its filter (conv) or weight row (linear)."""
    w = producer.weight.detach().flatten(1)
    return w.abs().sum(1) if norm == "l1" else w.pow(2).sum(1).sqrt()


def choose_channels(
    model: nn.Module, ratio: float, ratios: dict[str, float], min_channels: int, norm: str = "l1", decl=None
) -> dict[str, torch.Tensor]:
    """Indices (sorted) of the channels each group keeps: the strongest (1 - ratio) of them. `decl` declares the
    groups when the network itself does not (a plain network's, inferred: flows/byo/channels.py)."""
    groups = {g.name: g for g in (model if decl is None else decl).channel_groups()}
    unknown = sorted(set(ratios) - set(groups))
    if unknown:
        raise ValueError(f"structured pruning ratios name unknown groups {unknown}; groups: {sorted(groups)}")
    modules = dict(model.named_modules())
    keep = {}
    for name, group in groups.items():
        r = ratios.get(name, ratio)
        if not 0 <= r < 1:
            raise ValueError(f"pruning ratio of {name} must be in [0, 1), got {r}")
        scores = channel_importance(modules[group.producer], norm)
        n = scores.numel()
        k = max(min(min_channels, n), int(round(n * (1 - r))))
        keep[name] = torch.sort(torch.topk(scores, k).indices).values
    return keep


def _input_index(
    module_name: str,
    module: nn.Module,
    groups: list[ChannelGroup],
    keep: dict[str, torch.Tensor],
    widths_before: dict[str, int],
) -> torch.Tensor:
    """Which input features of `module` survive: the kept channels of every group feeding it."""
    n_in = module.in_channels if isinstance(module, nn.Conv2d) else module.in_features
    alive = torch.ones(n_in, dtype=torch.bool)
    for group in groups:
        for consumer, offset, span in group.consumers:
            if consumer != module_name:
                continue
            dropped = torch.ones(widths_before[group.name], dtype=torch.bool)
            dropped[keep[group.name]] = False
            for c in torch.nonzero(dropped).flatten().tolist():
                alive[(offset + c) * span : (offset + c + 1) * span] = False
    return torch.nonzero(alive).flatten()


@torch.no_grad()
def shrink(model: nn.Module, keep: dict[str, torch.Tensor], build: Callable[[dict], nn.Module], decl=None) -> nn.Module:
    """Build the narrower network (`build(arch)`) and copy the surviving weight slices into it (`decl` as in
    `choose_channels`)."""
    decl = model if decl is None else decl
    groups = decl.channel_groups()
    modules = dict(model.named_modules())
    widths_before = {g.name: modules[g.producer].weight.shape[0] for g in groups}
    widths = {name: int(idx.numel()) for name, idx in keep.items()}
    small = build(decl.arch_for_widths(widths))
    out_index = {g.producer: keep[g.name] for g in groups}
    small_modules = dict(small.named_modules())
    for name, module in modules.items():
        if not isinstance(module, (nn.Conv2d, nn.Linear)):
            continue
        target = small_modules[name]
        w = module.weight
        if name in out_index:
            w = w[out_index[name]]
        w = w[:, _input_index(name, module, groups, keep, widths_before)]
        if tuple(w.shape) != tuple(target.weight.shape):
            raise RuntimeError(
                f"{name}: sliced weight {tuple(w.shape)} does not fit the rebuilt layer "
                f"{tuple(target.weight.shape)}: the model's channel groups are inconsistent"
            )
        target.weight.copy_(w)
        if module.bias is not None:
            target.bias.copy_(module.bias[out_index[name]] if name in out_index else module.bias)
    return small


def structure_rows(before: list[LayerShape], after: list[LayerShape]) -> list[dict]:
    by_name = {s.name: s for s in after}
    rows = []
    for b in before:
        a = by_name.get(b.name, b)
        rows.append(
            {
                "name": b.name,
                "kind": b.kind,
                "in_before": b.in_channels,
                "in_after": a.in_channels,
                "out_before": b.out_channels,
                "out_after": a.out_channels,
                "params_before": b.params,
                "params_after": a.params,
                "macs_before": b.macs,
                "macs_after": a.macs,
            }
        )
    return rows


def structure_markdown(sec: dict) -> str:
    pct = lambda a, b: f"{100 * (1 - a / b):.1f}%" if b else "—"  # noqa: E731
    lines = [
        "## Structure (channel pruning)",
        "",
        f"Parameters {sec['params_before']:,} -> {sec['params_after']:,} "
        f"({pct(sec['params_after'], sec['params_before'])} fewer); "
        f"MACs per image {sec['macs_before']:,} -> {sec['macs_after']:,} "
        f"({pct(sec['macs_after'], sec['macs_before'])} fewer). Test accuracy of the float32 model: "
        f"{100 * sec['accuracy_before']:.2f}% before channel pruning (the `train` step's model) -> "
        f"{100 * sec['accuracy_pruned']:.2f}% right after pruning -> {100 * sec['accuracy_after']:.2f}% after "
        f"{sec['epochs']} fine-tuning epochs (the channel-pruned model every later stage starts from)"
        + (
            f"; on the validation split {100 * sec['val_accuracy_before']:.2f}% -> "
            f"{100 * sec['val_accuracy_pruned']:.2f}% -> {100 * sec['val_accuracy_after']:.2f}%."
            if sec.get("val_accuracy_after") is not None
            else "."
        ),
        "",
        "| layer | in ch | out ch | params | MACs |",
        "|---|---:|---:|---:|---:|",
    ]
    for r in sec["layers"]:
        lines.append(
            f"| {r['name']} | {r['in_before']} -> {r['in_after']} | {r['out_before']} -> {r['out_after']} | "
            f"{r['params_before']:,} -> {r['params_after']:,} | {r['macs_before']:,} -> {r['macs_after']:,} |"
        )
    return "\n".join(lines)
