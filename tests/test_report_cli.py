"""Tests for the report CLI (flows/report.py): table and JSON output, errors, script mode.

Synthetic projects are built in tmp_path; the real reports in `<repo>/../shared/reports` are used
when present (skipped otherwise).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from flows.errors import UsageError
from flows.hlsreport import load_project_reports
from flows.report import format_report, main

REPO = Path(__file__).resolve().parents[1]
REPORTS = Path(__file__).resolve().parents[2] / "shared" / "reports"

CSYNTH_XML = """<profile>
<ReportVersion><Version>2020.1</Version></ReportVersion>
<UserAssignments><unit>ns</unit><Part>xc7z020-clg400-1</Part><TopModelName>{top}</TopModelName>
<TargetClockPeriod>10.00</TargetClockPeriod><ClockUncertainty>1.25</ClockUncertainty></UserAssignments>
<PerformanceEstimates><PipelineType>dataflow</PipelineType>
<SummaryOfTimingAnalysis><unit>ns</unit><EstimatedClockPeriod>8.518</EstimatedClockPeriod></SummaryOfTimingAnalysis>
<SummaryOfOverallLatency><Best-caseLatency>14121</Best-caseLatency><Worst-caseLatency>14182</Worst-caseLatency>
<Interval-min>4705</Interval-min><Interval-max>14113</Interval-max></SummaryOfOverallLatency></PerformanceEstimates>
<AreaEstimates>
<Resources><BRAM_18K>45</BRAM_18K><DSP48E>76</DSP48E><FF>16975</FF><LUT>25632</LUT><URAM>0</URAM></Resources>
<AvailableResources><BRAM_18K>280</BRAM_18K><DSP48E>220</DSP48E><FF>106400</FF><LUT>53200</LUT><URAM>0</URAM>
</AvailableResources></AreaEstimates></profile>
"""

CSYNTH_RPT = """== Vivado HLS Report for 'myproject'
* Version:        2020.1 (Build 2897737 on Wed May 27 20:21:37 MDT 2020)
* Target device:  xc7z020-clg400-1

================================================================
== Performance Estimates
================================================================
    |  Clock |  Target  | Estimated| Uncertainty|
    |ap_clk  | 10.00 ns | 8.518 ns |   1.25 ns  |
+ Latency:
    |   min   |   max   |    min   |    max   | min | max |   Type   |
    |    14121|    14182| 0.141 ms | 0.142 ms |  4705|  14113| dataflow |

================================================================
== Utilization Estimates
================================================================
|       Name      | BRAM_18K| DSP48E|   FF   |  LUT  | URAM|
|Total            |       45|     76|   16975|  25632|    0|
|Available        |      280|    220|  106400|  53200|    0|
"""

UTIL_RPT = """| Tool Version : Vivado v.2020.1 (lin64) Build 2902540 Wed May 27 19:54:35 MDT 2020
| Command      : report_utilization -file vivado_synth.rpt
| Design       : myproject
| Device       : 7z020clg400-1
| Design State : Synthesized

+----------------------------+-------+-------+-----------+-------+
|          Site Type         |  Used | Fixed | Available | Util% |
+----------------------------+-------+-------+-----------+-------+
| Slice LUTs*                |  9964 |     0 |     53200 | 18.73 |
| Slice Registers            | 10881 |     0 |    106400 | 10.23 |
+----------------------------+-------+-------+-----------+-------+

+-------------------+------+-------+-----------+-------+
|     Site Type     | Used | Fixed | Available | Util% |
+-------------------+------+-------+-----------+-------+
| Block RAM Tile    |    4 |     0 |       140 |  2.86 |
|   RAMB36/FIFO*    |    0 |     0 |       140 |  0.00 |
|   RAMB18          |    8 |     0 |       280 |  2.86 |
+-------------------+------+-------+-----------+-------+

+----------------+------+-------+-----------+-------+
|    Site Type   | Used | Fixed | Available | Util% |
+----------------+------+-------+-----------+-------+
| DSPs           |   76 |     0 |       220 | 34.55 |
+----------------+------+-------+-----------+-------+
"""


def make_project(root: Path, axi: bool = False, truncate_xml: bool = False, rpt: bool = True) -> Path:
    """A minimal hls4ml project tree with top-level reports, a decoy per-module report and vivado_synth.rpt."""
    rep = root / "myproject_prj" / "solution1" / "syn" / "report"
    rep.mkdir(parents=True)
    xml = CSYNTH_XML.format(top="myproject")
    (rep / "myproject_csynth.xml").write_text(xml[:200] if truncate_xml else xml)
    if rpt:
        (rep / "myproject_csynth.rpt").write_text(CSYNTH_RPT)
    (rep / "dense_array_config2_csynth.xml").write_text(CSYNTH_XML.format(top="dense_array_config2"))
    if axi:
        (rep / "myproject_axi_csynth.xml").write_text(CSYNTH_XML.format(top="myproject_axi"))
    (root / "vivado_synth.rpt").write_text(UTIL_RPT)
    return root


def test_table(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    proj = make_project(tmp_path / "proj", axi=True)
    assert main([str(proj)]) == 0
    out = capsys.readouterr().out
    assert "HLS myproject  [Vivado HLS 2020.1, xc7z020-clg400-1]" in out
    assert "HLS myproject_axi" in out
    assert "dense_array_config2" not in out
    assert "14121 .. 14182 cycles" in out and "4705 .. 14113 cycles" in out
    assert "estimated 8.518 ns (117.4 MHz), met" in out
    assert "48.2%" in out  # LUT 25632 / 53200
    assert "22.5" in out  # BRAM36 = 45 BRAM_18K / 2
    assert "* synth: HLS IP, Vivado synthesis" in out
    assert "LUT 9964 (18.7%)" in out and "BRAM36 4 (2.9%)" in out and "URAM -" in out


def test_json(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    proj = make_project(tmp_path / "proj")
    assert main([str(proj), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert [h["label"] for h in data["hls"]] == ["myproject"]
    hls = data["hls"][0]
    assert (hls["tool"], hls["format"], hls["lut"]) == ("vivado", "xml", 25632)
    assert (hls["bram_18k"], hls["bram36"]) == (45, 22.5)
    assert hls["available_resources"] == {"LUT": 53200, "FF": 106400, "DSP": 220, "BRAM36": 140, "URAM": 0}
    assert hls["utilization_pct"]["DSP"] == pytest.approx(100 * 76 / 220)
    assert hls["file"] == "myproject_prj/solution1/syn/report/myproject_csynth.xml"
    util = data["utilization"][0]
    assert (util["role"], util["lut"], util["bram36"], util["uram"]) == ("synth", 9964, 4, None)
    assert data["preferred_utilization"] == "vivado_synth.rpt"
    assert data["warnings"] == []


def test_load_project_reports_is_the_cli_data(tmp_path: Path) -> None:
    proj = make_project(tmp_path / "proj")
    data = load_project_reports(proj)
    assert set(data) == {"root", "hls", "utilization", "preferred_utilization", "warnings"}
    assert "Project:" in format_report(data)
    json.dumps(data)  # JSON-serialisable as is


def test_single_report_file(tmp_path: Path) -> None:
    proj = make_project(tmp_path / "proj")
    data = load_project_reports(proj / "vivado_synth.rpt")
    assert data["hls"] == [] and data["utilization"][0]["dsp"] == 76
    data = load_project_reports(proj / "myproject_prj/solution1/syn/report/myproject_csynth.rpt")
    assert data["hls"][0]["format"] == "rpt" and data["hls"][0]["interval_max"] == 14113


def test_truncated_xml_falls_back_to_rpt(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    proj = make_project(tmp_path / "proj", truncate_xml=True)
    assert main([str(proj), "--json"]) == 0
    captured = capsys.readouterr()
    data = json.loads(captured.out)
    assert data["hls"][0]["format"] == "rpt" and data["hls"][0]["fallback_used"] is True
    assert "truncated or malformed XML" in data["warnings"][0]


def _assert_one_line_error(err: str, *words: str) -> None:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("error: ")
    assert "Traceback" not in err
    for w in words:
        assert w in lines[0]


def test_truncated_xml_without_fallback_is_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    proj = make_project(tmp_path / "proj", truncate_xml=True, rpt=False)
    assert main([str(proj)]) == 2
    _assert_one_line_error(capsys.readouterr().err, "myproject_csynth.xml", "truncated or malformed XML")


def test_missing_dir_is_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main([str(tmp_path / "nope")]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    _assert_one_line_error(captured.err, "nope", "does not exist")


def test_no_reports_is_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    (tmp_path / "empty").mkdir()
    assert main([str(tmp_path / "empty")]) == 2
    _assert_one_line_error(capsys.readouterr().err, "no reports found", "_csynth.xml")
    with pytest.raises(UsageError):
        load_project_reports(tmp_path / "empty")


def test_non_report_file_is_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    path = tmp_path / "notes.rpt"
    path.write_text("hello\n")
    assert main([str(path)]) == 2
    _assert_one_line_error(capsys.readouterr().err, "notes.rpt", "not a known report")


def test_runs_as_a_script(tmp_path: Path) -> None:
    """`python flows/report.py DIR` works from any directory (no install, no PYTHONPATH)."""
    proj = make_project(tmp_path / "proj")
    env_cwd = tmp_path  # not the repo root
    ok = subprocess.run(
        [sys.executable, str(REPO / "flows" / "report.py"), str(proj), "--json"],
        cwd=env_cwd,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout)["hls"][0]["top"] == "myproject"
    bad = subprocess.run(
        [sys.executable, str(REPO / "flows" / "report.py"), str(tmp_path / "missing")],
        cwd=env_cwd,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert bad.returncode == 2
    _assert_one_line_error(bad.stderr, "does not exist")


# ------------------------------------------------------------------------------------------
# Real reports
# ------------------------------------------------------------------------------------------

REAL_FOLDERS = sorted(p.name for p in REPORTS.iterdir() if p.is_dir()) if REPORTS.is_dir() else []


@pytest.fixture(scope="module")
def reports() -> Path:
    if not REPORTS.is_dir():
        pytest.skip(f"real reports folder {REPORTS} is absent")
    return REPORTS


@pytest.mark.skipif(not REAL_FOLDERS, reason="real reports folder ../shared/reports is absent")
@pytest.mark.parametrize("folder", REAL_FOLDERS)
def test_real_folder_json(folder: str, capsys: pytest.CaptureFixture) -> None:
    assert main([str(REPORTS / folder), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["hls"] and data["warnings"] == []
    for entry in data["utilization"]:
        assert entry["role"] != "wrapper_blackbox" or entry["is_empty"]
    if data["utilization"]:
        preferred = next(e for e in data["utilization"] if e["file"] == data["preferred_utilization"])
        assert not preferred["is_empty"]


def test_real_pynq_project_table(reports: Path, capsys: pytest.CaptureFixture) -> None:
    folder = reports / "Hector-Plata__hls4ml-tutorial__part7_jet_mlp_pynqz2"
    assert main([str(folder)]) == 0
    out = capsys.readouterr().out
    assert "HLS myproject  [Vivado HLS 2019.2, xc7z020-clg400-1]" in out
    assert "HLS myproject_axi" in out
    assert "* ip_ooc: HLS IP, out-of-context synthesis" in out
    assert "LUT 17267 (32.5%)" in out
    assert out.index("ip_ooc") < out.index("system_impl") < out.index("wrapper_blackbox")


def test_real_timing_miss_is_flagged(reports: Path, capsys: pytest.CaptureFixture) -> None:
    assert main([str(reports / "Berk-Bilgin__ML-fpga__encoder_conv1d_artix7")]) == 0
    out = capsys.readouterr().out
    assert "estimated 136.896 ns (7.3 MHz), MISSED" in out
    assert "174.9%" in out  # HLS LUT estimate over the part
