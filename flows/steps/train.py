"""Step `train`: float pre-training, the reference accuracy and float32 size (`model/float.pt`).

A model whose registry entry has `train_arch` (e.g. VGG: {"batch_norm": True}) trains in that
variant; its batch norms are then folded into the convolutions (models/bn.py), and what is saved
and evaluated is the BN-free network every later step builds.
"""

from __future__ import annotations

import logging

import torch

from flows.context import FLOAT_CKPT, BuildContext
from flows.errors import UsageError
from flows.results import TrainResult
from flows.train import TrainRecipe, evaluate, set_threads, train
from models import count_weights, resolve_model
from models.bn import fold_batchnorm

log = logging.getLogger(__name__)


def run(ctx: BuildContext) -> TrainResult:
    set_threads(ctx.cfg.train.threads)
    t = ctx.cfg.train
    train_arch = resolve_model(ctx.cfg.model).train_arch
    model = ctx.new_model(quantized=False, arch={**ctx.arch, **train_arch} if train_arch else None)
    check_shapes(model, ctx)
    recipe = TrainRecipe(t.epochs, t.lr, t.batch_size, t.weight_decay, ctx.cfg.data.augment, ctx.cfg.seed, "float")
    history = train(model, ctx.data.train, recipe)
    if train_arch:
        before = evaluate(model, ctx.data.test)["accuracy"]
        state = fold_batchnorm(model)
        model = ctx.new_model(quantized=False)
        model.load_state_dict(state)
        log.info("folded %s into the weights (accuracy %.4f with it)", train_arch, before)
    result = evaluate(model, ctx.data.test)
    ctx.save_checkpoint(model, FLOAT_CKPT)
    params = count_weights(model)
    log.info("float model: %d parameters, test accuracy %.4f", params, result["accuracy"])
    return TrainResult(
        accuracy=result["accuracy"],
        loss=result["loss"],
        params=params,
        bytes_float=params * 4,
        dataset=ctx.data.source,
        train_samples=len(ctx.data.train),
        test_samples=len(ctx.data.test),
        history=history,
    )


@torch.no_grad()
def check_shapes(model: torch.nn.Module, ctx: BuildContext) -> None:
    """One zero image through the network before training: a network that does not take the data's
    input shape, or does not give one logit per class, is refused in one line instead of failing
    deep inside the first training batch."""
    shape = (1, *ctx.data.in_shape)
    was_training = model.training
    model.eval()
    try:
        out = model(torch.zeros(shape))
    except Exception as exc:  # the user's forward: any error means the shapes do not fit
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UsageError(
            f"model {ctx.cfg.model!r} cannot take the {ctx.cfg.data.dataset} input of shape {shape} ({first}); "
            "build it for that input shape"
        ) from None
    finally:
        model.train(was_training)
    out = out.value if hasattr(out, "value") else out
    if tuple(out.shape) != (1, ctx.data.num_classes):
        raise UsageError(
            f"model {ctx.cfg.model!r} gives outputs of shape {tuple(out.shape)} for one image; "
            f"expected (1, {ctx.data.num_classes}): one logit per class of {ctx.cfg.data.dataset}"
        )
