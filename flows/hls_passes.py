"""This flow's rewrites of the hls4ml graph, as hls4ml optimizer passes in a flow the project registers.

Passes (hls4ml `OptimizerPass`: `match(node)`, then `transform(model, node)`):

- `ExactAccumulators` ('fireflow:exact_accumulators'): a conv/dense layer gets its types inferred by
  hls4ml's own `infer_precision_types`, then its accumulator (and a conv's result) narrowed to the
  exact overflow-free type computed from its quantized weights and input type (flows/precision.py).
  A layer whose config names any precision keeps hls4ml's types.
- `FuseReluIntoMac` ('fireflow:fuse_relu'): a quantized ReLU right after a conv/dense becomes that
  layer's output cast. hls4ml keeps the ReLU as its own layer: in io_stream one more dataflow
  process, with its own FIFO, handshakes and a register stage on every channel. Casting the
  accumulator straight to the ReLU's unsigned saturating type (``ufixed<b,i,RND_CONV,SAT>``) gives
  the same numbers: positive values round the same way, negative ones saturate to 0, which is what
  ``max(x, 0)`` followed by that cast gives. The C simulation of every build checks it bit for bit.
- `SizeStreamFifos` ('fireflow:fifo_rows'): io_stream FIFOs two padded rows (plus 16) deep instead
  of hls4ml's whole image, the shallow ones marked for shift registers (`fifo_impl` = 'srl'; the
  writer in flows/hls_writer.py renders the storage pragma).

`fireflow_flow(backend, ...)` registers (once per combination) and names the flow a conversion runs
instead of the backend's default `ip` flow: hls4ml's own sub-flows in their order, preceded by
'fireflow:convert+exact_accumulators' (a copy of hls4ml's `convert` flow with the exact accumulators
just before its type inference; hls4ml's `convert` then runs on a graph it has nothing left to do
on) and with 'fireflow:rewrite+...' (ReLU fusion, FIFO sizing) after `vivado:specific_types`, before
the C++ templates are applied. Every hls4ml flow still runs, so a later `ModelGraph.write()` re-runs
nothing, and the project comes out of one conversion.
"""

from __future__ import annotations

import logging

from hls4ml.backends import get_backend
from hls4ml.model.flow import get_available_flows, get_flow, register_flow
from hls4ml.model.optimizer import (
    ModelOptimizerPass,
    OptimizerPass,
    get_available_passes,
    get_optimizer,
    register_pass,
)
from hls4ml.model.types import UnspecifiedPrecisionType

from flows.errors import ToolError
from flows.hls_names import MAC_CLASSES
from flows.precision import exact_accumulator

log = logging.getLogger(__name__)

FUSED_ATTR = "fused_activation"  # set on the MAC layer: the name of the ReLU it absorbed
EXACT_ATTR = "exact_accumulator"  # set on the MAC layer: the exact accumulator type it was given
FIFO_IMPL_ATTR = "fifo_impl"  # set on a stream variable: 'srl' for a shift-register FIFO
MIN_DEPTH_ATTR = "fifo_min_depth"  # set on a stream variable: no FIFO sizing goes below it (throughput)
SRL_MAX_DEPTH = 64  # FIFOs up to this depth are bound to shift registers (LUTs), not block RAM

EXACT_PASS = "fireflow:exact_accumulators"
FUSE_PASS = "fireflow:fuse_relu"
FIFO_PASS = "fireflow:fifo_rows"
HLS4ML_INFER_PASS = "infer_precision_types"  # the exact accumulators run just before it
HLS4ML_CONVERT_FLOW = "convert"  # the flow (of every frontend) that holds hls4ml's type inference
HLS4ML_TYPES_FLOW = "vivado:specific_types"  # the rewrites run after it, before the templates
EXACT_FLOW = "fireflow:convert+exact_accumulators"


def _is_auto(type_obj) -> bool:
    return isinstance(type_obj.precision, UnspecifiedPrecisionType)


class ExactAccumulators(OptimizerPass):
    """Infer a conv/dense layer's types with hls4ml's pass, then narrow its accumulator to the exact type."""

    def match(self, node) -> bool:
        if node.class_name not in MAC_CLASSES or "accum_t" not in node.types or not _is_auto(node.types["accum_t"]):
            return False
        precision = node.model.config.get_layer_config_value(node, "Precision", {})
        if any(str(v) != "auto" for v in (precision.values() if isinstance(precision, dict) else [precision])):
            return False  # the user set a type on this layer: keep hls4ml's
        input_var = node.get_input_variable()
        # wait for the input's type: hls4ml's own match tests the variable, not its precision
        return not _is_auto(input_var.type) and get_optimizer(HLS4ML_INFER_PASS).match(node)

    def transform(self, model, node) -> bool:
        result_name = node.types["result_t"].name
        changed = get_optimizer(HLS4ML_INFER_PASS).transform(model, node)
        exact = exact_accumulator(node)
        if exact is None:
            return changed
        # the names and types a layer's config entry {"accum": t, "result": t} would have given
        backend = model.config.backend
        node.types["accum_t"].name = f"{node.name.lower()}_accum_t"
        node.types["accum_t"].precision = backend.convert_precision_string(str(exact))
        # a Dense's result keeps hls4ml's type, as the result of a MatMul + Add must for hls4ml to fold the Add
        if node.class_name != "Dense":
            node.types["result_t"].name = result_name
            node.types["result_t"].precision = backend.convert_precision_string(str(exact))
        node.set_attr(EXACT_ATTR, str(exact))
        return changed


def _is_quantized_relu(layer) -> bool:
    if layer.class_name not in ("Activation", "ReLU"):
        return False
    if str(layer.get_attr("activation", "")).lower() != "relu":
        return False
    precision = layer.get_output_variable().type.precision
    # only an unsigned saturating output type reproduces max(x, 0) inside the cast
    return not getattr(precision, "signed", True) and "SAT" in str(getattr(precision, "saturation_mode", ""))


def _sole_mac_producer(model, relu):
    """The conv/dense layer whose only consumer is `relu`, or None."""
    if len(relu.inputs) != 1:
        return None
    producers = [n for n in model.graph.values() if relu.inputs[0] in n.outputs]
    if len(producers) != 1 or producers[0].class_name not in MAC_CLASSES:
        return None
    mac = producers[0]
    if mac.get_attr(FUSED_ATTR) or len(mac.outputs) != 1 or mac.outputs[0] in model.outputs:
        return None
    consumers = [n for n in model.graph.values() if mac.outputs[0] in n.inputs]
    return mac if consumers == [relu] else None


class FuseReluIntoMac(OptimizerPass):
    """Fuse a quantized ReLU into the conv/dense layer that feeds only it (that layer takes the ReLU's type)."""

    def match(self, node) -> bool:
        return _is_quantized_relu(node) and _sole_mac_producer(node.model, node) is not None

    def transform(self, model, node) -> bool:
        mac = _sole_mac_producer(model, node)
        relu_var, mac_var = node.get_output_variable(), mac.get_output_variable()
        mac_var.type.precision = relu_var.type.precision
        mac.set_attr(FUSED_ATTR, node.name)
        model.remove_node(node)
        for var in model.output_vars.values():  # in-place aliases (io_stream Flatten) of the ReLU's stream
            if getattr(var, "input_var", None) is relu_var:
                var.input_var, var.type = mac_var, mac_var.type
        log.debug("fused %s into %s", node.name, mac.name)
        return True


def fifo_depth_for(shape: tuple[int, ...], current: int) -> int:
    """Two padded rows plus 16: enough for a 3x3 window (with its padding) to fill on one branch of a
    Fire fork while the other branch's outputs wait at the Concat; hls4ml's default is the whole
    image (H*W), which puts every inter-layer FIFO of a CNN into block RAM."""
    if len(shape) != 3:
        return current
    _, w, _ = shape
    return int(min(current, 2 * (w + 2) + 16))


class SizeStreamFifos(ModelOptimizerPass):
    """`fifo_depth_for` on every io_stream FIFO (each stream variable's STREAM pragma); shallow ones -> SRL."""

    def __init__(self):
        self.name = FIFO_PASS

    def transform(self, model) -> bool:
        for var in model.output_vars.values():
            pragma = getattr(var, "pragma", None)
            if not isinstance(pragma, tuple) or not pragma or pragma[0] != "stream":
                continue
            depth = fifo_depth_for(tuple(var.shape), int(pragma[1]))
            var.pragma = (pragma[0], depth)
            if depth <= SRL_MAX_DEPTH:
                setattr(var, FIFO_IMPL_ATTR, "srl")
        return True  # applied (a model pass's answer; the graph itself is unchanged)


def register_passes() -> None:
    """Register this flow's passes with hls4ml (once per process)."""
    available = set(get_available_passes())
    for name, cls in ((EXACT_PASS, ExactAccumulators), (FUSE_PASS, FuseReluIntoMac), (FIFO_PASS, SizeStreamFifos)):
        if name not in available:
            register_pass(name, cls)


def _unsupported(what: str) -> ToolError:
    return ToolError(f"hls4ml has no {what}: this hls4ml version is not supported (fireflow needs hls4ml 1.3)")


def _register_exact_flow() -> None:
    convert = get_flow(HLS4ML_CONVERT_FLOW)
    optimizers = list(convert.optimizers)
    if HLS4ML_INFER_PASS not in optimizers:
        raise _unsupported(f"pass {HLS4ML_INFER_PASS} in its {HLS4ML_CONVERT_FLOW} flow")
    optimizers.insert(optimizers.index(HLS4ML_INFER_PASS), EXACT_PASS)
    register_flow(EXACT_FLOW, optimizers, requires=list(convert.requires))


def fireflow_flow(backend: str, exact_accumulators: bool, fuse_relu: bool, fifo_rows: bool) -> str:
    """The name of the hls4ml flow to convert with (`HLSConfig['Flows']`), registered on first use.

    With no pass enabled it is the backend's default flow itself."""
    base = get_backend(backend).get_default_flow()
    late = [p for p, on in ((FUSE_PASS, fuse_relu), (FIFO_PASS, fifo_rows)) if on]
    passes = ([EXACT_PASS] if exact_accumulators else []) + late
    if not passes:
        return base
    name = f"fireflow:{base.replace(':', '_')}+" + "+".join(p.split(":")[1] for p in passes)
    if name in get_available_flows():
        return name
    register_passes()
    requires = list(get_flow(base).requires)
    if exact_accumulators:
        if EXACT_FLOW not in get_available_flows():
            _register_exact_flow()
        requires.insert(0, EXACT_FLOW)
    if late:
        if HLS4ML_TYPES_FLOW not in requires:
            raise _unsupported(f"{HLS4ML_TYPES_FLOW} flow in {base}")
        rewrite = "fireflow:rewrite+" + "+".join(p.split(":")[1] for p in late)
        if rewrite not in get_available_flows():
            register_flow(rewrite, late, requires=[HLS4ML_TYPES_FLOW])
        requires.insert(requires.index(HLS4ML_TYPES_FLOW) + 1, rewrite)
    register_flow(name, None, requires=requires)
    return name
