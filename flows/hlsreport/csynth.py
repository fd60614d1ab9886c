"""HLS C-synthesis reports of Vivado HLS (2019.2-2020.1) and Vitis HLS (2021.1-2025.1).

* ``<top>_csynth.xml`` (`parse_csynth_xml`): handles ``<DSP48E>`` vs ``<DSP>``, the PipelineType
  variants, the nested ``<DataflowPipelineThroughput><range>`` interval and the timing unit.
* ``<top>_csynth.rpt`` (`parse_csynth_rpt`): the text version of the same report (both tools), with
  ``~0`` percentages, the ``Available SLR`` row and clocks printed in ``us``.
* The instance tables of a text report (`parse_csynth_instances`): per-module resources and latency,
  for projects whose per-module reports were not kept.

Units: HLS reports count block RAM in 18 Kb halves (``BRAM_18K``); `HLSReport.bram36` halves it.
Bad, truncated or foreign files raise `flows.errors.ReportError` naming the file and the problem.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from dataclasses import asdict, dataclass, field
from pathlib import Path

from flows.hlsreport.common import (
    integer,
    number,
    percent,
    read_text,
    report_error,
    table_cells,
    time_ns,
    tool_version,
)


@dataclass
class HLSReport:
    """Figures of one top-level HLS C-synthesis report (``<top>_csynth.xml`` or ``.rpt``).

    `bram_18k` and `available["BRAM_18K"]` are in 18 Kb units, as the report gives them;
    `bram36` is the same figure in 36 Kb blocks (the unit of board budgets).
    """

    path: str
    format: str  # "xml" or "rpt"
    tool: str  # "vivado" (Vivado HLS) or "vitis" (Vitis HLS): the report's source label
    tool_version: str | None
    top: str
    part: str | None
    target_clock_ns: float | None
    estimated_clock_ns: float | None
    clock_uncertainty_ns: float | None
    latency_min: int | None
    latency_max: int | None
    interval_min: int | None
    interval_max: int | None
    pipeline_type: str | None
    lut: int
    ff: int
    dsp: int
    bram_18k: int
    uram: int
    available: dict[str, int] = field(default_factory=dict)
    """Available resources as reported (keys LUT, FF, DSP, BRAM_18K, URAM); empty if absent."""

    @property
    def bram36(self) -> float:
        return self.bram_18k / 2

    @property
    def timing_met(self) -> bool | None:
        if self.target_clock_ns is None or self.estimated_clock_ns is None:
            return None
        return self.estimated_clock_ns <= self.target_clock_ns

    @property
    def fmax_mhz(self) -> float | None:
        if not self.estimated_clock_ns:
            return None
        return 1000.0 / self.estimated_clock_ns

    def resources(self) -> dict[str, float]:
        """Used resources in the fireflow budget kinds (BRAM in 36 Kb blocks)."""
        return {"LUT": self.lut, "FF": self.ff, "DSP": self.dsp, "BRAM36": self.bram36, "URAM": self.uram}

    def available_resources(self) -> dict[str, float]:
        """Available resources in the fireflow budget kinds; empty when the report has none."""
        a = self.available
        out: dict[str, float] = {}
        for kind, key in (("LUT", "LUT"), ("FF", "FF"), ("DSP", "DSP"), ("BRAM36", "BRAM_18K"), ("URAM", "URAM")):
            if key in a:
                out[kind] = a[key] / 2 if key == "BRAM_18K" else a[key]
        return out

    def utilization_pct(self) -> dict[str, float | None]:
        avail = self.available_resources()
        return {k: percent(v, avail.get(k)) for k, v in self.resources().items()}

    def to_dict(self) -> dict:
        d = asdict(self)
        d["bram36"] = self.bram36
        d["timing_met"] = self.timing_met
        d["fmax_mhz"] = self.fmax_mhz
        d["resources"] = self.resources()
        d["available_resources"] = self.available_resources()
        d["utilization_pct"] = self.utilization_pct()
        return d


# --------------------------------------------------------------------------------------------
# HLS csynth XML
# --------------------------------------------------------------------------------------------



def used_resources(used: dict) -> dict[str, float]:
    """HLSReport's resource fields from a {LUT, FF, DSP, BRAM_18K, URAM} table (missing: 0)."""
    return {
        "lut": used.get("LUT", 0),
        "ff": used.get("FF", 0),
        "dsp": used.get("DSP", 0),
        "bram_18k": used.get("BRAM_18K", 0),
        "uram": used.get("URAM", 0),
    }

def _xml_text(node: ET.Element | None, path: str) -> str | None:
    if node is None:
        return None
    found = node.find(path)
    if found is None or found.text is None:
        return None
    return found.text.strip()


def _xml_resources(node: ET.Element | None) -> dict[str, int]:
    out: dict[str, int] = {}
    if node is None:
        return out
    for child in node:
        tag = child.tag
        key = "DSP" if tag in ("DSP48E", "DSP", "DSP48") else tag
        if key in ("BRAM_18K", "DSP", "FF", "LUT", "URAM"):
            value = integer(child.text)
            out[key] = 0 if value is None else value
    return out


def parse_csynth_xml(path: str | Path) -> HLSReport:
    """Parse a ``<top>_csynth.xml`` (or a solution-level ``csynth.xml``) of Vivado or Vitis HLS."""
    path = Path(path)
    read_text(path)  # existence / readability, with clear messages
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError as exc:
        line, col = getattr(exc, "position", (None, None))
        raise report_error(path, f"truncated or malformed XML (parser stopped at line {line}, column {col})") from None
    if root.tag != "profile":
        raise report_error(path, f"not an HLS csynth report (root element <{root.tag}>, expected <profile>)")
    user = root.find("UserAssignments")
    perf = root.find("PerformanceEstimates")
    area = root.find("AreaEstimates")
    if user is None or perf is None or area is None or area.find("Resources") is None:
        raise report_error(
            path,
            "not an HLS csynth report (missing <UserAssignments>, <PerformanceEstimates> or <AreaEstimates>)",
        )

    version = tool_version(_xml_text(root, "ReportVersion/Version"))
    used = _xml_resources(area.find("Resources"))
    available = _xml_resources(area.find("AvailableResources"))
    # Vitis HLS: <DSP> tag, <FlowTarget>, <SummaryOfViolations>; Vivado HLS: <DSP48E>.
    res_tags = {c.tag for c in area.find("Resources")}
    major = re.match(r"(\d{4})", version or "")
    is_vitis = user.find("FlowTarget") is not None or "DSP" in res_tags or (major is not None and int(major[1]) >= 2021)

    unit = _xml_text(user, "unit") or "ns"
    timing = perf.find("SummaryOfTimingAnalysis")
    t_unit = _xml_text(timing, "unit") or unit
    lat = perf.find("SummaryOfOverallLatency")

    ii_min = integer(_xml_text(lat, "Interval-min"))
    ii_max = integer(_xml_text(lat, "Interval-max"))
    if ii_min is None or ii_max is None:
        thr = lat.find("DataflowPipelineThroughput") if lat is not None else None
        if thr is not None and thr.find("range") is not None:
            ii_min = ii_min if ii_min is not None else integer(_xml_text(thr, "range/min"))
            ii_max = ii_max if ii_max is not None else integer(_xml_text(thr, "range/max"))
        elif thr is not None:
            ii_min = ii_min if ii_min is not None else integer(thr.text)
            ii_max = ii_max if ii_max is not None else integer(thr.text)
        pii = integer(_xml_text(lat, "PipelineInitiationInterval"))
        ii_min = ii_min if ii_min is not None else pii
        ii_max = ii_max if ii_max is not None else pii

    top = _xml_text(user, "TopModelName")
    if not top:
        raise report_error(path, "no <TopModelName> in <UserAssignments>")
    return HLSReport(
        path=str(path),
        format="xml",
        tool="vitis" if is_vitis else "vivado",
        tool_version=version,
        top=top,
        part=_xml_text(user, "Part"),
        target_clock_ns=time_ns(_xml_text(user, "TargetClockPeriod"), unit),
        estimated_clock_ns=time_ns(_xml_text(timing, "EstimatedClockPeriod"), t_unit),
        clock_uncertainty_ns=time_ns(_xml_text(user, "ClockUncertainty"), unit),
        latency_min=integer(_xml_text(lat, "Best-caseLatency")),
        latency_max=integer(_xml_text(lat, "Worst-caseLatency")),
        interval_min=ii_min,
        interval_max=ii_max,
        pipeline_type=_xml_text(perf, "PipelineType"),
        **used_resources(used),
        available=available,
    )


# --------------------------------------------------------------------------------------------
# HLS csynth text report
# --------------------------------------------------------------------------------------------

_RPT_TITLE = re.compile(r"^==\s*(Vivado|Vitis)\s+HLS\s+Report\s+for\s+'([^']+)'", re.M)


def _section(text: str, title: str) -> str:
    """The text of a '== Title' section of an HLS report, up to the next '====' banner."""
    m = re.search(rf"^==\s*{re.escape(title)}\s*$", text, re.M)
    if not m:
        return ""
    rest = text[m.end() :]
    # skip the closing '=====' line of this banner, stop at the next banner
    rest = re.sub(r"^\s*=+\s*\n", "", rest, count=1)
    end = re.search(r"^=+\s*$", rest, re.M)
    return rest[: end.start()] if end else rest


def parse_csynth_rpt(path: str | Path) -> HLSReport:
    """Parse a ``<top>_csynth.rpt`` text report of Vivado HLS or Vitis HLS."""
    path = Path(path)
    text = read_text(path)
    m = _RPT_TITLE.search(text)
    if not m:
        if re.search(r"^==\s*Synthesis Summary Report", text, re.M):
            raise report_error(
                path,
                "this is the solution-level Vitis 'Synthesis Summary Report' (csynth.rpt); "
                "parse the top-level <top>_csynth.rpt or <top>_csynth.xml instead",
            )
        raise report_error(path, "not an HLS csynth report (no '== Vivado/Vitis HLS Report for ...' title)")
    tool, top = m.group(1).lower(), m.group(2)

    def header(key: str) -> str | None:
        hm = re.search(rf"^\*\s*{re.escape(key)}:\s*(.+?)\s*$", text, re.M)
        return hm.group(1) if hm else None

    perf = _section(text, "Performance Estimates")
    util = _section(text, "Utilization Estimates")
    if not perf or not util:
        raise report_error(path, "truncated HLS report: no 'Performance Estimates' or 'Utilization Estimates' section")

    # Timing summary: | ap_clk | 10.00 ns | 0.137 us | 1.25 ns |
    target = estimated = uncertainty = None
    plines = perf.splitlines()
    for i, line in enumerate(plines):
        cells = table_cells(line)
        if len(cells) >= 3 and cells[0] == "Clock" and cells[1] == "Target":
            for row in plines[i + 1 :]:
                rc = table_cells(row)
                if len(rc) >= 3:
                    target, estimated = time_ns(rc[1]), time_ns(rc[2])
                    uncertainty = time_ns(rc[3]) if len(rc) > 3 else None
                    break
            break

    # Latency summary: | lat min | lat max | abs min | abs max | ii min | ii max | type |
    lat_min = lat_max = ii_min = ii_max = None
    pipeline = None
    lm = re.search(r"^\+ Latency:", perf, re.M)
    if lm:
        llines = perf[lm.end() :].splitlines()
        for line in llines:
            s = line.strip()
            if s.startswith("+ Detail") or s.startswith("* Loop"):
                break
            cells = table_cells(line)
            if len(cells) >= 7 and (cells[0] == "?" or number(cells[0]) is not None):
                lat_min, lat_max = integer(cells[0]), integer(cells[1])
                ii_min, ii_max = integer(cells[4]), integer(cells[5])
                pipeline = cells[6] or None
                break
    if target is None and lat_min is None:
        raise report_error(path, "no timing or latency summary table found (truncated or unknown format)")

    # Utilization summary: header '| Name | BRAM_18K | DSP48E | FF | LUT | URAM |'
    columns: list[str] | None = None
    rows: dict[str, list[str]] = {}
    for line in util.splitlines():
        if line.strip().startswith("+ Detail"):
            break
        cells = table_cells(line)
        if not cells:
            continue
        if cells[0] == "Name" and columns is None:
            columns = ["DSP" if c in ("DSP48E", "DSP48") else c for c in cells[1:]]
            continue
        if columns is not None and cells[0] not in rows:
            rows[cells[0]] = cells[1:]
    if columns is None or "Total" not in rows:
        raise report_error(path, "no utilization summary table with a 'Total' row found (truncated or unknown format)")

    def as_resources(values: list[str] | None) -> dict[str, int]:
        if values is None:
            return {}
        out = {}
        for col, cell in zip(columns, values):
            if col in ("BRAM_18K", "DSP", "FF", "LUT", "URAM"):
                v = integer(cell)
                out[col] = 0 if v is None else v
        return out

    used = as_resources(rows.get("Total"))
    available = as_resources(rows.get("Available"))
    return HLSReport(
        path=str(path),
        format="rpt",
        tool=tool,
        tool_version=tool_version(header("Version")),
        top=top,
        part=header("Target device"),
        target_clock_ns=target,
        estimated_clock_ns=estimated,
        clock_uncertainty_ns=uncertainty,
        latency_min=lat_min,
        latency_max=lat_max,
        interval_min=ii_min,
        interval_max=ii_max,
        pipeline_type=pipeline,
        **used_resources(used),
        available=available,
    )


def parse_csynth(path: str | Path) -> HLSReport:
    """Parse a csynth report, XML or text, chosen by the file suffix."""
    path = Path(path)
    if path.suffix.lower() == ".xml":
        return parse_csynth_xml(path)
    return parse_csynth_rpt(path)


def is_csynth_text(text: str) -> bool:
    """True for the text of an HLS csynth report: a top-level ``<top>_csynth.rpt`` (``== Vivado/Vitis HLS
    Report for ...``) or Vitis's solution-level ``Synthesis Summary Report`` (which `parse_csynth_rpt`
    refuses with a message saying which file to read instead)."""
    return bool(_RPT_TITLE.search(text) or re.search(r"^==\s*Synthesis Summary Report", text, re.M))


# --------------------------------------------------------------------------------------------
# Instance tables of a csynth text report
# --------------------------------------------------------------------------------------------


def parse_csynth_instances(path: str | Path) -> dict[str, dict[str, float]]:
    """Per-module figures from the instance tables of a csynth text report (``*_csynth.rpt``).

    Every top-level report lists its sub-modules twice: in the latency detail (min/max latency per
    instance) and in the utilization detail (BRAM_18K, DSP, FF, LUT, URAM per instance). Returns
    ``{module: {"LUT", "FF", "DSP", "BRAM36", "latency"}}`` (BRAM36 = BRAM_18K / 2, latency = the
    maximum); the first instance of a module wins. Empty when the report has no utilization section.
    """
    text = read_text(Path(path))
    util_at = text.find("== Utilization Estimates")
    if util_at < 0:
        return {}
    perf, util = text[:util_at], text[util_at:]
    row = re.compile(r"^\s*\|\s*(\S+?)\s*\|\s*(\S+?)\s*\|(.*)$", re.M)
    out: dict[str, dict[str, float]] = {}
    inst = util.split("* Instance:", 1)
    if len(inst) == 2:
        for m in row.finditer(inst[1].split("* DSP", 1)[0]):
            cells = [c.strip() for c in m.group(3).split("|") if c.strip()]
            if m.group(1) in ("Instance", "Total") or len(cells) < 4 or not cells[0].isdigit():
                continue
            bram, dsp, ff, lut = (float(c) for c in cells[:4])
            out.setdefault(m.group(2), {"LUT": lut, "FF": ff, "DSP": dsp, "BRAM36": bram / 2.0})
    lat = perf.split("* Instance:", 1)
    if len(lat) == 2:
        for m in row.finditer(lat[1].split("* Loop:", 1)[0]):
            cells = [c.strip() for c in m.group(3).split("|") if c.strip()]
            if m.group(2) in out and cells and cells[1].isdigit() and "latency" not in out[m.group(2)]:
                out[m.group(2)]["latency"] = float(cells[1])
    return out
