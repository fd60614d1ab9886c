"""Parsers for real HLS and Vivado reports of an hls4ml project.

Three report kinds are read, without any Xilinx tool installed:

* ``<top>_csynth.xml``: the C-synthesis report of Vivado HLS (2019.2-2020.1) and Vitis HLS
  (2021.1-2025.1). Handles ``<DSP48E>`` vs ``<DSP>``, the PipelineType variants, the nested
  ``<DataflowPipelineThroughput><range>`` interval and the timing unit.
* ``<top>_csynth.rpt``: the text version of the same report (both tools), with ``~0`` percentages,
  the ``Available SLR`` row and clocks printed in ``us``.
* Vivado ``report_utilization`` outputs (7-series and UltraScale names, with or without the
  ``Prohibited`` column, every Design State), e.g. hls4ml's ``vivado_synth.rpt`` or the
  ``*_utilization_synth.rpt`` / ``*_utilization_placed.rpt`` files of a block-design run.

Units: HLS reports count block RAM in 18 Kb halves (``BRAM_18K``); `HLSReport.bram36` halves it.
Vivado counts 36 Kb *Block RAM Tiles* (fractional, e.g. 1.5), which is `UtilizationReport.bram36`
as reported. Both map onto the fireflow budget kinds ``LUT FF DSP BRAM36 URAM`` of `flows.boards`.

`find_reports` locates the reports under a project folder; bad, truncated or foreign files raise
`ReportError` (a `flows.errors.UsageError`) with a message naming the file and the problem.
"""

from __future__ import annotations

import logging
import math
import os
import re
import xml.etree.ElementTree as ET
from dataclasses import asdict, dataclass, field
from pathlib import Path

from flows.errors import ReportError, UsageError

log = logging.getLogger(__name__)

RESOURCE_KINDS = ("LUT", "FF", "DSP", "BRAM36", "URAM")
"""The fireflow budget kinds (same as `flows.boards.RESOURCE_KINDS`)."""

_TIME_UNITS_NS = {"ps": 1e-3, "ns": 1.0, "us": 1e3, "ms": 1e6, "s": 1e9}


def _fail(path: Path | str, what: str) -> ReportError:
    return ReportError(f"report {path}: {what}")


# --------------------------------------------------------------------------------------------
# Data classes
# --------------------------------------------------------------------------------------------


def _pct(used: float | None, available: float | None) -> float | None:
    if used is None or not available:
        return None
    return 100.0 * used / available


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
        return {k: _pct(v, avail.get(k)) for k, v in self.resources().items()}

    def to_dict(self) -> dict:
        d = asdict(self)
        d["bram36"] = self.bram36
        d["timing_met"] = self.timing_met
        d["fmax_mhz"] = self.fmax_mhz
        d["resources"] = self.resources()
        d["available_resources"] = self.available_resources()
        d["utilization_pct"] = self.utilization_pct()
        return d


@dataclass
class UtilizationReport:
    """Figures of one Vivado ``report_utilization`` output.

    `bram36` is the *Block RAM Tile* count (36 Kb units, may be fractional like 1.5); `ramb36`
    and `ramb18` are the primitive counts in brackets. `uram` is None on parts without UltraRAM
    (7-series reports have no URAM row).
    """

    path: str
    tool_version: str | None
    design: str | None
    device: str | None
    design_state: str | None
    lut: float
    ff: float
    dsp: float
    bram36: float
    ramb36: float | None
    ramb18: float | None
    uram: float | None
    available: dict[str, float] = field(default_factory=dict)
    """Available resources in the fireflow budget kinds (only those with a row in the report)."""
    source: str = "vivado"

    @property
    def is_empty(self) -> bool:
        """True for an all-zero report, e.g. a block-design wrapper whose IPs are black boxes."""
        return not any(v for v in (self.lut, self.ff, self.dsp, self.bram36, self.uram))

    def resources(self) -> dict[str, float]:
        return {"LUT": self.lut, "FF": self.ff, "DSP": self.dsp, "BRAM36": self.bram36, "URAM": self.uram or 0}

    def utilization_pct(self) -> dict[str, float | None]:
        return {k: _pct(v, self.available.get(k)) for k, v in self.resources().items()}

    def to_dict(self) -> dict:
        d = asdict(self)
        d["is_empty"] = self.is_empty
        d["resources"] = self.resources()
        d["utilization_pct"] = self.utilization_pct()
        return d


# --------------------------------------------------------------------------------------------
# Small helpers
# --------------------------------------------------------------------------------------------


def _read_text(path: Path) -> str:
    if not path.exists():
        raise _fail(path, "file not found")
    if not path.is_file():
        raise _fail(path, "not a regular file")
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        raise _fail(path, f"cannot be read ({exc.strerror or exc})") from None


def _num(text: str | None) -> float | None:
    """A number from a report cell: '1.5' -> 1.5, '-' / '' / 'undef' / '?' -> None, '~0' -> 0."""
    if text is None:
        return None
    t = text.strip().replace(",", "")
    if t in ("", "-", "?", "undef", "N/A", "NA"):
        return None
    if t.startswith("~"):
        t = t[1:]
    if t.startswith("<"):  # '<0.01' in utilization percentages
        t = t[1:]
    t = t.rstrip("%")
    try:
        value = float(t)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def _int(text: str | None) -> int | None:
    value = _num(text)
    return None if value is None else int(round(value))


def _count(value: float | None) -> float:
    """A resource count: None ('-') is 0, integral floats become ints."""
    if value is None:
        return 0
    return int(value) if float(value).is_integer() else value


def _time_ns(text: str | None, unit: str | None = None) -> float | None:
    """'5.00 ns' / '0.137 us' / ('136.896', 'ns') -> nanoseconds."""
    if text is None:
        return None
    m = re.match(r"^\s*([-+0-9.eE]+)\s*([a-z]*)\s*$", text.strip())
    if not m:
        return None
    value = _num(m.group(1))
    if value is None:
        return None
    u = (m.group(2) or unit or "ns").strip().lower()
    if u not in _TIME_UNITS_NS:
        return None
    return round(value * _TIME_UNITS_NS[u], 6)


def _version(text: str | None) -> str | None:
    if not text:
        return None
    m = re.search(r"(\d{4}\.\d+(?:\.\d+)?)", text)
    return m.group(1) if m else text.strip() or None


def _cells(line: str) -> list[str]:
    """The cells of a '|a|b|c|' table row."""
    s = line.strip()
    if not s.startswith("|"):
        return []
    parts = s.split("|")
    return [p.strip() for p in parts[1:-1]] if s.endswith("|") else [p.strip() for p in parts[1:]]


# --------------------------------------------------------------------------------------------
# HLS csynth XML
# --------------------------------------------------------------------------------------------


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
            value = _int(child.text)
            out[key] = 0 if value is None else value
    return out


def parse_csynth_xml(path: str | Path) -> HLSReport:
    """Parse a ``<top>_csynth.xml`` (or a solution-level ``csynth.xml``) of Vivado or Vitis HLS."""
    path = Path(path)
    _read_text(path)  # existence / readability, with clear messages
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError as exc:
        line, col = getattr(exc, "position", (None, None))
        raise _fail(path, f"truncated or malformed XML (parser stopped at line {line}, column {col})") from None
    if root.tag != "profile":
        raise _fail(path, f"not an HLS csynth report (root element <{root.tag}>, expected <profile>)")
    user = root.find("UserAssignments")
    perf = root.find("PerformanceEstimates")
    area = root.find("AreaEstimates")
    if user is None or perf is None or area is None or area.find("Resources") is None:
        raise _fail(
            path,
            "not an HLS csynth report (missing <UserAssignments>, <PerformanceEstimates> or <AreaEstimates>)",
        )

    version = _version(_xml_text(root, "ReportVersion/Version"))
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

    ii_min = _int(_xml_text(lat, "Interval-min"))
    ii_max = _int(_xml_text(lat, "Interval-max"))
    if ii_min is None or ii_max is None:
        thr = lat.find("DataflowPipelineThroughput") if lat is not None else None
        if thr is not None and thr.find("range") is not None:
            ii_min = ii_min if ii_min is not None else _int(_xml_text(thr, "range/min"))
            ii_max = ii_max if ii_max is not None else _int(_xml_text(thr, "range/max"))
        elif thr is not None:
            ii_min = ii_min if ii_min is not None else _int(thr.text)
            ii_max = ii_max if ii_max is not None else _int(thr.text)
        pii = _int(_xml_text(lat, "PipelineInitiationInterval"))
        ii_min = ii_min if ii_min is not None else pii
        ii_max = ii_max if ii_max is not None else pii

    top = _xml_text(user, "TopModelName")
    if not top:
        raise _fail(path, "no <TopModelName> in <UserAssignments>")
    return HLSReport(
        path=str(path),
        format="xml",
        tool="vitis" if is_vitis else "vivado",
        tool_version=version,
        top=top,
        part=_xml_text(user, "Part"),
        target_clock_ns=_time_ns(_xml_text(user, "TargetClockPeriod"), unit),
        estimated_clock_ns=_time_ns(_xml_text(timing, "EstimatedClockPeriod"), t_unit),
        clock_uncertainty_ns=_time_ns(_xml_text(user, "ClockUncertainty"), unit),
        latency_min=_int(_xml_text(lat, "Best-caseLatency")),
        latency_max=_int(_xml_text(lat, "Worst-caseLatency")),
        interval_min=ii_min,
        interval_max=ii_max,
        pipeline_type=_xml_text(perf, "PipelineType"),
        lut=used.get("LUT", 0),
        ff=used.get("FF", 0),
        dsp=used.get("DSP", 0),
        bram_18k=used.get("BRAM_18K", 0),
        uram=used.get("URAM", 0),
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
    text = _read_text(path)
    m = _RPT_TITLE.search(text)
    if not m:
        if re.search(r"^==\s*Synthesis Summary Report", text, re.M):
            raise _fail(
                path,
                "this is the solution-level Vitis 'Synthesis Summary Report' (csynth.rpt); "
                "parse the top-level <top>_csynth.rpt or <top>_csynth.xml instead",
            )
        raise _fail(path, "not an HLS csynth report (no '== Vivado/Vitis HLS Report for ...' title)")
    tool, top = m.group(1).lower(), m.group(2)

    def header(key: str) -> str | None:
        hm = re.search(rf"^\*\s*{re.escape(key)}:\s*(.+?)\s*$", text, re.M)
        return hm.group(1) if hm else None

    perf = _section(text, "Performance Estimates")
    util = _section(text, "Utilization Estimates")
    if not perf or not util:
        raise _fail(path, "truncated HLS report: no 'Performance Estimates' or 'Utilization Estimates' section")

    # Timing summary: | ap_clk | 10.00 ns | 0.137 us | 1.25 ns |
    target = estimated = uncertainty = None
    plines = perf.splitlines()
    for i, line in enumerate(plines):
        cells = _cells(line)
        if len(cells) >= 3 and cells[0] == "Clock" and cells[1] == "Target":
            for row in plines[i + 1 :]:
                rc = _cells(row)
                if len(rc) >= 3:
                    target, estimated = _time_ns(rc[1]), _time_ns(rc[2])
                    uncertainty = _time_ns(rc[3]) if len(rc) > 3 else None
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
            cells = _cells(line)
            if len(cells) >= 7 and (cells[0] == "?" or _num(cells[0]) is not None):
                lat_min, lat_max = _int(cells[0]), _int(cells[1])
                ii_min, ii_max = _int(cells[4]), _int(cells[5])
                pipeline = cells[6] or None
                break
    if target is None and lat_min is None:
        raise _fail(path, "no timing or latency summary table found (truncated or unknown format)")

    # Utilization summary: header '| Name | BRAM_18K | DSP48E | FF | LUT | URAM |'
    columns: list[str] | None = None
    rows: dict[str, list[str]] = {}
    for line in util.splitlines():
        if line.strip().startswith("+ Detail"):
            break
        cells = _cells(line)
        if not cells:
            continue
        if cells[0] == "Name" and columns is None:
            columns = ["DSP" if c in ("DSP48E", "DSP48") else c for c in cells[1:]]
            continue
        if columns is not None and cells[0] not in rows:
            rows[cells[0]] = cells[1:]
    if columns is None or "Total" not in rows:
        raise _fail(path, "no utilization summary table with a 'Total' row found (truncated or unknown format)")

    def as_resources(values: list[str] | None) -> dict[str, int]:
        if values is None:
            return {}
        out = {}
        for col, cell in zip(columns, values):
            if col in ("BRAM_18K", "DSP", "FF", "LUT", "URAM"):
                v = _int(cell)
                out[col] = 0 if v is None else v
        return out

    used = as_resources(rows.get("Total"))
    available = as_resources(rows.get("Available"))
    return HLSReport(
        path=str(path),
        format="rpt",
        tool=tool,
        tool_version=_version(header("Version")),
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
        lut=used.get("LUT", 0),
        ff=used.get("FF", 0),
        dsp=used.get("DSP", 0),
        bram_18k=used.get("BRAM_18K", 0),
        uram=used.get("URAM", 0),
        available=available,
    )


def parse_csynth(path: str | Path) -> HLSReport:
    """Parse a csynth report, XML or text, chosen by the file suffix."""
    path = Path(path)
    if path.suffix.lower() == ".xml":
        return parse_csynth_xml(path)
    return parse_csynth_rpt(path)


# --------------------------------------------------------------------------------------------
# Vivado report_utilization
# --------------------------------------------------------------------------------------------

_UTIL_ROWS = {
    "Slice LUTs": "LUT",
    "CLB LUTs": "LUT",
    "Slice Registers": "FF",
    "CLB Registers": "FF",
    "Block RAM Tile": "BRAM36",
    "RAMB36/FIFO": "RAMB36",
    "RAMB18": "RAMB18",
    "DSPs": "DSP",
    "URAM": "URAM",
}


def parse_utilization(path: str | Path) -> UtilizationReport:
    """Parse a Vivado ``report_utilization`` output (synthesized, optimized, placed or routed)."""
    path = Path(path)
    text = _read_text(path)
    if "report_utilization" not in text and "Utilization Design Information" not in text:
        raise _fail(path, "not a Vivado report_utilization output (no 'Utilization Design Information')")

    meta: dict[str, str] = {}
    for line in text.splitlines()[:40]:
        hm = re.match(r"^\|\s*([A-Za-z][A-Za-z ]*?)\s*:\s*(.*?)\s*$", line)
        if hm and hm.group(1) not in meta:
            meta[hm.group(1)] = hm.group(2)

    found: dict[str, tuple[float | None, float | None]] = {}
    header: list[str] | None = None
    for line in text.splitlines():
        cells = _cells(line)
        if not cells:
            if not line.strip().startswith("+"):
                header = None  # a table ends at the first line that is neither row nor rule
            continue
        if cells[0] == "Site Type":
            header = cells
            continue
        if header is None or "Used" not in header:
            continue  # e.g. the per-SLR tables, whose columns mean other things
        name = cells[0].rstrip("*").strip()
        kind = _UTIL_ROWS.get(name)
        if kind is None or kind in found:
            continue  # first match only: placed reports list Slice Registers twice
        row = dict(zip(header, cells))
        found[kind] = (_num(row.get("Used")), _num(row.get("Available")))

    if "LUT" not in found or "FF" not in found:
        raise _fail(
            path,
            "no 'Slice LUTs'/'CLB LUTs' and 'Slice Registers'/'CLB Registers' rows found "
            "(truncated report or unknown format)",
        )

    def used(kind: str) -> float | None:
        return found[kind][0] if kind in found else None

    available = {k: _count(found[k][1]) for k in RESOURCE_KINDS if k in found and found[k][1] is not None}
    return UtilizationReport(
        path=str(path),
        tool_version=_version(meta.get("Tool Version")),
        design=meta.get("Design"),
        device=meta.get("Device"),
        design_state=meta.get("Design State"),
        lut=_count(used("LUT")),
        ff=_count(used("FF")),
        dsp=_count(used("DSP")),
        bram36=_count(used("BRAM36")),
        ramb36=_count(used("RAMB36")) if "RAMB36" in found else None,
        ramb18=_count(used("RAMB18")) if "RAMB18" in found else None,
        uram=_count(used("URAM")) if "URAM" in found else None,
        available=available,
    )


# --------------------------------------------------------------------------------------------
# Auto-detection
# --------------------------------------------------------------------------------------------


def parse_report(path: str | Path) -> HLSReport | UtilizationReport:
    """Parse any supported report, telling the kind from its content."""
    path = Path(path)
    if path.suffix.lower() == ".xml":
        return parse_csynth_xml(path)
    text = _read_text(path)
    if _RPT_TITLE.search(text) or re.search(r"^==\s*Synthesis Summary Report", text, re.M):
        return parse_csynth_rpt(path)
    if "report_utilization" in text or "Utilization Design Information" in text:
        return parse_utilization(path)
    raise _fail(path, "not a known report (expected an HLS csynth report or a Vivado report_utilization output)")


# --------------------------------------------------------------------------------------------
# Locating reports in a project folder
# --------------------------------------------------------------------------------------------

UTILIZATION_ROLES = ("ip_ooc", "synth", "utilization", "system_impl", "system_synth", "wrapper_blackbox")
"""Roles of utilization reports, in order of preference for the figures of the HLS IP:

* ``ip_ooc``: out-of-context synthesis of the HLS IP in a block design
  (``*_myproject_axi_0_N_synth_1/*_utilization_synth.rpt``): the IP alone.
* ``synth``: hls4ml's ``vivado_synth.rpt`` (Vivado synthesis of the IP, ``vsynth=True``).
* ``utilization``: another report at project level (e.g. ``vivado_utilization.rpt``).
* ``system_impl``: placed/routed whole system (PS, DMA, interconnect and IP) under ``impl_N``.
* ``system_synth``: global synthesis of the whole system under ``synth_N``.
* ``wrapper_blackbox``: the ``synth_N`` wrapper report of a block design whose IPs were synthesized
  out of context: it counts them as black boxes (all zeros) and is never the preferred figure.
"""

_SKIP_DIRS = {".git", ".venv", "venv", "__pycache__", "node_modules", ".Xil", ".ipynb_checkpoints"}
_SKIP_SUFFIXES = (".cache", ".srcs", ".gen", ".ip_user_files", ".hw", ".sim", ".tmp")
_MAX_DEPTH = 10


@dataclass(frozen=True)
class FoundHLSReport:
    """A top-level csynth report located in a project; `fallback` is the .rpt beside a chosen .xml."""

    project: str  # folder holding <name>_prj, relative to the search root ('.' for the root)
    top: str
    path: Path
    fallback: Path | None = None

    @property
    def label(self) -> str:
        return self.top if self.project == "." else f"{self.project}:{self.top}"


@dataclass(frozen=True)
class FoundUtilizationReport:
    """A Vivado report_utilization output located in a project, with its role (see UTILIZATION_ROLES)."""

    path: Path
    role: str

    @property
    def rank(self) -> int:
        return UTILIZATION_ROLES.index(self.role)


@dataclass
class FoundReports:
    root: Path
    hls: list[FoundHLSReport] = field(default_factory=list)
    utilization: list[FoundUtilizationReport] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.hls or self.utilization)


def _walk(root: Path):
    """os.walk with pruning of tool caches and a depth limit; yields (dir, dirnames, filenames)."""
    base_depth = len(root.parts)
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        d = Path(dirpath)
        depth = len(d.parts) - base_depth
        dirnames[:] = sorted(
            n for n in dirnames if n not in _SKIP_DIRS and not n.endswith(_SKIP_SUFFIXES) and depth < _MAX_DEPTH
        )
        yield d, dirnames, sorted(filenames)


def _is_util_name(name: str) -> bool:
    n = name.lower()
    if not n.endswith(".rpt") or "hier" in n:
        return False
    return n == "vivado_synth.rpt" or "utilization" in n


def _tops_in(report_dir: Path, prj_name: str | None) -> list[tuple[str, Path, Path | None]]:
    """(top, chosen report, fallback) for the top-level reports of one syn/report folder."""
    files = {p.name for p in report_dir.iterdir() if p.is_file()}

    def pick(top: str) -> tuple[str, Path, Path | None] | None:
        xml, rpt = f"{top}_csynth.xml", f"{top}_csynth.rpt"
        if xml in files:
            return top, report_dir / xml, (report_dir / rpt if rpt in files else None)
        if rpt in files:
            return top, report_dir / rpt, None
        return None

    candidates: list[str] = []
    if prj_name:
        candidates += [prj_name, f"{prj_name}_axi"]
    if "csynth.xml" in files:
        # the solution-level copy names the real top (myproject_axi for VivadoAccelerator)
        try:
            top = ET.parse(report_dir / "csynth.xml").getroot().findtext("UserAssignments/TopModelName")
        except (ET.ParseError, OSError):
            top = None
        if top:
            top = top.strip()
            candidates.append(top)
            if top.endswith("_axi"):
                candidates.append(top[: -len("_axi")])
    out, seen = [], set()
    for top in candidates:
        if top in seen:
            continue
        seen.add(top)
        picked = pick(top)
        if picked:
            out.append(picked)
    if not out and "csynth.xml" in files:
        out.append(("csynth", report_dir / "csynth.xml", None))
    # the plain top first, then its AXI wrapper
    out.sort(key=lambda t: (t[0].endswith("_axi"), t[0]))
    return out


def _util_role(path: Path, runs_with_ooc: set[Path]) -> str:
    parent = path.parent.name
    if re.fullmatch(r"impl_\d+", parent):
        return "system_impl"
    if re.fullmatch(r"synth_\d+", parent):
        return "wrapper_blackbox" if path.parent.parent in runs_with_ooc else "system_synth"
    if re.search(r"_synth_\d+$", parent):
        return "ip_ooc"
    if path.name.lower() == "vivado_synth.rpt":
        return "synth"
    return "utilization"


def find_reports(project_dir: str | Path) -> FoundReports:
    """Locate the top-level csynth reports and the Vivado utilization reports under a folder.

    The folder may be an hls4ml project (holding ``<name>_prj``), a folder of several projects or
    a ``<name>_prj`` itself. For each ``<...>_prj/solution*/syn/report`` the top-level reports of
    ``<name>`` and, with VivadoAccelerator, ``<name>_axi`` are returned (XML preferred, .rpt as
    fallback), never the per-module reports of the same folder. Utilization reports come ordered
    by preference (`UTILIZATION_ROLES`): the IP's out-of-context synthesis first, an all-zero
    block-design wrapper report last.
    """
    root = Path(project_dir)
    if not root.exists():
        raise UsageError(f"project folder {root} does not exist")
    if not root.is_dir():
        raise UsageError(f"{root} is not a folder")
    found = FoundReports(root=root)
    util_paths: list[Path] = []
    for d, dirnames, filenames in _walk(root):
        if d.name == "report" and d.parent.name == "syn":
            solution = d.parent.parent
            prj = solution.parent
            prj_name = prj.name[: -len("_prj")] if prj.name.endswith("_prj") else None
            project = prj.parent
            rel = "." if project == root or project in root.parents else str(project.relative_to(root))
            for top, path, fallback in _tops_in(d, prj_name):
                found.hls.append(FoundHLSReport(project=rel, top=top, path=path, fallback=fallback))
            dirnames[:] = []
            continue
        if d.name in ("csim", "sim", "impl") and d.parent.name.startswith("solution"):
            dirnames[:] = []  # HLS simulation and IP export folders
            continue
        util_paths += [d / f for f in filenames if _is_util_name(f)]

    runs_with_ooc = {
        p.parent.parent
        for p in util_paths
        if re.search(r"_synth_\d+$", p.parent.name) and not re.fullmatch(r"synth_\d+", p.parent.name)
    }
    utils = [FoundUtilizationReport(path=p, role=_util_role(p, runs_with_ooc)) for p in util_paths]
    found.utilization = sorted(utils, key=lambda u: (u.rank, str(u.path)))
    log.debug("found %d HLS and %d utilization reports under %s", len(found.hls), len(utils), root)
    return found
