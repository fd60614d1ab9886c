"""The dataflow network of an io_stream hls4ml design, read from its ModelGraph: processes, streams, fork/joins.

`design_from_model(hls_model)` lists what hls4ml's writer puts into the top function (each layer's
call from its `function_cpp`, each stream variable with the depth of its STREAM pragma, in-place
aliases resolved to the stream they name, the weight loads of the C simulation) plus the processes
around it: the AXI wrapper's input and output loops (VivadoAccelerator) or a testbench's feeder and
collector (Vivado/Vitis IP). A stream without a depth pragma gets Vivado HLS's default depth, 2.

A fork is a process with two or more output streams (hls4ml's clone), a join one with two or more
inputs (concatenate, add); `ForkJoin` holds the streams of each branch from the fork to its join,
the places where too shallow a FIFO deadlocks a dataflow region. `Design` round-trips through JSON
(`design.json` beside the generated simulation).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

DEFAULT_DEPTH = 2  # Vivado HLS's depth of a stream without a STREAM pragma


@dataclass
class StreamInfo:
    name: str  # the C++ stream object (an alias such as a Flatten's resolves to the stream it names)
    depth: int  # FIFO depth in the project (its STREAM pragma)
    width: int  # bits per word
    producer: str = ""
    consumer: str = ""


@dataclass
class ProcessInfo:
    name: str
    kind: str  # hls4ml class name, or "axi_in"/"axi_out"/"tb_in"/"tb_out"
    calls: list[str] = field(default_factory=list)  # C++ statements of one call
    inputs: list[str] = field(default_factory=list)  # stream names
    outputs: list[str] = field(default_factory=list)


@dataclass
class ForkJoin:
    fork: str
    join: str
    branches: list[list[str]]  # per fork output: the streams from the fork to the join, in order

    @property
    def name(self) -> str:
        return f"{self.fork} -> {self.join}"

    @property
    def streams(self) -> list[str]:
        return [s for branch in self.branches for s in branch]


@dataclass
class Design:
    project_name: str
    backend: str
    axi: bool  # VivadoAccelerator's AXI-stream wrapper around the top function
    n_in: int
    n_out: int
    input_stream: str
    output_stream: str
    streams: list[StreamInfo]
    processes: list[ProcessInfo]
    groups: list[ForkJoin]
    declarations: list[str]  # C++ stream declarations and aliases, in the writer's order
    weight_loads: list[str]  # C++ statements loading the weights (hls4ml's C simulation reads text files)

    def stream(self, name: str) -> StreamInfo:
        return next(s for s in self.streams if s.name == name)

    def depths(self) -> dict[str, int]:
        return {s.name: s.depth for s in self.streams}

    def groups_of(self, stream: str) -> list[ForkJoin]:
        return [g for g in self.groups if stream in g.streams]

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> Design:
        d = dict(d)
        d["streams"] = [StreamInfo(**s) for s in d["streams"]]
        d["processes"] = [ProcessInfo(**p) for p in d["processes"]]
        d["groups"] = [ForkJoin(**g) for g in d["groups"]]
        return cls(**d)


def _root(var):
    """The stream an in-place alias (`auto& layer129_out = layer128_out`) stands for."""
    seen = 0
    while getattr(var, "input_var", None) is not None and seen < 100:
        var, seen = var.input_var, seen + 1
    return var


def _depth(var) -> int:
    pragma = getattr(var, "pragma", None)
    if isinstance(pragma, tuple) and len(pragma) > 1 and pragma[0] == "stream":
        return int(pragma[1])
    return DEFAULT_DEPTH


def _width(var) -> int:
    shape = list(getattr(var, "shape", []) or [1])
    bits = int(getattr(var.type.precision, "width", 0) or 0)
    return int(shape[-1]) * bits


def _weight_loads(model) -> list[str]:
    """What hls4ml's writer puts into the top function's `#ifndef __SYNTHESIS__` block (vivado_writer.py)."""
    if not model.config.get_writer_config().get("WriteWeightsTxt", True):
        return []
    lines = []
    for layer in model.get_layers():
        for w in layer.get_weights():
            if w.weight_class == "CompressedWeightVariable":
                loader, size = "load_compressed_weights_from_txt", w.nonzeros
            elif w.weight_class == "ExponentWeightVariable":
                loader, size = "load_exponent_weights_from_txt", w.data_length
            else:
                loader, size = "load_weights_from_txt", w.data_length
            lines.append(f'nnet::{loader}<{w.type.name}, {size}>({w.name}, "{w.name}.txt");')
    return lines


def unsupported(model) -> str | None:
    """Why the dataflow simulation cannot model this ModelGraph (the check is then skipped, labelled), or None."""
    if model.config.get_config_value("IOType") != "io_stream":
        return "the design is io_parallel: one pipelined function, no dataflow FIFOs"
    inputs, outputs = model.get_input_variables(), model.get_output_variables()
    if len(inputs) != 1 or len(outputs) != 1:
        return f"the design has {len(inputs)} inputs and {len(outputs)} outputs (one of each is modelled)"
    if model.config.get_writer_config().get("Namespace"):
        return "the project is written into a C++ namespace"
    if any(getattr(w, "storage", "").lower() == "bram" for w in model.get_weight_variables()):
        return "weights are top-level BRAM ports"
    return None


def design_from_model(model) -> Design:
    """The dataflow network of a converted io_stream ModelGraph (see the module docstring); ValueError when
    `unsupported(model)` says why not, or a stream has no producer or no consumer."""
    reason = unsupported(model)
    if reason:
        raise ValueError(reason)
    in_var, out_var = model.get_input_variables()[0], model.get_output_variables()[0]
    streams: dict[str, StreamInfo] = {}

    def stream_of(var) -> str:
        root = _root(var)
        if root.name not in streams:
            streams[root.name] = StreamInfo(root.name, _depth(root), _width(root))
        return root.name

    axi = model.config.backend.name == "VivadoAccelerator"
    project = model.config.get_project_name()
    feeder = ProcessInfo(f"{project}_axi input loop" if axi else "testbench input", "axi_in" if axi else "tb_in")
    feeder.outputs = [stream_of(in_var)]
    processes = [feeder]
    declarations = [in_var.definition_cpp() + ";", out_var.definition_cpp() + ";"]
    for layer in model.get_layers():
        for var in layer.get_variables():
            if var is in_var or var is out_var:
                continue
            definition = var.definition_cpp()
            if definition:
                declarations.append(definition + ";")
        func = layer.get_attr("function_cpp", None)
        if not func:
            continue
        calls = list(func) if isinstance(func, (list, tuple, set)) else [func]
        proc = ProcessInfo(layer.name, layer.class_name, [str(c) for c in calls])
        proc.inputs = [stream_of(model.output_vars[t]) for t in layer.inputs if t in model.output_vars]
        proc.outputs = [stream_of(model.output_vars[t]) for t in layer.outputs if t in model.output_vars]
        processes.append(proc)
    collector = ProcessInfo(f"{project}_axi output loop" if axi else "testbench output", "axi_out" if axi else "tb_out")
    collector.inputs = [stream_of(out_var)]
    processes.append(collector)
    for proc in processes:
        for s in proc.outputs:
            streams[s].producer = proc.name
        for s in proc.inputs:
            streams[s].consumer = proc.name
    dangling = [s.name for s in streams.values() if not s.producer or not s.consumer]
    if dangling:
        raise ValueError(f"streams without a producer or a consumer: {', '.join(dangling)}")
    ordered = [streams[s] for p in processes for s in p.outputs]
    return Design(
        project_name=project,
        backend=model.config.backend.name,
        axi=axi,
        n_in=int(math.prod(in_var.shape)),
        n_out=int(math.prod(out_var.shape)),
        input_stream=feeder.outputs[0],
        output_stream=collector.inputs[0],
        streams=ordered,
        processes=processes,
        groups=fork_joins(processes),
        declarations=declarations,
        weight_loads=_weight_loads(model),
    )


def fork_joins(processes: list[ProcessInfo]) -> list[ForkJoin]:
    """Each fork (>= 2 outputs) with its join: the first process, in order, that every branch reaches."""
    by_stream = {s: p for p in processes for s in p.inputs}  # stream -> its consumer
    order = {p.name: i for i, p in enumerate(processes)}

    def reach(stream: str) -> list[ProcessInfo]:
        seen, todo, out = set(), [stream], []
        while todo:
            proc = by_stream.get(todo.pop())
            if proc is None or proc.name in seen:
                continue
            seen.add(proc.name)
            out.append(proc)
            todo.extend(proc.outputs)
        return out

    groups = []
    for fork in processes:
        if len(fork.outputs) < 2:
            continue
        reached = [{p.name for p in reach(s)} for s in fork.outputs]
        common = set.intersection(*reached)
        joins = sorted((p for p in processes if p.name in common and len(p.inputs) >= 2), key=lambda p: order[p.name])
        if not joins:
            continue
        join = joins[0]
        branches = [_branch(s, join.name, by_stream) for s in fork.outputs]
        groups.append(ForkJoin(fork.name, join.name, branches))
    return groups


def _branch(stream: str, join: str, by_stream: dict[str, ProcessInfo]) -> list[str]:
    """The streams from one fork output to the join (nested forks included), in order."""
    out, todo, seen = [], [stream], set()
    while todo:
        s = todo.pop(0)
        if s in seen:
            continue
        seen.add(s)
        out.append(s)
        proc = by_stream.get(s)
        if proc is not None and proc.name != join:
            todo.extend(proc.outputs)
    return out
