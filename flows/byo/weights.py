"""Trained weights from a file (`--weights FILE`, config `train.weights`): a state dict, read without running code.

`.safetensors` files are read with safetensors (when installed); anything else with
`torch.load(weights_only=True)`, which accepts tensors and plain containers only. A checkpoint that wraps the
state dict (`{"state_dict": ...}` or `{"model": ...}`, as training scripts often save) is unwrapped, and a
`module.` prefix (DataParallel) is dropped. The state dict must match the network the train step builds: a
missing or unexpected key is a one-line error naming the first few.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from torch import nn

from flows.errors import UsageError

log = logging.getLogger(__name__)

WRAPPER_KEYS = ("state_dict", "model_state_dict", "model")


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """The tensors of a weights file; UsageError for a missing, unreadable or non-state-dict file."""
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"--weights {path}: no such file; give a state dict saved with torch.save or safetensors")
    try:
        if path.suffix == ".safetensors":
            try:
                from safetensors.torch import load_file
            except ImportError:
                raise UsageError(
                    f"--weights {path}: reading .safetensors needs the safetensors package (pip install safetensors)"
                ) from None
            state = load_file(str(path), device="cpu")
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except UsageError:
        raise
    except Exception as exc:  # pickled code, truncated or foreign bytes: torch raises many kinds
        first = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else type(exc).__name__
        raise UsageError(
            f"--weights {path} is not a readable state dict ({type(exc).__name__}: {first}); save "
            "model.state_dict() with torch.save (tensors only) or safetensors"
        ) from None
    for key in WRAPPER_KEYS:
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
            break
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise UsageError(f"--weights {path} holds a {type(state).__name__}, not a state dict of tensors")
    if state and all(k.startswith("module.") for k in state):
        state = {k[len("module.") :]: v for k, v in state.items()}
    return state


def load_weights(model: nn.Module, path: str | Path, model_name: str) -> None:
    """Load a weights file into the network as built for training; strict, one-line error on a mismatch.

    Quantizer entries (scales of a Brevitas network) may be missing: calibration sets them."""
    state = read_state_dict(path)
    expected = model.state_dict()
    missing = [k for k in expected if k not in state and "_quant" not in k]
    unexpected = [k for k in state if k not in expected]
    wrong = [k for k in state if k in expected and tuple(state[k].shape) != tuple(expected[k].shape)]
    if missing or unexpected or wrong:
        parts = []
        if missing:
            parts.append(f"missing {missing[:3]}")
        if unexpected:
            parts.append(f"unexpected {unexpected[:3]}")
        if wrong:
            k = wrong[0]
            parts.append(f"{k} has shape {tuple(state[k].shape)}, the network {tuple(expected[k].shape)}")
        raise UsageError(
            f"--weights {path} does not match model {model_name!r} ({'; '.join(parts)}); save the state dict of "
            "the same network, built for this data set's input shape and classes"
        )
    model.load_state_dict(state, strict=False)
    log.info("loaded %d tensors from %s (float training skipped)", len(state), path)
