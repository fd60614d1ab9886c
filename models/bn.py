"""Batch-norm folding: train in float with BatchNorm, deploy the same network without it.

VGG-style networks train far better with batch norm (conv -> BN -> ReLU), but the quantized, exported
network has none: hls4ml would need a separate scale-and-shift layer, and Brevitas' 32-bit integer
biases need the bias to sit in the convolution. So the float network is built with `batch_norm=True`,
trained, and its BN layers are folded into the preceding convolutions (eval-mode semantics, i.e. the
running statistics):

    W' = W * g / sqrt(var + eps)        b' = (b - mean) * g / sqrt(var + eps) + beta

`fold_batchnorm(model)` returns a state_dict whose keys are exactly those of the `batch_norm=False`
variant of the same network, so it loads into the BN-free float model, or into the quantized model with
only quantizer keys missing. A model with BN lists its (conv, bn) module pairs with `bn_pairs()`.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm


def folded_weight_and_bias(
    weight: torch.Tensor, bias: torch.Tensor | None, bn: _BatchNorm
) -> tuple[torch.Tensor, torch.Tensor]:
    """(W', b') of a conv or linear layer followed by `bn`, computed in float64, returned in W's dtype."""
    if bn.running_mean is None or bn.running_var is None:
        raise ValueError("cannot fold a BatchNorm without running statistics (track_running_stats=False)")
    w = weight.detach().double()
    out = w.shape[0]
    b = bias.detach().double() if bias is not None else torch.zeros(out, dtype=torch.float64)
    gamma = bn.weight.detach().double() if bn.weight is not None else torch.ones(out, dtype=torch.float64)
    beta = bn.bias.detach().double() if bn.bias is not None else torch.zeros(out, dtype=torch.float64)
    scale = gamma / torch.sqrt(bn.running_var.detach().double() + bn.eps)
    w_folded = w * scale.reshape(-1, *([1] * (w.ndim - 1)))
    b_folded = (b - bn.running_mean.detach().double()) * scale + beta
    return w_folded.to(weight.dtype), b_folded.to(weight.dtype)


def fold_batchnorm(model: nn.Module) -> dict[str, torch.Tensor]:
    """The model's state_dict with every BN folded into its preceding layer and the BN entries removed.

    The model is not changed. Every BatchNorm module must appear in `model.bn_pairs()`; a model without
    BatchNorm layers (and without `bn_pairs`) gets a copy of its own state_dict back.
    """
    modules = dict(model.named_modules())
    pairs: list[tuple[str, str]] = list(model.bn_pairs()) if hasattr(model, "bn_pairs") else []
    paired = {bn for _, bn in pairs}
    unpaired = sorted(n for n, m in modules.items() if isinstance(m, _BatchNorm) and n not in paired)
    if unpaired:
        raise ValueError(f"BatchNorm layers {unpaired} are not listed by bn_pairs(); cannot fold them")
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    for layer_name, bn_name in pairs:
        layer, bn = modules.get(layer_name), modules.get(bn_name)
        if not isinstance(layer, (nn.Conv2d, nn.Linear)) or not isinstance(bn, _BatchNorm):
            raise ValueError(f"bn_pairs() entry ({layer_name!r}, {bn_name!r}) is not a (conv/linear, BatchNorm) pair")
        if layer.weight.shape[0] != bn.num_features:
            raise ValueError(f"{layer_name} has {layer.weight.shape[0]} outputs but {bn_name} {bn.num_features}")
        if layer.bias is None:
            raise ValueError(f"{layer_name} has no bias to fold {bn_name} into (build it with bias=True)")
        w, b = folded_weight_and_bias(layer.weight, layer.bias, bn)
        state[f"{layer_name}.weight"] = w
        state[f"{layer_name}.bias"] = b
        for key in [k for k in state if k.startswith(f"{bn_name}.")]:
            del state[key]
    return state
