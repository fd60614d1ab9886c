"""flows/hls_passes.py and flows/hls_writer.py: each rewrite of the hls4ml project applied, in one conversion.

A small Fire network (random weights, activation scales calibrated on random images) is exported and
converted for pynq-z2 (VivadoAccelerator) and kv260 (Vitis). The tests read the written C++ and the
converted graph: a rewrite that silently stopped applying (hls4ml renamed a hook, a pass no longer
matches) fails here. The C simulation stays bit-exact: tests/test_hls_passes.py, test_csim_parity.py.
"""

from __future__ import annotations

import re
from dataclasses import replace

import pytest
import torch
from hls4ml.backends import VivadoAcceleratorConfig, get_backend

from flows.boards import load_board
from flows.config import HLSConfig, QuantConfig
from flows.convert import convert
from flows.export import clean_qonnx, export_brevitas
from flows.hls_names import MAC_CLASSES
from flows.hls_passes import FIFO_IMPL_ATTR, SRL_MAX_DEPTH, fifo_depth_for, fireflow_flow
from flows.hls_writer import AXI_PIPELINE_PRAGMA, render_axi_stream_wrapper
from flows.precision import exact_accumulator, parse_fixed
from models import build_model
from models.quant import QuantSpec

PLAIN = {"exact_accumulators": False, "fuse_relu": False, "fifo_depth": "full", "pipeline_axi": False}
STREAM = re.compile(r"^( *)#pragma HLS STREAM variable=(\w+) depth=(\d+)\n(.*)$", re.MULTILINE)


@pytest.fixture(scope="module")
def fire_qonnx(tmp_path_factory):
    torch.manual_seed(0)
    net = build_model("lenet5_fire", QuantSpec(), (1, 28, 28), 10)
    net.train()
    with torch.no_grad():
        for _ in range(3):
            net(torch.rand(64, 1, 28, 28))
    net.eval()
    raw = tmp_path_factory.mktemp("fire") / "raw.onnx"
    export_brevitas(net, (1, 28, 28), raw)
    return clean_qonnx(raw, channels_last=True)


def _convert(wrapper, out, board="pynq-z2", write=True, **hls):
    return convert(wrapper, out, replace(HLSConfig(), **hls), QuantConfig(), load_board(board), write=write)[0]


def _firmware(out, name="myproject.cpp") -> str:
    return (out / "hls4ml_prj" / "firmware" / name).read_text()


def test_one_conversion_applies_every_rewrite(fire_qonnx, tmp_path):
    model = _convert(fire_qonnx, tmp_path)
    layers = model.get_layers()
    # ReLU fusion: no activation layer left, each conv/dense names the ReLU it absorbed
    assert not [layer.name for layer in layers if layer.class_name in ("Activation", "ReLU")]
    macs = [layer for layer in layers if layer.class_name in MAC_CLASSES]
    assert sum(1 for m in macs if m.get_attr("fused_activation")) == 7  # every conv of the Fire net
    # FIFO sizing: every stream no deeper than two padded rows + 16; the shallow ones marked for SRL
    streams = {n: v for n, v in model.output_vars.items() if isinstance(getattr(v, "pragma", None), tuple)}
    assert streams
    for var in streams.values():
        assert var.pragma[1] == fifo_depth_for(tuple(var.shape), var.pragma[1])
        if len(var.shape) == 3:
            assert var.pragma[1] <= 2 * (var.shape[1] + 2) + 16
        assert (getattr(var, FIFO_IMPL_ATTR, None) == "srl") == (var.pragma[1] <= SRL_MAX_DEPTH)
    # the written top function: each shallow FIFO's STREAM pragma is followed by its SRL binding, only those
    top = _firmware(tmp_path)
    bound = set()
    for indent, var, depth, following in STREAM.findall(top):
        binding = f"{indent}#pragma HLS RESOURCE variable={var} core=FIFO_SRL"
        assert (following == binding) == (int(depth) <= SRL_MAX_DEPTH), (var, depth, following)
        bound |= {var} if following == binding else set()
    ports = model.get_input_variables() + model.get_output_variables()  # arguments: no FIFO of their own
    shallow = {v.name for v in streams.values() if getattr(v, FIFO_IMPL_ATTR, None) == "srl" and v not in ports}
    assert bound == shallow and bound
    # the AXI wrapper: both copy loops pipelined, right inside the loop
    axi = _firmware(tmp_path, "myproject_axi.cpp")
    for loop in ("N_IN / input_t::size", "N_OUT / result_t::size"):
        assert re.search(
            rf"for\(unsigned i = 0; i < {re.escape(loop)}; \+\+i\) {{\n +{re.escape(AXI_PIPELINE_PRAGMA)}\n", axi
        )
    assert axi.count("#pragma HLS PIPELINE") == 2


def test_exact_accumulators_are_what_the_first_conversion_computes(fire_qonnx, tmp_path):
    """The pass gives each conv/dense the type `exact_accumulator` computes on hls4ml's own conversion."""
    plain = _convert(fire_qonnx, tmp_path, write=False, **{**PLAIN, "pipeline_axi": True})
    exact = _convert(fire_qonnx, tmp_path, write=False, **{**PLAIN, "exact_accumulators": True})
    narrowed = 0
    for before, after in zip(plain.get_layers(), exact.get_layers(), strict=True):
        assert before.name == after.name
        if before.class_name not in MAC_CLASSES:
            assert {k: str(t.precision) for k, t in before.types.items()} == {
                k: str(t.precision) for k, t in after.types.items()
            }
            continue
        expected = exact_accumulator(before)
        accum = parse_fixed(after.types["accum_t"].precision)
        result = parse_fixed(after.types["result_t"].precision)
        if expected is None:
            assert accum == parse_fixed(before.types["accum_t"].precision)
            continue
        narrowed += 1
        assert accum == expected and accum.width < parse_fixed(before.types["accum_t"].precision).width
        if before.class_name == "Dense":  # its result keeps hls4ml's type (the bias Add stays folded)
            assert result == parse_fixed(before.types["result_t"].precision)
        else:
            assert result == expected
    assert narrowed >= 7


def test_user_precision_keeps_hls4mls_types(fire_qonnx, tmp_path):
    """A conv/dense whose config names a precision is not narrowed; its neighbours still are."""
    model = _convert(fire_qonnx, tmp_path, write=False, layer_precision={"Conv_0/accum": "fixed<24,10>"})
    types = {layer.name: layer.types for layer in model.get_layers()}
    assert str(types["Conv2D_Conv_0"]["accum_t"].precision).startswith("fixed<24,10")
    assert parse_fixed(types["Dense_MatMul_0"]["accum_t"].precision).width < 32


def test_switches_off_give_hls4mls_own_project(fire_qonnx, tmp_path):
    assert (
        fireflow_flow("VivadoAccelerator", False, False, False) == get_backend("VivadoAccelerator").get_default_flow()
    )
    model = _convert(fire_qonnx, tmp_path, **PLAIN)
    assert sum(1 for layer in model.get_layers() if layer.class_name == "Activation") == 7
    assert "FIFO_SRL" not in _firmware(tmp_path)
    h, w = 28, 28
    assert f"#pragma HLS STREAM variable=global_in depth={h * w}" not in _firmware(tmp_path)  # an argument
    assert re.search(rf"#pragma HLS STREAM variable=\w+ depth={24 * 24}\n", _firmware(tmp_path))  # whole images
    assert "PIPELINE" not in _firmware(tmp_path, "myproject_axi.cpp")


def test_axi_template_is_hls4mls_wrapper_plus_the_pragmas(fire_qonnx, tmp_path):
    """Without its pragmas the pipelined wrapper is byte for byte the one hls4ml writes."""
    model = _convert(fire_qonnx, tmp_path, pipeline_axi=False)
    accel = VivadoAcceleratorConfig(model.config, model.get_input_variables(), model.get_output_variables())
    assert render_axi_stream_wrapper(model, accel, pipeline=False) == _firmware(tmp_path, "myproject_axi.cpp")
    piped = render_axi_stream_wrapper(model, accel, pipeline=True)
    assert piped.replace(f"        {AXI_PIPELINE_PRAGMA}\n", "") == _firmware(tmp_path, "myproject_axi.cpp")


def _undeclared_streams(top: str) -> set[str]:
    """Streams a layer call in the top function reads or writes that are neither declared nor arguments."""
    declared = set(re.findall(r"hls::stream<\w+> &?(\w+)", top)) | set(re.findall(r"auto& (\w+) = \w+;", top))
    used = set()
    for call in re.findall(r"^    nnet::\w+<.*>\((.*)\);", top, re.MULTILINE):
        used |= {a.strip() for a in call.split(",") if re.fullmatch(r"layer\d+_(out|cpy\d+)|global_in", a.strip())}
    assert used
    return used - declared


def test_vitis_binds_shallow_fifos_and_a_fused_relu_feeds_its_clone(fire_qonnx, tmp_path):
    """Vitis HLS syntax for the SRL binding; the Clone after a fused ReLU reads the conv's stream
    (hls4ml's Vitis templates used to be re-applied without its Vivado ones: a removed stream)."""
    model = _convert(fire_qonnx, tmp_path, board="kv260")
    top = _firmware(tmp_path)
    assert "core=FIFO_SRL" not in top
    srl = [v for v in model.output_vars.values() if getattr(v, FIFO_IMPL_ATTR, None) == "srl"]
    internal = [v for v in srl if v not in model.get_input_variables() + model.get_output_variables()]
    for var in internal:
        assert f"#pragma HLS BIND_STORAGE variable={var.name} type=fifo impl=srl" in top
    clones = [layer for layer in model.get_layers() if layer.class_name == "Clone"]
    assert clones
    assert not _undeclared_streams(top)


def test_io_parallel_keeps_hls4mls_pipelined_wrapper(fire_qonnx, tmp_path):
    _convert(fire_qonnx, tmp_path, io_type="io_parallel")
    axi = _firmware(tmp_path, "myproject_axi.cpp")
    assert axi.count("#pragma HLS PIPELINE\n") == 2 and AXI_PIPELINE_PRAGMA not in axi
    assert "FIFO_SRL" not in _firmware(tmp_path)
