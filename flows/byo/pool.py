"""Average pooling in the hardware route, bit-exact: the PyTorch-side checks and the QONNX rewrites it needs.

Brevitas averages a quantized tensor exactly: `F.avg_pool2d` on a QuantTensor returns the true mean with scale
`s / N` and `b + log2 N` bits (brevitas/quant_tensor/int_torch_handler.py), exported as a plain ONNX
`AveragePool` / `GlobalAveragePool`. That is a fixed-point type only when the window size N is a power of two;
a 7x7 global pool (/49) has no exact fixed-point result and is refused (UsageError, before training).

Three things stood between such a graph and a bit-exact hls4ml C simulation (qonnx 1.0.0, hls4ml 1.3.0):

- qonnx's channels-last conversion knows only Conv, MaxPool and BatchNormalization (the ops registered in the
  `qonnx.custom_op.channels_last` domain), so it leaves `Transpose(NHWC->NCHW) -> AveragePool ->
  Transpose(NCHW->NHWC)` behind, and hls4ml's ONNX frontend refuses an AveragePool outside that domain.
  `AveragePool_v*` below is the channels-last op (qonnx's own `ChannelsLastWrappedOp`, registered with
  `add_op_to_domain` when this module is imported); `AveragePoolToChannelsLast` moves a pool into it with the
  transposes qonnx would insert, which its cleanup then cancels.
- hls4ml's GlobalAveragePool parser reads a channels-first shape while declaring channels-last data:
  `GlobalAveragePoolToAveragePool` turns the global pool into an AveragePool with the whole map as its window.
- hls4ml gives an average pool's output its input's type, so the mean is rounded back to the input grid:
  `WidenAveragePoolInputs` puts a Quant with Brevitas' own output type (scale s/N, b + log2 N bits, a lossless
  cast) in front of each pool; the pool's sum, division by 2^m and result are then exact.
"""

from __future__ import annotations

import math

import brevitas.nn as qnn
import numpy as np
import torch
from onnx import TensorProto, helper
from qonnx.core.modelwrapper import ModelWrapper
from qonnx.custom_op.channels_last.base_wrapped_op import ChannelsLastWrappedOp
from qonnx.custom_op.registry import add_op_to_domain
from qonnx.transformation.base import Transformation
from torch import nn

from flows.errors import UsageError

CHANNELS_LAST_DOMAIN = "qonnx.custom_op.channels_last"
QUANT_DOMAIN = "qonnx.custom_op.general"
POOLS = (nn.AvgPool2d, nn.AdaptiveAvgPool2d)
POOL_FIX = "use a window whose size is a power of two (2x2, 4x4, a global pool over a 4x4 or 2x2 map) or MaxPool2d"


def is_power_of_two(n: int) -> bool:
    return n > 0 and n & (n - 1) == 0


def _pair(v) -> tuple[int, int]:
    return (int(v[0]), int(v[1])) if isinstance(v, (tuple, list)) else (int(v), int(v))


# ------------------------------------------------------------------------------------------------------------
# PyTorch side: refused before training
# ------------------------------------------------------------------------------------------------------------


def check_pool_module(mod_name: str, module: nn.Module, name: str) -> None:
    """An AvgPool2d must be non-overlapping, unpadded, with a power-of-two window; an AdaptiveAvgPool2d global."""
    where = f"model {name!r}: average pool {mod_name}"
    if isinstance(module, nn.AdaptiveAvgPool2d):
        size = module.output_size
        if (tuple(size) if isinstance(size, (tuple, list)) else (size, size)) != (1, 1):
            raise UsageError(
                f"{where} has output size {module.output_size}; only a global pool (AdaptiveAvgPool2d(1)) converts: "
                "use AvgPool2d(k) for a smaller map"
            )
        return
    kh, kw = _pair(module.kernel_size)
    stride = _pair(module.stride if module.stride else module.kernel_size)
    if stride != (kh, kw) or _pair(module.padding) != (0, 0) or module.ceil_mode or module.divisor_override:
        raise UsageError(
            f"{where} has kernel {(kh, kw)}, stride {stride}, padding {module.padding}, ceil_mode={module.ceil_mode}"
            f", divisor_override={module.divisor_override}; only non-overlapping windows (stride = kernel) without "
            "padding, ceil_mode or divisor_override convert bit-exactly: use AvgPool2d(k)"
        )
    if not is_power_of_two(kh * kw):
        raise UsageError(
            f"{where} averages a {kh}x{kw} window (a division by {kh * kw}, not a power of two), which fixed-point "
            f"hardware cannot do exactly; {POOL_FIX}"
        )


def check_pool_windows(model: nn.Module, example: torch.Tensor, name: str) -> None:
    """A global pool's window is its input map: measured on `example` (eval mode, no gradient)."""
    pools = [(n, m) for n, m in model.named_modules() if isinstance(m, nn.AdaptiveAvgPool2d)]
    if not pools:
        return
    seen: dict[str, tuple[int, int]] = {}

    def record(mod_name: str):
        def hook(_module, args) -> None:  # returns None: the arguments pass unchanged
            seen.setdefault(mod_name, tuple(args[0].shape[-2:]))

        return hook

    hooks = [m.register_forward_pre_hook(record(n)) for n, m in pools]
    modes = {m: m.training for m in model.modules()}
    try:
        with torch.no_grad():
            model.eval()(example)
    except Exception as exc:  # the user's forward on the data set's input shape
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise UsageError(
            f"model {name!r} fails on an input of shape {tuple(example.shape[1:])} ({first}); build it for the data "
            "set's input shape (the builder's in_shape)"
        ) from None
    finally:
        for hook in hooks:
            hook.remove()
        for m, mode in modes.items():
            m.training = mode
    for mod_name, (h, w) in seen.items():
        if not is_power_of_two(h * w):
            raise UsageError(
                f"model {name!r}: average pool {mod_name} averages a {h}x{w} map (a division by {h * w}, not a power "
                f"of two), which fixed-point hardware cannot do exactly; {POOL_FIX}"
            )


def _pool_source(gm: torch.fx.GraphModule, node):
    """The node whose quantizer types an average pool's input: through max/avg pools, Dropout, Identity, cat."""
    while True:
        if node.op == "call_module":
            module = gm.get_submodule(node.target)
            if isinstance(module, (nn.MaxPool2d, nn.Dropout, nn.Identity, *POOLS)):
                node = node.args[0]
                continue
            return node, module
        if node.op == "call_function" and node.target is torch.cat:
            tensors = node.args[0] if node.args else node.kwargs.get("tensors", ())
            node = tensors[0]  # a cat's inputs share one quantizer (quantize_plain)
            continue
        return node, None


def check_pool_inputs(gm: torch.fx.GraphModule, name: str) -> None:
    """Every average pool of the quantized network averages a quantized activation (a fixed-point grid)."""
    for node in gm.graph.nodes:
        if node.op != "call_module" or not isinstance(gm.get_submodule(node.target), POOLS):
            continue
        source, module = _pool_source(gm, node.args[0])
        # a quantized ReLU, or the input quantizer; not a requantizer after a conv/linear (hls4ml keeps the
        # layer's exact accumulator type there, not the requantizer's grid)
        is_input = isinstance(module, qnn.QuantIdentity) and source.args[0].op == "placeholder"
        if not (isinstance(module, qnn.QuantReLU) or is_input):
            what = type(module).__name__ if module is not None else str(source.target)
            raise UsageError(
                f"model {name!r}: average pool {node.target} averages the output of {source.name} ({what}), which "
                "has no activation quantizer (no fixed-point type to average on); put a ReLU before the pool"
            )


# ------------------------------------------------------------------------------------------------------------
# QONNX side: a channels-last AveragePool, the global pool as a windowed one, the pool's exact input type
# ------------------------------------------------------------------------------------------------------------


def _attr(node, name: str, default=None):
    for a in node.attribute:
        if a.name == name:
            return helper.get_attribute_value(a)
    return default


def _pool_out(size: int, kernel: int, stride: int, pad_sum: int) -> int:
    return (size + pad_sum - kernel) // stride + 1


class AveragePool_v7(ChannelsLastWrappedOp):  # noqa: N801 - qonnx derives op type and opset from the name
    """AveragePool on an NHWC tensor (executed by qonnx as transpose -> ONNX AveragePool -> transpose)."""

    _channelsLast_node_types = ["AveragePool"]

    def get_nodeattr_types(self):
        return {
            "kernel_shape": ("ints", True, []),
            "strides": ("ints", True, []),
            "pads": ("ints", False, [0, 0, 0, 0]),
            "ceil_mode": ("i", False, 0),
            "count_include_pad": ("i", False, 0),
            "auto_pad": ("s", False, "NOTSET"),
        }

    def make_shape_compatible_op(self, model):
        node = self.onnx_node
        n, h, w, c = model.get_tensor_shape(node.input[0])
        (kh, kw), (sh, sw) = self.get_nodeattr("kernel_shape"), self.get_nodeattr("strides")
        pads = self.get_nodeattr("pads") or [0, 0, 0, 0]
        shape = [n, _pool_out(h, kh, sh, pads[0] + pads[2]), _pool_out(w, kw, sw, pads[1] + pads[3]), c]
        values = np.zeros(shape, dtype=np.float32)
        tensor = helper.make_tensor("const_tensor", TensorProto.FLOAT, values.shape, values.flatten())
        return helper.make_node("Constant", [], [node.output[0]], value=tensor, name=node.name)

    def verify_node(self):
        return ChannelsLastWrappedOp.verify_node(self)


class AveragePool_v10(AveragePool_v7):  # noqa: N801 - opset 10 added ceil_mode
    pass


class AveragePool_v11(AveragePool_v7):  # noqa: N801 - opset 11 changed pads semantics
    pass


class AveragePool_v19(AveragePool_v7):  # noqa: N801 - opset 19 added dilations
    pass


def register_channels_last_ops() -> None:
    """Make the channels-last AveragePool known to qonnx (execution, shape inference). Idempotent."""
    for cls in (AveragePool_v7, AveragePool_v10, AveragePool_v11, AveragePool_v19):
        add_op_to_domain(CHANNELS_LAST_DOMAIN, cls)


register_channels_last_ops()  # as qonnx's own channels_last package does when it is imported


class GlobalAveragePoolToAveragePool(Transformation):
    """GlobalAveragePool over an N x C x H x W tensor == AveragePool(kernel = strides = (H, W))."""

    def apply(self, model: ModelWrapper) -> tuple[ModelWrapper, bool]:
        for i, node in enumerate(model.graph.node):
            if node.op_type != "GlobalAveragePool" or node.domain != "":
                continue
            shape = model.get_tensor_shape(node.input[0])
            if shape is None or len(shape) != 4:
                continue
            h, w = int(shape[2]), int(shape[3])
            pool = helper.make_node(
                "AveragePool",
                [node.input[0]],
                [node.output[0]],
                name=node.name,
                doc_string=node.doc_string,
                kernel_shape=[h, w],
                strides=[h, w],
                pads=[0, 0, 0, 0],
            )
            model.graph.node.remove(node)
            model.graph.node.insert(i, pool)
            return model, True
        return model, False


class AveragePoolToChannelsLast(Transformation):
    """A channels-first AveragePool becomes the channels-last op between the two transposes qonnx's own
    conversion inserts around a MaxPool (`InsertChannelsLastDomainsAndTrafos`); its cleanup cancels them."""

    def apply(self, model: ModelWrapper) -> tuple[ModelWrapper, bool]:
        graph = model.graph
        for node in graph.node:
            if node.op_type != "AveragePool" or node.domain != "":
                continue
            in_shape, out_shape = model.get_tensor_shape(node.input[0]), model.get_tensor_shape(node.output[0])
            if in_shape is None or out_shape is None or len(in_shape) != 4:
                continue
            to_last, to_first = [0, 2, 3, 1], [0, 3, 1, 2]
            nhwc_in, nhwc_out = model.make_new_valueinfo_name(), model.make_new_valueinfo_name()
            model.set_tensor_shape(nhwc_in, [in_shape[i] for i in to_last])
            model.set_tensor_shape(nhwc_out, [out_shape[i] for i in to_last])
            index = list(graph.node).index(node)
            graph.node.insert(index, helper.make_node("Transpose", [node.input[0]], [nhwc_in], perm=to_last))
            graph.node.insert(index + 2, helper.make_node("Transpose", [nhwc_out], [node.output[0]], perm=to_first))
            node.input[0], node.output[0] = nhwc_in, nhwc_out
            node.domain = CHANNELS_LAST_DOMAIN
            imports = model.get_opset_imports()
            if CHANNELS_LAST_DOMAIN not in imports:
                opset = imports.get("", imports.get("ai.onnx", 11))
                model.model.opset_import.append(helper.make_opsetid(CHANNELS_LAST_DOMAIN, opset))
            return model, True
        return model, False


def _quant_type(model: ModelWrapper, node) -> tuple[float, int, bool] | None:
    """(scale, bits, signed) of an activation Quant with a per-tensor power-of-two scale and zero point 0."""
    if node is None or node.op_type != "Quant" or model.get_initializer(node.input[0]) is not None:
        return None
    scale, zeropt, bits = (model.get_initializer(t) for t in node.input[1:4])
    if scale is None or zeropt is None or bits is None or np.size(scale) != 1 or np.any(zeropt != 0):
        return None
    value = float(np.asarray(scale).reshape(-1)[0])
    if value <= 0 or math.log2(value) != round(math.log2(value)):
        return None
    return value, int(float(np.asarray(bits).reshape(-1)[0])), bool(_attr(node, "signed", 1))


def _input_type(model: ModelWrapper, tensor: str):
    """The fixed-point type of a tensor feeding a pool: its Quant, through pools, transposes and a Concat."""
    node = model.find_producer(tensor)
    while node is not None and node.op_type in ("MaxPool", "AveragePool", "Transpose", "Identity"):
        node = model.find_producer(node.input[0])
    if node is not None and node.op_type == "Concat":
        types = {_input_type(model, t) for t in node.input}
        return types.pop() if len(types) == 1 else None
    return _quant_type(model, node)


def pool_window(node) -> int:
    kernel = _attr(node, "kernel_shape", [])
    return int(np.prod(kernel)) if kernel else 0


def _is_widening(model: ModelWrapper, quant, window: int) -> bool:
    """`quant` is a lossless cast of a quantized tensor to the 1/window finer grid (already widened)."""
    outer = _quant_type(model, quant)
    inner = _input_type(model, quant.input[0]) if outer else None
    m = int(math.log2(window))
    return inner is not None and outer == (inner[0] / window, inner[1] + m, inner[2])


class WidenAveragePoolInputs(Transformation):
    """Quant(scale s/N, b + log2 N bits) in front of every AveragePool with a power-of-two window N fed by a
    quantized activation (s, b): a lossless cast that gives hls4ml's pool (output type = input type) room for
    the exact mean, Brevitas' own output type for the pool."""

    def apply(self, model: ModelWrapper) -> tuple[ModelWrapper, bool]:
        for node in model.graph.node:
            n = pool_window(node)
            if node.op_type != "AveragePool" or not is_power_of_two(n) or n == 1:
                continue
            producer = model.find_producer(node.input[0])
            if producer is not None and producer.op_type == "Quant" and _is_widening(model, producer, n):
                continue
            found = _input_type(model, node.input[0])
            if found is None:
                continue
            scale, bits, signed = found
            names = [model.make_new_valueinfo_name() for _ in range(4)]
            model.set_initializer(names[0], np.asarray(scale / n, dtype=np.float32))
            model.set_initializer(names[1], np.asarray(0.0, dtype=np.float32))
            model.set_initializer(names[2], np.asarray(float(bits + int(math.log2(n))), dtype=np.float32))
            model.set_tensor_shape(names[3], model.get_tensor_shape(node.input[0]))
            quant = helper.make_node(
                "Quant",
                [node.input[0], *names[:3]],
                [names[3]],
                domain=QUANT_DOMAIN,
                signed=int(signed),
                narrow=0,
                rounding_mode="ROUND",
                doc_string=node.doc_string,
            )
            model.graph.node.insert(list(model.graph.node).index(node), quant)
            node.input[0] = names[3]
            return model, True
        return model, False


def check_average_pools(model: ModelWrapper, where: str = "the QONNX graph") -> None:
    """Refuse an AveragePool the hardware cannot compute exactly (run after the rewrites above)."""
    for node in model.graph.node:
        if node.op_type == "GlobalAveragePool":
            raise UsageError(f"{where}: global pool {node.name} could not be converted (its input shape is unknown)")
        if node.op_type != "AveragePool":
            continue
        kernel, strides = list(_attr(node, "kernel_shape", [])), list(_attr(node, "strides", []) or [])
        label = f"{where}: average pool {node.doc_string or node.name}"
        if any(_attr(node, "pads", []) or []) or _attr(node, "ceil_mode", 0) or strides != kernel:
            raise UsageError(
                f"{label} has kernel {kernel}, strides {strides}, pads {_attr(node, 'pads', [])}; only "
                "non-overlapping, unpadded windows convert bit-exactly: use AvgPool2d(k)"
            )
        n = pool_window(node)
        if not is_power_of_two(n):
            raise UsageError(
                f"{label} divides by {n}, not a power of two, which fixed-point hardware cannot do exactly; {POOL_FIX}"
            )
        producer = model.find_producer(node.input[0])
        if n > 1 and not (producer is not None and producer.op_type == "Quant" and _is_widening(model, producer, n)):
            raise UsageError(
                f"{label} averages a tensor without a power-of-two activation quantizer (no fixed-point type to "
                "average on); put a quantized ReLU/identity before the pool"
            )
