"""The Python API of a build; `flows/build.py` is its command line.

    from flows.api import run_build
    report = run_build("lenet5_fire", "pynq-z2", overrides={"train.epochs": 3})

`resolve_config` layers the defaults, the model's recipe, a config file and explicit overrides into
one validated `BuildConfig`; `run_build` prepares the build folder, runs the steps of
`flows/flow.py` through `flows/pipeline.py` and returns report.json's content (or, with `until`, the
results of the steps so far as a dict).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from flows.atomic import atomic_write_text
from flows.boards import available_boards, load_board
from flows.config import BuildConfig, apply_overrides, config_from_dict, to_yaml
from flows.configfile import merge_config, read_config_file
from flows.context import REPORT_JSON, REPORT_MD, BuildContext
from flows.device import resolve_device
from flows.errors import DoesNotFitError, UsageError
from flows.flow import steps_for
from flows.logs import build_log, quiet_libraries
from flows.metrics import require_tensorboard, write_metrics
from flows.pipeline import run_steps
from models import MODELS, available_models, is_model_file, resolve_model

__all__ = ["prepare_out_dir", "quiet_libraries", "resolve_config", "run_build"]

log = logging.getLogger("fireflow")


def resolve_config(
    model: str, board: str, overrides: dict | None = None, config_file: str | None = None
) -> BuildConfig:
    """Defaults, then the model's recipe, then a config file (JSON or YAML; the model and board of the
    command line win over its own), then explicit overrides; validated."""
    try:
        entry = resolve_model(model)
    except KeyError:
        raise UsageError(
            f"unknown model {model!r}; valid models: {', '.join(available_models())} "
            "(or a 'package.module:function' entry point)"
        ) from None
    except ValueError as exc:
        raise UsageError(f"model {model!r}: {exc}") from None
    if board not in available_boards():
        raise UsageError(f"unknown board {board!r}; valid boards: {', '.join(available_boards())}")
    base = BuildConfig(model=model, board=board).to_dict()
    base = apply_overrides(base, entry.defaults if model in MODELS else {})
    if config_file:
        data = read_config_file(config_file)
        base = merge_config(base, {**data, "model": model, "board": board})
    base = apply_overrides(base, overrides or {})
    return config_from_dict(base)


def prepare_out_dir(cfg: BuildConfig) -> Path:
    name = Path(cfg.model).stem if is_model_file(cfg.model) else cfg.model.replace(":", "_")
    out = Path(cfg.out_dir) if cfg.out_dir else Path("hls") / f"{name}-{cfg.board}"
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
    """Build `model` for `board`; returns report.json's content (or the results so far with `until`)."""
    cfg = resolve_config(model, board, overrides, config_file)
    require_tensorboard(cfg.tensorboard)  # --tensorboard without the package, --device cuda without CUDA:
    resolve_device(cfg.train.device)  # one line before anything is written
    out = prepare_out_dir(cfg)
    ctx = BuildContext(cfg=cfg, board=load_board(board), out=out)
    atomic_write_text(out / "config.json", cfg.to_json() + "\n")
    atomic_write_text(out / "config.yaml", to_yaml(cfg))
    with build_log(out):  # build.log: the full DEBUG log and a failure's traceback (flows/logs.py)
        log.info("build folder %s", out)
        log.debug("config: %s", cfg.to_json())
        return _run_and_report(ctx, cfg, out, force, until)


def _run_and_report(ctx: BuildContext, cfg: BuildConfig, out: Path, force: str | None, until: str | None) -> dict:
    run_steps(ctx, steps_for(cfg), force=force, until=until, cache=cfg.step_cache)
    write_metrics(out, ctx.results.histories(), cfg.tensorboard)  # metrics.csv also when stages were reused
    report_path = out / REPORT_JSON
    if until is None and report_path.exists():
        report = json.loads(report_path.read_text())
        resources = report.get("resources") or {}
        if cfg.hls.require_fit and resources and not resources.get("fits", True):
            explanation = (resources.get("fit") or {}).get("explanation") or "see report.md"
            raise DoesNotFitError(f"{explanation} (report: {out / REPORT_MD}; --set hls.require_fit=false accepts it)")
        return report
    return ctx.results.to_dict()
