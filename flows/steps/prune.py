"""Step `prune`: magnitude pruning (threshold = quality x std per layer), iterative, with retraining
(flows/prune.py) -> `model/pruned.pt`."""

from __future__ import annotations

import logging

from flows.context import PRUNED_CKPT, BuildContext
from flows.device import CPU
from flows.errors import UsageError
from flows.metrics import EpochLog
from flows.prune import magnitude_prune
from flows.results import PruneResult
from flows.train import TrainRecipe, evaluate, set_threads, train

log = logging.getLogger(__name__)


def run(ctx: BuildContext) -> PruneResult:
    set_threads(ctx.cfg.train.threads)
    c, t = ctx.cfg.compress, ctx.cfg.train
    model = ctx.load_model(ctx.base_checkpoint, quantized=False)
    device = ctx.device
    model.to(device)  # pruning itself (thresholds, masks) runs where the weights are
    epoch_log = EpochLog(ctx.out, "prune", ctx.results.histories(), ctx.cfg.tensorboard)

    def retrain(m, masks, k):
        recipe = TrainRecipe(
            c.retrain_epochs,
            c.retrain_lr,
            t.batch_size,
            t.weight_decay,
            ctx.cfg.data.augment,
            ctx.cfg.seed + 10 + k,
            f"prune {k}/{c.iterations}",
        )
        return train(m, ctx.data.train, recipe, masks=masks, val=ctx.data.val, device=device, on_epoch=epoch_log)

    try:
        with epoch_log:
            result = magnitude_prune(model, c.iterations, retrain, c.quality, c.density, c.default_quality)
    except ValueError as exc:
        raise UsageError(f"compress: {exc}") from None
    ev = evaluate(model, ctx.data.test)
    val = evaluate(model, ctx.data.val)
    model.to(CPU)
    ctx.save_checkpoint(model, PRUNED_CKPT)
    layers = [
        {
            "name": lp.name,
            "kind": lp.kind,
            "total": lp.total,
            "active": lp.active,
            "pruned": lp.pruned,
            "density": lp.density,
            "quality": lp.quality,
            "std": lp.std,
            "threshold": lp.threshold,
        }
        for lp in result.layers
    ]
    total = sum(lp.total for lp in result.layers)
    active = sum(lp.active for lp in result.layers)
    log.info(
        "pruned model: %d of %d weights kept (%.2f%%), test accuracy %.4f",
        active,
        total,
        100 * active / total,
        ev["accuracy"],
    )
    return PruneResult(
        accuracy=ev["accuracy"],
        loss=ev["loss"],
        total=total,
        active=active,
        layers=layers,
        history=result.history,
        val_accuracy=val["accuracy"],
        val_loss=val["loss"],
    )
