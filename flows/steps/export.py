"""Step `export`: QONNX export, cleanup, channels-last incl. Concat, input quantizer absorbed
(`model.qonnx.onnx`); checked against the quantized PyTorch model on real test images."""

from __future__ import annotations

from flows.context import QAT_CKPT, QONNX_FILE, BuildContext
from flows.export import export_model, model_input_shape, quantize_inputs, to_hw_layout, verify_qonnx
from flows.modelstats import reference_logits
from flows.results import ExportResult

VERIFY_IMAGES = 8  # qonnx executes one image at a time; the C simulation checks the whole test set


def run(ctx: BuildContext) -> ExportResult:
    model = ctx.load_model(QAT_CKPT)
    shape = model_input_shape(model, ctx.data.in_shape)
    wrapper = export_model(model, shape, ctx.path(QONNX_FILE), scratch=ctx.tmp)
    sample = ctx.data.test.head(VERIFY_IMAGES)
    xq = quantize_inputs(model, sample.float_images().double())
    check = verify_qonnx(wrapper, to_hw_layout(xq.numpy(), shape), reference_logits(model, xq))
    ops: dict[str, int] = {}
    for node in wrapper.graph.node:
        ops[node.op_type] = ops.get(node.op_type, 0) + 1
    return ExportResult(input_shape=list(shape), ops=ops, transposes=ops.get("Transpose", 0), verify=check)
