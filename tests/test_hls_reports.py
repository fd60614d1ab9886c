"""Tests for the report parsers (flows/hlsreport/): real reports from ../shared/reports and synthetic error cases.

The real reports are read in place from `<repo>/../shared/reports` (see its MANIFEST.md, whose
numbers the tables below repeat); those tests skip when the folder is absent. Synthetic snippets
for the format variants and the error cases are written inline.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from flows.errors import FlowError, ReportError, UsageError
from flows.hlsreport import (
    HLSReport,
    UtilizationReport,
    find_reports,
    parse_csynth,
    parse_csynth_instances,
    parse_csynth_rpt,
    parse_csynth_xml,
    parse_report,
    parse_utilization,
)

REPORTS = Path(__file__).resolve().parents[2] / "shared" / "reports"


@pytest.fixture(scope="module")
def reports() -> Path:
    if not REPORTS.is_dir():
        pytest.skip(f"real reports folder {REPORTS} is absent")
    return REPORTS


# ------------------------------------------------------------------------------------------
# MANIFEST summary table (HLS estimates)
# ------------------------------------------------------------------------------------------

PRJ_REPORT = "myproject_prj/solution1/syn/report"
FML = "fastmachinelearning__hls4ml-tutorial__"
CHI = "ChiRuiChen__AutoEncoder_hls4ml__denoise_ae_pynqz2"
HEC = "Hector-Plata__hls4ml-tutorial__part7_jet_mlp_pynqz2"
NIC = "nicologhielmetti__hls4ml-pynq__jet_mlp_rf64_pynqz2"
JET = "ArgyKokk__hls4ml_MLP_estimator__jet_tagging_mlp_sweep"
BC = "ArgyKokk__hls4ml_MLP_estimator__breast_cancer_mlp_sweep"
THI = "Thifjj__Iris_hls4ml_pynqZ2__iris_mlp_vitis_pynqz2"
U250, Z020, Z007S, A200T = "xcu250-figd2104-2L-e", "xc7z020-clg400-1", "xc7z007s-clg225-2", "xc7a200tl-ffg1156-2L"

AVAILABLE = {  # as the HLS reports give them (BRAM in 18 Kb units)
    U250: {"BRAM_18K": 5376, "DSP": 12288, "FF": 3456000, "LUT": 1728000, "URAM": 1280},
    Z020: {"BRAM_18K": 280, "DSP": 220, "FF": 106400, "LUT": 53200, "URAM": 0},
    Z007S: {"BRAM_18K": 100, "DSP": 66, "FF": 28800, "LUT": 14400, "URAM": 0},
    A200T: {"BRAM_18K": 730, "DSP": 740, "FF": 269200, "LUT": 134600, "URAM": 0},
}

# id, file, tool, version, top, part, clk target, clk est, lat min, lat max, II min, II max,
# BRAM_18K, DSP, FF, LUT, URAM
HLS_ROWS = [
    ("1", f"{FML}pruned_cnn/{PRJ_REPORT}/myproject_csynth.rpt", "vivado", "2020.1", "myproject", U250,
     5.0, 4.363, 1044, 1044, 1028, 1028, 100, 5414, 52549, 245466, 0),
    ("2", f"{FML}quantized_pruned_cnn/{PRJ_REPORT}/myproject_csynth.rpt", "vivado", "2020.1", "myproject", U250,
     5.0, 4.373, 1044, 1044, 1028, 1028, 100, 340, 43847, 263280, 0),
    ("3", f"seanlipps__ECE226_CoDesign__har_conv1d_vitis/{PRJ_REPORT}/myproject_csynth.xml", "vitis", "2024.1",
     "myproject", U250, 5.0, 3.530, 395, 395, 390, 390, 29, 467, 7123, 17966, 0),
    ("4", f"nrp-nautilus__6nrp-hls4ml__jet_mlp_vitis/{PRJ_REPORT}/myproject_csynth.xml", "vitis", "2022.2",
     "myproject", U250, 5.0, 3.636, 15, 15, 1, 1, 8, 2557, 24233, 116694, 0),
    ("5", f"pominiq__DNNonSilicon__mnist_cnn_stream_rf16/{PRJ_REPORT}/myproject_csynth.xml", "vivado", "2020.1",
     "myproject", Z020, 25.0, 21.192, 10250, 10250, 10195, 10195, 14, 42, 17532, 32975, 0),
    ("6", f"pominiq__DNNonSilicon__dense_rf1_noprune/{PRJ_REPORT}/myproject_csynth.xml", "vivado", "2020.1",
     "myproject", Z020, 25.0, 21.045, 5, 5, 1, 1, 3, 664, 2767, 29277, 0),
    ("7", f"pominiq__DNNonSilicon__cnn_stream_resource_rf8/{PRJ_REPORT}/myproject_csynth.xml", "vivado", "2020.1",
     "myproject", Z020, 10.0, 8.518, 14121, 14182, 4705, 14113, 45, 76, 16975, 25632, 0),
    ("8", f"{CHI}/{PRJ_REPORT}/myproject_csynth.xml", "vivado", "2019.2.1", "myproject", Z020,
     5.0, 4.429, 96014, 96165, 4625, 95949, 285, 118, 51414, 33365, 0),
    ("8a", f"{CHI}/{PRJ_REPORT}/myproject_axi_csynth.xml", "vivado", "2019.2.1", "myproject_axi", Z020,
     5.0, 4.429, 96019, 96170, 11266, 95949, 289, 118, 53257, 35689, 0),
    ("9", f"{HEC}/{PRJ_REPORT}/myproject_csynth.xml", "vivado", "2019.2", "myproject", Z020,
     5.0, 4.535, 52, 52, 15, 15, 4, 9, 17330, 33690, 0),
    ("9a", f"{HEC}/{PRJ_REPORT}/myproject_axi_csynth.xml", "vivado", "2019.2", "myproject_axi", Z020,
     5.0, 4.535, 92, 92, 93, 93, 4, 9, 20498, 40461, 0),
    ("10", f"{NIC}/cpp_nn_v2/{PRJ_REPORT}/myproject_csynth.xml", "vivado", "2019.2", "myproject", Z020,
     5.0, 6.982, 258, 258, 64, 64, 20, 21, 10771, 33085, 0),
    ("10a", f"{NIC}/cpp_nn_v2/{PRJ_REPORT}/myproject_axi_csynth.xml", "vivado", "2019.2", "myproject_axi", Z020,
     5.0, 6.982, 287, 287, 288, 288, 20, 21, 11873, 37975, 0),
    ("11", "Berk-Bilgin__ML-fpga__encoder_conv1d_artix7/Encoder_prj/solution1/syn/report/Encoder_csynth.xml",
     "vivado", "2020.1", "Encoder", A200T, 10.0, 136.896, 903, 913, 545, 885, 249, 800, 67242, 235367, 0),
    ("12", f"{THI}/projeto_iris_hls_ip_axi/{PRJ_REPORT}/myproject_csynth.xml", "vitis", "2025.1", "myproject", Z020,
     5.0, 3.624, 32, 32, 1, 1, 3, 110, 13240, 4725, 0),
    ("13-DSP_reuse1", f"{JET}/DSP_reuse1/{PRJ_REPORT}/myproject_csynth.xml", "vitis", "2021.1", "myproject", Z007S,
     3.33, 3.236, 58, 58, 1, 1, 5, 814, 85255, 72661, 0),
    ("13-DSP_reuse2", f"{JET}/DSP_reuse2/{PRJ_REPORT}/myproject_csynth.xml", "vitis", "2021.1", "myproject", Z007S,
     3.33, 3.236, 54, 54, 2, 2, 5, 796, 60582, 62431, 0),
    ("13-DSP_reuse100", f"{JET}/DSP_reuse100/{PRJ_REPORT}/myproject_csynth.xml", "vitis", "2021.1", "myproject",
     Z007S, 3.33, 4.098, 161, 161, 48, 48, 5, 36, 56681, 68412, 0),
    ("13-LUT_reuse1", f"{JET}/LUT_reuse1/{PRJ_REPORT}/myproject_csynth.xml", "vitis", "2021.1", "myproject", Z007S,
     3.33, 3.236, 58, 58, 1, 1, 5, 814, 85255, 72661, 0),
    ("13-LUT_reuse2", f"{JET}/LUT_reuse2/{PRJ_REPORT}/myproject_csynth.xml", "vitis", "2021.1", "myproject", Z007S,
     3.33, 7.947, 45, 45, 2, 2, 5, 0, 59259, 113294, 0),
    ("13-LUT_reuse100", f"{JET}/LUT_reuse100/{PRJ_REPORT}/myproject_csynth.xml", "vitis", "2021.1", "myproject",
     Z007S, 3.33, 7.947, 150, 150, 46, 46, 5, 0, 56654, 72123, 0),
    ("14-DSP_reuse1", f"{BC}/DSP_reuse1/{PRJ_REPORT}/myproject_csynth.xml", "vitis", "2021.1", "myproject", Z007S,
     5.0, 4.335, 22, 22, 1, 1, 2, 35, 1957, 2098, 0),
    ("14-DSP_reuse2", f"{BC}/DSP_reuse2/{PRJ_REPORT}/myproject_csynth.xml", "vitis", "2021.1", "myproject", Z007S,
     5.0, 4.335, 20, 20, 2, 2, 2, 34, 1635, 2108, 0),
    ("14-DSP_reuse100", f"{BC}/DSP_reuse100/{PRJ_REPORT}/myproject_csynth.xml", "vitis", "2021.1", "myproject",
     Z007S, 5.0, 4.670, 56, 56, 31, 31, 2, 5, 1721, 2668, 0),
    ("14-LUT_reuse1", f"{BC}/LUT_reuse1/{PRJ_REPORT}/myproject_csynth.xml", "vitis", "2021.1", "myproject", Z007S,
     5.0, 7.947, 20, 20, 1, 1, 2, 0, 1953, 4876, 0),
    ("14-LUT_reuse2", f"{BC}/LUT_reuse2/{PRJ_REPORT}/myproject_csynth.xml", "vitis", "2021.1", "myproject", Z007S,
     5.0, 7.947, 18, 18, 2, 2, 2, 0, 1632, 4824, 0),
    ("14-LUT_reuse100", f"{BC}/LUT_reuse100/{PRJ_REPORT}/myproject_csynth.xml", "vitis", "2021.1", "myproject",
     Z007S, 5.0, 7.947, 46, 46, 27, 27, 2, 0, 1730, 3558, 0),
]  # fmt: skip

# Where the .rpt beside an XML legitimately says something else (MANIFEST "Format variants").
RPT_DIFFERS = {
    "9a": {"interval_min": 92, "interval_max": 92},  # non-pipelined myproject_axi: rpt II = latency
    "10a": {"interval_min": 287, "interval_max": 287},
    "11": {"estimated_clock_ns": 137.0},  # printed as '0.137 us'
}


def _expected(row: tuple) -> dict:
    (_, _, tool, version, top, part, tgt, est, lmin, lmax, imin, imax, bram, dsp, ff, lut, uram) = row
    return dict(
        tool=tool, tool_version=version, top=top, part=part, target_clock_ns=tgt, estimated_clock_ns=est,
        latency_min=lmin, latency_max=lmax, interval_min=imin, interval_max=imax,
        bram_18k=bram, dsp=dsp, ff=ff, lut=lut, uram=uram,
    )  # fmt: skip


def _assert_report(report: HLSReport, expected: dict) -> None:
    for key, value in expected.items():
        got = getattr(report, key)
        if isinstance(value, float):
            assert got == pytest.approx(value), key
        else:
            assert got == value, key


@pytest.mark.parametrize("row", HLS_ROWS, ids=[r[0] for r in HLS_ROWS])
def test_manifest_hls_row(reports: Path, row: tuple) -> None:
    path = reports / row[1]
    report = parse_csynth(path)
    assert report.format == path.suffix[1:]
    _assert_report(report, _expected(row))
    assert report.available == AVAILABLE[row[5]]
    # BRAM units: 18 Kb as reported, 36 Kb for budgets (hls4ml's own reader mixes them up)
    assert report.bram36 == pytest.approx(row[12] / 2)
    assert report.resources()["BRAM36"] == pytest.approx(row[12] / 2)
    assert report.available_resources()["BRAM36"] == pytest.approx(AVAILABLE[row[5]]["BRAM_18K"] / 2)
    assert report.timing_met == (row[7] <= row[6])


RPT_ROWS = [r for r in HLS_ROWS if r[1].endswith(".xml")]


@pytest.mark.parametrize("row", RPT_ROWS, ids=[r[0] for r in RPT_ROWS])
def test_manifest_rpt_twin_agrees(reports: Path, row: tuple) -> None:
    """Every top-level XML has a .rpt twin; it gives the same figures except the known variants."""
    rpt = reports / row[1].replace("_csynth.xml", "_csynth.rpt")
    report = parse_csynth_rpt(rpt)
    assert report.format == "rpt"
    expected = _expected(row) | RPT_DIFFERS.get(row[0], {})
    _assert_report(report, expected)
    assert report.available == AVAILABLE[row[5]]


def test_rpt_available_slr_row_is_not_the_device_total(reports: Path) -> None:
    report = parse_csynth_rpt(reports / HLS_ROWS[0][1])
    assert report.available["LUT"] == 1728000  # not the 'Available SLR' 432000
    assert report.utilization_pct()["DSP"] == pytest.approx(100 * 5414 / 12288)


def test_vitis_tilde_zero_percentages(reports: Path) -> None:
    rpt = reports / "nrp-nautilus__6nrp-hls4ml__jet_mlp_vitis" / PRJ_REPORT / "myproject_csynth.rpt"
    report = parse_csynth_rpt(rpt)
    assert (report.tool, report.bram_18k, report.ff) == ("vitis", 8, 24233)


def test_solution_level_csynth_xml_is_a_copy_of_the_axi_top(reports: Path) -> None:
    report = parse_csynth_xml(reports / HEC / PRJ_REPORT / "csynth.xml")
    assert (report.top, report.lut, report.interval_max) == ("myproject_axi", 40461, 93)


def test_vitis_solution_summary_rpt_gives_a_clear_error(reports: Path) -> None:
    path = reports / "seanlipps__ECE226_CoDesign__har_conv1d_vitis" / PRJ_REPORT / "csynth.rpt"
    with pytest.raises(ReportError, match="Synthesis Summary Report.*<top>_csynth"):
        parse_csynth_rpt(path)


# ------------------------------------------------------------------------------------------
# MANIFEST "Vivado report_utilization numbers"
# ------------------------------------------------------------------------------------------

HEC_RUNS = f"{HEC}/myproject_vivado_accelerator/project_1.runs"
NIC_RUNS = f"{NIC}/dma_test_pynq_v2/dma_test_pynq.runs"
THI_RUNS = f"{THI}/vivado_project/iris_hardware/iris_hardware.runs"
SEAN = "seanlipps__ECE226_CoDesign__har_conv1d_vitis"
AV_U250 = {"LUT": 1728000, "FF": 3456000, "DSP": 12288, "BRAM36": 2688, "URAM": 1280}
AV_Z020 = {"LUT": 53200, "FF": 106400, "DSP": 220, "BRAM36": 140}
AV_A200 = {"LUT": 134600, "FF": 269200, "DSP": 740, "BRAM36": 365}

# id, file, Vivado, design, device, state, LUT, FF, BRAM tiles, RAMB36, RAMB18, DSP, URAM, available
UTIL_ROWS = [
    ("1", f"{FML}pruned_cnn/vivado_synth.rpt", "2020.1", "myproject", "xcu250figd2104-2L", "Synthesized",
     123948, 43435, 42, 0, 84, 5386, 0, AV_U250),
    ("2", f"{FML}quantized_pruned_cnn/vivado_synth.rpt", "2020.1", "myproject", "xcu250figd2104-2L", "Synthesized",
     118931, 30702, 34, 0, 68, 353, 0, AV_U250),
    ("3-synth", f"{SEAN}/vivado_synth.rpt", "2024.1", "myproject", "xcu250-figd2104-2L-e", "Optimized",
     8565, 4864, 12, 10, 4, 467, 0, AV_U250),
    ("3-routed", f"{SEAN}/vivado_utilization.rpt", "2024.1", "myproject", "xcu250-figd2104-2L-e", "Routed",
     7722, 4864, 12, 10, 4, 467, 0, AV_U250),
    ("5", "pominiq__DNNonSilicon__mnist_cnn_stream_rf16/vivado_synth.rpt", "2020.1", "myproject", "7z020clg400-1",
     "Synthesized", 19550, 15004, 5, 0, 10, 42, None, AV_Z020),
    ("6", "pominiq__DNNonSilicon__dense_rf1_noprune/vivado_synth.rpt", "2020.1", "myproject", "7z020clg400-1",
     "Synthesized", 47682, 2455, 1.5, 0, 3, 220, None, AV_Z020),
    ("7", "pominiq__DNNonSilicon__cnn_stream_resource_rf8/vivado_synth.rpt", "2020.1", "myproject", "7z020clg400-1",
     "Synthesized", 9964, 10881, 4, 0, 8, 76, None, AV_Z020),
    ("9-ip-ooc", f"{HEC_RUNS}/design_1_myproject_axi_0_0_synth_1/design_1_myproject_axi_0_0_utilization_synth.rpt",
     "2019.2", "design_1_myproject_axi_0_0", "7z020clg400-1", "Synthesized",
     17267, 17058, 2, 0, 4, 9, None, AV_Z020),
    ("9-placed", f"{HEC_RUNS}/impl_1/design_1_wrapper_utilization_placed.rpt", "2019.2", "design_1_wrapper",
     "7z020clg400-1", "Fully Placed", 19879, 20767, 7, 4, 6, 9, None, AV_Z020),
    ("9-wrapper", f"{HEC_RUNS}/synth_1/design_1_wrapper_utilization_synth.rpt", "2019.2", "design_1_wrapper",
     "7z020clg400-1", "Synthesized", 0, 0, 0, 0, 0, 0, None, AV_Z020),
    ("10-ip-ooc", f"{NIC_RUNS}/design_1_myproject_axi_0_3_synth_1/design_1_myproject_axi_0_3_utilization_synth.rpt",
     "2019.2", "design_1_myproject_axi_0_3", "7z020clg400-1", "Synthesized",
     15176, 14503, 2, 0, 4, 21, None, AV_Z020),
    ("10-placed", f"{NIC_RUNS}/impl_1/design_1_wrapper_utilization_placed.rpt", "2019.2", "design_1_wrapper",
     "7z020clg400-1", "Fully Placed", 17654, 18333, 5, 2, 6, 21, None, AV_Z020),
    ("10-wrapper", f"{NIC_RUNS}/synth_1/design_1_wrapper_utilization_synth.rpt", "2019.2", "design_1_wrapper",
     "7z020clg400-1", "Synthesized", 0, 0, 0, 0, 0, 0, None, AV_Z020),
    ("11", "Berk-Bilgin__ML-fpga__encoder_conv1d_artix7/vivado_synth.rpt", "2020.1", "Encoder", "7a200tlffg1156-2L",
     "Synthesized", 75367, 39644, 16.5, 0, 33, 740, None, AV_A200),
    ("12-synth", f"{THI_RUNS}/synth_1/design_1_wrapper_utilization_synth.rpt", "2025.1", "design_1_wrapper",
     "xc7z020clg400-1", "Synthesized", 3604, 5476, 1.5, 0, 3, 110, None, AV_Z020),
    ("12-placed", f"{THI_RUNS}/impl_1/design_1_wrapper_utilization_placed.rpt", "2025.1", "design_1_wrapper",
     "xc7z020clg400-1", "Fully Placed", 3455, 5126, 1.5, 0, 3, 110, None, AV_Z020),
]  # fmt: skip


@pytest.mark.parametrize("row", UTIL_ROWS, ids=[r[0] for r in UTIL_ROWS])
def test_manifest_utilization_row(reports: Path, row: tuple) -> None:
    (_, rel, version, design, device, state, lut, ff, bram, ramb36, ramb18, dsp, uram, available) = row
    report = parse_utilization(reports / rel)
    assert isinstance(report, UtilizationReport)
    assert report.source == "vivado"
    assert (report.tool_version, report.design, report.device, report.design_state) == (version, design, device, state)
    assert (report.lut, report.ff, report.dsp) == (lut, ff, dsp)
    assert report.bram36 == pytest.approx(bram)
    assert (report.ramb36, report.ramb18) == (ramb36, ramb18)
    assert report.uram == uram
    assert report.available == available
    assert report.is_empty == (lut == 0)
    assert parse_report(reports / rel) == report


# ------------------------------------------------------------------------------------------
# find_reports on the real trees
# ------------------------------------------------------------------------------------------


def test_find_both_tops_labelled(reports: Path) -> None:
    found = find_reports(reports / CHI)
    assert [(h.label, h.path.name) for h in found.hls] == [
        ("myproject", "myproject_csynth.xml"),
        ("myproject_axi", "myproject_axi_csynth.xml"),
    ]
    assert all(h.fallback is not None and h.fallback.suffix == ".rpt" for h in found.hls)
    assert found.utilization == []


def test_find_falls_back_to_rpt(reports: Path) -> None:
    found = find_reports(reports / f"{FML}pruned_cnn")
    assert [(h.top, h.path.name, h.fallback) for h in found.hls] == [("myproject", "myproject_csynth.rpt", None)]
    assert [(u.role, u.path.name) for u in found.utilization] == [("synth", "vivado_synth.rpt")]


def test_find_ignores_per_module_and_stale_reports(reports: Path) -> None:
    found = find_reports(reports / "pominiq__DNNonSilicon__mnist_cnn_stream_rf16")
    assert [h.path.name for h in found.hls] == ["myproject_csynth.xml"]


def test_find_custom_project_name(reports: Path) -> None:
    found = find_reports(reports / "Berk-Bilgin__ML-fpga__encoder_conv1d_artix7")
    assert [(h.top, h.path.name) for h in found.hls] == [("Encoder", "Encoder_csynth.xml")]


@pytest.mark.parametrize("folder,project", [(HEC, "."), (NIC, "cpp_nn_v2")])
def test_find_prefers_ip_ooc_over_blackbox_wrapper(reports: Path, folder: str, project: str) -> None:
    found = find_reports(reports / folder)
    assert [h.top for h in found.hls] == ["myproject", "myproject_axi"]
    assert {h.project for h in found.hls} == {project}
    assert [u.role for u in found.utilization] == ["ip_ooc", "system_impl", "wrapper_blackbox"]
    assert "_myproject_axi_0_" in found.utilization[0].path.name
    assert parse_utilization(found.utilization[-1].path).is_empty


def test_find_system_reports_without_ooc(reports: Path) -> None:
    found = find_reports(reports / "Thifjj__Iris_hls4ml_pynqZ2__iris_mlp_vitis_pynqz2")
    assert [h.label for h in found.hls] == ["projeto_iris_hls_ip_axi:myproject"]
    assert [u.role for u in found.utilization] == ["system_impl", "system_synth"]


def test_find_several_projects(reports: Path) -> None:
    found = find_reports(reports / JET)
    assert [h.label for h in found.hls] == [
        f"{v}:myproject"
        for v in ("DSP_reuse1", "DSP_reuse100", "DSP_reuse2", "LUT_reuse1", "LUT_reuse100", "LUT_reuse2")
    ]


def test_find_from_inside_the_prj_folder(reports: Path) -> None:
    found = find_reports(reports / HEC / "myproject_prj")
    assert [h.label for h in found.hls] == ["myproject", "myproject_axi"]


def test_every_real_folder_parses(reports: Path) -> None:
    folders = sorted(p for p in reports.iterdir() if p.is_dir())
    assert len(folders) == 14
    for folder in folders:
        found = find_reports(folder)
        assert found.hls, folder
        for h in found.hls:
            parse_csynth(h.path)
            if h.fallback:
                parse_csynth(h.fallback)
        for u in found.utilization:
            parse_utilization(u.path)


def test_truncated_real_xml(reports: Path, tmp_path: Path) -> None:
    text = (reports / HEC / PRJ_REPORT / "myproject_csynth.xml").read_text()
    cut = tmp_path / "myproject_csynth.xml"
    cut.write_text(text[: len(text) // 3])
    with pytest.raises(ReportError, match=r"myproject_csynth\.xml: truncated or malformed XML") as info:
        parse_csynth_xml(cut)
    _assert_no_parser_traceback(info.value)


# ------------------------------------------------------------------------------------------
# Synthetic format variants (no shared folder needed)
# ------------------------------------------------------------------------------------------

XML_VARIABLE = """<profile>
<ReportVersion><Version>2020.1</Version></ReportVersion>
<UserAssignments><unit>ns</unit><Part>xc7z020-clg400-1</Part><TopModelName>Net</TopModelName>
<TargetClockPeriod>10.00</TargetClockPeriod><ClockUncertainty>1.25</ClockUncertainty></UserAssignments>
<PerformanceEstimates><PipelineType>dataflow</PipelineType>
<SummaryOfTimingAnalysis><unit>us</unit><EstimatedClockPeriod>0.012</EstimatedClockPeriod></SummaryOfTimingAnalysis>
<SummaryOfOverallLatency><unit>clock cycles</unit><Best-caseLatency>undef</Best-caseLatency>
<Worst-caseLatency>undef</Worst-caseLatency>
<DataflowPipelineThroughput><range><min>7</min><max>9</max></range></DataflowPipelineThroughput>
</SummaryOfOverallLatency></PerformanceEstimates>
<AreaEstimates><Resources><BRAM_18K>3</BRAM_18K><DSP48E>4</DSP48E><FF>5</FF><LUT>6</LUT><URAM>0</URAM></Resources>
</AreaEstimates></profile>
"""

XML_VITIS_PIPELINED = """<profile>
<ReportVersion><Version>2023.2</Version></ReportVersion>
<UserAssignments><unit>ns</unit><Part>xck26-sfvc784-2LV-c</Part><TopModelName>myproject</TopModelName>
<TargetClockPeriod>5.00</TargetClockPeriod><TargetInitiationInterval>4294967295</TargetInitiationInterval>
<FlowTarget>vivado</FlowTarget></UserAssignments>
<PerformanceEstimates><PipelineType>yes</PipelineType>
<SummaryOfTimingAnalysis><unit>ns</unit><EstimatedClockPeriod>3.9</EstimatedClockPeriod></SummaryOfTimingAnalysis>
<SummaryOfOverallLatency><Best-caseLatency>12</Best-caseLatency><Worst-caseLatency>12</Worst-caseLatency>
<PipelineInitiationInterval>4</PipelineInitiationInterval><PipelineDepth>13</PipelineDepth>
</SummaryOfOverallLatency></PerformanceEstimates>
<AreaEstimates><Resources><BRAM_18K>1</BRAM_18K><DSP>2</DSP><FF>3</FF><LUT>4</LUT><URAM>5</URAM></Resources>
<AvailableResources><BRAM_18K>288</BRAM_18K><DSP>1248</DSP><FF>234240</FF><LUT>117120</LUT><URAM>64</URAM>
</AvailableResources></AreaEstimates></profile>
"""

RPT_VARIANT = """================================================================
== Vitis HLS Report for 'Net'
================================================================
* Version:        2022.2 (Build 3670227 on Oct 13 2022)
* Solution:       solution1 (Vivado IP Flow Target)
* Target device:  xc7a35ticsg324-1L

================================================================
== Performance Estimates
================================================================
+ Timing:
    * Summary:
    +--------+----------+----------+------------+
    |  Clock |  Target  | Estimated| Uncertainty|
    +--------+----------+----------+------------+
    |ap_clk  | 10.00 ns | 0.137 us |   1.25 ns  |
    +--------+----------+----------+------------+

+ Latency:
    * Summary:
    +---------+---------+----------+----------+-----+-----+----------+
    |  Latency (cycles) |  Latency (absolute) |  Interval | Pipeline |
    |   min   |   max   |    min   |    max   | min | max |   Type   |
    +---------+---------+----------+----------+-----+-----+----------+
    |        ?|        ?|         ?|         ?|    ?|    ?|  dataflow|
    +---------+---------+----------+----------+-----+-----+----------+

================================================================
== Utilization Estimates
================================================================
* Summary:
+---------------------+---------+-------+---------+---------+------+
|         Name        | BRAM_18K|  DSP  |    FF   |   LUT   | URAM |
+---------------------+---------+-------+---------+---------+------+
|Instance             |        4|      5|        6|        7|     -|
+---------------------+---------+-------+---------+---------+------+
|Total                |        4|      5|        6|        7|     0|
+---------------------+---------+-------+---------+---------+------+
|Available SLR        |       50|     45|    20800|    10400|     0|
+---------------------+---------+-------+---------+---------+------+
|Available            |      100|     90|    41600|    20800|     0|
+---------------------+---------+-------+---------+---------+------+
|Utilization (%)      |        4|      5|       ~0|       ~0|     0|
+---------------------+---------+-------+---------+---------+------+

+ Detail:
"""

UTIL_VARIANT = """Copyright 1986-2022 Xilinx, Inc. All Rights Reserved.
------------------------------------------------------------------------------------
| Tool Version : Vivado v.2024.2 (lin64) Build 1 Wed Nov 20 00:00:00 MST 2024
| Command      : report_utilization -file util.rpt
| Design       : design_1_myproject_0_0
| Device       : xczu7ev-ffvc1156-2-e
| Speed File   : -2
| Design State : Fully Placed
------------------------------------------------------------------------------------

Utilization Design Information

1. CLB Logic
------------

+-------------------------+------+-------+------------+-----------+-------+
|        Site Type        | Used | Fixed | Prohibited | Available | Util% |
+-------------------------+------+-------+------------+-----------+-------+
| CLB LUTs*               | 1000 |     0 |          0 |    230400 |  0.43 |
|   LUT as Logic          |  900 |     0 |          0 |    230400 |  0.39 |
| CLB Registers           | 2000 |     0 |          0 |    460800 |  0.43 |
+-------------------------+------+-------+------------+-----------+-------+

2. CLB Logic Distribution
-------------------------

+--------------------------------------------+------+-------+------------+-----------+-------+
|                  Site Type                 | Used | Fixed | Prohibited | Available | Util% |
+--------------------------------------------+------+-------+------------+-----------+-------+
| CLB Registers                              | 9999 |     0 |          0 |    460800 |  2.17 |
+--------------------------------------------+------+-------+------------+-----------+-------+

3. BLOCKRAM
-----------

+-------------------+------+-------+------------+-----------+-------+
|     Site Type     | Used | Fixed | Prohibited | Available | Util% |
+-------------------+------+-------+------------+-----------+-------+
| Block RAM Tile    |  2.5 |     0 |          0 |       312 |  0.80 |
|   RAMB36/FIFO*    |    2 |     0 |          0 |       312 |  0.64 |
|   RAMB18          |    1 |     0 |          0 |       624 |  0.16 |
| URAM              |    3 |     0 |          0 |        96 |  3.13 |
+-------------------+------+-------+------------+-----------+-------+

4. ARITHMETIC
-------------

+----------------+------+-------+------------+-----------+-------+
|    Site Type   | Used | Fixed | Prohibited | Available | Util% |
+----------------+------+-------+------------+-----------+-------+
| DSPs           |   17 |     0 |          0 |      1728 |  0.98 |
+----------------+------+-------+------------+-----------+-------+

14. SLR CLB Logic and Dedicated Block Utilization
-------------------------------------------------

+----------------------------+------+------+--------+--------+
|          Site Type         | SLR0 | SLR1 | SLR0 % | SLR1 % |
+----------------------------+------+------+--------+--------+
| CLB LUTs                   |    0 | 1000 |   0.00 |   0.87 |
| DSPs                       |    0 |   17 |   0.00 |   1.97 |
+----------------------------+------+------+--------+--------+
"""


def _write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_xml_variable_latency_us_clock_and_range_interval(tmp_path: Path) -> None:
    report = parse_csynth_xml(_write(tmp_path, "Net_csynth.xml", XML_VARIABLE))
    assert (report.tool, report.tool_version, report.top) == ("vivado", "2020.1", "Net")
    assert report.estimated_clock_ns == pytest.approx(12.0)  # 0.012 us
    assert report.timing_met is False
    assert (report.latency_min, report.latency_max) == (None, None)
    assert (report.interval_min, report.interval_max) == (7, 9)
    assert (report.dsp, report.bram_18k, report.bram36) == (4, 3, 1.5)
    assert report.available == {} and report.available_resources() == {}
    assert report.utilization_pct()["LUT"] is None


def test_xml_vitis_pipelined(tmp_path: Path) -> None:
    report = parse_csynth_xml(_write(tmp_path, "myproject_csynth.xml", XML_VITIS_PIPELINED))
    assert (report.tool, report.pipeline_type, report.interval_min, report.interval_max) == ("vitis", "yes", 4, 4)
    assert report.resources() == {"LUT": 4, "FF": 3, "DSP": 2, "BRAM36": 0.5, "URAM": 5}
    assert report.available_resources() == {"LUT": 117120, "FF": 234240, "DSP": 1248, "BRAM36": 144, "URAM": 64}
    d = report.to_dict()
    assert d["bram36"] == 0.5 and d["timing_met"] is True


def test_rpt_variant(tmp_path: Path) -> None:
    report = parse_csynth_rpt(_write(tmp_path, "Net_csynth.rpt", RPT_VARIANT))
    assert (report.tool, report.tool_version, report.top) == ("vitis", "2022.2", "Net")
    assert report.part == "xc7a35ticsg324-1L"
    assert (report.target_clock_ns, report.estimated_clock_ns, report.clock_uncertainty_ns) == (10.0, 137.0, 1.25)
    assert (report.latency_min, report.interval_max, report.pipeline_type) == (None, None, "dataflow")
    assert (report.bram_18k, report.dsp, report.ff, report.lut, report.uram) == (4, 5, 6, 7, 0)
    assert report.available == {"BRAM_18K": 100, "DSP": 90, "FF": 41600, "LUT": 20800, "URAM": 0}


def test_utilization_variant(tmp_path: Path) -> None:
    report = parse_utilization(_write(tmp_path, "util.rpt", UTIL_VARIANT))
    assert (report.tool_version, report.design_state) == ("2024.2", "Fully Placed")
    assert report.device == "xczu7ev-ffvc1156-2-e"
    assert (report.lut, report.ff, report.dsp, report.uram) == (1000, 2000, 17, 3)  # first match only
    assert (report.bram36, report.ramb36, report.ramb18) == (2.5, 2, 1)
    assert report.available == {"LUT": 230400, "FF": 460800, "DSP": 1728, "BRAM36": 312, "URAM": 96}
    assert report.utilization_pct()["URAM"] == pytest.approx(100 * 3 / 96)


def test_parse_report_detects_the_kind(tmp_path: Path) -> None:
    assert isinstance(parse_report(_write(tmp_path, "a.xml", XML_VARIABLE)), HLSReport)
    assert isinstance(parse_report(_write(tmp_path, "b.rpt", RPT_VARIANT)), HLSReport)
    assert isinstance(parse_report(_write(tmp_path, "c.rpt", UTIL_VARIANT)), UtilizationReport)


# ------------------------------------------------------------------------------------------
# Errors: clear ReportError (a UsageError), naming the file, never a raw parser traceback
# ------------------------------------------------------------------------------------------


def _assert_no_parser_traceback(exc: BaseException) -> None:
    """No chained ElementTree/OS exception would be printed with it."""
    assert exc.__cause__ is None
    assert exc.__context__ is None or exc.__suppress_context__


def test_report_error_is_a_usage_error() -> None:
    assert issubclass(ReportError, UsageError) and issubclass(ReportError, FlowError)
    assert ReportError.exit_code == 2


@pytest.mark.parametrize("parser", [parse_csynth_xml, parse_csynth_rpt, parse_utilization, parse_report, parse_csynth])
def test_missing_file(tmp_path: Path, parser) -> None:
    path = tmp_path / "nope_csynth.xml"
    with pytest.raises(ReportError, match=r"nope_csynth\.xml: file not found"):
        parser(path)


def test_directory_instead_of_file(tmp_path: Path) -> None:
    with pytest.raises(ReportError, match="not a regular file"):
        parse_utilization(tmp_path)


@pytest.mark.parametrize(
    "text,match",
    [
        ("", "truncated or malformed XML"),
        ("hello world", "truncated or malformed XML"),
        (XML_VARIABLE[: len(XML_VARIABLE) // 2], r"truncated or malformed XML \(parser stopped at line \d+"),
        ("<html><body>hi</body></html>", r"not an HLS csynth report \(root element <html>"),
        ("<profile><UserAssignments/></profile>", "missing <UserAssignments>, <PerformanceEstimates> or <Area"),
        (XML_VARIABLE.replace("<TopModelName>Net</TopModelName>", ""), "no <TopModelName>"),
    ],
    ids=["empty", "not-xml", "truncated", "foreign-xml", "no-sections", "no-top"],
)
def test_bad_xml(tmp_path: Path, text: str, match: str) -> None:
    path = _write(tmp_path, "bad_csynth.xml", text)
    with pytest.raises(ReportError, match=match) as info:
        parse_csynth_xml(path)
    assert str(path) in str(info.value)
    _assert_no_parser_traceback(info.value)


@pytest.mark.parametrize(
    "text,match",
    [
        ("just some text\n", "not an HLS csynth report"),
        (RPT_VARIANT[: RPT_VARIANT.index("== Performance")], "truncated HLS report"),
        (RPT_VARIANT[: RPT_VARIANT.index("|Total")], "no utilization summary table with a 'Total' row"),
        ("== Synthesis Summary Report of 'myproject'\n", "solution-level Vitis 'Synthesis Summary Report'"),
    ],
    ids=["not-a-report", "header-only", "cut-before-total", "vitis-summary"],
)
def test_bad_rpt(tmp_path: Path, text: str, match: str) -> None:
    path = _write(tmp_path, "bad_csynth.rpt", text)
    with pytest.raises(ReportError, match=match) as info:
        parse_csynth_rpt(path)
    assert str(path) in str(info.value)


@pytest.mark.parametrize(
    "text,match",
    [
        ("nothing here\n", "not a Vivado report_utilization output"),
        (UTIL_VARIANT[: UTIL_VARIANT.index("1. CLB Logic")], "no 'Slice LUTs'/'CLB LUTs'"),
    ],
    ids=["not-a-report", "truncated"],
)
def test_bad_utilization(tmp_path: Path, text: str, match: str) -> None:
    path = _write(tmp_path, "bad_utilization_synth.rpt", text)
    with pytest.raises(ReportError, match=match) as info:
        parse_utilization(path)
    assert str(path) in str(info.value)


def test_parse_report_unknown_text(tmp_path: Path) -> None:
    with pytest.raises(ReportError, match="not a known report"):
        parse_report(_write(tmp_path, "notes.rpt", "hello\n"))


def test_find_reports_bad_folder(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="does not exist"):
        find_reports(tmp_path / "missing")
    with pytest.raises(UsageError, match="is not a folder"):
        find_reports(_write(tmp_path, "file.txt", "x"))
    assert not find_reports(tmp_path)


def test_find_reports_synthetic_tree(tmp_path: Path) -> None:
    rep = tmp_path / "proj" / "net_prj" / "solution1" / "syn" / "report"
    rep.mkdir(parents=True)
    (rep / "net_csynth.xml").write_text(XML_VARIABLE)
    (rep / "net_csynth.rpt").write_text(RPT_VARIANT)
    (rep / "dense_config2_csynth.xml").write_text(XML_VARIABLE)  # per-module report: ignored
    (tmp_path / "proj" / "vivado_synth.rpt").write_text(UTIL_VARIANT)
    found = find_reports(tmp_path / "proj")
    assert [(h.label, h.path.name, h.fallback.name) for h in found.hls] == [("net", "net_csynth.xml", "net_csynth.rpt")]
    assert [(u.role, u.path.name) for u in found.utilization] == [("synth", "vivado_synth.rpt")]
    found = find_reports(tmp_path)
    assert [h.label for h in found.hls] == ["proj:net"]


def test_csynth_instances_parses_both_tables(reports: Path):
    """The instance tables of a top-level .rpt: per-module resources (utilization detail) and latency."""
    rpt = reports / "fastmachinelearning__hls4ml-tutorial__pruned_cnn/myproject_prj/solution1/syn/report"
    inst = parse_csynth_instances(rpt / "myproject_csynth.rpt")
    conv = inst["conv_2d_cl_array_array_ap_fixed_16u_config7_s"]
    assert conv == {"LUT": 38710.0, "FF": 10465.0, "DSP": 786.0, "BRAM36": 0.0, "latency": 229.0}
    assert inst["softmax_array_array_ap_fixed_10u_softmax_config27_s"]["BRAM36"] == 2.0
    assert "Total" not in inst and len(inst) == 16  # 15 layers and Block_proc
