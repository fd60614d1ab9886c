"""Command line of the build: `python flows/build.py MODEL --board BOARD [options]`.

Thin by design: it parses arguments into the typed `BuildConfig`, then runs the ordered steps of
`flows/steps.py` through `flows/pipeline.py`. The same functions are the Python API:

    from flows.build import run_build
    report = run_build("lenet5_fire", "pynq-z2", overrides={"train.epochs": 3})

Errors the user can fix print one line and exit non-zero (2 for bad input), without a traceback.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import warnings
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from flows.boards import available_boards, load_board  # noqa: E402
from flows.config import BuildConfig, apply_overrides, config_from_dict, load_config, parse_override  # noqa: E402
from flows.errors import FlowError, UsageError  # noqa: E402

log = logging.getLogger("fireflow")


def quiet_libraries() -> None:
    """Silence third-party chatter that says nothing to a user of the flow."""
    warnings.filterwarnings("ignore")
    for name in ("torch.utils.cpp_extension", "brevitas", "qonnx", "hls4ml", "onnx", "matplotlib"):
        logging.getLogger(name).setLevel(logging.ERROR)
    os.environ.setdefault("ORT_LOGGING_LEVEL", "3")


def resolve_config(
    model: str, board: str, overrides: dict | None = None, config_file: str | None = None
) -> BuildConfig:
    """Defaults, then the model's recipe, then a config file, then explicit overrides; validated."""
    from models import MODELS, available_models, resolve_model

    try:
        entry = resolve_model(model)
    except (KeyError, ImportError, AttributeError, ValueError):
        raise UsageError(
            f"unknown model {model!r}; valid models: {', '.join(available_models())} "
            "(or a 'package.module:function' entry point)"
        ) from None
    if board not in available_boards():
        raise UsageError(f"unknown board {board!r}; valid boards: {', '.join(available_boards())}")
    base = BuildConfig(model=model, board=board).to_dict()
    base = apply_overrides(base, entry.defaults if model in MODELS else {})
    if config_file:
        file_cfg = load_config(config_file).to_dict()
        file_cfg.update({"model": model, "board": board})
        base = file_cfg
    base = apply_overrides(base, overrides or {})
    return config_from_dict(base)


def prepare_out_dir(cfg: BuildConfig) -> Path:
    out = Path(cfg.out_dir) if cfg.out_dir else Path("hls") / f"{cfg.model.replace(':', '_')}-{cfg.board}"
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".write-test"
        probe.write_text("ok")
        probe.unlink()
    except OSError as exc:
        raise UsageError(
            f"cannot write to the output folder {out} ({exc.strerror or exc}); choose a writable one with --out DIR"
        ) from None
    return out.resolve()


def run_build(
    model: str,
    board: str,
    overrides: dict | None = None,
    config_file: str | None = None,
    force: str | None = None,
    until: str | None = None,
) -> dict:
    """Build `model` for `board`; returns report.json's content (or the metrics so far with --until)."""
    from flows.pipeline import atomic_write_text, run_steps
    from flows.steps import Build, steps_for

    cfg = resolve_config(model, board, overrides, config_file)
    out = prepare_out_dir(cfg)
    build = Build(cfg=cfg, board=load_board(board), out=out)
    atomic_write_text(out / "config.json", cfg.to_json() + "\n")
    log.info("build folder %s", out)
    run_steps(build, steps_for(cfg), force=force, until=until)
    report_path = out / "report.json"
    if until is None and report_path.exists():
        report = json.loads(report_path.read_text())
        resources = report.get("resources") or {}
        if cfg.hls.require_fit and resources and not resources.get("fits", True):
            from flows.hardware import DoesNotFitError

            explanation = (resources.get("fit") or {}).get("explanation") or "see report.md"
            raise DoesNotFitError(
                f"{explanation} (report: {out / 'report.md'}; --set hls.require_fit=false accepts it)"
            )
        return report
    return build.metrics


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="flows/build.py",
        description="Train, quantize, export and convert a CNN into a verified hls4ml HLS project.",
        epilog="Example: python flows/build.py lenet5_fire --board pynq-z2 --data-dir ../shared/data",
    )
    p.add_argument("model", nargs="?", help="model name (see --list) or package.module:function")
    p.add_argument("--board", default="pynq-z2", help="board in constraints/ (default pynq-z2)")
    p.add_argument("--data-dir", help="folder in torchvision's layout, e.g. ../shared/data (read-only is fine)")
    p.add_argument("--cache-dir", help="writable data cache (default ~/.cache/fireflow/data)")
    p.add_argument("--dataset", help="mnist (default), fashion_mnist, cifar10, digits, synthetic")
    p.add_argument("--out", help="build folder (default hls/<model>-<board>)")
    p.add_argument("--epochs", type=int, help="float training epochs")
    p.add_argument("--qat-epochs", type=int, help="quantization-aware fine-tuning epochs")
    p.add_argument("--seed", type=int, help="random seed (default 0)")
    p.add_argument("--io-type", choices=["io_stream", "io_parallel"], help="hls4ml I/O type")
    p.add_argument("--csim-samples", type=int, help="test images through the C simulation (default: all)")
    p.add_argument("--synth", action="store_true", help="run Vivado/Vitis HLS synthesis (tool must be on PATH)")
    p.add_argument("--config", help="a config.json (e.g. from an earlier build) to start from")
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override any config key, e.g. --set train.lr=0.001 --set quant.weight_bits=4",
    )
    p.add_argument("--force", metavar="STEP", help="rerun STEP and every step after it")
    p.add_argument("--until", metavar="STEP", help="stop after STEP")
    p.add_argument("--list", action="store_true", help="list models, boards and steps, then exit")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    p.add_argument("-q", "--quiet", action="store_true", help="warnings and errors only")
    return p.parse_args(argv)


def overrides_from_args(args: argparse.Namespace) -> dict:
    overrides: dict = {}
    simple = {
        "data.data_dir": args.data_dir,
        "data.cache_dir": args.cache_dir,
        "data.dataset": args.dataset,
        "out_dir": args.out,
        "train.epochs": args.epochs,
        "train.qat_epochs": args.qat_epochs,
        "seed": args.seed,
        "hls.io_type": args.io_type,
        "csim.samples": args.csim_samples,
    }
    overrides.update({k: v for k, v in simple.items() if v is not None})
    if args.synth:
        overrides["hls.synth"] = True
    for item in args.set:
        path, value = parse_override(item)
        overrides[".".join(path)] = value
    return overrides


def print_listing() -> None:
    from flows.steps import STEPS
    from models import MODELS

    print("models:")
    for name, entry in sorted(MODELS.items()):
        print(f"  {name:14s} {entry.description}")
    print("boards:")
    for name in available_boards():
        b = load_board(name)
        print(f"  {name:14s} {b.part:22s} {b.backend}")
    print(
        "steps: " + " -> ".join(s.name for s in STEPS) + " (compress.enabled adds prune -> share -> encode after train)"
    )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    level = logging.DEBUG if args.verbose else logging.WARNING if args.quiet else logging.INFO
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)-7s %(message)s", datefmt="%H:%M:%S")
    quiet_libraries()
    try:
        if args.list:
            print_listing()
            return 0
        if not args.model:
            raise UsageError(
                "no model given; e.g. python flows/build.py lenet5_fire --board pynq-z2 (--list shows all)"
            )
        report = run_build(args.model, args.board, overrides_from_args(args), args.config, args.force, args.until)
    except FlowError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("interrupted; rerun the same command to resume from the last finished step", file=sys.stderr)
        return 130
    if args.until is None and "accuracy" in report:
        acc, c = report["accuracy"], report["csim"]
        print(
            f"{report['model']} on {report['board']}: accuracy float {acc['float']:.4f}, quantized "
            f"{acc['quantized']:.4f}, csim {acc['csim']:.4f}; csim bit-exact {c['bit_exact_fraction']:.4f} "
            f"on {c['samples']} images"
        )
        print(f"report: {Path(report['hls_project']).parent / 'report.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
