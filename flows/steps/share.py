"""Step `share`: k-means weight sharing per layer (2^b - 1 shared values plus the pruned zero) and
centroid fine-tuning with masks and assignments fixed (flows/share.py) -> `model/shared.pt`."""

from __future__ import annotations

import logging

from flows.context import PRUNED_CKPT, SHARED_CKPT, BuildContext
from flows.device import CPU
from flows.metrics import EpochLog
from flows.results import ShareResult
from flows.share import attach_sharing, bake_sharing, centroid_parameters
from flows.train import TrainRecipe, evaluate, set_threads, train

log = logging.getLogger(__name__)


def run(ctx: BuildContext) -> ShareResult:
    set_threads(ctx.cfg.train.threads)
    c, t = ctx.cfg.compress, ctx.cfg.train
    source = PRUNED_CKPT if c.prune else ctx.base_checkpoint
    model = ctx.load_model(source, quantized=False)
    bits = {"conv": c.conv_bits, "fc": c.fc_bits}
    log.info("weight sharing (k-means, linear initialisation):")
    attach_sharing(model, bits, seed=ctx.cfg.seed)  # k-means on the CPU; then the codebooks move with the model
    device = ctx.device
    before = evaluate(model, ctx.data.test, device=device)
    recipe = TrainRecipe(
        c.share_epochs, c.share_lr, t.batch_size, 0.0, ctx.cfg.data.augment, ctx.cfg.seed + 20, "share"
    )
    with EpochLog(ctx.out, "share", ctx.results.histories(), ctx.cfg.tensorboard) as epoch_log:
        history = train(
            model,
            ctx.data.train,
            recipe,
            params=centroid_parameters(model),
            val=ctx.data.val,
            device=device,
            on_epoch=epoch_log,
        )
    model.to(CPU)
    layers = bake_sharing(model, bits)
    ev = evaluate(model, ctx.data.test, device=device)
    val = evaluate(model, ctx.data.val, device=device)
    model.to(CPU)
    ctx.save_checkpoint(model, SHARED_CKPT)
    log.info(
        "shared model: test accuracy %.4f before centroid fine-tuning, %.4f after", before["accuracy"], ev["accuracy"]
    )
    return ShareResult(
        accuracy=ev["accuracy"],
        loss=ev["loss"],
        accuracy_before_finetune=before["accuracy"],
        layers=[vars(lay) for lay in layers],
        history=history,
        val_accuracy=val["accuracy"],
        val_loss=val["loss"],
    )
