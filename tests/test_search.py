"""Compression chosen for an accuracy budget (issue 14, item 2): the sensitivity analysis, the candidate
ladder, candidates costed with the kernels the build uses (sparse, DA), the search step's choices
reaching the later steps, and the final budget check on the validation split (the full build on digits
is `-m slow`)."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
import torch
from torch import nn

from flows.api import resolve_config, run_build
from flows.boards import load_board
from flows.build import main as build_main
from flows.context import BuildContext
from flows.errors import UsageError
from flows.prune import prunable_layers
from flows.reporting.search import search_markdown
from flows.search import (
    Candidate,
    candidate_for,
    candidates,
    config_overrides,
    fake_quant,
    keep_top,
    layer_sensitivity,
)
from flows.steps.search import hardware_cost

# digits, a network nobody tuned for it, a small search space (the defaults are for MNIST-size runs)
SEARCH = {
    "data.dataset": "digits",
    "train.epochs": 8,
    "train.qat_epochs": 2,
    "train.lr": 0.005,
    "structure.enabled": False,
    "compress.iterations": 1,
    "compress.retrain_epochs": 1,
    "compress.share_epochs": 1,
    "search.densities": [1.0, 0.5, 0.25],
    "search.weight_bits": [8, 4],
    "search.act_bits": [8, 5],
    "search.tolerances": [1.0, 4.0],
    "search.max_candidates": 2,
    "search.finetune_epochs": 1,
    "csim.samples": 100,
    "csim.tb_samples": 5,
    "hls.rtl": "off",
    "hls.da": "off",
    "dataflow.enabled": False,
}


def test_keep_top_and_fake_quant():
    w = torch.tensor([0.1, -0.5, 0.25, -0.05, 0.9, 0.0, 0.3, -0.2])
    assert keep_top(w, 0.25).tolist() == [0, 1, 0, 0, 1, 0, 0, 0]
    assert keep_top(w, 1.0).sum() == 8
    q = fake_quant(w, 3)  # 3 levels each side, power-of-two scale 0.5 covering 0.9
    assert set(q.abs().tolist()) <= {0.0, 0.5, 1.0, 1.5}
    assert torch.allclose(fake_quant(w, 12), w, atol=2**-11)


class Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3)
        self.fc = nn.Linear(4 * 6 * 6, 3)

    def forward(self, x):
        return self.fc(torch.relu(self.conv(x)).flatten(1))


def test_sensitivity_restores_the_model_and_tracks_damage():
    torch.manual_seed(0)
    model = Tiny()
    x = torch.randn(64, 1, 8, 8)
    ref = model(x).detach()
    labels = ref.argmax(1)
    before = {k: v.clone() for k, v in model.state_dict().items()}

    def accuracy(m):
        return float((m(x).argmax(1) == labels).float().mean())

    sens = layer_sensitivity(model, accuracy, (1.0, 0.5, 0.05), (8, 2))
    assert set(sens) == {"conv", "fc"}
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    for row in sens.values():
        assert row["density"]["1.0"] == 1.0  # nothing pruned: the reference itself
        assert row["density"]["0.05"] < row["density"]["1.0"]
    assert sens["fc"]["kind"] == "fc" and sens["conv"]["params"] == 36


def test_candidates_grow_more_aggressive_with_the_tolerance():
    layers = {
        "a": {"kind": "conv", "params": 100, "density": {"1.0": 0.9, "0.5": 0.89, "0.1": 0.6},
              "weight_bits": {"8": 0.9, "4": 0.895, "3": 0.7}},
        "b": {"kind": "fc", "params": 1000, "density": {"1.0": 0.9, "0.5": 0.85, "0.1": 0.88},
              "weight_bits": {"8": 0.9, "4": 0.8, "3": 0.7}},
    }
    act = {"8": 0.88, "5": 0.875, "4": 0.80}
    mild = candidate_for(1.0, 0.9, layers, act, {"0.0": 0.9, "0.5": 0.5})
    # b loses 2 pp at 0.1 and 5 pp at 0.5: kept whole; the act widths are judged against the widest (8)
    assert mild.density == {"a": 0.5, "b": 1.0} and (mild.conv_bits, mild.fc_bits, mild.act_bits) == (4, 8, 5)
    assert mild.structure_ratio == 0.0
    wild = candidate_for(50.0, 0.9, layers, act, {"0.0": 0.9, "0.5": 0.5})
    assert wild.density == {"a": 0.1, "b": 0.1} and (wild.conv_bits, wild.fc_bits, wild.act_bits) == (3, 3, 4)
    assert wild.structure_ratio == 0.5
    ladder = candidates(1.0, 0.9, layers, act, {}, (1.0, 50.0, 100.0))
    assert len(ladder) == 2  # 50x and 100x give the same settings: kept once
    over = config_overrides(mild, structure=False)
    assert over["compress.density"] == {"a": 0.5, "b": 1.0} and over["quant.fc_weight_bits"] == 8
    assert "structure.ratio" not in over and config_overrides(wild, True)["structure.ratio"] == 0.5
    assert config_overrides(mild, True)["structure.epochs"] == 0  # ratio 0: nothing to fine-tune
    assert "structure.epochs" not in config_overrides(wild, True)


def test_search_choices_reach_the_later_steps(tmp_path):
    """Stopped after pruning: the prune step used the search's densities, not the recipe's."""
    out = tmp_path / "b"
    fast = {"train.epochs": 4, "search.tolerances": [2.0], "search.max_accuracy_drop": 3.0, "out_dir": str(out)}
    results = run_build("lenet5_fire", "pynq-z2", {**SEARCH, **fast}, until="prune")
    search = results["search"]
    chosen = search["chosen"]
    assert search["budget_pp"] == 3.0 and search["val_samples"] > 100
    assert set(search["sensitivity"]["layers"]) == set(chosen["density"])
    assert all(c["hardware"]["source"] == "estimate" and c["hardware"]["LUT"] > 0 for c in search["candidates"])
    pruned = {row["name"]: row["density"] for row in results["prune"]["layers"]}
    for name, density in chosen["density"].items():
        assert abs(pruned[name] - density) < 0.02, (name, pruned[name], density)
    assert json.loads((out / "search.json").read_text())["overrides"] == search["overrides"]
    # config.json keeps what the user asked for; the recipe's own densities are replaced, not merged
    assert json.loads((out / "config.json").read_text())["compress"]["density"] != chosen["density"]


def test_budget_needs_a_validation_split(tmp_path, capsys):
    code = build_main(["lenet5_fire", "--dataset", "digits", "--epochs", "1", "--max-accuracy-drop", "1",
                       "--set", "data.val_fraction=0", "--out", str(tmp_path / "b"), "-q"])
    assert code == 2 and "validation split" in capsys.readouterr().err
    with pytest.raises(UsageError):
        run_build("lenet5_fire", "pynq-z2", {"search.max_accuracy_drop": -1.0, "out_dir": str(tmp_path / "c")})


@pytest.mark.slow
def test_budget_is_kept_on_the_validation_split_of_digits(tmp_path):
    """The whole flow with --max-accuracy-drop on digits: the report's final check on the validation split."""
    out = tmp_path / "b"
    report = run_build("lenet5_fire", "pynq-z2", {**SEARCH, "structure.enabled": True, "search.max_accuracy_drop": 3.0,
                                                  "search.structure_ratios": [0.0, 0.5], "out_dir": str(out)})
    final = report["search"]["final"]
    print(json.dumps({k: report["search"][k] for k in ("chosen", "predicted_drop_pp")}), json.dumps(final))
    assert final["checked"] and final["val_samples"] > 100
    assert final["within_budget"] and final["drop_pp"] <= 3.0
    assert "plots/sensitivity.png" in report["plots"] and (out / "plots" / "sensitivity.png").exists()
    assert "## Compression chosen for the accuracy budget" in (out / "report.md").read_text()
    assert report["csim"]["bit_exact_fraction"] == 1.0


def test_candidates_are_costed_with_the_sparse_kernel_like_the_build(tmp_path):
    """A pruned MLP candidate: the search's cost uses the sparse kernel the convert step would pick
    (flows/kernelfit.py), and is smaller than the same candidate costed with hls.sparse=off."""
    over = {"data.dataset": "digits", "hls.da": "off", "hls.rtl": "off", "dataflow.enabled": False}
    cfg = resolve_config("lenet300_100", "pynq-z2", {**over, "out_dir": str(tmp_path)})
    ctx = BuildContext(cfg=cfg, board=load_board("pynq-z2"), out=tmp_path)
    ctx.tmp = tmp_path / "tmp"
    ctx.tmp.mkdir()
    torch.manual_seed(0)
    model = ctx.new_model(quantized=False).eval()  # untrained: the cost depends on the weights' sparsity only
    names = [name for name, _, _ in prunable_layers(model)]
    cand = Candidate(1.0, {name: 0.08 for name in names}, 4, 4, 8, 0.0)
    costed = hardware_cost(ctx, model, cand, 0)
    kernels = costed["kernels"]
    assert set(kernels) == {"Dense_MatMul_0", "Dense_MatMul_1", "Dense_MatMul_2"}, kernels
    assert kernels["Dense_MatMul_0"] == "sparse" and kernels["Dense_MatMul_1"] == "sparse", kernels
    ctx.cfg = replace(cfg, hls=replace(cfg.hls, sparse="off"))
    dense = hardware_cost(ctx, model, cand, 1)
    assert "sparse" not in dense["kernels"].values()
    assert costed["LUT"] < dense["LUT"], (costed["LUT"], dense["LUT"])
    # report.md's candidate table counts each kernel
    row = {"tolerance_pp": 1.0, "conv_bits": 4, "fc_bits": 4, "act_bits": 8, "structure_ratio": 0.0,
           "predicted_drop_pp": None}
    sec = {"final": {"checked": False}, "chosen": row, "budget_pp": 1.0, "hardware_estimate": costed,
           "objective": "lut", "predicted_drop_pp": 0.5, "predicted_within_budget": True, "act_bits_drop_pp": None,
           "structure_ratio_drop_pp": None, "layers": [],
           "candidates": [{**row, "hardware": costed}, {**row, "hardware": dense}]}
    table = search_markdown(sec)
    assert f"| {_count(kernels)} |" in table and "| kernels (layers) |" in table


def _count(kernels: dict) -> str:
    return ", ".join(f"{k} {list(kernels.values()).count(k)}" for k in sorted(set(kernels.values())))
