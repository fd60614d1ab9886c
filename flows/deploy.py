"""From an hls4ml VivadoAccelerator project to a PYNQ board: the bitstream and the `deploy/` folder.

- `axi_stream_format(project, name)`: the stream the generated wrapper `firmware/<name>_axi.h` expects:
  N_IN and N_OUT words per image and the type of a word (`T_in`/`T_out`: float, double or fixed point),
  read from the written header, so the on-board runner always matches the hardware it drives.
- `write_deploy(folder, ...)`: `deploy/` of a build, written to a staging folder and renamed into place:
  the test inputs on the hardware's grid in its layout (`x_test.npy`), the labels (`y_test.npy`), the C
  simulation's outputs (`csim_outputs.npy`), `deploy.json` (the stream format and the file names), the
  runner `run_on_board.py` (a copy of `flows/board_runner.py`) and the overlay (`.bit` + `.hwh`) if built.
- `build_bitstream(project, name)`: what hls4ml's `VivadoAcceleratorBackend.build(csim=False, export=True,
  bitfile=True)` runs — Vivado HLS C synthesis with IP export (`build_prj.tcl`), then
  `vivado -mode batch -source design.tcl` (the block design: Zynq PS, AXI DMA, the IP) — with each
  tool's exit code checked and its output in a log; returns the `.bit` and `.hwh` it wrote.
  `bitstream_tools()` says which tools are missing (the build then skips the bitstream with a message).
"""

from __future__ import annotations

import json
import logging
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np

from flows import board_runner
from flows.errors import ToolError
from flows.hardware import find_hls_tool

log = logging.getLogger(__name__)

RUNNER = "run_on_board.py"
DEPLOY_FILE = "deploy.json"
INPUTS, LABELS, OUTPUTS = "x_test.npy", "y_test.npy", "csim_outputs.npy"
OVERLAY_NAME = "fireflow"  # deploy/fireflow.bit + deploy/fireflow.hwh (PYNQ finds the .hwh by the .bit's name)
DEFAULT_BATCH = 256

_FIXED = re.compile(r"^ap_(u?)fixed<\s*(\d+)\s*,\s*(-?\d+)[^>]*>$")
_INT = re.compile(r"^ap_(u?)int<\s*(\d+)\s*>$")


def word_spec(ctype: str) -> dict:
    """The AXI word of a wrapper type: float32/float64, or fixed point in a byte-wide integer."""
    ctype = ctype.strip()
    if ctype in ("float", "double"):
        return {"kind": "float32" if ctype == "float" else "float64", "ctype": ctype}
    fixed, integer = _FIXED.match(ctype), _INT.match(ctype)
    if fixed or integer:
        unsigned, width = (fixed or integer).group(1) == "u", int((fixed or integer).group(2))
        frac = width - int(fixed.group(3)) if fixed else 0
        if width not in (8, 16, 32, 64):
            raise ToolError(f"the AXI wrapper streams {ctype}: a word of {width} bits has no numpy type")
        return {"kind": "fixed", "ctype": ctype, "bits": width, "signed": not unsigned, "frac_bits": frac}
    raise ToolError(f"the AXI wrapper streams {ctype!r}, which the on-board runner does not know how to pack")


def axi_stream_format(project: Path, project_name: str) -> dict:
    """N_IN, N_OUT and the input/output word of the project's AXI-stream wrapper header."""
    header = Path(project) / "firmware" / f"{project_name}_axi.h"
    try:
        text = header.read_text()
    except OSError as exc:
        raise ToolError(f"{header} cannot be read ({exc.strerror or exc}): rerun the convert step") from None
    found = {
        key: re.search(pattern, text)
        for key, pattern in {
            "n_in": r"static const unsigned N_IN = (\d+);",
            "n_out": r"static const unsigned N_OUT = (\d+);",
            "t_in": r"typedef (.+?) T_in;",
            "t_out": r"typedef (.+?) T_out;",
        }.items()
    }
    missing = [k for k, m in found.items() if m is None]
    if missing or "in_struct" not in text:
        raise ToolError(f"{header} is not hls4ml's axi_stream wrapper header (no {', '.join(missing) or 'in_struct'})")
    return {
        "n_in": int(found["n_in"].group(1)),
        "n_out": int(found["n_out"].group(1)),
        "input_word": word_spec(found["t_in"].group(1)),
        "output_word": word_spec(found["t_out"].group(1)),
    }


def _check_grid(x: np.ndarray, spec: dict, what: str) -> None:
    """The values must survive the wire exactly: the runner's encode/decode is a round trip."""
    back = board_runner.decode(board_runner.encode(x, spec), spec)
    if not np.array_equal(back, x.astype(np.float64)):
        raise ToolError(f"the {what} do not fit the wrapper's {spec['ctype']} words exactly: the board would differ")


def write_deploy(
    folder: Path,
    fmt: dict,
    x: np.ndarray,
    labels: np.ndarray,
    csim_outputs: np.ndarray,
    meta: dict,
    overlay: dict | None = None,
) -> list[str]:
    """Write `folder` (replacing it): data, deploy.json, the runner and the overlay files; returns the file names.

    `x` is (N, ...) in the hardware's input layout, already quantized; `csim_outputs` (N, N_OUT) the C
    simulation's outputs for it; `overlay` {"bit": path, "hwh": path} when a bitstream exists."""
    shaped = np.asarray(x, dtype=np.float64)  # saved in the hardware's layout, e.g. (N, H, W, C)
    x = shaped.reshape(len(shaped), -1)
    csim_outputs = np.asarray(csim_outputs, dtype=np.float64)
    if x.shape[1] != fmt["n_in"] or csim_outputs.shape != (len(x), fmt["n_out"]) or len(labels) != len(x):
        raise ToolError(
            f"deploy data of shapes {x.shape}, {csim_outputs.shape}, {len(labels)} labels do not match the wrapper's "
            f"{fmt['n_in']} inputs and {fmt['n_out']} outputs per image"
        )
    _check_grid(x, fmt["input_word"], "test inputs")  # outputs are compared as words on the wire (the runner)
    folder = Path(folder)
    staging = folder.with_name(f".{folder.name}.staging")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        exact32 = np.array_equal(x.astype(np.float32).astype(np.float64), x)
        np.save(staging / INPUTS, shaped.astype(np.float32) if exact32 else shaped)
        np.save(staging / LABELS, np.asarray(labels, dtype=np.int64))
        np.save(staging / OUTPUTS, csim_outputs)
        overlay_file = None
        if overlay:
            for kind in ("bit", "hwh"):
                shutil.copyfile(overlay[kind], staging / f"{OVERLAY_NAME}.{kind}")
            overlay_file = f"{OVERLAY_NAME}.bit"
        shutil.copyfile(board_runner.__file__, staging / RUNNER)
        info = {
            **meta,
            **fmt,
            "images": int(len(x)),
            "batch": min(DEFAULT_BATCH, max(1, len(x))),
            "inputs": INPUTS,
            "labels": LABELS,
            "csim_outputs": OUTPUTS,
            "overlay": overlay_file,
        }
        (staging / DEPLOY_FILE).write_text(json.dumps(info, indent=2) + "\n")
        if folder.exists():
            shutil.rmtree(folder)
        staging.rename(folder)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return sorted(p.name for p in folder.iterdir())


# ------------------------------------------------------------------------------------------- bitstream


def bitstream_tools() -> list[str]:
    """The tools a bitstream needs that are not on PATH (empty: it can be built)."""
    missing = [] if find_hls_tool("VivadoAccelerator") else ["vivado_hls (Vivado HLS)"]
    return missing + ([] if shutil.which("vivado") else ["vivado"])


def _run(cmd: list[str], cwd: Path, log_path: Path) -> None:
    log.info("running %s in %s (log: %s)", " ".join(cmd[:3]), cwd, log_path)
    with open(log_path, "w") as out:
        proc = subprocess.run(cmd, cwd=cwd, stdout=out, stderr=subprocess.STDOUT)
    if proc.returncode != 0:
        raise ToolError(f"{cmd[0]} failed with exit code {proc.returncode}; see {log_path}")


def find_overlay(project: Path, project_name: str) -> dict | None:
    """The .bit and .hwh the block design wrote (Vivado's run and handoff folders, any version's layout)."""
    root = Path(project) / f"{project_name}_vivado_accelerator"
    bits = sorted(root.glob("project_1.runs/impl_1/*.bit"))
    hwhs = sorted(root.glob("project_1.*/sources_1/bd/design_1/hw_handoff/*.hwh"))
    return {"bit": str(bits[0]), "hwh": str(hwhs[0])} if bits and hwhs else None


def build_bitstream(project: Path, project_name: str) -> dict:
    """hls4ml's VivadoAccelerator `build(csim=False, export=True, bitfile=True)` on `project`; the overlay files."""
    missing = bitstream_tools()
    if missing:
        raise ToolError(f"a bitstream needs {' and '.join(missing)} on PATH")
    hls = find_hls_tool("VivadoAccelerator")
    opts = "reset=1 csim=0 synth=1 cosim=0 validation=0 export=1 vsynth=0 fifo_opt=0"
    _run([*hls, opts], project, Path(project) / "vivado_hls.log")
    _run(["vivado", "-mode", "batch", "-source", "design.tcl"], project, Path(project) / "vivado_bitstream.log")
    found = find_overlay(project, project_name)
    if found is None:
        raise ToolError(
            f"vivado finished but wrote no .bit and .hwh under {project}/{project_name}_vivado_accelerator; "
            f"see {project}/vivado_bitstream.log"
        )
    return found
