"""The flow picks the sparse weight-shared kernel where pruning left few weights, and only there
(issue 11: the fit search prefers the sparse kernel when density is low; same network pruned vs dense)."""

from __future__ import annotations

import pytest

from flows.api import run_build
from tests.conftest import SMALL

LENET300 = {
    **SMALL,
    "train.epochs": 2,
    "train.qat_epochs": 1,
    "csim.samples": 60,
    "hls.require_fit": False,
    "quant.weight_bits": 4,
}
PRUNED = {
    "compress.enabled": True,
    "compress.iterations": 1,
    "compress.retrain_epochs": 1,
    "compress.share_epochs": 1,
    "compress.density": {"ip1": 0.07, "ip2": 0.08, "ip3": 0.25},
    "compress.fc_bits": 4,
}


@pytest.fixture(scope="module")
def pruned_and_dense(tmp_path_factory):
    out = tmp_path_factory.mktemp("sparse_fit")
    pruned = run_build("lenet300_100", "pynq-z2", {**LENET300, **PRUNED, "out_dir": str(out / "pruned")})
    dense = run_build("lenet300_100", "pynq-z2", {**LENET300, "out_dir": str(out / "dense")})
    return pruned, dense


def _sparse_layers(report: dict) -> dict[str, dict]:
    return {row["name"]: row["sparse"] for row in report["hls_layers"] if row.get("sparse")}


def test_pruned_dense_layers_get_the_sparse_kernel_and_stay_bit_exact(pruned_and_dense):
    pruned, _ = pruned_and_dense
    sparse = _sparse_layers(pruned)
    assert {"Dense_MatMul_0", "Dense_MatMul_1"} <= set(sparse)
    assert all(s["pes"] >= 1 for s in sparse.values())
    assert pruned["csim"]["bit_exact_fraction"] == 1.0
    assert "sparse weight-shared kernels" in pruned["resources"]["fit"]["explanation"]
    assert pruned["resources"]["source"] == "estimate"


def test_the_same_network_unpruned_keeps_hls4ml_dense_layers(pruned_and_dense):
    _, dense = pruned_and_dense
    assert _sparse_layers(dense) == {}
    assert dense["csim"]["bit_exact_fraction"] == 1.0


def test_hardware_follows_compression(pruned_and_dense):
    """The pruned network's design is smaller and not slower than the dense one's."""
    pruned, dense = pruned_and_dense
    assert pruned["resources"]["LUT"] < 0.5 * dense["resources"]["LUT"]
    assert pruned["latency"]["ii"] <= dense["latency"]["ii"]
