"""Rewrites of the converted hls4ml graph (``ModelGraph``) that hls4ml 1.3 does not do itself.

`fuse_relu_into_mac`: a quantized ReLU right after a convolution or dense layer becomes that
layer's output cast. hls4ml keeps the ReLU as its own layer: in io_stream one more dataflow process
per ReLU, with its own FIFO, handshakes and a register stage on every channel. Casting the
accumulator straight to the ReLU's unsigned saturating type (``ufixed<b,i,RND_CONV,SAT>``) gives
the same numbers: positive values round the same way, negative ones saturate to 0, which is what
``max(x, 0)`` followed by that cast gives. The C simulation of every build checks it bit for bit.
"""

from __future__ import annotations

import logging

log = logging.getLogger(__name__)

MAC_CLASSES = ("Conv1D", "Conv2D", "PointwiseConv1D", "PointwiseConv2D", "Dense")
FUSED_ATTR = "fused_activation"  # set on the MAC layer: the name of the ReLU it absorbed


def _is_quantized_relu(layer) -> bool:
    if layer.class_name not in ("Activation", "ReLU"):
        return False
    if str(layer.get_attr("activation", "")).lower() != "relu":
        return False
    precision = layer.get_output_variable().type.precision
    # only an unsigned saturating output type reproduces max(x, 0) inside the cast
    return not getattr(precision, "signed", True) and "SAT" in str(getattr(precision, "saturation_mode", ""))


def _templates_flow(hls_model) -> str:
    """The backend's template flow ('vitis:apply_templates'; VivadoAccelerator uses Vivado's)."""
    from hls4ml.model.flow import get_available_flows

    name = f"{hls_model.config.backend.name.lower()}:apply_templates"
    return name if name in get_available_flows() else "vivado:apply_templates"


def fuse_relu_into_mac(hls_model) -> list[tuple[str, str]]:
    """Fuse each quantized ReLU into the conv/dense layer that feeds only it; returns (mac, relu) pairs.

    The MAC layer's output variable takes the ReLU's precision, the ReLU is removed (its consumers
    read the MAC layer's stream) and hls4ml's function/config templates are re-applied so the
    generated C++ refers to the rewired variables.
    """
    fused = []
    for layer in list(hls_model.get_layers()):
        if not _is_quantized_relu(layer) or len(layer.inputs) != 1:
            continue
        producers = [n for n in hls_model.graph.values() if layer.inputs[0] in n.outputs]
        if len(producers) != 1 or producers[0].class_name not in MAC_CLASSES:
            continue
        mac = producers[0]
        if mac.get_attr(FUSED_ATTR) or len(mac.outputs) != 1:
            continue
        consumers = [n for n in hls_model.graph.values() if mac.outputs[0] in n.inputs]
        if consumers != [layer] or mac.outputs[0] in hls_model.outputs:
            continue
        relu_var, mac_var = layer.get_output_variable(), mac.get_output_variable()
        mac_var.type.precision = relu_var.type.precision
        mac.set_attr(FUSED_ATTR, layer.name)
        hls_model.remove_node(layer)
        for var in hls_model.output_vars.values():  # in-place aliases (io_stream Flatten) of the ReLU's stream
            if getattr(var, "input_var", None) is relu_var:
                var.input_var, var.type = mac_var, mac_var.type
        fused.append((mac.name, layer.name))
    if fused:
        hls_model.apply_flow(_templates_flow(hls_model))
        log.info("fused %d ReLU(s) into their conv/dense layers: %s", len(fused), ", ".join(r for _, r in fused))
    return fused
