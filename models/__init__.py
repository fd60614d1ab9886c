"""Model registry: names -> constructors and the default recipe each network trains with.

`build_model(name, quant, in_shape, num_classes, arch)` returns a Brevitas (quantization-aware)
`nn.Module` whose forward maps a float image batch (N, C, H, W) in the data set's range to logits.
A user brings their own network with a `module:function` entry point of the same signature.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from torch import nn

from models.quant import QuantSpec


@dataclass(frozen=True)
class ModelEntry:
    """A registered network: its constructor, a one-line description, its default recipe."""

    build: Callable[..., nn.Module]
    description: str
    defaults: dict = field(default_factory=dict)  # config overrides, e.g. {"train.epochs": 12}
    # arch overrides for float pre-training only, e.g. {"batch_norm": True}: the float step builds the net
    # with them and folds the extras away (models.bn.fold_batchnorm) before QAT loads the weights
    train_arch: dict = field(default_factory=dict)


def _lenet300(quant: QuantSpec, in_shape, num_classes, arch: dict) -> nn.Module:
    from models.lenet import LeNet300100

    return LeNet300100(quant, in_shape, num_classes, **arch)


def _lenet5(quant: QuantSpec, in_shape, num_classes, arch: dict) -> nn.Module:
    from models.lenet import LeNet5

    return LeNet5(quant, in_shape, num_classes, **arch)


def _spec_from_arch(cls, arch: dict, kind: str, tuple_keys: tuple[str, ...]):
    """Build an architecture dataclass from JSON-style knobs (lists become tuples); unknown knobs raise."""
    merged = dict(arch)
    for key in tuple_keys:
        if isinstance(merged.get(key), list):
            merged[key] = tuple(tuple(v) if isinstance(v, list) else v for v in merged[key])
    try:
        return cls(**merged)
    except TypeError as exc:
        raise ValueError(f"unknown {kind} architecture option: {exc}") from None


def _fire_arch(arch: dict):
    from models.fire import FireNetSpec

    return _spec_from_arch(FireNetSpec, arch, "Fire", ("expand", "pool_after", "fires", "stem_fire"))


def _lenet5_fire(quant: QuantSpec, in_shape, num_classes, arch: dict) -> nn.Module:
    from models.fire import FireNet

    return FireNet(quant, _fire_arch(arch), in_shape, num_classes)


def _vgg_spec(cls, arch: dict):
    return _spec_from_arch(cls, arch, "VGG", ("channels", "pool_after", "classifier", "stem_channels", "fires"))


def _vgg19(quant: QuantSpec, in_shape, num_classes, arch: dict) -> nn.Module:
    from models.vgg import VGG19, VGGSpec

    return VGG19(quant, _vgg_spec(VGGSpec, arch), in_shape, num_classes)


def _vgg_fire(quant: QuantSpec, in_shape, num_classes, arch: dict) -> nn.Module:
    from models.vgg import VGGFire, VGGFireSpec

    return VGGFire(quant, _vgg_spec(VGGFireSpec, arch), in_shape, num_classes)


# Deep Compression recipes: the paper's bit widths (LeNet-300-100: 6-bit FC; LeNet-5: 8-bit conv, 5-bit
# FC), hardware QAT at the same widths, and per-layer target densities below the paper's.
# Deep Compression recipes, tuned on MNIST (bench/deep_compression.py): per-layer target densities
# below the paper's, k-means widths (LeNet-300-100: 4-bit FC where the paper used 6; LeNet-5: the
# paper's 8-bit conv / 5-bit FC) and hardware QAT at the same widths, except LeNet-5's convs: QAT
# narrows them to 5 bits, so distributed arithmetic builds conv2 in ~18k LUT instead of ~38k (da4ml's
# cost of its 2,000 nonzero weights) and the whole network streams one pixel per clock on the PYNQ-Z2.
# LeNet-5's dense layers keep 5% / 20% (ip1 at 3% and ip2 at 15% cost 0.07 pp: 99.33% vs 99.40% in
# hardware); the sparse kernel pays for them in PEs and block RAM, not in the fit.
LENET300_RECIPE = {
    "train.epochs": 20,
    "compress.enabled": True,
    "compress.density": {"ip1": 0.07, "ip2": 0.08, "ip3": 0.25},
    "compress.iterations": 4,
    "compress.retrain_epochs": 4,
    "compress.retrain_lr": 0.002,
    "compress.fc_bits": 4,
    "compress.fc_index_bits": 5,
    "quant.fc_weight_bits": 4,
}
LENET5_RECIPE = {
    "train.epochs": 15,
    "compress.enabled": True,
    "compress.density": {"conv1": 0.6, "conv2": 0.08, "ip1": 0.05, "ip2": 0.2},
    "compress.iterations": 4,
    "compress.retrain_epochs": 3,
    "compress.retrain_lr": 0.002,
    "compress.conv_bits": 8,
    "compress.fc_bits": 5,
    "compress.conv_index_bits": 8,
    "compress.fc_index_bits": 6,
    "quant.conv_weight_bits": 5,
    "quant.fc_weight_bits": 5,
}

# lenet5_fire is built for the PYNQ-Z2 at a fraction of FINN LFC-w1a2's LUTs: 40% of the channels
# removed (structure.ratio 0.4, 16 fine-tuning epochs), magnitude pruning of the convs to 25-60%
# (distributed arithmetic and hls4ml's latency strategy drop zero weights), 4-bit weights (k-means and
# QAT alike, 20 QAT epochs) and 6-bit activations, so every conv runs at reuse factor 1 (the fit search
# makes them DA), the stem sets the pace (785 cycles/image) and the area recovery folds the classifier.
# Measured on MNIST: README "Measured" (99.11%, 18.8k LUT estimated); with the convs at 20-50% 98.98%
# (17.4k LUT), with 8 structure and 15 QAT epochs 98.92%; ratio 0.5 with 5-bit activations 98.76%.
FIRE_CONV_DENSITY = {
    "features.stem": 0.6,
    "features.fire1.squeeze": 0.4,
    "features.fire1.expand1x1": 0.3,
    "features.fire1.expand3x3": 0.3,
    "features.fire2.squeeze": 0.4,
    "features.fire2.expand1x1": 0.3,
    "features.fire2.expand3x3": 0.25,
}
LENET5_FIRE_RECIPE = {
    "train.epochs": 20,
    "train.qat_epochs": 20,
    "train.qat_lr": 0.001,
    "structure.enabled": True,
    "structure.ratio": 0.4,
    "structure.epochs": 16,
    "compress.enabled": True,
    "compress.density": FIRE_CONV_DENSITY,
    "compress.retrain_epochs": 4,
    "compress.conv_bits": 4,
    "compress.fc_bits": 4,
    "compress.conv_index_bits": 4,
    "compress.fc_index_bits": 4,
    "quant.weight_bits": 4,
    "quant.act_bits": 6,
}

MODELS: dict[str, ModelEntry] = {
    "lenet300_100": ModelEntry(_lenet300, "LeNet-300-100: 784-300-100-10 MLP (Deep Compression's)", LENET300_RECIPE),
    "lenet5": ModelEntry(_lenet5, "Caffe LeNet-5: conv 20@5x5, pool, conv 50@5x5, pool, fc 500, fc 10", LENET5_RECIPE),
    "lenet5_fire": ModelEntry(
        _lenet5_fire,
        "LeNet-5 with Fire modules: conv 24@5x5, pool, Fire(12,24,24), pool, Fire(12,24,24), pool, fc 10; "
        "PYNQ-Z2 recipe: 60% of the channels, magnitude-pruned convs, 4-bit weights, 6-bit activations",
        LENET5_FIRE_RECIPE,
    ),
    "vgg19": ModelEntry(
        _vgg19,
        "VGG-19's 16 3x3 convs (4 pools at 28x28, 5 at 32x32), fc to the classes; arch.width scales it",
        {},
        train_arch={"batch_norm": True},
    ),
    "vgg_fire": ModelEntry(
        _vgg_fire,
        "VGG-19 stages with Fire modules: two 3x3 convs, 14 Fire modules, late pools, fc to the classes",
        {},
        train_arch={"batch_norm": True},
    ),
}


def is_model_file(name: str) -> bool:
    """A MODEL naming an ONNX/QONNX file (imported instead of built and trained)."""
    return name.lower().endswith(".onnx")


def _not_buildable(quant: QuantSpec, in_shape, num_classes, arch: dict) -> nn.Module:
    raise ValueError("a QONNX file is not a PyTorch network: it is imported, not built or trained")


def available_models() -> list[str]:
    return sorted(MODELS)


def resolve_model(name: str) -> ModelEntry:
    """Look a name up in the registry, or import a user's `package.module:function` entry point.

    Raises KeyError for an unknown name and ValueError (with the reason) for an entry point that
    cannot be imported or is not a function."""
    if name in MODELS:
        return MODELS[name]
    if is_model_file(name):
        if not Path(name).is_file():
            raise ValueError(f"no such file {name!r}; give the path of a QONNX file (brevitas export_qonnx)")
        return ModelEntry(_not_buildable, f"QONNX file {name}", {})
    if ":" in name:
        module_name, func_name = name.split(":", 1)
        if not module_name or module_name.startswith(".") or not func_name:
            raise ValueError(f"entry point {name!r} must be an absolute 'package.module:function'")
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            raise ValueError(f"cannot import {module_name!r} ({exc}); is its folder on PYTHONPATH?") from None
        except Exception as exc:  # the user's module failed while importing
            raise ValueError(f"importing {module_name!r} failed: {type(exc).__name__}: {exc}") from None
        func = getattr(module, func_name, None)
        if not callable(func):
            raise ValueError(f"{module_name!r} has no function {func_name!r}")
        return ModelEntry(func, f"user model {name}", {})
    raise KeyError(name)


def build_model(
    name: str,
    quant: QuantSpec,
    in_shape: tuple[int, int, int] = (1, 28, 28),
    num_classes: int = 10,
    arch: dict | None = None,
) -> nn.Module:
    """Build a network; a user entry point that does not return an `nn.Module` is a ValueError."""
    model = resolve_model(name).build(quant, tuple(in_shape), num_classes, dict(arch or {}))
    if not isinstance(model, nn.Module):
        raise ValueError(f"{name} returned {type(model).__name__}, not a torch.nn.Module")
    return model


def count_weights(model: nn.Module) -> int:
    """Weights and biases of conv and linear layers (quantizer scales are not parameters of the net)."""
    total = 0
    for module in model.modules():
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            total += module.weight.numel() + (module.bias.numel() if module.bias is not None else 0)
    return total
