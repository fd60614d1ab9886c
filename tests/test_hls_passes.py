"""flows/hls_passes.py: ReLUs fused into the conv/dense before them give the same C simulation, bit
for bit, as hls4ml's separate ReLU layers, on inputs that drive activations into both saturation ends.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
from qonnx.core.modelwrapper import ModelWrapper

from flows.boards import load_board
from flows.config import load_config
from flows.convert import convert
from flows.csim import CSimLibrary, compile_project
from flows.estimator import describe_hls_model, estimate_design


def _convert(build_dir, out, fuse: bool):
    cfg = load_config(build_dir / "config.json")
    hls = replace(cfg.hls, fuse_relu=fuse)
    wrapper = ModelWrapper(str(build_dir / "model.qonnx.onnx"))
    model, _ = convert(wrapper, out, hls, cfg.quant, load_board(cfg.board))
    return cfg, model


def test_fused_relu_is_bit_exact_and_smaller(fire_stream_build, tmp_path):
    src, _ = fire_stream_build
    outputs, models = {}, {}
    for fuse in (False, True):
        cfg, model = _convert(src, tmp_path / f"fuse{fuse}", fuse)
        models[fuse] = model
        lib = compile_project(tmp_path / f"fuse{fuse}" / "hls4ml_prj", cfg.hls.project_name)
        n_in = int(np.prod(model.get_input_variables()[0].shape))
        n_out = int(np.prod(model.get_output_variables()[0].shape))
        rng = np.random.default_rng(0)
        x = np.floor(rng.random((200, n_in)) * 256) / 256  # the 8-bit input grid
        x[:50] = np.where(rng.random((50, n_in)) < 0.5, 0.0, 255 / 256)  # extremes: saturating activations
        outputs[fuse] = CSimLibrary(lib, cfg.hls.project_name, n_in, n_out).run(x)
    np.testing.assert_array_equal(outputs[True], outputs[False])
    plain = [layer.class_name for layer in models[False].get_layers()]
    fused = [layer.class_name for layer in models[True].get_layers()]
    assert plain.count("Activation") + plain.count("ReLU") >= 3
    assert "Activation" not in fused and "ReLU" not in fused
    macs = [layer for layer in models[True].get_layers() if layer.get_attr("fused_activation")]
    assert {m.get_attr("fused_activation") for m in macs} <= {layer.name for layer in models[False].get_layers()}
    for mac in macs:  # the MAC layer's output now has the ReLU's unsigned saturating type
        precision = mac.get_output_variable().type.precision
        assert not precision.signed and "SAT" in str(precision.saturation_mode)
    est = {k: estimate_design(describe_hls_model(m), 10.0, "io_stream") for k, m in models.items()}
    assert est[True].resources["LUT"] < est[False].resources["LUT"]


def test_wrapping_relu_is_not_fused(fire_stream_build, tmp_path):
    """A ReLU whose type wraps (not SAT) is not max(x, 0) inside a cast: it must stay a layer."""
    src, _ = fire_stream_build
    cfg = load_config(src / "config.json")
    hls = replace(cfg.hls, layer_precision={"Relu_1": "ufixed<3,1>"})
    model, _ = convert(
        ModelWrapper(str(src / "model.qonnx.onnx")), tmp_path, hls, cfg.quant, load_board(cfg.board), write=False
    )
    names = [layer.name for layer in model.get_layers()]
    assert "Relu_1" in names and "Relu_0" not in names


def test_report_names_the_fused_relus(fire_stream_build):
    src, report = fire_stream_build
    fused = {row["name"]: row["fused_activation"] for row in report["hls_layers"] if row.get("fused_activation")}
    assert fused.get("Conv2D_Conv_0") == "Relu_0"
    assert not any(row["class"] == "Activation" for row in report["hls_layers"])
    assert "| Conv2D_Conv_0 | Conv2D + Relu_0 (fused) |" in (src / "report.md").read_text()
