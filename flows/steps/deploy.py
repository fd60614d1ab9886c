"""Step `deploy` (PYNQ boards): `deploy/`, the folder to copy to the board. The test images the C
simulation ran, quantized and in the hardware's input layout (`x_test.npy`), their labels, the C
simulation's outputs (`csim_outputs.npy`: the quantized PyTorch model in float64, which the csim step
proved equal to the C simulation bit for bit on these same images), `deploy.json` with the AXI stream
of the generated wrapper, `run_on_board.py`, and the overlay (`fireflow.bit` + `.hwh`) when the
bitstream step built one (flows/deploy.py)."""

from __future__ import annotations

import logging

from flows.context import DEPLOY_DIR, QAT_CKPT, BuildContext
from flows.deploy import RUNNER, axi_stream_format, write_deploy
from flows.errors import VerificationError
from flows.export import model_input_shape, quantize_inputs, to_hw_layout
from flows.modelstats import reference_logits
from flows.results import DeployResult

log = logging.getLogger(__name__)


def run(ctx: BuildContext) -> DeployResult:
    conv, csim, bits = ctx.results.convert, ctx.results.csim, ctx.results.bitstream
    fmt = axi_stream_format(ctx.path(conv.project), conv.project_name)
    model = ctx.load_model(QAT_CKPT)
    shape = model_input_shape(model, ctx.data.in_shape)
    test = ctx.data.test.head(ctx.cfg.csim.samples)
    xq = quantize_inputs(model, test.float_images().double())
    outputs = reference_logits(model, xq)
    if csim is None or csim.samples != len(xq) or csim.parity.get("bit_exact_fraction") != 1.0:
        raise VerificationError(
            "deploy/ needs the C simulation's outputs on the same images, bit-exact with PyTorch; rerun: --force csim"
        )
    overlay = None
    if bits is not None and bits.status == "built":
        overlay = {"bit": str(ctx.path(bits.bit)), "hwh": str(ctx.path(bits.hwh))}
    meta = {
        "model": ctx.cfg.model,
        "board": ctx.board.name,
        "part": ctx.board.part,
        "project_name": conv.project_name,
        "input_shape": list(shape if len(shape) == 1 else (shape[1], shape[2], shape[0])),  # the hardware's (HWC)
        "io_type": conv.io_type,
        "csim_outputs_source": "quantized PyTorch model in float64; equal bit for bit to the C simulation "
        f"on these {len(xq)} images (csim step)",
    }
    files = write_deploy(
        ctx.path(DEPLOY_DIR), fmt, to_hw_layout(xq.numpy(), shape), test.labels.numpy(), outputs, meta, overlay
    )
    log.info(
        "deploy: %d test images, %s%s",
        len(xq),
        RUNNER,
        " and the overlay" if overlay else " (no overlay: --bitstream where Vivado is installed builds one)",
    )
    return DeployResult(folder=DEPLOY_DIR, images=len(xq), files=files, overlay=overlay is not None, stream=fmt)
