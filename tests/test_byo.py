"""Bring your own network (issue 13): plain PyTorch, foreign Brevitas models, --weights, QONNX files as MODEL.

The networks are written here, not taken from models/: a plain CNN with BatchNorm, a Fire-like branch with
torch.cat, a residual block, a Brevitas MLP with its own 2-bit weight quantizer and BatchNorm1d, an exported
QONNX file. The default run checks the routes up to the QONNX graph (PyTorch vs QONNX execution, exact) and every
refusal (exit 2, one line, before training); `-m slow` runs each network through the whole flow to a bit-exact C
simulation on digits. Entry points are `test_byo:<function>` (pytest puts tests/ on sys.path).
"""

from __future__ import annotations

from pathlib import Path

import brevitas.nn as qnn
import numpy as np
import pytest
import torch
from brevitas.quant import Int8ActPerTensorFloat, Int8WeightPerTensorFixedPoint, Uint8ActPerTensorFixedPoint
from brevitas.quant.binary import SignedBinaryWeightPerTensorConst
from torch import nn

from flows.api import run_build
from flows.byo.adapt import adapt, route_of
from flows.byo.foreign import find_input_quantizer
from flows.byo.quantize import fold_plain, quantize_plain
from models.quant import QuantSpec
from tests.byo_support import calibrated, exported

DIGITS = ["--dataset", "digits", "--set", "data.download=false"]
FAST = {"hls.da": "off", "hls.rtl": "off", "dataflow.enabled": False}  # other issues' extras, not what is tested here
SPEC = QuantSpec(weight_bits=4, act_bits=8)


# ------------------------------------------------------------------------------------------------------------
# The networks (a user's code: torch layers, functional calls, no attribute names the flow knows)
# ------------------------------------------------------------------------------------------------------------


class PlainCNN(nn.Module):
    def __init__(self, c=1, n=10, side=28):
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(c, 8, 3, padding=1), nn.BatchNorm2d(8)
        self.conv2, self.bn2 = nn.Conv2d(8, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8)
        self.pool = nn.MaxPool2d(2)
        self.fc = nn.Linear(8 * (side // 4) ** 2, n)

    def forward(self, x):
        x = self.pool(torch.relu(self.bn1(self.conv1(x))))
        x = self.pool(nn.functional.relu(self.bn2(self.conv2(x))))
        return self.fc(torch.flatten(x, 1))


class FireLike(nn.Module):
    def __init__(self, c=1, n=10, side=28, relu_on_branches=True):
        super().__init__()
        self.stem, self.bn, self.pool = nn.Conv2d(c, 8, 3, padding=1), nn.BatchNorm2d(8), nn.MaxPool2d(2)
        self.squeeze, self.bn_s = nn.Conv2d(8, 4, 1), nn.BatchNorm2d(4)
        self.e1, self.e3 = nn.Conv2d(4, 6, 1), nn.Conv2d(4, 6, 3, padding=1)
        self.relu = nn.ReLU()
        self.fc = nn.Linear(12 * (side // 4) ** 2, n)
        self.relu_on_branches = relu_on_branches

    def forward(self, x):
        x = self.pool(self.relu(self.bn(self.stem(x))))
        s = torch.relu(self.bn_s(self.squeeze(x)))
        if self.relu_on_branches:
            x = torch.cat([torch.relu(self.e1(s)), torch.relu(self.e3(s))], 1)
        else:
            x = torch.cat([self.e1(s), self.e3(s)], 1)
        return self.fc(torch.flatten(self.pool(x), 1))


class Residual(nn.Module):
    def __init__(self, c=1, n=10, side=28):
        super().__init__()
        self.stem, self.bn, self.pool = nn.Conv2d(c, 8, 3, padding=1), nn.BatchNorm2d(8), nn.MaxPool2d(2)
        self.c1, self.c2 = nn.Conv2d(8, 8, 3, padding=1), nn.Conv2d(8, 8, 3, padding=1)
        self.fc = nn.Linear(8 * (side // 2) ** 2, n)

    def forward(self, x):
        x = self.pool(torch.relu(self.bn(self.stem(x))))
        x = torch.relu(x + self.c2(torch.relu(self.c1(x))))
        return self.fc(x.flatten(1))


class W2(Int8WeightPerTensorFixedPoint):
    bit_width = 2


class ForeignMLP(nn.Module):
    """Someone else's Brevitas MLP: a signed float-scale input quantizer, 2-bit weights, BatchNorm1d, no bias."""

    def __init__(self, n_in, n_out, weight_quant=W2, hidden=64):
        super().__init__()
        self.quant_in = qnn.QuantIdentity(act_quant=Int8ActPerTensorFloat, return_quant_tensor=True)
        self.fc1 = qnn.QuantLinear(n_in, hidden, bias=False, weight_quant=weight_quant)
        self.bn1 = nn.BatchNorm1d(hidden)
        self.act1 = qnn.QuantReLU(act_quant=Uint8ActPerTensorFixedPoint, return_quant_tensor=True)
        self.fc2 = qnn.QuantLinear(hidden, n_out, bias=True, weight_quant=weight_quant)

    def forward(self, x):
        return self.fc2(self.act1(self.bn1(self.fc1(self.quant_in(x.flatten(1))))))


class BNAfterReLU(nn.Module):
    def __init__(self, c=1, n=10, side=28):
        super().__init__()
        self.conv, self.bn = nn.Conv2d(c, 4, 3, padding=1), nn.BatchNorm2d(4)
        self.fc = nn.Linear(4 * side * side, n)

    def forward(self, x):
        return self.fc(torch.flatten(self.bn(torch.relu(self.conv(x))), 1))


class WithSigmoid(nn.Module):
    def __init__(self, c=1, n=10, side=28):
        super().__init__()
        self.fc1, self.act, self.fc2 = nn.Linear(c * side * side, 16), nn.Sigmoid(), nn.Linear(16, n)

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x.flatten(1))))


class FunctionalSigmoid(nn.Module):
    def __init__(self, c=1, n=10, side=28):
        super().__init__()
        self.fc = nn.Linear(c * side * side, n)

    def forward(self, x):
        return self.fc(torch.sigmoid(x.flatten(1)))


class GlobalAvgPool(nn.Module):
    def __init__(self, c=1, n=10, side=28):
        super().__init__()
        self.conv, self.gap, self.fc = nn.Conv2d(c, 8, 3, padding=1), nn.AdaptiveAvgPool2d(1), nn.Linear(8, n)

    def forward(self, x):
        return self.fc(torch.flatten(self.gap(torch.relu(self.conv(x))), 1))


def _plain(cls, **kw):
    def build(quant, in_shape, num_classes, arch):
        return cls(in_shape[0], num_classes, in_shape[1], **kw)

    return build


plain_cnn = _plain(PlainCNN)
fire_like = _plain(FireLike)
fire_no_relu = _plain(FireLike, relu_on_branches=False)
residual = _plain(Residual)
bn_after_relu = _plain(BNAfterReLU)
with_sigmoid = _plain(WithSigmoid)
functional_sigmoid = _plain(FunctionalSigmoid)
global_avg_pool = _plain(GlobalAvgPool)


def foreign_mlp(quant, in_shape, num_classes, arch):
    return ForeignMLP(int(np.prod(in_shape)), num_classes)


def foreign_binary(quant, in_shape, num_classes, arch):
    return ForeignMLP(int(np.prod(in_shape)), num_classes, weight_quant=SignedBinaryWeightPerTensorConst)


# ------------------------------------------------------------------------------------------------------------
# Helpers
# ------------------------------------------------------------------------------------------------------------




def assert_refused(res, *words, out: Path):
    code, err, log = res
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert code == 2, err
    assert len(lines) == 1 and "Traceback" not in err + log, err
    assert all(w.lower() in lines[0].lower() for w in words), lines[0]
    assert not (out / "model" / "float.pt").exists(), "refused after training"
    assert "float epoch" not in log, "refused after training"


# ------------------------------------------------------------------------------------------------------------
# Plain PyTorch: quantized by the flow's rules, exact down to the QONNX graph (default run)
# ------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("cls", [PlainCNN, FireLike, Residual])
def test_plain_network_quantizes_to_an_exact_qonnx_graph(cls, tmp_path):
    torch.manual_seed(0)
    float_net = cls().eval()
    calibrated(float_net)  # BatchNorm statistics that are not the identity
    assert route_of(cls()) == "plain"
    folded = fold_plain(float_net)
    x = torch.rand((4, 1, 28, 28))
    assert torch.allclose(folded(x), float_net(x), atol=1e-5)  # BatchNorm folded without changing the math
    assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in folded.modules())
    q = calibrated(quantize_plain(fold_plain(float_net), SPEC))
    assert find_input_quantizer(q, x[:1]) is not None  # found from the graph, whatever its name
    wrapper, check = exported(q, tmp_path)
    assert check["max_abs_diff"] == 0.0
    assert sum(n.op_type == "Transpose" for n in wrapper.graph.node) == 0
    # one quantizer at a concat, the hardware input type from the flow's unsigned input quantizer
    assert wrapper.get_metadata_prop("fireflow_input_precision") == "ufixed<8,0,RND_CONV,SAT>"
    if cls is FireLike:
        concat = [n for n in wrapper.graph.node if n.op_type == "Concat"]
        assert len(concat) == 1


def test_fresh_build_loads_a_trained_state(tmp_path):
    """Every stage rebuilds the network from the builder: a trained state dict must load into the rewrite."""
    trained = calibrated(quantize_plain(fold_plain(FireLike().eval()), SPEC))
    fresh = quantize_plain(fold_plain(FireLike().eval()), SPEC)
    fresh.load_state_dict(trained.state_dict())  # strict
    x = torch.rand((3, 1, 28, 28))
    assert torch.equal(fresh.eval()(x), trained(x))


# ------------------------------------------------------------------------------------------------------------
# Foreign Brevitas: kept, converted, refused
# ------------------------------------------------------------------------------------------------------------


def test_foreign_brevitas_is_converted_and_exact(tmp_path):
    net = ForeignMLP(784, 10)
    assert route_of(net) == "brevitas"
    model, notes = adapt(net, "brevitas", "quant", SPEC, (1, 28, 28), "foreign")
    text = "\n".join(notes)
    assert "quant_in: input quantizer" in text and "fc2: float bias" in text and "fc1: bias added" in text
    assert "fc1: " not in text.replace("fc1: bias added", "")  # its 2-bit power-of-two weights are kept
    assert not any(isinstance(m, nn.BatchNorm1d) for m in model.modules())  # folded (quant stage)
    assert model.fc1.quant_weight().bit_width.item() == 2
    _, check = exported(calibrated(model), tmp_path)
    assert check["max_abs_diff"] == 0.0


def test_foreign_float_scale_weights_are_converted():
    from brevitas.quant import Int8WeightPerTensorFloat

    net = ForeignMLP(784, 10, weight_quant=Int8WeightPerTensorFloat)
    model, notes = adapt(net, "brevitas", "quant", SPEC, (1, 28, 28), "foreign")
    assert any("float-scale weight quantizer -> 8-bit power-of-two" in n for n in notes)
    scale = float(model.fc1.quant_weight().scale)
    assert np.log2(scale) == round(np.log2(scale))


@pytest.mark.parametrize(
    ("entry", "words"),
    [
        ("foreign_binary", ["fc1", "binary", "2-bit"]),
        ("bn_after_relu", ["BatchNorm", "bn", "right after a Conv2d/Linear"]),
        ("with_sigmoid", ["act", "Sigmoid", "does not support"]),
        ("fire_no_relu", ["torch.cat", "ReLU"]),
        ("functional_sigmoid", ["sigmoid", "does not support"]),
        ("global_avg_pool", ["gap", "average pool", "28x28", "division by 784", "power of two", "MaxPool2d"]),
    ],
)
def test_refused_before_training(cli, tmp_path, entry, words):
    out = tmp_path / "b"
    res = cli(f"test_byo:{entry}", "--out", out, *DIGITS, "--until", "train", "--epochs", "1")
    assert_refused(res, *words, out=out)


# ------------------------------------------------------------------------------------------------------------
# --weights FILE
# ------------------------------------------------------------------------------------------------------------


def test_weights_file_replaces_training(cli, tmp_path):
    torch.manual_seed(3)
    net = calibrated(PlainCNN())
    weights = tmp_path / "trained.pt"
    torch.save({"state_dict": net.state_dict()}, weights)  # wrapped, as training scripts save
    out = tmp_path / "b"
    code, err, log = cli("test_byo:plain_cnn", "--out", out, *DIGITS, "--until", "train", "--weights", weights)
    assert code == 0, err
    assert "float epoch" not in log and "float training skipped" in log
    saved = torch.load(out / "model" / "float.pt", weights_only=True)
    expected = fold_plain(net.eval()).state_dict()
    assert saved.keys() == expected.keys()
    assert all(torch.equal(saved[k], expected[k]) for k in saved)


def test_weights_file_that_runs_code_or_mismatches_is_refused(cli, tmp_path):
    import pickle

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    evil = tmp_path / "evil.pt"
    evil.write_bytes(pickle.dumps({"w": Evil()}))
    out = tmp_path / "b"
    res = cli("test_byo:plain_cnn", "--out", out, *DIGITS, "--until", "train", "--weights", evil)
    assert_refused(res, "--weights", "not a readable state dict", out=out)
    wrong = tmp_path / "wrong.pt"
    torch.save(Residual().state_dict(), wrong)
    res = cli("test_byo:plain_cnn", "--out", out, *DIGITS, "--until", "train", "--weights", wrong)
    assert_refused(res, "--weights", "does not match", out=out)


# ------------------------------------------------------------------------------------------------------------
# A QONNX file as MODEL
# ------------------------------------------------------------------------------------------------------------


def _export(model, path: Path) -> Path:
    from brevitas.export import export_qonnx

    export_qonnx(calibrated(model), torch.zeros(1, 1, 28, 28), export_path=str(path), dynamo=False)
    return path


def test_qonnx_with_float_scales_is_refused(cli, tmp_path):
    class FloatScales(nn.Module):
        def __init__(self):
            super().__init__()
            self.inp = qnn.QuantIdentity(act_quant=Int8ActPerTensorFloat, return_quant_tensor=True)
            self.fc = qnn.QuantLinear(784, 10, bias=False)

        def forward(self, x):
            return self.fc(self.inp(x.flatten(1)))

    path = _export(FloatScales(), tmp_path / "float_scales.onnx")
    out = tmp_path / "b"
    res = cli(path, "--out", out, *DIGITS)
    assert_refused(res, "not a power of two", "fixed-point", out=out)
    assert not (out / "model.qonnx.onnx").exists()


# ------------------------------------------------------------------------------------------------------------
# Whole flow to a bit-exact C simulation (slow: each builds and compiles an hls4ml project)
# ------------------------------------------------------------------------------------------------------------

SMALL_BUILD = {
    "data.dataset": "digits",
    "data.download": False,
    "train.epochs": 4,
    "train.qat_epochs": 1,
    "train.lr": 0.005,
    "csim.samples": 150,
    "quant.weight_bits": 4,
    **FAST,
}


@pytest.mark.slow
@pytest.mark.parametrize("entry", ["plain_cnn", "fire_like", "residual", "foreign_mlp"])
def test_network_builds_bit_exact(tmp_path, entry):
    report = run_build(f"test_byo:{entry}", "pynq-z2", {**SMALL_BUILD, "out_dir": str(tmp_path / "b")})
    assert report["csim"]["samples"] == 150 and report["csim"]["bit_exact_fraction"] == 1.0
    assert report["model_source"]["route"] == ("brevitas" if entry == "foreign_mlp" else "plain")
    assert report["accuracy"]["csim"] > 0.3


@pytest.mark.slow
def test_qonnx_file_builds_bit_exact(tmp_path):
    spec = QuantSpec(weight_bits=4)
    from models.quant import quant_conv, quant_input, quant_linear, quant_relu

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.conv, self.r = quant_input(spec), quant_conv(spec, 1, 4, 3, padding=1), quant_relu(spec)
            self.pool, self.fc = nn.MaxPool2d(4), quant_linear(spec, 4 * 7 * 7, 10)

        def forward(self, x):
            return self.fc(torch.flatten(self.pool(self.r(self.conv(self.a(x)))), 1))

    path = _export(Net(), tmp_path / "net.onnx")
    overrides = {"data.dataset": "digits", "csim.samples": 150, "out_dir": str(tmp_path / "b"), **FAST}
    report = run_build(str(path), "pynq-z2", overrides)
    assert report["csim"]["bit_exact_fraction"] == 1.0 and report["csim"]["samples"] == 150
    assert report["model_source"] == {"route": "onnx", "file": str(path), "conversions": []}
    assert report["accuracy"]["float"] is None


@pytest.mark.slow
def test_residual_add_passes_the_dataflow_check(tmp_path):
    """A user's residual block (a fork/join through an add) through the bounded-FIFO dataflow check (issue 16)."""
    overrides = {**SMALL_BUILD, "dataflow.enabled": True, "out_dir": str(tmp_path / "b")}
    report = run_build("test_byo:residual", "pynq-z2", overrides)
    flow = report["dataflow"]
    assert flow["status"] == "passed" and flow["bit_exact"] and flow["images"] >= 2
    assert flow["fork_joins"], "the residual add is a fork/join the check must see"
