"""Facts about a network's weights that several steps need: layers, sizes, zero masks, reference outputs.

- `quantized_bytes`: weights at their QAT bit widths plus 32-bit biases.
- `hardware_weight_stats`: per layer, the Brevitas-quantized weights the hardware gets (distinct
  values, zeros); more than 2^b distinct values in a b-bit layer is a `VerificationError`.
- `masks_from_zeros`: pruning masks as the zero pattern of the weights (pruned weights are exactly 0).
- `reference_logits`: the quantized PyTorch model in float64 (exact fixed-point arithmetic), the
  reference the QONNX check and the C simulation are compared with.
"""

from __future__ import annotations

import numpy as np
import torch

from flows.errors import VerificationError
from flows.prune import prunable_layers
from models.quant import QuantSpec


def quantized_bytes(model: torch.nn.Module, spec: QuantSpec) -> float:
    """Weights at their QAT bit width plus 32-bit biases."""
    bits = 0
    for _, m, kind in prunable_layers(model):
        width = int(m.quant_weight().bit_width) if hasattr(m, "quant_weight") else spec.bits_for(kind)
        bits += m.weight.numel() * width + (m.bias.numel() * 32 if m.bias is not None else 0)
    return bits / 8


@torch.no_grad()
def hardware_weight_stats(model: torch.nn.Module, spec: QuantSpec) -> list[dict]:
    """Per layer: the weights the hardware gets (Brevitas-quantized), their distinct values and zeros.

    A b-bit layer may hold at most 2^b distinct values (the weight-sharing width); anything else
    means the quantizer is not what the report claims, so it fails loudly.
    """
    model.eval()
    rows = []
    for name, m, kind in prunable_layers(model):
        quant = m.quant_weight() if hasattr(m, "quant_weight") else None
        qw = quant.value if quant is not None else m.weight
        # the layer's own quantizer width: a foreign network keeps its weight bits (flows/byo/foreign.py)
        bits = int(quant.bit_width) if quant is not None else spec.bits_for(kind)
        distinct = int(torch.unique(qw).numel())
        if distinct > 2**bits:
            raise VerificationError(f"layer {name}: {distinct} distinct quantized weights > 2^{bits}")
        rows.append(
            {
                "name": name,
                "kind": kind,
                "bits": bits,
                "distinct_values": distinct,
                "total": int(qw.numel()),
                "active": int((qw != 0).sum()),
                "bias": int(m.bias.numel()) if m.bias is not None else 0,
            }
        )
    return rows


def masks_from_zeros(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Pruning masks as the zero pattern of the weights (pruned weights are exactly 0)."""
    masks = {}
    for name, module, _ in prunable_layers(model):
        w = module.weight.detach()
        if (w == 0).any():
            masks[f"{name}.weight"] = (w != 0).to(w.dtype)
    return masks


def reference_logits(model: torch.nn.Module, xq: torch.Tensor) -> np.ndarray:
    """The quantized PyTorch model in float64 (exact fixed-point arithmetic) on quantized inputs."""
    model = model.double().eval()
    with torch.no_grad():
        out = model(xq.double())
    out = out.value if hasattr(out, "value") else out
    model.float()
    return out.numpy()
