"""Typed step results: JSON round trip, and the report reads the convert step's result (the io type
the fit search chose), not the config (issue 10: one-way data flow)."""

from __future__ import annotations

import json

import pytest

from flows.boards import load_board
from flows.config import BuildConfig
from flows.reporting.summary import build_report
from flows.results import RESULT_TYPES, ConvertResult, Results, TrainResult


def _convert_result(io_type: str) -> ConvertResult:
    return ConvertResult(
        project="hls4ml_prj",
        backend="VivadoAccelerator",
        part="xc7z020clg400-1",
        board="pynq-z2",
        io_type=io_type,
        strategy="Latency",
        clock_period_ns=10.0,
        project_name="myproject",
        layers=[{"name": "Dense_MatMul_0", "class": "Dense", "shape": [10], "reuse_factor": 4, "types": {}}],
        resources={
            "source": "estimate",
            **{k: 1.0 for k in ("LUT", "FF", "DSP", "BRAM36", "URAM")},
            "budget": {k: 100.0 for k in ("LUT", "FF", "DSP", "BRAM36", "URAM")},
            "utilization": {k: 0.01 for k in ("LUT", "FF", "DSP", "BRAM36", "URAM")},
            "fits": True,
        },
        latency={
            "source": "estimate",
            "cycles": 10,
            "ii": 5,
            "clock_period_ns": 10.0,
            "latency_us": 0.1,
            "images_per_second": 2e7,
        },
    )


def test_results_round_trip_through_json():
    r = TrainResult(0.9, 0.3, 100, 400, "digits", 10, 5, [{"epoch": 1, "loss": 1.0, "train_acc": 0.5}])
    again = TrainResult.from_dict(json.loads(json.dumps(r.to_dict())))
    assert again == r


def test_a_result_with_other_fields_is_refused():
    with pytest.raises(TypeError):
        TrainResult.from_dict({"accuracy": 0.9, "unknown": 1})


def test_results_only_take_their_own_type():
    results = Results()
    with pytest.raises(TypeError):
        results.set("train", _convert_result("io_stream"))
    results.set("convert", _convert_result("io_stream"))
    assert results.to_dict()["convert"]["io_type"] == "io_stream"
    assert set(RESULT_TYPES) == {f for f in Results.__dataclass_fields__}


def test_report_names_the_io_type_the_convert_step_chose(tmp_path):
    cfg = BuildConfig(model="lenet300_100")  # the config asks for io_stream ...
    results = Results()
    results.set("convert", _convert_result("io_parallel"))  # ... the fit search switched to io_parallel
    report = build_report(cfg, load_board("pynq-z2"), tmp_path, results)
    assert cfg.hls.io_type == "io_stream"
    assert report["io_type"] == "io_parallel"
    assert report["hls_layers"][0]["reuse_factor"] == 4
    assert report["resources"]["source"] == "estimate" and "markdown" in report["resources"]
