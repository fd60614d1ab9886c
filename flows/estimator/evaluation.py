"""How well the estimator matches the reference runs: per-run and per-layer errors, claims, the results page.

`evaluate` puts every reference run's estimate next to its csynth report (relative error
``(estimate - real) / max(real, 1)``, BRAM36 = BRAM_18K / 2) and, where present, next to Vivado's
``report_utilization``; `summarize` gives median and maximum errors per subset (`SUBSETS`) and per
layer. `CLAIMS` (in-sample) and `CV_CLAIMS` (leave-one-network-out, `flows.estimator.fit.cross_validate`)
are what the project promises, checked by `check_claims` (and by tests/test_estimate.py). `markdown`
renders ``bench/results/estimator.md``.
"""

from __future__ import annotations

import statistics
from dataclasses import fields

from flows.estimator.runs import (
    LAYER_METRICS,
    METRICS,
    VIVADO_METRICS,
    Calibrations,
    ReferenceRun,
    csynth_figures,
    estimate_run,
    layer_rows,
    rel_err,
    utilization_figures,
)

TOLERANCE = 0.20
SUBSETS = ("all", "vivado_hls", "vitis_hls", "7series_vivado_hls")
TARGET_METRICS = ("LUT", "FF", "DSP", "BRAM36", "latency")


def evaluate(calibs: Calibrations, runs: list[ReferenceRun]) -> dict:
    """Every run's estimate next to its csynth report (and Vivado report where there is one), the
    per-layer rows, and the error statistics (`summarize`): ``{"runs": [...], "summary": {...}}``."""
    rows = []
    for run in runs:
        real = csynth_figures(run.csynth_path)
        est = estimate_run(run, calibs)
        row = {
            "key": run.key,
            "folder": run.folder,
            "network": run.network,
            "tool": run.tool,
            "calibration": run.family,
            "part": run.part,
            "backend": run.backend,
            "clock_ns": run.clock_ns,
            "io_type": run.build()[0].io_type,
            "assumptions": run.assumptions,
            "estimate": {m: round(est[m], 1) for m in METRICS},
            "csynth": {m: real[m] for m in METRICS},
            "rel_error": {m: round(rel_err(est[m], real[m]), 4) for m in METRICS},
            "source": {"estimate": "estimate", "csynth": "csynth report"},
            "layers": layer_rows(run, calibs),
        }
        if run.vivado:
            viv = utilization_figures(run.root / run.folder / run.vivado)
            row["vivado"] = {"scope": run.vivado_scope, **viv}
            row["vivado_rel_error"] = {m: round(rel_err(est[m], viv[m]), 4) for m in VIVADO_METRICS}
            row["csynth_vs_vivado"] = {m: round(rel_err(real[m], viv[m]), 4) for m in VIVADO_METRICS}
        rows.append(row)
    return {"runs": rows, "summary": summarize(rows)}


def in_subset(row: dict, subset: str) -> bool:
    """Whether a run row belongs to a subset of `SUBSETS`."""
    if subset == "all":
        return True
    if subset == "7series_vivado_hls":
        return not row["part"].startswith("xcu") and row["tool"].startswith("Vivado")
    return subset == row["calibration"]


def error_stats(errs: list[float]) -> dict:
    """n, median and max |relative error|, the fraction within `TOLERANCE`, the median signed error."""
    if not errs:
        return {"n": 0}
    absd = [abs(e) for e in errs]
    return {
        "n": len(errs),
        "median_abs_rel_error": round(statistics.median(absd), 4),
        "max_abs_rel_error": round(max(absd), 4),
        "within_20pct": round(sum(a <= TOLERANCE for a in absd) / len(absd), 4),
        "median_signed_rel_error": round(statistics.median(errs), 4),
    }


def summarize(rows: list[dict]) -> dict:
    """Error statistics per subset and metric, against Vivado, csynth vs Vivado, and per layer and tool."""
    out: dict = {}
    for subset in SUBSETS:
        sel = [r for r in rows if in_subset(r, subset)]
        out[subset] = {m: error_stats([r["rel_error"][m] for r in sel]) for m in METRICS}
    viv = [r for r in rows if "vivado_rel_error" in r]
    out["vs_vivado"] = {
        m: error_stats([r["vivado_rel_error"][m] for r in viv if m in r["vivado_rel_error"]]) for m in VIVADO_METRICS
    }
    out["csynth_vs_vivado"] = {
        m: error_stats([r["csynth_vs_vivado"][m] for r in viv if m in r["csynth_vs_vivado"]]) for m in VIVADO_METRICS
    }
    layers = [(r, lay) for r in rows for lay in r["layers"]]
    out["layers"] = {
        fam: {
            m: error_stats([lay["rel_error"][m] for r, lay in layers if r["calibration"] == fam]) for m in LAYER_METRICS
        }
        for fam in ("vivado_hls", "vitis_hls")
    }
    return out


def target_sentence(summary: dict, kind: str) -> str:
    """Which metrics meet the issue's ±20 % target in the median, per subset (computed, not written)."""
    parts = []
    for subset in ("all", "vivado_hls", "vitis_hls"):
        met = [m for m in TARGET_METRICS if summary[subset][m]["median_abs_rel_error"] <= TOLERANCE]
        missed = [
            f"{m} {100 * summary[subset][m]['median_abs_rel_error']:.0f}%" for m in TARGET_METRICS if m not in met
        ]
        text = f"{subset}: " + (", ".join(met) or "none") + " within ±20 %"
        parts.append(text + (f" (missed: {', '.join(missed)})" if missed else ""))
    return f"Target (median |error| within ±20 % for {', '.join(TARGET_METRICS)}), {kind}: " + "; ".join(parts) + "."


def pct(x: float) -> str:
    """A relative error as a signed percentage."""
    return f"{100 * x:+.0f}%"


# What we claim (and tests/test_estimate.py checks) about the committed calibrations:
# (subset, metric) -> (max median |relative error|, min fraction of runs within ±20 %).
# "layers/<tool>" subsets are the per-layer comparisons with the module reports. CLAIMS are in-sample
# (checked on every test run); CV_CLAIMS are leave-one-network-out (checked by a slow test: it refits
# the constants 13 times).
CLAIMS: dict[tuple[str, str], tuple[float, float]] = {
    ("all", "LUT"): (0.20, 0.60),
    ("all", "FF"): (0.20, 0.60),
    ("all", "DSP"): (0.05, 0.65),
    ("all", "BRAM36"): (0.05, 0.85),
    ("all", "latency"): (0.20, 0.50),
    ("vivado_hls", "LUT"): (0.10, 0.85),
    ("vivado_hls", "FF"): (0.10, 0.70),
    ("vivado_hls", "DSP"): (0.05, 0.60),
    ("vivado_hls", "BRAM36"): (0.05, 0.85),
    ("vivado_hls", "latency"): (0.10, 0.60),
    ("vivado_hls", "II"): (0.05, 0.70),
    ("layers/vivado_hls", "DSP"): (0.05, 0.85),
    ("layers/vivado_hls", "BRAM36"): (0.05, 0.95),
    ("layers/vivado_hls", "latency"): (0.05, 0.70),
    ("layers/vivado_hls", "LUT"): (0.25, 0.45),
    ("vitis_hls", "LUT"): (0.30, 0.40),
    ("vitis_hls", "FF"): (0.15, 0.50),
    ("vitis_hls", "DSP"): (0.05, 0.65),
    ("vitis_hls", "BRAM36"): (0.10, 0.85),
    ("vitis_hls", "latency"): (0.25, 0.45),
}
CV_CLAIMS: dict[tuple[str, str], tuple[float, float]] = {
    ("all", "LUT"): (0.20, 0.55),
    ("all", "FF"): (0.35, 0.20),
    ("all", "DSP"): (0.05, 0.65),
    ("all", "BRAM36"): (0.05, 0.85),
    ("all", "latency"): (0.30, 0.30),
    ("vivado_hls", "LUT"): (0.15, 0.80),
    ("vivado_hls", "FF"): (0.30, 0.30),
    ("vivado_hls", "latency"): (0.10, 0.60),
}


def check_claims(summary: dict, claims: dict[tuple[str, str], tuple[float, float]] | None = None) -> list[str]:
    """The claims (default `CLAIMS`) that the summary does not meet, as readable lines (empty when all hold)."""
    failures = []
    for (subset, metric), (max_median, min_within) in (CLAIMS if claims is None else claims).items():
        node = summary
        for key in subset.split("/"):
            node = node[key]
        st = node[metric]
        if st["median_abs_rel_error"] > max_median or st["within_20pct"] < min_within:
            failures.append(
                f"{subset}/{metric}: median |err| {st['median_abs_rel_error']:.2f} (claim <= {max_median}), "
                f"within 20% {st['within_20pct']:.2f} (claim >= {min_within})"
            )
    return failures


def markdown(result: dict, calibs: Calibrations, misses: list[str]) -> str:
    """The page ``bench/results/estimator.md``: summaries, per-run errors, claims, ``misses`` (known
    misses) and the constants."""
    lines = [
        "# Estimator vs real HLS reports",
        "",
        "Generated by `python bench/estimator.py` from `../shared/reports` (see its MANIFEST.md). Estimates come "
        "from `flows/estimator/` with the calibration of the tool that made each report (`vivado_hls` or "
        "`vitis_hls` in `flows/estimator/calibration.json`); real numbers are the csynth top-level report "
        "(`myproject_axi` for VivadoAccelerator runs). Relative error = (estimate - real) / max(real, 1). "
        "BRAM36 = BRAM_18K / 2. Layer figures come from the per-module reports, or from the instance tables of "
        "the top report where the module reports were not kept.",
        "",
        "Two kinds of error. **In-sample**: the committed constants, fitted on all 23 runs (`--fit`). "
        "**Cross-validated** (leave one network out): each network's runs estimated with constants fitted "
        "without that network (runs 01/02 are one network, each sweep is one). The cross-validated figures are "
        "what to expect on a new network; the in-sample ones are optimistic.",
        "",
        "## Summary (estimate vs csynth)",
        "",
        "| subset | metric | n | in-sample median abs err | cross-validated median abs err | "
        "cross-validated within ±20% | cross-validated max abs err |",
        "|---|---|---|---|---|---|---|",
    ]
    cv = result.get("cv")
    for subset in SUBSETS:
        for m in METRICS:
            st = result["summary"][subset][m]
            if not st.get("n"):
                continue
            cst = cv["summary"][subset][m] if cv else None
            cv_cells = (
                f"{100 * cst['median_abs_rel_error']:.0f}% | {100 * cst['within_20pct']:.0f}% | "
                f"{100 * cst['max_abs_rel_error']:.0f}%"
                if cst and cst.get("n")
                else "not run | | "
            )
            lines.append(f"| {subset} | {m} | {st['n']} | {100 * st['median_abs_rel_error']:.0f}% | {cv_cells} |")
    lines += [
        "",
        "## Per layer (module reports, or the instance tables of the top report), in-sample",
        "",
        "| tool | metric | n | median abs err | within ±20% | median signed |",
        "|---|---|---|---|---|---|",
    ]
    for fam, stats in result["summary"]["layers"].items():
        for m, st in stats.items():
            if st.get("n"):
                lines.append(
                    f"| {fam} | {m} | {st['n']} | {100 * st['median_abs_rel_error']:.0f}% | "
                    f"{100 * st['within_20pct']:.0f}% | {pct(st['median_signed_rel_error'])} |"
                )
    lines += [
        "",
        "## Per run (estimate / csynth, in-sample error; cross-validated error; **x** = cross-validated outside ±20%)",
        "",
        "| run | tool, part, clock | " + " | ".join(METRICS) + " |",
        "|---|---|" + "---|" * len(METRICS),
    ]
    for r in result["runs"]:
        cells = []
        cv_err = cv["runs"].get(r["key"], {}).get("rel_error") if cv else None
        for m in METRICS:
            e, c, err = r["estimate"][m], r["csynth"][m], r["rel_error"][m]
            if cv_err:
                flag = "" if abs(cv_err[m]) <= TOLERANCE else " **x**"
                cells.append(f"{e:.0f} / {c:.0f} ({pct(err)}; {pct(cv_err[m])}){flag}")
            else:
                cells.append(f"{e:.0f} / {c:.0f} ({pct(err)})")
        lines.append(f"| {r['key']} | {r['tool']}, {r['part']}, {r['clock_ns']:g} ns | " + " | ".join(cells) + " |")
    lines += [
        "",
        "## Against Vivado report_utilization (where present)",
        "",
        "The estimator predicts csynth. Vivado's synthesis differs from csynth by the amounts in the last "
        "column (HLS over-reports LUTs; Vivado caps DSPs at the device size and moves the rest to LUTs).",
        "",
        "| run | scope | metric | estimate | Vivado | est. error | csynth vs Vivado |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in result["runs"]:
        if "vivado" not in r:
            continue
        for m in VIVADO_METRICS:
            if m not in r["vivado_rel_error"]:
                continue
            lines.append(
                f"| {r['key']} | {r['vivado']['scope']} | {m} | {r['estimate'][m]:.0f} | "
                f"{r['vivado'][m]:g} | {pct(r['vivado_rel_error'][m])} | "
                f"{pct(r['csynth_vs_vivado'][m])} |"
            )
    lines += ["", "## Assumptions per run", ""]
    for r in result["runs"]:
        if r["assumptions"]:
            lines.append(f"- {r['key']}: " + "; ".join(r["assumptions"]))
    lines += [
        "",
        "## What is claimed (checked by tests/test_estimate.py; cross-validated claims by a slow test)",
        "",
        "| kind | subset | metric | median abs err at most | within ±20% at least |",
        "|---|---|---|---|---|",
    ]
    lines += [f"| in-sample | {sub} | {m} | {100 * a:.0f}% | {100 * b:.0f}% |" for (sub, m), (a, b) in CLAIMS.items()]
    lines += [
        f"| cross-validated | {sub} | {m} | {100 * a:.0f}% | {100 * b:.0f}% |" for (sub, m), (a, b) in CV_CLAIMS.items()
    ]
    failures = check_claims(result["summary"])
    if cv:
        failures += [f"cross-validated {f}" for f in check_claims(cv["summary"], CV_CLAIMS)]
    lines += ["", "All claims hold." if not failures else "Claims that do NOT hold: " + "; ".join(failures)]
    lines += ["", target_sentence(result["summary"], "in-sample")]
    if cv:
        lines += ["", target_sentence(cv["summary"], "cross-validated")]
    lines += ["", "## Known misses", ""] + [f"- {m}" for m in misses]
    for family, calib in calibs.items():
        lines += ["", f"## Constants: {family}", "", "```"]
        lines += [f"{f.name} = {getattr(calib, f.name)!r}" for f in fields(calib)]
        lines += ["```"]
    lines.append("")
    return "\n".join(lines)
