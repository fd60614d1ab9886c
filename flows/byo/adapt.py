"""Which route a user's network takes, and the network each stage of the build works on.

Routes: `own` (the registry's networks, unchanged), `plain` (no Brevitas layer even when asked for a quantized
network: the flow quantizes it, flows/byo/quantize.py) and `brevitas` (the network brings its own quantizers:
inspected and converted or refused, flows/byo/foreign.py). Stages: `train` (the network as trained: BatchNorms
still there), `float` (BatchNorms folded: what pruning and sharing see) and `quant` (the hardware model).
Every stage is a deterministic rewrite of a freshly built network, so a checkpoint of that stage loads into it.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from flows.byo.channels import check_narrowing
from flows.byo.foreign import WithInputQuant, adapt_foreign, find_input_quantizer, fold_foreign_bn
from flows.byo.pool import check_pool_windows
from flows.byo.quantize import check_plain_ops, fold_plain, is_quantized, quantize_plain
from flows.errors import UsageError
from models.quant import QuantSpec

STAGES = ("train", "float", "quant")


def route_of(quantized_build: nn.Module) -> str:
    """`plain` or `brevitas`, from the network the builder returns when asked for a quantized one."""
    return "brevitas" if is_quantized(quantized_build) else "plain"


def adapt(model: nn.Module, route: str, stage: str, spec: QuantSpec, in_shape, name: str) -> tuple[nn.Module, list]:
    """The network `stage` works on, and the conversions applied (one line each). Raises UsageError on refusal."""
    if route == "own":
        return model, []
    example = torch.rand((2, *in_shape), generator=torch.Generator().manual_seed(0))
    if route == "plain":
        if stage == "train":
            check_plain_ops(model, name)
            return model, []
        folded = fold_plain(model, name)
        check_pool_windows(folded, example, name)  # a global pool's window is its input map's size
        if stage == "float":
            return folded, []
        relu6 = [n for n, m in folded.named_modules() if isinstance(m, nn.ReLU6)]
        notes = [f"quantized by the flow: {describe_plain(spec)}"] + ([describe_relu6(relu6, spec)] if relu6 else [])
        return quantize_plain(folded, spec, name), notes
    if not is_quantized(model):  # the builder honours quant.enabled=False: its float twin trains as it is
        return model, []
    notes = adapt_foreign(model, spec, example, name)
    if find_input_quantizer(model, example) is None:
        model = WithInputQuant(model, spec)
    if stage != "train":
        fold_foreign_bn(model, example, name)
    return model, list(notes)


def finish_training(model: nn.Module, route: str, in_shape, name: str) -> tuple[nn.Module, list]:
    """After float training: the trained network with its BatchNorms folded (the `float` stage's form)."""
    if route == "plain":
        return fold_plain(model, name), ["BatchNorm folded into the layers before it (torch.fx)"]
    if route == "brevitas" and is_quantized(model):
        example = torch.rand((2, *in_shape), generator=torch.Generator().manual_seed(0))
        return model, fold_foreign_bn(model, example, name)
    return model, []


def relu6_top(bits: int) -> float:
    """Where a ReLU6's quantizer saturates at initialisation: (2^bits - 1) steps of the smallest power-of-two
    scale that reaches 6 (8 bits: 255 x 2^-5 = 7.97; QAT trains the scale, on powers of two)."""
    levels = 2**bits - 1
    return levels * 2.0 ** math.ceil(math.log2(6.0 / levels))


def describe_relu6(names: list[str], spec: QuantSpec) -> str:
    return (
        f"ReLU6 {', '.join(names)} -> {spec.act_bits}-bit quantized ReLU saturating at its power-of-two "
        f"quantizer's top ({relu6_top(spec.act_bits):g} at initialisation, not 6)"
    )


def check_structure(model: nn.Module, route: str, name: str, raw: nn.Module | None = None, in_shape=None) -> None:
    """structure.enabled on a user's network (the `float` stage): refused before training unless the network
    declares its channel groups or, plain (`raw`: as its builder returns it), they can be inferred from its graph
    (flows/byo/channels.py)."""
    if route == "plain":
        check_narrowing(raw, in_shape, name)
    if route == "brevitas" and not (hasattr(model, "channel_groups") and hasattr(model, "arch_for_widths")):
        raise UsageError(
            f"model {name!r} does not declare channel groups; structured pruning needs them (declare "
            "channel_groups()/arch_for_widths() on the network, or --set structure.enabled=false)"
        )


def describe_plain(spec: QuantSpec) -> str:
    return (
        f"conv weights {spec.bits_for('conv')}-bit, fc weights {spec.bits_for('fc')}-bit (power-of-two, per "
        f"tensor), activations {spec.act_bits}-bit, input {spec.input_bits}-bit, int32 biases"
    )
