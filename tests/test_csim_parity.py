"""C-simulation parity regression tests: small real builds must be bit-exact with PyTorch.

One Fire model in io_stream and io_parallel (the two hls4ml I/O types), the paper's LeNet-300-100 and
LeNet-5 at reduced width, and a deliberately broken precision that must fail the build and name the
layer where the numbers first diverge.
"""

from __future__ import annotations

import json

import pytest

from flows.api import run_build
from flows.errors import VerificationError
from tests.conftest import SMALL, copy_build

REPORT_KEYS = {
    "model",
    "board",
    "part",
    "clock_period_ns",
    "dataset",
    "accuracy",
    "csim",
    "size_bytes",
    "steps",
    "hls_project",
}


def _assert_exact(report: dict, samples: int) -> None:
    c = report["csim"]
    assert c["samples"] == samples
    assert c["bit_exact_fraction"] == 1.0
    assert c["argmax_agreement"] == 1.0
    assert c["max_abs_diff"] == 0.0


def test_fire_io_stream_bit_exact(fire_stream_build):
    out, report = fire_stream_build
    _assert_exact(report, SMALL["csim.samples"])
    csim = json.loads((out / "csim.json").read_text())
    # the csim accuracy is the reference model's accuracy on the same images, exactly
    assert csim["accuracy_csim"] == csim["accuracy_reference"]
    assert report["accuracy"]["quantized"] > 0.5  # it learned something: activations are not degenerate


def test_report_has_required_keys(fire_stream_build):
    out, report = fire_stream_build
    assert REPORT_KEYS <= set(report)
    assert report["part"] == "xc7z020clg400-1" and report["clock_period_ns"] == 10.0
    assert set(report["accuracy"]) >= {"float", "quantized", "csim"}
    assert set(report["csim"]) >= {"samples", "argmax_agreement", "bit_exact_fraction", "max_abs_diff"}
    assert report["size_bytes"]["float"] > report["size_bytes"]["quantized"] > 0
    # every step before the report: PYNQ boards add deploy (issue 15), io_stream builds the dataflow check
    assert set(report["steps"]) - {"dataflow"} == {"train", "qat", "export", "convert", "csim", "deploy"}
    assert (out / "report.md").read_text().startswith("# lenet5_fire on pynq-z2")
    assert json.loads((out / "config.json").read_text())["model"] == "lenet5_fire"


def test_project_has_pynq_wrapper_and_testbench(fire_stream_build):
    """The convert step's project (with its compiled library); the csim step's testbench data beside it."""
    out, report = fire_stream_build
    prj = out / "hls4ml_prj"
    for rel in ("firmware/myproject.cpp", "firmware/myproject_axi.cpp", "design.tcl", "axi_stream_driver.py"):
        assert (prj / rel).is_file(), rel
    assert (prj / "build_prj.tcl").is_file() and list((prj / "firmware").glob("myproject-*.so"))
    tb = out / "csim" / "tb_data"  # the csim step writes into its own folder, not into the project
    for name in ("tb_input_features.dat", "tb_output_predictions.dat"):
        assert (tb / name).is_file(), name
    rows = (tb / "tb_input_features.dat").read_text().strip().splitlines()
    assert len(rows) == SMALL["csim.tb_samples"] and len(rows[0].split()) == 28 * 28
    assert "xc7z020clg400-1" in (prj / "hls4ml_config.yml").read_text()


def test_fire_concat_has_no_transposes(fire_stream_build):
    _, report = fire_stream_build
    assert report["export"]["transposes"] == 0
    assert report["export"]["ops"]["Concat"] == 2  # two Fire modules


def test_fire_io_parallel_bit_exact_reuses_training(fire_stream_build, tmp_path):
    src, _ = fire_stream_build
    out = copy_build(src, tmp_path / "parallel")
    # the fit search would switch to io_stream (io_parallel does not fit the board): keep the configured design
    overrides = {"hls.io_type": "io_parallel", "hls.fit": False, "hls.require_fit": False}
    report = run_build("lenet5_fire", "pynq-z2", {**SMALL, "out_dir": str(out), **overrides})
    _assert_exact(report, SMALL["csim.samples"])
    steps = json.loads((out / "steps.json").read_text())["steps"]
    assert steps["train"]["skipped"] and steps["qat"]["skipped"] and steps["export"]["skipped"]
    assert not steps["convert"]["skipped"] and not steps["csim"]["skipped"]
    assert report["io_type"] == "io_parallel"


@pytest.mark.parametrize(
    ("model", "arch", "io_type"),
    [
        ("lenet300_100", {"hidden": [64, 32]}, "io_parallel"),
        ("lenet5", {"conv": [6, 12], "fc": 32}, "io_stream"),
    ],
)
def test_paper_networks_bit_exact(model, arch, io_type, tmp_path):
    overrides = {**SMALL, "out_dir": str(tmp_path / model), "hls.io_type": io_type, "csim.samples": 60}
    overrides.update({f"arch.{k}": v for k, v in arch.items()})
    report = run_build(model, "pynq-z2", overrides)
    _assert_exact(report, 60)


def test_wrong_precision_fails_and_names_the_layer(fire_stream_build, tmp_path):
    """A too-narrow activation type must fail the build, name the layer, and leave no report."""
    src, _ = fire_stream_build
    out = copy_build(src, tmp_path / "broken")
    overrides = {**SMALL, "out_dir": str(out), "hls.layer_precision": {"Relu_1": "ufixed<3,1>"}}
    with pytest.raises(VerificationError) as err:
        run_build("lenet5_fire", "pynq-z2", overrides)
    message = str(err.value)
    assert "Relu_1" in message and "first diverging layer" in message
    assert "features.fire1.squeeze_act" in message  # the PyTorch module it came from
    diagnosis = json.loads((out / "csim.json").read_text())["diagnosis"]
    assert diagnosis["hls_layer"] == "Relu_1"
    assert not (out / "report.json").exists() and not (out / "report.md").exists()
    steps = json.loads((out / "steps.json").read_text())["steps"]
    assert steps["csim"]["status"] == "failed" and "report" not in steps
