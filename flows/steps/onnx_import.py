"""Step `export` of the `onnx` step list: a user's QONNX file instead of training (MODEL is a .onnx path).

The file is checked (flows/byo/onnx.py: what cannot be bit-exact is refused with exit 2), cleaned, made
channels-last with its input Quant absorbed into the hardware input type, saved as `model.qonnx.onnx`, and the
cleaned graph is checked against the file as given on a few test images (QONNX execution, exact).
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path

import numpy as np
from qonnx.util.cleanup import cleanup_model

from flows.atomic import atomic_write_bytes
from flows.byo.onnx import input_type, prepare_qonnx, quantize_array, read_qonnx
from flows.context import QONNX_FILE, BuildContext
from flows.export import execute_qonnx, to_hw_layout, verify_qonnx
from flows.results import ExportResult

log = logging.getLogger(__name__)

VERIFY_IMAGES = 8


def run(ctx: BuildContext) -> ExportResult:
    path = Path(ctx.cfg.model)
    original = read_qonnx(path, ctx.data.in_shape)
    shape = tuple(d.dim_value for d in original.graph.input[0].type.tensor_type.shape.dim)[1:]
    with tempfile.TemporaryDirectory(dir=ctx.tmp) as tmp:
        wrapper = prepare_qonnx(original, Path(tmp) / "raw.onnx", path)
        staged = Path(tmp) / "model.onnx"
        wrapper.save(str(staged))
        atomic_write_bytes(ctx.path(QONNX_FILE), staged.read_bytes())
    signed, width, frac = input_type(wrapper)
    images = ctx.data.test.head(VERIFY_IMAGES).float_images().numpy()
    xq = quantize_array(images, signed, width, frac)
    # the file as given (NCHW or flat, input Quant included) is the reference of the cleaned graph
    reference = execute_qonnx(cleanup_model(original), xq.reshape(len(xq), *shape).astype(np.float32))
    check = verify_qonnx(wrapper, to_hw_layout(xq, shape), reference)
    ops: dict[str, int] = {}
    for node in wrapper.graph.node:
        ops[node.op_type] = ops.get(node.op_type, 0) + 1
    log.info("imported %s: %s, input %sfixed<%d,%d>", path, ops, "" if signed else "u", width, width - frac)
    return ExportResult(input_shape=list(shape), ops=ops, transposes=ops.get("Transpose", 0), verify=check)
