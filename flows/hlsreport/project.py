"""Locating and reading the reports of a synthesized hls4ml project.

`find_reports` walks a project folder (an hls4ml project holding ``<name>_prj``, a folder of several
projects, or a ``<name>_prj`` itself) for the top-level csynth reports of each HLS top and the
Vivado ``report_utilization`` outputs, the latter ordered by preference (`UTILIZATION_ROLES`).
`load_project_reports` parses all of them into one dict (the data the ``fireflow-report`` CLI prints
and `flows.hardware` reads after synthesis); `parse_report` reads one file of either kind.
"""

from __future__ import annotations

import logging
import os
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

from flows.errors import ReportError, UsageError
from flows.hlsreport.common import read_text, report_error
from flows.hlsreport.csynth import HLSReport, is_csynth_text, parse_csynth, parse_csynth_rpt, parse_csynth_xml
from flows.hlsreport.vivado import UtilizationReport, is_utilization_text, parse_utilization

log = logging.getLogger(__name__)


def parse_report(path: str | Path) -> HLSReport | UtilizationReport:
    """Parse any supported report, telling the kind from its content."""
    path = Path(path)
    if path.suffix.lower() == ".xml":
        return parse_csynth_xml(path)
    text = read_text(path)
    if is_csynth_text(text):
        return parse_csynth_rpt(path)
    if is_utilization_text(text):
        return parse_utilization(path)
    raise report_error(path, "not a known report (expected an HLS csynth report or a Vivado report_utilization output)")


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


# --------------------------------------------------------------------------------------------
# All reports of a project, parsed
# --------------------------------------------------------------------------------------------


def _rel(path: str | Path, root: Path) -> str:
    try:
        return str(Path(path).relative_to(root))
    except ValueError:
        return str(path)


def _hls_entry(report: HLSReport, label: str, project: str, root: Path, fallback_used: bool = False) -> dict:
    entry = {"label": label, "project": project, "file": _rel(report.path, root), "fallback_used": fallback_used}
    entry.update(report.to_dict())
    return entry


def _util_entry(report: UtilizationReport, role: str, root: Path) -> dict:
    entry = {"role": role, "file": _rel(report.path, root)}
    entry.update(report.to_dict())
    return entry


def load_project_reports(dir: str | Path) -> dict:
    """Parse every top-level HLS report and Vivado utilization report under `dir`.

    Returns ``{"root", "hls": [...], "utilization": [...], "preferred_utilization", "warnings"}``;
    each HLS entry is `HLSReport.to_dict()` plus ``label``, ``project``, ``file``; each utilization
    entry is `UtilizationReport.to_dict()` plus ``role`` and ``file``. Utilization entries come in
    order of preference (`UTILIZATION_ROLES`); ``preferred_utilization`` is the
    file of the first non-empty one. Raises `UsageError` when `dir` is missing or holds no report.
    """
    root = Path(dir)
    warnings: list[str] = []
    out: dict = {"root": str(root), "hls": [], "utilization": [], "preferred_utilization": None, "warnings": warnings}
    if not root.exists():
        raise UsageError(f"{root} does not exist (expected an hls4ml project folder or a report file)")

    if root.is_file():
        report = parse_report(root)
        if isinstance(report, HLSReport):
            out["hls"].append(_hls_entry(report, report.top, ".", root.parent))
        else:
            out["utilization"].append(_util_entry(report, "utilization", root.parent))
            out["preferred_utilization"] = None if report.is_empty else root.name
        return out

    found = find_reports(root)
    if not found:
        raise UsageError(
            f"no reports found under {root}: looked for <name>_prj/solution*/syn/report/<top>_csynth.xml "
            "(or .rpt) and Vivado utilization reports (vivado_synth.rpt, *utilization*.rpt); "
            "run C synthesis first"
        )

    for item in found.hls:
        fallback_used = False
        try:
            report = parse_csynth(item.path)
        except ReportError as exc:
            if item.fallback is None:
                raise
            msg = f"{exc}; using {item.fallback.name} instead"
            log.warning(msg)
            warnings.append(msg)
            report = parse_csynth(item.fallback)
            fallback_used = True
        out["hls"].append(_hls_entry(report, item.label, item.project, root, fallback_used))

    for item in found.utilization:
        try:
            report = parse_utilization(item.path)
        except ReportError as exc:
            msg = f"skipped: {exc}"
            log.warning(msg)
            warnings.append(msg)
            continue
        role = item.role
        if role == "system_synth" and report.is_empty:
            role = "wrapper_blackbox"
        elif role == "wrapper_blackbox" and not report.is_empty:
            role = "system_synth"
        out["utilization"].append(_util_entry(report, role, root))
    out["utilization"].sort(key=lambda e: ("wrapper_blackbox" == e["role"], e["is_empty"]))
    preferred = next((e for e in out["utilization"] if not e["is_empty"]), None)
    out["preferred_utilization"] = preferred["file"] if preferred else None
    return out
