"""Structured pruning: channels leave producers and every consumer together (Fire squeeze -> both
expands, both expand branches -> the Concat's consumer at their offsets, channels -> Linear inputs
after a flatten); the narrower network computes what the masked wide one computes; the exported
graph and the HLS project have the reduced channel counts; C simulation stays bit-exact."""

from __future__ import annotations

import json

import pytest
import torch
from qonnx.core.modelwrapper import ModelWrapper

from flows.api import run_build
from flows.structured import choose_channels, layer_shapes, shrink
from models import build_model
from models.quant import QuantSpec
from tests.conftest import SMALL, copy_build

FIRE_ARCHES = [{}, {"stem_kernel": 3}, {"fire_stem": True}, {"fc_hidden": 16}, {"expand": [20, 30, 40]}]


def _float(name: str, arch: dict) -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model(name, QuantSpec(enabled=False), arch=arch).eval()


def _masked_copy(model: torch.nn.Module, keep: dict[str, torch.Tensor]) -> torch.nn.Module:
    """The wide network with the pruned channels' filters and biases zeroed: what `shrink` must equal."""
    import copy

    wide = copy.deepcopy(model)
    modules = dict(wide.named_modules())
    with torch.no_grad():
        for group in wide.channel_groups():
            producer = modules[group.producer]
            drop = torch.ones(producer.weight.shape[0], dtype=torch.bool)
            drop[keep[group.name]] = False
            producer.weight[drop] = 0
            producer.bias[drop] = 0
    return wide


@pytest.mark.parametrize(("name", "arch"), [*[("lenet5_fire", a) for a in FIRE_ARCHES],
                                            ("lenet5", {}), ("lenet300_100", {})])
def test_shrunk_network_equals_the_masked_wide_one(name, arch):
    model = _float(name, arch)
    keep = choose_channels(model, ratio=0.4, ratios={}, min_channels=1)
    small = shrink(model, keep, lambda widths: build_model(name, QuantSpec(enabled=False), arch={**arch, **widths}))
    x = torch.rand(4, 1, 28, 28)
    with torch.no_grad():
        torch.testing.assert_close(small.eval()(x), _masked_copy(model, keep)(x), rtol=1e-5, atol=1e-5)
    params_before = sum(s.params for s in layer_shapes(model, (1, 28, 28)))
    params_after = sum(s.params for s in layer_shapes(small, (1, 28, 28)))
    assert params_after < params_before


def test_concat_consumer_keeps_both_branches_in_order():
    model = _float("lenet5_fire", {})
    keep = choose_channels(model, ratio=0.5, ratios={"features.fire1.expand3x3": 0.25}, min_channels=1)
    small = shrink(model, keep, lambda w: build_model("lenet5_fire", QuantSpec(enabled=False), arch=w))
    fire1, fire2 = small.features.fire1, small.features.fire2
    assert fire2.squeeze.in_channels == fire1.expand1x1.out_channels + fire1.expand3x3.out_channels
    assert fire1.expand3x3.out_channels == 18 and fire1.expand1x1.out_channels == 12  # 24 x 0.75, 24 x 0.5
    # fire2.squeeze's inputs: the kept 1x1 channels first, then the kept 3x3 channels (the Concat order)
    e1 = keep["features.fire1.expand1x1"]
    e3 = keep["features.fire1.expand3x3"]
    expected = model.features.fire2.squeeze.weight[:, torch.cat([e1, 24 + e3])]
    expected = expected[keep["features.fire2.squeeze"]]
    torch.testing.assert_close(small.features.fire2.squeeze.weight, expected)


def test_unknown_group_and_bad_ratio():
    model = _float("lenet5_fire", {})
    with pytest.raises(ValueError, match="unknown groups"):
        choose_channels(model, 0.3, {"features.fire9.squeeze": 0.5}, 1)
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        choose_channels(model, 1.0, {}, 1)


@pytest.fixture(scope="module")
def structured_build(tmp_path_factory):
    out = tmp_path_factory.mktemp("structured")
    overrides = {**SMALL, "out_dir": str(out), "structure.enabled": True, "structure.ratio": 0.4,
                 "structure.epochs": 1, "csim.samples": 60}
    return out, run_build("lenet5_fire", "pynq-z2", overrides)


def test_structured_build_reports_and_stays_bit_exact(structured_build):
    out, report = structured_build
    st = report["structure"]
    assert {"params_before", "params_after", "macs_before", "macs_after", "layers"} <= set(st)
    assert st["macs_after"] < 0.7 * st["macs_before"]  # >= 30% fewer MACs at ratio 0.4
    assert report["csim"]["bit_exact_fraction"] == 1.0
    assert "## Structure (channel pruning)" in (out / "report.md").read_text()


def test_exported_graph_and_hls_project_have_the_reduced_channels(structured_build):
    out, report = structured_build
    widths = {row["name"]: row["out_after"] for row in report["structure"]["layers"]}
    model = ModelWrapper(str(out / "model.qonnx.onnx"))
    convs = [n for n in model.graph.node if n.op_type == "Conv"]
    out_channels = [model.get_tensor_shape(n.output[0])[-1] for n in convs]  # channels-last
    expected = [widths[k] for k in ("features.stem", "features.fire1.squeeze", "features.fire1.expand1x1",
                                    "features.fire1.expand3x3", "features.fire2.squeeze",
                                    "features.fire2.expand1x1", "features.fire2.expand3x3")]
    assert out_channels == expected
    layers = {row["name"]: row for row in report["hls_layers"]}
    assert layers["Conv2D_Conv_0"]["shape"][-1] == widths["features.stem"]


def test_later_steps_use_the_pruned_architecture(structured_build, tmp_path):
    src, report = structured_build
    out = copy_build(src, tmp_path / "again")
    again = run_build("lenet5_fire", "pynq-z2", {**SMALL, "out_dir": str(out), "structure.enabled": True,
                                                "structure.ratio": 0.4, "structure.epochs": 1,
                                                "csim.samples": 60, "hls.io_type": "io_parallel"})
    steps = json.loads((out / "steps.json").read_text())["steps"]
    assert steps["structure"]["skipped"] and steps["qat"]["skipped"]
    assert again["structure"]["macs_after"] == report["structure"]["macs_after"]
    assert again["csim"]["bit_exact_fraction"] == 1.0
