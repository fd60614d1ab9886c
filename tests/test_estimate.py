"""Tests for the estimator (flows/estimator/): hand-computed layers, a real hls4ml graph, the fit search,
the calibration data file, and the calibration against real reports.

The calibration tests read the real reports in `<repo>/../shared/reports` through the reference runs
(`flows/estimator/reference_runs.json`) and skip when that folder is absent.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import replace
from pathlib import Path

import pytest

from flows.errors import DataError
from flows.estimator import (
    CALIBRATIONS,
    DEFAULT_CALIBRATION,
    EXPECTED_ERROR,
    VITIS_HLS_CALIBRATION,
    VIVADO_HLS_CALIBRATION,
    LayerSpec,
    acc_bits,
    bram18_for,
    calibration_for,
    describe_hls_model,
    dsp_per_multiplier,
    estimate_design,
    estimate_layer,
    fifo_cost,
    fit_to_budget,
    kernel_depth,
    multiplier_count,
    shrink_to_ii,
    tree_registers,
    valid_reuse_factors,
)
from flows.estimator.calibration import CALIBRATION_FILE, load_calibrations, save_calibrations
from flows.estimator.evaluation import CLAIMS, CV_CLAIMS, check_claims, evaluate
from flows.estimator.fit import cross_validate
from flows.estimator.runs import REFERENCE_RUNS_FILE, load_reference_runs

ROOT = Path(__file__).resolve().parents[1]
REPORTS = ROOT.parent / "shared" / "reports"
PYNQ_Z2 = {"LUT": 53200, "FF": 106400, "DSP": 220, "BRAM36": 140, "URAM": 0}
C = DEFAULT_CALIBRATION


def dense(
    n_in: int,
    n_out: int,
    *,
    bits: int = 8,
    wbits: int | None = None,
    rf: int = 1,
    strategy: str = "latency",
    nnz: int | None = None,
    io_type: str = "io_parallel",
    name: str = "fc",
) -> LayerSpec:
    total = n_in * n_out
    return LayerSpec(
        name,
        "dense",
        (n_in,),
        (n_out,),
        n_in=n_in,
        n_out=n_out,
        n_weights=total,
        n_nonzero=total if nnz is None else nnz,
        weight_bits=wbits or bits,
        input_bits=bits,
        accum_bits=2 * bits + 8,
        result_bits=bits,
        reuse_factor=rf,
        strategy=strategy,
        io_type=io_type,
    )


def conv2d(
    h: int,
    w: int,
    c: int,
    f: int,
    k: int = 3,
    *,
    rf: int = 1,
    strategy: str = "latency",
    bits: int = 8,
    wbits: int = 5,
    name: str = "conv",
) -> LayerSpec:
    return LayerSpec(
        name,
        "conv2d",
        (h, w, c),
        (h - k + 1, w - k + 1, f),
        n_in=k * k * c,
        n_out=f,
        kernel=(k, k),
        stride=(1, 1),
        n_chan=c,
        filters=f,
        n_nonzero=k * k * c * f,
        weight_bits=wbits,
        input_bits=bits,
        accum_bits=24,
        result_bits=bits,
        reuse_factor=rf,
        strategy=strategy,
        io_type="io_stream",
    )


# ------------------------------------------------------------------------------------------
# Hand-computed layers
# ------------------------------------------------------------------------------------------


def test_dense_16x8_rf1_latency_8bit_exact():
    """8x8-bit products with constant weights are shift-add logic: one per weight, no DSP, II 1."""
    spec = dense(16, 8)
    est = estimate_layer(spec, 10.0)
    assert multiplier_count(spec) == 128
    assert est.multipliers == 128
    assert est.resources["DSP"] == 0
    assert est.parts["const_mult"]["LUT"] == pytest.approx(128 * C.lut_per_constmult_bit2 * 8 * 8)
    # adders: one per nonzero weight, acc = min(24, 8 + 8 + ceil(log2(16))) = 20 bits
    assert est.parts["adders"]["LUT"] == pytest.approx(128 * 20 * C.lut_per_adder_bit)
    # depth = ceil((t_mult + t_add * ceil(log2(16 + 1))) / (0.875 * T - t_reg)) + depth_extra_cycles
    usable = 10.0 * (1 - C.clock_uncertainty) - C.t_reg_ns
    depth = math.ceil((C.t_mult_ns + C.t_add_ns * 5) / usable) + C.depth_extra_cycles
    assert kernel_depth(spec, 10.0) == depth
    assert est.latency_cycles == depth  # the top's per-layer cycles are added by estimate_design
    assert est.ii_cycles == 1
    assert est.source == "estimate"


def test_dense_16bit_uses_dsps_and_rf4_quarters_the_multipliers():
    wide = dense(16, 8, bits=16)
    assert estimate_layer(wide).resources["DSP"] == math.ceil(128 * C.const_dsp_fraction)
    rf4 = dense(16, 8, bits=16, rf=4)
    assert multiplier_count(rf4) == 32
    est = estimate_layer(rf4)
    assert est.resources["DSP"] == 32  # the ALLOCATION limit binds at RF > 1
    assert est.ii_cycles == 4  # 128 products on 32 shared multipliers
    assert est.latency_cycles > estimate_layer(wide).latency_cycles


def test_pruned_weights_reduce_multipliers():
    full = dense(16, 8, bits=16)
    half = dense(16, 8, bits=16, nnz=64)
    assert multiplier_count(half) == 64
    assert estimate_layer(half).resources["DSP"] < estimate_layer(full).resources["DSP"]
    # hls4ml: ceil(n_in*n_out/RF) - n_zeros // RF
    assert multiplier_count(dense(16, 8, bits=16, nnz=64, rf=4)) == 32 - 64 // 4
    # the resource strategy keeps the zeros (weights sit in a ROM)
    assert multiplier_count(dense(16, 8, bits=16, nnz=64, rf=4, strategy="resource")) == 32
    assert estimate_layer(dense(16, 8, nnz=0)).resources["LUT"] == pytest.approx(C.lut_layer_base)


def test_dsp_per_multiplier_tiles_the_dsp48():
    assert dsp_per_multiplier(16, 16) == 1
    assert dsp_per_multiplier(25, 18) == 1
    assert dsp_per_multiplier(32, 32) == 4
    assert dsp_per_multiplier(24, 8) == 1


def test_resource_dense_weights_in_bram():
    """Berk-Bilgin's dense 64x16, 8-bit weights, RF 2: a 2 x 4096-bit ROM = 114 BRAM_18K (the report says 114)."""
    spec = dense(64, 16, bits=24, wbits=8, rf=2, strategy="resource")
    est = estimate_layer(spec)
    assert est.multipliers == 512
    assert est.resources["DSP"] == 512
    assert est.parts["weights"]["BRAM36"] == pytest.approx(114 / 2)
    assert est.ii_cycles == 2
    small = estimate_layer(dense(8, 4, bits=16, rf=2, strategy="resource"))  # 512 bits: LUTs, not BRAM
    assert small.resources["BRAM36"] == 0


def test_bram_and_fifo_rules():
    assert bram18_for(1024, 32) == 2  # 1K x 18 per BRAM_18K
    assert bram18_for(1156, 32) == 4  # 2K x 9
    assert bram18_for(128, 256, 36) == 8  # 512 x 36
    assert fifo_cost(16, 64)["LUT"] > 0 and "BRAM36" not in fifo_cost(16, 64)  # SRL
    assert fifo_cost(676, 16)["BRAM36"] == 0.5


def test_conv_stream_latency_scales_with_pixels():
    small = estimate_layer(conv2d(10, 10, 4, 8, rf=2))
    large = estimate_layer(conv2d(20, 20, 4, 8, rf=2))
    assert large.ii_cycles - small.ii_cycles == (400 - 100) * 2  # one input pixel every RF cycles
    res = estimate_layer(conv2d(10, 10, 4, 8, rf=4, strategy="resource", bits=16, wbits=16))
    assert res.ii_cycles == 8 * 8 * (4 + C.resource_conv_overhead) + (
        100 - 64
    ) * C.resource_conv_skip_cycles + kernel_depth(
        conv2d(10, 10, 4, 8, rf=4, strategy="resource", bits=16, wbits=16), 10.0
    )


def test_design_stream_fifos_wrapper_and_figures():
    specs = [
        LayerSpec("in", "input", (12, 12, 1), (12, 12, 1), result_bits=8, io_type="io_stream"),
        conv2d(12, 12, 1, 8),
        LayerSpec(
            "relu",
            "activation",
            (10, 10, 8),
            (10, 10, 8),
            input_bits=24,
            result_bits=8,
            activation="relu",
            io_type="io_stream",
        ),
    ]
    bare = estimate_design(specs, 10.0, backend="Vivado")
    acc = estimate_design(specs, 10.0, backend="VivadoAccelerator")
    # one FIFO between conv and relu: 100 deep x 64 bits -> 4 BRAM_18K
    assert bare.resources["BRAM36"] == pytest.approx(2.0)
    assert acc.resources["LUT"] > bare.resources["LUT"] + C.axi_lut_base
    assert acc.ii_cycles >= 144 * math.ceil(C.axi_elem_ns / 8.75)  # wrapper converts one element at a time
    d = acc.to_dict()
    assert d["resources"]["LUT"]["source"] == "estimate"
    assert d["latency_cycles"]["source"] == "estimate"
    assert all(f["source"] == "estimate" for lay in d["layers"] for f in lay["resources"].values())


def relu(n: int, ib: int = 16, ob: int = 8, io_type: str = "io_parallel") -> LayerSpec:
    return LayerSpec(
        "relu", "activation", (n,), (n,), input_bits=ib, result_bits=ob, activation="relu", io_type=io_type
    )


def test_io_parallel_activation_is_inlined_unless_the_clock_pipelines_it():
    """At 10 ns a ReLU fits in one cycle: HLS inlines it into the top (logic, no registers). At 3.33 ns
    (t_elem 3 ns > T_eff 2.9 ns) it gets a pipeline stage: (in + out bits) / 2 * ff_elem_per_bit per lane."""
    slow = estimate_layer(relu(64), 10.0)
    assert slow.resources["FF"] == 0 and slow.resources["LUT"] > 0 and slow.latency_cycles == 0
    fast = estimate_layer(relu(64), 3.33)
    assert fast.latency_cycles == 1
    assert fast.parts["pipeline"]["FF"] == pytest.approx(64 * (16 + 8) / 2 * C.ff_elem_per_bit)
    assert fast.parts["control"]["FF"] == C.ff_layer_base


def test_io_parallel_top_registers_every_layer_output():
    """The io_parallel top is one pipeline: each layer's output array is registered between layers."""
    specs = [
        LayerSpec("in", "input", (16,), (16,), result_bits=8),
        dense(16, 32),
        relu(32, ib=20, ob=8),
        dense(32, 5),
    ]
    specs[3] = replace(specs[3], name="fc2")
    est = estimate_design(specs, 10.0, backend="Vivado")
    layer_ff = sum(lay.resources["FF"] for lay in est.layers)
    out_bits = 32 * specs[1].result_bits + 32 * 8 + 5 * specs[3].result_bits
    assert est.resources["FF"] == pytest.approx(layer_ff + out_bits * C.ff_parallel_reg_per_bit)
    no_regs = estimate_design(specs, 10.0, backend="Vivado", calib=replace(C, ff_parallel_reg_per_bit=0.0))
    assert no_regs.resources["FF"] == pytest.approx(layer_ff)


def test_shared_multiplier_mux_counts_only_the_products_it_serves():
    """RF 100 on a layer with 7 nonzero products: one multiplier serves 7 products, a 7:1 mux, not 100:1."""
    spec = dense(5, 3, bits=16, rf=100, nnz=7)
    est = estimate_layer(spec, 5.0)
    shared = multiplier_count(spec)
    assert shared == 1
    assert est.parts["mux"]["LUT"] == pytest.approx(shared * (16 + 16) * (7 - 1) * C.lut_mux_per_bit)


def test_latency_strategy_with_reuse_registers_every_product():
    spec = dense(16, 8, bits=16, rf=4)
    est = estimate_layer(spec, 5.0)
    acc = min(spec.accum_bits, 16 + 16 + math.ceil(math.log2(16)))
    assert est.parts["products"]["FF"] == pytest.approx(128 * min(32, acc) * C.ff_prod_reg_per_bit)
    assert "products" not in estimate_layer(dense(16, 8, bits=16), 5.0).parts


def test_vitis_keeps_a_full_register_copy_per_stage():
    """Vivado HLS: the cuts of the adder tree hold the halving partial sums (decay 1); Vitis HLS keeps one
    full copy per stage (decay 0), so the same kernel has tree FFs = adders * acc * ff_per_adder_bit * stages."""
    spec = dense(16, 64, bits=8, nnz=247)
    assert tree_registers(spec, 5, 0.0) == pytest.approx(5.0)
    assert tree_registers(spec, 5, 1.0) < 2.0
    v = VITIS_HLS_CALIBRATION
    est = estimate_layer(spec, 3.33, v)
    stages = kernel_depth(spec, 3.33, v) - 1
    assert stages >= 2
    assert est.parts["adders"]["FF"] == pytest.approx(247 * acc_bits(spec) * v.ff_per_adder_bit * stages)


def test_stream_upsampling_holds_one_input_row_in_registers():
    """Denoising AE of run 08 (Vivado HLS): 2x nearest-neighbour upsampling of 16x16x8 at 32 bits has
    4,177 FF; one input row is 16 * 8 * 32 = 4,096 bits, read back through a 16:1 mux per channel bit."""
    spec = LayerSpec("up", "upsample", (16, 16, 8), (32, 32, 8), input_bits=32, result_bits=32, io_type="io_stream")
    est = estimate_layer(spec, 5.0)
    assert est.parts["row_buffer"] == {"FF": 16 * 8 * 32, "LUT": 8 * 32 * 4}
    parallel = estimate_layer(replace(spec, io_type="io_parallel"), 5.0)
    assert "row_buffer" not in parallel.parts


def test_calibration_for_backend():
    assert calibration_for("Vitis") is VITIS_HLS_CALIBRATION
    assert calibration_for("VivadoAccelerator") is VIVADO_HLS_CALIBRATION


def test_spec_validation():
    with pytest.raises(ValueError, match="unknown kind"):
        LayerSpec("x", "lstm")
    with pytest.raises(ValueError, match="strategy"):
        dense(4, 4, strategy="fast")
    with pytest.raises(ValueError, match="n_nonzero"):
        dense(4, 4, nnz=17)


# ------------------------------------------------------------------------------------------
# Valid reuse factors
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("n_in,n_out", [(16, 8), (9, 8), (36, 5), (576, 10), (64, 32), (27, 16), (7, 3)])
def test_valid_reuse_factors_match_hls4ml(n_in, n_out):
    from hls4ml.backends import get_backend

    assert valid_reuse_factors(n_in, n_out) == get_backend("Vivado").get_valid_reuse_factors(n_in, n_out)


def test_valid_reuse_factors_large_layer_is_fast():
    t = time.perf_counter()
    rfs = valid_reuse_factors(800, 500)
    assert time.perf_counter() - t < 0.5
    assert rfs[0] == 1 and rfs[-1] == 400000 and all(400000 % r == 0 for r in rfs)


# ------------------------------------------------------------------------------------------
# A real hls4ml graph (Brevitas -> QONNX -> hls4ml, as the flow does it)
# ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def small_hls_model(tmp_path_factory):
    torch = pytest.importorskip("torch")
    pytest.importorskip("brevitas")
    import brevitas.nn as qnn
    import hls4ml
    from brevitas.export import export_qonnx
    from brevitas.quant import (
        Int8ActPerTensorFixedPoint,
        Int8WeightPerTensorFixedPoint,
        Int32Bias,
        Uint8ActPerTensorFixedPoint,
    )
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.transformation.channels_last import ConvertToChannelsLastAndClean
    from qonnx.transformation.gemm_to_matmul import GemmToMatMul
    from qonnx.util.cleanup import cleanup_model

    class W5(Int8WeightPerTensorFixedPoint):
        bit_width = 5

    class Small(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.inp = qnn.QuantIdentity(act_quant=Int8ActPerTensorFixedPoint, return_quant_tensor=True)
            self.conv = qnn.QuantConv2d(1, 4, 3, weight_quant=W5, bias_quant=Int32Bias)
            self.relu = qnn.QuantReLU(act_quant=Uint8ActPerTensorFixedPoint, return_quant_tensor=True)
            self.pool = torch.nn.MaxPool2d(2)
            self.fc = qnn.QuantLinear(36, 5, weight_quant=W5, bias_quant=Int32Bias)

        def forward(self, x):
            return self.fc(torch.flatten(self.pool(self.relu(self.conv(self.inp(x)))), 1))

    torch.manual_seed(0)
    torch.set_num_threads(1)
    net = Small()
    with torch.no_grad():
        for _ in range(3):
            net(torch.rand(8, 1, 8, 8))
    net.eval()
    out = tmp_path_factory.mktemp("est_small")
    export_qonnx(net, torch.rand(1, 1, 8, 8), export_path=str(out / "m.onnx"), dynamo=False)
    m = cleanup_model(ModelWrapper(str(out / "m.onnx")))
    m = m.transform(ConvertToChannelsLastAndClean(make_input_channels_last=True))
    m = cleanup_model(m.transform(GemmToMatMul()))
    cfg = hls4ml.utils.config.config_from_onnx_model(
        m, granularity="name", backend="VivadoAccelerator", default_precision="fixed<16,6>"
    )
    cfg["LayerName"]["MatMul_0"].update({"ReuseFactor": 12, "Strategy": "Resource"})
    cfg["LayerName"]["Conv_0"]["ReuseFactor"] = 3
    return hls4ml.converters.convert_from_onnx_model(
        m,
        output_dir=str(out / "prj"),
        io_type="io_stream",
        backend="VivadoAccelerator",
        board="pynq-z2",
        hls_config=cfg,
    )


def test_describe_hls_model(small_hls_model):
    import numpy as np

    specs = describe_hls_model(small_hls_model)
    kinds = [s.kind for s in specs]
    assert kinds == ["input", "activation", "conv2d", "activation", "pooling", "reshape", "dense"]
    conv = next(s for s in specs if s.kind == "conv2d")
    fc = next(s for s in specs if s.kind == "dense")
    assert (conv.input_shape, conv.output_shape) == ((8, 8, 1), (6, 6, 4))
    assert (conv.n_in, conv.n_out, conv.kernel, conv.filters, conv.n_weights) == (9, 4, (3, 3), 4, 36)
    assert (conv.reuse_factor, conv.strategy, conv.io_type) == (3, "latency", "io_stream")
    assert (fc.n_in, fc.n_out, fc.reuse_factor, fc.strategy) == (36, 5, 12, "resource")
    assert conv.weight_bits == fc.weight_bits == 5
    assert conv.input_bits == 8 and fc.input_bits == 8  # after the 8-bit input quantizer / unsigned ReLU
    for spec in (conv, fc):
        layer = small_hls_model.graph[spec.name]
        assert spec.n_nonzero == int(np.count_nonzero(layer.get_weights("weight").data))
        assert spec.accum_bits == layer.get_attr("accum_t").precision.width
    assert fc.in_pack == 4  # the dense layer reads the pooled stream 4 channels per word
    relu = specs[3]
    assert (relu.activation, relu.result_bits) == ("relu", 8)
    est = estimate_design(specs, 10.0, "io_stream")
    assert est.layer(fc.name).resources["BRAM36"] == 0  # 36x5x5 bits: a LUT ROM
    assert est.resources["DSP"] == 0  # 8-bit x 5-bit products stay in LUTs
    assert est.latency_cycles > 64 and est.ii_cycles >= 64


# ------------------------------------------------------------------------------------------
# Fit to a board
# ------------------------------------------------------------------------------------------


def mlp_too_big() -> list[LayerSpec]:
    return [
        LayerSpec("in", "input", (64,), (64,), result_bits=16),
        dense(64, 64, bits=16, name="fc1"),
        LayerSpec("relu1", "activation", (64,), (64,), input_bits=16, result_bits=16, activation="relu"),
        dense(64, 32, bits=16, name="fc2"),
    ]


def test_fit_already_fits_returns_the_design_unchanged():
    specs = [LayerSpec("in", "input", (16,), (16,), result_bits=8), dense(16, 8)]
    result = fit_to_budget(specs, PYNQ_Z2, 10.0)
    assert result.fits and result.steps == 0
    assert result.choices["fc"].reuse_factor == 1
    assert "fits as configured" in result.explanation


def test_fit_raises_reuse_factors_until_it_fits():
    specs = mlp_too_big()
    before = estimate_design(specs, 10.0)
    assert before.resources["DSP"] > PYNQ_Z2["DSP"]  # 6144 products, 16x16 bits
    result = fit_to_budget(specs, PYNQ_Z2, 10.0)
    assert result.fits, result.explanation
    assert result.estimate.fits(PYNQ_Z2)
    assert result.estimate.resources["DSP"] <= 220
    for name, (n_in, n_out) in {"fc1": (64, 64), "fc2": (64, 32)}.items():
        choice = result.choices[name]
        assert choice.reuse_factor in valid_reuse_factors(n_in, n_out)
    assert max(c.reuse_factor for c in result.choices.values()) > 1
    assert result.hls_config()["LayerName"]["fc1"]["Strategy"] in ("Latency", "Resource")
    assert "Fits after" in result.explanation
    assert result.to_dict()["source"] == "estimate"


def test_fit_impossible_design_explains_why():
    # a 256x256 image with 32 channels of 16 bits: the stream FIFOs alone need far more than 140 BRAM36
    specs = [
        LayerSpec("in", "input", (256, 256, 3), (256, 256, 3), result_bits=16, io_type="io_stream"),
        LayerSpec(
            "conv",
            "conv2d",
            (256, 256, 3),
            (254, 254, 32),
            n_in=27,
            n_out=32,
            kernel=(3, 3),
            n_chan=3,
            filters=32,
            n_nonzero=864,
            weight_bits=8,
            input_bits=16,
            accum_bits=32,
            result_bits=16,
            io_type="io_stream",
        ),
        LayerSpec(
            "relu",
            "activation",
            (254, 254, 32),
            (254, 254, 32),
            input_bits=16,
            result_bits=16,
            activation="relu",
            io_type="io_stream",
        ),
        LayerSpec(
            "pool",
            "pooling",
            (254, 254, 32),
            (127, 127, 32),
            kernel=(2, 2),
            stride=(2, 2),
            input_bits=16,
            result_bits=16,
            io_type="io_stream",
        ),
    ]
    t = time.perf_counter()
    result = fit_to_budget(specs, PYNQ_Z2, 10.0)
    assert time.perf_counter() - t < 10
    assert not result.fits
    assert "BRAM36" in result.explanation and "stream FIFOs" in result.explanation
    assert "largest valid reuse factors" in result.explanation
    assert result.choices["conv"].reuse_factor in valid_reuse_factors(27, 32)


def test_fit_lenet5_classifier_is_quick_and_uses_resource_strategy():
    """LeNet-5's classifier (400-120-84-10) in io_stream with 6-bit activations and 5-bit weights (what
    the QAT recipes use): fc1 has more than 4096 weights, so the latency strategy is not allowed; it
    ends in the resource strategy with its weights in BRAM."""
    io = "io_stream"
    specs = [LayerSpec("in", "input", (400,), (400,), result_bits=6, io_type=io)]
    for i, (n_in, n_out) in enumerate(((400, 120), (120, 84), (84, 10)), start=1):
        specs.append(dense(n_in, n_out, bits=6, wbits=5, name=f"fc{i}", io_type=io))
        if n_out != 10:
            specs.append(
                LayerSpec(
                    f"relu{i}",
                    "activation",
                    (n_out,),
                    (n_out,),
                    input_bits=16,
                    result_bits=6,
                    activation="relu",
                    io_type=io,
                )
            )
    t = time.perf_counter()
    result = fit_to_budget(specs, PYNQ_Z2, 10.0)
    assert time.perf_counter() - t < 10
    assert result.fits, result.explanation
    assert result.choices["fc1"].strategy == "resource"
    assert result.choices["fc1"].reuse_factor in valid_reuse_factors(400, 120)
    assert result.estimate.layer("fc1").resources["BRAM36"] > 0


def stream_design_with_slack() -> list[LayerSpec]:
    """A 32x32 conv sets the II (~1000 cycles); the classifier after it has slack. Backend "Vivado": no AXI wrapper."""
    io = "io_stream"
    flat = 30 * 30 * 2
    return [
        LayerSpec("in", "input", (32, 32, 1), (32, 32, 1), result_bits=8, io_type=io),
        conv2d(32, 32, 1, 2, bits=8, wbits=4),
        LayerSpec("flat", "reshape", (30, 30, 2), (flat,), input_bits=8, result_bits=8, io_type=io),
        replace(
            dense(flat, 10, bits=8, wbits=4, io_type=io, name="fc", rf=18, strategy="resource"), extra={"in_pack": 2}
        ),
    ]


def test_shrink_keeps_the_ii_and_recovers_area():
    specs = stream_design_with_slack()
    before = estimate_design(specs, 10.0, backend="Vivado")
    result = shrink_to_ii(specs, PYNQ_Z2, 10.0, backend="Vivado")
    after = result.estimate
    assert result.steps >= 1 and result.fits
    assert after.ii_cycles <= before.ii_cycles  # throughput kept
    assert after.resources["LUT"] < 0.5 * before.resources["LUT"]  # the classifier was most of the LUTs
    assert after.fits(PYNQ_Z2) and not before.fits(PYNQ_Z2)
    fc = result.choices["fc"]
    assert fc.reuse_factor > 1 and fc.reuse_factor in valid_reuse_factors(30 * 30 * 2, 10)
    assert result.choices["conv"].reuse_factor == 1  # the conv sets the II: no slack to give away
    assert "Area recovery" in result.explanation and "saved LUT" in result.explanation


def test_shrink_to_a_lower_rate_saves_more_and_respects_pinned_layers():
    specs = stream_design_with_slack()
    keep = shrink_to_ii(specs, PYNQ_Z2, 10.0, backend="Vivado")
    slower = shrink_to_ii(specs, PYNQ_Z2, 10.0, backend="Vivado", target_ii=8 * keep.estimate.ii_cycles)
    assert slower.estimate.ii_cycles <= 8 * keep.estimate.ii_cycles
    assert slower.estimate.resources["LUT"] < keep.estimate.resources["LUT"]
    assert slower.choices["fc"].reuse_factor > keep.choices["fc"].reuse_factor
    pinned = shrink_to_ii(specs, PYNQ_Z2, 10.0, backend="Vivado", target_ii=8 * keep.estimate.ii_cycles, pinned={"fc"})
    assert (pinned.choices["fc"].reuse_factor, pinned.choices["fc"].strategy) == (18, "resource")


def test_shrink_without_slack_changes_nothing():
    specs = [
        LayerSpec("in", "input", (32, 32, 1), (32, 32, 1), result_bits=8, io_type="io_stream"),
        conv2d(32, 32, 1, 8),
    ]
    result = shrink_to_ii(specs, PYNQ_Z2, 10.0, backend="Vivado")
    assert result.steps == 0 and result.choices["conv"].reuse_factor == 1
    assert result.estimate.resources == estimate_design(specs, 10.0, backend="Vivado").resources


# ------------------------------------------------------------------------------------------
# Calibration against the real reports (claims are flows.estimator.evaluation.CLAIMS)
# ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def reference_runs():
    if not (REPORTS / "MANIFEST.md").is_file():
        pytest.skip(f"real reports folder {REPORTS} is absent")
    return load_reference_runs(REPORTS)


@pytest.fixture(scope="module")
def bench_result(reference_runs):
    return evaluate(CALIBRATIONS, reference_runs)


def test_calibration_within_claimed_tolerance(bench_result):
    failures = check_claims(bench_result["summary"])
    assert not failures, failures
    assert CLAIMS  # the claims exist and are checked


def test_bench_reads_every_run(bench_result):
    runs = bench_result["runs"]
    assert len(runs) == 23
    by_key = {r["key"]: r for r in runs}
    # spot checks of what the reader took from the reports (MANIFEST summary table)
    assert by_key["05_mnist_cnn_stream_rf16"]["csynth"]["DSP"] == 42
    assert by_key["08_denoise_ae_pynqz2"]["csynth"]["BRAM36"] == 289 / 2
    assert by_key["01_pruned_cnn"]["csynth"]["LUT"] == 245466
    assert by_key["09_jet_mlp_pynqz2_latency"]["vivado"]["LUT"] == 17267


def test_layer_figures_come_from_module_reports_or_instance_tables(bench_result):
    """Runs whose per-module reports were not kept compare their layers with the instance tables of the
    top report: the breast-cancer MLP's first dense layer (Vitis 2021.1 csynth.rpt: 25 DSP, 1171 FF,
    1196 LUT, 3 cycles) and every layer of every run that lists modules."""
    by_key = {r["key"]: r for r in bench_result["runs"]}
    first = by_key["14_breast_cancer_DSP_reuse1"]["layers"][0]
    assert first["module"].endswith("config2_s")
    assert first["csynth"] == {"LUT": 1196.0, "FF": 1171.0, "DSP": 25.0, "BRAM36": 0.0, "latency": 3.0}
    softmax = by_key["04_jet_mlp_vitis"]["layers"][-1]
    assert softmax["kind"] == "softmax" and softmax["csynth"]["BRAM36"] == 4.0  # 8 BRAM_18K
    assert sum(len(r["layers"]) for r in bench_result["runs"]) == 212


@pytest.mark.slow
def test_cross_validated_errors_within_claims(reference_runs):
    """Leave-one-network-out: each network estimated with constants fitted without it (13 refits)."""
    cv = cross_validate(CALIBRATIONS, reference_runs)
    assert len(cv["runs"]) == 23
    failures = check_claims(cv["summary"], CV_CLAIMS)
    assert not failures, failures


def test_expected_error_matches_the_published_cross_validation():
    """The typical error a build report quotes is the committed bench result, not a number typed in."""
    cv = json.loads((ROOT / "bench" / "results" / "estimator.json").read_text())["cv"]["summary"]
    for tool, errs in EXPECTED_ERROR.items():
        assert set(errs) == {"LUT", "FF", "DSP", "BRAM36", "latency", "II"}
        for metric, value in errs.items():
            assert value == pytest.approx(round(cv[tool][metric]["median_abs_rel_error"], 2)), (tool, metric)


# ------------------------------------------------------------------------------------------
# The data files: calibration.json and reference_runs.json
# ------------------------------------------------------------------------------------------


def test_calibration_file_round_trips(tmp_path: Path):
    """What the library loads is what the fitter writes: saving the loaded presets gives the same bytes."""
    calibs, expected = load_calibrations()
    assert calibs == CALIBRATIONS and expected == EXPECTED_ERROR
    assert calibs["vivado_hls"] is not calibs["vitis_hls"] and DEFAULT_CALIBRATION == calibs["vivado_hls"]
    out = tmp_path / "calibration.json"
    save_calibrations(calibs, expected, out)
    assert out.read_bytes() == CALIBRATION_FILE.read_bytes()
    # fitted constants are stored to 4 significant digits, int fields stay ints
    save_calibrations({**calibs, "vivado_hls": replace(calibs["vivado_hls"], lut_layer_base=142.43210)}, expected, out)
    reread, _ = load_calibrations(out)
    assert reread["vivado_hls"].lut_layer_base == 142.4
    assert isinstance(reread["vivado_hls"].depth_extra_cycles, int)


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda d: d["vivado_hls"].pop("t_mult_ns"), "missing \\['t_mult_ns'\\]"),
        (lambda d: d["vitis_hls"].update(lut_per_bit=1.0), "unknown \\['lut_per_bit'\\]"),
        (lambda d: d["vivado_hls"].update(depth_extra_cycles=0.5), "whole number"),
        (lambda d: d["vivado_hls"].update(t_add_ns="fast"), "finite number"),
        (lambda d: d["expected_error"].pop("vitis_hls"), "expected_error"),
    ],
)
def test_bad_calibration_file_names_the_problem(tmp_path: Path, edit, message):
    data = json.loads(CALIBRATION_FILE.read_text())
    edit(data)
    path = tmp_path / "calibration.json"
    path.write_text(json.dumps(data))
    with pytest.raises(DataError, match=message):
        load_calibrations(path)


def test_reference_runs_build_without_the_reports(tmp_path: Path):
    """Every run's network builds (one module stem per layer after the input); a bad operation is a DataError."""
    runs = load_reference_runs(tmp_path)
    assert len(runs) == 23 and len({r.key for r in runs}) == 23
    assert len({r.network for r in runs}) == 13  # runs 01/02 are one network, each sweep is one
    for run in runs:
        specs = run.build()
        assert specs[0].kind == "input" and specs[0].io_type == run.net["io_type"]
        assert len(run.modules) == len(specs) - 1, run.key
    data = json.loads(REFERENCE_RUNS_FILE.read_text())
    data["runs"][0]["net"]["layers"].append({"op": "lstm", "units": 8})
    bad = tmp_path / "runs.json"
    bad.write_text(json.dumps(data))
    with pytest.raises(DataError, match="unknown layer operation 'lstm'"):
        load_reference_runs(tmp_path, bad)[0].build()
