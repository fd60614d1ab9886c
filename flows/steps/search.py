"""Step `search` (with `--max-accuracy-drop PP`): after float training, choose the compression for the
accuracy budget (flows/search.py) and hand the choices to the later steps -> `search.json`.

1. Sensitivity on the validation split (no retraining): per layer accuracy vs pruning density and vs
   weight bits; activation bits (a Brevitas model with 8-bit weights); structured-pruning ratios (after
   `search.finetune_epochs` of fine-tuning: channel pruning without it looks fatal at any ratio).
2. A ladder of candidates (each knob at its most aggressive value within a tolerance), each costed by the
   hardware estimator (export, hls4ml conversion, fit to the board with the sparse and DA kernels as the
   convert step does, flows/kernelfit.py; not compiled).
3. Cheapest first, a candidate is pruned and trained briefly as the QAT step trains (a Brevitas model at
   its bit widths, `search.finetune_epochs`); the first whose drop on the validation split is within the
   budget is chosen.
`apply` puts the choices into the config the later steps read (their cache keys follow).
"""

from __future__ import annotations

import copy
import logging
from dataclasses import replace

import torch

from flows.atomic import atomic_write_json
from flows.config import apply_overrides, config_from_dict
from flows.context import FLOAT_CKPT, BuildContext
from flows.convert import convert, resolve_settings
from flows.errors import UsageError
from flows.export import export_model, model_input_shape
from flows.hardware import estimate_sections
from flows.kernelfit import fit_with_board_kernels, kernel_of
from flows.modelstats import masks_from_zeros
from flows.prune import prunable_layers
from flows.results import SearchResult
from flows.search import (
    Candidate,
    act_reference,
    apply_weights,
    candidates,
    config_overrides,
    keep_top,
    kept_fraction,
    layer_sensitivity,
)
from flows.steps.qat import calibrate
from flows.structured import choose_channels, shrink
from flows.train import TrainRecipe, evaluate, set_threads, train
from models import build_model
from models.quant import QuantSpec

log = logging.getLogger(__name__)

SEARCH_FILE = "search.json"


def run(ctx: BuildContext) -> SearchResult:
    set_threads(ctx.cfg.train.threads)
    s, cfg = ctx.cfg.search, ctx.cfg
    val = ctx.data.val
    if val is None or len(val) == 0:
        raise UsageError(
            "--max-accuracy-drop chooses on the validation split, and this build has none: "
            "set data.val_fraction (e.g. --set data.val_fraction=0.1)"
        )
    sub = val if s.max_samples is None or len(val) <= s.max_samples else val.subset(torch.arange(s.max_samples))
    model = ctx.load_model(FLOAT_CKPT, quantized=False)

    def accuracy(m) -> float:
        return evaluate(m, sub)["accuracy"]

    base = accuracy(model)
    log.info("search: float validation accuracy %.4f on %d images; budget %.2f pp", base, len(sub), s.max_accuracy_drop)
    layers = layer_sensitivity(model, accuracy, tuple(s.densities), tuple(s.weight_bits))
    act_curve = {str(a): accuracy(quant_model(ctx, model, 8, 8, a)) for a in s.act_bits}
    structure_curve = {}
    if cfg.structure.enabled and hasattr(model, "channel_groups"):  # removed, then fine-tuned briefly
        structure_curve = {str(r): accuracy(finetuned(ctx, shrunk(ctx, model, r)[0], r)) for r in s.structure_ratios}
    log.info("search: activation bits %s; structure ratios %s", _fmt(act_curve), _fmt(structure_curve))
    cands = candidates(s.max_accuracy_drop, base, layers, act_curve, structure_curve, tuple(s.tolerances))
    for i, cand in enumerate(cands):
        cand.hardware = hardware_cost(ctx, model, cand, i)
        cand.hardware["weights_kept"] = round(kept_fraction(cand.density, layers), 4)
        log.info("search: candidate %d (tolerance %.2f pp): %s", i, cand.tolerance_pp, _brief(cand))
    chosen = None
    for cand in sorted(cands, key=lambda c: _cost(c, s.objective))[: s.max_candidates]:
        finetuned_accuracy(ctx, model, cand, sub, base, act_curve)
        log.info("search: candidate %s: predicted drop %.2f pp", _brief(cand), cand.predicted_drop_pp)
        if cand.predicted_drop_pp <= s.max_accuracy_drop:
            chosen = cand
            break
    within = chosen is not None
    if chosen is None:  # nothing predicted within the budget: the mildest candidate, said loudly
        chosen = cands[0]
        if chosen.val_accuracy is None:
            finetuned_accuracy(ctx, model, chosen, sub, base, act_curve)
        log.warning(
            "search: no candidate is predicted within %.2f pp; the mildest one (%.2f pp) is built",
            s.max_accuracy_drop,
            chosen.predicted_drop_pp,
        )
    overrides = config_overrides(chosen, cfg.structure.enabled)
    sensitivity = {"layers": layers, "act_bits": act_curve, "structure_ratio": structure_curve}
    result = SearchResult(
        budget_pp=s.max_accuracy_drop,
        objective=s.objective,
        overrides=overrides,
        chosen=chosen.to_dict(),
        candidates=[c.to_dict() for c in cands],
        sensitivity=sensitivity,
        val_float=base,
        val_samples=len(sub),
        within_budget=within,
    )
    atomic_write_json(ctx.path(SEARCH_FILE), result.to_dict())
    return result


def apply(ctx: BuildContext, result: SearchResult) -> None:
    """The config of the later steps: the recipe with the search's choices (run or reused alike)."""
    ctx.cfg = config_from_dict(apply_overrides(ctx.cfg.to_dict(), result.overrides))


def quant_model(ctx: BuildContext, float_model, conv_bits: int, fc_bits: int, act_bits: int, arch=None):
    """A Brevitas model at these widths holding the float model's weights, activations calibrated."""
    spec = QuantSpec(
        weight_bits=max(conv_bits, fc_bits),
        conv_weight_bits=conv_bits,
        fc_weight_bits=fc_bits,
        act_bits=act_bits,
        input_bits=ctx.cfg.quant.input_bits,
    )
    torch.manual_seed(ctx.cfg.seed)
    qm = build_model(ctx.cfg.model, spec, ctx.data.in_shape, ctx.data.num_classes, arch or ctx.cfg.arch)
    qm.load_state_dict(float_model.state_dict(), strict=False)
    calibrate(qm, ctx)
    qm.eval()
    return qm


def shrunk(ctx: BuildContext, model, ratio: float):
    """(the float model with `ratio` of every channel group removed, no fine-tuning; its arch)."""
    if ratio <= 0:
        return model, dict(ctx.cfg.arch)
    st = ctx.cfg.structure
    keep = choose_channels(model, ratio, {}, st.min_channels, st.norm)
    base_arch = dict(ctx.cfg.arch)
    small = shrink(model, keep, lambda widths: ctx.new_model(False, {**base_arch, **widths}))
    arch = {**base_arch, **model.arch_for_widths({k: int(v.numel()) for k, v in keep.items()})}
    small.eval()
    return small, arch


def finetuned(ctx: BuildContext, model, ratio: float):
    """A structurally pruned copy after `search.finetune_epochs` of fine-tuning (the model itself at ratio 0)."""
    if ratio <= 0 or not ctx.cfg.search.finetune_epochs:
        return model
    cfg, t = ctx.cfg, ctx.cfg.train
    model = copy.deepcopy(model)
    recipe = TrainRecipe(
        cfg.search.finetune_epochs, cfg.structure.lr, t.batch_size, t.weight_decay, cfg.data.augment, cfg.seed + 31,
        f"search structure {ratio:g}",
    )
    train(model, ctx.data.train, recipe)
    return model.eval()


def hardware_cost(ctx: BuildContext, float_model, cand: Candidate, index: int) -> dict:
    """The estimator's figures of the candidate's fitted design (exported and converted, not compiled), with
    the kernel each multiplying layer got (`kernels`: "sparse", "da", "latency" or "resource")."""
    cfg, board = ctx.cfg, ctx.board
    small, arch = shrunk(ctx, copy.deepcopy(float_model), cand.structure_ratio)
    with torch.no_grad():
        for name, module, _ in prunable_layers(small):
            module.weight.mul_(keep_top(module.weight, cand.density.get(name, 1.0)))
    qm = quant_model(ctx, small, cand.conv_bits, cand.fc_bits, cand.act_bits, arch)
    path = ctx.tmp / f"candidate{index}.onnx"
    wrapper = export_model(qm, model_input_shape(qm, ctx.data.in_shape), path, ctx.tmp)
    quant = replace(
        cfg.quant,
        weight_bits=max(cand.conv_bits, cand.fc_bits),
        conv_weight_bits=cand.conv_bits,
        fc_weight_bits=cand.fc_bits,
        act_bits=cand.act_bits,
    )
    settings = resolve_settings(cfg.hls, board)
    pipelined = board.backend == "VivadoAccelerator" and cfg.hls.pipeline_axi

    def convert_fn(io_type: str, layer_settings: dict):
        hls = replace(cfg.hls, io_type=io_type)
        return convert(wrapper, ctx.tmp, hls, quant, board, write=False, layer_settings=layer_settings)[0]

    outcome = fit_with_board_kernels(convert_fn, cfg.hls, board, settings.clock_period_ns, pipelined)
    resources, latency = estimate_sections(outcome.estimate, board)
    return {
        "source": "estimate",
        "LUT": resources["LUT"],
        "FF": resources["FF"],
        "DSP": resources["DSP"],
        "BRAM36": resources["BRAM36"],
        "images_per_second": latency["images_per_second"],
        "fits": bool(outcome.fits),
        "io_type": outcome.io_type,
        "kernels": kernel_of(outcome),
    }


def finetuned_accuracy(ctx: BuildContext, float_model, cand: Candidate, sub, base: float, act_curve: dict) -> None:
    """The candidate's predicted drop (pp, into the candidate with its validation accuracy): a copy is
    structurally pruned, magnitude pruned to its densities, then trained for `search.finetune_epochs` as
    the QAT step trains, a Brevitas model at its weight and activation bits with the pruned weights held
    at zero, so the rounding the hardware does is learnt rather than only measured. Without fine-tuning
    epochs: the rounded copy's drop plus the activation width's own drop (`act_curve`)."""
    cfg, s = ctx.cfg, ctx.cfg.search
    model, arch = shrunk(ctx, copy.deepcopy(float_model), cand.structure_ratio)
    bits = {"conv": cand.conv_bits, "fc": cand.fc_bits}
    apply_weights(model, cand.density, bits)
    if not s.finetune_epochs:
        cand.val_accuracy = evaluate(model, sub)["accuracy"]
        act_drop = max(0.0, act_reference(act_curve) - act_curve.get(str(cand.act_bits), act_reference(act_curve)))
        cand.predicted_drop_pp = round(100 * (base - cand.val_accuracy + act_drop), 3)
        return
    qm = quant_model(ctx, model, cand.conv_bits, cand.fc_bits, cand.act_bits, arch)
    t = cfg.train
    recipe = TrainRecipe(
        s.finetune_epochs, t.qat_lr, t.batch_size, t.weight_decay, cfg.data.augment, cfg.seed + 30, "search QAT"
    )
    train(qm, ctx.data.train, recipe, masks=masks_from_zeros(qm))
    cand.val_accuracy = evaluate(qm, sub)["accuracy"]
    cand.predicted_drop_pp = round(100 * (base - cand.val_accuracy), 3)


def _cost(c: Candidate, objective: str) -> tuple:
    hw = c.hardware
    fits = 0 if hw.get("fits") else 1
    if objective == "images_per_second":
        return (fits, -(hw.get("images_per_second") or 0), hw.get("LUT") or 0)
    return (fits, hw.get("LUT") or 0, -(hw.get("images_per_second") or 0))


def _brief(c: Candidate) -> str:
    hw = c.hardware
    dens = ", ".join(f"{k.split('.')[-1]} {v:g}" for k, v in c.density.items())
    return (
        f"densities [{dens}], weights {c.conv_bits}/{c.fc_bits} bits (conv/fc), activations {c.act_bits} bits, "
        f"structure ratio {c.structure_ratio:g}; LUT {hw.get('LUT', 0):.0f}, "
        f"{hw.get('images_per_second') or 0:.0f} images/s, fits {hw.get('fits')}"
    )


def _fmt(curve: dict) -> str:
    return ", ".join(f"{k}: {v:.3f}" for k, v in curve.items()) or "-"
