"""Command line of design sweeps: `python flows/sweep.py MODEL --board BOARD --grid KEY=V1,V2 ...`.

Runs one build per point of the grid as Ray tasks (a local Ray instance by default, `--address` for a
cluster) with a shared step cache, so trials that differ only in `hls.*` keys restore the trained steps
instead of training again. Writes `sweep.json` (state: rerun the same command to resume), `table.json`,
`table.md`, `pareto.png` and `best_config.yaml` into `--out` (default sweeps/<model>-<board>).

    python flows/sweep.py lenet5_fire --board pynq-z2 --set data.dataset=digits \\
        --grid quant.weight_bits=4,5 --grid hls.objective=area,latency --budget 2 --objective lut

The logic is the library `flows.sweeps`; this module parses arguments and prints.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from flows.logs import quiet_libraries  # noqa: E402

quiet_libraries()

from flows.api import resolve_config, run_build  # noqa: E402
from flows.config import parse_override  # noqa: E402
from flows.errors import FlowError, UsageError  # noqa: E402
from flows.sweeps import OBJECTIVES, parse_grid, run_sweep  # noqa: E402


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="flows/sweep.py",
        description="Build many configurations of one model as Ray tasks; table, Pareto plot, best config.",
        epilog="Example: python flows/sweep.py lenet5_fire --board pynq-z2 --grid hls.objective=area,latency",
    )
    p.add_argument("model", help="model name (see flows/build.py --list)")
    p.add_argument("--board", default="pynq-z2", help="board in constraints/ (default pynq-z2)")
    p.add_argument(
        "--grid", action="append", default=[], metavar="KEY=V1,V2", help="a config key and its values (repeatable)"
    )
    p.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="a config key every trial shares"
    )
    p.add_argument("--data-dir", help="data folder for every trial (as flows/build.py --data-dir)")
    p.add_argument("--budget", type=float, metavar="PP", help="best design: at most PP points below its float model")
    p.add_argument("--objective", choices=OBJECTIVES, default="lut", help="what the best design minimises/maximises")
    p.add_argument("--address", help="Ray cluster address (default: start Ray on this machine)")
    p.add_argument("--num-cpus", type=int, help="CPUs of the local Ray instance (default: all cores)")
    p.add_argument("--gpus-per-trial", type=float, default=0.25, help="GPU share of a trial when GPUs exist")
    p.add_argument("--until", metavar="STEP", help="stop every trial after STEP (e.g. convert: estimates only)")
    p.add_argument("--retry-failed", action="store_true", help="rerun trials that failed in an earlier run")
    p.add_argument("--out", help="sweep folder (default sweeps/<model>-<board>)")
    p.add_argument("-q", "--quiet", action="store_true", help="warnings and errors only")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(
        level=logging.WARNING if args.quiet else logging.INFO,
        format="%(asctime)s %(levelname)-7s %(message)s",
        datefmt="%H:%M:%S",
    )
    quiet_libraries()
    try:
        fixed = {}
        for item in args.set:
            path, value = parse_override(item)
            fixed[".".join(path)] = value
        if args.data_dir:
            fixed["data.data_dir"] = str(Path(args.data_dir).resolve())
        grid = parse_grid(args.grid)
        if not grid:
            raise UsageError("no --grid given; e.g. --grid hls.objective=area,latency --grid quant.weight_bits=4,5")
        resolve_config(args.model, args.board, fixed)  # a bad model, board or shared key fails here, once
        out = Path(args.out or f"sweeps/{args.model.replace(':', '_')}-{args.board}")

        def progress(trial) -> None:
            what = "done" if trial.status == "done" else f"FAILED (exit {trial.exit_code})"
            print(f"trial {trial.id} {what} in {trial.seconds:.0f} s, {trial.cache_hits} step(s) from the cache: "
                  f"{trial.overrides}", flush=True)

        summary = run_sweep(
            run_build,
            args.model,
            args.board,
            grid,
            fixed,
            out,
            args.objective,
            args.budget,
            args.address,
            args.num_cpus,
            args.gpus_per_trial,
            args.retry_failed,
            progress,
            args.until,
        )
    except FlowError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("interrupted; rerun the same command to resume the sweep", file=sys.stderr)
        return 130
    trials = summary["trials"]
    failed = sum(t["status"] == "failed" for t in trials)
    print(f"{len(trials)} trials, {failed} failed, {summary['cache_hits']} step(s) restored from the step cache")
    best = summary["best"]
    if best:
        print(f"best ({args.objective}): {best['id']} {best['overrides']}: accuracy {best['accuracy']:.4f} "
              f"({best['accuracy_source']}), LUT {best['LUT'] or 0:.0f}, {best['images_per_second'] or 0:.0f} images/s")
    print(f"table: {out / 'table.md'}; plot: {out / 'pareto.png'}" + (f"; config: {out / 'best_config.yaml'}"
                                                                        if best else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
