"""A QONNX file as the model: checked, cleaned and made channels-last; its inputs quantized like the hardware.

`read_qonnx` refuses in one line (UsageError, exit 2) what cannot reach a bit-exact C simulation: a float ONNX
without Quant nodes, an input that is not quantized to a power-of-two grid, a Quant scale that is not a power
of two, bipolar (1-bit) quantizers, ops hls4ml's QONNX frontend has no layer for, an input shape that is not the
data set's. `prepare_qonnx` then runs the export path's cleanup (flows/export.py `clean_qonnx`: cleanup,
channels-last incl. Concat, Gemm->MatMul, the input Quant absorbed into the hardware input type).
`quantize_array` applies that input type to float images exactly as the hardware (and Brevitas) rounds.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import onnx
from qonnx.core.modelwrapper import ModelWrapper

from flows.errors import UsageError
from flows.export import INPUT_PRECISION_KEY, clean_qonnx

# ops the hardware route converts (hls4ml's QONNX frontend, after the flow's cleanup)
SUPPORTED_OPS = {
    "Quant",
    "Conv",
    "MatMul",
    "Gemm",
    "Add",
    "Relu",
    "MaxPool",
    "AveragePool",
    "GlobalAveragePool",
    "Flatten",
    "Reshape",
    "Concat",
    "Transpose",
    "Mul",
    "Identity",
    "Constant",
    "Shape",
    "Gather",
    "Unsqueeze",
    "Squeeze",
}


def _refuse(path: Path, what: str, fix: str) -> None:
    raise UsageError(f"{path}: {what}; {fix}")


def read_qonnx(path: str | Path, in_shape: tuple[int, ...]) -> ModelWrapper:
    """Load and check a QONNX file (see the module docstring for what is refused)."""
    path = Path(path)
    if not path.is_file():
        _refuse(path, "no such file", "give the path of an .onnx file exported with brevitas.export.export_qonnx")
    try:
        model = ModelWrapper(onnx.load(str(path)))
    except Exception as exc:  # truncated or not ONNX at all
        _refuse(path, f"not a readable ONNX file ({type(exc).__name__})", "export it again with export_qonnx")
    graph = model.graph
    ops = [n.op_type for n in graph.node]
    for node in graph.node:
        if node.op_type in ("BipolarQuant", "BinaryQuant") or (node.op_type == "Quant" and _bits(model, node) < 2):
            _refuse(
                path,
                f"node {node.name} is a bipolar/binary (1-bit) quantizer, which hls4ml cannot simulate bit-exactly",
                "quantize to 2 bits or more",
            )
        if node.op_type not in SUPPORTED_OPS:
            _refuse(
                path,
                f"node {node.name} is a {node.op_type}, which the hardware route (hls4ml) has no bit-exact layer for",
                f"remove it or replace it (supported: {', '.join(sorted(SUPPORTED_OPS))})",
            )
    if "Quant" not in ops:
        _refuse(
            path,
            "a float ONNX graph (no Quant nodes): its weights and activations have no fixed-point types",
            "quantize it first (Brevitas export_qonnx), or give the PyTorch module and let the flow quantize it",
        )
    for node in graph.node:
        if node.op_type != "Quant":
            continue
        scale = model.get_initializer(node.input[1])
        if scale is None:
            continue
        for value in np.atleast_1d(np.asarray(scale, dtype=np.float64)).tolist():
            e = math.log2(value) if value > 0 else float("nan")
            if not (e == e and e == round(e)):
                _refuse(
                    path,
                    f"Quant node {node.name} has scale {value:.4g}, not a power of two (hls4ml's C "
                    "simulation drifts on float scales)",
                    "export it with fixed-point quantizers "
                    "(e.g. Int8WeightPerTensorFixedPoint, Uint8ActPerTensorFixedPoint)",
                )
    shape = tuple(d.dim_value for d in graph.input[0].type.tensor_type.shape.dim)[1:]
    if shape not in (tuple(in_shape), (int(np.prod(in_shape)),)):
        _refuse(
            path,
            f"its input has shape {shape}, the data set's images {tuple(in_shape)}",
            "export it for the data set's input shape (or choose the matching --dataset)",
        )
    return model


def _bits(model: ModelWrapper, node) -> float:
    bits = model.get_initializer(node.input[3]) if len(node.input) > 3 else None
    return float(np.asarray(bits).reshape(-1)[0]) if bits is not None else 8.0


def prepare_qonnx(model: ModelWrapper, raw_path: Path, path: Path) -> ModelWrapper:
    """Cleanup, channels-last (for image inputs) and the input Quant absorbed; refuses an unquantized input."""
    model.save(str(raw_path))
    in_dims = len(model.graph.input[0].type.tensor_type.shape.dim)
    wrapper = clean_qonnx(raw_path, channels_last=in_dims == 4)
    if not wrapper.get_metadata_prop(INPUT_PRECISION_KEY):
        _refuse(
            path,
            "its input does not go through a Quant node with a power-of-two scale, zero point 0 and "
            "full range first (the hardware input type)",
            "start the network with an input quantizer "
            "(e.g. a QuantIdentity with Uint8ActPerTensorFixedPoint) and export it again",
        )
    return wrapper


def input_type(wrapper: ModelWrapper) -> tuple[bool, int, int]:
    """(signed, width, fractional bits) of the absorbed input type `[u]fixed<W,I,RND_CONV,SAT>`."""
    text = wrapper.get_metadata_prop(INPUT_PRECISION_KEY) or ""
    found = re.fullmatch(r"(u?)fixed<(\d+),(-?\d+),RND_CONV,SAT>", text)
    if not found:
        raise UsageError(f"the QONNX input type {text!r} is not a rounding, saturating fixed-point type")
    signed, width, integer = found.group(1) != "u", int(found.group(2)), int(found.group(3))
    return signed, width, width - integer


def quantize_array(x: np.ndarray, signed: bool, width: int, frac: int) -> np.ndarray:
    """Round half to even onto the 2^-frac grid and saturate to the type's range (what ap_fixed RND_CONV,SAT
    and Brevitas' input quantizer both do)."""
    lo, hi = (-(2 ** (width - 1)), 2 ** (width - 1) - 1) if signed else (0, 2**width - 1)
    return np.clip(np.round(x.astype(np.float64) * 2.0**frac), lo, hi) / 2.0**frac
