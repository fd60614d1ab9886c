"""Calibrate and validate the analytical estimator (`flows/estimator/`) against real HLS reports.

The reports are the public hls4ml projects in ``../shared/reports`` (see its MANIFEST.md): csynth
top-level reports (Vivado HLS 2019.2-2020.1, Vitis HLS 2021.1-2025.1) and, where present, Vivado
``report_utilization``. The runs and their hand-rebuilt networks are data
(``flows/estimator/reference_runs.json``); this script estimates each run with the committed
calibration, compares LUT, FF, DSP, BRAM36 (csynth's BRAM_18K / 2), latency and II with the
reports, and writes ``bench/results/estimator.{json,md}``.

    python bench/estimator.py            # evaluate the committed calibration, cross-validate, write results
    python bench/estimator.py --fit      # refit the constants on all runs, write flows/estimator/calibration.json
    python bench/estimator.py --no-cv    # skip the leave-one-network-out cross-validation

The committed constants are fitted on every run; generalization is measured by leave-one-network-out
cross-validation (each network's runs estimated with constants fitted on the other networks), whose
medians become the expected error the build reports quote (refreshed by ``--fit``). Relative error is
``(estimate - real) / max(real, 1)``. The script exits 0 and says so when ``../shared/reports`` is absent.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from flows.estimator.calibration import CALIBRATION_FILE, load_calibrations, save_calibrations
from flows.estimator.evaluation import evaluate, markdown
from flows.estimator.fit import cross_validate, expected_error, fit_all
from flows.estimator.runs import METRICS, known_misses, load_reference_runs

log = logging.getLogger("bench.estimator")

ROOT = Path(__file__).resolve().parent.parent
REPORTS = ROOT.parent / "shared" / "reports"
RESULTS = ROOT / "bench" / "results"


def print_summary(result: dict) -> None:
    """Median |relative error| per tool and metric, in-sample (and cross-validated when it ran)."""
    for subset in ("vivado_hls", "vitis_hls", "all"):
        print(f"[{subset}]  median |err| in-sample" + ("" if "cv" not in result else " / cross-validated"))
        for m in METRICS:
            st = result["summary"][subset][m]
            line = f"  {m:8s} n={st['n']:2d}  {100 * st['median_abs_rel_error']:5.1f}%"
            if "cv" in result:
                cst = result["cv"]["summary"][subset][m]
                line += f" / {100 * cst['median_abs_rel_error']:5.1f}%"
                line += f"  (cv within 20%: {100 * cst['within_20pct']:3.0f}%)"
            print(line)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--fit",
        action="store_true",
        help="refit the constants on all runs first; write them to flows/estimator/calibration.json",
    )
    parser.add_argument(
        "--no-cv", action="store_true", help="skip the leave-one-network-out cross-validation (a few minutes)"
    )
    parser.add_argument("--no-write", action="store_true", help="do not write bench/results")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if not (REPORTS / "MANIFEST.md").is_file():
        print(f"SKIP: {REPORTS} is absent; the estimator bench needs the shared HLS reports.")
        return 0
    runs = load_reference_runs(REPORTS)
    calibs, expected = load_calibrations()
    if args.fit:
        save_calibrations(fit_all(calibs, runs), expected)
        calibs, expected = load_calibrations()  # evaluate what the library will load (4 significant digits)
        print(f"wrote the fitted constants to {CALIBRATION_FILE}")
    result = evaluate(calibs, runs)
    result["calibrations"] = {k: v.to_dict() for k, v in calibs.items()}
    if not args.no_cv:
        result["cv"] = cross_validate(calibs, runs)
        if args.fit:
            save_calibrations(calibs, expected_error(result["cv"]))
            print(f"wrote the cross-validated expected errors to {CALIBRATION_FILE}")
    elif args.fit:
        log.warning("expected_error in %s is not refreshed without the cross-validation", CALIBRATION_FILE)
    print_summary(result)
    if not args.no_write:
        RESULTS.mkdir(parents=True, exist_ok=True)
        (RESULTS / "estimator.json").write_text(json.dumps(result, indent=1) + "\n")
        (RESULTS / "estimator.md").write_text(markdown(result, calibs, known_misses()))
        print(f"wrote {RESULTS / 'estimator.json'} and {RESULTS / 'estimator.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
