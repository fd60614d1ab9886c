"""Logging set-up shared by the command lines: quiet third-party libraries.

`quiet_libraries()` must run before torch is imported: torch logs a CUDA warning at import time
that says nothing to a user of the flow and would break the one-line error contract of the CLI.
"""

from __future__ import annotations

import logging
import os
import warnings

NOISY = ("torch.utils.cpp_extension", "brevitas", "qonnx", "hls4ml", "onnx", "matplotlib")


def quiet_libraries() -> None:
    """Silence third-party chatter that says nothing to a user of the flow."""
    warnings.filterwarnings("ignore")
    for name in NOISY:
        logging.getLogger(name).setLevel(logging.ERROR)
    os.environ.setdefault("ORT_LOGGING_LEVEL", "3")
