"""What a sweep remembers: one record per trial in `sweep.json`, written after every finished trial.

A killed sweep is resumed by running the same command again: trials recorded as `done` or `failed` are
kept, the others run (their build folders `trials/<id>/` resume from their last finished step). A
trial's record holds its overrides, status, exit code and error, seconds, how many steps were restored
from the step cache, and the figures the table needs (accuracy, resources, throughput, fit).
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path

from flows.atomic import atomic_write_json
from flows.errors import UsageError

log = logging.getLogger(__name__)

STATE_FILE = "sweep.json"
TRIALS_DIR = "trials"
FINISHED = ("done", "failed")


@dataclass
class TrialRecord:
    id: str
    overrides: dict
    group: str
    status: str = "pending"  # pending, done, failed
    exit_code: int | None = None
    error: str = ""
    seconds: float = 0.0
    cache_hits: int = 0  # steps restored from the shared step cache
    steps_run: int = 0  # steps that ran in this trial
    cached_steps: list[str] = field(default_factory=list)
    metrics: dict = field(default_factory=dict)  # see metrics_from_report


@dataclass
class SweepState:
    model: str
    board: str
    fixed: dict  # overrides every trial shares (--set, the sweep's own)
    trials: list[TrialRecord]

    def to_dict(self) -> dict:
        return {"version": 1, "model": self.model, "board": self.board, "fixed": self.fixed,
                "trials": [asdict(t) for t in self.trials]}

    def save(self, out: Path) -> None:
        atomic_write_json(Path(out) / STATE_FILE, self.to_dict())


def load_state(out: Path) -> SweepState | None:
    path = Path(out) / STATE_FILE
    if not path.exists():
        return None
    try:
        data = json.loads(path.read_text())
        trials = [TrialRecord(**t) for t in data["trials"]]
        return SweepState(data["model"], data["board"], dict(data["fixed"]), trials)
    except (ValueError, KeyError, TypeError) as exc:
        raise UsageError(f"{path} is not a sweep state file ({exc}); remove it or choose another --out") from None


def merge_state(old: SweepState | None, new: SweepState, retry_failed: bool = False) -> SweepState:
    """The new sweep's trials with the finished records of an earlier run of the same sweep kept."""
    if old is None:
        return new
    if (old.model, old.board, old.fixed) != (new.model, new.board, new.fixed):
        raise UsageError(
            f"the sweep folder holds another sweep ({old.model} on {old.board}, fixed {old.fixed}); "
            "choose another --out, or rerun that sweep's command to resume it"
        )
    kept = {t.id: t for t in old.trials if t.status in FINISHED and not (retry_failed and t.status == "failed")}
    return SweepState(new.model, new.board, new.fixed, [kept.get(t.id, t) for t in new.trials])


def metrics_from_report(report: dict) -> dict:
    """The figures of one finished build that the sweep table and Pareto plot use: from report.json's
    content, or from the step results of a build stopped early (`until`)."""
    if "accuracy" not in report and "train" in report:
        return metrics_from_results(report)
    acc = report.get("accuracy") or {}
    res = report.get("resources") or {}
    lat = report.get("latency") or {}
    out = {
        "accuracy_float": acc.get("float"),
        "accuracy_quantized": acc.get("quantized"),
        "accuracy_csim": acc.get("csim"),
        **hardware_figures(res, lat),
        "bit_exact": (report.get("csim") or {}).get("bit_exact_fraction"),
    }
    final = (report.get("search") or {}).get("final") or {}
    if final.get("checked"):  # --max-accuracy-drop builds check the hardware model on the validation split
        out["val_float"], out["val_quantized"] = final["val_float"], final["val_hardware"]
        return out
    val = report.get("validation") or acc.get("validation")
    if isinstance(val, dict):  # validation-split accuracies, when the build reports them
        out["val_float"] = val.get("float")
        out["val_quantized"] = val.get("quantized")
    elif isinstance(val, (int, float)):
        out["val_quantized"] = float(val)
    return out


def metrics_from_results(results: dict) -> dict:
    """The same figures from the typed step results (flows/results.py) of a build stopped before its report."""
    conv = results.get("convert") or {}
    res, lat = conv.get("resources") or {}, conv.get("latency") or {}
    return {
        "accuracy_float": (results.get("train") or {}).get("accuracy"),
        "accuracy_quantized": (results.get("qat") or {}).get("accuracy"),
        "accuracy_csim": (results.get("csim") or {}).get("accuracy_csim"),
        **hardware_figures(res, lat),
    }


def val_from_steps(build_dir: Path) -> dict:
    """Validation accuracies of the float (train) and hardware (qat) models from a build's steps.json."""
    try:
        steps = json.loads((Path(build_dir) / "steps.json").read_text()).get("steps", {})
    except (OSError, ValueError):
        return {}
    val_float = (steps.get("train") or {}).get("metrics", {}).get("val_accuracy")
    val_hw = (steps.get("qat") or {}).get("metrics", {}).get("val_accuracy")
    return {} if val_float is None or val_hw is None else {"val_float": val_float, "val_quantized": val_hw}


def cache_hits(build_dir: Path) -> tuple[list[str], int]:
    """(steps restored from the step cache, steps that ran) from a build folder's steps.json."""
    try:
        steps = json.loads((Path(build_dir) / "steps.json").read_text()).get("steps", {})
    except (OSError, ValueError):
        return [], 0
    cached = [name for name, rec in steps.items() if rec.get("cached")]
    ran = sum(1 for rec in steps.values() if rec.get("status") == "done" and not rec.get("cached")
              and not rec.get("skipped"))
    return cached, ran


def hardware_figures(res: dict, lat: dict) -> dict:
    """A trial's resources and throughput, from report.json's (or ConvertResult's) resources and latency."""
    figures = {k: res.get(k) for k in ("LUT", "FF", "DSP", "BRAM36", "fits")}
    figures["resource_source"] = res.get("source")
    return {**figures, "images_per_second": lat.get("images_per_second"), "latency_us": lat.get("latency_us")}
