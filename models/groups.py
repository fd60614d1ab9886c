"""Channel groups: what structured pruning may remove from a network, and what depends on it.

A `ChannelGroup` is the set of output channels of one producer (a conv's filters or a linear layer's
outputs) together with every place those channels are consumed: the next conv's input channels, both
expand convolutions behind a Fire squeeze, the two halves of a Fire Concat (the 3x3 branch sits at an
offset behind the 1x1 branch), or the inputs of the Linear after a flatten (each channel spans H*W
inputs there). Each network lists its groups (`channel_groups()`) and can rebuild itself with other
widths (`arch_for_widths()`), so pruning is a matter of choosing indices and slicing tensors.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ChannelGroup:
    name: str  # e.g. "features.fire1.squeeze"
    producer: str  # module whose output channels form the group
    consumers: tuple[tuple[str, int, int], ...]  # (module, channel offset in its input, inputs per channel)
