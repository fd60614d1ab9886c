"""SqueezeNet-style networks: Fire modules instead of plain convolutions, quantization-aware.

A Fire module (Iandola et al., 2016) is a 1x1 *squeeze* convolution followed by two *expand*
convolutions, 1x1 and 3x3, whose outputs are concatenated on the channel axis. SqueezeNet's three
strategies are the knobs of `FireNetSpec`:
1. 1x1 filters instead of 3x3 where possible: `pct3x3`, the share of 3x3 filters in each expand layer;
2. fewer input channels to the 3x3 filters: `squeeze_ratio`, squeeze width / expand width;
3. late downsampling: `pool_after`, which stages are followed by a 2x2 pool (`pool`: max or avg).
The stem keeps one plain convolution (as SqueezeNet's conv1: a squeeze layer over a 1- or 3-channel
image has nothing to squeeze); `stem_kernel` 5 is one 5x5, `stem_kernel` 3 is two 3x3 (same field of
view, fewer weights); `fire_stem=True` makes the stem a Fire module too.

Hardware notes: both expand branches share one activation quantizer, so the concatenated tensor has a
single fixed-point type (a concat of different scales would need a requantizer in hardware and
raises in Brevitas). Biases are 32-bit integers (see models/quant.py).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from models.groups import ChannelGroup
from models.quant import QuantSpec, quant_conv, quant_input, quant_linear, quant_relu


@dataclass(frozen=True)
class FireWidths:
    """Channel counts of one Fire module."""

    squeeze: int
    expand1x1: int
    expand3x3: int

    @property
    def out_channels(self) -> int:
        return self.expand1x1 + self.expand3x3


def fire_widths(expand: int, squeeze_ratio: float, pct3x3: float) -> FireWidths:
    """SqueezeNet's metaparameters: expand width e, squeeze s = SR*e, e3 = pct3x3*e, e1 = e - e3."""
    if expand < 2:
        raise ValueError(f"expand width must be >= 2, got {expand}")
    if not 0 < squeeze_ratio <= 1:
        raise ValueError(f"squeeze_ratio must be in (0, 1], got {squeeze_ratio}")
    if not 0 < pct3x3 < 1:
        raise ValueError(f"pct3x3 must be in (0, 1), got {pct3x3}")
    e3 = max(1, min(expand - 1, round(expand * pct3x3)))
    return FireWidths(squeeze=max(1, round(expand * squeeze_ratio)), expand1x1=expand - e3, expand3x3=e3)


class Fire(nn.Module):
    """squeeze 1x1 -> ReLU -> [expand 1x1, expand 3x3 (pad 1)] -> shared ReLU quantizer -> concat."""

    def __init__(self, spec: QuantSpec, in_channels: int, widths: FireWidths):
        super().__init__()
        self.widths = widths
        self.squeeze = quant_conv(spec, in_channels, widths.squeeze, 1)
        self.squeeze_act = quant_relu(spec)
        self.expand1x1 = quant_conv(spec, widths.squeeze, widths.expand1x1, 1)
        self.expand3x3 = quant_conv(spec, widths.squeeze, widths.expand3x3, 3, padding=1)
        self.expand_act = quant_relu(spec)  # shared by both branches: one scale for the concat

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.squeeze_act(self.squeeze(x))
        return torch.cat([self.expand_act(self.expand1x1(s)), self.expand_act(self.expand3x3(s))], dim=1)


@dataclass(frozen=True)
class FireNetSpec:
    """Architecture knobs of a Fire network (all stages use 2x2 pools where `pool_after` says)."""

    stem_channels: int = 24
    stem_kernel: int = 5  # 5: one 5x5 conv; 3: two 3x3 convs (same receptive field)
    fire_stem: bool = False
    expand: tuple[int, ...] = (48, 48)  # expand width of each Fire stage
    squeeze_ratio: float = 0.25
    pct3x3: float = 0.5
    pool: str = "max"  # "max" or "avg"
    pool_after: tuple[str, ...] = ("stem", "fire1", "fire2")  # stages followed by a 2x2 pool
    fc_hidden: int = 0  # 0: classifier is one fully connected layer
    fires: tuple[tuple[int, int, int], ...] | None = None  # explicit (s, e1, e3) per stage overrides the above
    stem_fire: tuple[int, int, int] | None = None  # explicit (s, e1, e3) of a Fire stem (fire_stem=True)
    stem_a_channels: int | None = None  # width of the first of two 3x3 stem convs (default stem_channels)

    def fire_list(self) -> list[FireWidths]:
        if self.fires is not None:
            return [FireWidths(*f) for f in self.fires]
        return [fire_widths(e, self.squeeze_ratio, self.pct3x3) for e in self.expand]

    def validate(self) -> None:
        for name in ("stem_channels", "stem_a_channels", "fc_hidden"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or value < (0 if name == "fc_hidden" else 1)):
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        for widths in [*(self.fires or ()), *([self.stem_fire] if self.stem_fire else [])]:
            if any(not isinstance(w, int) or w < 1 for w in widths):
                raise ValueError(f"Fire widths (squeeze, expand1x1, expand3x3) must be positive, got {widths}")
        if self.pool not in ("max", "avg"):
            raise ValueError(f"pool must be 'max' or 'avg', got {self.pool!r}")
        if self.stem_kernel not in (3, 5):
            raise ValueError(f"stem_kernel must be 5 (one 5x5) or 3 (two 3x3), got {self.stem_kernel}")
        stages = {"stem"} | {f"fire{i + 1}" for i in range(len(self.fire_list()))}
        bad = [p for p in self.pool_after if p not in stages]
        if bad:
            raise ValueError(f"pool_after names unknown stages {bad}; stages are {sorted(stages)}")


class FireNet(nn.Module):
    """stem conv -> [pool] -> Fire stages with pools -> flatten -> [fc hidden] -> fc classes."""

    def __init__(
        self,
        spec: QuantSpec,
        arch: FireNetSpec,
        in_shape: tuple[int, int, int] = (1, 28, 28),
        num_classes: int = 10,
    ):
        super().__init__()
        arch.validate()
        self.arch = arch
        c, h, w = in_shape
        self.inp = quant_input(spec)
        pool_cls = nn.MaxPool2d if arch.pool == "max" else nn.AvgPool2d
        layers: list[tuple[str, nn.Module]] = []
        if arch.fire_stem:
            widths = (
                FireWidths(*arch.stem_fire)
                if arch.stem_fire
                else fire_widths(arch.stem_channels, arch.squeeze_ratio, arch.pct3x3)
            )
            layers.append(("stem", Fire(spec, c, widths)))
            c = widths.out_channels
        elif arch.stem_kernel == 5:
            layers += [("stem", quant_conv(spec, c, arch.stem_channels, 5)), ("stem_act", quant_relu(spec))]
            c, h, w = arch.stem_channels, h - 4, w - 4
        else:
            first = arch.stem_a_channels or arch.stem_channels
            layers += [
                ("stem", quant_conv(spec, c, first, 3)),
                ("stem_act", quant_relu(spec)),
                ("stem_b", quant_conv(spec, first, arch.stem_channels, 3)),
                ("stem_b_act", quant_relu(spec)),
            ]
            c, h, w = arch.stem_channels, h - 4, w - 4
        if "stem" in arch.pool_after:
            layers.append(("stem_pool", pool_cls(2)))
            h, w = h // 2, w // 2
        for i, widths in enumerate(arch.fire_list()):
            name = f"fire{i + 1}"
            layers.append((name, Fire(spec, c, widths)))
            c = widths.out_channels
            if name in arch.pool_after:
                layers.append((f"{name}_pool", pool_cls(2)))
                h, w = h // 2, w // 2
        if h < 1 or w < 1:
            raise ValueError(f"too much downsampling for a {in_shape} input: pool_after={arch.pool_after}")
        self.features = nn.Sequential()
        for name, module in layers:
            self.features.add_module(name, module)
        self.flat_features = c * h * w
        if arch.fc_hidden:
            self.fc1 = quant_linear(spec, self.flat_features, arch.fc_hidden)
            self.fc1_act = quant_relu(spec)
            self.fc2 = quant_linear(spec, arch.fc_hidden, num_classes)
        else:
            self.fc1 = quant_linear(spec, self.flat_features, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(self.inp(x))
        x = self.fc1(torch.flatten(x, 1))
        if self.arch.fc_hidden:
            x = self.fc2(self.fc1_act(x))
        return x

    def channel_groups(self) -> list[ChannelGroup]:
        """Stem filters, each Fire's squeeze and both expand branches, and the hidden fc (if any)."""
        stages: list[tuple[str, list[tuple[str, int]]]] = []  # (stage, [(producer, channels)]) in order
        names = dict(self.features.named_children())
        if isinstance(names["stem"], Fire):
            stem = names["stem"]
            stages.append(
                (
                    "stem",
                    [
                        ("features.stem.expand1x1", stem.widths.expand1x1),
                        ("features.stem.expand3x3", stem.widths.expand3x3),
                    ],
                )
            )
        elif "stem_b" in names:
            stages.append(("stem", [("features.stem_b", names["stem_b"].out_channels)]))
        else:
            stages.append(("stem", [("features.stem", names["stem"].out_channels)]))
        fires = [n for n in names if n.startswith("fire") and not n.endswith("_pool")]
        for name in fires:
            w = names[name].widths
            stages.append(
                (name, [(f"features.{name}.expand1x1", w.expand1x1), (f"features.{name}.expand3x3", w.expand3x3)])
            )
        groups: list[ChannelGroup] = []
        if "stem_b" in names:
            groups.append(ChannelGroup("features.stem", "features.stem", (("features.stem_b", 0, 1),)))
        for module_name in ["stem", *fires]:
            if isinstance(names.get(module_name), Fire):
                prefix = f"features.{module_name}"
                groups.append(
                    ChannelGroup(
                        f"{prefix}.squeeze",
                        f"{prefix}.squeeze",
                        ((f"{prefix}.expand1x1", 0, 1), (f"{prefix}.expand3x3", 0, 1)),
                    )
                )
        per_channel = self.flat_features // sum(c for _, c in stages[-1][1])
        for i, (_, producers) in enumerate(stages):
            if i + 1 < len(stages):
                consumer, span = f"features.{stages[i + 1][0]}.squeeze", 1
            else:
                consumer, span = "fc1", per_channel
            offset = 0
            for producer, channels in producers:
                groups.append(ChannelGroup(producer, producer, ((consumer, offset, span),)))
                offset += channels
        if self.arch.fc_hidden:
            groups.append(ChannelGroup("fc1", "fc1", (("fc2", 0, 1),)))
        return groups

    def arch_for_widths(self, widths: dict[str, int]) -> dict:
        """The arch knobs that rebuild this network with the given group widths."""
        arch = self.arch
        names = dict(self.features.named_children())
        fires = []
        for name in [n for n in names if n.startswith("fire") and not n.endswith("_pool")]:
            w = names[name].widths
            p = f"features.{name}"
            fires.append(
                (
                    widths.get(f"{p}.squeeze", w.squeeze),
                    widths.get(f"{p}.expand1x1", w.expand1x1),
                    widths.get(f"{p}.expand3x3", w.expand3x3),
                )
            )
        out: dict = {"fires": fires}
        if arch.fire_stem:
            w = names["stem"].widths
            out["stem_fire"] = (
                widths.get("features.stem.squeeze", w.squeeze),
                widths.get("features.stem.expand1x1", w.expand1x1),
                widths.get("features.stem.expand3x3", w.expand3x3),
            )
        else:
            stem_name = "features.stem_b" if "stem_b" in names else "features.stem"
            out["stem_channels"] = widths.get(stem_name, arch.stem_channels)
            if "stem_b" in names:
                out["stem_a_channels"] = widths.get("features.stem", names["stem"].out_channels)
        if arch.fc_hidden:
            out["fc_hidden"] = widths.get("fc1", arch.fc_hidden)
        return out
