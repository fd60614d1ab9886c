"""Deep Compression stages on small data: each stage changes what it should.

Pruning reaches its target density under the q x std rule and masks stay fixed; weight sharing
leaves at most 2^b - 1 shared values (plus zero) and sums gradients per cluster; the bundle decodes
exactly; the build reports the compression tables and the hardware model keeps <= 2^b values.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn

from flows.api import run_build
from flows.bundle import read_bundle
from flows.data import load_data
from flows.prune import magnitude_prune, prunable_layers, quality_for_density
from flows.share import SharedWeight, attach_sharing, bake_sharing, centroid_parameters, kmeans_codebook
from flows.train import TrainRecipe, train
from models import build_model
from models.quant import QuantSpec
from tests.conftest import SMALL


@pytest.fixture(scope="module")
def digits():
    return load_data("digits")


@pytest.fixture
def mlp(digits):
    torch.manual_seed(0)
    model = build_model("lenet300_100", QuantSpec(enabled=False), arch={"hidden": (64, 32)})
    train(model, digits.train, TrainRecipe(epochs=3, lr=5e-3, augment=False))
    return model


def _retrain(digits, epochs=1):
    def retrain(model, masks, k):
        return train(model, digits.train, TrainRecipe(epochs=epochs, lr=1e-3, augment=False, seed=k), masks=masks)

    return retrain


def test_quality_for_density_inverts_the_rule():
    w = torch.randn(10_000)
    q = quality_for_density(w, 0.1)
    kept = (w.abs() > q * w.std()).float().mean().item()
    assert abs(kept - 0.1) < 1e-3


def test_pruning_reaches_target_density_and_masks_stay_fixed(mlp, digits):
    target = {"ip1": 0.1, "ip2": 0.2, "ip3": 0.5}
    result = magnitude_prune(mlp, iterations=2, retrain=_retrain(digits), density=target)
    by_name = {lp.name: lp for lp in result.layers}
    for name, density in target.items():
        lp = by_name[name]
        assert abs(lp.density - density) < 0.002, (name, lp.density)
        assert lp.threshold == pytest.approx(lp.quality * lp.std)  # the paper's rule
        module = dict(mlp.named_modules())[name]
        assert torch.equal((module.weight != 0).float(), result.masks[f"{name}.weight"])
    # masks are fixed afterwards: more training with the masks keeps every pruned weight at zero
    zeros_before = {n: (m.weight == 0).clone() for n, m, _ in prunable_layers(mlp)}
    train(mlp, digits.train, TrainRecipe(epochs=1, lr=1e-3, augment=False), masks=result.masks)
    for name, module, _ in prunable_layers(mlp):
        assert torch.all(module.weight[zeros_before[name]] == 0)


def test_quality_parameter_ramps_over_rounds(mlp, digits):
    result = magnitude_prune(mlp, iterations=2, retrain=_retrain(digits, 0), quality={"ip1": 1.0})
    ip1 = next(lp for lp in result.layers if lp.name == "ip1")
    assert ip1.quality == pytest.approx(1.0) and 0.2 < ip1.density < 0.5  # |w| > 1 std of a bell curve: ~32%
    assert all(lp.density == 1.0 for lp in result.layers if lp.name != "ip1")


def test_unknown_layer_in_pruning_settings(mlp, digits):
    with pytest.raises(ValueError, match="unknown layers"):
        magnitude_prune(mlp, 1, _retrain(digits), density={"ip9": 0.1})


def test_kmeans_codebook_linear_init_and_small_layers():
    values = np.concatenate([np.linspace(-1, -0.5, 500), np.linspace(0.5, 1, 500)])
    centroids, labels = kmeans_codebook(values, 7)
    assert len(centroids) == 7 and labels.max() < 7
    assert np.abs(centroids[labels] - values).max() < 0.2
    few, lab = kmeans_codebook(np.array([0.3, -0.2, 0.3]), 31)
    assert sorted(few.tolist()) == pytest.approx([-0.2, 0.3]) and len(lab) == 3


def test_shared_weight_gradient_is_summed_per_cluster():
    centroids = torch.tensor([1.0, 2.0])
    index = torch.tensor([[0, 1], [1, 1]])
    mask = torch.tensor([[1.0, 1.0], [0.0, 1.0]])
    shared = SharedWeight(centroids, index, mask)
    w = shared(torch.zeros(2, 2))
    grad_w = torch.tensor([[0.5, 1.0], [7.0, 2.0]])
    (w * grad_w).sum().backward()
    # cluster 0: one weight (0.5); cluster 1: 1.0 + 2.0 (the masked 7.0 does not count)
    assert shared.centroids.grad.tolist() == [0.5, 3.0]


def test_sharing_limits_distinct_values_and_keeps_zeros(mlp, digits):
    magnitude_prune(mlp, 1, _retrain(digits, 0), density={"ip1": 0.2, "ip2": 0.3})
    zeros = {n: (m.weight == 0).clone() for n, m, _ in prunable_layers(mlp)}
    bits = {"conv": 8, "fc": 3}
    attach_sharing(mlp, bits)
    before = [p.detach().clone() for p in centroid_parameters(mlp)]
    train(mlp, digits.train, TrainRecipe(epochs=1, lr=1e-3, augment=False), params=centroid_parameters(mlp))
    after = centroid_parameters(mlp)
    assert any(not torch.equal(a, b) for a, b in zip(after, before))  # centroids were fine-tuned
    report = bake_sharing(mlp, bits)
    for layer in report:
        assert layer.distinct_values <= 2**3 - 1 and layer.clusters <= 7
    for name, module, _ in prunable_layers(mlp):
        assert not isinstance(module.weight, SharedWeight)
        assert torch.all(module.weight[zeros[name]] == 0)
        assert isinstance(module, nn.Linear)


@pytest.fixture(scope="module")
def compressed_build(tmp_path_factory):
    out = tmp_path_factory.mktemp("compressed")
    overrides = {
        **SMALL,
        "out_dir": str(out),
        "arch.hidden": [64, 32],
        "hls.io_type": "io_parallel",
        "compress.enabled": True,
        "compress.density": {"ip1": 0.1, "ip2": 0.2, "ip3": 0.5},
        "compress.iterations": 2,
        "compress.retrain_epochs": 1,
        "compress.share_epochs": 1,
        "compress.fc_bits": 4,
        "quant.fc_weight_bits": 4,
        "csim.samples": 60,
    }
    return out, run_build("lenet300_100", "pynq-z2", overrides)


def test_compressed_build_reports_every_stage(compressed_build):
    out, report = compressed_build
    comp = report["compression"]
    assert {"ratio", "bytes_float", "bytes_compressed", "stages", "layers"} <= set(comp)
    assert [s["stage"] for s in comp["stages"]] == [
        "float",
        "pruned",
        "shared",
        "huffman",
        "hardware QAT",
        "C simulation",
    ]
    assert comp["bytes_compressed"] == (out / "model.bundle").stat().st_size
    assert comp["ratio"] == pytest.approx(comp["bytes_float"] / comp["bytes_compressed"])
    sizes = [s["bytes"] for s in comp["stages"][:4]]
    assert sizes == sorted(sizes, reverse=True)  # every storage stage is smaller than the one before
    for layer in comp["layers"]:
        assert {"total", "active", "pruned", "threshold", "bytes_float", "bytes_huffman"} <= set(layer)
    md = (out / "report.md").read_text()
    assert "## Compression (Deep Compression)" in md and "threshold (q x std)" in md
    for plot in ("weights.png", "sparsity.png", "accuracy_stages.png"):
        assert (out / "plots" / plot).stat().st_size > 1000


def test_bundle_decodes_to_the_shared_weights(compressed_build):
    out, _ = compressed_build
    state = torch.load(out / "model" / "shared.pt", weights_only=True)
    decoded = read_bundle(out / "model.bundle")
    for name, (weight, bias) in decoded.items():
        np.testing.assert_array_equal(weight, state[f"{name}.weight"].numpy() + 0.0)
        np.testing.assert_array_equal(bias, state[f"{name}.bias"].numpy())


def test_hardware_model_keeps_sparsity_and_bit_width(compressed_build):
    out, report = compressed_build
    steps = json.loads((out / "steps.json").read_text())["steps"]
    qat_layers = {lay["name"]: lay for lay in steps["qat"]["metrics"]["layers"]}
    for layer in report["compression"]["layers"]:
        hw = qat_layers[layer["name"]]
        assert hw["distinct_values"] <= 2**4  # QAT at the weight-sharing width
        assert hw["active"] <= layer["active"]  # pruned weights stay pruned in hardware
    assert report["csim"]["bit_exact_fraction"] == 1.0
