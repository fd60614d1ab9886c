"""The Concat channels-last rewrite (MoveTransposesPastConcat) and its companions, on synthetic graphs
and on a real exported Fire module: structure (no Transpose left) and numbers (exactly equal)."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pytest
import qonnx.core.onnx_exec as oxe
import torch
from onnx import TensorProto, helper
from qonnx.core.modelwrapper import ModelWrapper
from qonnx.transformation.infer_shapes import InferShapes
from qonnx.util.basic import qonnx_make_model

from flows.errors import VerificationError
from flows.export import check_power_of_two_scales, clean_qonnx, execute_qonnx, export_brevitas, quantize_inputs
from flows.transforms import CancelInverseTransposes, MoveTransposesPastConcat, count_ops
from models import build_model
from models.quant import QuantSpec

NCHW = [0, 3, 1, 2]  # NHWC -> NCHW
NHWC = [0, 2, 3, 1]  # NCHW -> NHWC


def _graph(perms=(NCHW, NCHW), fork=False, tail_perm=NHWC) -> ModelWrapper:
    """a (1,4,4,3), b (1,4,4,5) NHWC -> Transpose each -> Concat(axis=1) -> Transpose -> Relu."""
    a = helper.make_tensor_value_info("a", TensorProto.FLOAT, [1, 4, 4, 3])
    b = helper.make_tensor_value_info("b", TensorProto.FLOAT, [1, 4, 4, 5])
    nodes = [
        helper.make_node("Transpose", ["a"], ["ta"], perm=perms[0]),
        helper.make_node("Transpose", ["b"], ["tb"], perm=perms[1]),
        helper.make_node("Concat", ["ta", "tb"], ["cat"], axis=1),
        helper.make_node("Transpose", ["cat"], ["tcat"], perm=tail_perm),
        helper.make_node("Relu", ["tcat"], ["y"]),
    ]
    outputs = [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)]
    if fork:  # a second consumer of ta: its Transpose must stay
        nodes.append(helper.make_node("Relu", ["ta"], ["z"]))
        outputs.append(helper.make_tensor_value_info("z", TensorProto.FLOAT, None))
    model = ModelWrapper(qonnx_make_model(helper.make_graph(nodes, "g", [a, b], outputs)))
    return model.transform(InferShapes())


def _run(model: ModelWrapper, inputs: dict) -> dict:
    return oxe.execute_onnx(model, inputs)


@pytest.fixture
def inputs():
    rng = np.random.default_rng(0)
    return {
        "a": rng.normal(size=(1, 4, 4, 3)).astype(np.float32),
        "b": rng.normal(size=(1, 4, 4, 5)).astype(np.float32),
    }


def test_concat_rewrite_removes_every_transpose(inputs):
    model = _graph()
    rewritten = model.transform(MoveTransposesPastConcat()).transform(CancelInverseTransposes())
    assert count_ops(model, "Transpose") == 3
    assert count_ops(rewritten, "Transpose") == 0
    concat = next(n for n in rewritten.graph.node if n.op_type == "Concat")
    assert helper.get_attribute_value(concat.attribute[0]) == 3  # channels-last axis
    assert rewritten.get_tensor_shape(concat.output[0]) == [1, 4, 4, 8]
    np.testing.assert_array_equal(_run(model, inputs)["y"], _run(rewritten, inputs)["y"])


def test_concat_rewrite_keeps_a_transpose_when_the_consumer_needs_nchw(inputs):
    model = _graph(tail_perm=[0, 1, 2, 3])  # identity tail: the consumer reads NCHW
    rewritten = model.transform(MoveTransposesPastConcat()).transform(CancelInverseTransposes())
    assert count_ops(rewritten, "Transpose") == 2  # one after the Concat + the identity tail
    np.testing.assert_array_equal(_run(model, inputs)["y"], _run(rewritten, inputs)["y"])


@pytest.mark.parametrize("case", ["different_perms", "fork"])
def test_concat_rewrite_leaves_unsafe_patterns_alone(case, inputs):
    model = _graph(perms=(NCHW, [0, 3, 2, 1])) if case == "different_perms" else _graph(fork=True)
    rewritten = model.transform(MoveTransposesPastConcat())
    assert count_ops(rewritten, "Transpose") == count_ops(model, "Transpose")
    out_before, out_after = _run(model, inputs), _run(rewritten, inputs)
    for name in out_before:
        np.testing.assert_array_equal(out_before[name], out_after[name])


def test_cancel_inverse_transposes_only_cancels_inverses(inputs):
    model = _graph(tail_perm=NCHW)  # NCHW after NCHW is not an inverse pair
    assert count_ops(model.transform(CancelInverseTransposes()), "Transpose") == count_ops(model, "Transpose")


@pytest.fixture(scope="module")
def fire_export(tmp_path_factory):
    torch.manual_seed(0)
    net = build_model("lenet5_fire", QuantSpec(), (1, 28, 28), 10)
    net.train()
    with torch.no_grad():
        for _ in range(3):  # initialise activation scales from data-like inputs
            net(torch.rand(64, 1, 28, 28))
    net.eval()
    raw = tmp_path_factory.mktemp("fire") / "raw.onnx"
    export_brevitas(net, (1, 28, 28), raw)
    return net, raw


def test_real_fire_module_graph_has_no_transposes(fire_export):
    net, raw = fire_export
    model = clean_qonnx(raw, channels_last=True)
    assert count_ops(model, "Transpose") == 0
    concats = [n for n in model.graph.node if n.op_type == "Concat"]
    assert len(concats) == 2 and all(helper.get_attribute_value(n.attribute[0]) == 3 for n in concats)


def test_real_fire_module_numbers_unchanged(fire_export):
    """QONNX after our rewrites == the PyTorch model, exactly, on quantized inputs."""
    net, raw = fire_export
    model = clean_qonnx(raw, channels_last=True)
    x = quantize_inputs(net, torch.rand(4, 1, 28, 28))
    with torch.no_grad():
        ref = net(x).numpy()
    got = execute_qonnx(model, x.numpy().transpose(0, 2, 3, 1))
    np.testing.assert_array_equal(got, ref)


def test_real_fire_module_keeps_pytorch_names(fire_export):
    _, raw = fire_export
    model = clean_qonnx(raw, channels_last=True)
    docs = {n.doc_string for n in model.graph.node if n.op_type == "Conv"}
    assert "/features/fire1/expand3x3/Conv" in docs


def test_concat_straight_into_flatten_leaves_no_transpose():
    """Regression: a last Fire stage without a pool puts Concat -> Flatten -> MatMul on a 6x6 map;
    the Transpose left before the Flatten made hls4ml fail ('data_unquantized')."""
    torch.manual_seed(0)
    net = build_model("lenet5_fire", QuantSpec(), (1, 28, 28), 10, arch={"pool_after": ["stem", "fire1"]})
    net.train()
    with torch.no_grad():
        for _ in range(3):
            net(torch.rand(64, 1, 28, 28))
    net.eval()
    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / "raw.onnx"
        export_brevitas(net, (1, 28, 28), raw)
        model = clean_qonnx(raw, channels_last=True)
    assert count_ops(model, "Transpose") == 0
    x = quantize_inputs(net, torch.rand(3, 1, 28, 28))
    with torch.no_grad():
        ref = net(x).numpy()
    np.testing.assert_array_equal(execute_qonnx(model, x.numpy().transpose(0, 2, 3, 1)), ref)


def test_dead_relu_scale_is_a_clear_error():
    """A quantizer calibrated on all-zero activations gets a tiny, non-power-of-two scale."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])
    inits = [
        helper.make_tensor(n, TensorProto.FLOAT, [], [v]) for n, v in (("scale", 1e-10), ("zp", 0.0), ("bits", 8.0))
    ]
    node = helper.make_node(
        "Quant",
        ["r", "scale", "zp", "bits"],
        ["y"],
        domain="qonnx.custom_op.general",
        signed=0,
        narrow=0,
        rounding_mode="ROUND",
        doc_string="/features/fire1/squeeze_act/act_quant/export_handler/Quant",
    )
    relu = helper.make_node("Relu", ["x"], ["r"])
    model = ModelWrapper(qonnx_make_model(helper.make_graph([relu, node], "g", [x], [y], inits)))
    with pytest.raises(VerificationError, match="features.fire1.squeeze_act.*dead ReLU"):
        check_power_of_two_scales(model)
