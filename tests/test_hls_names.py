"""flows/hls_names.py: hls4ml layer names <-> ONNX node names (config keys) <-> PyTorch modules."""

from __future__ import annotations

from onnx import TensorProto, helper
from qonnx.core.modelwrapper import ModelWrapper
from qonnx.util.basic import qonnx_make_model

from flows.hls_names import config_key, config_names, node_module, onnx_names, onnx_output_for, torch_module


def test_hls_layer_names_map_back_to_config_keys():
    layers = {"Conv_0": {}, "MatMul_0": {}, "Relu_1": {}}
    assert config_key("Conv2D_Conv_0", layers) == "Conv_0"
    assert config_key("Dense_MatMul_0", layers) == "MatMul_0"
    assert config_key("Relu_1", layers) == "Relu_1"
    assert config_key("clone_Relu_1", layers) is None
    assert config_names("Conv2D_Conv_0") == ["Conv2D_Conv_0", "Conv_0"]
    assert onnx_names("Relu_1_act") == ["Relu_1_act", "Relu_1"]


def test_exporter_names_become_pytorch_modules():
    assert torch_module("/features/fire1/expand3x3/Conv") == "features.fire1.expand3x3"
    assert torch_module("/features/fire1/squeeze_act/act_quant/export_handler/Quant") == "features.fire1.squeeze_act"
    assert torch_module("/classifier/fc_export/MatMul") == "classifier.fc"


def _graph() -> ModelWrapper:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])
    inits = [helper.make_tensor(n, TensorProto.FLOAT, [], [v]) for n, v in (("s", 0.25), ("z", 0.0), ("b", 8.0))]
    relu = helper.make_node("Relu", ["x"], ["r"], name="Relu_0", doc_string="/features/act/Relu")
    quant = helper.make_node(
        "Quant",
        ["r", "s", "z", "b"],
        ["y"],
        name="Quant_0",
        domain="qonnx.custom_op.general",
        signed=0,
        narrow=0,
        rounding_mode="ROUND",
        doc_string="/features/act/act_quant/export_handler/Quant",
    )
    return ModelWrapper(qonnx_make_model(helper.make_graph([relu, quant], "g", [x], [y], inits)))


def test_an_hls4ml_layer_output_is_the_tensor_after_its_quantizer():
    model = _graph()
    assert onnx_output_for(model, "Relu_0") == ("Relu_0", "y", "features.act")
    assert onnx_output_for(model, "Conv_9") is None
    assert node_module(model, model.graph.node[1]) == "features.act"
