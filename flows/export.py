"""Export a Brevitas network to QONNX, clean it and convert it to channels-last, Concat included.

Pipeline: Brevitas `export_qonnx` (TorchScript exporter: the dynamo one is slower and writes a side
file) -> record PyTorch module names -> qonnx cleanup -> `ConvertToChannelsLastAndClean` (conv nets)
-> `MoveTransposesPastConcat` + `CancelInverseTransposes` (ours, see flows/transforms.py) ->
`GemmToMatMul` -> cleanup -> average pools given their exact input type (flows/byo/pool.py). The result
is checked against the PyTorch model on real inputs (`verify_qonnx`) before hls4ml ever sees it, so a drift
is caught at the stage that made it.
"""

from __future__ import annotations

import logging
import math
import tempfile
import warnings
from pathlib import Path

import numpy as np
import torch
from onnx import helper
from qonnx.core.modelwrapper import ModelWrapper
from qonnx.transformation.channels_last import (
    AbsorbChanFirstIntoMatMul,
    ConvertToChannelsLastAndClean,
    RemoveConsecutiveChanFirstAndChanLastTrafos,
)
from qonnx.transformation.gemm_to_matmul import GemmToMatMul
from qonnx.transformation.infer_shapes import InferShapes
from qonnx.util.cleanup import cleanup_model
from torch import nn

from flows.atomic import atomic_write_bytes
from flows.byo.foreign import find_input_quantizer
from flows.byo.pool import (
    AveragePoolToChannelsLast,
    GlobalAveragePoolToAveragePool,
    WidenAveragePoolInputs,
    check_average_pools,
)
from flows.errors import UsageError, VerificationError
from flows.hls_names import node_module
from flows.transforms import CancelInverseTransposes, MoveTransposesPastConcat, RecordSourceNames

log = logging.getLogger(__name__)


def _quiet_onnxruntime() -> None:
    try:
        import onnxruntime

        onnxruntime.set_default_logger_severity(3)
    except Exception:  # pragma: no cover - optional quieting only
        pass


def export_brevitas(model: nn.Module, in_shape: tuple[int, ...], path: Path) -> None:
    """Raw QONNX export of a Brevitas model (eval mode, batch 1)."""
    from brevitas.export import export_qonnx

    model.eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        export_qonnx(model, torch.zeros((1, *in_shape)), export_path=str(path), dynamo=False)


def clean_qonnx(raw_path: Path, channels_last: bool):
    """Cleanup, channels-last conversion (incl. Concat), Gemm->MatMul. Returns a ModelWrapper."""
    model = ModelWrapper(str(raw_path))
    model = model.transform(RecordSourceNames())
    model = cleanup_model(model)
    if channels_last:
        # average pools: global -> windowed, into qonnx's channels-last domain (flows/byo/pool.py)
        model = model.transform(GlobalAveragePoolToAveragePool())
        model = model.transform(AveragePoolToChannelsLast())
        model = model.transform(ConvertToChannelsLastAndClean(make_input_channels_last=True))
        model = model.transform(MoveTransposesPastConcat())
        model = model.transform(CancelInverseTransposes())
        model = model.transform(RemoveConsecutiveChanFirstAndChanLastTrafos())
        # a Concat feeding the Flatten directly leaves Transpose -> Flatten -> MatMul: fold it into the
        # MatMul's weights (hls4ml cannot convert the Transpose there)
        model = model.transform(AbsorbChanFirstIntoMatMul())
        model = model.transform(InferShapes())
    model = model.transform(GemmToMatMul())
    model = cleanup_model(model)
    model = model.transform(WidenAveragePoolInputs())  # the exact mean's type (hls4ml: pool output = input type)
    check_average_pools(model)
    model = absorb_input_quant(model)
    return cleanup_model(model)  # drops the absorbed quantizer's initializers


INPUT_PRECISION_KEY = "fireflow_input_precision"


def absorb_input_quant(model):
    """Remove the Quant node on the graph input and record its grid as the input's fixed-point type.

    The network's first operation quantizes the image to a power-of-two grid (8 bits, scale 2^-8). In
    hardware that is the input type itself: `ufixed<8,0,RND_CONV,SAT>` rounds and saturates a float
    pixel exactly like Brevitas (round half to even), so the layer is not needed; hls4ml would otherwise
    build an elementwise cast over the whole input (784 lanes for an MLP in io_stream). The type is
    stored in the model's metadata (`fireflow_input_precision`) for flows/convert.py.
    """
    graph = model.graph
    name = graph.input[0].name
    consumers = model.find_consumers(name) or []
    # an MLP exported with flat inputs starts with a Flatten that changes nothing: drop it first
    if len(consumers) == 1 and consumers[0].op_type in ("Flatten", "Reshape"):
        node = consumers[0]
        if model.get_tensor_shape(node.output[0]) == model.get_tensor_shape(name):
            for user in model.find_consumers(node.output[0]) or []:
                for i, inp in enumerate(user.input):
                    if inp == node.output[0]:
                        user.input[i] = name
            graph.node.remove(node)
            consumers = model.find_consumers(name) or []
    if len(consumers) != 1 or consumers[0].op_type != "Quant":
        return model
    quant = consumers[0]
    scale, zeropt, bits = (model.get_initializer(t) for t in quant.input[1:4])
    if scale is None or zeropt is None or bits is None or scale.size != 1 or float(zeropt) != 0:
        return model
    exponent = math.log2(float(scale))
    if exponent != round(exponent):
        return model
    attrs = {a.name: helper.get_attribute_value(a) for a in quant.attribute}
    if attrs.get("narrow", 0):
        return model
    signed, frac, width = bool(attrs.get("signed", 1)), -int(round(exponent)), int(float(bits))
    precision = f"{'' if signed else 'u'}fixed<{width},{width - frac},RND_CONV,SAT>"
    for user in model.find_consumers(quant.output[0]) or []:
        for i, inp in enumerate(user.input):
            if inp == quant.output[0]:
                user.input[i] = name
    graph.node.remove(quant)
    model.set_metadata_prop(INPUT_PRECISION_KEY, precision)
    return model


def check_power_of_two_scales(wrapper) -> None:
    """Every activation quantizer must have a power-of-two scale (else hls4ml's numbers drift or it fails).

    A scale that is not a power of two comes from a quantizer whose calibration saw only zeros: a ReLU
    that never fires (Brevitas then stores a tiny epsilon scale)."""
    for node in wrapper.graph.node:
        if node.op_type != "Quant" or wrapper.get_initializer(node.input[0]) is not None:
            continue
        scale = wrapper.get_initializer(node.input[1])
        if scale is None:
            continue
        for value in np.atleast_1d(np.asarray(scale, dtype=np.float64)).tolist():
            exponent = math.log2(value) if value > 0 else float("nan")
            if not (exponent == exponent and exponent == round(exponent) and -32 <= exponent <= 32):
                where = node_module(wrapper, node)
                raise VerificationError(
                    f"activation quantizer {where or node.name} has scale {value:.3g}, not a power of two: its "
                    "layer output was all zeros during calibration (a dead ReLU); widen that layer (more "
                    "channels), train longer, or check the data"
                )


def export_model(model: nn.Module, in_shape: tuple[int, ...], out_path: Path, scratch: Path | None = None):
    """Export, clean and save `out_path` (atomically). Returns the cleaned ModelWrapper.

    The raw export and its intermediate files go to a temporary folder inside `scratch` (default: the
    folder of `out_path`)."""
    _quiet_onnxruntime()
    channels_last = len(in_shape) == 3
    out_path = Path(out_path)
    with tempfile.TemporaryDirectory(dir=scratch or out_path.parent) as tmp:
        raw = Path(tmp) / "raw.onnx"
        export_brevitas(model, in_shape, raw)
        wrapper = clean_qonnx(raw, channels_last)
        check_power_of_two_scales(wrapper)
        staged = Path(tmp) / out_path.name
        wrapper.save(str(staged))
        atomic_write_bytes(out_path, staged.read_bytes())
    n_transpose = sum(1 for n in wrapper.graph.node if n.op_type == "Transpose")
    if n_transpose:
        log.warning("%d Transpose nodes remain in the channels-last graph (full reorders in hardware)", n_transpose)
    return wrapper


def model_input_shape(model: nn.Module, data_shape: tuple[int, int, int]) -> tuple[int, ...]:
    """The shape the network is exported with: images, or flat vectors for an MLP."""
    first = next((m for m in model.modules() if isinstance(m, (nn.Linear, nn.Conv2d))), None)
    if isinstance(first, nn.Linear):
        return (int(np.prod(data_shape)),)
    return tuple(data_shape)


def to_hw_layout(x_nchw: np.ndarray, export_shape: tuple[int, ...]) -> np.ndarray:
    """Images (N, C, H, W) -> the exported graph's input layout: NHWC, or flat (N, C*H*W)."""
    if len(export_shape) == 1:
        return np.ascontiguousarray(x_nchw.reshape(len(x_nchw), -1))
    return np.ascontiguousarray(x_nchw.transpose(0, 2, 3, 1))


def quantize_inputs(model: nn.Module, images: torch.Tensor) -> torch.Tensor:
    """Apply the network's own input quantizer: the exact values the hardware receives.

    The quantizer is found from the executed graph (the first quantizer the raw input reaches), whatever its
    attribute name; a network without one is a UsageError (the hardware input type would truncate)."""
    name = find_input_quantizer(model, images[:1].float())
    if name is None:
        raise UsageError(
            "the network has no input quantizer on its graph input: start its forward with a QuantIdentity "
            "(power-of-two scale), or give a plain PyTorch network and let the flow quantize it"
        )
    with torch.no_grad():
        q = model.get_submodule(name)(images)
    return q.value if hasattr(q, "value") else q


def execute_qonnx(wrapper, x: np.ndarray, full_context: bool = False):
    """Run the QONNX graph on a batch, one sample at a time (qonnx executes batch 1)."""
    import qonnx.core.onnx_exec as oxe

    _quiet_onnxruntime()
    iname = wrapper.graph.input[0].name
    oname = wrapper.graph.output[0].name
    outs, contexts = [], []
    for i in range(len(x)):
        ctx = oxe.execute_onnx(wrapper, {iname: x[i : i + 1].astype(np.float32)}, return_full_exec_context=full_context)
        outs.append(np.asarray(ctx[oname]).reshape(-1))
        if full_context:
            contexts.append(ctx)
    out = np.stack(outs)
    return (out, contexts) if full_context else out


def verify_qonnx(wrapper, x_hw: np.ndarray, reference: np.ndarray) -> dict:
    """QONNX execution vs PyTorch logits on the same quantized inputs; raise on any difference."""
    got = execute_qonnx(wrapper, x_hw).astype(np.float64)
    ref = reference.reshape(len(reference), -1).astype(np.float64)
    diff = np.abs(got - ref)
    # float32 execution of fixed-point sums is exact up to 2^24 ulps; allow that rounding only
    tol = np.maximum(np.abs(ref), 1.0) * 2.0**-22
    result = {
        "samples": int(len(x_hw)),
        "max_abs_diff": float(diff.max()) if diff.size else 0.0,
        "argmax_agreement": float((got.argmax(1) == ref.argmax(1)).mean()) if len(ref) else 1.0,
    }
    if (diff > tol).any():
        raise VerificationError(
            f"the exported QONNX graph disagrees with the PyTorch model (max |diff| {result['max_abs_diff']:.3g} "
            f"on {int((diff > tol).any(1).sum())}/{len(x_hw)} samples): the export or a graph rewrite changed "
            "the numbers; check for float scales (use power-of-two quantizers) and unsupported layers"
        )
    return result
