"""Names across the three worlds of a build: hls4ml layers, ONNX nodes (hls4ml config keys), PyTorch modules.

- hls4ml names a layer after the ONNX node it came from, sometimes with its class in front
  (`Conv_0` -> `Conv2D_Conv_0`, `MatMul_0` -> `Dense_MatMul_0`) or `_act` behind; the hls4ml config
  (`LayerName`) is keyed by the ONNX node name. `config_names` / `config_key` / `onnx_names` map back.
- Each ONNX node keeps the exporter's name in its doc_string (`flows.transforms.RecordSourceNames`),
  e.g. `/features/fire1/expand3x3/Conv`; `torch_module` turns that into `features.fire1.expand3x3`.
- `onnx_output_for` finds the ONNX tensor an hls4ml layer's output corresponds to (a trailing
  activation Quant folded into the layer by hls4ml is followed).

`MAC_CLASSES` names the hls4ml layer classes that multiply and accumulate (conv and dense).
"""

from __future__ import annotations

HLS_PREFIXES = ("Conv2D_", "Conv1D_", "Dense_", "Conv_", "Pool_")
MAC_CLASSES = ("Conv1D", "Conv2D", "PointwiseConv1D", "PointwiseConv2D", "Dense")
_EXPORT_WRAPPERS = ("export_handler", "act_quant", "activation_impl")


def config_names(hls_layer: str) -> list[str]:
    """The config keys an hls4ml layer may answer to: its own name, then without a class prefix
    ('Conv2D_Conv_0' -> ['Conv2D_Conv_0', 'Conv_0'])."""
    return [hls_layer] + [hls_layer[len(p) :] for p in HLS_PREFIXES if hls_layer.startswith(p)]


def config_key(hls_layer: str, layers: dict) -> str | None:
    """The hls4ml config entry (ONNX node name) behind an hls4ml layer name, or None.

    `layers` is the config's `LayerName` dict ('Conv2D_Conv_0' -> 'Conv_0')."""
    return next((name for name in config_names(hls_layer) if name in layers), None)


def onnx_names(hls_layer: str) -> list[str]:
    """ONNX node names an hls4ml layer may come from, most likely first (`config_names`, then without '_act')."""
    names = config_names(hls_layer)
    if hls_layer.endswith("_act"):
        names.append(hls_layer[: -len("_act")])
    return names


def torch_module(doc: str) -> str:
    """The PyTorch module of an exporter node name ('/features/fire1/expand3x3/Conv' -> 'features.fire1.expand3x3')."""
    parts = [p for p in doc.split("/") if p]
    parts = [p for p in parts[:-1] if p not in _EXPORT_WRAPPERS]
    return ".".join(p.split("_export")[0] for p in parts)


def node_module(wrapper, node) -> str:
    """The PyTorch module recorded on an ONNX node or, failing that, on its producer ('' if neither has one)."""
    for candidate in (node, wrapper.find_producer(node.input[0]) if node.input else None):
        if candidate is not None and candidate.doc_string:
            return torch_module(candidate.doc_string)
    return ""


def onnx_output_for(wrapper, node_name: str) -> tuple[str, str, str] | None:
    """(node name, output tensor, PyTorch module) for an ONNX node, following single activation Quants after it.

    None when the graph has no node of that name."""
    node = next((n for n in wrapper.graph.node if n.name == node_name), None)
    if node is None:
        return None
    tensor = node.output[0]
    doc = node.doc_string
    while True:
        consumers = wrapper.find_consumers(tensor) or []
        if len(consumers) == 1 and consumers[0].op_type == "Quant" and wrapper.get_initializer(tensor) is None:
            tensor = consumers[0].output[0]
            doc = consumers[0].doc_string or doc
            continue
        break
    return node.name, tensor, torch_module(doc or node_name)
