"""Shared helpers of the bench scripts: argument parsing, data location, JSON + markdown output."""

from __future__ import annotations

import argparse
import json
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent  # fireflow itself is imported from its install (pip install -e .)

RESULTS = ROOT / "bench" / "results"
SHARED_DATA = ROOT.parent / "shared" / "data"


def base_parser(description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument(
        "--data-dir",
        default=str(SHARED_DATA) if SHARED_DATA.exists() else None,
        help="torchvision-layout data folder (default ../shared/data when present)",
    )
    p.add_argument("--out", default=str(ROOT / "hls" / "bench"), help="build folders go here")
    p.add_argument("--quick", action="store_true", help="digits data and few epochs: checks the script, not the claims")
    return p


# --quick: digits and a few epochs, enough to exercise a bench script end to end (never a claim)
QUICK = {
    "data.dataset": "digits",
    "train.epochs": 4,
    "train.qat_epochs": 1,
    "train.lr": 0.005,
    "structure.epochs": 1,
    "compress.iterations": 1,
    "compress.retrain_epochs": 1,
    "compress.share_epochs": 1,
}


def build_overrides(args, **extra) -> dict:
    """Config overrides every bench build shares: --quick's recipe or --data-dir, and `extra`."""
    overrides = dict(extra)
    if getattr(args, "quick", False):
        overrides.update(QUICK)
    elif getattr(args, "data_dir", None):
        overrides["data.data_dir"] = args.data_dir
    if getattr(args, "csim_samples", None):
        overrides["csim.samples"] = args.csim_samples
    return overrides


def write_results(name: str, data: dict, markdown: str) -> tuple[Path, Path]:
    RESULTS.mkdir(parents=True, exist_ok=True)
    data = {"generated": datetime.now(timezone.utc).isoformat(timespec="seconds"), **data}
    js, md = RESULTS / f"{name}.json", RESULTS / f"{name}.md"
    js.write_text(json.dumps(data, indent=2) + "\n")
    md.write_text(markdown.rstrip() + "\n")
    return js, md


def table(headers: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)
