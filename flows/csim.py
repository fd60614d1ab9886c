"""C simulation of the generated HLS C++ (g++) and its parity check against the PyTorch model.

`compile_project` runs the project's own `build_lib.sh` (what hls4ml's `compile()` runs) and
`CSimLibrary` calls the resulting shared library through ctypes in double precision, so every
fixed-point output arrives exactly. `compare` computes argmax agreement, bit-exactness and the
largest difference against the quantized PyTorch model evaluated in float64 (exact for
fixed-point sums). When they disagree, `diagnose` re-converts the model with hls4ml tracing on and
walks the layers in order against the QONNX execution of the same inputs, to name the first layer
that diverges and the PyTorch module it came from.
"""

from __future__ import annotations

import ctypes
import logging
import shutil
import subprocess
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import numpy.ctypeslib as npc
from tqdm import tqdm

from flows.errors import ToolError

log = logging.getLogger(__name__)


def compile_project(project: Path, project_name: str) -> Path:
    """g++ the C simulation library; clear errors when g++ is missing or the compile fails."""
    from flows.convert import library_path

    if shutil.which("g++") is None:
        raise ToolError("g++ is not on PATH; install it (Debian/Ubuntu: apt install g++) to run the C simulation")
    project = Path(project)
    script = project / "build_lib.sh"
    if not script.exists():
        raise ToolError(f"{script} does not exist: run the convert step first")
    lib = library_path(project, project_name)
    proc = subprocess.run(["bash", "build_lib.sh"], cwd=project, capture_output=True, text=True)
    if proc.returncode != 0 or not lib.exists():
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-15:])
        raise ToolError(f"g++ could not compile the C simulation in {project}:\n{tail}")
    return lib


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


def _torch_module(doc: str) -> str:
    """'/features/fire1/expand3x3/Conv' -> 'features.fire1.expand3x3'."""
    parts = [p for p in doc.split("/") if p]
    parts = [p for p in parts[:-1] if p not in ("export_handler", "act_quant", "activation_impl")]
    return ".".join(p.split("_export")[0] for p in parts)


def _onnx_output_for(wrapper, node_name: str) -> tuple[str, str, str] | None:
    """The ONNX tensor an hls4ml layer's output corresponds to (following a trailing Quant)."""
    node = next((n for n in wrapper.graph.node if n.name == node_name), None)
    if node is None:
        return None
    tensor = node.output[0]
    doc = node.doc_string
    while True:
        consumers = wrapper.find_consumers(tensor) or []
        if len(consumers) == 1 and consumers[0].op_type == "Quant" and wrapper.get_initializer(tensor) is None:
            tensor = consumers[0].output[0]
            doc = consumers[0].doc_string or doc
            continue
        break
    return node.name, tensor, _torch_module(doc or node_name)


def _candidate_node_names(hls_name: str) -> list[str]:
    from flows.convert import HLS_PREFIXES

    names = [hls_name]
    for prefix in HLS_PREFIXES:
        if hls_name.startswith(prefix):
            names.append(hls_name[len(prefix) :])
    if hls_name.endswith("_act"):
        names.append(hls_name[: -len("_act")])
    return names


def diagnose(wrapper, hls_model, x_hw: np.ndarray, debug_dir: Path) -> LayerDivergence | None:
    """Trace every hls4ml layer on a few inputs and find the first that disagrees with QONNX.

    `hls_model` must have been converted with tracing on (`flows.convert.convert(..., trace=True)`).
    """
    from contextlib import redirect_stdout
    from io import StringIO

    from flows.export import execute_qonnx

    hls_model.config.config["OutputDir"] = str(debug_dir)
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
        for candidate in ([fused] if fused else []) + _candidate_node_names(layer.name):
            match = _onnx_output_for(wrapper, candidate)
            if match:
                break
        if match is None:
            continue
        node_name, tensor, module = match
        got = np.asarray(trace[layer.name], dtype=np.float64).reshape(len(x_hw), -1)
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
