"""The model zoo: parameter counts of the paper's networks, Fire module wiring, SqueezeNet knobs."""

from __future__ import annotations

import pytest
import torch

from models import build_model, count_weights
from models.fire import FireNetSpec, fire_widths
from models.quant import QuantSpec


@pytest.mark.parametrize(("name", "params"), [("lenet300_100", 266_610), ("lenet5", 431_080)])
def test_paper_network_sizes(name, params):
    assert count_weights(build_model(name, QuantSpec(enabled=False))) == params


@pytest.mark.parametrize("quantized", [False, True])
def test_fire_network_forward(quantized):
    net = build_model("lenet5_fire", QuantSpec(enabled=quantized))
    out = net(torch.rand(3, 1, 28, 28))
    assert tuple(out.shape) == (3, 10)


def test_float_and_quantized_twins_share_weight_names():
    f = build_model("lenet5_fire", QuantSpec(enabled=False))
    q = build_model("lenet5_fire", QuantSpec())
    missing, unexpected = q.load_state_dict(f.state_dict(), strict=False)
    assert not unexpected and all("act_quant" in k for k in missing)


def test_fire_widths_follow_squeezenet_metaparameters():
    w = fire_widths(64, squeeze_ratio=0.125, pct3x3=0.5)
    assert (w.squeeze, w.expand1x1, w.expand3x3) == (8, 32, 32)
    w = fire_widths(32, squeeze_ratio=0.25, pct3x3=0.75)
    assert (w.squeeze, w.expand1x1, w.expand3x3) == (8, 8, 24)


def test_fire_concat_has_both_branches():
    net = build_model(
        "lenet5_fire", QuantSpec(enabled=False), arch={"expand": [20], "pct3x3": 0.25, "pool_after": ["stem", "fire1"]}
    )
    fire = net.features.fire1
    assert fire.expand1x1.out_channels + fire.expand3x3.out_channels == 20
    x = torch.rand(2, net.features.stem.out_channels, 12, 12)
    assert fire(x).shape == (2, 20, 12, 12)


@pytest.mark.parametrize("arch", [{"pool": "avg"}, {"stem_kernel": 3}, {"fc_hidden": 32}, {"fire_stem": True}])
def test_architecture_knobs_build_and_run(arch):
    net = build_model("lenet5_fire", QuantSpec(enabled=False), arch=arch)
    assert net(torch.rand(2, 1, 28, 28)).shape == (2, 10)


@pytest.mark.parametrize(
    ("arch", "needle"),
    [({"pool": "median"}, "pool"), ({"pool_after": ["fire9"]}, "fire9"), ({"stem_kernel": 7}, "stem_kernel")],
)
def test_bad_architecture_knobs(arch, needle):
    with pytest.raises(ValueError, match=needle):
        FireNetSpec(**arch).validate()
