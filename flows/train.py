"""Training and evaluation loops (float pre-training, pruning retraining, QAT fine-tuning).

One loop serves every stage: AdamW with a cosine learning-rate schedule, optional random +-2 pixel
shifts, optional fixed pruning masks (weights outside the mask are re-zeroed after every step, so a
pruned connection never comes back), optional per-step hook (weight sharing uses it to tie weights
to their centroids). After every epoch: the held-out (validation) accuracy when a validation split is
given, the weight sparsity, and an `on_epoch(row)` callback (metrics.csv, TensorBoard: flows/metrics.py).
Deterministic for a given seed on the CPU.

Devices: `train(..., device=)` and `evaluate(..., device=)` move the model (in place, as `nn.Module.to`)
and the data (once: `Dataset.to` keeps its copy) to the device; without `device` they use the model's
own. Random numbers (shuffling, shifts) always come from a CPU generator, so a GPU run sees the same
batches; on the CPU every operation is the one it was before devices existed.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from flows.data import Dataset
from flows.prune import prunable_layers

log = logging.getLogger(__name__)

Masks = dict[str, torch.Tensor]  # parameter name -> 0/1 tensor of the same shape


@dataclass
class TrainRecipe:
    """How one stage trains: epochs, batch size, learning rate, decay, augmentation."""

    epochs: int
    lr: float
    batch_size: int = 128
    weight_decay: float = 1e-4
    augment: bool = True
    seed: int = 0
    desc: str = "train"


def set_threads(threads: int = 0) -> int:
    """Small networks run fastest on one thread: on 2 busy cores, 2 threads ran up to 30x slower."""
    n = threads or 1
    torch.set_num_threads(n)
    return n


def shift_images(x: torch.Tensor, max_shift: int, generator: torch.Generator) -> torch.Tensor:
    """Translate each image by a random integer offset in [-max_shift, max_shift] (zero fill).

    The offsets come from `generator` (a CPU generator) whatever device `x` is on."""
    n, _, h, w = x.shape
    padded = F.pad(x, (max_shift, max_shift, max_shift, max_shift))
    dy = torch.randint(0, 2 * max_shift + 1, (n,), generator=generator)
    dx = torch.randint(0, 2 * max_shift + 1, (n,), generator=generator)
    rows = (dy[:, None] + torch.arange(h)[None, :])[:, None, :, None]
    cols = (dx[:, None] + torch.arange(w)[None, :])[:, None, None, :]
    batch = torch.arange(n)[:, None, None, None]
    chans = torch.arange(x.shape[1])[None, :, None, None]
    if x.device.type != "cpu":
        batch, chans, rows, cols = (t.to(x.device) for t in (batch, chans, rows, cols))
    return padded[batch, chans, rows, cols]


def model_device(model: nn.Module) -> torch.device:
    """Where the model's parameters are (the CPU for a model without any)."""
    for p in model.parameters():
        return p.device
    return torch.device("cpu")


@torch.no_grad()
def weight_sparsity(model: nn.Module) -> float:
    """Fraction of zero weights over every conv and fully connected layer."""
    total = zeros = 0
    for _, module, _ in prunable_layers(model):
        w = module.weight
        total += w.numel()
        zeros += int((w == 0).sum())
    return zeros / total if total else 0.0


def apply_masks(model: nn.Module, masks: Masks | None) -> None:
    if not masks:
        return
    params = dict(model.named_parameters())
    with torch.no_grad():
        for name, mask in masks.items():
            params[name].mul_(mask)


def train(
    model: nn.Module,
    data: Dataset,
    recipe: TrainRecipe,
    masks: Masks | None = None,
    after_step: Callable[[nn.Module], None] | None = None,
    params: list[nn.Parameter] | None = None,
    val: Dataset | None = None,
    device: torch.device | str | None = None,
    on_epoch: Callable[[dict], None] | None = None,
) -> list[dict]:
    """Train in place (on `device`, default the model's); returns per-epoch rows {epoch, loss, train_acc,
    lr, val_acc (None without a validation split), sparsity}, each also handed to `on_epoch`."""
    if recipe.epochs <= 0:
        return []
    device = model_device(model) if device is None else torch.device(device)
    model.to(device)
    data = data.to(device)
    val = val.to(device) if val is not None and len(val) else None
    if masks:
        masks = {name: mask.to(device) for name, mask in masks.items()}
    gen = torch.Generator().manual_seed(recipe.seed)
    torch.manual_seed(recipe.seed)
    optim = torch.optim.AdamW(
        params if params is not None else model.parameters(), lr=recipe.lr, weight_decay=recipe.weight_decay
    )
    steps_per_epoch = math.ceil(len(data) / recipe.batch_size)
    total = recipe.epochs * steps_per_epoch
    sched = torch.optim.lr_scheduler.LambdaLR(optim, lambda s: 0.5 * (1 + math.cos(math.pi * min(s, total) / total)))
    apply_masks(model, masks)
    history = []
    for epoch in range(recipe.epochs):
        model.train()
        order = torch.randperm(len(data), generator=gen)
        seen = correct = 0
        loss_sum = 0.0
        bar = tqdm(
            range(steps_per_epoch),
            desc=f"{recipe.desc} {epoch + 1}/{recipe.epochs}",
            leave=False,
            disable=None,
            unit="batch",
        )
        for i in bar:
            idx = order[i * recipe.batch_size : (i + 1) * recipe.batch_size]
            if device.type != "cpu":
                idx = idx.to(device)
            x = data.float_images(idx)
            if recipe.augment:
                x = shift_images(x, 2, gen)
            y = data.labels[idx]
            logits = model(x)
            loss = F.cross_entropy(logits, y)
            optim.zero_grad(set_to_none=True)
            loss.backward()
            optim.step()
            sched.step()
            apply_masks(model, masks)
            if after_step is not None:
                after_step(model)
            seen += len(idx)
            loss_sum += float(loss) * len(idx)
            correct += int((logits.argmax(1) == y).sum())
            if i % 20 == 0:
                bar.set_postfix(loss=f"{loss_sum / seen:.4f}", acc=f"{correct / seen:.4f}")
        row = {"epoch": epoch + 1, "loss": loss_sum / seen, "train_acc": correct / seen, "lr": sched.get_last_lr()[0]}
        row["val_acc"] = evaluate(model, val)["accuracy"] if val is not None else None
        row["sparsity"] = weight_sparsity(model)
        history.append(row)
        log.info(
            "%s epoch %d/%d: loss %.4f, train accuracy %.4f%s",
            recipe.desc,
            epoch + 1,
            recipe.epochs,
            row["loss"],
            row["train_acc"],
            "" if row["val_acc"] is None else f", validation accuracy {row['val_acc']:.4f}",
        )
        if on_epoch is not None:
            on_epoch(row)
    model.eval()
    return history


@torch.no_grad()
def predict(
    model: nn.Module,
    data: Dataset,
    batch_size: int = 500,
    dtype: torch.dtype = torch.float32,
    desc: str | None = None,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Logits for a whole split, in eval mode, in `dtype` (float64 gives exact fixed-point sums), on
    `device` (default: the model's; the model is moved there in place)."""
    if device is not None:
        model.to(device)
    data = data.to(model_device(model))
    model.eval()
    outs = []
    n = len(data)
    for start in tqdm(range(0, n, batch_size), desc=desc or "predict", leave=False, disable=None):
        x = data.float_images(slice(start, start + batch_size)).to(dtype)
        out = model(x)
        outs.append(out.value if hasattr(out, "value") else out)
    return torch.cat(outs).to(dtype)


@torch.no_grad()
def evaluate(model: nn.Module, data: Dataset, batch_size: int = 500, device: torch.device | str | None = None) -> dict:
    """Top-1 accuracy, mean cross-entropy loss and error on a split ({"accuracy", "loss", "error"}), in eval
    mode, on `device` (default: the model's; the model is moved there in place, the split once).
    An empty split gives None for all three."""
    if len(data) == 0:
        return {"accuracy": None, "loss": None, "error": None}
    logits = predict(model, data, batch_size, desc="evaluate", device=device)
    labels = data.to(logits.device).labels
    loss = F.cross_entropy(logits, labels).item()
    acc = (logits.argmax(1) == labels).float().mean().item()
    return {"accuracy": acc, "loss": loss, "error": 1.0 - acc}
