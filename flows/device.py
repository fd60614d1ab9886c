"""Which device trains and evaluates (`train.device` / `--device`): `auto` (CUDA when available), `cpu`, `cuda`.

Only training and evaluation move: float training, structure fine-tuning, pruning retraining, centroid
fine-tuning, QAT and the per-epoch and final accuracies. Checkpoints are saved from the CPU, and export,
verification and the C-simulation comparison always run on the CPU in float64, so bit-exactness does
not depend on the device. On the CPU nothing changes: the same operations in the same order as before
the option existed, the same checkpoints byte for byte.
"""

from __future__ import annotations

import logging

import torch

from flows.errors import UsageError

log = logging.getLogger(__name__)

CPU = torch.device("cpu")


def cuda_available() -> bool:
    return bool(torch.cuda.is_available())


def resolve_device(name: str | torch.device | None) -> torch.device:
    """`auto`/None -> cuda when available else cpu; `cuda` without CUDA is a one-line UsageError."""
    if isinstance(name, torch.device):
        return name
    if name in (None, "auto"):
        return torch.device("cuda") if cuda_available() else CPU
    if name == "cpu":
        return CPU
    if name == "cuda" or (isinstance(name, str) and name.startswith("cuda:")):
        if not cuda_available():
            raise UsageError(
                f"--device {name}: no CUDA device is available to torch {torch.__version__} here; "
                "use --device cpu (or auto)"
            )
        return torch.device(name)
    raise UsageError(f"--device {name!r} is not valid; choose auto, cpu or cuda")


def describe(device: torch.device) -> str:
    if device.type == "cuda":
        return f"{device} ({torch.cuda.get_device_name(device)})"
    return str(device)
