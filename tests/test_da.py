"""flows/da: distributed arithmetic as a per-layer strategy on VivadoAccelerator (pynq-z2), bit-exact in C simulation.

A small Brevitas MLP (64-16-10) and CNN (3x3 conv with 4 channels, max pool, dense) built with the
project's quantizers are exported, converted with DA on their conv/dense layers and the project's
own passes (exact accumulators, ReLU fusion, FIFO sizing), compiled with g++ and compared with the
quantized PyTorch model bit for bit. `da_cost` is checked for its label, its cache and its agreement
with what the conversion solved. Skipped without da4ml.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch import nn

pytest.importorskip("da4ml")

from flows import convert as convert_module  # noqa: E402
from flows.boards import load_board  # noqa: E402
from flows.config import HLSConfig, QuantConfig  # noqa: E402
from flows.csim import compile_project, load_library  # noqa: E402
from flows.da.hls_pass import (  # noqa: E402
    COST_ATTR,
    DA_STRATEGY,
    KEY_ATTR,
    da_layer_settings,
    da_layers,
)
from flows.da.rtl import simulate, synthesize, synthesize_da_layers, yosys_family  # noqa: E402
from flows.da.solver import CACHE_ENV, SolverOptions, cache_path, da_cost, solve_kernel  # noqa: E402
from flows.export import export_model, quantize_inputs, to_hw_layout  # noqa: E402
from flows.modelstats import reference_logits  # noqa: E402
from models.quant import QuantSpec, quant_conv, quant_input, quant_linear, quant_relu  # noqa: E402

SAMPLES = 200
SPEC = QuantSpec(weight_bits=4)
INPUT_TYPE = "ufixed<8,0,RND_CONV,SAT>"  # the networks' input grid (8-bit unsigned, scale 2^-8)


class MLP(nn.Module):
    def __init__(self):
        super().__init__()
        self.inp, self.fc1, self.relu = quant_input(SPEC), quant_linear(SPEC, 64, 16), quant_relu(SPEC)
        self.fc2 = quant_linear(SPEC, 16, 10)

    def forward(self, x):
        return self.fc2(self.relu(self.fc1(self.inp(x))))


class CNN(nn.Module):
    def __init__(self):
        super().__init__()
        self.inp, self.conv, self.relu = quant_input(SPEC), quant_conv(SPEC, 1, 4, 3), quant_relu(SPEC)
        self.pool, self.fc = nn.MaxPool2d(2), quant_linear(SPEC, 4 * 5 * 5, 10)

    def forward(self, x):
        return self.fc(torch.flatten(self.pool(self.relu(self.conv(self.inp(x)))), 1))


def _calibrated(net: nn.Module, shape: tuple[int, ...]) -> nn.Module:
    torch.manual_seed(0)
    net.train()
    with torch.no_grad():
        for _ in range(3):
            net(torch.rand(64, *shape))
    return net.eval()


def convert_da(wrapper, out: Path, layers: list[str], cache_dir: Path, **hls):
    """flows.convert.convert with DA on `layers` (convert selects the DA flow itself for such layers)."""
    hls_config = replace(HLSConfig(), **hls)
    board = load_board("pynq-z2")
    return convert_module.convert(
        wrapper, out, hls_config, QuantConfig(), board, layer_settings=da_layer_settings(layers)
    )[0]


def _inputs(shape: tuple[int, ...]) -> torch.Tensor:
    rng = np.random.default_rng(0)
    x = np.floor(rng.random((SAMPLES, *shape)) * 256) / 256  # the 8-bit input grid
    x[:20] = np.where(rng.random((20, *shape)) < 0.5, 0.0, 255 / 256)  # extremes: saturating activations
    return torch.tensor(x)


def _assert_bit_exact(net, model, out: Path, shape: tuple[int, ...]) -> None:
    compile_project(out / "hls4ml_prj", "myproject")
    n_out = int(np.prod(model.get_output_variables()[0].shape))
    lib = load_library(out / "hls4ml_prj", "myproject", int(np.prod(shape)), n_out)
    xq = quantize_inputs(net, _inputs(shape).double())
    reference = reference_logits(net, xq)
    got = lib.run(to_hw_layout(xq.numpy(), shape))
    assert got.shape == reference.shape == (SAMPLES, 10)
    np.testing.assert_array_equal(got, reference)
    assert len({tuple(row) for row in got}) > SAMPLES // 2  # varied outputs, not a constant


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("da_cache")


def test_mlp_dense_layers_as_distributed_arithmetic_bit_exact(tmp_path, monkeypatch, cache_dir):
    monkeypatch.setenv(CACHE_ENV, str(cache_dir))  # the conversion's da4ml solutions go to the test's cache
    net = _calibrated(MLP(), (64,))
    wrapper = export_model(net, (64,), tmp_path / "mlp.onnx")
    model = convert_da(wrapper, tmp_path, ["Dense_MatMul_0", "Dense_MatMul_1"], cache_dir)
    dense = {layer.name: layer for layer in model.get_layers() if layer.class_name == "Dense"}
    assert {name: layer.get_attr("strategy") for name, layer in dense.items()} == {
        "Dense_MatMul_0": DA_STRATEGY,
        "Dense_MatMul_1": DA_STRATEGY,
    }
    assert dense["Dense_MatMul_0"].get_attr("fused_activation") == "Relu_0"  # the call re-rendered after fusion
    costs = da_layers(model)
    assert set(costs) == set(dense)
    for name, (n_in, n_out) in {"Dense_MatMul_0": (64, 16), "Dense_MatMul_1": (16, 10)}.items():
        cost = costs[name]
        assert cost["source"] == "da4ml" and cost["LUT"] > 0 and cost["adders"] > 0
        assert (cost["n_in"], cost["n_out"], cost["ii_per_vector"], cost["instances"]) == (n_in, n_out, 1, 1)
    top = (tmp_path / "hls4ml_prj" / "firmware" / "myproject.cpp").read_text()
    params = (tmp_path / "hls4ml_prj" / "firmware" / "parameters.h").read_text()
    for layer in dense.values():
        assert f"config{layer.index}>(" in top and f"nnet::dense_da_{layer.index}<" in params
    assert not list((tmp_path / "hls4ml_prj" / "firmware" / "weights").glob("w*.h"))  # no weight ROMs
    _assert_bit_exact(net, model, tmp_path, (64,))

    # the fit search's call predicts the conversion's solution (same key, same cost) without converting
    s_w = float(net.fc1.quant_weight().scale)
    bias_step = 2.0**-8 * s_w  # Int32Bias: input scale x weight scale
    bias = torch.round(net.fc1.bias.detach().double() / bias_step).numpy() * bias_step
    weights = net.fc1.quant_weight().value.detach().double().numpy().T
    predicted = da_cost(weights, INPUT_TYPE, bias, cache_dir=cache_dir)
    assert predicted["cached"] and predicted["key"] == costs["Dense_MatMul_0"]["key"]
    assert predicted["LUT"] == costs["Dense_MatMul_0"]["LUT"]


@pytest.mark.parametrize("io_type", ["io_stream", "io_parallel"])
def test_cnn_conv_and_dense_as_distributed_arithmetic_bit_exact(tmp_path, monkeypatch, cache_dir, io_type):
    """io_stream: the Dense reads the in-place Flatten alias of the pool's stream (hls4ml's own pass fails
    there). DA asked for on the pooling layer falls back to Latency."""
    monkeypatch.setenv(CACHE_ENV, str(cache_dir))
    net = _calibrated(CNN(), (1, 12, 12))
    wrapper = export_model(net, (1, 12, 12), tmp_path / "cnn.onnx")
    layers = ["Conv2D_Conv_0", "Dense_MatMul_0"]
    model = convert_da(wrapper, tmp_path, [*layers, "MaxPool_0"], cache_dir, io_type=io_type)
    by_name = {layer.name: layer for layer in model.get_layers()}
    # a layer DA cannot take falls back to the Latency strategy, and says why
    assert da_layers(model)["MaxPool_0"] == {
        "fallback": "hls4ml has no distributed-arithmetic Pooling2D layer",
        "strategy": "latency",
    }
    for name in layers:
        assert by_name[name].get_attr("strategy") == DA_STRATEGY and by_name[name].get_attr(COST_ATTR)
    assert by_name["Conv2D_Conv_0"].get_attr(COST_ATTR)["n_in"] == 9  # 3x3 window, one channel
    assert by_name["Dense_MatMul_0"].get_attr(COST_ATTR)["n_in"] == 100
    _assert_bit_exact(net, model, tmp_path, (1, 12, 12))


def test_da_cost_is_labelled_cached_and_follows_sparsity(tmp_path):
    rng = np.random.default_rng(3)
    weights = rng.integers(-7, 8, size=(48, 12)) / 8.0
    first = da_cost(weights, "ufixed<8,0>", cache_dir=tmp_path)
    assert first["source"] == "da4ml" and not first["cached"] and first["LUT"] > 0
    assert cache_path(tmp_path, first["key"]).is_file()
    again = da_cost(weights, "ufixed<8,0>", cache_dir=tmp_path)
    assert again["cached"] and {k: v for k, v in again.items() if k != "cached"} == {
        k: v for k, v in first.items() if k != "cached"
    }
    assert da_cost(weights, "fixed<8,1>", cache_dir=tmp_path)["key"] != first["key"]  # input type is in the key
    assert da_cost(weights, "ufixed<8,0>", options=SolverOptions(hard_dc=-1), cache_dir=tmp_path)["key"] != first["key"]
    pruned = np.where(rng.random(weights.shape) < 0.8, 0.0, weights)  # 80% zeros cost (almost) nothing
    sparse = da_cost(pruned, "ufixed<8,0>", cache_dir=tmp_path)
    assert sparse["n_nonzero"] == np.count_nonzero(pruned) and sparse["LUT"] < 0.5 * first["LUT"]
    x = rng.integers(0, 256, size=(100, 48)) / 256.0  # the solution computes x @ W exactly
    solution = solve_kernel(weights, "ufixed<8,0>", cache_dir=tmp_path)
    np.testing.assert_array_equal(solution.logic.predict(x), x @ weights)


def test_unreadable_cache_entry_is_solved_again(tmp_path, caplog):
    weights = np.array([[0.5, -0.25], [0.125, 0.75], [0.0, -0.5]])
    key = da_cost(weights, "ufixed<8,0>", cache_dir=tmp_path)["key"]
    cache_path(tmp_path, key).write_text('{"format": 1, "logic": [')
    again = da_cost(weights, "ufixed<8,0>", cache_dir=tmp_path)
    assert not again["cached"] and again["key"] == key and "unreadable DA solution" in caplog.text
    assert json.loads(cache_path(tmp_path, key).read_text())["format"] == 1


@pytest.mark.parametrize(
    ("board", "family"),
    [("pynq-z2", "xc7"), ("pynq-z1", "xc7"), ("zedboard", "xc7"), ("arty-a7-35t", "xc7"), ("arty-a7-100t", "xc7")]
    + [("kv260", "xcup"), ("ultra96-v2", "xcup"), ("zcu104", "xcup")],
)
def test_yosys_family_of_each_board(board, family):
    assert yosys_family(load_board(board).part) == family


def test_yosys_family_unknown_and_other_parts():
    assert yosys_family("xcvu9p-flga2104-2-e") == "xcup" and yosys_family("xcku040-ffva1156-2-e") == "xcu"
    assert yosys_family("xc2vp30") is None


def test_missing_yosys_and_verilator_are_labelled_skips(tmp_path, monkeypatch):
    solution = solve_kernel(np.array([[0.5, -0.25], [0.125, 0.75]]), "ufixed<8,0>", cache_dir=tmp_path)
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    assert synthesize(tmp_path, "da", "xc7", "Dense_X") is None
    assert simulate(solution, "da", tmp_path / "sim", np.zeros((1, 2)), "Dense_X") is None
    layer = SimpleNamespace(name="Dense_X", get_attr=lambda key, default=None: {KEY_ATTR: solution.key}.get(key))
    model = SimpleNamespace(get_layers=lambda: [layer])
    result = synthesize_da_layers(model, tmp_path, "xc7z020clg400-1", tmp_path)
    assert result == {"Dense_X": {"source": "yosys", "status": "skipped", "reason": result["Dense_X"]["reason"]}}
    assert "yosys is not on PATH" in result["Dense_X"]["reason"]


@pytest.mark.yosys  # a minute with yosys and verilator on PATH; DA through the default flow: tests/test_da_fit.py
def test_a_build_with_a_distributed_arithmetic_layer(fire_stream_build, tmp_path, monkeypatch):
    """Through the flow: `hls.layer_strategy` puts the classifier on DA; only convert and csim rerun, the
    C simulation stays bit-exact on the test images, the layer's cost is labelled da4ml, and its Verilog
    goes through yosys and verilator (or a labelled skip without them)."""
    import json

    from flows.api import run_build
    from tests.conftest import SMALL, copy_build

    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "cache"))
    src, _ = fire_stream_build
    out = copy_build(src, tmp_path / "da")
    overrides = {
        **SMALL,
        "out_dir": str(out),
        "hls.layer_strategy": {"MatMul_0": DA_STRATEGY},
        "hls.require_fit": False,
        "hls.rtl": "auto",  # yosys + verilator when on PATH (SMALL turns them off)
    }
    report = run_build("lenet5_fire", "pynq-z2", overrides)
    row = next(r for r in report["hls_layers"] if r["name"] == "Dense_MatMul_0")
    assert row["da"]["source"] == "da4ml" and row["da"]["LUT"] > 0
    assert report["csim"]["bit_exact_fraction"] == 1.0
    layer = next(r for r in report["resources"]["layers"] if r["name"] == "Dense_MatMul_0")
    assert layer["strategy"] == DA_STRATEGY and layer["DSP"] == 0
    steps = json.loads((out / "steps.json").read_text())["steps"]
    assert steps["qat"]["skipped"] and not steps["convert"]["skipped"]
    rtl = report["rtl"]["Dense_MatMul_0"]  # yosys figures beside the estimate, or a labelled skip
    assert rtl["source"] == "yosys"
    if shutil.which("yosys"):
        assert rtl["status"] == "ok" and rtl["LUT"] > 0
        if shutil.which("verilator"):
            assert rtl["simulation"]["source"] == "verilator" and rtl["simulation"]["bit_exact"]
    else:
        assert rtl["status"] == "skipped" and "yosys" in rtl["reason"]
    assert "through yosys" in (out / "report.md").read_text()


class PrunedCNN(nn.Module):
    """A conv for distributed arithmetic and a pruned dense layer for the sparse kernel, in one design."""

    def __init__(self):
        super().__init__()
        self.inp, self.conv, self.relu = quant_input(SPEC), quant_conv(SPEC, 1, 4, 3), quant_relu(SPEC)
        self.pool, self.fc = nn.MaxPool2d(2), quant_linear(SPEC, 4 * 5 * 5, 10)
        with torch.no_grad():
            keep = torch.rand(self.fc.weight.shape, generator=torch.Generator().manual_seed(1)) < 0.2
            self.fc.weight.mul_(keep)
            # one filter pruned away, with a bias below the output's LSB: its DA output is a tiny constant,
            # whose cast once tripped an ap_types assertion in C simulation (flows/csim.py compile_flags)
            self.conv.weight[0].zero_()
            self.conv.bias[0] = -0.0068

    def forward(self, x):
        return self.fc(torch.flatten(self.pool(self.relu(self.conv(self.inp(x)))), 1))


def test_sparse_kernel_and_distributed_arithmetic_in_one_design_bit_exact(tmp_path, monkeypatch, cache_dir):
    from flows.sparse.extension import STRATEGY as SPARSE_STRATEGY
    from flows.sparse.layout import LAYER_CLASS as SPARSE_CLASS

    monkeypatch.setenv(CACHE_ENV, str(cache_dir))
    net = _calibrated(PrunedCNN(), (1, 12, 12))
    wrapper = export_model(net, (1, 12, 12), tmp_path / "cnn.onnx")
    settings = {**da_layer_settings(["Conv2D_Conv_0"]), "Dense_MatMul_0": {"Strategy": SPARSE_STRATEGY}}
    model = convert_module.convert(
        wrapper, tmp_path, HLSConfig(io_type="io_stream"), QuantConfig(), load_board("pynq-z2"), layer_settings=settings
    )[0]
    by_name = {layer.name: layer for layer in model.get_layers()}
    assert by_name["Conv2D_Conv_0"].get_attr("strategy") == DA_STRATEGY and by_name["Conv2D_Conv_0"].get_attr(COST_ATTR)
    assert [layer.class_name for layer in model.get_layers()].count(SPARSE_CLASS) == 1
    _assert_bit_exact(net, model, tmp_path, (1, 12, 12))
