"""Logging set-up shared by the command lines and the build: quiet libraries, and the build folder's log.

`quiet_libraries()` must run before torch is imported: torch logs a CUDA warning at import time
that says nothing to a user of the flow and would break the one-line error contract of the CLI.

`build_log(folder)` (used by `flows.api.run_build` for the duration of a build) appends the full log
of the flow's own loggers (`fireflow`, `flows.*`, `models.*`) at DEBUG level to `<folder>/build.log`,
and the traceback of a failure, while every other handler (the terminal) sees exactly what it saw
before: the loggers are lowered to DEBUG for the file only, and a filter on the other handlers drops
the records the lowering would add. Handler, filter and levels are removed again when the build ends.
"""

from __future__ import annotations

import logging
import os
import sys
import traceback
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

NOISY = ("torch.utils.cpp_extension", "brevitas", "qonnx", "hls4ml", "onnx", "matplotlib")
FLOW_LOGGERS = ("fireflow", "flows", "models")  # the flow's own loggers: build.log records them at DEBUG
BUILD_LOG = "build.log"
LOG_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"


def quiet_libraries() -> None:
    """Silence third-party chatter that says nothing to a user of the flow."""
    warnings.filterwarnings("ignore")
    for name in NOISY:
        logging.getLogger(name).setLevel(logging.ERROR)
    os.environ.setdefault("ORT_LOGGING_LEVEL", "3")


class _KeepLevels(logging.Filter):
    """On the handlers that were there before: pass a flow record only at the level its logger had
    before the build lowered the flow's top loggers (`levels`: their own levels then)."""

    def __init__(self, levels: dict[str, int]):
        super().__init__()
        self.levels = levels

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name.split(".", 1)[0] not in self.levels:
            return True
        logger: logging.Logger | None = logging.getLogger(record.name)
        while logger is not None:  # the effective level, with the top loggers' levels as they were
            level = self.levels.get(logger.name, logger.level)
            if level:
                return record.levelno >= level
            logger = logger.parent
        return record.levelno >= logging.WARNING


def _handlers_above(logger: logging.Logger) -> list[logging.Handler]:
    found, current = [], logger
    while current is not None:
        found += current.handlers
        current = current.parent if current.propagate else None
    return found


@contextmanager
def build_log(folder: Path | str) -> Iterator[Path]:
    """Append the flow's DEBUG log, and a failure's traceback, to `<folder>/build.log` while the block runs."""
    path = Path(folder) / BUILD_LOG
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setLevel(logging.DEBUG)
    handler.setFormatter(logging.Formatter(LOG_FORMAT, "%Y-%m-%d %H:%M:%S"))
    loggers = [logging.getLogger(name) for name in FLOW_LOGGERS]
    levels = {lg.name: lg.level for lg in loggers}
    keep = _KeepLevels(dict(levels))
    others = {h for lg in loggers for h in _handlers_above(lg)}
    # a logger without any handler used logging's last resort (warnings to stderr): keep it so
    fallback = [lg for lg in loggers if not _handlers_above(lg) and logging.lastResort is not None]
    for h in others:
        h.addFilter(keep)
    for lg in loggers:
        lg.addHandler(handler)
        if lg in fallback:
            lg.addHandler(logging.lastResort)
        lg.setLevel(logging.DEBUG)
    started = datetime.now(timezone.utc).isoformat(timespec="seconds")
    handler.stream.write(f"==== build started {started}: {' '.join(sys.argv)}\n")
    handler.flush()
    try:
        yield path
    except BaseException as exc:
        text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
        handler.stream.write(f"==== build failed: {type(exc).__name__}: {exc}\n{text}")
        raise
    else:
        handler.stream.write("==== build finished\n")
    finally:
        for lg in loggers:
            lg.removeHandler(handler)
            if lg in fallback:
                lg.removeHandler(logging.lastResort)
            lg.setLevel(levels[lg.name])
        for h in others:
            h.removeFilter(keep)
        handler.close()
