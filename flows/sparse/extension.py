"""The sparse Dense kernel as an hls4ml extension: layer class, optimizer pass, templates, C++ source, flow.

A Dense layer whose hls4ml config says ``"Strategy": "sparse"`` (per layer in ``LayerName``, or for
the model) is replaced, after hls4ml has inferred and converted its types (and after the project's
ReLU fusion, which it keeps: ``fused_activation`` and the ReLU's output type carry over), by a
`SparseDense` node: the codebook, the per-PE entry ROMs and the padded bias of
`flows.sparse.layout`, and a call to ``nnet::sparse_dense`` (``nnet_sparse_dense.h``, copied into
the project). Optional per-layer keys: ``SparsePEs`` (processing elements), else ``SparseCycles``
(the walk's cycle budget per image: the PE count follows from it, `choose_pes`; default ``n_in``,
one input element per clock, the pace of the input stream; then the PEs keep that pace including the
rows they settle), ``SparseIndexBits``, and ``SparseBalance`` (default true).

**Balanced rows**: when the layer's output feeds one hls4ml Dense and nothing else (LeNet-300-100's
hidden layers), its rows are dealt to the PEs by length (`flows.sparse.layout.balanced_order`): fewer
PEs keep the pace. The kernel then emits its outputs in slot order, and the pass permutes the
consumer's weight rows to match (an exact rewrite: the same products, summed by the consumer); the
node records the order in ``output_order`` (the C-simulation diagnosis reads it).

Then `flows.sparse.streams` narrows the stream words into and out of the new nodes (one input element
per word from a flat graph input, a few results per word between sparse layers).

A layer the kernel cannot take stays hls4ml's Dense (latency strategy) with the reason in its
``sparse_fallback`` attribute and a warning: io_parallel, fewer than two inputs, a saturating
accumulator that is not exact (partial sums in another order could saturate differently), weights
not exact in float32. A bad ``SparsePEs``/``SparseCycles``/``SparseIndexBits`` raises `UsageError`.

Registration traps of hls4ml 1.3 (TOOLCHAIN.md): templates go on the **Vivado** backend (the
``vivado:apply_templates`` flow of Vivado, VivadoAccelerator and Vitis reads them there); the C++
header on every backend that writes projects (the writer copies its own backend's sources; it is
registered when the pass first makes a sparse layer, `register_header`); the pass runs in a flow
placed after ``vivado:specific_types`` and before the template flows (`with_sparse_dense`).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
from hls4ml.backends import get_backend
from hls4ml.backends.template import FunctionCallTemplate, LayerConfigTemplate
from hls4ml.model.flow import get_available_flows, get_flow, register_flow
from hls4ml.model.layers import Layer, layer_map, register_layer
from hls4ml.model.optimizer import OptimizerPass, get_available_passes, get_optimizer, register_pass
from hls4ml.model.types import IntegerPrecisionType

from flows.errors import FlowError, ToolError, UsageError
from flows.hls_passes import EXACT_ATTR
from flows.sparse.layout import (
    LAYER_CLASS,
    MIN_INPUTS,
    OUTPUT_ORDER_ATTR,
    PES_PER_COPY,
    SparseLayout,
    build_layout,
    choose_pes,
)
from flows.sparse.streams import STREAMS_PASS, NarrowSparseStreams

log = logging.getLogger(__name__)

STRATEGY = "sparse"  # the per-layer hls4ml config value that selects the kernel
PES_KEY, CYCLES_KEY, INDEX_BITS_KEY, BALANCE_KEY = "SparsePEs", "SparseCycles", "SparseIndexBits", "SparseBalance"
FALLBACK_ATTR = "sparse_fallback"  # set on a Dense the kernel could not take: why
SPARSE_PASS = "fireflow:sparse_dense"
SPARSE_FLOW = "fireflow:sparse_kernels"
TYPES_FLOW = "vivado:specific_types"  # the pass needs the converted types of this flow
TEMPLATE_FLOWS = ("vitis:apply_templates", "vivado:apply_templates")  # the pass runs before the first
TRANSFORM_TYPES = "vivado:transform_types"
HEADER = Path(__file__).with_name("nnet_sparse_dense.h")
SOURCE_BACKENDS = ("Vivado", "VivadoAccelerator", "Vitis")
KERNEL = "nnet::sparse_dense"
# Dense attributes the new node must not inherit: the dense weights (the writer would still write them),
# its index type, and the strategy
DROPPED = {"weight", "weight_t", "weight_data", "weight_quantizer", "bias", "bias_t", "bias_data", "index_t"}
DROPPED |= {"strategy", "config_cpp", "function_cpp", "include_header"}


class SparseDense(Layer):
    """A Dense layer as the sparse kernel: codebook, per-PE entry ROMs, padded bias (built by the pass only)."""

    def initialize(self):
        raise FlowError(f"{LAYER_CLASS} layers are made by the {SPARSE_PASS} pass from a Dense layer, not directly")


config_template = """struct config{index} : nnet::sparse_dense_config {{
    static const unsigned n_in = {n_in};
    static const unsigned n_out = {n_out};
    static const unsigned n_pe = {n_pe};
    static const unsigned n_rows = {n_rows};
    static const unsigned n_steps = {n_steps};
    static const unsigned n_codes = {n_codes};
    static const unsigned code_bits = {code_bits};
    static const unsigned index_bits = {index_bits};
    static const unsigned n_copies = {n_copies};
    static const unsigned pes_per_copy = {pes_per_copy};
    static const unsigned col_bits = {col_bits};
    static const unsigned row_bits = {row_bits};
    typedef {accum_t} accum_t;
    typedef {bias_t} bias_t;
    typedef {weight_t} weight_t;
    typedef {entry_t} entry_t;
}};\n"""

function_template = KERNEL + "<{input_t}, {output_t}, {config}>({input}, {output}, {codebook}, {entries}, {bias});"


def _bits_for(value: int) -> int:
    """Unsigned bits holding 0..value (at least 1)."""
    return max(1, int(value).bit_length())


class SparseDenseConfigTemplate(LayerConfigTemplate):
    """``config<index>``: sizes of the walk and the layer's types."""

    def __init__(self):
        super().__init__(SparseDense)
        self.template = config_template

    def format(self, node):
        params = {
            key: node.get_attr(key)
            for key in ("n_in", "n_out", "n_pe", "n_rows", "n_steps", "n_codes", "code_bits", "index_bits")
        }
        params.update(
            index=node.index,
            n_copies=node.get_attr("n_copies"),
            pes_per_copy=PES_PER_COPY,
            col_bits=_bits_for(2 * node.get_attr("n_in") - 1),
            row_bits=_bits_for(node.get_attr("n_rows") - 1),
            accum_t=node.types["accum_t"].name,
            bias_t=node.get_weights("bias").type.name,
            weight_t=node.get_weights("codebook").type.name,
            entry_t=node.get_weights("entries").type.name,
        )
        return self.template.format(**params)


class SparseDenseFunctionTemplate(FunctionCallTemplate):
    """The call of ``nnet::sparse_dense`` in the top function, and its header."""

    def __init__(self):
        super().__init__(SparseDense, include_header=[f"nnet_utils/{HEADER.name}"])
        self.template = function_template

    def format(self, node):
        params = self._default_function_params(node)
        for key in ("codebook", "entries", "bias"):
            params[key] = node.get_weights(key).name
        return self.template.format(**params)


def _wraps(precision) -> bool:
    mode = getattr(precision, "saturation_mode", None)
    return mode is None or getattr(mode, "name", str(mode)).upper().endswith("WRAP")


def unsupported_reason(node) -> str | None:
    """Why a Dense layer cannot become the sparse kernel, or None when it can."""
    if node.model.config.get_config_value("IOType") != "io_stream":
        return "the sparse kernel is io_stream only"
    if node.get_attr("strategy") != "latency":
        return f"hls4ml gave it the {node.get_attr('strategy')} strategy (weights in another order)"
    if int(node.get_attr("n_in")) < MIN_INPUTS:
        return f"it has {node.get_attr('n_in')} input; the relative index needs at least {MIN_INPUTS}"
    accum = node.types["accum_t"].precision
    if not _wraps(accum) and not node.get_attr(EXACT_ATTR):
        return f"its accumulator {accum} saturates and is not exact: summed in another order it could differ"
    weight = np.asarray(node.weights["weight"].data, dtype=np.float64)
    if not np.array_equal(weight.astype(np.float32), weight):
        return "its weights are not exact in float32 (the codebook's type)"
    return None


def _int_setting(node, key: str) -> int | None:
    value = node.model.config.get_layer_config_value(node, key, None)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise UsageError(f"layer {node.name}: {key} must be a whole number, not {value!r}")
    return value


def permutable_consumer(model, node):
    """The hls4ml Dense that alone reads `node`'s output and can take it permuted (its weight rows are
    reordered to match), or None: the output is the model's, feeds another kind of layer or several, or
    the layer sets ``SparseBalance`` false."""
    balance = node.model.config.get_layer_config_value(node, BALANCE_KEY, True)
    if not isinstance(balance, bool):
        raise UsageError(f"layer {node.name}: {BALANCE_KEY} must be true or false, not {balance!r}")
    out = node.outputs[0]
    readers = [n for n in model.get_layers() if out in n.inputs]
    if not balance or out in model.outputs or len(readers) != 1 or len(node.outputs) != 1:
        return None
    reader = readers[0]
    ok = reader.class_name == "Dense" and reader.get_attr("strategy") == "latency" and reader.inputs == [out]
    return reader if ok else None


def _layout_for(node, balance: bool) -> SparseLayout:
    weight = np.asarray(node.weights["weight"].data, dtype=np.float64)
    index_bits, pes, cycles = (_int_setting(node, key) for key in (INDEX_BITS_KEY, PES_KEY, CYCLES_KEY))
    try:
        if pes is not None:
            return build_layout(weight, pes, index_bits, balance=balance)
        if cycles is not None:
            return choose_pes(weight, cycles, index_bits, balance)
        return choose_pes(weight, weight.shape[0], index_bits, balance, reserve_rows=True)
    except UsageError as exc:
        raise UsageError(f"layer {node.name}: {exc}") from exc


def _is_sparse(node) -> bool:
    return str(node.model.config.get_layer_config_value(node, "Strategy", "")).lower() == STRATEGY


class ReplaceDenseWithSparse(OptimizerPass):
    """Replace a Dense configured ``"Strategy": "sparse"`` by a `SparseDense` node with the same streams and types."""

    def match(self, node) -> bool:
        return node.class_name == "Dense" and not node.get_attr(FALLBACK_ATTR) and _is_sparse(node)

    def transform(self, model, node) -> bool:
        reason = unsupported_reason(node)
        if reason is not None:
            log.warning("%s stays hls4ml's Dense (latency strategy): %s", node.name, reason)
            node.set_attr(FALLBACK_ATTR, reason)
            return False
        consumer = permutable_consumer(model, node)
        layout = _layout_for(node, consumer is not None)  # a bad setting raises UsageError
        attrs = {k: v for k, v in node.attributes.items() if k not in DROPPED}
        attrs.update(layout.sizes(), strategy=STRATEGY, n_copies=layout.n_copies, n_fillers=layout.n_fillers)
        if layout.out_order:  # outputs leave in slot order: the consumer's weight rows follow
            consumer.weights["weight"].data = np.asarray(consumer.weights["weight"].data)[layout.order]
            attrs[OUTPUT_ORDER_ATTR] = [int(i) for i in layout.order]
        new = model.make_node(LAYER_CLASS, node.name, attrs, list(node.inputs), list(node.outputs), initialize=False)
        weight, bias = node.weights["weight"], node.weights["bias"]
        padded = np.zeros(layout.n_rows * layout.n_pe)
        padded[: layout.n_out] = np.asarray(bias.data, dtype=np.float64).ravel()[layout.order]
        new.add_weights_variable(
            name="codebook",
            var_name="cb{index}",
            type_name=weight.type.name,
            precision=weight.type.precision,
            data=layout.codebook,
        )
        new.add_weights_variable(
            name="entries",
            var_name="e{index}",
            type_name="entry{index}_t",
            precision=IntegerPrecisionType(width=layout.entry_bits, signed=False),
            data=layout.entries,
        )
        new.add_weights_variable(
            name="bias", var_name=bias.name, type_name=bias.type.name, precision=bias.type.precision, data=padded
        )
        get_optimizer(TRANSFORM_TYPES).transform(model, new)  # the types' C++ definitions, as for every layer
        model.replace_node(node, new)
        register_header()
        log.info(
            "%s: sparse kernel, %d PEs x %d steps (%d nonzeros, %d fillers, %d-bit codes, %d-bit indices)%s",
            node.name,
            layout.n_pe,
            layout.n_steps,
            layout.nnz,
            layout.n_fillers,
            layout.code_bits,
            layout.index_bits,
            f", rows balanced, {consumer.name}'s weight rows reordered to match" if layout.out_order else "",
        )
        return True


def register_header() -> None:
    """Have every project-writing backend copy the kernel's header into ``firmware/nnet_utils``.

    hls4ml keeps custom sources per backend for the whole process: the pass registers the header
    only when it makes a sparse layer, so a process that never does writes no extra file."""
    for backend in SOURCE_BACKENDS:
        get_backend(backend).register_source(HEADER)  # a dict keyed by destination: idempotent


def register_sparse_dense() -> None:
    """Register the layer, its templates, the pass and its flow with hls4ml (once per process)."""
    if LAYER_CLASS not in layer_map:
        register_layer(LAYER_CLASS, SparseDense)
    passes = set(get_available_passes())
    vivado = get_backend("Vivado")
    for template in (SparseDenseConfigTemplate, SparseDenseFunctionTemplate):
        name = "vivado:" + template().get_name()
        if name not in passes:
            vivado.register_template(template)
    if not HEADER.is_file():
        raise ToolError(f"the sparse kernel's header {HEADER} is missing: reinstall fireflow")
    if SPARSE_PASS not in passes:
        register_pass(SPARSE_PASS, ReplaceDenseWithSparse)
    if STREAMS_PASS not in passes:
        register_pass(STREAMS_PASS, NarrowSparseStreams)
    if SPARSE_FLOW not in get_available_flows():
        register_flow(SPARSE_FLOW, [SPARSE_PASS, STREAMS_PASS], requires=[TYPES_FLOW])


def with_sparse_dense(flow: str) -> str:
    """The name of `flow` with the sparse pass just before its template flows (registered on first use).

    `flow` is an hls4ml flow such as `flows.hls_passes.fireflow_flow`'s or a backend's ``vivado:ip``."""
    register_sparse_dense()
    name = f"{flow}+sparse_dense"
    if name in get_available_flows():
        return name
    base = get_flow(flow)
    requires = list(base.requires)
    at = [requires.index(f) for f in TEMPLATE_FLOWS if f in requires]
    if not at or TYPES_FLOW not in requires[: min(at)]:
        raise ToolError(f"hls4ml flow {flow} has no {TYPES_FLOW} before its templates: this hls4ml is not supported")
    requires.insert(min(at), SPARSE_FLOW)
    register_flow(name, list(base.optimizers), requires=requires)
    return name
