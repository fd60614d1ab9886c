"""qonnx graph rewrites the flow needs beyond qonnx's own passes.

Each is a `qonnx.transformation.base.Transformation`: `apply(model) -> (model, changed)` on the copy
that `ModelWrapper.transform` makes, repeated until nothing changes.

- `MoveTransposesPastConcat`: qonnx's channels-last conversion leaves
  `Transpose(NHWC->NCHW) x k -> Concat(axis=1) -> Transpose(NCHW->NHWC)` around every Fire module's
  concat (exact, but a full reorder in hardware). The rewrite concatenates the channels-last inputs on
  the permuted axis and puts one Transpose after the Concat, which then cancels against its consumer.
- `CancelInverseTransposes`: removes `Transpose(p) -> Transpose(q)` when q undoes p, for every consumer.
- `RecordSourceNames`: keeps each node's exporter name (the PyTorch module path, e.g.
  `/features/fire1/expand3x3/Conv`) in its doc_string, so a diverging hls4ml layer can be traced back
  to the PyTorch module after cleanup renamed the nodes.
"""

from __future__ import annotations

from onnx import helper
from qonnx.core.modelwrapper import ModelWrapper
from qonnx.transformation.base import Transformation


def _perm(node) -> list[int] | None:
    for attr in node.attribute:
        if attr.name == "perm":
            return list(helper.get_attribute_value(attr))
    return None


def _axis(node, default: int = 0) -> int:
    for attr in node.attribute:
        if attr.name == "axis":
            return int(helper.get_attribute_value(attr))
    return default


class MoveTransposesPastConcat(Transformation):
    """Concat(Transpose_p(x_i), axis=a) == Transpose_p(Concat(x_i, axis=p[a]))."""

    def apply(self, model: ModelWrapper) -> tuple[ModelWrapper, bool]:
        graph = model.graph
        for node in list(graph.node):
            if node.op_type != "Concat" or len(node.input) < 2:
                continue
            producers = [model.find_producer(t) for t in node.input]
            if any(p is None or p.op_type != "Transpose" for p in producers):
                continue
            perms = [_perm(p) for p in producers]
            if perms[0] is None or any(p != perms[0] for p in perms):
                continue
            # each Transpose must feed only this Concat, else removing it would change other consumers
            if any(len(model.find_consumers(p.output[0]) or []) != 1 for p in producers):
                continue
            if len(set(node.input)) != len(node.input):
                continue
            perm = perms[0]
            ndim = len(perm)
            axis = _axis(node) % ndim
            new_axis = perm[axis]
            in_shapes = [model.get_tensor_shape(p.input[0]) for p in producers]
            if any(s is None for s in in_shapes):
                continue
            out_name = node.output[0]
            new_out = model.make_new_valueinfo_name()
            for i, producer in enumerate(producers):
                node.input[i] = producer.input[0]
                graph.node.remove(producer)
            for attr in node.attribute:
                if attr.name == "axis":
                    attr.i = new_axis
            node.output[0] = new_out
            shape = list(in_shapes[0])
            shape[new_axis] = sum(s[new_axis] for s in in_shapes)
            model.set_tensor_shape(new_out, shape)
            transpose = helper.make_node("Transpose", [new_out], [out_name], perm=perm)
            graph.node.insert(list(graph.node).index(node) + 1, transpose)
            return model, True
        return model, False


class CancelInverseTransposes(Transformation):
    """Transpose(p) followed by Transpose(q) with q o p = identity: route the input straight through."""

    def apply(self, model: ModelWrapper) -> tuple[ModelWrapper, bool]:
        graph = model.graph
        outputs = {o.name for o in graph.output}
        for first in list(graph.node):
            if first.op_type != "Transpose" or first.output[0] in outputs:
                continue
            p = _perm(first)
            consumers = model.find_consumers(first.output[0]) or []
            if p is None or not consumers:
                continue
            if not all(c.op_type == "Transpose" and _perm(c) is not None for c in consumers):
                continue
            if not all([p[i] for i in _perm(c)] == list(range(len(p))) for c in consumers):
                continue
            source = first.input[0]
            for second in consumers:
                if second.output[0] in outputs:
                    break
                for user in model.find_consumers(second.output[0]) or []:
                    for i, name in enumerate(user.input):
                        if name == second.output[0]:
                            user.input[i] = source
            else:
                for second in consumers:
                    graph.node.remove(second)
                graph.node.remove(first)
                return model, True
        return model, False


class RecordSourceNames(Transformation):
    """Store each node's current name in its doc_string (once), before cleanup renames it."""

    def apply(self, model: ModelWrapper) -> tuple[ModelWrapper, bool]:
        for node in model.graph.node:
            if not node.doc_string and node.name:
                node.doc_string = node.name
        return model, False


def count_ops(model: ModelWrapper, op_type: str) -> int:
    return sum(1 for n in model.graph.node if n.op_type == op_type)
