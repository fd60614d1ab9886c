"""The sparse, weight-shared Dense kernel (flows/sparse, flows/estimator/sparse.py), issue 11 item 1.

A 64-32-10 Brevitas MLP with the project's quantizers, pruned to 10% density, is exported to QONNX and
converted twice for pynq-z2 (VivadoAccelerator, io_stream): once unmodified, once with both Dense
layers configured ``"Strategy": "sparse"`` and the sparse flow added to the project's flow. Both are
compiled with g++; the sparse C simulation must match PyTorch and the unmodified project bit for bit
on 200 digits images, and the written top function must call the sparse kernel (a template on the
wrong backend silently drops the call). A small CNN checks the Dense after a Flatten (an io_stream
input of one pixel's channels per word). The layout, the PE count for a rate and the estimate are
tested without hls4ml.
"""

from __future__ import annotations

import math
import re
from contextlib import redirect_stdout
from dataclasses import replace
from io import StringIO

import hls4ml
import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits
from torch import nn

from flows.boards import load_board
from flows.config import HLSConfig, QuantConfig
from flows.convert import convert, make_hls_config, resolve_settings
from flows.csim import compile_project, in_model_order, load_library
from flows.dataflow.project import apply_depths
from flows.errors import UsageError
from flows.estimator import describe_hls_model, estimate_design
from flows.estimator.sparse import estimate_sparse_dense, spec_from_hls_layer, spec_from_layout
from flows.export import export_model, quantize_inputs, to_hw_layout
from flows.hls_passes import MIN_DEPTH_ATTR
from flows.hls_writer import write_project
from flows.sparse.extension import FALLBACK_ATTR, KERNEL, LAYER_CLASS, with_sparse_dense
from flows.sparse.layout import OUTPUT_ORDER_ATTR, WALK_RESERVE, build_layout, choose_pes, walk
from flows.sparse.pace import paced_settings
from models.quant import QuantSpec, quant_conv, quant_input, quant_linear, quant_relu

DENSITY = 0.10
SAMPLES = 200
PROJECT = "myproject"


class PrunedMLP(nn.Module):
    """64-32-10 with quantized input, 5-bit weights, an 8-bit ReLU (fused into the first layer by the flow)."""

    def __init__(self, spec: QuantSpec):
        super().__init__()
        self.inp = quant_input(spec)
        self.fc1 = quant_linear(spec, 64, 32)
        self.relu1 = quant_relu(spec)
        self.fc2 = quant_linear(spec, 32, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.relu1(self.fc1(self.inp(x))))


def _prune(layer: nn.Linear, density: float) -> torch.Tensor:
    """Keep the largest `density` share of the weights by magnitude; returns the mask."""
    w = layer.weight.data
    threshold = w.abs().flatten().kthvalue(int(round(w.numel() * (1 - density)))).values
    mask = (w.abs() > threshold).to(w.dtype)
    w.mul_(mask)
    return mask


def _train(net: PrunedMLP, x: torch.Tensor, y: torch.Tensor, epochs: int, masks: list[torch.Tensor]) -> None:
    """A few epochs of Adam (seconds): enough for varied outputs, not for accuracy claims."""
    opt = torch.optim.Adam(net.parameters(), lr=0.01)
    net.train()
    for _ in range(epochs):
        for i in range(0, len(x), 128):
            opt.zero_grad()
            nn.functional.cross_entropy(net(x[i : i + 128]), y[i : i + 128]).backward()
            opt.step()
            with torch.no_grad():
                for layer, mask in zip((net.fc1, net.fc2), masks):
                    layer.weight.mul_(mask)


def _quantized_weights(net: PrunedMLP) -> list[np.ndarray]:
    """The quantized weights of both layers as hls4ml holds them, (n_in, n_out)."""
    with torch.no_grad():
        return [layer.quant_weight().value.double().numpy().T for layer in (net.fc1, net.fc2)]


@pytest.fixture(scope="module")
def mlp(tmp_path_factory):
    """The pruned network, its QONNX graph and 200 quantized digits images (the exact hardware inputs)."""
    torch.manual_seed(0)
    digits = load_digits()
    images = torch.tensor(np.clip(digits.data / 16.0, 0.0, 1.0), dtype=torch.float32)
    labels = torch.tensor(digits.target)
    net = PrunedMLP(QuantSpec())
    _train(
        net, images[SAMPLES:], labels[SAMPLES:], 3, [torch.ones_like(net.fc1.weight), torch.ones_like(net.fc2.weight)]
    )
    masks = [_prune(layer, DENSITY) for layer in (net.fc1, net.fc2)]
    _train(net, images[SAMPLES:], labels[SAMPLES:], 3, masks)
    net.eval()
    x = images[:SAMPLES]
    out = tmp_path_factory.mktemp("sparse_mlp")
    wrapper = export_model(net, (64,), out / "qonnx.onnx")
    xq = quantize_inputs(net, x)
    with torch.no_grad():
        ref = net(xq).double().numpy()
    return net, wrapper, xq.double().numpy(), ref, out


class PrunedCNN(nn.Module):
    """8x8 digits: conv 4@3x3, ReLU, max-pool, flatten, a pruned dense 36 -> 10."""

    def __init__(self, spec: QuantSpec):
        super().__init__()
        self.inp = quant_input(spec)
        self.conv = quant_conv(spec, 1, 4, 3)
        self.relu = quant_relu(spec)
        self.pool = nn.MaxPool2d(2)
        self.fc = quant_linear(spec, 36, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.pool(self.relu(self.conv(self.inp(x)))), 1))


def _convert_sparse(wrapper, out, layer_config: dict[str, dict]):
    """The project's conversion (its config, flow and writer) with the sparse flow and per-layer settings."""
    hls, board = HLSConfig(), load_board("pynq-z2")
    settings = resolve_settings(hls, board)
    config = make_hls_config(wrapper, hls, QuantConfig(), settings)
    config["Flows"] = [with_sparse_dense(config["Flows"][0])]
    for name, values in layer_config.items():
        config["LayerName"][name].update(values)
    with redirect_stdout(StringIO()):
        model = hls4ml.converters.convert_from_onnx_model(
            wrapper,
            output_dir=str(out),
            project_name=PROJECT,
            io_type=settings.io_type,
            backend=settings.backend,
            board=settings.board,
            interface="axi_stream",
            driver="python",
            hls_config=config,
            part=settings.part,
            clock_period=settings.clock_period_ns,
        )
        write_project(model, pipeline_axi=hls.pipeline_axi)
    return model


@pytest.fixture(scope="module")
def builds(mlp):
    """(sparse model, sparse outputs, plain outputs): both projects compiled and run on the same inputs."""
    _, wrapper, x, _, out = mlp
    sparse_dir = out / "sparse"
    model = _convert_sparse(
        wrapper, sparse_dir, {"MatMul_0": {"Strategy": "sparse"}, "MatMul_1": {"Strategy": "sparse", "SparsePEs": 2}}
    )
    compile_project(sparse_dir, PROJECT)
    sparse = load_library(sparse_dir, PROJECT, 64, 10).run(x)
    convert(wrapper, out, HLSConfig(), QuantConfig(), load_board("pynq-z2"))
    compile_project(out / "hls4ml_prj", PROJECT)
    plain = load_library(out / "hls4ml_prj", PROJECT, 64, 10).run(x)
    return model, sparse, plain, sparse_dir


def test_pruned_to_the_density(mlp):
    for w in _quantized_weights(mlp[0]):
        assert 0.05 < np.count_nonzero(w) / w.size <= DENSITY + 0.01


def test_csim_bit_exact_with_pytorch_and_the_unmodified_project(mlp, builds):
    _, _, x, ref, _ = mlp
    _, sparse, plain, _ = builds
    assert len(x) >= 100
    assert np.array_equal(sparse, ref), f"max |diff| {np.abs(sparse - ref).max()}"
    assert np.array_equal(sparse, plain)
    assert len(np.unique(sparse.argmax(1))) >= 5  # a network that tells digits apart, not a constant


def test_the_project_calls_the_sparse_kernel(builds):
    model, _, _, sparse_dir = builds
    layers = {layer.name: layer for layer in model.get_layers()}
    assert [layer.class_name for layer in layers.values() if layer.name.startswith("Dense")] == [LAYER_CLASS] * 2
    first, second = layers["Dense_MatMul_0"], layers["Dense_MatMul_1"]
    assert first.get_attr("fused_activation") and first.get_attr("strategy") == "sparse"
    assert second.get_attr("n_pe") == 2
    firmware = sparse_dir / "firmware"
    top = (firmware / f"{PROJECT}.cpp").read_text()
    calls = re.findall(rf"{re.escape(KERNEL)}<\w+, \w+, config(\d+)>\(", top)
    assert calls == [str(first.index), str(second.index)]
    assert "nnet::dense<" not in top
    assert (firmware / "nnet_utils" / "nnet_sparse_dense.h").is_file()
    assert '#include "nnet_utils/nnet_sparse_dense.h"' in (firmware / "parameters.h").read_text()
    weights = {p.stem for p in (firmware / "weights").glob("*.h")}
    assert weights == {f"{k}{layer.index}" for layer in (first, second) for k in ("cb", "e", "b")}


def test_layer_settings_choose_the_pes(mlp, builds):
    """No setting: the PE count keeps pace with the input, the rows each PE settles included (n_in clocks);
    the first layer feeds a Dense, so its rows are balanced and the Dense's weight rows follow; SparsePEs
    is taken as given."""
    model, *_ = builds
    first = next(layer for layer in model.get_layers() if layer.name == "Dense_MatMul_0")
    weight = _quantized_weights(mlp[0])[0]
    layout = choose_pes(weight, weight.shape[0], balance=True, reserve_rows=True)
    assert first.get_attr("n_pe") == layout.n_pe
    assert first.get_attr("n_steps") + first.get_attr("n_rows") + WALK_RESERVE <= weight.shape[0]
    assert first.get_attr(OUTPUT_ORDER_ATTR) == [int(i) for i in layout.order] != list(range(32))
    assert first.get_attr(OUTPUT_ORDER_ATTR) is not None
    last = next(layer for layer in model.get_layers() if layer.name == "Dense_MatMul_1")
    assert last.get_attr(OUTPUT_ORDER_ATTR) is None  # the model's output keeps its order


def test_estimate_reads_the_converted_layer(mlp, builds):
    model, *_ = builds
    layer = next(layer for layer in model.get_layers() if layer.name == "Dense_MatMul_0")
    spec = spec_from_hls_layer(layer)
    weight = _quantized_weights(mlp[0])[0]
    layout = choose_pes(weight, weight.shape[0], balance=True, reserve_rows=True)
    # the flat graph input arrives one element per word (flows.sparse.streams)
    assert spec.in_pack == 1
    want = spec_from_layout(spec.name, layout, 8, 5, spec.accum_bits, 8, 32, in_pack=1, out_pack=spec.out_pack)
    assert spec == replace(want, fused_activation=True)
    wide = replace(spec, in_pack=spec.n_in)
    assert estimate_sparse_dense(spec).resources["LUT"] < estimate_sparse_dense(wide).resources["LUT"]
    # its result words (the next layer is sparse too): the fewest results per word that keep the II
    k, ii = spec.out_pack, estimate_sparse_dense(replace(spec, out_pack=spec.n_out)).ii_cycles
    assert spec.n_out % k == 0 and estimate_sparse_dense(spec).ii_cycles <= ii
    smaller = [d for d in range(1, k) if spec.n_out % d == 0]
    assert all(estimate_sparse_dense(replace(spec, out_pack=d)).ii_cycles > ii for d in smaller)
    est = estimate_sparse_dense(spec).to_dict()
    assert est["source"] == "estimate" and est["strategy"] == "sparse"
    assert all(f["source"] == "estimate" for f in est["resources"].values())
    assert any("estimate" in note for note in est["notes"])


def test_a_layer_the_kernel_cannot_take_stays_dense(mlp, tmp_path):
    """io_parallel: the Dense layers stay hls4ml's, each naming why."""
    hls, board = replace(HLSConfig(), io_type="io_parallel"), load_board("pynq-z2")
    settings = resolve_settings(hls, board)
    config = make_hls_config(mlp[1], hls, QuantConfig(), settings)
    config["Flows"] = [with_sparse_dense(config["Flows"][0])]
    config["LayerName"]["MatMul_0"]["Strategy"] = "sparse"
    with redirect_stdout(StringIO()):
        model = hls4ml.converters.convert_from_onnx_model(
            mlp[1], output_dir=str(tmp_path), io_type="io_parallel", backend="Vivado", hls_config=config
        )
    dense = next(layer for layer in model.get_layers() if layer.name == "Dense_MatMul_0")
    assert dense.class_name == "Dense" and "io_stream" in dense.get_attr(FALLBACK_ATTR)


def test_bad_settings_are_usage_errors(mlp, tmp_path):
    for value, match in ((33, "layer Dense_MatMul_0: SparsePEs must be between 1 and"), ("4", "whole number")):
        with pytest.raises(UsageError, match=match):
            _convert_sparse(mlp[1], tmp_path, {"MatMul_0": {"Strategy": "sparse", "SparsePEs": value}})
    weight = np.eye(4)
    for call, match in (
        (lambda: build_layout(weight, 0), "SparsePEs"),
        (lambda: build_layout(weight, 2, index_bits=3), "SparseIndexBits"),
        (lambda: choose_pes(weight, 0), "SparseCycles"),
        (lambda: build_layout(np.ones((1, 4)), 1), "at least 2 inputs"),
    ):
        with pytest.raises(UsageError, match=match):
            call()


def _weights(rng, n_in: int, n_out: int, density: float, bits: int = 5) -> np.ndarray:
    levels = 2 ** (bits - 1) - 1
    return rng.integers(-levels, levels + 1, (n_in, n_out)) * 2.0**-7 * (rng.random((n_in, n_out)) < density)


@pytest.mark.parametrize(("n_in", "n_out", "density", "n_pe"), [(64, 32, 0.1, 4), (5, 3, 0.5, 3), (300, 7, 0.02, 2)])
def test_walk_is_the_matrix_product(n_in, n_out, density, n_pe):
    """The PEs' walk over every index width gives x @ W + b exactly; entries fit their bits."""
    rng = np.random.default_rng(n_in)
    w = _weights(rng, n_in, n_out, density)
    x = rng.integers(0, 256, (8, n_in)) / 256.0
    b = rng.integers(-1000, 1000, n_out) * 2.0**-15
    for bits in range(1, int(math.log2(n_in)) + 1):
        layout = build_layout(w, n_pe, index_bits=bits)
        assert np.array_equal(walk(layout, x, b), x @ w + b)
        assert layout.codebook[0] == 0 and len(layout.codebook) <= 2**layout.code_bits
        assert layout.entries.max() < 2**layout.entry_bits and layout.n_steps * n_pe >= layout.nnz


def test_pes_follow_the_rate():
    """A balanced matrix (64 nonzeros per row, every 10th column): P = ceil(nnz / budget) exactly;
    a random one: the fewest PEs that fit the budget, more PEs for fewer cycles."""
    balanced = np.zeros((640, 300))
    balanced[::10] = 2.0**-7
    nnz = np.count_nonzero(balanced)
    for budget in (1280, 640, 320, 64):
        layout = choose_pes(balanced, budget)
        assert layout.n_pe == math.ceil(nnz / budget) and layout.n_steps <= budget
    w = _weights(np.random.default_rng(1), 784, 300, DENSITY)
    pes = []
    for budget in (4000, 2000, 784, 400, 200):
        layout = choose_pes(w, budget)
        assert layout.n_steps <= budget
        assert layout.n_pe == 1 or build_layout(w, layout.n_pe - 1, max_steps=budget).n_steps > budget
        pes.append(layout.n_pe)
    assert pes == sorted(pes) and pes[-1] > pes[0]


def test_balanced_rows_need_fewer_pes_and_stay_exact():
    """Rows of very different lengths (every tenth row dense, as LeNet's hidden units differ): dealt longest
    first, the longest PE is close to the average, so fewer PEs keep the rate; the walk is still x @ W + b
    in the outputs' own order, and with P not dividing n_out the padding slots stay at the end."""
    rng = np.random.default_rng(3)
    heavy = np.arange(100) % 10 == 0
    w = _weights(rng, 300, 100, 1.0) * (rng.random((300, 100)) < np.where(heavy, 0.5, 0.03))
    x = rng.integers(0, 256, (8, 300)) / 256.0
    b = rng.integers(-1000, 1000, 100) * 2.0**-15
    plain, balanced = choose_pes(w, 300), choose_pes(w, 300, balance=True)
    assert balanced.n_pe < plain.n_pe and balanced.n_steps <= 300
    assert np.array_equal(walk(balanced, x, b), x @ w + b)
    assert sorted(balanced.order.tolist()) == list(range(100)) and balanced.out_order
    odd = build_layout(w, 7, balance=True)  # 15 slots per PE, the last 5 slots padding
    assert sorted(odd.order.tolist()) == list(range(100)) and np.array_equal(walk(odd, x, b), x @ w + b)
    assert max(odd.pe_lengths) < max(build_layout(w, 7).pe_lengths)


def test_cost_follows_compression():
    """LeNet-300-100's first layer (784x300, 5-bit weights) at one image per 784 cycles: pruned to 10%
    the sparse kernel needs <= 0.2x the LUTs and BRAM of the same layer dense."""
    rng = np.random.default_rng(2)
    values = _weights(rng, 784, 300, 1.0)
    estimates = {}
    for density in (DENSITY, 1.0):
        w = values * (rng.random(values.shape) < density)
        layout = choose_pes(w, 784)
        spec = spec_from_layout(f"ip1@{density}", layout, 8, 5, 16, 8, 32, fused_activation=True)
        estimates[density] = estimate_sparse_dense(spec)
    pruned, dense = estimates[DENSITY].resources, estimates[1.0].resources
    assert pruned["LUT"] <= 0.2 * dense["LUT"]
    assert pruned["BRAM36"] <= 0.2 * dense["BRAM36"]
    assert estimates[DENSITY].ii_cycles <= 800  # keeps pace with one input element per clock


def test_cnn_dense_after_flatten_bit_exact(tmp_path):
    torch.manual_seed(0)
    digits = load_digits()
    images = torch.tensor(np.clip(digits.data / 16.0, 0.0, 1.0), dtype=torch.float32).reshape(-1, 1, 8, 8)
    net = PrunedCNN(QuantSpec())
    mask = _prune(net.fc, 0.2)
    net.train()
    with torch.no_grad():  # activation scales from real inputs
        net(images[SAMPLES:])
    net.eval()
    wrapper = export_model(net, (1, 8, 8), tmp_path / "qonnx.onnx")
    model = _convert_sparse(wrapper, tmp_path / "prj", {"MatMul_0": {"Strategy": "sparse", "SparseCycles": 12}})
    dense = next(layer for layer in model.get_layers() if layer.name == "Dense_MatMul_0")
    assert dense.class_name == LAYER_CLASS and dense.get_attr("n_steps") <= 12
    assert spec_from_hls_layer(dense).in_pack == 4  # one pixel's channels per stream word
    specs = describe_hls_model(model)
    design = estimate_design(specs, 10.0, "io_stream")  # the spec carries the sparse kernel's own estimate
    assert design.layer("Dense_MatMul_0").strategy == "sparse"
    compile_project(tmp_path / "prj", PROJECT)
    xq = quantize_inputs(net, images[:SAMPLES])
    got = load_library(tmp_path / "prj", PROJECT, 64, 10).run(to_hw_layout(xq.numpy(), (1, 8, 8)).astype(np.float64))
    with torch.no_grad():
        ref = net(xq).double().numpy()
    assert int(mask.sum()) <= 0.2 * mask.numel()
    assert np.array_equal(got, ref), f"max |diff| {np.abs(got - ref).max()}"


def test_sparse_layers_after_the_pace_setter_take_the_whole_interval():
    """flows.sparse.pace: LeNet-300-100's second layer (300 inputs) paced to the 786-cycle interval the first
    layer sets needs fewer PEs than at one input element per clock, and its estimate keeps the interval."""
    sparse = {name: {"Strategy": "sparse"} for name in ("ip1", "ip2")} | {"ip3": {"Strategy": "sparse", "SparsePEs": 2}}
    shapes = {"ip1": (784, 300), "ip2": (300, 100), "ip3": (100, 10)}
    paced = paced_settings(sparse, shapes, 786)
    assert paced["ip1"] == sparse["ip1"]  # 786 - 300 - margin < 784: it sets the pace, keeps its default
    assert paced["ip3"] == sparse["ip3"]  # PEs pinned by the user
    budget = paced["ip2"]["SparseCycles"]
    assert 300 < budget < 786
    w = _weights(np.random.default_rng(3), 300, 100, 0.08)
    default, slow = choose_pes(w, 300), choose_pes(w, budget)
    assert slow.n_pe < default.n_pe
    spec = spec_from_layout("ip2", slow, 8, 4, 20, 8, 32, in_pack=1, out_pack=1, fused_activation=True)
    assert estimate_sparse_dense(spec).ii_cycles <= 786


def test_fifo_sizing_keeps_a_narrowed_streams_floor():
    """A narrowed result stream holds all its words (MIN_DEPTH_ATTR): the dataflow sizing never goes below it."""

    class Var:
        def __init__(self, name, depth, floor=None):
            self.name, self.pragma = name, ("stream", depth)
            if floor is not None:
                setattr(self, MIN_DEPTH_ATTR, floor)

    class Model:
        def __init__(self, *vars_):
            self.output_vars = {v.name: v for v in vars_}

        def get_input_variables(self):
            return []

    narrowed, plain = Var("a", 6, floor=6), Var("b", 64)
    apply_depths(Model(narrowed, plain), {"a": 2, "b": 2})
    assert narrowed.pragma == ("stream", 6) and plain.pragma == ("stream", 2)


def test_the_diagnosis_reads_a_balanced_layer_in_the_models_order(mlp, builds):
    """The C-simulation diagnosis compares a traced layer with the QONNX tensor: a balanced layer's trace
    (slot order) is put back in the model's order by its `output_order`."""
    model, *_ = builds
    first = next(layer for layer in model.get_layers() if layer.name == "Dense_MatMul_0")
    order = np.asarray(first.get_attr(OUTPUT_ORDER_ATTR))
    x = mlp[2][:3]
    want = x @ _quantized_weights(mlp[0])[0]  # any per-output values: the model's order
    assert np.array_equal(in_model_order(first, want[:, order]), want)
    last = next(layer for layer in model.get_layers() if layer.name == "Dense_MatMul_1")
    assert np.array_equal(in_model_order(last, want), want)  # no output_order: unchanged
