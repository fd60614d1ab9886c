"""Step `qat`: Brevitas quantization-aware fine-tuning from the float (or pruned/shared) weights;
pruned weights stay zero (`model/qat.pt`). Activation scales are calibrated on real data first."""

from __future__ import annotations

import logging

import torch

from flows.context import QAT_CKPT, BuildContext
from flows.device import CPU
from flows.errors import VerificationError
from flows.metrics import EpochLog
from flows.modelstats import hardware_weight_stats, masks_from_zeros, quantized_bytes
from flows.results import QATResult
from flows.train import TrainRecipe, evaluate, set_threads, train

log = logging.getLogger(__name__)

QUANTIZER_KEYS = ("act_quant", "weight_quant", "bias_quant")


def run(ctx: BuildContext) -> QATResult:
    set_threads(ctx.cfg.train.threads)
    t = ctx.cfg.train
    model = ctx.new_model(quantized=True)
    source = ctx.compressed_checkpoint
    missing, unexpected = model.load_state_dict(ctx.load_state(source), strict=False)
    if unexpected or any(not any(q in k for q in QUANTIZER_KEYS) for k in missing):
        raise VerificationError(
            f"{source} does not match the quantized model: missing {missing}, unexpected {unexpected}"
        )
    masks = masks_from_zeros(model) if source != ctx.base_checkpoint else None
    calibrate(model, ctx)
    recipe = TrainRecipe(
        t.qat_epochs, t.qat_lr, t.batch_size, t.weight_decay, ctx.cfg.data.augment, ctx.cfg.seed + 1, "qat"
    )
    device = ctx.device
    with EpochLog(ctx.out, "qat", ctx.results.histories(), ctx.cfg.tensorboard) as epoch_log:
        history = train(model, ctx.data.train, recipe, masks=masks, val=ctx.data.val, device=device, on_epoch=epoch_log)
    result = evaluate(model, ctx.data.test, device=device)
    val = evaluate(model, ctx.data.val, device=device)
    model.to(CPU)  # checkpoints, the weight statistics and everything after QAT (export, csim) on the CPU
    ctx.save_checkpoint(model, QAT_CKPT)
    spec = ctx.quant_spec()
    layers = hardware_weight_stats(model, spec)
    log.info(
        "quantized model: test accuracy %.4f, validation accuracy %s",
        result["accuracy"],
        "-" if val["accuracy"] is None else f"{val['accuracy']:.4f}",
    )
    return QATResult(
        accuracy=result["accuracy"],
        loss=result["loss"],
        source=source,
        bytes_quantized=quantized_bytes(model, spec),
        active_weights=sum(lay["active"] for lay in layers),
        layers=layers,
        weight_bits={"conv": spec.bits_for("conv"), "fc": spec.bits_for("fc")},
        act_bits=spec.act_bits,
        input_bits=spec.input_bits,
        history=history,
        val_accuracy=val["accuracy"],
        val_loss=val["loss"],
    )


@torch.no_grad()
def calibrate(model: torch.nn.Module, ctx: BuildContext, batches: int = 8) -> None:
    """Initialise activation scales from real data before QAT (Brevitas collects runtime stats)."""
    model.train()
    data = ctx.data.train
    for i in range(min(batches, -(-len(data) // 128))):  # small data sets: as many batches as there are
        model(data.float_images(slice(i * 128, (i + 1) * 128)))
    model.eval()
