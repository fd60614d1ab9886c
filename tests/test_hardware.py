"""Hardware figures in the build: estimates labelled as such, the fit to the board, exact accumulator
types, FIFO sizing, the AXI wrapper pipelining, and real synthesis (a stand-in vivado_hls on PATH)."""

from __future__ import annotations

import json
import os
import stat
import textwrap

import pytest

from flows.api import run_build
from flows.boards import load_board
from flows.errors import DoesNotFitError, ToolError
from flows.estimator import EXPECTED_ERROR
from flows.hardware import find_hls_tool, fit_design
from flows.hls_passes import fifo_depth_for
from flows.precision import FixedType, accumulator_bounds, exact_type, parse_fixed
from tests.conftest import SMALL, copy_build


def test_report_carries_estimates_with_their_source(fire_stream_build):
    out, report = fire_stream_build
    res, lat = report["resources"], report["latency"]
    assert res["source"] == "estimate" and lat["source"] == "estimate"
    for k in ("LUT", "FF", "DSP", "BRAM36", "URAM"):
        assert res[k] >= 0 and res["budget"][k] == load_board("pynq-z2").resources[k]
        assert res["utilization"][k] == pytest.approx(res[k] / res["budget"][k] if res["budget"][k] else 0.0)
    assert res["fits"] is True
    assert lat["images_per_second"] == pytest.approx(1e9 / (lat["ii"] * lat["clock_period_ns"]))
    md = (out / "report.md").read_text()
    assert "source: analytical estimate" in md and "images/s" in md
    assert (out / "plots" / "utilization.png").stat().st_size > 1000
    # the estimate says how far off it typically is, for the tool the board's backend runs
    expected = res["expected_error"]
    assert expected["tool"] == "vivado_hls" and expected["median_abs_rel_error"] == EXPECTED_ERROR["vivado_hls"]
    assert f"FF {100 * EXPECTED_ERROR['vivado_hls']['FF']:.0f}%" in md and "Typical error" in md


def test_project_uses_exact_accumulators_srl_fifos_and_pipelined_axi(fire_stream_build):
    out, _ = fire_stream_build
    defines = (out / "hls4ml_prj/firmware/defines.h").read_text()
    wide = [line for line in defines.splitlines() if "ap_fixed<33" in line]
    assert not [line for line in wide if "conv" in line.lower()]  # int32 biases no longer size the convs
    assert "ap_fixed<33" not in next(line for line in defines.splitlines() if "dense_matmul_0_accum_t" in line.lower())
    assert "bn_Add" not in defines  # the Dense bias stays folded into the Dense layer
    top = (out / "hls4ml_prj/firmware/myproject.cpp").read_text()
    assert "core=FIFO_SRL" in top
    axi = (out / "hls4ml_prj/firmware/myproject_axi.cpp").read_text()
    assert axi.count("#pragma HLS PIPELINE II=1") == 2


def test_fifo_depth_rule():
    assert fifo_depth_for((24, 24, 16), 576) == 2 * 26 + 16
    assert fifo_depth_for((3, 3, 8), 9) == 9  # never deeper than hls4ml's whole-image default
    assert fifo_depth_for((10,), 1) == 1


def test_exact_type_covers_the_range_and_nothing_more():
    t = exact_type(-3.5, 5.25, frac=2)
    assert t.min <= -3.5 and t.max >= 5.25
    assert not (FixedType(True, t.width - 1, t.integer - 1).max >= 5.25)  # one bit less would overflow
    assert parse_fixed("ufixed<8,0,RND_CONV,SAT,0>") == FixedType(False, 8, 0)
    w = [[0.5, -0.25], [-1.0, 0.75]]  # 2 inputs x 2 outputs
    import numpy as np

    lo, hi = accumulator_bounds(np.array(w), np.array([0.125, 0.0]), FixedType(False, 8, 0))
    x_max = 255 / 256
    assert hi == pytest.approx(0.75 * x_max)  # output 1: only its positive weight 0.75 at full input
    assert lo == pytest.approx(0.125 - 1.0 * x_max)  # output 0: bias plus its negative weight


class _Est:
    def __init__(self, fits):
        self._fits = fits

    def fits(self, budget):
        return self._fits


def test_fit_design_returns_the_smallest_design_with_the_explanation(monkeypatch):
    import flows.hardware as hw
    from flows.estimator import FitResult

    board = load_board("pynq-z2")
    monkeypatch.setattr(hw, "estimate_model", lambda *a: ([], _Est(False)))
    monkeypatch.setattr(
        "flows.hardware.fit_to_budget",
        lambda *a, **k: FitResult(
            False, {}, _Est(False), [], {}, f"BRAM36 needs 300 but the budget is 140 ({k['io_type']})"
        ),
    )
    outcome = fit_design(lambda io, s: object(), board, 10.0, "io_stream", True, True)
    assert not outcome.fits and outcome.io_type == "io_stream"  # the configured io type's smallest design
    assert "does not fit pynq-z2" in outcome.explanation and "BRAM36 needs 300" in outcome.explanation
    assert "(io_stream)" in outcome.explanation and "(io_parallel)" in outcome.explanation


def _slack_design(monkeypatch):
    """A stream design whose classifier has slack (the conv sets the II), seen through fit_design."""
    import flows.hardware as hw
    from flows.estimator import estimate_design
    from tests.test_estimate import stream_design_with_slack

    specs = stream_design_with_slack()
    monkeypatch.setattr(
        hw, "estimate_model", lambda hls_model, board, clk, io, pipe: (specs, estimate_design(specs, clk, io))
    )
    return specs


def test_fit_design_area_objective_raises_reuse_where_there_is_slack(monkeypatch):
    _slack_design(monkeypatch)
    board = load_board("pynq-z2")
    fast = fit_design(lambda io, s: object(), board, 10.0, "io_stream", False, True, objective="latency")
    small = fit_design(lambda io, s: object(), board, 10.0, "io_stream", False, True, objective="area")
    assert fast.fits and small.fits
    assert small.estimate.ii_cycles <= fast.estimate.ii_cycles
    assert small.estimate.resources["LUT"] < 0.5 * fast.estimate.resources["LUT"]
    assert small.layer_settings["fc"]["ReuseFactor"] > 18 and small.layer_settings["conv"]["ReuseFactor"] == 1
    assert "Area recovery" in small.explanation
    pinned = fit_design(lambda io, s: object(), board, 10.0, "io_stream", False, True, objective="area", pinned=("fc",))
    assert pinned.layer_settings["fc"] == fast.layer_settings["fc"]  # the fit's choice; area recovery left it
    off = fit_design(lambda io, s: object(), board, 10.0, "io_stream", False, False, objective="area")
    assert off.layer_settings == {}  # hls.fit=false: the configuration is kept as it is


def test_fit_design_unreachable_target_keeps_the_fastest_fit(monkeypatch, caplog):
    _slack_design(monkeypatch)
    board = load_board("pynq-z2")
    outcome = fit_design(lambda io, s: object(), board, 10.0, "io_stream", False, True, objective="area", target_ii=10)
    assert outcome.fits and "cannot be reached" in outcome.explanation
    assert "target rate needs an II of 10 cycles" in caplog.text


def test_target_rate_trades_throughput_for_area_and_stays_bit_exact(fire_stream_build, tmp_path):
    src, report = fire_stream_build
    fast_ii = report["latency"]["ii"]
    target = report["latency"]["images_per_second"] / 4  # a quarter of the rate the board allows
    out = copy_build(src, tmp_path / "slow")
    slow = run_build("lenet5_fire", "pynq-z2", {**SMALL, "out_dir": str(out), "hls.target_images_per_second": target})
    assert fast_ii < slow["latency"]["ii"] <= 4 * fast_ii + 1
    assert slow["latency"]["images_per_second"] >= target * 0.999
    assert slow["resources"]["LUT"] < report["resources"]["LUT"]
    assert "Area recovery at II <=" in slow["resources"]["fit"]["explanation"]
    assert slow["csim"]["bit_exact_fraction"] == 1.0  # the new reuse factors keep the numbers


def test_design_that_cannot_fit_fails_after_a_complete_report(tmp_path):
    out = tmp_path / "huge"
    overrides = {
        **SMALL,
        "out_dir": str(out),
        "arch.stem_channels": 48,
        "arch.expand": [128, 128],
        "train.epochs": 1,
        "train.qat_epochs": 1,
        "csim.samples": 10,
    }
    with pytest.raises(DoesNotFitError, match="does not fit arty-a7-35t"):
        run_build("lenet5_fire", "arty-a7-35t", overrides)
    report = json.loads((out / "report.json").read_text())
    assert report["resources"]["fits"] is False and report["csim"]["bit_exact_fraction"] == 1.0
    assert "Fits: **no**" in (out / "report.md").read_text()


def test_too_big_model_gets_reuse_factors_chosen(tmp_path):
    """A Fire net too big for an Arty A7-35T at reuse factor 1 must be made to fit by the search."""
    out = tmp_path / "arty"
    overrides = {
        **SMALL,
        "out_dir": str(out),
        "arch.stem_channels": 8,
        "arch.expand": [16, 16],
        "train.epochs": 1,
        "train.qat_epochs": 1,
        "csim.samples": 20,
    }
    report = run_build("lenet5_fire", "arty-a7-35t", overrides)
    res = report["resources"]
    assert res["fits"] and res["fit"]["searched"]
    assert any(v["ReuseFactor"] > 1 for v in res["fit"]["layer_settings"].values())
    assert report["csim"]["bit_exact_fraction"] == 1.0  # the chosen reuse factors keep the numbers


FAKE_CSYNTH = """<profile>
<ReportVersion><Version>2019.2</Version></ReportVersion>
<UserAssignments><unit>ns</unit><ProductFamily>zynq</ProductFamily><Part>xc7z020-clg400-1</Part>
<TopModelName>{top}</TopModelName><TargetClockPeriod>10.00</TargetClockPeriod><ClockUncertainty>1.25</ClockUncertainty>
</UserAssignments>
<PerformanceEstimates><PipelineType>dataflow</PipelineType>
<SummaryOfTimingAnalysis><unit>ns</unit><EstimatedClockPeriod>8.1</EstimatedClockPeriod></SummaryOfTimingAnalysis>
<SummaryOfOverallLatency><unit>clock cycles</unit><Best-caseLatency>1500</Best-caseLatency>
<Average-caseLatency>1500</Average-caseLatency><Worst-caseLatency>1500</Worst-caseLatency>
<Interval-min>800</Interval-min><Interval-max>800</Interval-max></SummaryOfOverallLatency>
</PerformanceEstimates>
<AreaEstimates><Resources><BRAM_18K>20</BRAM_18K><DSP48E>4</DSP48E><FF>12000</FF><LUT>23456</LUT><URAM>0</URAM>
</Resources><AvailableResources><BRAM_18K>280</BRAM_18K><DSP48E>220</DSP48E><FF>106400</FF><LUT>53200</LUT>
<URAM>0</URAM></AvailableResources></AreaEstimates>
</profile>
"""


@pytest.fixture
def fake_vivado_hls(tmp_path, monkeypatch):
    """A stand-in `vivado_hls` that writes csynth reports the way Vivado HLS lays them out."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    script = bindir / "vivado_hls"
    xml = FAKE_CSYNTH.replace("\n", "\\n")
    script.write_text(
        textwrap.dedent(f"""\
        #!/usr/bin/env python3
        import sys
        from pathlib import Path
        assert sys.argv[1:3] == ["-f", "build_prj.tcl"] and "synth=1" in sys.argv[3], sys.argv
        rep = Path("myproject_prj/solution1/syn/report")
        rep.mkdir(parents=True, exist_ok=True)
        for top in ("myproject", "myproject_axi"):
            (rep / f"{{top}}_csynth.xml").write_text("{xml}".format(top=top))
        print("fake vivado_hls done")
        """)
    )
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ['PATH']}")
    return script


def test_synth_reads_real_reports_and_labels_them(fire_stream_build, tmp_path, fake_vivado_hls):
    src, _ = fire_stream_build
    out = copy_build(src, tmp_path / "synth")
    report = run_build("lenet5_fire", "pynq-z2", {**SMALL, "out_dir": str(out), "hls.synth": True})
    res, lat = report["resources"], report["latency"]
    assert res["source"] == "vivado" and lat["source"] == "vivado"
    assert (res["LUT"], res["FF"], res["DSP"], res["BRAM36"]) == (23456, 12000, 4, 10.0)  # 20 BRAM_18K = 10 x 36Kb
    assert (lat["cycles"], lat["ii"]) == (1500, 800)
    assert report["estimate"]["resources"]["source"] == "estimate"  # kept beside, labelled, never mixed
    assert "Vivado HLS synthesis report" in (out / "report.md").read_text()
    steps = json.loads((out / "steps.json").read_text())["steps"]
    assert steps["train"]["skipped"] and not steps["synth"]["skipped"]


def test_synth_without_tools_is_a_clear_error(fire_stream_build, tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # nothing on PATH
    assert find_hls_tool("VivadoAccelerator") is None and find_hls_tool("Vitis") is None
    src, _ = fire_stream_build
    out = copy_build(src, tmp_path / "nosynth")
    monkeypatch.setenv("PATH", os.defpath)
    import shutil

    if shutil.which("vivado_hls"):
        pytest.skip("a real vivado_hls is installed")
    with pytest.raises(ToolError, match="--synth needs vivado_hls"):
        run_build("lenet5_fire", "pynq-z2", {**SMALL, "out_dir": str(out), "hls.synth": True})


def test_report_cli_shows_a_build_folders_estimate(fire_stream_build, capsys):
    from flows.report import main

    out, report = fire_stream_build
    assert main([str(out)]) == 0
    text = capsys.readouterr().out
    assert "source 'estimate'" in text and f"{report['latency']['ii']:.0f} cycles" in text
    assert main([str(out), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["resources"]["source"] == "estimate"
