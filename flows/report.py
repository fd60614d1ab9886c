"""CLI: print the parsed HLS and Vivado figures of a synthesized hls4ml project.

    python flows/report.py DIR [--json]

DIR is an hls4ml project folder (holding ``<name>_prj``), a folder of several projects, or one
report file. For each top-level HLS top (``myproject`` and, with VivadoAccelerator,
``myproject_axi``) it prints clock, latency, initiation interval and LUT/FF/DSP/BRAM36/URAM with the
percentage of the part's resources; then every Vivado ``report_utilization`` found, the preferred
one (the IP's own figures) first. ``--json`` prints the same data as JSON.

The data comes from `flows.hlsreport.load_project_reports` (library code reads it from there);
this module only formats it (`format_report`) and runs the command line (`main`). A build folder
that was never synthesized shows the estimate in its ``report.json`` instead.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from flows.boards import RESOURCE_KINDS  # noqa: E402
from flows.errors import FlowError, ReportError  # noqa: E402
from flows.hlsreport import load_project_reports  # noqa: E402

# --------------------------------------------------------------------------------------------
# Text output
# --------------------------------------------------------------------------------------------


def _fmt(value: float | None, digits: int = 3) -> str:
    if value is None:
        return "-"
    if float(value).is_integer():
        return str(int(value))
    return f"{value:.{digits}g}" if abs(value) < 1 else f"{value:.{digits}f}".rstrip("0").rstrip(".")


def _count(value: float | None, kind: str = "") -> str:
    """A count (resources, cycles, images/s) as an integer; estimates are fractional, so they are rounded
    (block RAM keeps its half blocks: one BRAM_18K is 0.5 BRAM36)."""
    if value is None:
        return "-"
    if kind == "BRAM36" and not float(value).is_integer():
        return f"{round(2 * value) / 2:.1f}"
    return str(round(value))


def _fmt_pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}%"


def _range(lo: int | None, hi: int | None) -> str:
    if lo is None and hi is None:
        return "-"
    if lo == hi:
        return str(lo)
    return f"{_fmt(lo)} .. {_fmt(hi)}"


_TOOL_NAMES = {"vivado": "Vivado HLS", "vitis": "Vitis HLS"}
_ROLE_NOTES = {
    "ip_ooc": "HLS IP, out-of-context synthesis",
    "synth": "HLS IP, Vivado synthesis",
    "utilization": "project-level report",
    "system_impl": "whole system (PS, DMA and IP), implemented",
    "system_synth": "whole system, synthesized",
    "wrapper_blackbox": "block-design wrapper, IPs as black boxes (all zero)",
}


def _hls_lines(e: dict) -> list[str]:
    tool = f"{_TOOL_NAMES.get(e['tool'], e['tool'])} {e['tool_version'] or '?'}"
    lines = [f"HLS {e['label']}  [{tool}, {e['part'] or '?'}]  {e['file']}"]
    target, est = e["target_clock_ns"], e["estimated_clock_ns"]
    status = {True: "met", False: "MISSED", None: "?"}[e["timing_met"]]
    fmax = f" ({e['fmax_mhz']:.1f} MHz)" if e["fmax_mhz"] else ""
    lines.append(f"  clock      target {_fmt(target)} ns, estimated {_fmt(est)} ns{fmax}, {status}")
    lat = _range(e["latency_min"], e["latency_max"])
    when = ""
    if target and e["latency_max"] is not None:
        when = f" ({_fmt(e['latency_max'] * target / 1000.0)} us at the target clock)"
    lines.append(f"  latency    {lat} cycles{when}")
    ptype = f", pipeline {e['pipeline_type']}" if e["pipeline_type"] else ""
    lines.append(f"  interval   {_range(e['interval_min'], e['interval_max'])} cycles{ptype}")
    lines.append(f"  {'resource':<9}{'used':>10}{'available':>12}{'util':>9}")
    avail = e["available_resources"]
    for kind in RESOURCE_KINDS:
        used = e["resources"][kind]
        lines.append(f"  {kind:<9}{_fmt(used):>10}{_fmt(avail.get(kind)):>12}{_fmt_pct(e['utilization_pct'][kind]):>9}")
    lines.append(f"  (BRAM36 = BRAM_18K / 2: the report says {e['bram_18k']} BRAM_18K)")
    return lines


def _util_lines(entries: list[dict], preferred: str | None) -> list[str]:
    if not entries:
        return []
    lines = ["Vivado utilization (preferred first; % of the part)"]
    for e in entries:
        mark = "*" if e["file"] == preferred else " "
        head = f"{mark} {e['role']}: {_ROLE_NOTES.get(e['role'], '')}"
        lines.append(head)
        lines.append(
            f"    {e['design'] or '?'} on {e['device'] or '?'}, {e['design_state'] or '?'}, "
            f"Vivado {e['tool_version'] or '?'}  {e['file']}"
        )
        cells = []
        for kind in RESOURCE_KINDS:
            used = e["resources"][kind] if not (kind == "URAM" and e["uram"] is None) else None
            pct = e["utilization_pct"][kind] if used is not None else None
            cells.append(f"{kind} {_fmt(used)}" + (f" ({_fmt_pct(pct)})" if pct is not None else ""))
        lines.append("    " + ", ".join(cells))
    return lines


def format_report(data: dict) -> str:
    """The table the CLI prints for `load_project_reports` data."""
    lines = [f"Project: {data['root']}", ""]
    for entry in data["hls"]:
        lines += _hls_lines(entry) + [""]
    lines += _util_lines(data["utilization"], data["preferred_utilization"])
    return "\n".join(lines).rstrip() + "\n"


# --------------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------------


def read_build_report(path: Path) -> tuple[dict, dict, dict]:
    """report.json of a build folder: (report, resources, latency), or a one-line ReportError."""
    try:
        report = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ReportError(f"{path} is not valid JSON ({reason}); rerun the build to rewrite it") from None
    except OSError as exc:
        raise ReportError(f"{path} cannot be read ({exc.strerror or exc})") from None
    if not isinstance(report, dict):
        raise ReportError(f"{path} is not a fireflow report (a JSON object); rerun the build to rewrite it")
    resources, latency = report.get("resources"), report.get("latency")
    if not resources or not latency:
        raise ReportError(f"{path} has no resources/latency section and no synthesis reports were found")
    if not isinstance(resources, dict) or not isinstance(latency, dict):
        raise ReportError(f"{path}: resources and latency must be objects; rerun the build to rewrite it")
    keys = ("source", "budget", "utilization", "fits", *RESOURCE_KINDS)
    need = [f"resources.{k}" for k in keys if k not in resources]
    need += [f"latency.{k}" for k in ("cycles", "latency_us", "ii", "images_per_second") if k not in latency]
    if need:
        raise ReportError(f"{path} lacks {', '.join(need)}; rerun the build to rewrite it")
    numbers = [resources[k] for k in RESOURCE_KINDS] + [latency[k] for k in ("cycles", "latency_us", "ii")]
    tables = (resources["budget"], resources["utilization"])
    if not all(isinstance(v, (int, float)) for v in numbers) or not all(isinstance(t, dict) for t in tables):
        raise ReportError(f"{path} holds non-numeric resource or latency figures; rerun the build to rewrite it")
    return report, resources, latency


def _print_build_estimate(path: Path, as_json: bool) -> int:
    """A build folder's report.json figures (labelled with their source, usually 'estimate')."""
    report, resources, latency = read_build_report(path)
    if as_json:
        print(json.dumps({"build": str(path.parent), "resources": resources, "latency": latency}, indent=2))
        return 0
    lines = [
        f"Build: {path.parent}  [{report.get('model')} on {report.get('board')} ({report.get('part')})]",
        f"No synthesis reports: figures below are source '{resources['source']}' (run the build with --synth "
        "where Vivado/Vitis HLS is installed for real ones)",
        f"  latency    {_count(latency['cycles'])} cycles ({_fmt(latency['latency_us'])} us)",
        f"  interval   {_count(latency['ii'])} cycles: {_count(latency['images_per_second'])} images/s",
        f"  {'resource':<9}{'used':>10}{'budget':>12}{'util':>9}",
    ]
    for kind in RESOURCE_KINDS:
        budget = resources["budget"].get(kind)
        util = 100 * resources["utilization"].get(kind, 0) if isinstance(budget, (int, float)) and budget else None
        lines.append(f"  {kind:<9}{_count(resources[kind], kind):>10}{_count(budget, kind):>12}{_fmt_pct(util):>9}")
    lines.append(f"  fits: {'yes' if resources['fits'] else 'NO'}")
    print("\n".join(lines))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="fireflow-report",
        description="Print latency, II, clock and resources of a synthesized hls4ml project "
        "(HLS csynth reports and Vivado utilization reports).",
    )
    parser.add_argument("dir", help="hls4ml project folder (holding <name>_prj), a folder of projects, or a report")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(message)s")
    build_report = Path(args.dir) / "report.json"
    try:
        try:
            data = load_project_reports(args.dir)
        except FlowError:
            if not build_report.is_file():
                raise
            # a fireflow build folder that was not synthesized: show its estimate
            return _print_build_estimate(build_report, args.json)
    except FlowError as exc:
        print(f"error: {' '.join(str(exc).split())}", file=sys.stderr)
        return exc.exit_code
    if args.json:
        print(json.dumps(data, indent=2, sort_keys=False))
    else:
        print(format_report(data), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
