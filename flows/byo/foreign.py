"""A Brevitas network written by someone else: inspect it before training, convert what can be made bit-exact,
refuse the rest in one line.

Nothing here assumes attribute names: the input quantizer and the BatchNorm/layer pairs are found by running
one probe batch through the network with forward hooks (the executed graph). Per module:

- kept: quantizers the flow's own presets are equivalent to (power-of-two scale, per tensor, zero point 0,
  2..16 bits) and the int32 bias quantizer;
- converted (log line + report entry): a float-scale, per-channel or missing weight quantizer (-> the flow's
  power-of-two weight quantizer at the layer's bits), a float bias (-> `Int32Bias`), a float-scale activation
  quantizer (-> the flow's power-of-two one at its bits), the network's input quantizer (-> the flow's input
  type), a BatchNorm right after a conv/linear (folded after training; a missing bias is added for it);
- refused (`UsageError`, exit 2, before training): binary/bipolar quantizers (1 bit), a BatchNorm that does
  not follow a conv/linear, modules hls4ml has no bit-exact layer for.
"""

from __future__ import annotations

import logging
import math

import brevitas.nn as qnn
import torch
from brevitas.core.restrict_val import RestrictValueType
from brevitas.quant import Int32Bias
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from flows.byo.quantize import SUPPORTED_MODULES
from flows.errors import UsageError
from models.bn import folded_weight_and_bias
from models.quant import QuantSpec, act_quant, input_quant, weight_quant

log = logging.getLogger(__name__)

KEPT_MODULES = (qnn.QuantConv2d, qnn.QuantLinear, qnn.QuantIdentity, qnn.QuantReLU, *SUPPORTED_MODULES)
INPUT_QUANT_NAME = "fireflow_input_quant"


def _proxy_facts(proxy) -> dict:
    """bits, signed, power-of-two, per-channel, binary of a Brevitas quant proxy."""
    inj = proxy.quant_injector

    def attr(name):
        try:
            return getattr(inj, name)
        except Exception:  # an injector raises for attributes its quantizer does not define
            return None

    tensor_quant = getattr(proxy, "tensor_quant", None)
    if tensor_quant is None and hasattr(proxy, "fused_activation_quant_proxy"):
        tensor_quant = proxy.fused_activation_quant_proxy.tensor_quant
    bits = float(proxy.bit_width())
    init = attr("scaling_init")
    const_pow2 = False
    if attr("scaling_impl_type") is not None and str(attr("scaling_impl_type")).endswith("CONST") and init is not None:
        value = float(torch.as_tensor(init).reshape(-1)[0])
        const_pow2 = value > 0 and math.log2(value) == round(math.log2(value))
    zero_point = type(attr("zero_point_impl")).__name__ if attr("zero_point_impl") is not None else "ZeroZeroPoint"
    return {
        "bits": int(bits),
        "signed": bool(proxy.is_signed),
        "pow2": attr("restrict_scaling_type") == RestrictValueType.POWER_OF_TWO or const_pow2,
        "per_channel": bool(attr("scaling_per_output_channel")),
        "binary": "Binary" in type(tensor_quant).__name__ or bits < 2,
        "zero_point": zero_point == "ZeroZeroPoint",
    }


def _refuse_binary(name: str, what: str, model: str) -> None:
    raise UsageError(
        f"model {model!r}: {what} of {name} is a binary/bipolar (1-bit) quantizer, which hls4ml cannot simulate "
        "bit-exactly from QONNX; use a 2-bit or wider power-of-two quantizer (e.g. Int8WeightPerTensorFixedPoint "
        ".let(bit_width=2))"
    )


class Conversions(list):
    """The conversions applied to a foreign network (one line each, for the log and the report)."""

    def add(self, line: str) -> None:
        if line not in self:
            self.append(line)
            log.debug("converted: %s", line)


def _replace(model: nn.Module, name: str, new: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, new)


def _convert_layer(model, name, layer, spec, needs_bias, notes: Conversions, model_name) -> None:
    kind = "conv" if isinstance(layer, qnn.QuantConv2d) else "fc"
    facts = _proxy_facts(layer.weight_quant) if layer.weight_quant.is_quant_enabled else None
    if facts and facts["binary"]:
        _refuse_binary(name, "the weight quantizer", model_name)
    bits = facts["bits"] if facts else spec.bits_for(kind)
    reasons = []
    if facts is None:
        reasons.append(f"float weights -> {bits}-bit power-of-two weight quantizer")
    elif not facts["pow2"] or facts["per_channel"] or not facts["zero_point"] or not facts["signed"]:
        what = "per-channel" if facts["per_channel"] else "float-scale" if not facts["pow2"] else "asymmetric"
        reasons.append(f"{what} weight quantizer -> {bits}-bit power-of-two per-tensor weight quantizer")
    has_bias = layer.bias is not None
    if has_bias and not layer.bias_quant.is_quant_enabled:
        reasons.append("float bias -> int32 bias at the accumulator's scale")
    if needs_bias and not has_bias:
        reasons.append("bias added to fold the BatchNorm after it")
    for proxy_name in ("input_quant", "output_quant"):
        proxy = getattr(layer, proxy_name)
        if proxy.is_quant_enabled:
            reasons.append(f"{proxy_name} removed (the activation quantizers around it set the types)")
    if not reasons:
        layer.return_quant_tensor = False
        return
    kwargs = {"weight_quant": weight_quant(bits), "bias_quant": Int32Bias, "return_quant_tensor": False}
    bias = has_bias or needs_bias
    if kind == "conv":
        new = qnn.QuantConv2d(
            layer.in_channels,
            layer.out_channels,
            layer.kernel_size,
            stride=layer.stride,
            padding=layer.padding,
            bias=bias,
            **kwargs,
        )
    else:
        new = qnn.QuantLinear(layer.in_features, layer.out_features, bias=bias, **kwargs)
    with torch.no_grad():
        new.weight.copy_(layer.weight)
        if has_bias:
            new.bias.copy_(layer.bias)
        elif bias:
            new.bias.zero_()
    _replace(model, name, new)
    notes.add(f"{name}: " + "; ".join(reasons))


def _convert_act(model, name, module, spec, is_input, notes: Conversions, model_name) -> None:
    facts = _proxy_facts(module.act_quant) if module.act_quant.is_quant_enabled else None
    if facts and facts["binary"]:
        _refuse_binary(name, "the activation quantizer", model_name)
    if is_input:
        new = qnn.QuantIdentity(act_quant=input_quant(spec), return_quant_tensor=True)
        if facts is None or facts["signed"] or not facts["pow2"] or facts["bits"] != spec.input_bits:
            notes.add(f"{name}: input quantizer -> the flow's unsigned {spec.input_bits}-bit power-of-two input type")
            _replace(model, name, new)
        module.return_quant_tensor = True
        return
    if facts is None:
        raise UsageError(
            f"model {model_name!r}: {name} ({type(module).__name__}) has no activation quantizer; give it one "
            "(e.g. Uint8ActPerTensorFixedPoint) so every activation has a fixed-point type"
        )
    relu = isinstance(module, qnn.QuantReLU)
    if not facts["pow2"] or facts["per_channel"] or not facts["zero_point"]:
        cls = qnn.QuantReLU if relu else qnn.QuantIdentity
        new = cls(act_quant=act_quant(facts["bits"], signed=facts["signed"] and not relu), return_quant_tensor=True)
        notes.add(f"{name}: float-scale activation quantizer -> {facts['bits']}-bit power-of-two")
        _replace(model, name, new)
        return
    module.return_quant_tensor = True


def layer_units(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """The network's layers: Brevitas layers (their quantizer internals not listed) and leaf torch modules."""
    units, inside = [], []
    for name, module in model.named_modules():
        if any(name.startswith(p + ".") for p in inside) or not name:
            continue
        if type(module).__module__.startswith("brevitas.nn"):
            units.append((name, module))
            inside.append(name)
        elif next(module.children(), None) is None:
            units.append((name, module))
    return units


def trace_calls(model: nn.Module, example: torch.Tensor) -> list[tuple[str, nn.Module, tuple, object]]:
    """(name, module, inputs, output) of every leaf module call of one forward pass, in order."""
    calls = []
    hooks = []
    for name, module in layer_units(model):
        hooks.append(module.register_forward_hook(lambda m, inp, out, name=name: calls.append((name, m, inp, out))))
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(example)
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)
    return calls


def _value(t):
    return t.value if hasattr(t, "value") else t


def find_input_quantizer(model: nn.Module, example: torch.Tensor) -> str | None:
    """The name of the quantizer that the raw input goes through first (found from the executed graph)."""
    for name, module, inputs, _ in trace_calls(model, example):
        if not inputs or not isinstance(_value(inputs[0]), torch.Tensor):
            continue
        x = _value(inputs[0])
        if x.numel() == example.numel() and torch.equal(x.reshape(-1), example.reshape(-1)):
            if isinstance(module, (qnn.QuantIdentity, qnn.QuantReLU)) and module.act_quant.is_quant_enabled:
                return name
            return None  # the input reaches a layer unquantized
    return None


def bn_pairs(model: nn.Module, example: torch.Tensor, model_name: str) -> list[tuple[str, str]]:
    """(layer, BatchNorm) pairs where the BatchNorm takes exactly the conv/linear output; other BNs are refused."""
    calls = trace_calls(model, example)
    pairs = []
    for i, (name, module, inputs, _) in enumerate(calls):
        if not isinstance(module, _BatchNorm):
            continue
        prev = calls[i - 1] if i else None
        if prev is not None and isinstance(prev[1], (nn.Conv2d, nn.Linear)) and inputs and inputs[0] is prev[3]:
            pairs.append((prev[0], name))
            continue
        raise UsageError(
            f"model {model_name!r}: BatchNorm {name} does not directly follow a conv/linear layer, so it cannot be "
            "folded into integer weights; move it right after a QuantConv2d/QuantLinear or remove it"
        )
    return pairs


def adapt_foreign(model: nn.Module, spec: QuantSpec, example: torch.Tensor, model_name: str) -> list[str]:
    """Inspect and convert a foreign Brevitas network in place; returns the conversions (one line each).

    Raises UsageError for what cannot be made bit-exact. BatchNorms stay (they train); `fold_foreign_bn`
    folds them once the weights are final."""
    notes = Conversions()
    for name, module in layer_units(model):
        if not isinstance(module, KEPT_MODULES):
            raise UsageError(
                f"model {model_name!r}: layer {name} is a {type(module).__name__}, which the hardware route (hls4ml, "
                "bit-exact) does not support; use QuantConv2d, QuantLinear, QuantReLU, QuantIdentity, MaxPool2d, "
                "Flatten, BatchNorm or Dropout"
            )
    pairs = bn_pairs(model, example, model_name)
    with_bn = {layer for layer, _ in pairs}
    inp = find_input_quantizer(model, example)
    for name, module in list(model.named_modules()):
        if isinstance(module, (qnn.QuantConv2d, qnn.QuantLinear)):
            _convert_layer(model, name, module, spec, name in with_bn, notes, model_name)
        elif isinstance(module, (qnn.QuantIdentity, qnn.QuantReLU)):
            _convert_act(model, name, module, spec, name == inp, notes, model_name)
    if inp is None:
        notes.add("input: no input quantizer found on the graph input -> the flow's input quantizer put in front")
    return notes


class WithInputQuant(nn.Module):
    """A foreign network behind the flow's input quantizer (when it has none of its own)."""

    def __init__(self, net: nn.Module, spec: QuantSpec):
        super().__init__()
        self.add_module(INPUT_QUANT_NAME, qnn.QuantIdentity(act_quant=input_quant(spec), return_quant_tensor=True))
        self.net = net

    def forward(self, x):
        return self.net(getattr(self, INPUT_QUANT_NAME)(x))


@torch.no_grad()
def fold_foreign_bn(model: nn.Module, example: torch.Tensor, model_name: str) -> list[str]:
    """Fold every BatchNorm into the conv/linear before it (eval statistics); the BN becomes an Identity."""
    done = []
    for layer_name, bn_name in bn_pairs(model, example, model_name):
        layer, bn = model.get_submodule(layer_name), model.get_submodule(bn_name)
        w, b = folded_weight_and_bias(layer.weight, layer.bias, bn)
        layer.weight.copy_(w)
        layer.bias.copy_(b)
        _replace(model, bn_name, nn.Identity())
        done.append(f"{bn_name}: BatchNorm folded into {layer_name}")
    return done
