"""Shared pieces of the report parsers: reading a report with clear errors, and report cells.

The HLS csynth and Vivado utilization parsers both read fixed-width text tables (``|a|b|c|`` rows)
whose cells hold numbers in several spellings (``~0``, ``<0.01``, ``-``, ``12.5%``), times with a
unit (``5.00 ns``, ``0.137 us``) and tool versions inside longer strings. These helpers turn such
cells into Python values; `report_error` builds the `ReportError` every parser raises.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

from flows.errors import ReportError

TIME_UNITS_NS = {"ps": 1e-3, "ns": 1.0, "us": 1e3, "ms": 1e6, "s": 1e9}


def report_error(path: Path | str, what: str) -> ReportError:
    """The error for a report that cannot be used: ``report <path>: <what>``."""
    return ReportError(f"report {path}: {what}")


def read_text(path: Path) -> str:
    """The text of a report file; a missing, non-regular or unreadable file raises `ReportError`."""
    if not path.exists():
        raise report_error(path, "file not found")
    if not path.is_file():
        raise report_error(path, "not a regular file")
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        raise report_error(path, f"cannot be read ({exc.strerror or exc})") from None


def percent(used: float | None, available: float | None) -> float | None:
    """``100 * used / available``, or None when either is unknown (or nothing is available)."""
    if used is None or not available:
        return None
    return 100.0 * used / available


def number(text: str | None) -> float | None:
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


def integer(text: str | None) -> int | None:
    """`number`, rounded to an int."""
    value = number(text)
    return None if value is None else int(round(value))


def count(value: float | None) -> float:
    """A resource count: None ('-') is 0, integral floats become ints."""
    if value is None:
        return 0
    return int(value) if float(value).is_integer() else value


def time_ns(text: str | None, unit: str | None = None) -> float | None:
    """'5.00 ns' / '0.137 us' / ('136.896', 'ns') -> nanoseconds."""
    if text is None:
        return None
    m = re.match(r"^\s*([-+0-9.eE]+)\s*([a-z]*)\s*$", text.strip())
    if not m:
        return None
    value = number(m.group(1))
    if value is None:
        return None
    u = (m.group(2) or unit or "ns").strip().lower()
    if u not in TIME_UNITS_NS:
        return None
    return round(value * TIME_UNITS_NS[u], 6)


def tool_version(text: str | None) -> str | None:
    """The ``YYYY.N[.N]`` version inside a version string, else the stripped string (None if empty)."""
    if not text:
        return None
    m = re.search(r"(\d{4}\.\d+(?:\.\d+)?)", text)
    return m.group(1) if m else text.strip() or None


def table_cells(line: str) -> list[str]:
    """The cells of a '|a|b|c|' table row (empty for a line that is not a row)."""
    s = line.strip()
    if not s.startswith("|"):
        return []
    parts = s.split("|")
    return [p.strip() for p in parts[1:-1]] if s.endswith("|") else [p.strip() for p in parts[1:]]
