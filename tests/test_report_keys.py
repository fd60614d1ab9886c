"""Report formats users' habits expect (issue 15): counts printed as integers, and report.json's
`CSynthesisReport` with hls4ml's own keys and values (checked against hls4ml's parser on real reports)."""

from __future__ import annotations

import contextlib
import io
import json
import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest

from flows.boards import load_board
from flows.config import config_from_dict
from flows.hardware import resources_section
from flows.hlsreport import csynthesis_report, csynthesis_report_xml, load_project_reports
from flows.report import main as report_main
from flows.reporting.hardware import hardware_markdown
from flows.reporting.summary import build_report, weight_bits
from flows.results import RESULT_TYPES, Results, SynthResult

REPORTS = Path(__file__).resolve().parents[2] / "shared" / "reports"
# (folder under shared/reports, backend as hls4ml's project.tcl names it, top)
REAL_TOPS = [
    ("ChiRuiChen__AutoEncoder_hls4ml__denoise_ae_pynqz2", "vivadoaccelerator", "myproject_axi"),
    ("nicologhielmetti__hls4ml-pynq__jet_mlp_rf64_pynqz2/cpp_nn_v2", "vivadoaccelerator", "myproject_axi"),
    ("nrp-nautilus__6nrp-hls4ml__jet_mlp_vitis", "vitis", "myproject"),
    ("pominiq__DNNonSilicon__mnist_cnn_stream_rf16", "vivado", "myproject"),
]

FRACTIONAL = {
    "model": "m",
    "board": "pynq-z2",
    "part": "xc7z020clg400-1",
    "resources": {
        "source": "estimate",
        "LUT": 23052.1,
        "FF": 8404.76,
        "DSP": 12.0,
        "BRAM36": 2.5,
        "URAM": 0.0,
        "budget": {"LUT": 53200, "FF": 106400, "DSP": 220, "BRAM36": 140, "URAM": 0},
        "utilization": {"LUT": 0.433, "FF": 0.079, "DSP": 0.055, "BRAM36": 0.018, "URAM": 0.0},
        "fits": True,
    },
    "latency": {
        "source": "estimate",
        "clock_period_ns": 10.0,
        "cycles": 1283.4,
        "ii": 785.0,
        "latency_us": 12.834,
        "images_per_second": 127388.535,
    },
}


def test_counts_print_as_integers(tmp_path, capsys):
    (tmp_path / "report.json").write_text(json.dumps(FRACTIONAL))
    assert report_main([str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "127389 images/s" in out and "1283 cycles" in out
    lines = {line.split()[0]: line.split() for line in out.splitlines() if line.strip().split()[:1]}
    assert lines["LUT"][1] == "23052" and lines["FF"][1] == "8405" and lines["BRAM36"][1] == "2.5"
    assert "23052.1" not in out and "8404.76" not in out and "127388.535" not in out
    md = hardware_markdown(FRACTIONAL["resources"], FRACTIONAL["latency"], load_board("pynq-z2"))
    assert "| LUT | 23,052 | 53,200 |" in md and "| FF | 8,405 |" in md and "| BRAM36 | 2.5 |" in md
    assert "127,389 images/s" in md and "23,052.1" not in md


def _hls4ml_project(tmp_path: Path, folder: str, backend: str, top: str) -> Path:
    """A folder laid out as hls4ml's parse_vivado_report expects, holding a real csynth report."""
    src = REPORTS / folder / "myproject_prj" / "solution1" / "syn" / "report" / f"{top}_csynth.xml"
    if not src.is_file():
        pytest.skip(f"{src} is absent (../shared/reports)")
    prj = tmp_path / "prj"
    (prj / "myproject_prj" / "solution1" / "syn" / "report").mkdir(parents=True)
    shutil.copy(src, prj / "myproject_prj" / "solution1" / "syn" / "report" / src.name)
    (prj / "myproject_prj" / "vivado_hls.app").write_text(
        '<AutoPilot:project xmlns:AutoPilot="com.autoesl.autopilot.project" top="x">'
        '<solutions><solution name="solution1" status="active"/></solutions></AutoPilot:project>'
    )
    (prj / "project.tcl").write_text(f'set project_name "myproject"\nset backend "{backend}"\n')
    return prj


@pytest.mark.parametrize(("folder", "backend", "top"), REAL_TOPS)
def test_csynthesis_report_has_hls4ml_keys_and_values(tmp_path, folder, backend, top):
    from hls4ml.report import parse_vivado_report

    prj = _hls4ml_project(tmp_path, folder, backend, top)
    with contextlib.redirect_stdout(io.StringIO()):
        theirs = parse_vivado_report(str(prj))["CSynthesisReport"]
    xml = prj / "myproject_prj" / "solution1" / "syn" / "report" / f"{top}_csynth.xml"
    assert csynthesis_report_xml(xml) == theirs
    assert {"TargetClockPeriod", "BestLatency", "WorstLatency", "IntervalMax", "LUT", "AvailableLUT"} <= set(theirs)
    # from fireflow's parsed entry (the XML read again), and from the text figures when only those exist
    entry = next(e for e in load_project_reports(prj)["hls"] if e["top"] == top)
    assert csynthesis_report(entry, prj) == theirs
    from_text = csynthesis_report({**entry, "format": "rpt"}, prj)
    for key in ("BestLatency", "WorstLatency", "IntervalMin", "IntervalMax", "LUT", "FF", "DSP", "BRAM_18K"):
        assert int(from_text[key]) == int(theirs[key]), key


def test_report_json_of_a_synthesized_build_carries_csynthesis_report(fire_stream_build, tmp_path):
    """report.json gains 'CSynthesisReport' (hls4ml's keys, the top the board sees) and keeps every key."""
    out, report = fire_stream_build
    folder, backend, top = REAL_TOPS[0]
    prj = _hls4ml_project(tmp_path, folder, backend, top)
    records = json.loads((out / "steps.json").read_text())["steps"]
    results = Results()
    for name in ("train", "qat", "export", "convert", "csim"):
        results.set(name, RESULT_TYPES[name].from_dict(records[name]["metrics"]))
    cfg = config_from_dict(json.loads((out / "config.json").read_text()))
    estimated = build_report(cfg, load_board("pynq-z2"), out, results)  # before synthesis
    reports = load_project_reports(prj)
    board = load_board("pynq-z2")
    resources = resources_section({"LUT": 1.0}, "vivado", board)
    latency = {"source": "vivado", "cycles": 1, "ii": 1, "clock_period_ns": 10.0, "latency_us": 0.01}
    latency["images_per_second"] = 1e8
    results.set("synth", SynthResult(resources=resources, latency=latency, reports=reports))
    synthesized = build_report(cfg, board, out, results)
    with contextlib.redirect_stdout(io.StringIO()):
        from hls4ml.report import parse_vivado_report

        assert synthesized["CSynthesisReport"] == parse_vivado_report(str(prj))["CSynthesisReport"]
    assert set(estimated) | {"CSynthesisReport", "estimate"} == set(synthesized)  # added, nothing dropped
    assert synthesized["resources"]["source"] == "vivado" and synthesized["estimate"]["resources"]
    assert "CSynthesisReport" not in report  # an estimate-only build has no hls4ml synthesis keys


def test_weight_bits_are_the_layers_own():
    """report.json `quantization.weight_bits`: the widths the quantized layers have (a user's network keeps
    its own, e.g. 8-bit convs under a 4-bit recipe), the recipe's for a kind without layers; per layer in
    `layer_weight_bits`."""
    rows = [{"name": "c1", "kind": "conv", "bits": 8}, {"name": "c2", "kind": "conv", "bits": 4}]
    assert weight_bits(SimpleNamespace(weight_bits={"conv": 4, "fc": 4}, layers=rows)) == {"conv": 8, "fc": 4}
    assert weight_bits(SimpleNamespace(weight_bits={"conv": 5, "fc": 3}, layers=[])) == {"conv": 5, "fc": 3}
