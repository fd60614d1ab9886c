"""C simulation of the generated HLS C++ (g++) and its parity check against the PyTorch model.

`compile_project` builds the project's C-simulation library with g++ itself, with the sources and
flags of the build_lib.sh hls4ml writes for the backend (a script found on disk is never run): any
old library of the project is deleted first, objects go to a temporary folder, the library is
renamed into place only when g++ succeeded, and `csim_library.json` records which library belongs to
which project folder and sources. `load_library` checks that record (a library compiled for another
folder would read its weights from there, and exits the process if they are gone) and returns a
`CSimLibrary`, which calls the library through ctypes in double precision, so every fixed-point
output arrives exactly. `compare` computes argmax agreement, bit-exactness and the largest difference
against the quantized PyTorch model evaluated in float64 (exact for fixed-point sums). When they
disagree, `diagnose` walks hls4ml's traced layer outputs in order against the QONNX execution of the
same inputs, to name the first layer that diverges and the PyTorch module it came from.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import json
import logging
import os
import re
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
from contextlib import redirect_stdout
from dataclasses import asdict, dataclass, field
from io import StringIO
from pathlib import Path

import numpy as np
import numpy.ctypeslib as npc
from tqdm import tqdm

from flows.atomic import atomic_write_text
from flows.errors import ToolError
from flows.export import execute_qonnx
from flows.hls_names import onnx_names, onnx_output_for
from flows.hls_writer import write_project
from flows.sparse.layout import OUTPUT_ORDER_ATTR

log = logging.getLogger(__name__)

CXX = "g++"
LIBRARY_RECORD = "csim_library.json"  # in the project folder, written by compile_project


@functools.cache
def _supports(cxx: str, flag: str) -> bool:
    """Whether the compiler accepts `flag` (build_lib.sh's probe: an empty translation unit, -Werror)."""
    probe = [cxx, "-Werror", "-fsyntax-only", flag, "-xc++", "-", "-o", os.devnull]
    return subprocess.run(probe, input="", capture_output=True, text=True).returncode == 0


def compile_flags(axi_wrapper: bool) -> list[str]:
    """build_lib.sh's CFLAGS: VivadoAccelerator's script pins C++11, Vivado/Vitis take C++23 when available."""
    flags = ["-O3", "-fPIC", "-std=c++11" if axi_wrapper or not _supports(CXX, "-std=c++23") else "-std=c++23"]
    # ap_types' C model asserts when a value lies wholly below the rounding bit of its cast (get_bit past the
    # MSB), e.g. a DA output that is only a tiny bias (a filter pruned away): ap_fixed<4,-6> -> ap_ufixed<8,3>.
    # Without the assert the bit reads as the sign extension, which is the hardware's result (and the C
    # simulation is checked bit for bit against PyTorch on every build).
    flags.append("-DNDEBUG")
    if _supports(CXX, "-fno-gnu-unique"):
        flags.append("-fno-gnu-unique")
    return flags


def _sources(project: Path, project_name: str) -> list[Path]:
    axi = project / "firmware" / f"{project_name}_axi.cpp"
    names = [project / "firmware" / f"{project_name}.cpp"] + ([axi] if axi.exists() else [])
    return names + [project / f"{project_name}_bridge.cpp"]


def sources_digest(project: Path, project_name: str) -> str:
    """SHA-256 over the bridge and every firmware file but libraries: what a library was compiled from."""
    h = hashlib.sha256()
    files = sorted(p for p in (project / "firmware").rglob("*") if p.is_file() and p.suffix != ".so")
    for path in [project / f"{project_name}_bridge.cpp", *files]:
        h.update(str(path.relative_to(project)).encode() + b"\0" + path.read_bytes())
    return h.hexdigest()


def _run_compiler(cmd: list[str], cwd: Path) -> tuple[int, str]:
    """Run one compiler command in its own process group; on interrupt, terminate the whole group."""
    env = {**os.environ, "LC_ALL": "C"}  # plain ASCII diagnostics
    proc = subprocess.Popen(
        cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True
    )
    try:
        out, _ = proc.communicate()
    except BaseException:  # KeyboardInterrupt, SystemExit: never leave cc1plus running
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.killpg(proc.pid, sig)
                proc.wait(timeout=5)
                break
            except ProcessLookupError:
                break
            except subprocess.TimeoutExpired:
                continue
        raise
    return proc.returncode, out


run_compiler = _run_compiler  # public: flows/dataflow compiles its simulation with these two


def _first_error(output: str) -> str:
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    return next((line for line in lines if re.search(r"\berror:", line)), lines[0] if lines else "no output")


first_error = _first_error


def compile_project(project: Path, project_name: str) -> Path:
    """g++ the C-simulation library of a written project; returns `firmware/<name>-<stamp>.so`.

    Raises ToolError (exit 4) when g++ is missing, a source is missing or the compiler fails; the
    message names the compiler's first error line. The returned path is under `project` as given."""
    if shutil.which(CXX) is None:
        raise ToolError(f"{CXX} is not on PATH; install it (Debian/Ubuntu: apt install g++) to run the C simulation")
    given = Path(project)
    project = given.resolve()
    firmware = project / "firmware"
    sources = _sources(project, project_name)
    missing = [str(p) for p in sources if not p.is_file()]
    if missing:
        raise ToolError(f"{project} has no {', '.join(missing)}: run the convert step first")
    for old in firmware.glob(f"{project_name}-*.so"):  # an old library must never be loaded by mistake
        old.unlink()
    (project / LIBRARY_RECORD).unlink(missing_ok=True)
    weights_dir = firmware / "weights"
    flags = compile_flags(axi_wrapper=len(sources) == 3)
    defines = ["-Ifirmware/ap_types/", "-D", f'WEIGHTS_DIR="{weights_dir}"']
    lib = firmware / f"{project_name}-{secrets.token_hex(4)}.so"
    t0 = time.time()
    with tempfile.TemporaryDirectory(prefix="fireflow-csim-") as tmp:
        objects = [Path(tmp) / f"{src.stem}.o" for src in sources]
        partial = firmware / f".{lib.name}.partial"  # renamed into place only once g++ succeeded
        commands = [
            [CXX, *flags, *defines, "-c", str(src.relative_to(project)), "-o", str(obj)]
            for src, obj in zip(sources, objects)
        ]
        commands.append([CXX, *flags, "-shared", *map(str, objects), "-o", str(partial)])
        try:
            for cmd in commands:
                code, output = _run_compiler(cmd, project)
                if code != 0:
                    log.debug("%s output:\n%s", CXX, output)
                    raise ToolError(f"{CXX} could not compile the C simulation in {project}: {_first_error(output)}")
            os.replace(partial, lib)
        finally:
            partial.unlink(missing_ok=True)
    if not lib.is_file() or lib.stat().st_mtime < t0 - 1:
        raise ToolError(f"{CXX} reported success but wrote no new library {lib}")
    record = {
        "library": lib.name,
        "weights_dir": str(weights_dir),
        "sources_sha256": sources_digest(project, project_name),
    }
    atomic_write_text(project / LIBRARY_RECORD, json.dumps(record, indent=2) + "\n")
    log.info("compiled the C simulation in %.1f s: %s", time.time() - t0, lib.relative_to(project))
    return given / "firmware" / lib.name


def load_library(project: Path, project_name: str, n_in: int, n_out: int) -> CSimLibrary:
    """The compiled C simulation of `project`, after checking it was compiled for this folder and these sources."""
    project = Path(project).resolve()
    record_path = project / LIBRARY_RECORD
    if not record_path.is_file():
        raise ToolError(f"{project} has no compiled C simulation ({LIBRARY_RECORD}): rerun the convert step")
    record = json.loads(record_path.read_text())
    lib = project / "firmware" / record["library"]
    if record["weights_dir"] != str(project / "firmware" / "weights") or not lib.is_file():
        raise ToolError(
            f"the C simulation library in {project} was compiled for {record['weights_dir']}: rerun the convert step"
        )
    if record["sources_sha256"] != sources_digest(project, project_name):
        raise ToolError(f"the sources in {project} changed after the C simulation was compiled: rerun the convert step")
    return CSimLibrary(lib, project_name, n_in, n_out)


class CSimLibrary:
    """The compiled hls4ml C simulation: `run(x)` maps (N, *in_shape) inputs to (N, n_out) outputs."""

    def __init__(self, lib_path: Path, project_name: str, n_in: int, n_out: int):
        self.lib = ctypes.cdll.LoadLibrary(str(lib_path))
        self.fn = getattr(self.lib, f"{project_name}_double")
        self.fn.restype = None
        self.fn.argtypes = [npc.ndpointer(ctypes.c_double, flags="C_CONTIGUOUS")] * 2
        self.n_in, self.n_out = n_in, n_out

    def run(self, x: np.ndarray, desc: str = "csim") -> np.ndarray:
        flat = np.ascontiguousarray(x.reshape(len(x), -1), dtype=np.float64)
        if flat.shape[1] != self.n_in:
            raise ValueError(f"C simulation expects {self.n_in} inputs per sample, got {flat.shape[1]}")
        out = np.zeros((len(flat), self.n_out), dtype=np.float64)
        row = np.zeros(self.n_out, dtype=np.float64)
        for i in tqdm(range(len(flat)), desc=desc, leave=False, disable=None, unit="img", mininterval=1.0):
            self.fn(flat[i], row)
            out[i] = row
        return out


@dataclass
class Parity:
    """How the C simulation compares with the reference on the same inputs."""

    samples: int
    argmax_agreement: float
    bit_exact_fraction: float  # samples whose every output is identical
    values_exact_fraction: float  # individual output values that are identical
    max_abs_diff: float
    mismatched_samples: list[int] = field(default_factory=list)

    @property
    def exact(self) -> bool:
        return self.bit_exact_fraction == 1.0

    def to_dict(self) -> dict:
        d = asdict(self)
        d["mismatched_samples"] = d["mismatched_samples"][:20]
        return d


def compare(csim: np.ndarray, reference: np.ndarray) -> Parity:
    ref = reference.reshape(csim.shape).astype(np.float64)
    equal = csim == ref
    per_sample = equal.all(axis=1)
    return Parity(
        samples=int(len(csim)),
        argmax_agreement=float((csim.argmax(1) == ref.argmax(1)).mean()),
        bit_exact_fraction=float(per_sample.mean()),
        values_exact_fraction=float(equal.mean()),
        max_abs_diff=float(np.abs(csim - ref).max()) if csim.size else 0.0,
        mismatched_samples=[int(i) for i in np.flatnonzero(~per_sample)],
    )


@dataclass
class LayerDivergence:
    """The first hls4ml layer whose traced output differs from the QONNX execution."""

    hls_layer: str
    hls_class: str
    onnx_node: str
    onnx_tensor: str
    torch_module: str
    max_abs_diff: float
    values_differing: float
    compared_layers: list[str]

    def describe(self) -> str:
        return (
            f"first diverging layer: {self.hls_layer} ({self.hls_class}; ONNX node {self.onnx_node}; "
            f"PyTorch module {self.torch_module or '?'}): {self.values_differing:.1%} of its values differ, "
            f"max |diff| {self.max_abs_diff:.3g}"
        )


def in_model_order(layer, traced: np.ndarray) -> np.ndarray:
    """A traced layer output (samples x values) in the model's own order: a sparse layer with balanced
    rows emits slot ``q`` = output ``output_order[q]`` (flows/sparse/layout.py); other layers as they are."""
    order = layer.get_attr(OUTPUT_ORDER_ATTR)
    if order is None or traced.shape[1] != len(order):
        return traced
    out = np.empty_like(traced)
    out[:, np.asarray(order)] = traced
    return out


def diagnose(
    wrapper, hls_model, x_hw: np.ndarray, debug_dir: Path, pipeline_axi: bool = True
) -> LayerDivergence | None:
    """Trace every hls4ml layer on a few inputs and find the first that disagrees with QONNX.

    `hls_model` must have been converted with tracing on (`flows.convert.convert(..., trace=True)`). It is
    written by the project's writer, as every build is (`flows.hls_writer.write_project`), also when
    hls4ml's `trace` recompiles: hls4ml's own writer flow would re-apply `vivado:optimize`, which a design
    with distributed arithmetic replaced by the project's copy (its Flatten then gets an unconverted
    in-place variable and the writer fails).
    """
    hls_model.config.config["OutputDir"] = str(debug_dir)
    hls_model.write = lambda: write_project(hls_model, pipeline_axi)  # what hls_model.compile() calls
    with redirect_stdout(StringIO()):
        hls_model.write()
        _, trace = hls_model.trace(np.ascontiguousarray(x_hw.astype(np.float64)))
    _, contexts = execute_qonnx(wrapper, x_hw, full_context=True)
    compared = []
    for layer in hls_model.get_layers():
        if layer.name not in trace:
            continue
        match = None
        fused = layer.get_attr("fused_activation")  # flows/hls_passes.py: its output is the ReLU's
        for candidate in ([fused] if fused else []) + onnx_names(layer.name):
            match = onnx_output_for(wrapper, candidate)
            if match:
                break
        if match is None:
            continue
        node_name, tensor, module = match
        got = in_model_order(layer, np.asarray(trace[layer.name], dtype=np.float64).reshape(len(x_hw), -1))
        ref = np.stack([np.asarray(c[tensor], dtype=np.float64).reshape(-1) for c in contexts])
        if got.shape != ref.shape:
            continue
        compared.append(layer.name)
        diff = np.abs(got - ref)
        if (diff > 0).any():
            return LayerDivergence(
                layer.name,
                layer.class_name + (f" with {fused} fused into it" if fused else ""),
                node_name,
                tensor,
                module,
                float(diff.max()),
                float((diff > 0).mean()),
                compared,
            )
    return None
