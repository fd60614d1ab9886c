"""Narrow stream words around the sparse kernel: one input element per word, a few results per word.

hls4ml streams a 1-D tensor as one word holding all its elements (its `PackedType` packs the last
dimension). A Dense on a flat input therefore reads one 784-element word (LeNet-300-100: a 6,272-bit
word through the AXI wrapper's FIFO, and a 784:1 multiplexer in the kernel's load loop), and a Dense
hands its result to the next layer as one 300-element word (a 2,400-bit FIFO). The sparse kernel
(`nnet_sparse_dense.h`) loads one element per clock and writes its results word by word, so it needs
neither. After `flows.sparse.extension` made the `SparseDense` nodes, this pass repacks:

* **input**: a `SparseDense` reading the graph's input when that input is a flat vector: the input
  becomes ``n_in`` words of one element. The AXI wrapper (`flows.hls_writer`) and hls4ml's C
  simulation bridge loop over ``input_t::size`` and follow; the wrapper's FIFO keeps its depth.
* **output**: a `SparseDense` whose result feeds only other `SparseDense` nodes: its words hold ``k``
  results, the smallest divisor of ``n_out`` for which the kernel's estimated initiation interval
  (`flows.estimator.sparse`: the walk, then one clock per result word) does not grow.

Only the packing changes, not the values or their order: C simulation stays bit-exact. The FIFO
after a narrowed output holds all its words (the kernel writes them back to back while the next
layer reads one element per clock): its depth, and the floor the dataflow FIFO sizing keeps
(`flows.hls_passes.MIN_DEPTH_ATTR`), is the number of words.
"""

from __future__ import annotations

import dataclasses
import logging

from hls4ml.model.optimizer import OptimizerPass

from flows.estimator.sparse import estimate_sparse_dense, spec_from_hls_layer
from flows.hls_passes import FIFO_IMPL_ATTR, MIN_DEPTH_ATTR, SRL_MAX_DEPTH
from flows.sparse.layout import LAYER_CLASS

log = logging.getLogger(__name__)

STREAMS_PASS = "fireflow:sparse_streams"
NARROWED_ATTR = "sparse_streams_narrowed"  # set on a SparseDense once its streams were looked at


def _pack(var) -> int | None:
    return getattr(getattr(var, "type", None), "n_elem", None)


def repack(var, elems_per_word: int) -> None:
    """Stream `var` as words of `elems_per_word` elements (shape ``[n / k, k]``)."""
    n = int(var.size())
    if n % elems_per_word:
        raise ValueError(f"{var.name}: {n} elements do not split into words of {elems_per_word}")
    var.shape = [n // elems_per_word, elems_per_word]
    var.type.n_elem = elems_per_word


def narrow_output_pack(node) -> int:
    """The fewest results per word whose words fit in the cycles the walk leaves (the II does not grow)."""
    spec = spec_from_hls_layer(node)
    n_out = spec.n_out
    ii = estimate_sparse_dense(spec).ii_cycles
    for k in range(1, n_out + 1):
        if n_out % k == 0 and k < spec.out_pack:
            trial = dataclasses.replace(spec, out_pack=k)
            if estimate_sparse_dense(trial).ii_cycles <= ii:
                return k
    return spec.out_pack


def _consumers(model, name: str) -> list:
    return [layer for layer in model.get_layers() if name in (layer.inputs or [])]


class NarrowSparseStreams(OptimizerPass):
    """Repack the streams into and out of a `SparseDense` node (see the module docstring)."""

    def match(self, node) -> bool:
        return node.class_name == LAYER_CLASS and not node.get_attr(NARROWED_ATTR)

    def transform(self, model, node) -> bool:
        node.set_attr(NARROWED_ATTR, True)
        in_var = node.get_input_variable()
        if node.inputs[0] in model.inputs and len(in_var.shape) == 1 and (_pack(in_var) or 1) > 1:
            log.info("%s: the graph input streams one element per word (was %d)", node.name, _pack(in_var))
            repack(in_var, 1)
        out_name = node.outputs[0]
        consumers = _consumers(model, out_name)
        if out_name not in model.outputs and consumers and all(c.class_name == LAYER_CLASS for c in consumers):
            out_var = node.get_output_variable()
            k = narrow_output_pack(node)
            if k < (_pack(out_var) or k):
                log.info("%s: %d results per stream word (was %d)", node.name, k, _pack(out_var))
                repack(out_var, k)
                words = int(out_var.shape[0])
                pragma = getattr(out_var, "pragma", None)
                depth = max(words, int(pragma[1]) if isinstance(pragma, tuple) and len(pragma) == 2 else 0)
                out_var.pragma = ("stream", depth)
                setattr(out_var, MIN_DEPTH_ATTR, words)
                if depth <= SRL_MAX_DEPTH:
                    setattr(out_var, FIFO_IMPL_ATTR, "srl")
        return False
