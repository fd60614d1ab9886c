"""The fit search chooses distributed arithmetic per layer (issue 11): it converts the design as it is,
with sparse kernels, with DA on every candidate and with DA only where da4ml's adders are cheaper than
the layer without DA, and keeps the best by the objective. Checked on the test-size lenet5_fire build
(its convs have few nonzero weights) against the same build with `hls.da=off`, and on the selection
rules themselves."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from flows.api import run_build
from flows.hardware import FitOutcome
from flows.variants import cheaper_as_da, choose_design, fit_with_kernels
from tests.conftest import SMALL, copy_build

pytest.importorskip("da4ml")

BOARD = SimpleNamespace(
    name="pynq-z2", resources={"LUT": 100.0, "FF": 100.0, "DSP": 10.0, "BRAM36": 10.0, "URAM": 0.0}
)


def _outcome(layers: dict[str, float], ii: int = 10, fits: bool = True) -> FitOutcome:
    zero = {"FF": 0.0, "DSP": 0.0, "BRAM36": 0.0, "URAM": 0.0}
    rows = [SimpleNamespace(name=n, resources={"LUT": lut, **zero}) for n, lut in layers.items()]
    total = {"LUT": sum(layers.values()), **zero}
    est = SimpleNamespace(layers=rows, resources=total, ii_cycles=ii)
    return FitOutcome("io_stream", {}, est, True, "", fits)


def test_da_only_where_it_is_cheaper_than_the_layer_without_it():
    with_da = _outcome({"conv": 5.0, "fc": 40.0})
    without = _outcome({"conv": 20.0, "fc": 10.0})
    settings = {"conv": {"Strategy": "distributed_arithmetic"}, "fc": {"Strategy": "distributed_arithmetic"}}
    assert cheaper_as_da(with_da, without, settings, BOARD) == {"conv": settings["conv"]}


def test_choose_design_ranks_fit_then_objective():
    """area: the smallest design that keeps the fastest fitting variant's interval (or the target's: the rule
    of area recovery); latency: the fastest. A design that does not fit never wins while one fits."""
    small_slow = _outcome({"a": 30.0}, ii=1000)
    big_fast = _outcome({"a": 60.0}, ii=100)
    mid_fast = _outcome({"a": 45.0}, ii=100)
    too_big = _outcome({"a": 500.0}, ii=10, fits=False)
    variants = {"small": small_slow, "big": big_fast, "mid": mid_fast, "no fit": too_big}
    assert choose_design(variants, BOARD, "area") is mid_fast
    assert choose_design(variants, BOARD, "area", target_ii=1000) is small_slow  # the target allows the slow one
    assert choose_design(variants, BOARD, "latency") is mid_fast
    assert choose_design({"small": small_slow, "big": big_fast}, BOARD, "latency") is big_fast


def test_sparse_layers_are_paced_to_their_own_designs_interval():
    """lenet5's shape: its convs set a 17,000-cycle interval unless DA makes them one pixel per clock (829).
    Pacing the sparse layer to the slow design's interval must not leak into the fast design: the chosen
    design keeps 829 cycles (it did not: the area objective took the sparse+DA design paced to 17,000)."""

    def fit(extra: dict) -> FitOutcome:
        conv_da = "conv" in extra
        cycles = extra.get("fc", {}).get("SparseCycles")
        sparse = "fc" in extra
        ii = max(829 if conv_da else 17000, cycles + 10 if cycles else 802)
        fc_lut = (5.0 if cycles else 10.0) if sparse else 50.0
        return _outcome({"conv": 20.0 if conv_da else 30.0, "fc": fc_lut}, ii=ii)

    sparse = {"fc": {"Strategy": "sparse"}}
    da = {"conv": {"Strategy": "distributed_arithmetic"}}
    chosen = fit_with_kernels(fit, sparse, da, BOARD, "area", {"fc": (800, 500)})
    assert chosen.estimate.ii_cycles == 829
    assert "SparseCycles" not in chosen.layer_settings["fc"] and "conv" in chosen.layer_settings
    slow = fit_with_kernels(fit, sparse, {}, BOARD, "area", {"fc": (800, 500)})  # no DA: pacing pays
    assert slow.layer_settings["fc"]["SparseCycles"] == 17000 - 500 - 8 and slow.estimate.ii_cycles == 17000


@pytest.fixture(scope="module")
def da_off(fire_stream_build, tmp_path_factory):
    out, _ = fire_stream_build
    copy = copy_build(out, tmp_path_factory.mktemp("da_off") / "build")
    return run_build("lenet5_fire", "pynq-z2", {**SMALL, "out_dir": str(copy), "hls.da": "off"})


def _share(report: dict) -> float:
    res = report["resources"]
    return sum(res[k] / res["budget"][k] for k in ("LUT", "FF", "DSP", "BRAM36") if res["budget"].get(k))


def test_auto_da_is_never_worse_than_none_and_is_labelled(fire_stream_build, da_off):
    _, auto = fire_stream_build
    assert _share(auto) <= _share(da_off) + 1e-9  # the objective (area) at the same or a better II
    assert auto["latency"]["ii"] <= da_off["latency"]["ii"]
    assert not any(row.get("da") for row in da_off["hls_layers"])
    da_rows = [row for row in auto["hls_layers"] if row.get("da")]
    for row in da_rows:
        assert row["da"]["source"] == "da4ml" and row["da"]["LUT"] > 0 and row["strategy"] == "distributed_arithmetic"
    if da_rows:
        assert "distributed arithmetic for" in auto["resources"]["fit"]["explanation"]
    assert auto["csim"]["bit_exact_fraction"] == da_off["csim"]["bit_exact_fraction"] == 1.0
