"""Channel groups of a plain PyTorch network, inferred from its traced graph, and the narrowing that rebuilds it.

A plain network declares no `channel_groups()` (models/groups.py), so structured pruning (flows/structured.py)
reads them from the graph torch.fx traces: a Conv2d/Linear (the producer) whose output channels flow only
through channel-wise ops (BatchNorm, ReLU/ReLU6, max/average pooling, Dropout, a flatten to a Linear, where
each channel is a block of H*W inputs) into exactly one following Conv2d/Linear (the consumer), and nowhere
else, is a group. A producer whose output reaches the network's output is the classifier: never narrowed.
Anything else is refused before training (`infer_groups` raises UsageError naming the layer and why): channels
that feed a torch.cat or a residual add (their layout is shared with another branch), more than one layer, an
op not recognised here, a layer called more than once (shared weights), a reshape other than a flatten.

A narrowed plain network is rebuilt, by every later step, from the arch the structure step records:
`arch[WIDTHS_KEY] = {producer: kept channels}` (`PlainChannels.arch_for_widths`). The build context builds the
user's network as written and `narrow` cuts its modules in place (producer outputs, the BatchNorms after them,
consumer inputs; the values are placeholders that the checkpoint's state dict replaces). Nothing read from a
file executes code: the record is names and integers.
"""

from __future__ import annotations

import copy
import operator

import torch
from torch import nn
from torch.nn import functional as F

from flows.errors import UsageError
from models.groups import ChannelGroup

WIDTHS_KEY = "fireflow_widths"  # arch key of a narrowed plain network: {producer module: kept channels}

LAYERS = (nn.Conv2d, nn.Linear)
NORMS = (nn.BatchNorm1d, nn.BatchNorm2d)
CHANNELWISE_MODULES = (
    nn.ReLU,
    nn.ReLU6,
    nn.Hardtanh,
    nn.MaxPool2d,
    nn.AvgPool2d,
    nn.AdaptiveAvgPool2d,
    nn.Dropout,
    nn.Dropout2d,
    nn.Identity,
)
CHANNELWISE_FUNCTIONS = {
    torch.relu,
    torch.relu_,
    F.relu,
    F.relu6,
    F.hardtanh,
    F.max_pool2d,
    F.avg_pool2d,
    F.adaptive_avg_pool2d,
    F.dropout,
}
CHANNELWISE_NAMES = {"relu", "relu6", "hardtanh", "max_pool2d", "avg_pool2d", "adaptive_avg_pool2d", "dropout"}
CHANNELWISE_METHODS = {"relu", "relu_", "contiguous", "mean"}
RESHAPES = {torch.flatten}
RESHAPE_METHODS = {"view", "reshape", "flatten"}
SHAPE_QUERIES = {"size", "dim"}
ADDS = {operator.add, operator.iadd, torch.add}
CATS = {torch.cat, torch.stack}
FIX = "--set structure.enabled=false (magnitude pruning, compress.enabled=true, works on it)"


class PlainChannels:
    """The channel groups of a plain network, in the form flows/structured.py reads from a network that declares
    them: `channel_groups()` and `arch_for_widths(widths)` (the widths go into the arch under WIDTHS_KEY)."""

    def __init__(self, groups: list[ChannelGroup]):
        self.groups = list(groups)

    def channel_groups(self) -> list[ChannelGroup]:
        return list(self.groups)

    def arch_for_widths(self, widths: dict[str, int]) -> dict:
        return {WIDTHS_KEY: {name: int(widths[name]) for name in sorted(widths)}}


class _Shapes(torch.fx.Interpreter):
    """Runs the traced graph once and records the shape of every tensor a node produces."""

    def __init__(self, gm):
        super().__init__(gm)
        self.shapes: dict = {}

    def run_node(self, n):
        out = super().run_node(n)
        if isinstance(out, torch.Tensor):
            self.shapes[n] = tuple(out.shape)
        return out


def _trace(model: nn.Module, in_shape, name: str):
    """The torch.fx graph of `model` and each node's output shape for one zero image (eval mode, restored)."""
    try:
        gm = torch.fx.symbolic_trace(model)
    except Exception as exc:  # fx cannot trace data-dependent control flow
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UsageError(f"model {name!r} cannot be traced by torch.fx ({first}); {FIX}") from None
    modes = {m: m.training for m in model.modules()}
    model.eval()
    try:
        with torch.no_grad():
            shapes = _Shapes(gm)
            shapes.run(torch.zeros((1, *in_shape)))
    finally:
        for m, mode in modes.items():
            m.training = mode
    return gm, shapes.shapes


def _out_channels(module: nn.Module) -> int:
    return module.out_channels if isinstance(module, nn.Conv2d) else module.out_features


def _refuse(name: str, layer: str, why: str) -> UsageError:
    return UsageError(
        f"model {name!r}: structured pruning cannot infer the channel groups of a plain network here: "
        f"the output channels of {layer} {why}; {FIX}"
    )


def _step(gm, user, node, shapes: dict, span: int, layer: str, name: str) -> tuple[str, int]:
    """What `user` does with the channels of `node`: ("skip" | "follow" | "norm" | "consumer" | "output", span)."""
    what = getattr(user.target, "__name__", str(user.target))
    if user.op == "output":
        return "output", span
    if user.op == "call_method" and user.target in SHAPE_QUERIES:
        return "skip", span
    if user.op == "call_function" and user.target is getattr and user.args[1:] == ("shape",):
        return "skip", span
    if (user.op == "call_function" and user.target in ADDS) or (
        user.op == "call_method" and user.target in ("add", "add_")
    ):
        raise _refuse(name, layer, f"feed a residual add ({user.name}), which ties them to its other input's channels")
    if user.op == "call_function" and user.target in CATS:
        raise _refuse(name, layer, f"feed a torch.cat ({user.name}): they share its layout with the other inputs")
    data_arg = user.args[0] if user.args else None
    if data_arg is not node or node in user.args[1:] or node in user.kwargs.values():
        raise _refuse(name, layer, f"are used by {what} ({user.name}) other than as its one data input")
    shape_in, shape_out = shapes.get(node), shapes.get(user)
    if user.op == "call_module":
        module = gm.get_submodule(user.target)
        if isinstance(module, LAYERS):
            if (isinstance(module, nn.Conv2d) and span != 1) or (
                isinstance(module, nn.Linear) and (shape_in is None or len(shape_in) != 2)
            ):
                raise _refuse(name, layer, f"reach {user.target} in a layout whose channels it does not read")
            return "consumer", span
        if isinstance(module, NORMS):
            if span != 1:
                raise _refuse(name, layer, f"reach BatchNorm {user.target} after a flatten (per feature, not channel)")
            return "norm", span
        if isinstance(module, nn.Flatten):
            return "follow", _flatten_span(shape_in, shape_out, span, layer, user, name)
        if isinstance(module, CHANNELWISE_MODULES):
            return "follow", _same_channels(shape_in, shape_out, span, layer, user, name)
        raise _refuse(name, layer, f"feed {user.target} ({type(module).__name__}), not recognised as channel-wise")
    if (user.op == "call_function" and user.target in RESHAPES) or (
        user.op == "call_method" and user.target in RESHAPE_METHODS
    ):
        return "follow", _flatten_span(shape_in, shape_out, span, layer, user, name)
    if user.op == "call_method" and user.target == "mean" and not _spatial_mean(user):
        raise _refuse(name, layer, f"are averaged over other than the spatial dimensions by {user.name}")
    if (user.op == "call_function" and (user.target in CHANNELWISE_FUNCTIONS or what in CHANNELWISE_NAMES)) or (
        user.op == "call_method" and user.target in CHANNELWISE_METHODS
    ):
        return "follow", _same_channels(shape_in, shape_out, span, layer, user, name)
    raise _refuse(name, layer, f"feed {what} ({user.name}), an op not recognised as channel-wise")


def _spatial_mean(user) -> bool:
    """`x.mean((2, 3))` / `x.mean([-2, -1], keepdim=True)`: a global average pool, per channel."""
    dims = user.args[1] if len(user.args) > 1 else user.kwargs.get("dim")
    dims = dims if isinstance(dims, (tuple, list)) else (dims,)
    return all(isinstance(d, int) and d in (2, 3, -1, -2) for d in dims)


def _same_channels(shape_in, shape_out, span, layer, user, name) -> int:
    if shape_in is None or shape_out is None or len(shape_out) < 2 or shape_out[1] != shape_in[1]:
        raise _refuse(name, layer, f"go through {user.name}, which changes the channel dimension")
    if span != 1 and len(shape_out) != 2:
        raise _refuse(name, layer, f"go through {user.name} after a flatten")
    return span


def _flatten_span(shape_in, shape_out, span, layer, user, name) -> int:
    """A flatten of (N, C, H, W) to (N, C*H*W): each channel becomes a block of H*W features."""
    if shape_in is not None and shape_out is not None and shape_in == shape_out:
        return span
    if (
        shape_in is not None
        and len(shape_in) == 4
        and shape_out == (shape_in[0], shape_in[1] * shape_in[2] * shape_in[3])
    ):
        return span * shape_in[2] * shape_in[3]
    raise _refuse(name, layer, f"are reshaped by {user.name} ({shape_in} -> {shape_out}), not flattened per image")


def infer_groups(model: nn.Module, in_shape, name: str = "model") -> list[ChannelGroup]:
    """The channel groups of a plain network (group name = producer name), and the BatchNorms narrowed with each
    (`groups_and_norms`). Raises UsageError for a network whose groups cannot be inferred."""
    return [g for g, _ in groups_and_norms(model, in_shape, name)]


def groups_and_norms(model: nn.Module, in_shape, name: str = "model") -> list[tuple[ChannelGroup, tuple[str, ...]]]:
    gm, shapes = _trace(model, in_shape, name)
    calls: dict[str, int] = {}
    for node in gm.graph.nodes:
        if node.op == "call_module":
            calls[node.target] = calls.get(node.target, 0) + 1
    found = []
    for node in gm.graph.nodes:
        if node.op != "call_module" or not isinstance(gm.get_submodule(node.target), LAYERS):
            continue
        layer, module = node.target, gm.get_submodule(node.target)
        shape = shapes.get(node)
        if calls[layer] > 1:
            raise _refuse(name, layer, f"come from a layer called {calls[layer]} times (shared weights)")
        if shape is None or len(shape) not in (2, 4) or shape[1] != _out_channels(module):
            raise _refuse(name, layer, f"are not the channel dimension of its output {shape}")
        consumers, norms, output = [], [], False
        frontier = [(node, 1)]
        while frontier:
            current, span = frontier.pop(0)
            for user in current.users:
                kind, span_after = _step(gm, user, current, shapes, span, layer, name)
                if kind == "output":
                    output = True
                elif kind == "consumer":
                    consumers.append((user.target, span_after))
                elif kind in ("follow", "norm"):
                    if kind == "norm":
                        if calls[user.target] > 1:
                            raise _refuse(name, layer, f"reach BatchNorm {user.target}, called more than once")
                        norms.append(user.target)
                    frontier.append((user, span_after))
        if output and not consumers:
            continue  # the classifier: never narrowed
        if output or len(consumers) > 1:
            where = ", ".join([c for c, _ in consumers] + (["the network's output"] if output else []))
            raise _refuse(name, layer, f"feed more than one layer ({where})")
        if not consumers:
            continue  # unused output
        target, span = consumers[0]
        if calls[target] > 1:
            raise _refuse(name, layer, f"feed {target}, a layer called {calls[target]} times (shared weights)")
        found.append((ChannelGroup(layer, layer, ((target, 0, span),)), tuple(norms)))
    return found


def _slice_param(module: nn.Module, attr: str, index: tuple) -> None:
    value = getattr(module, attr)
    if value is None:
        return
    sliced = value.data[index].clone()
    if isinstance(value, nn.Parameter):
        setattr(module, attr, nn.Parameter(sliced, requires_grad=value.requires_grad))
    else:
        setattr(module, attr, sliced)


def _narrow_out(module: nn.Module, k: int) -> None:
    _slice_param(module, "weight", (slice(0, k),))
    _slice_param(module, "bias", (slice(0, k),))
    if isinstance(module, nn.Conv2d):
        module.out_channels = k
    else:
        module.out_features = k


def _narrow_in(module: nn.Module, n_in: int) -> None:
    _slice_param(module, "weight", (slice(None), slice(0, n_in)))
    if isinstance(module, nn.Conv2d):
        module.in_channels = n_in
    else:
        module.in_features = n_in


def _narrow_norm(module: nn.Module, k: int) -> None:
    for attr in ("weight", "bias", "running_mean", "running_var"):
        _slice_param(module, attr, (slice(0, k),))
    module.num_features = k


@torch.no_grad()
def narrow(model: nn.Module, widths: dict, in_shape, name: str = "model") -> nn.Module:
    """`model` (a plain network as its builder returns it) cut in place to `widths` ({producer: channels}): the
    producers' outputs, the BatchNorms after them and their consumers' inputs. The values are placeholders."""
    if not isinstance(widths, dict):
        raise UsageError(f"model {name!r}: arch.{WIDTHS_KEY} must map layer names to channel counts, got {widths!r}")
    found = {g.name: (g, norms) for g, norms in groups_and_norms(model, in_shape, name)}
    unknown = sorted(set(widths) - set(found))
    if unknown:
        raise UsageError(
            f"model {name!r}: arch.{WIDTHS_KEY} names {unknown}, which are not channel groups of the network "
            f"({sorted(found)}); rerun with --force structure"
        )
    modules = dict(model.named_modules())
    for group_name in sorted(widths):
        group, norms = found[group_name]
        producer = modules[group.producer]
        n, k = _out_channels(producer), widths[group_name]
        if not isinstance(k, int) or isinstance(k, bool) or not 1 <= k <= n:
            raise UsageError(
                f"model {name!r}: arch.{WIDTHS_KEY}.{group_name} = {k!r} must be a channel count in 1..{n}"
            )
        _narrow_out(producer, k)
        for norm in norms:
            _narrow_norm(modules[norm], k)
        for consumer, _, span in group.consumers:
            target = modules[consumer]
            n_in = target.in_channels if isinstance(target, nn.Conv2d) else target.in_features
            _narrow_in(target, n_in - (n - k) * span)
    return model


def check_narrowing(model: nn.Module, in_shape, name: str = "model") -> list[ChannelGroup]:
    """Before training: the groups can be inferred, and the network still runs with every group at half its width
    (a forward that hard-codes a shape, e.g. `x.view(-1, 392)`, does not). Returns the groups."""
    found = groups_and_norms(model, in_shape, name)
    if not found:
        raise UsageError(
            f"model {name!r}: structured pruning found no layer whose channels it may remove (the classifier is "
            f"never narrowed); {FIX}"
        )
    trial = copy.deepcopy(model)
    modules = dict(trial.named_modules())
    widths = {g.name: max(1, _out_channels(modules[g.producer]) // 2) for g, _ in found}
    narrow(trial, widths, in_shape, name)
    trial.eval()
    try:
        with torch.no_grad():
            trial(torch.zeros((1, *in_shape)))
    except Exception as exc:  # the user's forward with a shape written into it
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UsageError(
            f"model {name!r}: structured pruning narrows {', '.join(sorted(widths))}, and the network's forward "
            f"then fails ({first}); compute shapes from the tensors (torch.flatten(x, 1)), not constants, or {FIX}"
        ) from None
    return [g for g, _ in found]
