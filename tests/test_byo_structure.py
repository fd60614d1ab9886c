"""Structured (channel) pruning on a plain PyTorch network (issue 13): channel groups inferred from the traced graph
(flows/byo/channels.py), the network rebuilt narrower by every later step from the recorded widths, and the one-line
refusal (exit 2, before training) where the groups cannot be inferred (torch.cat, residual add, two consumers, an op
not recognised, shared weights, a forward with a shape written into it).

The default run checks the inference, the narrowing (the pruned network computes what the wide one computes with the
removed channels zeroed) and the refusals through the real CLI; `-m slow` builds a plain CNN with structure and Deep
Compression through the whole flow to a bit-exact C simulation with fewer channels in the hls4ml project.
Entry points are `test_byo_structure:<function>` / `test_byo:<function>` (pytest puts tests/ on sys.path).
"""

from __future__ import annotations

import copy
import re

import pytest
import torch
from test_byo import DIGITS, SMALL_BUILD, FireLike, Residual, assert_refused
from torch import nn
from torch.nn import functional as F

from flows.api import run_build
from flows.byo.channels import WIDTHS_KEY, PlainChannels, check_narrowing, groups_and_norms, infer_groups, narrow
from flows.byo.quantize import fold_plain
from flows.errors import UsageError
from flows.structured import choose_channels, shrink
from models.groups import ChannelGroup

SHAPE = (1, 28, 28)

# ------------------------------------------------------------------------------------------------------------
# The networks (a user's code)
# ------------------------------------------------------------------------------------------------------------


class TwoStageCNN(nn.Module):
    """conv-bn-relu-pool twice, flatten, linear: the plain CNN of the slow build."""

    def __init__(self, c=1, n=10, side=28):
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(c, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8)
        self.conv2, self.bn2 = nn.Conv2d(8, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16)
        self.pool = nn.MaxPool2d(2)
        self.fc = nn.Linear(16 * (side // 4) ** 2, n)

    def forward(self, x):
        x = self.pool(torch.relu(self.bn1(self.conv1(x))))
        x = self.pool(torch.relu(self.bn2(self.conv2(x))))
        return self.fc(torch.flatten(x, 1))


class FunctionalCNN(nn.Module):
    """Functional ops, a Sequential, a global mean, an MLP head with BatchNorm1d and Dropout."""

    def __init__(self, c=1, n=10, side=28):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(c, 6, 3, padding=1), nn.BatchNorm2d(6), nn.ReLU6(), nn.MaxPool2d(2))
        self.conv = nn.Conv2d(6, 12, 3, padding=1)
        self.fc1, self.bn, self.drop = nn.Linear(12, 20), nn.BatchNorm1d(20), nn.Dropout(0.2)
        self.fc2 = nn.Linear(20, n)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.conv(self.features(x))), 2).mean((2, 3))
        x = x.view(x.size(0), -1)
        return self.fc2(self.drop(torch.relu(self.bn(self.fc1(x)))))


class TwoBranchCat(nn.Module):
    """The input feeds two convs whose ReLU outputs are concatenated: each conv's channels feed the cat."""

    def __init__(self, c=1, n=10, side=28):
        super().__init__()
        self.a, self.b = nn.Conv2d(c, 4, 3, padding=1), nn.Conv2d(c, 4, 1)
        self.fc = nn.Linear(8 * side * side, n)

    def forward(self, x):
        return self.fc(torch.flatten(torch.cat([torch.relu(self.a(x)), torch.relu(self.b(x))], 1), 1))


class SharedConv(nn.Module):
    def __init__(self, c=1, n=10, side=28):
        super().__init__()
        self.stem, self.conv = nn.Conv2d(c, 4, 3, padding=1), nn.Conv2d(4, 4, 3, padding=1)
        self.fc = nn.Linear(4 * side * side, n)

    def forward(self, x):
        return self.fc(torch.flatten(torch.relu(self.conv(torch.relu(self.conv(torch.relu(self.stem(x)))))), 1))


class UnknownOp(nn.Module):
    def __init__(self, c=1, n=10, side=28):
        super().__init__()
        self.conv, self.fc = nn.Conv2d(c, 4, 3, padding=1), nn.Linear(4 * side * side, n)

    def forward(self, x):
        return self.fc(torch.flatten(torch.relu(self.conv(x)) * 2, 1))


class HardCodedView(nn.Module):
    def __init__(self, c=1, n=10, side=28):
        super().__init__()
        self.conv, self.pool, self.fc = nn.Conv2d(c, 8, 3, padding=1), nn.MaxPool2d(4), nn.Linear(8 * 7 * 7, n)

    def forward(self, x):
        return self.fc(self.pool(torch.relu(self.conv(x))).view(-1, 392))


def _plain(cls):
    def build(quant, in_shape, num_classes, arch):
        return cls(in_shape[0], num_classes, in_shape[1])

    return build


two_stage_cnn = _plain(TwoStageCNN)
two_branch_cat = _plain(TwoBranchCat)
hard_coded_view = _plain(HardCodedView)

# ------------------------------------------------------------------------------------------------------------
# Inference of the channel groups
# ------------------------------------------------------------------------------------------------------------


def test_groups_of_a_cnn_with_batchnorm_and_flatten():
    found = groups_and_norms(TwoStageCNN(), SHAPE)
    assert found == [
        (ChannelGroup("conv1", "conv1", (("conv2", 0, 1),)), ("bn1",)),
        (ChannelGroup("conv2", "conv2", (("fc", 0, 49),)), ("bn2",)),  # 7x7 inputs per channel after the flatten
    ]


def test_groups_through_functional_ops_and_a_global_mean():
    found = groups_and_norms(FunctionalCNN(), SHAPE)
    assert found == [
        (ChannelGroup("features.0", "features.0", (("conv", 0, 1),)), ("features.1",)),
        (ChannelGroup("conv", "conv", (("fc1", 0, 1),)), ()),  # one input per channel after the global mean
        (ChannelGroup("fc1", "fc1", (("fc2", 0, 1),)), ("bn",)),  # fc2 is the classifier: never a group
    ]


@pytest.mark.parametrize(
    ("cls", "words"),
    [
        (TwoBranchCat, ["of a ", "torch.cat"]),
        (Residual, ["of stem", "residual add"]),
        (FireLike, ["of squeeze", "more than one layer (e1, e3)"]),
        (SharedConv, ["of stem", "feed conv, a layer called 2 times (shared weights)"]),
        (UnknownOp, ["of conv", "mul", "not recognised"]),
    ],
)
def test_groups_that_cannot_be_inferred_are_refused(cls, words):
    with pytest.raises(UsageError) as exc:
        infer_groups(cls(), SHAPE, "net")
    msg = str(exc.value)
    assert "\n" not in msg and "structure.enabled=false" in msg
    assert all(w in msg for w in words), msg


def test_a_forward_with_a_shape_written_into_it_is_refused():
    with pytest.raises(UsageError, match=r"narrows conv, and the network's forward then fails .*torch.flatten"):
        check_narrowing(HardCodedView(), SHAPE, "net")
    assert [g.name for g in check_narrowing(TwoStageCNN(), SHAPE, "net")] == ["conv1", "conv2"]


# ------------------------------------------------------------------------------------------------------------
# Narrowing: what the structure step and every later rebuild do
# ------------------------------------------------------------------------------------------------------------


def test_narrow_cuts_producers_norms_and_consumers():
    net = narrow(TwoStageCNN(), {"conv1": 3, "conv2": 5}, SHAPE)
    assert tuple(net.conv1.weight.shape) == (3, 1, 3, 3) and net.bn1.running_mean.shape == (3,)
    assert tuple(net.conv2.weight.shape) == (5, 3, 3, 3) and net.bn2.num_features == 5
    assert tuple(net.fc.weight.shape) == (10, 5 * 49) and net.fc.in_features == 245
    assert net(torch.zeros(2, *SHAPE)).shape == (2, 10)
    with pytest.raises(UsageError, match="not channel groups"):
        narrow(TwoStageCNN(), {"fc": 5}, SHAPE)
    with pytest.raises(UsageError, match="must be a channel count in 1..8"):
        narrow(TwoStageCNN(), {"conv1": 9}, SHAPE)


@pytest.mark.parametrize("cls", [TwoStageCNN, FunctionalCNN])
def test_pruned_network_computes_the_wide_one_with_the_removed_channels_zeroed(cls):
    """choose_channels + shrink on the folded float network, the narrow network rebuilt from the recorded widths
    (as ctx.new_model does): the same logits as the wide network whose dropped filters output zero."""
    torch.manual_seed(0)
    wide_net = cls()
    for m in wide_net.modules():  # trained-looking BatchNorms, so folding changes the weights
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.running_mean.uniform_(-0.2, 0.2), m.running_var.uniform_(0.5, 2.0), m.weight.data.uniform_(0.5, 1.5)
    wide = fold_plain(wide_net.eval())
    decl = PlainChannels(infer_groups(cls(), SHAPE))
    keep = choose_channels(wide, 0.5, {}, 1, decl=decl)
    arch = decl.arch_for_widths({k: int(v.numel()) for k, v in keep.items()})
    assert set(arch) == {WIDTHS_KEY} and all(v >= 1 for v in arch[WIDTHS_KEY].values())
    small = shrink(wide, keep, lambda a: fold_plain(narrow(cls(), a[WIDTHS_KEY], SHAPE).eval()), decl=decl)
    masked = copy.deepcopy(wide)
    modules = dict(masked.named_modules())
    with torch.no_grad():
        for group in decl.channel_groups():
            drop = torch.ones(modules[group.producer].weight.shape[0], dtype=torch.bool)
            drop[keep[group.name]] = False
            modules[group.producer].weight[drop] = 0
            modules[group.producer].bias[drop] = 0
        x = torch.rand(4, *SHAPE, generator=torch.Generator().manual_seed(1))
        assert torch.allclose(small.eval()(x), masked.eval()(x), atol=1e-5)
    assert sum(p.numel() for p in small.parameters()) < sum(p.numel() for p in wide.parameters())


# ------------------------------------------------------------------------------------------------------------
# Through the real CLI: refused in one line, exit 2, before training
# ------------------------------------------------------------------------------------------------------------




@pytest.mark.parametrize(
    ("entry", "words"),
    [
        ("test_byo:residual", ["structured pruning", "stem", "residual add", "structure.enabled=false"]),
        ("test_byo_structure:two_branch_cat", ["structured pruning", "torch.cat", "compress.enabled=true"]),
        ("test_byo_structure:hard_coded_view", ["narrows conv", "torch.flatten(x, 1)", "structure.enabled=false"]),
    ],
)
def test_structure_refused_before_training(cli, tmp_path, entry, words):
    out = tmp_path / "b"
    res = cli(entry, "--out", out, *DIGITS, "--epochs", "1", "--set", "structure.enabled=true")
    assert_refused(res, *words, out=out)


# ------------------------------------------------------------------------------------------------------------
# Whole flow to a bit-exact C simulation (slow)
# ------------------------------------------------------------------------------------------------------------

STRUCTURED = {
    **SMALL_BUILD,
    "structure.enabled": True,
    "structure.ratio": 0.5,
    "structure.epochs": 2,
    "compress.enabled": True,
    "compress.density": {"conv1": 0.8, "conv2": 0.5, "fc": 0.3},
    "compress.iterations": 1,
    "compress.retrain_epochs": 1,
    "compress.share_epochs": 1,
}


@pytest.mark.slow
def test_plain_cnn_with_structure_builds_narrower_and_bit_exact(tmp_path):
    out = tmp_path / "b"
    report = run_build("test_byo_structure:two_stage_cnn", "pynq-z2", {**STRUCTURED, "out_dir": str(out)})
    assert report["csim"]["samples"] == 150 and report["csim"]["bit_exact_fraction"] == 1.0
    assert report["model_source"]["route"] == "plain" and report["accuracy"]["csim"] > 0.3
    rows = {r["name"]: r for r in report["structure"]["layers"]}
    assert (rows["conv1"]["out_before"], rows["conv1"]["out_after"]) == (8, 4)
    assert (rows["conv2"]["in_after"], rows["conv2"]["out_before"], rows["conv2"]["out_after"]) == (4, 16, 8)
    assert (rows["fc"]["in_before"], rows["fc"]["in_after"], rows["fc"]["out_after"]) == (784, 392, 10)
    assert report["structure"]["arch"][WIDTHS_KEY] == {"conv1": 4, "conv2": 8}
    # every later step rebuilt the narrow network: the QAT checkpoint and the hls4ml project have its widths
    qat = torch.load(out / "model" / "qat.pt", weights_only=True)
    assert tuple(qat["conv1.weight"].shape) == (4, 1, 3, 3) and tuple(qat["fc.weight"].shape) == (10, 392)
    convs = [lay["shape"] for lay in report["hls_layers"] if lay["class"] == "Conv2D"]
    assert convs == [[28, 28, 4], [14, 14, 8]], report["hls_layers"]
    assert [lay["shape"] for lay in report["hls_layers"] if lay["class"] == "Reshape"] == [[392]]
    params = (out / "hls4ml_prj" / "firmware" / "parameters.h").read_text()
    assert sorted(set(map(int, re.findall(r"n_filt = (\d+);", params)))) == [4, 8]
    layers = {lay["name"]: lay for lay in report["compression"]["layers"]}
    assert layers["conv2"]["total"] == 8 * 4 * 9 and abs(layers["conv2"]["density"] - 0.5) < 0.02
