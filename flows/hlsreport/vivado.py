"""Vivado ``report_utilization`` outputs: the resources of a synthesized or implemented design.

Reads 7-series and UltraScale row names, with or without the ``Prohibited`` column, every Design
State: e.g. hls4ml's ``vivado_synth.rpt`` or the ``*_utilization_synth.rpt`` /
``*_utilization_placed.rpt`` files of a block-design run. Vivado counts 36 Kb *Block RAM Tiles*
(fractional, e.g. 1.5), which is `UtilizationReport.bram36` as reported; the figures map onto the
fireflow budget kinds of `flows.boards.RESOURCE_KINDS`. Bad, truncated or foreign files raise
`flows.errors.ReportError`.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

from flows.boards import RESOURCE_KINDS
from flows.hlsreport.common import count, number, percent, read_text, report_error, table_cells, tool_version


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
        return {k: percent(v, self.available.get(k)) for k, v in self.resources().items()}

    def to_dict(self) -> dict:
        d = asdict(self)
        d["is_empty"] = self.is_empty
        d["resources"] = self.resources()
        d["utilization_pct"] = self.utilization_pct()
        return d


# --------------------------------------------------------------------------------------------
# Small helpers
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


def is_utilization_text(text: str) -> bool:
    """True for the text of a Vivado ``report_utilization`` output."""
    return "report_utilization" in text or "Utilization Design Information" in text


def parse_utilization(path: str | Path) -> UtilizationReport:
    """Parse a Vivado ``report_utilization`` output (synthesized, optimized, placed or routed)."""
    path = Path(path)
    text = read_text(path)
    if not is_utilization_text(text):
        raise report_error(path, "not a Vivado report_utilization output (no 'Utilization Design Information')")

    meta: dict[str, str] = {}
    for line in text.splitlines()[:40]:
        hm = re.match(r"^\|\s*([A-Za-z][A-Za-z ]*?)\s*:\s*(.*?)\s*$", line)
        if hm and hm.group(1) not in meta:
            meta[hm.group(1)] = hm.group(2)

    found: dict[str, tuple[float | None, float | None]] = {}
    header: list[str] | None = None
    for line in text.splitlines():
        cells = table_cells(line)
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
        found[kind] = (number(row.get("Used")), number(row.get("Available")))

    if "LUT" not in found or "FF" not in found:
        raise report_error(
            path,
            "no 'Slice LUTs'/'CLB LUTs' and 'Slice Registers'/'CLB Registers' rows found "
            "(truncated report or unknown format)",
        )

    def used(kind: str) -> float | None:
        return found[kind][0] if kind in found else None

    available = {k: count(found[k][1]) for k in RESOURCE_KINDS if k in found and found[k][1] is not None}
    return UtilizationReport(
        path=str(path),
        tool_version=tool_version(meta.get("Tool Version")),
        design=meta.get("Design"),
        device=meta.get("Device"),
        design_state=meta.get("Design State"),
        lut=count(used("LUT")),
        ff=count(used("FF")),
        dsp=count(used("DSP")),
        bram36=count(used("BRAM36")),
        ramb36=count(used("RAMB36")) if "RAMB36" in found else None,
        ramb18=count(used("RAMB18")) if "RAMB18" in found else None,
        uram=count(used("URAM")) if "URAM" in found else None,
        available=available,
    )


# --------------------------------------------------------------------------------------------
# Auto-detection
# --------------------------------------------------------------------------------------------
