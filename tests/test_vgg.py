"""VGG-19 and VGG-Fire: sizes, pooling on 28x28 and 32x32 inputs, knobs, batch-norm folding, channel
groups for structured pruning, and both networks through the real flow (hls4ml C simulation, bit-exact)."""

from __future__ import annotations

import json
import random

import pytest
import torch
from torch import nn

from flows.api import run_build
from models import MODELS, available_models, build_model, count_weights
from models.bn import fold_batchnorm
from models.quant import QuantSpec
from models.vgg import N_CONVS, N_FIRES, VGGFireSpec
from tests.conftest import SMALL

FLOAT = QuantSpec(enabled=False)
SHAPES = [(1, 28, 28), (3, 32, 32)]
TINY = {"width": 1 / 16}


def _is_quantizer_key(key: str) -> bool:
    return "act_quant" in key or "weight_quant" in key or "bias_quant" in key


def _pools(model: nn.Module) -> list[str]:
    return [n for n, m in model.features.named_children() if isinstance(m, (nn.MaxPool2d, nn.AvgPool2d))]


# ------------------------------------------------------------------------------------------ sizes


@pytest.mark.parametrize(
    ("name", "shape", "params"),
    [
        ("vgg19", (1, 28, 28), 20_028_362),  # 16 convs (20.02M) + 512 -> 10: the seed's 80 MB
        ("vgg19", (3, 32, 32), 20_029_514),
        ("vgg_fire", (1, 28, 28), 1_223_274),  # 4.9 MB float
        ("vgg_fire", (3, 32, 32), 1_239_786),  # last map 2x2: the Linear has 4x the inputs
    ],
)
def test_full_width_sizes(name, shape, params):
    assert count_weights(build_model(name, FLOAT, shape)) == params


def test_registry_entries():
    assert {"vgg19", "vgg_fire"} <= set(available_models())
    for name in ("vgg19", "vgg_fire"):
        assert MODELS[name].train_arch == {"batch_norm": True}
    assert MODELS["lenet5"].train_arch == {}


# ---------------------------------------------------------------------------------- architecture


@pytest.mark.parametrize("name", ["vgg19", "vgg_fire"])
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("quantized", [False, True])
def test_forward_both_input_shapes(name, shape, quantized):
    net = build_model(name, QuantSpec(enabled=quantized), shape, 10, TINY)
    out = net(torch.rand(2, *shape))
    out = out.value if hasattr(out, "value") else out
    assert tuple(out.shape) == (2, 10)


def test_vgg19_pools_adapt_to_input_size():
    """28x28: four pools (28 -> 14 -> 7 -> 3 -> 1); 32x32: all five (32 -> ... -> 1)."""
    small = build_model("vgg19", FLOAT, (1, 28, 28), 10, TINY)
    assert _pools(small) == ["pool1", "pool2", "pool3", "pool4"] and small.final_map[1:] == (1, 1)
    cifar = build_model("vgg19", FLOAT, (3, 32, 32), 10, TINY)
    assert _pools(cifar) == [f"pool{i}" for i in range(1, 6)] and cifar.final_map[1:] == (1, 1)
    convs = [m for m in small.modules() if isinstance(m, nn.Conv2d)]
    assert len(convs) == N_CONVS and all(c.kernel_size == (3, 3) and c.padding == (1, 1) for c in convs)
    assert [c.out_channels for c in convs] == [4, 4, 8, 8] + [16] * 4 + [32] * 8


def test_vgg_fire_follows_squeezenet_strategies():
    net = build_model("vgg_fire", FLOAT, (1, 28, 28))
    children = dict(net.features.named_children())
    assert isinstance(children["stem"], nn.Conv2d) and children["stem"].kernel_size == (3, 3)
    assert children["stem_b"].out_channels == 64
    fires = [n for n in children if n.startswith("fire")]
    assert len(fires) == N_FIRES
    f = children["fire14"]  # expand 512 = VGG's width; squeeze 1/8 of it; a quarter 3x3
    assert (f.squeeze.out_channels, f.expand1x1.out_channels, f.expand3x3.out_channels) == (64, 384, 128)
    assert _pools(net) == ["pool2", "pool3", "pool4", "pool5"]  # late downsampling: none after the stem
    assert list(children).index("pool2") > list(children).index("fire2")


@pytest.mark.parametrize(
    ("name", "arch"),
    [
        ("vgg19", {"pool": "avg"}),
        ("vgg19", {"classifier": [32, 16]}),
        ("vgg19", {"pool_after": ["stage1", "stage3"]}),
        ("vgg_fire", {"pool": "avg"}),
        ("vgg_fire", {"stem_kernel": 5}),
        ("vgg_fire", {"classifier": [24]}),
        ("vgg_fire", {"squeeze_ratio": 0.5, "pct3x3": 0.75}),
        ("vgg_fire", {"pool_after": None}),
    ],
)
def test_architecture_knobs_build_and_run(name, arch):
    for shape in SHAPES:
        net = build_model(name, FLOAT, shape, 10, {**TINY, **arch})
        assert net(torch.rand(2, *shape)).shape == (2, 10)


def test_avg_pool_quantized_forward():
    net = build_model("vgg_fire", QuantSpec(), (1, 28, 28), 10, {**TINY, "pool": "avg"})
    assert tuple(net(torch.rand(2, 1, 28, 28)).shape) == (2, 10)


@pytest.mark.parametrize(
    ("name", "arch", "needle"),
    [
        ("vgg19", {"pool": "median"}, "pool"),
        ("vgg19", {"pool_after": ["stage9"]}, "stage9"),
        ("vgg19", {"channels": [8] * 3}, "channels"),
        ("vgg19", {"width": 0}, "width"),
        ("vgg19", {"depth": 3}, "unknown VGG architecture option"),
        ("vgg19", {"pool_after": ["stage1", "stage2", "stage3", "stage4", "stage5"]}, "too much downsampling"),
        ("vgg_fire", {"stem_kernel": 7}, "stem_kernel"),
        ("vgg_fire", {"pct3x3": 1.5}, "pct3x3"),
        ("vgg_fire", {"fires": [[2, 4, 4]]}, "fires"),
        ("vgg_fire", {"stem_channels": [8]}, "stem_channels"),
    ],
)
def test_bad_architecture_knobs(name, arch, needle):
    with pytest.raises(ValueError, match=needle):
        build_model(name, FLOAT, (1, 28, 28), 10, {**TINY, **arch})


def test_batch_norm_is_float_only():
    with pytest.raises(ValueError, match="fold"):
        build_model("vgg19", QuantSpec(), (1, 28, 28), 10, {**TINY, "batch_norm": True})


@pytest.mark.parametrize("name", ["vgg19", "vgg_fire"])
def test_float_and_quantized_twins_share_weight_names(name):
    f = build_model(name, FLOAT, (3, 32, 32), 10, TINY)
    q = build_model(name, QuantSpec(), (3, 32, 32), 10, TINY)
    missing, unexpected = q.load_state_dict(f.state_dict(), strict=False)
    assert not unexpected and missing and all(_is_quantizer_key(k) for k in missing)


# ------------------------------------------------------------------------------- batch-norm folding


def _trained_bn_model(name: str, shape, arch: dict, seed: int = 0) -> nn.Module:
    """A BN model with non-trivial running statistics and affine parameters, in eval mode."""
    torch.manual_seed(seed)
    net = build_model(name, FLOAT, shape, 10, {**arch, "batch_norm": True})
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.momentum = None  # cumulative average over the batches below
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
        net.train()
        for _ in range(3):
            net(torch.rand(8, *shape))
    return net.eval()


@pytest.mark.parametrize("name", ["vgg19", "vgg_fire"])
@pytest.mark.parametrize("shape", SHAPES)
def test_folded_batchnorm_matches_bn_model(name, shape):
    arch = {**TINY, "classifier": [16]}
    bn_net = _trained_bn_model(name, shape, arch)
    plain = build_model(name, FLOAT, shape, 10, arch)
    state = fold_batchnorm(bn_net)
    assert list(state) == list(plain.state_dict())  # same keys, same order: a drop-in state_dict
    plain.load_state_dict(state)  # strict
    x = torch.rand(4, *shape, dtype=torch.float64)
    with torch.no_grad():
        ref = bn_net.double().eval()(x)
        got = plain.double().eval()(x)
    assert torch.allclose(got, ref, rtol=1e-5, atol=1e-5)
    assert ref.abs().max() > 1e-3  # the comparison is not between two zero vectors


def test_bn_pairs_and_folded_state_loads_into_quantized_model():
    for name, pairs in (("vgg19", N_CONVS), ("vgg_fire", 2 + 3 * N_FIRES)):
        bn_net = _trained_bn_model(name, (1, 28, 28), TINY)
        assert len(bn_net.bn_pairs()) == pairs
        modules = dict(bn_net.named_modules())
        assert all(
            isinstance(modules[c], nn.Conv2d) and isinstance(modules[b], nn.BatchNorm2d) for c, b in bn_net.bn_pairs()
        )
        q = build_model(name, QuantSpec(), (1, 28, 28), 10, TINY)
        missing, unexpected = q.load_state_dict(fold_batchnorm(bn_net), strict=False)
        assert not unexpected and all(_is_quantizer_key(k) for k in missing)
        assert build_model(name, FLOAT, (1, 28, 28), 10, TINY).bn_pairs() == []


def test_fold_without_batchnorm_is_a_copy_and_unlisted_bn_fails():
    net = build_model("vgg19", FLOAT, (1, 28, 28), 10, TINY)
    state = fold_batchnorm(net)
    assert all(torch.equal(state[k], v) for k, v in net.state_dict().items())
    net.features.add_module("stray_bn", nn.BatchNorm2d(4))
    with pytest.raises(ValueError, match="stray_bn"):
        fold_batchnorm(net)


# ------------------------------------------------------------------------------ channel groups


def _assert_groups_consistent(net: nn.Module) -> None:
    """Every consumer's inputs are exactly tiled by the groups feeding it (offsets, widths, elements)."""
    modules = dict(net.named_modules())
    widths = net.group_widths()
    feeds: dict[str, list[tuple[int, int, int]]] = {}
    for g in net.channel_groups():
        assert g.name == g.producer and g.producer in modules
        for consumer, offset, elements in g.consumers:
            feeds.setdefault(consumer, []).append((offset, widths[g.name], elements))
    for consumer, parts in feeds.items():
        m = modules[consumer]
        parts.sort()
        expected_offset = 0
        for offset, width, elements in parts:
            assert offset == expected_offset, (consumer, parts)
            assert elements == parts[0][2]
            expected_offset += width
        if isinstance(m, nn.BatchNorm2d):
            assert m.num_features == expected_offset
        elif isinstance(m, nn.Conv2d):
            assert m.in_channels == expected_offset and parts[0][2] == 1
        else:
            assert m.in_features == expected_offset * parts[0][2]
    # every conv/linear but the first is fed by some group; the output layer produces no group
    layers = [n for n, m in modules.items() if isinstance(m, (nn.Conv2d, nn.Linear))]
    assert set(layers[1:]) <= set(feeds)
    assert set(widths) == set(layers[:-1])


@pytest.mark.parametrize("name", ["vgg19", "vgg_fire"])
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("batch_norm", [False, True])
def test_random_group_widths_build_consistent_networks(name, shape, batch_norm):
    rng = random.Random(f"{name}{shape}{batch_norm}")
    arch = {"width": 1 / 8, "classifier": [12], "batch_norm": batch_norm}
    net = build_model(name, FLOAT, shape, 10, arch)
    _assert_groups_consistent(net)
    groups = net.channel_groups()
    widths = {g.name: rng.randint(1, 9) for g in groups if rng.random() < 0.8}  # some groups keep theirs
    new_arch = net.arch_for_widths(widths)
    json.dumps(new_arch)  # goes into config.json
    small = build_model(name, FLOAT, shape, 10, new_arch)
    expected = {**net.group_widths(), **widths}
    assert small.group_widths() == expected
    _assert_groups_consistent(small)
    assert small.eval()(torch.rand(2, *shape)).shape == (2, 10)
    q = build_model(name, QuantSpec(), shape, 10, {**new_arch, "batch_norm": False})
    assert tuple(q(torch.rand(2, *shape)).shape) == (2, 10)


@pytest.mark.parametrize("name", ["vgg19", "vgg_fire"])
def test_groups_slice_exactly(name):
    """Zeroing a group's channels in the full net == slicing them out (flows/structured.py's shrink):
    the declared consumers, offsets and H*W spans are the network's real wiring."""
    from flows.structured import shrink

    shape = (3, 32, 32)
    arch = {"width": 1 / 8, "classifier": [12], "pool_after": ["stage2", "stage3", "stage4"]}
    if name == "vgg19":
        arch["pool_after"] = ["stage1", "stage2", "stage3"]  # a 4x4 map before the Linear
    torch.manual_seed(0)
    net = build_model(name, FLOAT, shape, 10, arch).eval()
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                m.bias.uniform_(0.0, 0.1)  # keep channels alive: a dropped channel must matter
    gen = torch.Generator().manual_seed(1)
    modules = dict(net.named_modules())
    keep = {}
    for g in net.channel_groups():
        n = modules[g.producer].weight.shape[0]
        keep[g.name] = torch.sort(torch.randperm(n, generator=gen)[: max(1, n // 2)]).values
    small = shrink(net, keep, lambda a: build_model(name, FLOAT, shape, 10, {**arch, **a})).eval()
    with torch.no_grad():
        for g in net.channel_groups():
            dropped = torch.ones(modules[g.producer].weight.shape[0], dtype=torch.bool)
            dropped[keep[g.name]] = False
            modules[g.producer].weight[dropped] = 0
            modules[g.producer].bias[dropped] = 0
        x = torch.rand(3, *shape)
        assert torch.allclose(small(x), net(x), atol=1e-5)
    assert count_weights(small) < count_weights(net) / 2


def test_arch_for_widths_rejects_bad_input_and_keeps_missing_groups():
    net = build_model("vgg_fire", FLOAT, (1, 28, 28), 10, TINY)
    same = net.arch_for_widths({})
    rebuilt = build_model("vgg_fire", FLOAT, (1, 28, 28), 10, same)
    assert {k: v.shape for k, v in rebuilt.state_dict().items()} == {k: v.shape for k, v in net.state_dict().items()}
    assert len(same["fires"]) == N_FIRES and same["stem_channels"] == [4, 4]
    with pytest.raises(ValueError, match="unknown channel groups"):
        net.arch_for_widths({"features.fire99.squeeze": 3})
    with pytest.raises(ValueError, match=">= 1"):
        net.arch_for_widths({"features.fire1.squeeze": 0})
    assert VGGFireSpec(**{**same, "fires": tuple(map(tuple, same["fires"]))}).fire_list()[0].squeeze == 1


# ------------------------------------------------------------------------- the flow, bit-exact


def _assert_exact(report: dict, samples: int) -> None:
    c = report["csim"]
    assert c["samples"] == samples
    assert c["bit_exact_fraction"] == 1.0 and c["argmax_agreement"] == 1.0 and c["max_abs_diff"] == 0.0


@pytest.mark.parametrize(
    ("model", "arch"),
    [
        # 16 convs, pools on 28 -> 14 -> 7 -> 3 -> 1 (odd sizes: the last row/column is dropped)
        ("vgg19", {"width": 1 / 16}),
        # 14 Fire modules, late pools; squeeze and expand halves kept wide enough (>= 4 channels) that
        # the tiny net trains in a few epochs (a dead ReLU would get a 1e-10 scale hls4ml cannot take)
        # (about 3 minutes on 2 cores, most of it qonnx's channels-last pass over 44 convs: marked slow)
        pytest.param("vgg_fire", {"width": 1 / 8, "squeeze_ratio": 0.5, "pct3x3": 0.5}, marks=pytest.mark.slow),
    ],
)
def test_vgg_networks_bit_exact(model, arch, tmp_path):
    overrides = {
        **SMALL,
        "out_dir": str(tmp_path / model),
        "csim.samples": 20,
        "hls.require_fit": False,
        "arch.batch_norm": False,  # exported without BN; the float step trains with it (train_arch), folds it
    }
    overrides.update({f"arch.{k}": v for k, v in arch.items()})
    report = run_build(model, "pynq-z2", overrides)
    _assert_exact(report, 20)
    assert report["accuracy"]["quantized"] > 0.15  # above chance: the activations are not all zero
