"""flows/da/rtl.py with the open-source tools: yosys synthesis of a DA layer and verilator simulation of it.

A one-layer Brevitas network (32 -> 8, 4-bit weights, half of them pruned) is converted with the
dense layer as distributed arithmetic and compiled (C simulation); da4ml's Verilog of the same
solution is synthesized with yosys `synth_xilinx -family xc7` (the PYNQ-Z2's family) and simulated
with verilator on the same input vectors: its outputs equal the C simulation's and the quantized
PyTorch model's bit for bit. The
yosys LUT count must lie within a factor of 2 of da4ml's cost (one LUT per adder bit; measured
within a few percent on 7-series). Marked `yosys`; skipped without yosys (and the verilator part
without verilator) or da4ml.
"""

from __future__ import annotations

import shutil
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch import nn

pytest.importorskip("da4ml")

from flows.boards import load_board  # noqa: E402
from flows.csim import compile_project, load_library  # noqa: E402
from flows.da.hls_pass import KEY_ATTR, da_layers  # noqa: E402
from flows.da.rtl import simulate, synthesize, synthesize_da_layers, write_verilog, yosys_family  # noqa: E402
from flows.da.solver import CACHE_ENV, load_solution, solve_kernel  # noqa: E402
from flows.errors import ToolError  # noqa: E402
from flows.export import export_model, quantize_inputs  # noqa: E402
from flows.modelstats import reference_logits  # noqa: E402
from models.quant import QuantSpec, quant_input, quant_linear  # noqa: E402
from tests.test_da import convert_da  # noqa: E402

pytestmark = [pytest.mark.yosys, pytest.mark.skipif(shutil.which("yosys") is None, reason="yosys is not on PATH")]

LUT_FACTOR = 2.0  # yosys LUTs within [cost / 2, 2 * cost] of da4ml's cost
VECTORS = 128
SPEC = QuantSpec(weight_bits=4)


class OneLayer(nn.Module):
    def __init__(self):
        super().__init__()
        self.inp, self.fc = quant_input(SPEC), quant_linear(SPEC, 32, 8)

    def forward(self, x):
        return self.fc(self.inp(x))


@pytest.fixture(scope="module")
def one_layer(tmp_path_factory):
    torch.manual_seed(1)
    net = OneLayer()
    with torch.no_grad():
        net.fc.weight.mul_((torch.rand_like(net.fc.weight) < 0.5).float())  # half the weights pruned
    net.eval()
    out = tmp_path_factory.mktemp("one_layer")
    wrapper = export_model(net, (32,), out / "net.onnx")
    cache = out / "da_cache"
    with pytest.MonkeyPatch.context() as monkeypatch:
        monkeypatch.setenv(CACHE_ENV, str(cache))
        model = convert_da(wrapper, out, ["Dense_MatMul_0"], cache, io_type="io_parallel")
    compile_project(out / "hls4ml_prj", "myproject")
    rng = np.random.default_rng(2)
    x = quantize_inputs(net, torch.tensor(np.floor(rng.random((VECTORS, 32)) * 256) / 256)).numpy()
    csim = load_library(out / "hls4ml_prj", "myproject", 32, 8).run(x)
    return SimpleNamespace(net=net, model=model, cache=cache, out=out, x=x, csim=csim)


def test_yosys_luts_are_near_da4mls_cost(one_layer):
    part = load_board("pynq-z2").part
    result = synthesize_da_layers(one_layer.model, one_layer.out / "yosys", part, cache_dir=one_layer.cache)
    estimate = da_layers(one_layer.model)["Dense_MatMul_0"]
    synth = result["Dense_MatMul_0"]
    assert synth["status"] == "ok" and synth["source"] == "yosys" and synth["family"] == yosys_family(part) == "xc7"
    assert synth["FF"] == 0  # a combinational kernel: the registers HLS adds around it are not in it
    assert estimate["LUT"] / LUT_FACTOR <= synth["LUT"] <= estimate["LUT"] * LUT_FACTOR, (synth, estimate)


@pytest.mark.skipif(shutil.which("verilator") is None, reason="verilator is not on PATH")
def test_verilator_runs_the_verilog_bit_exact_with_the_c_simulation(one_layer):
    layer = next(layer for layer in one_layer.model.get_layers() if layer.get_attr(KEY_ATTR))
    solution = load_solution(layer.get_attr(KEY_ATTR), one_layer.cache)
    rtl = simulate(solution, "da_dense", one_layer.out / "verilator", one_layer.x, layer.name)
    assert rtl.shape == one_layer.csim.shape == (VECTORS, 8)
    np.testing.assert_array_equal(rtl, one_layer.csim)
    np.testing.assert_array_equal(rtl, reference_logits(one_layer.net, torch.tensor(one_layer.x)))  # = PyTorch
    assert len({tuple(row) for row in rtl}) > VECTORS // 2


def test_failing_yosys_names_the_layer_and_keeps_the_others(tmp_path, monkeypatch):
    rng = np.random.default_rng(4)
    good = solve_kernel(rng.integers(-3, 4, size=(6, 3)) / 4, "ufixed<8,0>", cache_dir=tmp_path)
    bad = solve_kernel(rng.integers(-3, 4, size=(5, 2)) / 4, "ufixed<8,0>", cache_dir=tmp_path)
    write_verilog(bad, "da_bad", tmp_path / "bad")
    (tmp_path / "bad" / "src" / "da_bad.v").write_text("module da_bad (input a; endmodule\n")
    with pytest.raises(ToolError, match="Dense_Bad"):
        synthesize(tmp_path / "bad", "da_bad", "xc7", "Dense_Bad")

    def layer(name, solution):
        return SimpleNamespace(name=name, get_attr=lambda k, default=None: {KEY_ATTR: solution.key}.get(k))

    model = SimpleNamespace(get_layers=lambda: [layer("Dense_Bad", bad), layer("Dense_Good", good)])
    real_write = write_verilog

    def broken_for_bad(solution, name, folder):
        path = real_write(solution, name, folder)
        if "bad" in name:
            path.write_text("module broken (;\n")
        return path

    monkeypatch.setattr("flows.da.rtl.write_verilog", broken_for_bad)
    result = synthesize_da_layers(model, tmp_path / "all", "xc7z020clg400-1", tmp_path)
    assert result["Dense_Bad"]["status"] == "failed" and "Dense_Bad" in result["Dense_Bad"]["error"]
    assert result["Dense_Good"]["status"] == "ok" and result["Dense_Good"]["LUT"] > 0


@pytest.mark.skipif(shutil.which("verilator") is None, reason="verilator is not on PATH")
def test_build_verifies_each_da_layer_with_verilator(one_layer):
    """synthesize_da_layers (what the convert step calls) runs verilator on >= 100 vectors per DA layer,
    on the layer's own input grid, bit-exact with da4ml's model of the kernel the C simulation runs."""
    part = load_board("pynq-z2").part
    result = synthesize_da_layers(one_layer.model, one_layer.out / "build_rtl", part, cache_dir=one_layer.cache)
    sim = result["Dense_MatMul_0"]["simulation"]
    assert sim["source"] == "verilator" and sim["status"] == "ok" and sim["vectors"] >= 100
    assert sim["bit_exact"] and sim["mismatches"] == 0


def test_grid_vectors_cover_the_input_range(one_layer):
    from flows.da.rtl import grid_vectors

    key = next(layer.get_attr(KEY_ATTR) for layer in one_layer.model.get_layers() if layer.get_attr(KEY_ATTR))
    solution = load_solution(key, one_layer.cache)
    x = grid_vectors(solution, 200)
    k, i, f = (np.asarray(v) for v in solution.logic.inp_kifs)
    assert x.shape == (200, 32)
    np.testing.assert_array_equal(x * 2.0**f, np.round(x * 2.0**f))  # on the grid
    assert (x.min(axis=0) == -(k * 2.0**i)).all() and (x.max(axis=0) == 2.0**i - 2.0**-f).all()  # extremes hit
