"""Step `csim`: the compiled C simulation of the whole test set against the quantized PyTorch model in
float64, bit for bit (`csim.json`). It also writes hls4ml's testbench files (`csim/tb_data/`) and, on a
mismatch, traces the first diverging hls4ml layer (`csim/debug/`) and fails with exit code 5."""

from __future__ import annotations

import logging
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
from qonnx.core.modelwrapper import ModelWrapper

from flows.atomic import atomic_write_bytes, atomic_write_json
from flows.context import CSIM_DIR, CSIM_FILE, QAT_CKPT, QONNX_FILE, BuildContext
from flows.convert import convert
from flows.csim import compare, diagnose, load_library
from flows.errors import VerificationError
from flows.export import model_input_shape, quantize_inputs, to_hw_layout
from flows.modelstats import reference_logits
from flows.results import CSimResult

log = logging.getLogger(__name__)


def run(ctx: BuildContext) -> CSimResult:
    cfg, conv = ctx.cfg, ctx.results.convert
    model = ctx.load_model(QAT_CKPT)
    shape = model_input_shape(model, ctx.data.in_shape)
    test = ctx.data.test.head(cfg.csim.samples)
    xq = quantize_inputs(model, test.float_images().double())
    reference = reference_logits(model, xq)
    x_hw = to_hw_layout(xq.numpy(), shape)
    lib = load_library(ctx.path(conv.project), conv.project_name, int(np.prod(shape)), reference.shape[1])
    out, parity, result = run_parity(lib, x_hw, reference, test.labels.numpy())
    write_testbench(ctx.path(CSIM_DIR) / "tb_data", x_hw[: cfg.csim.tb_samples], out[: cfg.csim.tb_samples])
    if not parity.exact:
        result.diagnosis = _diagnose(ctx, x_hw[parity.mismatched_samples[: cfg.csim.diagnose_samples]])
        atomic_write_json(ctx.path(CSIM_FILE), result.to_dict())
        where = result.diagnosis.get("message", "no single layer found")
        raise VerificationError(
            f"C simulation disagrees with the quantized PyTorch model: {len(parity.mismatched_samples)}/"
            f"{parity.samples} images differ (argmax agreement {parity.argmax_agreement:.4f}, max |diff| "
            f"{parity.max_abs_diff:.3g}); {where}. Details: {ctx.path(CSIM_FILE)}"
        )
    atomic_write_json(ctx.path(CSIM_FILE), result.to_dict())
    log.info(
        "csim: %d images, bit-exact %.4f, argmax agreement %.4f, accuracy %.4f",
        parity.samples,
        parity.bit_exact_fraction,
        parity.argmax_agreement,
        result.accuracy_csim,
    )
    return result


def write_testbench(folder: Path, x: np.ndarray, y: np.ndarray) -> None:
    """hls4ml's C/RTL testbench reads tb_data/tb_input_features.dat and tb_output_predictions.dat."""

    def fmt(a: np.ndarray) -> bytes:
        return ("\n".join(" ".join(repr(float(v)) for v in row) for row in a.reshape(len(a), -1)) + "\n").encode()

    atomic_write_bytes(folder / "tb_input_features.dat", fmt(x))
    atomic_write_bytes(folder / "tb_output_predictions.dat", fmt(y))


def _diagnose(ctx: BuildContext, x_hw: np.ndarray) -> dict:
    """Trace the design the convert step built (its io type and reuse factors) layer by layer."""
    conv = ctx.results.convert
    try:
        wrapper = ModelWrapper(str(ctx.path(QONNX_FILE)))
        hls = replace(ctx.cfg.hls, io_type=conv.io_type)
        layer_settings = conv.resources.get("fit", {}).get("layer_settings") or {}
        hls_model, _ = convert(
            wrapper, ctx.tmp, hls, ctx.cfg.quant, ctx.board, write=False, trace=True, layer_settings=layer_settings
        )
        found = diagnose(wrapper, hls_model, x_hw, ctx.path(CSIM_DIR) / "debug", ctx.cfg.hls.pipeline_axi)
    except Exception as exc:  # the diagnosis must not hide the mismatch itself
        log.warning("layer-by-layer diagnosis failed: %s", exc)
        return {"message": f"layer-by-layer diagnosis failed ({exc})"}
    if found is None:
        return {"message": "every traced layer matches QONNX; the difference is in the output conversion"}
    return {"message": found.describe(), **vars(found)}


def run_parity(lib, x_hw: np.ndarray, reference: np.ndarray, labels: np.ndarray):
    """Run the C simulation library on `x_hw` and compare with `reference`: (outputs, parity, CSimResult)."""
    t0 = time.perf_counter()
    out = lib.run(x_hw)
    run_s = time.perf_counter() - t0
    parity = compare(out, reference)
    result = CSimResult(
        samples=parity.samples,
        parity=parity.to_dict(),
        accuracy_csim=float((out.argmax(1) == labels).mean()),
        accuracy_reference=float((reference.argmax(1) == labels).mean()),
        run_seconds=round(run_s, 2),
        images_per_second_csim=round(parity.samples / max(run_s, 1e-9), 1),
    )
    return out, parity, result
