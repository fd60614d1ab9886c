"""Reading an hls4ml 1.3 ``ModelGraph`` into `LayerSpec`s, and hls4ml's reuse-factor rules.

`describe_hls_model` takes each layer's kind from its class, shapes and sizes from the attributes
hls4ml's templates use, bit widths from the precision types, zero counts from
``WeightVariable.nzeros``, reuse factor and strategy as the backend validated them, and the io type
from the model config; in ``io_stream`` also the stream packing, FIFO depths and SRL binding the
project set. `valid_reuse_factors` gives the reuse factors hls4ml accepts for a kernel (the same set
as ``FPGABackend.get_valid_reuse_factors``, found fast among the divisors of ``n_in*n_out``).
Only attributes are read: this module does not import hls4ml.
"""

from __future__ import annotations

import math
from dataclasses import replace
from functools import lru_cache

from flows.da.hls_pass import COST_ATTR as DA_COST_ATTR
from flows.da.hls_pass import DA_STRATEGY
from flows.estimator.blocks import ceil_div
from flows.estimator.layers import estimate_layer
from flows.estimator.sparse import estimate_sparse_dense, spec_from_hls_layer
from flows.estimator.spec import FIXED_ESTIMATE, MAC_KINDS, LayerSpec, var_pack
from flows.hls_passes import FIFO_IMPL_ATTR, FUSED_ATTR
from flows.sparse.layout import LAYER_CLASS as SPARSE_LAYER_CLASS

_CLASS_KIND = {
    "Dense": "dense",
    "Conv1D": "conv1d",
    "Conv2D": "conv2d",
    "Conv2DBatchnorm": "conv2d",
    "PointwiseConv1D": "pointwise_conv1d",
    "PointwiseConv2D": "pointwise_conv2d",
    "Pooling1D": "pooling",
    "Pooling2D": "pooling",
    "GlobalPooling1D": "global_pooling",
    "GlobalPooling2D": "global_pooling",
    "Activation": "activation",
    "ParametrizedActivation": "activation",
    "PReLU": "activation",
    "Softmax": "activation",
    "HardActivation": "activation",
    "BatchNormalization": "batchnorm",
    "Merge": "merge",
    "Concatenate": "concat",
    "ZeroPadding1D": "zeropad",
    "ZeroPadding2D": "zeropad",
    "Resize": "upsample",
    "Reshape": "reshape",
    "Flatten": "flatten",
    "Clone": "clone",
    "Input": "input",
    "InputLayer": "input",
}


def _width(type_obj: object, default: int) -> int:
    prec = getattr(type_obj, "precision", type_obj)
    width = getattr(prec, "width", None)
    return int(width) if width else default


def _kind_of(layer: object) -> str:
    for cls in type(layer).__mro__:
        kind = _CLASS_KIND.get(cls.__name__)
        if kind:
            return kind
    return _CLASS_KIND.get(getattr(layer, "class_name", ""), "other")


def describe_hls_model(hls_model: object) -> list[LayerSpec]:
    """Read an hls4ml 1.3 ``ModelGraph`` into `LayerSpec`s (graph order).

    Takes kinds from the layer classes, shapes and sizes from the attributes hls4ml's templates use
    (``n_in``, ``n_chan``, ``filt_height``, ...), bit widths from the precision types (``result_t``,
    ``accum_t``, the weight variable's type), zero counts from ``WeightVariable.nzeros``, reuse factor
    and strategy as the backend validated them, and ``IOType`` from the model config.
    """
    config = hls_model.config
    io_type = config.get_config_value("IOType") or "io_parallel"
    specs: list[LayerSpec] = []
    for layer in hls_model.get_layers():
        specs.append(_describe_layer(layer, io_type))
    return specs


def _describe_layer(layer: object, io_type: str) -> LayerSpec:
    kind = _kind_of(layer)
    attr = layer.get_attr
    out_var = layer.get_output_variable()
    in_vars = [layer.get_input_variable(i) for i in (layer.inputs or [])]
    in_vars = [v for v in in_vars if v is not None]
    in_var = in_vars[0] if in_vars else None
    out_shape = tuple(int(x) for x in out_var.shape)
    in_shape = tuple(int(x) for x in in_var.shape) if in_var is not None else out_shape
    result_bits = _width(out_var.type, 16)
    input_bits = _width(in_var.type, 16) if in_var is not None else result_bits
    accum_t = attr("accum_t")
    accum_bits = _width(accum_t, result_bits) if accum_t is not None else result_bits
    accum_prec = getattr(accum_t, "precision", None)
    accum_saturate = "SAT" in str(getattr(accum_prec, "saturation_mode", "") or "").upper()
    extra: dict = {
        "inputs": list(layer.inputs or []),
        "outputs": list(layer.outputs or []),
    }
    if io_type == "io_stream":
        pack = var_pack(out_var)
        if pack:
            extra["out_pack"] = pack
        if in_var is not None:
            ipack = var_pack(in_var)
            if ipack:
                extra["in_pack"] = ipack
        pragma = getattr(out_var, "pragma", None)
        if isinstance(pragma, tuple) and len(pragma) == 2 and pragma[0] == "stream":
            extra["fifo_depth"] = int(pragma[1])
        if getattr(out_var, FIFO_IMPL_ATTR, None) == "srl":  # set by flows.hls_passes.SizeStreamFifos
            extra["fifo_impl"] = "srl"

    kw: dict = {
        "name": layer.name,
        "kind": kind,
        "class_name": layer.class_name,
        "input_shape": in_shape,
        "output_shape": out_shape,
        "input_bits": input_bits,
        "result_bits": result_bits,
        "accum_bits": accum_bits,
        "accum_saturate": accum_saturate,
        "reuse_factor": int(attr("reuse_factor", 1) or 1),
        "strategy": "resource" if str(attr("strategy", "latency")).lower().startswith("resource") else "latency",
        "io_type": io_type,
        "n_in": int(math.prod(in_shape)) if in_shape else 0,
        "n_out": int(math.prod(out_shape)) if out_shape else 0,
        "extra": extra,
    }
    if kind in MAC_KINDS:
        if attr(FUSED_ATTR):  # flows/hls_passes.py: a ReLU became this layer's output cast
            extra["fused_activation"] = str(attr(FUSED_ATTR))
        weight = layer.weights.get("weight")
        da = attr(DA_COST_ATTR)  # distributed arithmetic: hls4ml dropped the weights, da4ml's solution counts
        if weight is None and da:
            n_weights = int(da["n_in"]) * int(da["n_out"])
            kw["weight_bits"], kw["n_weights"], kw["n_nonzero"] = input_bits, n_weights, int(da["n_nonzero"])
        else:
            weight = layer.get_weights("weight")
            n_weights = int(weight.data.size)
            nzeros = int(getattr(weight, "nzeros", 0) or 0)
            kw["weight_bits"] = _width(weight.type, 16)
            kw["n_weights"] = n_weights
            kw["n_nonzero"] = n_weights - nzeros
        if kind == "dense":
            kw["n_in"], kw["n_out"] = int(attr("n_in")), int(attr("n_out"))
        else:
            n_chan, n_filt = int(attr("n_chan")), int(attr("n_filt"))
            fw = int(attr("filt_width", 1))
            fh = int(attr("filt_height", 1)) if kind.endswith("2d") else 1
            kw["n_chan"], kw["filters"] = n_chan, n_filt
            kw["kernel"] = (fh, fw) if kind.endswith("2d") else (fw,)
            sw = int(attr("stride_width", 1))
            kw["stride"] = (int(attr("stride_height", 1)), sw) if kind.endswith("2d") else (sw,)
            kw["n_in"], kw["n_out"] = fh * fw * n_chan, n_filt
            extra["parallelization"] = int(attr("parallelization_factor", 1) or 1)
    elif kind == "pooling":
        if attr("pool_height") is not None:
            kw["kernel"] = (int(attr("pool_height")), int(attr("pool_width")))
            kw["stride"] = (int(attr("stride_height", 1)), int(attr("stride_width", 1)))
        else:
            kw["kernel"] = (int(attr("pool_width", 2)),)
            kw["stride"] = (int(attr("stride_width", 1)),)
    elif kind == "activation":
        act = str(attr("activation", "") or layer.class_name)
        kw["activation"] = "softmax" if "softmax" in act.lower() or layer.class_name == "Softmax" else act.lower()
    elif kind in ("concat", "merge"):
        kw["n_inputs"] = len(in_vars)
    elif kind == "clone":
        kw["n_output_streams"] = len(layer.outputs or [1, 1])
    if layer.class_name == SPARSE_LAYER_CLASS:  # costed by the sparse kernel's own model, never searched
        extra[FIXED_ESTIMATE] = estimate_sparse_dense(spec_from_hls_layer(layer))
    if kind in MAC_KINDS and attr(DA_COST_ATTR):
        return da_spec(LayerSpec(**{**kw, "strategy": "latency", "reuse_factor": 1}), attr(DA_COST_ATTR))
    return LayerSpec(**kw)


def da_spec(twin: LayerSpec, cost: dict) -> LayerSpec:
    """A distributed-arithmetic layer: timing and registers of its latency-strategy twin at reuse factor 1
    (the same fully parallel stream structure), LUTs from da4ml's own solution (about one LUT per adder
    bit), no DSP or BRAM. Its spec is not a MAC layer any more: the fit search leaves it as chosen."""
    est = estimate_layer(twin)
    est.resources = {**est.resources, "LUT": float(cost["LUT"]), "DSP": 0.0, "BRAM36": 0.0}
    est.strategy = DA_STRATEGY
    est.parts = {"da4ml adders": {"LUT": float(cost["LUT"])}}
    est.notes = [*est.notes, f"LUT from da4ml's solution ({cost['adders']} adders); FF and timing as latency RF 1"]
    return replace(twin, kind="other", extra={**twin.extra, FIXED_ESTIMATE: est})


# hls4ml's reuse-factor rules, computed fast


def _is_valid_rf(n_in: int, n_out: int, rf: int) -> bool:
    """hls4ml's ``FPGABackend._validate_reuse_factor`` (functional correctness and QoR rules)."""
    multfactor = min(n_in, rf)
    multiplier_limit = ceil_div(n_in * n_out, multfactor)
    ok = (multiplier_limit % n_out == 0) or (rf >= n_in)
    ok = ok and ((rf % n_in == 0) or (rf < n_in))
    return ok and ((n_in * n_out) % rf == 0)


@lru_cache(maxsize=4096)
def _valid_rfs_cached(n_in: int, n_out: int) -> tuple[int, ...]:
    n = n_in * n_out
    divisors: set[int] = set()
    i = 1
    while i * i <= n:
        if n % i == 0:
            divisors.add(i)
            divisors.add(n // i)
        i += 1
    return tuple(rf for rf in sorted(divisors) if _is_valid_rf(n_in, n_out, rf))


def valid_reuse_factors(n_in: int, n_out: int) -> list[int]:
    """The reuse factors hls4ml accepts for a kernel of ``n_in x n_out`` (same set as
    ``FPGABackend.get_valid_reuse_factors``, found among the divisors of ``n_in*n_out``)."""
    if n_in <= 0 or n_out <= 0:
        return [1]
    return list(_valid_rfs_cached(int(n_in), int(n_out)))
