"""Average pooling in the plain-PyTorch route (issue 13): AvgPool2d, AdaptiveAvgPool2d(1), their functional forms.

A power-of-two window converts exactly: Brevitas averages a quantized tensor to scale s/N with b + log2 N bits,
the export gets a channels-last AveragePool (no Transpose left) with a Quant of that type in front (hls4ml gives a
pool its input's type), and hls4ml's pool then computes the exact mean. Any other window (a 7x7 global pool
divides by 49) is refused in one line before training. The default run checks the graph up to QONNX (PyTorch vs
QONNX execution, exact), the hls4ml types and the refusals; `-m slow` builds a CNN with both pools on digits to a
bit-exact C simulation. Entry points are `test_byo_pool:<function>` (pytest puts tests/ on sys.path).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from test_byo import DIGITS, SMALL_BUILD, SPEC, assert_refused
from torch import nn
from torch.nn import functional as F  # noqa: N812

from flows.api import run_build
from flows.byo.pool import WidenAveragePoolInputs, check_pool_windows
from flows.byo.quantize import check_plain_ops, fold_plain, quantize_plain
from flows.errors import UsageError
from tests.byo_support import calibrated, exported


def quantized(style="modules"):
    torch.manual_seed(0)
    folded = fold_plain(calibrated(AvgPoolCNN(style=style)))  # BatchNorm statistics that are not the identity
    return folded, calibrated(quantize_plain(folded, SPEC))


def plain(cls):
    def build(quant, in_shape, num_classes, arch):
        return cls(in_shape[0], num_classes, in_shape[1])

    return build


class AvgPoolCNN(nn.Module):
    """28x28 -> AvgPool2d(2) -> 14x14 -> conv 3x3 -> 12x12 -> MaxPool2d(3) -> 4x4 -> global average (/16)."""

    def __init__(self, c=1, n=10, side=28, style="modules", width=16):
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(c, width, 3, padding=1), nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, 2 * width, 3)
        self.pool, self.maxpool, self.gap = nn.AvgPool2d(2), nn.MaxPool2d(3), nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(2 * width, n)
        self.style = style

    def forward(self, x):
        x = torch.relu(self.bn1(self.conv1(x)))
        x = self.pool(x) if self.style == "modules" else F.avg_pool2d(x, 2)
        x = self.maxpool(torch.relu(self.conv2(x)))
        if self.style == "modules":
            return self.fc(torch.flatten(self.gap(x), 1))
        if self.style == "functional":
            return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))
        return self.fc(x.mean((2, 3)))  # brevitas turns mean over H, W into AdaptiveAvgPool2d(1)


class Gap7x7(nn.Module):
    """A global pool over a 7x7 map: a division by 49."""

    def __init__(self, c=1, n=10, side=28):
        super().__init__()
        self.conv, self.pool, self.gap = nn.Conv2d(c, 8, 3, padding=1), nn.MaxPool2d(4), nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(8, n)

    def forward(self, x):
        return self.fc(torch.flatten(self.gap(self.pool(torch.relu(self.conv(x)))), 1))


class PoolAfterConv(nn.Module):
    """An average pool straight after a conv: its input has no activation quantizer."""

    def __init__(self, c=1, n=10, side=28):
        super().__init__()
        self.conv, self.pool, self.fc = nn.Conv2d(c, 4, 3, padding=1), nn.AvgPool2d(2), nn.Linear(4 * 14 * 14, n)

    def forward(self, x):
        return self.fc(torch.flatten(torch.relu(self.pool(self.conv(x))), 1))


avg_pool_cnn = plain(AvgPoolCNN)
gap_7x7 = plain(Gap7x7)


def _pools(wrapper):
    return [n for n in wrapper.graph.node if n.op_type == "AveragePool"]


def _init(wrapper, name) -> float:
    return float(np.asarray(wrapper.get_initializer(name)).reshape(-1)[0])


@pytest.fixture(scope="module")
def pool_graph(tmp_path_factory):
    """AvgPoolCNN (AvgPool2d(2), AdaptiveAvgPool2d(1) over 4x4) quantized, exported and cleaned."""
    return exported(quantized()[1], tmp_path_factory.mktemp("pool"))


def test_average_pools_export_exact_and_channels_last(pool_graph):
    wrapper, check = pool_graph
    assert check["max_abs_diff"] == 0.0  # PyTorch (Brevitas) and QONNX execution agree bit for bit
    assert not any(n.op_type in ("Transpose", "GlobalAveragePool") for n in wrapper.graph.node)
    pools = _pools(wrapper)
    assert len(pools) == 2 and all(p.domain == "qonnx.custom_op.channels_last" for p in pools)
    for pool, window in zip(pools, (4, 16)):
        # in front of each pool: Brevitas' own output type, a lossless cast of the activation quantizer before it
        widen = wrapper.find_producer(pool.input[0])
        act = wrapper.find_producer(widen.input[0])
        while act.op_type != "Quant":  # the global pool's input comes through the MaxPool
            act = wrapper.find_producer(act.input[0])
        assert widen.op_type == "Quant"
        assert _init(wrapper, widen.input[1]) == _init(wrapper, act.input[1]) / window
        assert _init(wrapper, widen.input[3]) == _init(wrapper, act.input[3]) + math.log2(window)
    again = wrapper.transform(WidenAveragePoolInputs())  # idempotent: a pool is widened once
    assert sum(n.op_type == "Quant" for n in again.graph.node) == sum(n.op_type == "Quant" for n in wrapper.graph.node)


@pytest.mark.parametrize("style", ["functional", "mean"])
def test_functional_pools_become_pool_modules(style):
    """F.avg_pool2d / F.adaptive_avg_pool2d / x.mean((2, 3)) trace to the modules the export converts."""
    float_net = calibrated(AvgPoolCNN(style=style))
    folded = fold_plain(float_net)
    x = torch.rand((3, 1, 28, 28))
    assert torch.allclose(folded(x), float_net(x), atol=1e-5)
    check_pool_windows(folded, x, "avg")  # the global pool sees a 4x4 map: /16, accepted
    q = quantize_plain(folded, SPEC)
    kinds = [type(m) for m in q.modules() if isinstance(m, (nn.AvgPool2d, nn.AdaptiveAvgPool2d))]
    assert kinds == [nn.AvgPool2d, nn.AdaptiveAvgPool2d]


def test_hls4ml_pool_types_hold_the_exact_mean(pool_graph, tmp_path):
    """hls4ml sizes a pool's output from its input type: with the widened input it has room for the mean."""
    from flows.boards import load_board
    from flows.config import BuildConfig
    from flows.convert import convert
    from flows.precision import parse_fixed

    wrapper, _ = pool_graph
    cfg = BuildConfig(model="avg_pool_cnn")
    hls_model, _ = convert(wrapper, tmp_path, cfg.hls, cfg.quant, load_board("pynq-z2"), write=False)
    pools = [layer for layer in hls_model.get_layers() if str(layer.get_attr("pool_op", "")).lower() == "average"]
    assert len(pools) == 2
    for layer, node, window in zip(pools, _pools(wrapper), (4, 16)):
        out = parse_fixed(str(layer.get_output_variable().type.precision))
        widen = wrapper.find_producer(node.input[0])
        frac = -int(math.log2(_init(wrapper, widen.input[1])))
        assert (out.frac, out.width) == (frac, int(_init(wrapper, widen.input[3]))), (layer.name, out)
        assert layer.get_attr("pool_height") * layer.get_attr("pool_width") == window


@pytest.mark.parametrize(
    ("module", "words"),
    [
        (nn.AvgPool2d(3), ["pool", "3x3", "division by 9", "power of two"]),
        (nn.AvgPool2d(2, stride=1), ["pool", "stride", "AvgPool2d(k)"]),
        (nn.AvgPool2d(2, padding=1), ["pool", "padding", "AvgPool2d(k)"]),
        (nn.AdaptiveAvgPool2d(2), ["pool", "output size", "AdaptiveAvgPool2d(1)"]),
    ],
)
def test_pool_shapes_that_cannot_be_exact_are_refused(module, words):
    net = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), module)
    with pytest.raises(UsageError) as err:
        check_plain_ops(net, "net")
    assert all(w in str(err.value) for w in words), err.value


def test_pool_without_activation_quantizer_is_refused():
    with pytest.raises(UsageError, match="no activation quantizer.*ReLU before the pool"):
        quantize_plain(fold_plain(PoolAfterConv()), SPEC, "pac")


def test_global_pool_over_7x7_is_refused_before_training(cli, tmp_path):
    out = tmp_path / "b"
    res = cli("test_byo_pool:gap_7x7", "--out", out, *DIGITS, "--until", "train", "--epochs", "1")
    assert_refused(res, "gap", "7x7", "division by 49", "power of two", "MaxPool2d", out=out)


def test_qonnx_file_with_a_7x7_global_pool_is_refused(cli, tmp_path):
    """The QONNX-file route meets the same rule in the graph: AveragePool over 7x7 divides by 49."""
    import brevitas.nn as qnn
    from brevitas.export import export_qonnx
    from brevitas.quant import Int8WeightPerTensorFixedPoint

    from models.quant import QuantSpec, quant_conv, quant_input, quant_relu

    spec = QuantSpec(weight_bits=4)
    # a bias-free Linear last: a bias would already be refused for its scale (s/49 x the weight scale)
    net = nn.Sequential(
        quant_input(spec), quant_conv(spec, 1, 4, 3, padding=1), quant_relu(spec), nn.MaxPool2d(4),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        qnn.QuantLinear(4, 10, bias=False, weight_quant=Int8WeightPerTensorFixedPoint),
    )  # fmt: skip
    path = tmp_path / "gap49.onnx"
    export_qonnx(calibrated(net), torch.zeros(1, 1, 28, 28), export_path=str(path), dynamo=False)
    out = tmp_path / "b"
    assert_refused(cli(path, "--out", out, *DIGITS), "average pool", "divides by 49", "power of two", out=out)
    assert not (out / "model.qonnx.onnx").exists()


@pytest.mark.slow
def test_avg_pool_cnn_builds_bit_exact(tmp_path):
    overrides = {**SMALL_BUILD, "train.epochs": 8, "out_dir": str(tmp_path / "b")}
    report = run_build("test_byo_pool:avg_pool_cnn", "pynq-z2", overrides)
    assert report["csim"]["samples"] == 150 and report["csim"]["bit_exact_fraction"] == 1.0
    assert report["model_source"]["route"] == "plain"
    assert report["accuracy"]["csim"] > 0.3
