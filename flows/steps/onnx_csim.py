"""Step `csim` of the `onnx` step list: the compiled C simulation of the test set against QONNX execution of the
imported graph (there is no PyTorch model), bit for bit (`csim.json`); a mismatch fails with exit code 5."""

from __future__ import annotations

import logging

import numpy as np
from qonnx.core.modelwrapper import ModelWrapper

from flows.atomic import atomic_write_json
from flows.byo.onnx import input_type, quantize_array
from flows.context import CSIM_FILE, QONNX_FILE, BuildContext
from flows.csim import load_library
from flows.errors import VerificationError
from flows.export import execute_qonnx, to_hw_layout
from flows.results import CSimResult
from flows.steps.csim import run_parity

log = logging.getLogger(__name__)


def run(ctx: BuildContext) -> CSimResult:
    cfg, conv, export = ctx.cfg, ctx.results.convert, ctx.results.export
    wrapper = ModelWrapper(str(ctx.path(QONNX_FILE)))
    shape = tuple(export.input_shape)
    test = ctx.data.test.head(cfg.csim.samples)
    x_hw = to_hw_layout(quantize_array(test.float_images().numpy(), *input_type(wrapper)), shape)
    reference = execute_qonnx(wrapper, x_hw).astype(np.float64)
    lib = load_library(ctx.path(conv.project), conv.project_name, int(np.prod(shape)), reference.shape[1])
    out, parity, result = run_parity(lib, x_hw, reference, test.labels.numpy())
    atomic_write_json(ctx.path(CSIM_FILE), result.to_dict())
    if not parity.exact:
        raise VerificationError(
            f"C simulation disagrees with QONNX execution of the imported graph: {len(parity.mismatched_samples)}/"
            f"{parity.samples} images differ (max |diff| {parity.max_abs_diff:.3g}). Details: {ctx.path(CSIM_FILE)}"
        )
    log.info("csim vs QONNX: %d images, bit-exact, accuracy %.4f", parity.samples, result.accuracy_csim)
    return result
