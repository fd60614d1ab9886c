"""Bring your own network (issue 13), the routes proven end to end beyond tests/test_byo.py: ReLU6 in a plain
network (nn.ReLU6, F.relu6, F.hardtanh(0, 6)), a foreign Brevitas network with float-scale activation
quantizers, and the recipe keys on a plain network (Deep Compression: pruning, sharing, QAT; structured
pruning where its channel groups cannot be inferred: refused before training, tests/test_byo_structure.py).

The default run checks the unit-level facts (where a quantized ReLU6 saturates, the conversions the log and
report.json name, the refusals); `-m slow` builds each network through the whole flow to a bit-exact C
simulation on digits. Entry points are `test_byo_routes:<function>` (pytest puts tests/ on sys.path).
"""

from __future__ import annotations

import logging

import brevitas.nn as qnn
import pytest
import torch
from brevitas.quant import (
    Int8ActPerTensorFloat,
    Int8WeightPerTensorFixedPoint,
    Int32Bias,
    Uint8ActPerTensorFloat,
)
from test_byo import DIGITS, SMALL_BUILD, assert_refused
from torch import nn
from torch.nn import functional as F

from flows.api import resolve_config, run_build
from flows.boards import load_board
from flows.byo.adapt import adapt, relu6_top
from flows.byo.quantize import fold_plain
from flows.errors import UsageError
from flows.reporting.summary import build_report
from flows.results import Results, TrainResult
from models.quant import QuantSpec

# ------------------------------------------------------------------------------------------------------------
# The networks (a user's code)
# ------------------------------------------------------------------------------------------------------------


class ReLU6CNN(nn.Module):
    """ReLU6 three ways: the module, the functional call and hardtanh(0, 6)."""

    def __init__(self, c=1, n=10, side=28):
        super().__init__()
        self.conv1, self.bn1, self.act1 = nn.Conv2d(c, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU6()
        self.conv2 = nn.Conv2d(8, 8, 3, padding=1)
        self.conv3 = nn.Conv2d(8, 8, 1)
        self.pool = nn.MaxPool2d(2)
        self.fc = nn.Linear(8 * (side // 4) ** 2, n)

    def forward(self, x):
        x = self.pool(self.act1(self.bn1(self.conv1(x))))
        x = self.pool(F.relu6(self.conv2(x)))
        x = F.hardtanh(self.conv3(x), 0.0, 6.0)
        return self.fc(torch.flatten(x, 1))


class OtherHardtanh(nn.Module):
    def __init__(self, c=1, n=10, side=28):
        super().__init__()
        self.conv, self.fc = nn.Conv2d(c, 4, 3, padding=1), nn.Linear(4 * side * side, n)

    def forward(self, x):
        return self.fc(torch.flatten(F.hardtanh(self.conv(x), -1.0, 1.0), 1))


class ForeignCNN(nn.Module):
    """Someone else's Brevitas CNN: float-scale activation quantizers (unsigned ReLUs, a signed requantizer),
    float-scale weights, float biases, a signed float-scale input quantizer."""

    def __init__(self, c=1, n=10, side=28):
        super().__init__()
        self.inp = qnn.QuantIdentity(act_quant=Int8ActPerTensorFloat, return_quant_tensor=True)
        self.conv1 = qnn.QuantConv2d(c, 8, 3, padding=1, weight_quant=Int8WeightPerTensorFixedPoint, bias=True)
        self.act1 = qnn.QuantReLU(act_quant=Uint8ActPerTensorFloat, return_quant_tensor=True)
        self.pool = nn.MaxPool2d(2)
        self.requant = qnn.QuantIdentity(act_quant=Int8ActPerTensorFloat, return_quant_tensor=True)
        self.conv2 = qnn.QuantConv2d(8, 8, 3, padding=1, bias=True, bias_quant=Int32Bias)
        self.act2 = qnn.QuantReLU(act_quant=Uint8ActPerTensorFloat, return_quant_tensor=True)
        self.fc = qnn.QuantLinear(8 * (side // 4) ** 2, n, bias=True, weight_quant=Int8WeightPerTensorFixedPoint)

    def forward(self, x):
        x = self.requant(self.pool(self.act1(self.conv1(self.inp(x)))))
        x = self.pool(self.act2(self.conv2(x)))
        return self.fc(torch.flatten(x, 1))


def relu6_cnn(quant, in_shape, num_classes, arch):
    return ReLU6CNN(in_shape[0], num_classes, in_shape[1])


def other_hardtanh(quant, in_shape, num_classes, arch):
    return OtherHardtanh(in_shape[0], num_classes, in_shape[1])


def foreign_cnn(quant, in_shape, num_classes, arch):
    return ForeignCNN(in_shape[0], num_classes, in_shape[1])




# ------------------------------------------------------------------------------------------------------------
# ReLU6 in a plain network
# ------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("bits", [8, 4])
def test_relu6_saturates_at_its_quantizers_top(bits):
    spec = QuantSpec(weight_bits=4, act_bits=bits)
    model, notes = adapt(ReLU6CNN().eval(), "plain", "quant", spec, (1, 28, 28), "relu6")
    assert any("ReLU6 act1, relu6, hardtanh ->" in n for n in notes), notes
    top = relu6_top(bits)
    assert top == {8: 255 * 2**-5, 4: 15 * 2**-1}[bits]  # the smallest power-of-two scale that reaches 6
    x = torch.linspace(-3.0, 20.0, 4601).reshape(1, -1)
    for name in ("act1", "relu6", "hardtanh"):  # module, F.relu6, F.hardtanh(0, 6): one quantized ReLU each
        act = model.get_submodule(name)
        assert isinstance(act, qnn.QuantReLU), name
        y = act(x)
        scale = float(y.scale)
        assert scale == top / (2**bits - 1)
        v = y.value.reshape(-1)
        assert float(v.max()) == top and torch.all(v[x.reshape(-1) >= top] == top)  # saturates at the top
        assert torch.all(v[x.reshape(-1) <= 0] == 0)  # and at zero below
        assert torch.equal(v, torch.clamp(torch.round(x.reshape(-1) / scale), 0, 2**bits - 1) * scale)


def test_hardtanh_other_than_relu6_is_refused():
    with pytest.raises(UsageError, match=r"hardtanh\(-1, 1\); only hardtanh\(0, 6\)"):
        fold_plain(OtherHardtanh())
    with pytest.raises(UsageError, match=r"1 is a hardtanh\(-2, 2\)"):  # the module form: refused too
        fold_plain(nn.Sequential(nn.Flatten(), nn.Hardtanh(-2, 2), nn.Linear(784, 2)))


def test_hardtanh_refusal_is_one_line_before_training(cli, tmp_path):
    out = tmp_path / "b"
    res = cli("test_byo_routes:other_hardtanh", "--out", out, *DIGITS, "--until", "train", "--epochs", "1")
    assert_refused(res, "hardtanh(-1, 1)", "ReLU6", out=out)


# ------------------------------------------------------------------------------------------------------------
# A foreign Brevitas network with float-scale activation quantizers
# ------------------------------------------------------------------------------------------------------------


def test_foreign_float_scale_activations_are_converted():
    spec = QuantSpec(weight_bits=4, act_bits=8)
    model, notes = adapt(ForeignCNN(), "brevitas", "quant", spec, (1, 28, 28), "foreign")
    text = "\n".join(notes)
    for name in ("act1", "act2", "requant"):
        assert f"{name}: float-scale activation quantizer -> 8-bit power-of-two" in text, text
    assert "inp: input quantizer" in text and "conv2: float-scale weight quantizer" in text
    model.eval()
    x = torch.rand((2, 1, 28, 28))
    inp = model.inp(x)
    for name, signed in (("act1", False), ("requant", True)):
        y = model.get_submodule(name)(inp.value * 3 - 1)
        scale = float(y.scale)
        assert scale == 2.0 ** round(torch.log2(torch.tensor(scale)).item()), name  # power of two
        assert bool(y.signed) == signed and int(y.bit_width) == 8


def test_foreign_conversions_are_logged_and_reported(tmp_path, caplog):
    caplog.set_level(logging.INFO)
    overrides = {"data.dataset": "digits", "data.download": False, "train.epochs": 1, "out_dir": str(tmp_path / "b")}
    results = run_build("test_byo_routes:foreign_cnn", "pynq-z2", overrides, until="train")
    conversions = results["train"]["conversions"]
    line = "act1: float-scale activation quantizer -> 8-bit power-of-two"
    assert line in conversions and results["train"]["route"] == "brevitas"
    assert f"hardware route (brevitas): {line}" in caplog.text
    cfg = resolve_config("test_byo_routes:foreign_cnn", "pynq-z2", overrides)
    train = TrainResult.from_dict(results["train"])
    report = build_report(cfg, load_board("pynq-z2"), tmp_path / "b", Results(train=train))
    assert report["model_source"]["route"] == "brevitas"
    assert line in report["model_source"]["conversions"]


# ------------------------------------------------------------------------------------------------------------
# Recipe keys on a user's network: structured pruning refused up front where the channel groups are unknown
# ------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("entry", "words"),
    [
        # a plain network's groups are inferred (tests/test_byo_structure.py); a Fire-like fork is not inferable
        ("test_byo:fire_like", ["structured pruning", "squeeze", "structure.enabled=false", "compress.enabled=true"]),
        ("test_byo_routes:foreign_cnn", ["channel groups", "channel_groups()", "structure.enabled=false"]),
    ],
)
def test_structure_on_a_users_network_is_refused_before_training(cli, tmp_path, entry, words):
    out = tmp_path / "b"
    res = cli(entry, "--out", out, *DIGITS, "--epochs", "1", "--set", "structure.enabled=true")
    assert_refused(res, *words, out=out)


# ------------------------------------------------------------------------------------------------------------
# Whole flow to a bit-exact C simulation (slow)
# ------------------------------------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("entry", ["relu6_cnn", "foreign_cnn"])
def test_route_builds_bit_exact(tmp_path, entry):
    report = run_build(f"test_byo_routes:{entry}", "pynq-z2", {**SMALL_BUILD, "out_dir": str(tmp_path / "b")})
    assert report["csim"]["samples"] == 150 and report["csim"]["bit_exact_fraction"] == 1.0
    assert report["accuracy"]["csim"] > 0.3
    text = "\n".join(report["model_source"]["conversions"])
    if entry == "relu6_cnn":
        assert report["model_source"]["route"] == "plain" and "ReLU6 act1, relu6, hardtanh" in text
    else:
        assert report["model_source"]["route"] == "brevitas"
        assert "act2: float-scale activation quantizer -> 8-bit power-of-two" in text


COMPRESSED = {
    "compress.enabled": True,
    "compress.density": {"conv1": 0.6, "conv2": 0.4, "fc": 0.25},
    "compress.iterations": 2,
    "compress.retrain_epochs": 1,
    "compress.share_epochs": 1,
    "compress.conv_bits": 4,
    "compress.fc_bits": 4,
    "compress.conv_index_bits": 4,
    "compress.fc_index_bits": 4,
}


@pytest.mark.slow
def test_plain_network_compressed_builds_bit_exact(tmp_path):
    """Deep Compression (magnitude pruning by layer name, k-means sharing, QAT with the zeros kept) on a plain
    network, to a bit-exact C simulation of the pruned hardware model."""
    overrides = {**SMALL_BUILD, **COMPRESSED, "out_dir": str(tmp_path / "b")}
    report = run_build("test_byo:plain_cnn", "pynq-z2", overrides)
    assert report["csim"]["samples"] == 150 and report["csim"]["bit_exact_fraction"] == 1.0
    assert report["model_source"]["route"] == "plain"
    layers = {lay["name"]: lay for lay in report["compression"]["layers"]}
    assert set(layers) == {"conv1", "conv2", "fc"}  # pruned by the network's own layer names
    for name, density in COMPRESSED["compress.density"].items():
        assert abs(layers[name]["density"] - density) < 0.02 and layers[name]["pruned"] > 0, layers[name]
    qat = torch.load(tmp_path / "b" / "model" / "qat.pt", weights_only=True)
    for name, density in COMPRESSED["compress.density"].items():
        kept = float((qat[f"{name}.weight"] != 0).float().mean())
        assert kept <= density + 0.02, (name, kept)  # the hardware model keeps the pruned zeros
    assert report["accuracy"]["csim"] > 0.3
