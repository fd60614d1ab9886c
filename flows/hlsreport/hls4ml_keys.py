"""report.json's `CSynthesisReport`: hls4ml's own keys for a synthesized project, so scripts written for
`hls4ml report` / `hls4ml.report.parse_vivado_report()` read a fireflow report unchanged.

hls4ml (1.3, `report/vivado_report.py`) reads the top's ``<top>_csynth.xml`` (``<name>_axi`` for the
VivadoAccelerator backend) into string values: ``TargetClockPeriod``, ``EstimatedClockPeriod``,
``BestLatency``, ``WorstLatency``, ``IntervalMin``, ``IntervalMax``, then every child of
``AreaEstimates/Resources`` (``BRAM_18K``, ``DSP`` — renamed from Vivado HLS's ``DSP48E`` —, ``FF``,
``LUT``, ``URAM``) and of ``AvailableResources`` prefixed ``Available``. `csynthesis_report_xml`
does the same (no printing, errors as `ReportError`); `csynthesis_report` also serves a top known only
from its text report (``.rpt``), with the same keys built from the parsed figures.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

from flows.hlsreport.common import report_error

_PERFORMANCE = {
    "EstimatedClockPeriod": "./SummaryOfTimingAnalysis/EstimatedClockPeriod",
    "BestLatency": "./SummaryOfOverallLatency/Best-caseLatency",
    "WorstLatency": "./SummaryOfOverallLatency/Worst-caseLatency",
    "IntervalMin": "./SummaryOfOverallLatency/Interval-min",
    "IntervalMax": "./SummaryOfOverallLatency/Interval-max",
}


def csynthesis_report_xml(path: str | Path) -> dict[str, str]:
    """hls4ml's 'CSynthesisReport' of one ``<top>_csynth.xml`` (the same keys and string values)."""
    path = Path(path)
    try:
        root = ET.parse(path).getroot()
    except (ET.ParseError, OSError) as exc:
        raise report_error(path, f"not a readable csynth XML report ({exc})") from None
    perf, area = root.find("./PerformanceEstimates"), root.find("./AreaEstimates")
    target = root.find("./UserAssignments/TargetClockPeriod")
    if perf is None or area is None or target is None:
        raise report_error(path, "no PerformanceEstimates/AreaEstimates/UserAssignments: not a csynth report")
    out = {"TargetClockPeriod": target.text}
    for key, where in _PERFORMANCE.items():
        node = perf.find(where)
        out[key] = node.text if node is not None else None
    for section, prefix in (("./Resources", ""), ("./AvailableResources", "Available")):
        for child in area.find(section) if area.find(section) is not None else []:
            out[prefix + ("DSP" if child.tag == "DSP48E" else child.tag)] = child.text
    return out


def _text(value) -> str | None:
    if value is None:
        return None
    return str(int(value)) if float(value).is_integer() else str(value)


def csynthesis_report(entry: dict, root: str | Path) -> dict[str, str | None]:
    """hls4ml's 'CSynthesisReport' for one parsed HLS report entry (`flows.hlsreport.load_project_reports`).

    The XML is read again with hls4ml's rules; for a text report the keys are filled from the entry."""
    path = Path(entry["file"])
    path = path if path.is_absolute() else Path(root) / path
    if entry.get("format") == "xml" and path.is_file():
        return csynthesis_report_xml(path)
    avail = entry.get("available") or {}
    out = {
        "TargetClockPeriod": _text(entry.get("target_clock_ns")),
        "EstimatedClockPeriod": _text(entry.get("estimated_clock_ns")),
        "BestLatency": _text(entry.get("latency_min")),
        "WorstLatency": _text(entry.get("latency_max")),
        "IntervalMin": _text(entry.get("interval_min")),
        "IntervalMax": _text(entry.get("interval_max")),
        "BRAM_18K": _text(entry.get("bram_18k")),
        "DSP": _text(entry.get("dsp")),
        "FF": _text(entry.get("ff")),
        "LUT": _text(entry.get("lut")),
        "URAM": _text(entry.get("uram")),
    }
    out.update({f"Available{'DSP' if k == 'DSP48E' else k}": _text(v) for k, v in avail.items()})
    return out
