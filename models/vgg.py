"""VGG-19 and VGG-Fire (VGG's stages built from Fire modules), quantization-aware, for 28x28 and 32x32 inputs.

`VGG19` keeps the 16 convolutions of VGG-19 (Simonyan & Zisserman, configuration E): stages of
[64, 64], [128, 128], [256 x 4], [512 x 4], [512 x 4] 3x3 convolutions (padding 1), each stage followed
by a 2x2 pool. Adaptations to small images:
- 28x28 inputs: five pools would take the map to 28 -> 14 -> 7 -> 3 -> 1 -> 0, so a pool is only placed
  where the map is still at least 2x2 (`pool_after=None`, the default): 28x28 gets four pools (final map
  1x1), 32x32 all five (final map 1x1, as in the usual CIFAR VGG). No padding of the input is needed,
  and both input sizes end in a 1x1x512 map feeding the classifier.
- Classifier: `classifier` lists hidden fully connected widths; the default `()` is one Linear from the
  flattened last map to the classes (512 -> 10 at width 1.0). The convolutions alone hold 20.02M
  parameters; the default network has 20,028,362 (80.1 MB float) for 28x28x1 and 20,029,514 for
  32x32x3, which matches the seed's 79-80 MB VGG. An ImageNet-style 4096-4096 head
  (`classifier=(4096, 4096)`) would add 18.9M parameters (155.8 MB in all); `classifier=(512,)` gives
  a 512-512-10 head.
- `width` scales every convolution (1.0 = the paper's widths; tests use 1/16 to run in seconds).

`VGGFire` keeps VGG-19's five stages and their widths but follows SqueezeNet's three strategies:
- stage 1 stays plain convolution(s), as SqueezeNet's conv1 (nothing to squeeze in a 1- or 3-channel
  image): `stem_kernel=3` is VGG's two 3x3 convolutions, `stem_kernel=5` one 5x5 (same field of view);
- the 14 convolutions of stages 2-5 become Fire modules (`models.fire.Fire`) whose expand width is the
  VGG width: `squeeze_ratio` (fewer inputs to the 3x3 filters) and `pct3x3` (1x1 filters instead of 3x3)
  are SqueezeNet's metaparameters;
- late downsampling: `pool_after` names the stages followed by a pool; the default skips the pool after
  stage 1, so stage 2 runs at full resolution (28x28 ends at 1x1, 32x32 at 2x2).
Defaults `squeeze_ratio=0.125` (SqueezeNet's), `pct3x3=0.25` give 1,223,274 parameters (4.9 MB float)
at width 1.0 on 28x28x1 (1,239,786 on 32x32x3: the last map is 2x2). Other points at width 1.0, 28x28x1:
`pct3x3=0.5` (SqueezeNet's) 1.82M (7.3 MB); `squeeze_ratio=0.0625` 0.64M (2.5 MB), which also fits 5-bit
weights in a PYNQ-Z2's BRAM (4.9 Mbit).

Both networks train in float with batch norm (`batch_norm=True`: conv -> BN -> ReLU; see models/bn.py
for folding it away) and are quantized and exported without it (`batch_norm=False`, the default).

Structured pruning (models/groups.py): `channel_groups()` lists every prunable group of channels (the
layer producing them and every layer reading them) and `arch_for_widths(widths)` returns the complete
architecture dict that builds the same network with other group widths
(`models.build_model(name, spec, in_shape, classes, arch)`). Groups are named after their producer
("features.conv3", "features.fire2.squeeze", "classifier.fc1"); a consumer `(module, offset, elements)`
reads channel c of the group as input channel `offset + c` (conv) or as input features
`[(offset + c) * elements, (offset + c + 1) * elements)` (the Linear after the flatten, elements = H*W).
With batch norm, the BatchNorm2d after a producer is listed as a consumer too (offset 0, 1 element): its
per-channel vectors are indexed by the channel directly.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace

import torch
from torch import nn

from models.fire import Fire, FireWidths, fire_widths
from models.groups import ChannelGroup
from models.quant import QuantSpec, quant_conv, quant_input, quant_linear, quant_relu

# VGG-19's convolution widths per stage (configuration E); a 2x2 pool may follow each stage
VGG19_STAGES: tuple[tuple[int, ...], ...] = ((64, 64), (128, 128), (256,) * 4, (512,) * 4, (512,) * 4)
STAGE_NAMES: tuple[str, ...] = tuple(f"stage{i + 1}" for i in range(len(VGG19_STAGES)))
N_CONVS = sum(len(s) for s in VGG19_STAGES)  # 16
N_FIRES = sum(len(s) for s in VGG19_STAGES[1:])  # 14: every convolution after stage 1


def scale_width(channels: int, width: float, minimum: int = 1) -> int:
    """A layer width scaled by the `width` multiplier, rounded, at least `minimum`."""
    return max(minimum, round(channels * width))


def _check_common(width: float, pool: str, pool_after: tuple[str, ...] | None, classifier: tuple[int, ...]) -> None:
    if not width > 0:
        raise ValueError(f"width must be > 0, got {width}")
    if pool not in ("max", "avg"):
        raise ValueError(f"pool must be 'max' or 'avg', got {pool!r}")
    if pool_after is not None:
        bad = [p for p in pool_after if p not in STAGE_NAMES]
        if bad:
            raise ValueError(f"pool_after names unknown stages {bad}; stages are {list(STAGE_NAMES)}")
    if any(int(h) < 1 for h in classifier):
        raise ValueError(f"classifier hidden widths must be >= 1, got {list(classifier)}")


def _json_ready(value):
    """Tuples -> lists, recursively (an arch dict goes into config.json)."""
    if isinstance(value, dict):
        return {k: _json_ready(v) for k, v in value.items()}
    if isinstance(value, (tuple, list)):
        return [_json_ready(v) for v in value]
    return value


@dataclass(frozen=True)
class VGGSpec:
    """Architecture knobs of `VGG19`."""

    width: float = 1.0  # multiplier of VGG-19's widths (ignored where `channels` is given)
    channels: tuple[int, ...] | None = None  # explicit widths of the 16 convolutions (structured pruning)
    pool: str = "max"  # "max" or "avg"
    pool_after: tuple[str, ...] | None = None  # None: after every stage whose map is still >= 2x2
    classifier: tuple[int, ...] = ()  # hidden fully connected widths; () = one Linear to the classes
    batch_norm: bool = False  # conv -> BN -> ReLU (float training only; fold before quantizing)

    def conv_list(self) -> list[int]:
        if self.channels is not None:
            return [int(c) for c in self.channels]
        return [scale_width(c, self.width) for stage in VGG19_STAGES for c in stage]

    def validate(self) -> None:
        _check_common(self.width, self.pool, self.pool_after, self.classifier)
        if self.channels is not None and (len(self.channels) != N_CONVS or min(self.channels) < 1):
            raise ValueError(f"channels must list {N_CONVS} widths >= 1, got {list(self.channels)}")


@dataclass(frozen=True)
class VGGFireSpec:
    """Architecture knobs of `VGGFire` (SqueezeNet's strategies over VGG-19's stages)."""

    width: float = 1.0  # multiplier of VGG-19's widths (ignored where explicit widths are given)
    stem_kernel: int = 3  # 3: two 3x3 convolutions (VGG's stage 1); 5: one 5x5 (same field of view)
    squeeze_ratio: float = 0.125  # squeeze width / expand width
    pct3x3: float = 0.25  # share of 3x3 filters in each expand layer
    pool: str = "max"  # "max" or "avg"
    pool_after: tuple[str, ...] | None = ("stage2", "stage3", "stage4", "stage5")  # None: every stage >= 2x2
    classifier: tuple[int, ...] = ()  # hidden fully connected widths; () = one Linear to the classes
    batch_norm: bool = False  # conv -> BN -> ReLU (float training only; fold before quantizing)
    stem_channels: tuple[int, ...] | None = None  # explicit stem width(s): 2 for stem_kernel 3, 1 for 5
    fires: tuple[tuple[int, int, int], ...] | None = None  # explicit (squeeze, e1, e3) of the 14 Fire modules

    def stem_list(self) -> list[int]:
        if self.stem_channels is not None:
            return [int(c) for c in self.stem_channels]
        return [scale_width(c, self.width) for c in VGG19_STAGES[0]][: 2 if self.stem_kernel == 3 else 1]

    def fire_list(self) -> list[FireWidths]:
        if self.fires is not None:
            return [FireWidths(*(int(v) for v in f)) for f in self.fires]
        return [
            fire_widths(scale_width(e, self.width, minimum=2), self.squeeze_ratio, self.pct3x3)
            for stage in VGG19_STAGES[1:]
            for e in stage
        ]

    def validate(self) -> None:
        _check_common(self.width, self.pool, self.pool_after, self.classifier)
        if self.stem_kernel not in (3, 5):
            raise ValueError(f"stem_kernel must be 5 (one 5x5) or 3 (two 3x3), got {self.stem_kernel}")
        n_stem = 2 if self.stem_kernel == 3 else 1
        if self.stem_channels is not None and (len(self.stem_channels) != n_stem or min(self.stem_channels) < 1):
            raise ValueError(
                f"stem_channels must list {n_stem} widths >= 1 for stem_kernel {self.stem_kernel}, "
                f"got {list(self.stem_channels)}"
            )
        if self.fires is not None and (
            len(self.fires) != N_FIRES or any(len(f) != 3 or min(f) < 1 for f in self.fires)
        ):
            raise ValueError(f"fires must list {N_FIRES} (squeeze, e1, e3) triples of widths >= 1")
        self.fire_list()  # raises on bad squeeze_ratio / pct3x3


class FireBN(Fire):
    """A Fire module with batch norm after each of its three convolutions (float training only)."""

    def __init__(self, spec: QuantSpec, in_channels: int, widths: FireWidths):
        super().__init__(spec, in_channels, widths)
        self.squeeze_bn = nn.BatchNorm2d(widths.squeeze)
        self.expand1x1_bn = nn.BatchNorm2d(widths.expand1x1)
        self.expand3x3_bn = nn.BatchNorm2d(widths.expand3x3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.squeeze_act(self.squeeze_bn(self.squeeze(x)))
        e1 = self.expand_act(self.expand1x1_bn(self.expand1x1(s)))
        e3 = self.expand_act(self.expand3x3_bn(self.expand3x3(s)))
        return torch.cat([e1, e3], dim=1)


class _StagedNet(nn.Module):
    """Shared plumbing: input quantizer, `features` Sequential, pools, classifier, BN pairs, channel groups.

    While layers are added, the groups feeding the current tensor are tracked as (group, channel offset),
    so every layer that reads them is recorded as a consumer; `channel_groups()` returns the result.
    """

    def _begin(self, spec: QuantSpec, arch, in_shape: tuple[int, int, int]) -> None:
        if arch.batch_norm and spec.enabled:
            raise ValueError(
                "batch_norm is for float training only; fold it (models.bn.fold_batchnorm) and quantize "
                "the batch_norm=False network"
            )
        arch.validate()
        self.arch = arch
        self.spec = spec
        self.inp = quant_input(spec)
        self.features = nn.Sequential()
        self._pool_cls = nn.MaxPool2d if arch.pool == "max" else nn.AvgPool2d
        self._bn: list[tuple[str, str]] = []
        self._consumers: dict[str, list[tuple[str, int, int]]] = {}
        self._current: list[tuple[str, int]] = []  # (group, offset) of the tensor being built
        self.in_shape = tuple(in_shape)
        _, self._h, self._w = in_shape

    # ------------------------------------------------------------------ group bookkeeping
    def _consume(self, module: str, elements: int = 1) -> None:
        for group, offset in self._current:
            self._consumers[group].append((module, offset, elements))

    def _produce(self, *groups: tuple[str, int]) -> None:
        for group, _ in groups:
            self._consumers.setdefault(group, [])
        self._current = list(groups)

    # ------------------------------------------------------------------ layers
    def _conv(self, name: str, cin: int, cout: int, k: int) -> None:
        """conv (same padding) -> [BN] -> ReLU quantizer, as features.<name>, <name>_bn, <name>_act."""
        path = f"features.{name}"
        self.features.add_module(name, quant_conv(self.spec, cin, cout, k, padding=k // 2))
        self._consume(path)
        self._produce((path, 0))
        if self.arch.batch_norm:
            self.features.add_module(f"{name}_bn", nn.BatchNorm2d(cout))
            self._bn.append((path, f"{path}_bn"))
            self._consume(f"{path}_bn")
        self.features.add_module(f"{name}_act", quant_relu(self.spec))

    def _fire(self, name: str, cin: int, widths: FireWidths) -> None:
        path = f"features.{name}"
        bn = self.arch.batch_norm
        self.features.add_module(name, (FireBN if bn else Fire)(self.spec, cin, widths))
        self._consume(f"{path}.squeeze")
        self._produce((f"{path}.squeeze", 0))
        for part in ("squeeze_bn", "expand1x1", "expand3x3") if bn else ("expand1x1", "expand3x3"):
            self._consume(f"{path}.{part}")
        for part in ("expand1x1", "expand3x3"):
            self._produce((f"{path}.{part}", 0))
            if bn:
                self._consume(f"{path}.{part}_bn")
        if bn:
            self._bn += [(f"{path}.{p}", f"{path}.{p}_bn") for p in ("squeeze", "expand1x1", "expand3x3")]
        self._produce((f"{path}.expand1x1", 0), (f"{path}.expand3x3", widths.expand1x1))

    def _end_stage(self, index: int) -> None:
        """A 2x2 pool after stage `index` (1-based) when `pool_after` says so (None: while the map is >= 2x2)."""
        stage = STAGE_NAMES[index - 1]
        if self.arch.pool_after is None:
            wanted = min(self._h, self._w) >= 2
        else:
            wanted = stage in self.arch.pool_after
            if wanted and min(self._h, self._w) < 2:
                raise ValueError(
                    f"too much downsampling for a {self.in_shape} input: the map is {self._h}x{self._w} "
                    f"before the pool after {stage} (pool_after={list(self.arch.pool_after)})"
                )
        if wanted:
            self.features.add_module(f"pool{index}", self._pool_cls(2))
            self._h, self._w = self._h // 2, self._w // 2

    def _finish(self, channels: int, num_classes: int) -> None:
        """flatten -> [fc -> ReLU]* -> fc to the classes, as classifier.fc1, fc1_act, ..., then init."""
        self.final_map = (channels, self._h, self._w)
        self.flat_features = channels * self._h * self._w
        self.classifier = nn.Sequential()
        fin, elements = self.flat_features, self._h * self._w
        for i, hidden in enumerate(self.arch.classifier):
            name = f"fc{i + 1}"
            self.classifier.add_module(name, quant_linear(self.spec, fin, int(hidden)))
            self._consume(f"classifier.{name}", elements)
            self._produce((f"classifier.{name}", 0))
            self.classifier.add_module(f"{name}_act", quant_relu(self.spec))
            fin, elements = int(hidden), 1
        last = f"fc{len(self.arch.classifier) + 1}"
        self.classifier.add_module(last, quant_linear(self.spec, fin, num_classes))
        self._consume(f"classifier.{last}", elements)
        self._current = []
        self._init_weights()

    def _init_weights(self) -> None:
        """torchvision's VGG initialisation: Kaiming (fan-out) convs, N(0, 0.01) linears, zero biases."""
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0.0, 0.01)
                nn.init.zeros_(m.bias)

    # ------------------------------------------------------------------ public API
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(self.inp(x))
        return self.classifier(torch.flatten(x, 1))

    def bn_pairs(self) -> list[tuple[str, str]]:
        """(conv module path, BatchNorm module path) of every batch norm; empty without batch norm."""
        return list(self._bn)

    def channel_groups(self) -> list[ChannelGroup]:
        """Every prunable channel group, in network order (the classifier's output is not prunable)."""
        return [ChannelGroup(g, g, tuple(c)) for g, c in self._consumers.items()]

    def group_widths(self) -> dict[str, int]:
        """Current width of every channel group."""
        modules = dict(self.named_modules())
        out = {}
        for group in self._consumers:
            m = modules[group]
            out[group] = int(m.out_channels if isinstance(m, nn.Conv2d) else m.out_features)
        return out

    def _new_widths(self, widths: dict[str, int]) -> dict[str, int]:
        current = self.group_widths()
        unknown = sorted(set(widths) - set(current))
        if unknown:
            raise ValueError(f"unknown channel groups {unknown}; see channel_groups()")
        bad = {k: v for k, v in widths.items() if int(v) < 1}
        if bad:
            raise ValueError(f"channel group widths must be >= 1, got {bad}")
        return {**current, **{k: int(v) for k, v in widths.items()}}

    def _hidden(self, new: dict[str, int]) -> tuple[int, ...]:
        return tuple(new[f"classifier.fc{i + 1}"] for i in range(len(self.arch.classifier)))


class VGG19(_StagedNet):
    """VGG-19's 16 convolutions (3x3, same padding) in five stages with 2x2 pools, then the classifier."""

    def __init__(
        self,
        spec: QuantSpec,
        arch: VGGSpec | None = None,
        in_shape: tuple[int, int, int] = (1, 28, 28),
        num_classes: int = 10,
    ):
        super().__init__()
        arch = arch or VGGSpec()
        self._begin(spec, arch, in_shape)
        widths = iter(arch.conv_list())
        c, n = in_shape[0], 0
        for s, stage in enumerate(VGG19_STAGES):
            for _ in stage:
                n += 1
                cout = next(widths)
                self._conv(f"conv{n}", c, cout, 3)
                c = cout
            self._end_stage(s + 1)
        self._finish(c, num_classes)

    def arch_for_widths(self, widths: dict[str, int]) -> dict:
        """The arch dict that builds this network with the given channel-group widths (others unchanged)."""
        new = self._new_widths(widths)
        channels = tuple(new[f"features.conv{i + 1}"] for i in range(N_CONVS))
        return _json_ready(asdict(replace(self.arch, channels=channels, classifier=self._hidden(new))))


class VGGFire(_StagedNet):
    """Plain-conv stem (VGG's stage 1), then VGG's stages 2-5 as Fire modules, late downsampling."""

    def __init__(
        self,
        spec: QuantSpec,
        arch: VGGFireSpec | None = None,
        in_shape: tuple[int, int, int] = (1, 28, 28),
        num_classes: int = 10,
    ):
        super().__init__()
        arch = arch or VGGFireSpec()
        self._begin(spec, arch, in_shape)
        c = in_shape[0]
        for name, cout in zip(("stem", "stem_b"), arch.stem_list()):
            self._conv(name, c, cout, arch.stem_kernel)
            c = cout
        self._end_stage(1)
        fires = iter(arch.fire_list())
        n = 0
        for s, stage in enumerate(VGG19_STAGES[1:]):
            for _ in stage:
                n += 1
                widths = next(fires)
                self._fire(f"fire{n}", c, widths)
                c = widths.out_channels
            self._end_stage(s + 2)
        self._finish(c, num_classes)

    def arch_for_widths(self, widths: dict[str, int]) -> dict:
        """The arch dict that builds this network with the given channel-group widths (others unchanged)."""
        new = self._new_widths(widths)
        stem = tuple(new[f"features.{name}"] for name in ("stem", "stem_b")[: len(self.arch.stem_list())])
        fires = tuple(
            tuple(new[f"features.fire{i + 1}.{part}"] for part in ("squeeze", "expand1x1", "expand3x3"))
            for i in range(N_FIRES)
        )
        arch = replace(self.arch, stem_channels=stem, fires=fires, classifier=self._hidden(new))
        return _json_ready(asdict(arch))
