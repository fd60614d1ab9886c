"""Plain float PyTorch in: quantize a user's `nn.Module` with Brevitas' graph tools, by the flow's hardware rules.

`fold_plain(model)` traces the network (brevitas.fx), turns functional calls into modules and folds every
BatchNorm into the conv/linear before it: the float network the later stages (pruning, sharing) work on.
`quantize_plain(folded, spec)` then inserts the quantizers that make hls4ml's C simulation bit-exact
(../shared/TOOLCHAIN.md, "Quantizing a plain float PyTorch net"):

- power-of-two scales everywhere (`Int8WeightPerTensorFixedPoint` at the recipe's bits, fixed-point
  activation quantizers), int32 biases at the accumulator's scale (`Int32Bias`);
- no requantizer in front of a conv/linear (`input_quant=None`): quantize() would put a signed one between
  Flatten and Linear, which leaves a Transpose in the exported graph;
- the input quantizer it inserts (signed) is replaced by the flow's own unsigned input quantizer, which
  becomes the hardware input type;
- the inputs of a `torch.cat` share ONE activation quantizer: the ReLUs feeding it become one module
  (quantize()'s own shared requantizer is 2^-11 off in hls4ml); a residual add is aligned by quantize().

Both functions are deterministic in the network's structure: a freshly built network goes through the
same rewrites and then loads a checkpoint's state dict.
"""

from __future__ import annotations

import copy
import logging
import operator
import warnings

import brevitas.nn as qnn
import torch
from brevitas.graph.quantize import preprocess_for_quantize, quantize
from brevitas.quant import (
    Int8ActPerTensorFixedPoint,
    Int8WeightPerTensorFixedPoint,
    Int32Bias,
    Uint8ActPerTensorFixedPoint,
)
from brevitas.quant.fixed_point import Uint8ActPerTensorFixedPointMaxInit
from torch import nn

from flows.byo.pool import POOLS, check_pool_inputs, check_pool_module
from flows.errors import UsageError
from models.quant import QuantSpec, input_quant

log = logging.getLogger(__name__)

# float modules the plain route converts (hls4ml has a bit-exact layer for each once quantized)
SUPPORTED_MODULES = (
    nn.Conv2d,
    nn.Linear,
    nn.ReLU,
    nn.ReLU6,
    nn.MaxPool2d,
    nn.Flatten,
    nn.BatchNorm1d,
    nn.BatchNorm2d,
    nn.Dropout,
    nn.Identity,
)


def is_quantized(model: nn.Module) -> bool:
    """True when the network holds Brevitas quantized layers (its own quantizers)."""
    return any(
        isinstance(m, (qnn.QuantIdentity, qnn.QuantReLU, qnn.QuantConv2d, qnn.QuantLinear))
        or type(m).__module__.startswith("brevitas.nn")
        for m in model.modules()
    )


def fold_plain(model: nn.Module, name: str = "model") -> torch.fx.GraphModule:
    """The traced float network with BatchNorms folded and functional ops as modules (eval semantics)."""
    check_plain_ops(model, name)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            # on a copy: tracing shares the parameters, and folding rewrites them in place
            folded = preprocess_for_quantize(copy.deepcopy(model), relu6_to_relu=False, equalize_iters=0, merge_bn=True)
        except Exception as exc:  # fx cannot trace data-dependent control flow
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise UsageError(
                f"model {name!r} cannot be traced by torch.fx ({first}); write its forward without "
                "data-dependent control flow (no if/for on tensor values)"
            ) from None
    _relu_calls_to_modules(folded)
    _hardtanh_to_relu6(folded)
    _check_graph_calls(folded, name)
    check_plain_ops(folded, name)  # modules made from functional calls (F.hardtanh, F.leaky_relu, ...)
    left = [n for n, m in folded.named_modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if left:
        raise UsageError(
            f"model {name!r}: BatchNorm {left[0]} does not directly follow a conv/linear layer, so it cannot be "
            "folded into integer weights; move it right after a Conv2d/Linear or remove it"
        )
    return folded


RELU_FUNCTIONS = {torch.relu, torch.nn.functional.relu, torch.relu_}


def _relu_calls_to_modules(gm: torch.fx.GraphModule) -> None:
    """`torch.relu(x)` / `x.relu()` become `nn.ReLU` modules, so the quantizer sees (and quantizes) them."""
    count = 0
    for node in list(gm.graph.nodes):
        is_fn = node.op == "call_function" and node.target in RELU_FUNCTIONS
        is_method = node.op == "call_method" and node.target in ("relu", "relu_")
        if not (is_fn or is_method):
            continue
        name = f"relu_fn_{count}"
        count += 1
        gm.add_submodule(name, nn.ReLU())
        with gm.graph.inserting_after(node):
            new = gm.graph.call_module(name, (node.args[0],))
        node.replace_all_uses_with(new)
        gm.graph.erase_node(node)
    gm.graph.lint()
    gm.recompile()


def is_relu6(module: nn.Module) -> bool:
    """nn.ReLU6, or a hardtanh clipping to [0, 6] (what `F.hardtanh(x, 0, 6)` becomes when traced)."""
    return isinstance(module, nn.Hardtanh) and (float(module.min_val), float(module.max_val)) == (0.0, 6.0)


def _hardtanh_to_relu6(gm: torch.fx.GraphModule) -> None:
    """A hardtanh(0, 6) module (from `F.hardtanh`) becomes `nn.ReLU6`, which the quantizer maps."""
    for mod_name, module in list(gm.named_modules()):
        if is_relu6(module) and not isinstance(module, nn.ReLU6):
            gm.add_submodule(mod_name, nn.ReLU6())


GRAPH_FUNCTIONS = {torch.cat, torch.flatten, operator.add, torch.add, operator.getitem, getattr}
GRAPH_METHODS = {"view", "reshape", "flatten", "size", "add", "contiguous"}


def _check_graph_calls(gm, name: str) -> None:
    """Functional calls of the traced forward: only those with a bit-exact hardware counterpart."""
    for node in gm.graph.nodes:
        if (node.op == "call_function" and node.target not in GRAPH_FUNCTIONS) or (
            node.op == "call_method" and node.target not in GRAPH_METHODS
        ):
            what = getattr(node.target, "__name__", str(node.target))
            raise UsageError(
                f"model {name!r}: its forward calls {what} ({node.name}), which the hardware route (hls4ml, "
                "bit-exact) does not support; use torch.relu/F.relu, torch.cat, torch.flatten, view/reshape or +"
            )


def check_plain_ops(model: nn.Module, name: str) -> None:
    """Refuse, before any training, a leaf module the hardware route has no bit-exact layer for."""
    for mod_name, module in model.named_modules():
        if next(module.children(), None) is not None or isinstance(module, SUPPORTED_MODULES) or is_relu6(module):
            continue
        if isinstance(module, nn.Hardtanh):
            raise UsageError(
                f"model {name!r}: {mod_name} is a hardtanh({module.min_val:g}, {module.max_val:g}); only "
                "hardtanh(0, 6) (= ReLU6) has a bit-exact hardware layer (a quantized ReLU): use ReLU6 or ReLU"
            )
        if isinstance(module, POOLS):  # power-of-two windows only (flows/byo/pool.py)
            check_pool_module(mod_name, module, name)
            continue
        if isinstance(module, (nn.Sequential, nn.ModuleList, nn.ModuleDict)):
            continue
        raise UsageError(
            f"model {name!r}: layer {mod_name} is a {type(module).__name__}, which the hardware route (hls4ml, "
            f"bit-exact) does not support; use Conv2d, Linear, ReLU/ReLU6, MaxPool2d, Flatten, BatchNorm, "
            "Dropout, torch.cat or a residual add"
        )
    for mod_name, module in model.named_modules():
        if isinstance(module, nn.Conv2d) and (module.groups != 1 or module.dilation != (1, 1)):
            raise UsageError(
                f"model {name!r}: conv {mod_name} has groups={module.groups}, dilation={module.dilation}; "
                "only dense convolutions (groups=1, dilation=1) convert bit-exactly: use a plain Conv2d"
            )


def _maps(spec: QuantSpec) -> tuple[dict, dict, dict]:
    act = Uint8ActPerTensorFixedPoint.let(bit_width=spec.act_bits)
    signed_act = Int8ActPerTensorFixedPoint.let(bit_width=spec.act_bits)
    identity_map = {
        "signed": (qnn.QuantIdentity, {"act_quant": signed_act, "return_quant_tensor": True}),
        "unsigned": (qnn.QuantIdentity, {"act_quant": act, "return_quant_tensor": True}),
    }

    def layer(cls, kind):
        weight = Int8WeightPerTensorFixedPoint.let(bit_width=spec.bits_for(kind))
        kwargs = {"weight_quant": weight, "bias_quant": Int32Bias, "input_quant": None, "return_quant_tensor": True}
        return (cls, kwargs)

    compute_map = {
        nn.Conv2d: layer(qnn.QuantConv2d, "conv"),
        nn.Linear: layer(qnn.QuantLinear, "fc"),
    }
    relu6 = Uint8ActPerTensorFixedPointMaxInit.let(bit_width=spec.act_bits, max_val=6.0)
    act_map = {
        nn.ReLU: (qnn.QuantReLU, {"act_quant": act, "return_quant_tensor": True}),
        nn.ReLU6: (qnn.QuantReLU, {"act_quant": relu6, "return_quant_tensor": True}),
    }
    return identity_map, compute_map, act_map


def quantize_plain(folded: torch.fx.GraphModule, spec: QuantSpec, name: str = "model") -> torch.fx.GraphModule:
    """The folded float network with the flow's quantizers inserted (see the module docstring)."""
    identity_map, compute_map, act_map = _maps(spec)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        gm = quantize(folded, quant_identity_map=identity_map, compute_layer_map=compute_map, quant_act_map=act_map)
    _replace_input_quant(gm, spec)
    _drop_output_requant(gm)
    _share_concat_quantizers(gm, name)
    check_pool_inputs(gm, name)  # an average pool needs a quantized activation's grid to average on
    _share_add_quantizers(gm, name)
    gm.delete_all_unused_submodules()
    gm.recompile()
    return gm


def _replace_input_quant(gm: torch.fx.GraphModule, spec: QuantSpec) -> None:
    """quantize() puts a signed requantizer on each graph input: the flow's unsigned input quantizer instead."""
    for node in gm.graph.nodes:
        if node.op != "placeholder":
            continue
        for user in node.users:
            if user.op == "call_module" and isinstance(gm.get_submodule(user.target), qnn.QuantIdentity):
                gm.add_submodule(user.target, qnn.QuantIdentity(act_quant=input_quant(spec), return_quant_tensor=True))


def _drop_output_requant(gm: torch.fx.GraphModule) -> None:
    """The logits stay the last layer's exact accumulator output (no requantizer before the graph output)."""
    for node in list(gm.graph.nodes):
        if node.op != "output":
            continue
        src = node.args[0]
        if getattr(src, "op", None) == "call_module":
            module = gm.get_submodule(src.target)
            if isinstance(module, qnn.QuantIdentity) and len(src.users) == 1:
                layer = src.args[0]
                src.replace_all_uses_with(layer)
                gm.graph.erase_node(src)
                gm.delete_submodule(src.target)
                if layer.op == "call_module":
                    last = gm.get_submodule(layer.target)
                    if hasattr(last, "return_quant_tensor"):
                        last.return_quant_tensor = False


def _share_concat_quantizers(gm: torch.fx.GraphModule, name: str) -> None:
    """Every input of a torch.cat comes from one shared QuantReLU module (one scale, one hardware type)."""
    for node in list(gm.graph.nodes):
        if node.op != "call_function" or node.target is not torch.cat:
            continue
        tensors = node.args[0] if node.args else node.kwargs.get("tensors", ())
        inputs = list(tensors) if isinstance(tensors, (list, tuple)) else []
        producers = []
        for inp in inputs:
            # quantize() may have put a shared requantizer between the ReLU and the cat: skip over it
            src = inp
            if src.op == "call_module" and isinstance(gm.get_submodule(src.target), qnn.QuantIdentity):
                before = src.args[0]
                src.replace_all_uses_with(before)
                gm.graph.erase_node(src)
                if not any(n.op == "call_module" and n.target == inp.target for n in gm.graph.nodes):
                    gm.delete_submodule(inp.target)
                src = before
            module = gm.get_submodule(src.target) if src.op == "call_module" else None
            if not isinstance(module, qnn.QuantReLU) or len(src.users) != 1:
                raise UsageError(
                    f"model {name!r}: an input of torch.cat ({node.name}) is not a ReLU used only by the cat; "
                    "put a ReLU on each concatenated branch (the branches must share one quantizer)"
                )
            producers.append(src)
        first = producers[0].target
        for src in producers[1:]:
            old = src.target
            src.target = first
            if not any(n.op == "call_module" and n.target == old for n in gm.graph.nodes):
                gm.delete_submodule(old)
    gm.graph.lint()


ADD_FUNCTIONS = (operator.add, torch.add)


def unpack_value(x):
    """The float value of a quantized tensor (a residual add sums exact values; the quantizer after it rounds)."""
    return x.value if hasattr(x, "value") else x


def _share_add_quantizers(gm, name: str) -> None:
    """A residual add sums the exact values of its inputs (an unsigned activation and a conv accumulator);
    the quantizer after it sets the type. quantize()'s requantizers on the add inputs are removed: they only
    share a scaling object (unsigned and signed users still get different scales), and hls4ml drops a Quant
    right after a conv in favour of the exact accumulator type."""
    del name
    for node in list(gm.graph.nodes):
        if node.op != "call_function" or node.target not in ADD_FUNCTIONS or len(node.args) != 2:
            continue
        new_args = []
        for a in node.args:
            if not hasattr(a, "op"):
                new_args.append(a)
                continue
            src = a
            if (
                a.op == "call_module"
                and isinstance(gm.get_submodule(a.target), qnn.QuantIdentity)
                and len(a.users) == 1
            ):
                src = a.args[0]
                node.replace_input_with(a, src)
                gm.graph.erase_node(a)
            with gm.graph.inserting_before(node):
                new_args.append(gm.graph.call_function(unpack_value, (src,)))
        node.args = tuple(new_args)
    gm.graph.lint()
