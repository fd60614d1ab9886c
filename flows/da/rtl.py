"""Open-source hardware numbers for DA layers: da4ml's Verilog, synthesized by yosys, simulated by verilator.

- `write_verilog(solution, name, folder)`: da4ml's `VerilogModel(...).write()` of a solved kernel
  (combinational: `src/<name>.v`, its building blocks in `src/static/`, a verilator binder in `sim/`).
- `yosys_family(part)`: the `synth_xilinx -family` of a Xilinx part (xc7z020 -> xc7, Zynq
  UltraScale+ / Kria -> xcup), None when yosys has no family for it.
- `synthesize(folder, name, family, layer)`: `yosys -p "... synth_xilinx -family <f> -flatten ..."`,
  the cell counts read from `stat -json`: `LUT` (LUT1-6 and INV, which is a LUT1), `FF` (FD* cells:
  none in a combinational kernel; the pipeline registers HLS adds around it are not included),
  `CARRY`, `MUXF`, labelled `source: "yosys"`. A failing run raises a ToolError naming the layer.
- `simulate(solution, name, folder, x)`: verilator builds da4ml's binder (`build_simulator`) and runs
  the Verilog on the input vectors `x`, to compare bit for bit with the C simulation / numpy reference.
- `verify_rtl(solution, name, folder, layer)`: verilator on 128 vectors on the layer's input grid against
  da4ml's bit-true model of the solution the HLS kernel (and so the C simulation) is generated from.
- `synthesize_da_layers(hls_model, folder, part)`: every DA layer of a converted model (its cached
  solution, flows/da/hls_pass.py), each with its yosys figures and verilator check, or a labelled skip
  or failure, so one failing layer keeps the rest.

A missing tool is never a failure: the yosys functions return None (`synthesize_da_layers` labels
every layer `status: "skipped"` with the reason), `simulate` returns None.
"""

from __future__ import annotations

import ctypes
import hashlib
import json
import logging
import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import numpy as np

from flows.da.hls_pass import KEY_ATTR, solver_config
from flows.da.solver import DASolution, load_solution, require_da4ml
from flows.errors import ToolError

try:
    from da4ml.codegen import VerilogModel
except ImportError:  # optional dependency (flows/da/solver.py says how to install it)
    VerilogModel = None

log = logging.getLogger(__name__)

YOSYS = "yosys"
VERILATOR = "verilator"
SOURCE = "yosys"
RTL_VECTORS = 128  # verilator vectors per DA layer in a build
_FAMILIES = (  # (part prefix pattern, yosys synth_xilinx family), first match wins
    (r"xc7", "xc7"),
    (r"xc(zu|k2|au|u[0-9])", "xcup"),  # Zynq UltraScale+, Kria K26/K24, Artix UltraScale+, Alveo
    (r"xc(vu|ku)[0-9]+p", "xcup"),
    (r"xc(vu|ku)[0-9]+", "xcu"),
    (r"xc6s", "xc6s"),
    (r"xc6v", "xc6v"),
)


def yosys_family(part: str) -> str | None:
    """yosys `synth_xilinx -family` for a Xilinx part name ('xc7z020clg400-1' -> 'xc7'), or None."""
    p = part.lower()
    return next((family for pattern, family in _FAMILIES if re.match(pattern, p)), None)


def write_verilog(solution: DASolution, name: str, folder: Path) -> Path:
    """Write da4ml's Verilog of a solved kernel into `folder`; returns the top module's file."""
    require_da4ml()
    folder = Path(folder)
    VerilogModel(solution.logic, name, folder).write()
    return folder / "src" / f"{name}.v"


def _first_error(output: str) -> str:
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    return next((line for line in lines if "ERROR" in line), lines[-1] if lines else "no output")


def _counts(stat: dict) -> dict[str, int]:
    cells = stat.get("design", {}).get("num_cells_by_type", {})
    group = {"LUT": 0, "FF": 0, "CARRY": 0, "MUXF": 0}
    for cell, n in cells.items():
        if re.fullmatch(r"LUT[1-6]|INV", cell):
            group["LUT"] += n
        elif cell.startswith("FD"):
            group["FF"] += n
        elif cell.startswith("CARRY"):
            group["CARRY"] += n
        elif cell.startswith("MUXF"):
            group["MUXF"] += n
    return group


def synthesize(folder: Path, name: str, family: str, layer: str, timeout_s: float = 3600.0) -> dict | None:
    """yosys `synth_xilinx -family <family> -flatten` of da4ml's Verilog in `folder` (top module `name`).

    Returns `{"source": "yosys", "LUT", "FF", "CARRY", "MUXF", "family", "seconds", "cells"}`, or None
    when yosys is not on PATH. Raises ToolError naming `layer` when yosys fails."""
    if shutil.which(YOSYS) is None:
        log.info("%s: yosys is not on PATH: synthesis skipped", layer)
        return None
    folder = Path(folder).resolve()
    stat_file = folder / "yosys_stat.json"
    stat_file.unlink(missing_ok=True)
    script = (
        f"read_verilog src/{name}.v; hierarchy -top {name} -libdir src/static; "
        f"synth_xilinx -family {family} -flatten -noiopad -top {name}; tee -q -o {stat_file.name} stat -json"
    )
    t0 = time.time()
    try:
        run = subprocess.run([YOSYS, "-q", "-p", script], cwd=folder, capture_output=True, text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired as exc:
        raise ToolError(f"yosys did not synthesize DA layer {layer} within {timeout_s:.0f} s") from exc
    (folder / "yosys.log").write_text(run.stdout + run.stderr)
    if run.returncode != 0 or not stat_file.is_file():
        raise ToolError(
            f"yosys could not synthesize DA layer {layer} ({folder}): {_first_error(run.stdout + run.stderr)}"
        )
    stat = json.loads(stat_file.read_text())
    seconds = round(time.time() - t0, 2)
    result = {"source": SOURCE, **_counts(stat), "family": family, "seconds": seconds}
    result["cells"] = dict(stat.get("design", {}).get("num_cells_by_type", {}))
    log.info("%s: yosys %s: %d LUT, %d FF (%.1f s)", layer, family, result["LUT"], result["FF"], seconds)
    return result


def yosys_version() -> str | None:
    if shutil.which(YOSYS) is None:
        return None
    return subprocess.run([YOSYS, "-V"], capture_output=True, text=True).stdout.strip() or None


def _run_tool(cmd: list[str], cwd: Path, layer: str, what: str, timeout_s: float) -> None:
    try:
        run = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired as exc:
        raise ToolError(f"{what} did not finish for DA layer {layer} within {timeout_s:.0f} s") from exc
    if run.returncode != 0:
        log.debug("%s output:\n%s%s", what, run.stdout, run.stderr)
        out = run.stdout + run.stderr
        lines = [line.strip() for line in out.splitlines() if "rror" in line] or out.strip().splitlines()[-1:]
        raise ToolError(f"{what} failed for DA layer {layer} ({cwd}): {lines[0] if lines else 'no output'}")


def _runtime_sources(sim: Path, top: str) -> list[str]:
    """verilator's run-time classes the model needs (`VM_GLOBAL_FAST/SLOW` in its classes makefile)."""
    text = (sim / "obj_dir" / f"V{top}_classes.mk").read_text()
    names = []
    for block in re.findall(r"^VM_GLOBAL_(?:FAST|SLOW) \+= \\\n((?:\t\S+ \\\n)*)", text, re.MULTILINE):
        names += re.findall(r"\t(\S+) \\", block)
    return names or ["verilated", "verilated_threads"]


NEW_LINT_CODES = ("WIDTHTRUNC", "WIDTHEXPAND")  # verilator 5.008+; older ones reject them in lint_off comments


def verilator_version() -> tuple[int, int]:
    out = subprocess.run([VERILATOR, "--version"], capture_output=True, text=True).stdout
    match = re.search(r"Verilator (\d+)\.(\d+)", out)
    return (int(match.group(1)), int(match.group(2))) if match else (0, 0)


def _static_includes(sim: Path) -> list[str]:
    """The include path of da4ml's building blocks. A verilator older than 5.008 (Debian 12 ships 5.006)
    stops at the lint codes `WIDTHTRUNC`/`WIDTHEXPAND` in their lint comments: it reads a copy (in
    `sim/compat/`, before the originals) where they are its older code `WIDTH`; da4ml's files stay as written."""
    static = sim.parent / "src" / "static"
    if verilator_version() >= (5, 8) or not static.is_dir():
        return ["-I../src/static"]
    compat = sim / "compat"
    compat.mkdir(exist_ok=True)
    for src in static.glob("*.v"):
        text = src.read_text()
        for code in NEW_LINT_CODES:
            text = text.replace(f"lint_off {code}", "lint_off WIDTH").replace(f"lint_on {code}", "lint_on WIDTH")
        (compat / src.name).write_text(text)
    return ["-Icompat", "-I../src/static"]


def build_simulator(folder: Path, name: str, layer: str = "layer", timeout_s: float = 1800.0) -> Path:
    """Verilate da4ml's `<name>_wrapper` in `folder` and link da4ml's binder into a library.

    What da4ml's `build_binder.mk` does, with verilator's run-time sources compiled in from
    `verilator --getenv VERILATOR_ROOT`: the makefile's own lookup of that folder finds nothing with
    Debian's verilator 5.006, which also builds no `libverilated.a`."""
    sim = Path(folder).resolve() / "sim"
    top = f"{name}_wrapper"
    shutil.rmtree(sim / "obj_dir", ignore_errors=True)
    verilate = [VERILATOR, "--cc", "-j", "1", "-build", f"{top}.v", "--prefix", f"V{top}", "-Wno-fatal"]
    verilate += ["-CFLAGS", "-std=c++17 -fPIC -O", "-I../src", *_static_includes(sim)]
    _run_tool(verilate, sim, layer, "verilator", timeout_s)
    root = Path(
        subprocess.run([VERILATOR, "--getenv", "VERILATOR_ROOT"], capture_output=True, text=True).stdout.strip()
    )
    lib = sim / f"lib{top}.so"
    link = [
        "g++",
        "-std=c++17",
        "-fPIC",
        "-O",
        "-Iobj_dir",
        f"-I{root / 'include'}",
        f"-I{root / 'include' / 'vltstd'}",
    ]
    link += ["-I../src", "-pthread", "-shared", "-Wl,--no-undefined", "-o", lib.name, f"{top}_binder.cc"]
    runtime = [runtime_object(root, g, layer, timeout_s) for g in _runtime_sources(sim, top)]
    link += [f"obj_dir/V{top}__ALL.a", *map(str, runtime)]
    _run_tool(link, sim, layer, "g++ (verilator binder)", timeout_s)
    return lib


def runtime_object(root: Path, name: str, layer: str, timeout_s: float) -> Path:
    """verilator's run-time source `name` compiled once per verilator install (it does not depend on the
    design) into `~/.cache/fireflow/verilator/` (FIREFLOW_VERILATOR_CACHE): each DA layer then only
    compiles its own model, which halves the time of a layer's check."""
    tag = hashlib.sha256(f"{root}|{(root / 'include' / f'{name}.cpp').stat().st_mtime_ns}".encode()).hexdigest()[:12]
    base = Path(os.environ.get("FIREFLOW_VERILATOR_CACHE", Path.home() / ".cache" / "fireflow" / "verilator"))
    obj = base / tag / f"{name}.o"
    if obj.is_file():
        return obj
    obj.parent.mkdir(parents=True, exist_ok=True)
    tmp = obj.with_suffix(f".{os.getpid()}.tmp.o")
    cmd = ["g++", "-std=c++17", "-fPIC", "-O", "-pthread", f"-I{root / 'include'}", f"-I{root / 'include' / 'vltstd'}"]
    _run_tool([*cmd, "-c", "-o", str(tmp), str(root / "include" / f"{name}.cpp")], obj.parent, layer, "g++", timeout_s)
    os.replace(tmp, obj)  # atomic: a concurrent build sees the whole object or none
    return obj


def simulate(solution: DASolution, name: str, folder: Path, x: np.ndarray, layer: str = "layer") -> np.ndarray | None:
    """da4ml's Verilog of `solution` run by verilator on input vectors `x` (N, n_in); None without verilator.

    Writes the Verilog into `folder`, builds the simulator (`build_simulator`) and converts inputs and
    outputs to and from da4ml's int32 words in float64, so every output of up to 32 bits is exact."""
    require_da4ml()
    if shutil.which(VERILATOR) is None:
        log.info("%s: verilator is not on PATH: RTL simulation skipped", layer)
        return None
    logic = solution.logic
    (k_in, i_in, f_in), (k_out, i_out, f_out) = (np.max(kifs, axis=1) for kifs in (logic.inp_kifs, logic.out_kifs))
    if max(k_in + i_in + f_in, k_out + i_out + f_out) > 32:
        raise ToolError(f"DA layer {layer}: inputs or outputs wider than 32 bits do not fit da4ml's simulator words")
    write_verilog(solution, name, folder)
    lib = ctypes.CDLL(str(build_simulator(folder, name, layer)))
    n_in, n_out = logic.shape
    flat = np.asarray(x, dtype=np.float64).reshape(len(x), -1)
    if flat.shape[1] != n_in:
        raise ToolError(f"DA layer {layer} takes {n_in} inputs per vector, got {flat.shape[1]}")
    inp = np.ascontiguousarray(np.floor(flat * 2.0 ** int(f_in)).astype(np.int32).ravel())
    out = np.zeros(len(flat) * n_out, dtype=np.int32)
    i32 = ctypes.POINTER(ctypes.c_int32)
    lib.inference(inp.ctypes.data_as(i32), out.ctypes.data_as(i32), ctypes.c_size_t(len(flat)), ctypes.c_size_t(1))
    span, offset = 2.0 ** int(k_out + i_out + f_out), int(k_out) * 2.0 ** int(i_out + f_out)
    return ((out.reshape(len(flat), n_out).astype(np.float64) + offset) % span - offset) * 2.0 ** -int(f_out)


def grid_vectors(solution: DASolution, n: int, seed: int = 0) -> np.ndarray:
    """`n` random input vectors on each input's own fixed-point grid (da4ml's keep-negative/int/frac bits),
    the first ones at the extremes of the range, where overflow and sign handling would show."""
    k, i, f = (np.asarray(v, dtype=np.int64) for v in solution.logic.inp_kifs)
    lo, hi = -(k * 2.0 ** (i + f)), 2.0 ** (i + f) - 1
    rng = np.random.default_rng(seed)
    words = np.floor(lo + rng.random((n, len(lo))) * (hi - lo + 1))
    extremes = np.stack([lo, hi, *np.where(rng.random((2, len(lo))) < 0.5, lo, hi)])[:n]
    words[: len(extremes)] = extremes  # all lowest, all highest, two mixes
    return words * 2.0**-f


def verify_rtl(solution: DASolution, name: str, folder: Path, layer: str, vectors: int = RTL_VECTORS) -> dict:
    """verilator's run of a DA layer's Verilog on `vectors` input vectors against da4ml's bit-true model of
    the same solution (the kernel the C simulation runs): `{"source": "verilator", "vectors", "bit_exact",
    "mismatches"}`, or a labelled skip without verilator."""
    if shutil.which(VERILATOR) is None:
        return {
            "source": "verilator",
            "status": "skipped",
            "reason": "verilator is not on PATH (apt install verilator)",
        }
    x = grid_vectors(solution, vectors)
    t0 = time.time()
    got = simulate(solution, name, folder, x, layer)
    want = solution.logic.predict(x)
    mismatches = int(np.count_nonzero(np.any(got != want, axis=1)))
    if mismatches:
        log.warning("%s: verilator disagrees with the C model on %d of %d vectors", layer, mismatches, vectors)
    seconds = round(time.time() - t0, 2)
    log.info(
        "%s: verilator, %d vectors: %s (%.1f s)", layer, vectors, "bit-exact" if not mismatches else "MISMATCH", seconds
    )
    return {
        "source": "verilator",
        "status": "ok",
        "vectors": vectors,
        "bit_exact": mismatches == 0,
        "mismatches": mismatches,
        "reference": "da4ml's bit-true model of the solution the HLS kernel is generated from",
        "seconds": seconds,
    }


def synthesize_da_layers(
    hls_model, folder: Path, part: str, cache_dir: Path | None = None, enabled: bool = True
) -> dict[str, dict]:
    """yosys figures of every DA layer of a converted model, by hls4ml layer name.

    The solutions are read from `cache_dir`, by default the one the conversion used.

    Each entry is the `synthesize` dict, or `{"source": "yosys", "status": "skipped", "reason": ...}`
    (no yosys, no family for the part, solution not in the cache), or `{"source": "yosys", "status":
    "failed", "error": ...}`: a failing layer is reported and the others still run."""
    layers = [layer for layer in hls_model.get_layers() if layer.get_attr(KEY_ATTR)]
    if cache_dir is None and layers:
        cache_dir = solver_config(hls_model)[1]  # where the conversion cached its solutions
    family = yosys_family(part)
    skip = None
    if not enabled:
        skip = "turned off (hls.rtl=off)"
    elif shutil.which(YOSYS) is None:
        skip = "yosys is not on PATH (Debian: apt install yosys)"
    elif family is None:
        skip = f"yosys synth_xilinx has no family for part {part}"
    results: dict[str, dict] = {}
    for layer in layers:
        if skip is not None:
            results[layer.name] = {"source": SOURCE, "status": "skipped", "reason": skip}
            continue
        solution = load_solution(layer.get_attr(KEY_ATTR), cache_dir)
        if solution is None:
            results[layer.name] = {"source": SOURCE, "status": "skipped", "reason": "its da4ml solution is not cached"}
            continue
        name = f"da_{layer.name.lower()}"
        try:
            write_verilog(solution, name, Path(folder) / layer.name)
            results[layer.name] = {**synthesize(Path(folder) / layer.name, name, family, layer.name), "status": "ok"}
        except ToolError as exc:
            log.warning("%s", exc)
            results[layer.name] = {"source": SOURCE, "status": "failed", "error": str(exc)}
            continue
        try:  # a failing simulation keeps the layer's synthesis figures
            results[layer.name]["simulation"] = verify_rtl(solution, name, Path(folder) / layer.name, layer.name)
        except ToolError as exc:
            log.warning("%s", exc)
            results[layer.name]["simulation"] = {"source": "verilator", "status": "failed", "reason": str(exc)}
    if skip is not None and layers:
        log.info("DA layers not synthesized: %s", skip)
    return results
