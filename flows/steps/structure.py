"""Step `structure`: channel pruning by filter norm, dependency-aware (Fire squeeze/expand/Concat),
then fine-tuning; the network is rebuilt narrower (`model/structured.pt`, `StructureResult.arch`)."""

from __future__ import annotations

import json
import logging

from flows.context import FLOAT_CKPT, STRUCTURED_CKPT, BuildContext
from flows.device import CPU
from flows.errors import UsageError
from flows.metrics import EpochLog
from flows.results import StructureResult
from flows.structured import choose_channels, layer_shapes, shrink, structure_markdown, structure_rows
from flows.train import TrainRecipe, evaluate, set_threads, train

log = logging.getLogger(__name__)


def run(ctx: BuildContext) -> StructureResult:
    set_threads(ctx.cfg.train.threads)
    st, t = ctx.cfg.structure, ctx.cfg.train
    model = ctx.load_model(FLOAT_CKPT, quantized=False)
    decl = ctx.channel_declaration(model)  # a plain network's groups are inferred from its graph
    if not hasattr(decl, "channel_groups"):
        raise UsageError(
            f"model {ctx.cfg.model!r} does not declare channel groups; structured pruning needs them "
            "(declare channel_groups()/arch_for_widths(), or --set structure.enabled=false)"
        )
    device = ctx.device
    before = layer_shapes(model, ctx.data.in_shape)
    acc_before = evaluate(model, ctx.data.test, device=device)["accuracy"]
    val_before = evaluate(model, ctx.data.val, device=device)["accuracy"]
    model.to(CPU)
    try:
        keep = choose_channels(model, st.ratio, st.ratios, st.min_channels, st.norm, decl=decl)
    except ValueError as exc:
        raise UsageError(f"structure: {exc}") from None
    base_arch = dict(ctx.cfg.arch)
    small = shrink(model, keep, lambda widths: ctx.new_model(False, {**base_arch, **widths}), decl=decl)
    arch = {**base_arch, **decl.arch_for_widths({k: int(v.numel()) for k, v in keep.items()})}
    arch = json.loads(json.dumps(arch))  # tuples -> lists: what config.json and the cache hold
    acc_pruned = evaluate(small, ctx.data.test, device=device)["accuracy"]
    val_pruned = evaluate(small, ctx.data.val, device=device)["accuracy"]
    recipe = TrainRecipe(
        st.epochs, st.lr, t.batch_size, t.weight_decay, ctx.cfg.data.augment, ctx.cfg.seed + 5, "structure"
    )
    with EpochLog(ctx.out, "structure", ctx.results.histories(), ctx.cfg.tensorboard) as epoch_log:
        history = train(small, ctx.data.train, recipe, val=ctx.data.val, device=device, on_epoch=epoch_log)
    result = evaluate(small, ctx.data.test)
    val = evaluate(small, ctx.data.val)
    small.to(CPU)
    ctx.save_checkpoint(small, STRUCTURED_CKPT)
    after = layer_shapes(small, ctx.data.in_shape)
    section = {
        "params_before": sum(r.params for r in before),
        "params_after": sum(r.params for r in after),
        "macs_before": sum(r.macs for r in before),
        "macs_after": sum(r.macs for r in after),
        "accuracy_before": acc_before,
        "accuracy_pruned": acc_pruned,
        "accuracy_after": result["accuracy"],
        # the same three on the validation split (None when it is disabled): what automatic choices use
        "val_accuracy_before": val_before,
        "val_accuracy_pruned": val_pruned,
        "val_accuracy_after": val["accuracy"],
        "epochs": st.epochs,
        "ratio": st.ratio,
        "arch": arch,
        "layers": structure_rows(before, after),
    }
    section["markdown"] = structure_markdown(section)
    log.info(
        "structured pruning: MACs %d -> %d, parameters %d -> %d, accuracy %.4f -> %.4f",
        section["macs_before"],
        section["macs_after"],
        section["params_before"],
        section["params_after"],
        acc_before,
        result["accuracy"],
    )
    return StructureResult(
        arch=arch,
        accuracy=result["accuracy"],
        loss=result["loss"],
        structure=section,
        history=history,
        val_accuracy=val["accuracy"],
        val_loss=val["loss"],
    )
