"""Distributed arithmetic as a per-layer hls4ml strategy on every Vivado-family backend, VivadoAccelerator included.

hls4ml 1.3.0's own pass (`vivado:distributed_arithmetic_codegen`) refuses any backend but `Vivado`
and `Vitis` (an assert, after solving the layer), and its input-type lookup
(`bit_exact.get_input_layers`) takes tensor names for layer names, so it fails on any DA layer not
fed by the graph input ("has input Relu_0_out0 which is not in the model"; the same with an
io_stream Flatten that became an in-place alias). `DistributedArithmeticCodegen` here does what
hls4ml's pass does with the same da4ml calls (flows/da/solver.py: cached solutions), reads the
input type from the layer's input variable (what hls4ml's pass computes on a graph without HGQ
quantizer layers), and sets the same attributes (`da_codegen`, `da_kernel_cost`), so hls4ml's pass
no longer matches and hls4ml's DA templates (`d_a_latency_dense_template`, the conv templates) write
the project. It adds `da_cost` (flows/da/solver.py `solution_cost`, labelled `source: "da4ml"`) and
`da_solution_key` (the cache key: flows/da/rtl.py synthesizes that solution with yosys).

Selecting it: `da_layer_settings(names)` gives the per-layer hls4ml config entries
(`"Strategy": "distributed_arithmetic"`, `"ReuseFactor": 1`: DA is fully parallel);
`set_solver_config(hls_config, options, cache_dir)` the solver settings (`HLSConfig["Model"]
["FireflowDA"]`); `da_flow(flow)` the name of a flow that is `flow` with hls4ml's `vivado:optimize`
replaced by a copy running this pass just before hls4ml's (after pointwise-conv conversion and type
inference). A DA layer of another class (depthwise, pooling, ...) or with a non-fixed-point input
falls back to the Latency strategy, and the layer's `da_fallback` attribute says why.

Timing: io_parallel: one input vector per clock (the kernel is one combinational graph, pipelined
by HLS). io_stream: hls4ml's DA layers keep the Latency strategy's stream structure at reuse 1 (a
conv takes one input pixel per clock through its line buffer; a dense reads its input packs, then
writes its output packs), so its II is the Latency strategy's at reuse factor 1.
"""

from __future__ import annotations

import logging
from math import prod
from pathlib import Path

from hls4ml.backends.vivado.passes.distributed_arithmetic import add_kernel_wrapper, dense_da_stream_template
from hls4ml.model.flow import get_available_flows, get_flow, register_flow
from hls4ml.model.layers import Conv1D, Conv2D, Dense
from hls4ml.model.optimizer import OptimizerPass, get_available_passes, register_pass
from hls4ml.model.types import FixedPrecisionType, Source

from flows.da.solver import SolverOptions, hls_kernel_code, solution_cost, solve_kernel
from flows.errors import ToolError

log = logging.getLogger(__name__)

DA_STRATEGY = "distributed_arithmetic"
DA_PASS = "fireflow:da_codegen"
HLS4ML_DA_PASS = "vivado:distributed_arithmetic_codegen"
HLS4ML_OPTIMIZE_FLOW = "vivado:optimize"
DA_FLOW = "fireflow:vivado_optimize+da"
DA_CALLS_PASS = "fireflow:da_dense_calls"
DA_CALLS_FLOW = "fireflow:da_dense_calls"
HLS4ML_TEMPLATES_FLOW = "vivado:apply_templates"
HLS4ML_INIT_FLOW = "vivado:init_layers"
DA_CONFIG_KEY = "FireflowDA"  # HLSConfig["Model"][DA_CONFIG_KEY] = {"cache_dir": ..., "options": {...}}
COST_ATTR = "da_cost"  # set on a DA layer: its labelled cost (solution_cost)
KEY_ATTR = "da_solution_key"  # set on a DA layer: the cache key of its da4ml solution
FALLBACK_ATTR = "da_fallback"  # set on a layer that asked for DA and got Latency: why
DA_CLASSES = (Dense, Conv1D, Conv2D)  # PointwiseConv1D/2D are subclasses of the convs


def da_layer_settings(names) -> dict[str, dict]:
    """hls4ml per-layer config entries (for `flows.convert.convert(layer_settings=...)`) selecting DA."""
    return {name: {"Strategy": DA_STRATEGY, "ReuseFactor": 1} for name in names}


def set_solver_config(hls_config: dict, options: SolverOptions | None = None, cache_dir: Path | None = None) -> None:
    """Record the solver options and the cache folder in an hls4ml config, where the pass reads them."""
    entry = {"options": vars(options or SolverOptions()).copy()}
    if cache_dir is not None:
        entry["cache_dir"] = str(cache_dir)
    hls_config.setdefault("Model", {})[DA_CONFIG_KEY] = entry


def solver_config(model) -> tuple[SolverOptions, Path | None]:
    """The solver options and cache folder `set_solver_config` recorded in a model's config (defaults otherwise)."""
    entry = (model.config.config.get("HLSConfig", {}).get("Model") or {}).get(DA_CONFIG_KEY) or {}
    options = SolverOptions(**entry.get("options", {}))
    cache_dir = entry.get("cache_dir")
    return options, Path(cache_dir) if cache_dir else None


def _unsupported_reason(node) -> str | None:
    if not isinstance(node, DA_CLASSES):
        return f"hls4ml has no distributed-arithmetic {node.class_name} layer"
    if not isinstance(node.get_input_variable().type.precision, FixedPrecisionType):
        return f"its input type {node.get_input_variable().type.precision} is not fixed-point"
    if node.class_name.startswith("Conv") and node.get_attr("data_format", "channels_last") != "channels_last":
        return "hls4ml's DA convolutions are channels-last only"
    return None


def kernel_instances(node) -> int:
    """How many copies of the DA kernel the layer builds: an io_parallel conv one per pixel of a partition."""
    if isinstance(node, Dense) or node.model.config.get_config_value("IOType") != "io_parallel":
        return 1
    pixels = prod(node.get_output_variable().shape[:-1])
    return max(1, pixels // int(node.get_attr("n_partitions", 1) or 1))


class DistributedArithmeticCodegen(OptimizerPass):
    """hls4ml's DA code generation for Dense/Conv layers, on any Vivado-family backend, with cached solutions."""

    def match(self, node) -> bool:
        return node.get_attr("strategy", None) == DA_STRATEGY and "da_codegen" not in node.attributes

    def transform(self, model, node) -> bool:
        reason = _unsupported_reason(node)
        if reason is not None:
            log.warning("%s: distributed arithmetic not possible (%s): Latency strategy instead", node.name, reason)
            node.set_attr("strategy", "latency")
            node.set_attr(FALLBACK_ATTR, reason)
            return True
        rf = node.get_attr("reuse_factor", 1)
        if rf != 1:
            raise ToolError(f"layer {node.name}: the distributed_arithmetic strategy needs reuse factor 1, not {rf}")
        options, cache_dir = solver_config(model)
        kernel = node.attributes["weight"].data
        kernel = kernel.reshape(-1, kernel.shape[-1])
        bias = node.get_attr("bias")
        solution = solve_kernel(
            kernel,
            str(node.get_input_variable().type.precision),
            None if bias is None else bias.data,
            options,
            cache_dir,
            name=node.name,
        )
        code = hls_kernel_code(solution, f"dense_da_{node.index}")
        if model.config.get_config_value("IOType") != "io_parallel":
            code += "\n\n" + add_kernel_wrapper(node.index, *kernel.shape)
        node.set_attr("da_codegen", Source(code))
        node.set_attr("da_kernel_cost", solution.cost)
        node.set_attr(COST_ATTR, solution_cost(solution, kernel_instances(node)))
        node.set_attr(KEY_ATTR, solution.key)
        return False  # the graph is unchanged


def dense_call(node) -> tuple[str, str | None]:
    """The call (and io_stream config struct) of a DA Dense for its current input and output variables.

    hls4ml's `d_a_latency_dense_template` renders them in `vivado:specific_types` with the names of
    that moment; a rewrite after it (flows/hls_passes.py's ReLU fusion) renames the Dense's input,
    and the frozen call would name the removed ReLU's stream ("'layer27_t' was not declared")."""
    inp, out = node.get_input_variable(), node.get_output_variable()
    if node.model.config.get_config_value("IOType") == "io_parallel":
        namespace = node.model.config.get_writer_config().get("Namespace", None) or "nnet"
        return f"{namespace}::dense_da_{node.index}<{inp.type.name}, {out.type.name}>({inp.name}, {out.name});", None
    config = dense_da_stream_template.format(inp_t=inp.type.name, out_t=out.type.name, **node.attributes)
    return f"nnet::dense<{inp.type.name}, {out.type.name}, config{node.index}>({inp.name}, {out.name});", config


class RenderDenseCalls(OptimizerPass):
    """Re-render a DA Dense's call and config after the graph rewrites that ran after hls4ml rendered them."""

    def match(self, node) -> bool:
        if node.class_name != "Dense" or node.get_attr("strategy") != DA_STRATEGY:
            return False
        if "function_cpp" not in node.attributes:
            return False
        return node.get_attr("function_cpp") != dense_call(node)[0]

    def transform(self, model, node) -> bool:
        function_cpp, config_cpp = dense_call(node)
        node.set_attr("function_cpp", function_cpp)
        if config_cpp is not None:
            node.set_attr("config_cpp", config_cpp)
        return False


def register_da_passes() -> None:
    """Register this module's passes with hls4ml (once per process)."""
    available = set(get_available_passes())
    for name, cls in ((DA_PASS, DistributedArithmeticCodegen), (DA_CALLS_PASS, RenderDenseCalls)):
        if name not in available:
            register_pass(name, cls)


def _register_optimize_flow() -> None:
    optimize = get_flow(HLS4ML_OPTIMIZE_FLOW)
    optimizers = list(optimize.optimizers)
    if HLS4ML_DA_PASS not in optimizers:
        raise ToolError(
            f"hls4ml has no pass {HLS4ML_DA_PASS} in its {HLS4ML_OPTIMIZE_FLOW} flow: this hls4ml version is not "
            "supported (fireflow needs hls4ml 1.3)"
        )
    optimizers.insert(optimizers.index(HLS4ML_DA_PASS), DA_PASS)
    register_flow(DA_FLOW, optimizers, requires=list(optimize.requires))


def da_flow(flow: str) -> str:
    """The name of `flow` with DA: hls4ml's `vivado:optimize` replaced by a copy running this pass first,
    and the DA Dense calls re-rendered just before the C++ templates are applied (`RenderDenseCalls`).

    Registered on first use. `flow` is a flow name such as `flows.hls_passes.fireflow_flow(...)`'s."""
    if flow == DA_FLOW or flow.endswith("+da"):
        return flow
    name = f"{flow.replace(':', '_')}+da"
    if not name.startswith("fireflow:"):
        name = f"fireflow:{name}"
    if name in get_available_flows():
        return name
    register_da_passes()
    if DA_FLOW not in get_available_flows():
        _register_optimize_flow()
    if DA_CALLS_FLOW not in get_available_flows():
        register_flow(DA_CALLS_FLOW, [DA_CALLS_PASS], requires=[HLS4ML_INIT_FLOW])
    requires = list(get_flow(flow).requires)
    for needed in (HLS4ML_OPTIMIZE_FLOW, HLS4ML_TEMPLATES_FLOW):
        if needed not in requires:
            raise ToolError(f"hls4ml flow {flow} does not run {needed}: cannot add distributed arithmetic")
    requires[requires.index(HLS4ML_OPTIMIZE_FLOW)] = DA_FLOW
    first_templates = next(i for i, f in enumerate(requires) if f.endswith(":apply_templates"))  # Vitis: its own first
    requires.insert(first_templates, DA_CALLS_FLOW)
    register_flow(name, None, requires=requires)
    return name


def da_layers(hls_model) -> dict[str, dict]:
    """Per hls4ml layer that asked for DA: its labelled da4ml cost, or `{"fallback": reason}`."""
    rows = {}
    for layer in hls_model.get_layers():
        if layer.get_attr(COST_ATTR):
            rows[layer.name] = dict(layer.get_attr(COST_ATTR))
        elif layer.get_attr(FALLBACK_ATTR):
            rows[layer.name] = {"fallback": layer.get_attr(FALLBACK_ATTR), "strategy": "latency"}
    return rows
