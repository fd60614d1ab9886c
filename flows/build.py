"""Command line of the build: `python flows/build.py MODEL --board BOARD [options]` (`fireflow-build`).

Thin by design: it parses arguments into overrides of the typed `BuildConfig` and calls the Python
API, `flows.api.run_build`, which runs the named step list of `flows/flow.py`:

    from flows.api import run_build
    report = run_build("lenet5_fire", "pynq-z2", overrides={"train.epochs": 3})

Errors the user can fix print one line and exit non-zero (2 for bad input), without a traceback.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from flows.logs import quiet_libraries  # noqa: E402

quiet_libraries()  # before torch is imported (through flows.api): its import-time warnings break one-line errors

from flows.api import resolve_config, run_build  # noqa: E402
from flows.boards import available_boards, load_board  # noqa: E402
from flows.config import parse_override  # noqa: E402
from flows.errors import FlowError, UsageError  # noqa: E402
from flows.flow import step_names_for  # noqa: E402
from models import MODELS  # noqa: E402

# `flows.build.run_build` was the documented API before `flows.api`; kept as an alias for users' scripts
__all__ = ["main", "quiet_libraries", "resolve_config", "run_build"]


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
    p.add_argument(
        "--dataset",
        help="mnist (default), fashion_mnist, cifar10, digits, synthetic, or your own: an image folder "
        "(DIR/train/<class>/, DIR/test/<class>/ or DIR/<class>/) or an .npz with x_train, y_train, x_test, y_test",
    )
    p.add_argument("--out", help="build folder (default hls/<model>-<board>)")
    p.add_argument("--epochs", type=int, help="float training epochs")
    p.add_argument("--qat-epochs", type=int, help="quantization-aware fine-tuning epochs")
    p.add_argument("--seed", type=int, help="random seed (default 0)")
    p.add_argument("--io-type", choices=["io_stream", "io_parallel"], help="hls4ml I/O type")
    p.add_argument("--csim-samples", type=int, help="test images through the C simulation (default: all)")
    p.add_argument("--synth", action="store_true", help="run Vivado/Vitis HLS synthesis (tool must be on PATH)")
    p.add_argument(
        "--bitstream",
        action="store_true",
        help="PYNQ boards: build the overlay (.bit + .hwh into deploy/) with Vivado; skipped with a message without it",
    )
    p.add_argument(
        "--max-accuracy-drop",
        type=float,
        metavar="PP",
        help="choose pruning, bit widths and structure for the least hardware within PP points of float (validation)",
    )
    p.add_argument(
        "--device", choices=["auto", "cpu", "cuda"], help="train and evaluate on (default auto: cuda when available)"
    )
    p.add_argument("--tensorboard", action="store_true", help="log every training epoch to <build>/tensorboard")
    p.add_argument(
        "--weights",
        metavar="FILE",
        help="trained weights (a state dict: torch.save of model.state_dict(), or .safetensors) loaded instead of "
        "float training",
    )
    p.add_argument("--config", help="a config.json or config.yaml (e.g. from an earlier build) to start from")
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
        "train.weights": str(Path(args.weights).resolve()) if args.weights else None,
        "train.device": args.device,
        "search.max_accuracy_drop": args.max_accuracy_drop,
    }
    overrides.update({k: v for k, v in simple.items() if v is not None})
    if args.tensorboard:
        overrides["tensorboard"] = True
    if args.synth:
        overrides["hls.synth"] = True
    if args.bitstream:
        overrides["hls.bitstream"] = True
    for item in args.set:
        path, value = parse_override(item)
        overrides[".".join(path)] = value
    return overrides


def print_listing() -> None:
    print("models (default recipe: its steps and key settings):")
    for name, entry in sorted(MODELS.items()):
        print(f"  {name:14s} {entry.description}")
        cfg = resolve_config(name, "pynq-z2")
        print(f"  {'':14s} steps: {' -> '.join(step_names_for(cfg))}")
        keys = ", ".join(f"{k}={_plain(v)}" for k, v in entry.defaults.items())
        print(f"  {'':14s} recipe: {keys or 'defaults'}")
    print("boards:")
    for name in available_boards():
        b = load_board(name)
        print(f"  {name:14s} {b.part:22s} {b.backend}")


def _plain(value) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {_plain(v)}" for k, v in value.items()) + "}"
    return str(value)


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
        fmt = {k: "-" if v is None else f"{v:.4f}" for k, v in acc.items()}  # an imported QONNX file: no float
        print(
            f"{report['model']} on {report['board']}: accuracy float {fmt['float']}, quantized "
            f"{fmt['quantized']}, csim {fmt['csim']}; csim bit-exact {c['bit_exact_fraction']:.4f} "
            f"on {c['samples']} images"
        )
        print(f"report: {Path(report['hls_project']).parent / 'report.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
