"""Step `train`: float pre-training, the reference accuracy and float32 size (`model/float.pt`).

A model whose registry entry has `train_arch` (e.g. VGG: {"batch_norm": True}) trains in that
variant; its batch norms are then folded into the convolutions (models/bn.py), and what is saved
and evaluated is the BN-free network every later step builds.
"""

from __future__ import annotations

import logging

import torch

from flows.byo.adapt import finish_training
from flows.byo.weights import load_weights
from flows.context import FLOAT_CKPT, BuildContext
from flows.device import CPU, describe
from flows.errors import UsageError
from flows.metrics import EpochLog
from flows.results import TrainResult
from flows.train import TrainRecipe, evaluate, set_threads, train
from models import count_weights, resolve_model
from models.bn import fold_batchnorm

log = logging.getLogger(__name__)


def run(ctx: BuildContext) -> TrainResult:
    set_threads(ctx.cfg.train.threads)
    t = ctx.cfg.train
    train_arch = resolve_model(ctx.cfg.model).train_arch
    model = ctx.new_model(quantized=False, arch={**ctx.arch, **train_arch} if train_arch else None, stage="train")
    check_shapes(model, ctx)
    conversions = check_hardware_route(ctx)  # a network the hardware cannot take is refused before training
    recipe = TrainRecipe(t.epochs, t.lr, t.batch_size, t.weight_decay, ctx.cfg.data.augment, ctx.cfg.seed, "float")
    data, device = ctx.data, ctx.device
    log.info("training on %s: %d images, %d held out for validation", describe(device), len(data.train), len(data.val))
    if t.weights:
        load_weights(model, t.weights, ctx.cfg.model)
        history = []
    else:
        with EpochLog(ctx.out, "train", ctx.results.histories(), ctx.cfg.tensorboard) as epoch_log:
            history = train(model, data.train, recipe, val=data.val, device=device, on_epoch=epoch_log)
    model.to(CPU)
    model, folded = finish_training(model, ctx.route, data.in_shape, ctx.cfg.model)
    conversions += folded
    if train_arch:
        before = evaluate(model, data.test)["accuracy"]
        state = fold_batchnorm(model)
        model = ctx.new_model(quantized=False)
        model.load_state_dict(state)
        log.info("folded %s into the weights (accuracy %.4f with it)", train_arch, before)
    ctx.save_checkpoint(model, FLOAT_CKPT)
    result = evaluate(model, data.test, device=device)
    val = evaluate(model, data.val, device=device)
    model.to(CPU)
    params = count_weights(model)
    log.info(
        "float model: %d parameters, test accuracy %.4f, validation accuracy %s",
        params,
        result["accuracy"],
        "-" if val["accuracy"] is None else f"{val['accuracy']:.4f}",
    )
    return TrainResult(
        accuracy=result["accuracy"],
        loss=result["loss"],
        params=params,
        bytes_float=params * 4,
        dataset=ctx.data.source,
        train_samples=len(ctx.data.train),
        test_samples=len(ctx.data.test),
        history=history,
        val_accuracy=val["accuracy"],
        val_loss=val["loss"],
        val_samples=len(ctx.data.val),
        route=ctx.route,
        conversions=conversions,
        weights=t.weights,
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


@torch.no_grad()
def check_hardware_route(ctx: BuildContext) -> list[str]:
    """A user's network through the hardware route before any training: plain PyTorch is quantized, a foreign
    Brevitas network inspected (flows/byo/); what cannot be made bit-exact is refused in one line (exit 2),
    what is converted is logged and returned for the report. One zero image through the hardware model."""
    if ctx.route == "own":
        return []
    notes = ctx.conversions()
    model = ctx.new_model(quantized=True)
    model.eval()
    try:
        model(torch.zeros((1, *ctx.data.in_shape)))
    except UsageError:
        raise
    except Exception as exc:  # a quantized layer fed an unquantized tensor, an op Brevitas cannot quantize
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UsageError(
            f"model {ctx.cfg.model!r} fails once quantized for the hardware ({first}); every conv/linear input "
            "must come from a quantized activation (a ReLU, a pool of one, or the input)"
        ) from None
    for line in notes:
        log.info("hardware route (%s): %s", ctx.route, line)
    return notes
