"""Parsers for the real HLS and Vivado reports of an hls4ml project (no Xilinx tool needed).

* `flows.hlsreport.csynth`: ``<top>_csynth.xml`` / ``.rpt`` of Vivado HLS and Vitis HLS (`HLSReport`),
  and the per-module instance tables of the text report.
* `flows.hlsreport.vivado`: Vivado ``report_utilization`` outputs (`UtilizationReport`).
* `flows.hlsreport.hls4ml_keys`: hls4ml's own ``CSynthesisReport`` dict of a top (`csynthesis_report`),
  which report.json carries for scripts written for ``hls4ml report``.
* `flows.hlsreport.project`: locating the reports of a project (`find_reports`) and parsing them all
  (`load_project_reports`, the data behind the ``fireflow-report`` CLI in `flows/report.py`).

Both report kinds map onto the fireflow budget kinds ``LUT FF DSP BRAM36 URAM`` of `flows.boards`;
bad, truncated or foreign files raise `flows.errors.ReportError` naming the file and the problem.
"""

from flows.hlsreport.csynth import (
    HLSReport,
    is_csynth_text,
    parse_csynth,
    parse_csynth_instances,
    parse_csynth_rpt,
    parse_csynth_xml,
)
from flows.hlsreport.hls4ml_keys import csynthesis_report, csynthesis_report_xml
from flows.hlsreport.project import (
    UTILIZATION_ROLES,
    FoundHLSReport,
    FoundReports,
    FoundUtilizationReport,
    find_reports,
    load_project_reports,
    parse_report,
)
from flows.hlsreport.vivado import UtilizationReport, is_utilization_text, parse_utilization

__all__ = [
    "UTILIZATION_ROLES",
    "FoundHLSReport",
    "FoundReports",
    "FoundUtilizationReport",
    "HLSReport",
    "UtilizationReport",
    "csynthesis_report",
    "csynthesis_report_xml",
    "find_reports",
    "is_csynth_text",
    "is_utilization_text",
    "load_project_reports",
    "parse_csynth",
    "parse_csynth_instances",
    "parse_csynth_rpt",
    "parse_csynth_xml",
    "parse_report",
    "parse_utilization",
]
