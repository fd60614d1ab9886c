"""Per-layer cost model: resources, latency and II of one hls4ml 1.3 layer (`estimate_layer`).

The model follows hls4ml's templates (``templates/vivado/nnet_utils``); `flows.estimator.blocks`
has the building blocks. ``a``/``w`` are the input and weight widths, ``acc`` the adder width
(`flows.estimator.blocks.acc_bits`), ``T_eff = T (1 - uncertainty)``; the constants are the fields
of `flows.estimator.calibration.Calibration`.

* **Multiplications** of a Dense/Conv kernel: ``n_in x n_out`` weights (convolution: ``n_in =
  kernel * n_chan``, ``n_out = n_filt``), ``nnz`` of them nonzero (hls4ml's ``n_zeros`` are dropped).

  - *Latency* strategy (``nnet_dense_latency.h``): weights are constants. Narrow products (weights
    ``<= const_lut_weight_bits`` or both operands ``<= lut_mult_max_bits``) become shift-add logic,
    one block per nonzero weight that RF does not share: ``LUT = lut_per_constmult_bit2 * a * w``
    each. Wide products use DSPs: ``multiplier_limit`` of them, at RF 1 only ``const_dsp_fraction``
    of them (HLS turns powers of two into shifts), plus operand muxes when shared
    (``lut_mux_per_bit * (a + w) * (ways - 1)`` each, ``ways = min(RF, ceil(nnz / multipliers))``).
    Adders: one per nonzero weight. With RF > 1 every product is registered until the tree sums it
    (``ff_prod_reg_per_bit * nnz * min(a + w, acc)``) and the tree's registers scale by
    ``ff_shared_tree_factor``.
  - *Resource* strategy (``nnet_dense_resource.h``): weights sit in a ROM and are not folded;
    ``block_factor`` multipliers (zeros included) run RF cycles, LUT multipliers
    (``lut_per_lutmult_bit2 * a * w``) when both operands ``<= lut_mult_max_bits``, else DSPs; one
    adder per multiplier; operand/accumulator steering ``lut_res_per_mult_bit * (a + acc)`` LUTs and
    ``ff_res_per_mult_bit * (a + w + acc)`` FFs per multiplier; with RF > n_in every output
    accumulator is selected at run time: ``lut_accmux_per_bit * n_out * acc * ceil(log2(RF/n_in + 1))``.
    The weight ROM (depth RF, width ``block_factor * w``) goes to BRAM when it holds
    ``>= rom_bram_min_bits``, else LUTs.
  - Adders: ``lut_per_adder_bit * adders * acc`` LUTs (x ``1 + lut_sat_factor`` for AP_SAT
    accumulators); ``ff_per_adder_bit * adders * acc * tree_registers`` FFs (the sums halve per tree
    level in Vivado HLS, ``ff_tree_decay = 1``; Vitis HLS keeps a full copy per stage,
    ``ff_tree_decay = 0``); shared multipliers add ``ff_per_mult_bit * (a + w) * floor(t_mult_ns /
    T_eff)`` FFs each.
  - Conv line buffers (``ap_shift_reg``) are SRLs: ``(fh-1) * n_chan * a * ceil(W/32)`` LUTs; the
    kernel window ``fh * fw * n_chan * a`` FFs (pooling windows x ``ff_pool_window_factor``).

* **Element-wise layers** (ReLU, pooling, padding, concat, clone, ...): per lane (one stream word in
  ``io_stream``, the whole tensor in ``io_parallel``) ``lut_elem_per_bit * (in + out bits) / 2`` LUTs,
  plus ``lut_act_narrow_per_elem`` when an activation narrows (clip and round); registers per stream
  word, or per pipeline stage in ``io_parallel`` (none when the activation fits in one cycle: HLS
  inlines it). Softmax: ``n`` DSPs, ``ceil(n/2) + 1`` BRAM_18K tables, ``lut_softmax_per_elem * n``
  LUTs, ``ff_softmax_base + ff_softmax_per_elem * n * depth`` FFs. Every layer adds
  ``lut_layer_base``/``ff_layer_base`` of control.

* **Latency and II** of a layer. ``io_parallel`` (the top is one pipeline): a latency-strategy layer
  has II ``ceil(nnz / shared multipliers)`` (1 when nothing is shared) and latency ``depth + II - 1``;
  resource: II ``RF``, latency ``RF + depth + resource_extra_cycles``. ``io_stream``: a latency conv
  takes ``max(RF, stream_conv_min_ii)`` cycles per input pixel (loop pipelined at II=RF); a resource
  conv ``RF + resource_conv_overhead`` per output pixel and ``resource_conv_skip_cycles`` per other
  pixel (loop not pipelined); element-wise layers one pixel per cycle; a dense layer needs its whole
  input. ``fill_cycles``/``tail_cycles`` feed the dataflow timing of `flows.estimator.dataflow`.
"""

from __future__ import annotations

import copy
import math

from flows.estimator.blocks import (
    acc_bits,
    bram18_for,
    ceil_div,
    clog2,
    dsp_per_multiplier,
    effective_period,
    elem_latency,
    kernel_depth,
    mult_class,
    multiplier_count,
    tree_registers,
)
from flows.estimator.calibration import DEFAULT_CALIBRATION, Calibration
from flows.estimator.spec import FIXED_ESTIMATE, FREE_KINDS, LayerEstimate, LayerSpec


def _estimate_mac(spec: LayerSpec, clock_period_ns: float, calib: Calibration, est: LayerEstimate) -> None:
    a, w = spec.input_bits, spec.weight_bits
    rf = spec.reuse_factor
    total = spec.n_in * spec.n_out
    nnz = spec.n_nonzero
    acc = acc_bits(spec)
    cls = mult_class(spec, calib)
    n_mult = multiplier_count(spec)
    depth = kernel_depth(spec, clock_period_ns, calib)
    est.multipliers = n_mult

    if spec.strategy == "latency":
        if total > calib.latency_max_weights:
            est.notes.append(
                f"latency strategy with {total} weights (> {calib.latency_max_weights}): HLS partitions every "
                "array completely; expect very long synthesis or failure - use the resource strategy"
            )
        n_adders = nnz
        shared = 0
        if cls == "dsp":
            frac = calib.const_dsp_fraction if (rf == 1 and spec.mult_impl == "auto") else 1.0
            n_dsp = int(math.ceil(n_mult * frac))
            est.add("multipliers", DSP=n_dsp * dsp_per_multiplier(a, w, calib), LUT=n_dsp * calib.lut_per_dsp_mult)
            if rf == 1 and nnz > n_dsp:  # constants that HLS turned into shift-add logic
                est.add("const_mult", LUT=(nnz - n_dsp) * calib.lut_per_constmult_bit2 * a * w)
            shared = n_dsp if rf > 1 else 0
        elif cls == "lut":
            est.add("multipliers", LUT=n_mult * calib.lut_per_lutmult_bit2 * a * w)
            shared = n_mult if rf > 1 else 0
        else:  # constant multiplications: one shift-add block per nonzero weight, never shared
            est.add("const_mult", LUT=nnz * calib.lut_per_constmult_bit2 * a * w)
        if shared:
            # each shared multiplier selects among the products it serves: at most RF, fewer when pruned
            ways = min(rf, ceil_div(nnz, shared))
            est.add("mux", LUT=shared * (a + w) * (ways - 1) * calib.lut_mux_per_bit)
        if spec.io_type == "io_stream":
            ii = rf  # PIPELINE II=RF is the target of the stream loop
        else:
            # io_parallel: the top is pipelined as a whole; the II is what the shared multipliers need
            ii = ceil_div(nnz, shared) if shared else 1
        latency = depth + ii - 1
    else:
        n_adders = n_mult
        if cls == "dsp":
            est.add("multipliers", DSP=n_mult * dsp_per_multiplier(a, w, calib), LUT=n_mult * calib.lut_per_dsp_mult)
        else:
            est.add("multipliers", LUT=n_mult * calib.lut_per_lutmult_bit2 * a * w)
        steer = n_mult * (a + acc)
        est.add(
            "steering", LUT=steer * calib.lut_res_per_mult_bit, FF=n_mult * (a + w + acc) * calib.ff_res_per_mult_bit
        )
        if rf > 1:
            if rf > spec.n_in:  # each multiplier feeds RF/n_in different accumulators over the reuse loop
                est.add("mux", LUT=spec.n_out * acc * calib.lut_accmux_per_bit * clog2(rf / spec.n_in + 1))
            rom_bits = total * w
            if rom_bits >= calib.rom_bram_min_bits:
                est.add("weights", BRAM36=bram18_for(rf, n_mult * w, 36) / 2.0)
            else:
                est.add("weights", LUT=rom_bits * calib.lut_per_rom_bit)
        est.add("accumulators", FF=spec.n_out * acc)
        latency = rf + depth + calib.resource_extra_cycles
        ii = rf

    stages = max(0, depth - 1)
    add_lut = n_adders * acc * calib.lut_per_adder_bit * (1.0 + (calib.lut_sat_factor if spec.accum_saturate else 0.0))
    tree_ff = n_adders * acc * calib.ff_per_adder_bit * tree_registers(spec, stages, calib.ff_tree_decay)
    if spec.strategy == "latency" and rf > 1:  # the tree runs at II = RF: HLS relaxes its registers
        tree_ff *= calib.ff_shared_tree_factor
    est.add("adders", LUT=add_lut, FF=tree_ff)
    mult_stages = int(calib.t_mult_ns // effective_period(clock_period_ns, calib))
    # pipelined multipliers shared over the reuse loop (resource strategy, or latency with RF > 1)
    shared_mults = n_mult if (spec.strategy == "resource" or (rf > 1 and cls != "const")) else 0
    if shared_mults and mult_stages:
        est.add("multipliers", FF=shared_mults * (a + w) * calib.ff_per_mult_bit * mult_stages)
    if spec.strategy == "latency" and rf > 1:
        # the reuse loop computes the nonzero products over RF cycles; each is registered until the sum
        est.add("products", FF=nnz * min(a + w, acc) * calib.ff_prod_reg_per_bit)
    est.add("control", LUT=calib.lut_layer_base, FF=calib.ff_layer_base)
    if spec.extra.get("fused_activation"):
        # the fused ReLU's round-and-saturate cast, costed like a narrowing activation, per output lane
        est.add("output_cast", LUT=spec.n_out * calib.lut_act_narrow_per_elem)

    if spec.io_type == "io_parallel":
        if spec.kind != "dense":
            # hls4ml 1.3 io_parallel convolution: the kernel is instantiated ParallelizationFactor times and
            # iterates over out_pixels / ParallelizationFactor partitions
            pf = max(1, int(spec.extra.get("parallelization", 1)))
            if pf > 1:
                for part, res in list(est.parts.items()):
                    if part != "control":
                        est.add(part, **{k: v * (pf - 1) for k, v in res.items()})
            n_iter = ceil_div(max(1, spec.out_pixels), pf)
            latency, ii = n_iter * ii + (latency - ii), n_iter * ii
        est.latency_cycles, est.ii_cycles = latency, ii
        est.fill_cycles = est.tail_cycles = est.latency_cycles
        return

    # io_stream
    if spec.kind == "dense":
        reads = ceil_div(spec.n_in, max(1, spec.in_pack))
        writes = ceil_div(spec.n_out, max(1, spec.out_pack))
        busy = reads + latency + writes
        est.latency_cycles = busy
        est.ii_cycles = busy
        est.fill_cycles = busy
        est.tail_cycles = latency + writes
        est.add("stream_io", FF=spec.n_in * a)  # the input array is registered
        return

    # convolutions: line buffer + window, one input pixel at a time
    kh, kw = (spec.kernel + (1, 1))[:2] if spec.kind.endswith("2d") else (1, (spec.kernel or (1,))[0])
    n_chan = spec.n_chan or spec.in_channels
    in_w = spec.input_shape[-2] if len(spec.input_shape) >= 2 else 1
    if kh > 1:
        est.add("line_buffer", LUT=(kh - 1) * n_chan * a * ceil_div(in_w, 32))
    if kh * kw > 1:
        est.add("window", FF=kh * kw * n_chan * a)
    n_in_px, n_out_px = spec.in_pixels, spec.out_pixels
    if spec.strategy == "latency":
        px = max(rf, calib.stream_conv_min_ii)
        busy = n_in_px * px + depth
        fill_px = px
    else:
        px = rf + calib.resource_conv_overhead
        busy = n_out_px * px + max(0, n_in_px - n_out_px) * calib.resource_conv_skip_cycles + depth
        fill_px = calib.resource_conv_skip_cycles
    est.latency_cycles = busy
    est.ii_cycles = busy
    est.fill_cycles = ((kh - 1) * in_w + kw) * fill_px + latency
    est.tail_cycles = latency + px


def _estimate_other(spec: LayerSpec, clock_period_ns: float, calib: Calibration, est: LayerEstimate) -> None:
    kind = spec.kind
    stream = spec.io_type == "io_stream"
    ib, ob = spec.input_bits, spec.result_bits
    elem_lat = elem_latency(clock_period_ns, calib)
    t_eff = effective_period(clock_period_ns, calib)
    # elements handled in parallel: a whole tensor (io_parallel) or one stream word (io_stream)
    lanes_in = spec.in_pack if stream else spec.in_elems
    lanes_out = spec.out_pack if stream else spec.out_elems
    busy = 0
    depth = calib.elem_depth_cycles if stream else elem_lat

    if kind in FREE_KINDS:
        est.latency_cycles = 0
        est.ii_cycles = 1
        return
    if kind == "activation" and spec.activation.lower() in ("softmax", "softmax_stable", "softmax_latency"):
        n = lanes_out if stream else spec.out_elems
        n = max(1, spec.out_channels if stream else n)
        # exp table read n times per cycle (dual-port copies) + one 1/x table, 1024 x 18 bits each
        est.add("tables", BRAM36=(ceil_div(n, 2) + 1) / 2.0)
        if spec.mult_impl == "fabric":  # the n products by 1/sum in LUTs
            est.add("datapath", LUT=n * (calib.lut_softmax_per_elem + calib.lut_per_lutmult_bit2 * 18 * ob))
        else:
            est.add("datapath", DSP=n, LUT=n * calib.lut_softmax_per_elem)
        depth = int(math.ceil(calib.t_softmax_ns / t_eff))
        # every element's exp, product and the running sum are carried through each pipeline stage
        est.add("datapath", FF=n * depth * calib.ff_softmax_per_elem + calib.ff_softmax_base)
        busy = spec.out_pixels if stream else 1
    elif kind in ("activation", "batchnorm"):
        per_bit = calib.lut_elem_per_bit * (1.0 if kind == "activation" else 0.5)
        narrow = calib.lut_act_narrow_per_elem if (kind == "activation" and ob < ib) else 0.0
        est.add("datapath", LUT=lanes_in * ((ib + ob) * per_bit / 2.0 + narrow))
        if stream or elem_lat:  # registered once per stream word, or per pipeline stage of the top
            est.add("pipeline", FF=lanes_in * (ib + ob) * calib.ff_elem_per_bit / 2.0 * (1 if stream else elem_lat))
        busy = spec.in_pixels if stream else 1
    elif kind == "pooling":
        pool = math.prod(spec.kernel) if spec.kernel else 4
        n_chan = spec.in_channels
        windows = 1 if stream else spec.out_pixels  # io_parallel: every window at once
        est.add("compare", LUT=windows * n_chan * ib * max(1, pool - 1) * calib.lut_elem_per_bit)
        if stream:
            ph = spec.kernel[0] if len(spec.kernel) == 2 else 1
            in_w = spec.input_shape[-2] if len(spec.input_shape) >= 2 else 1
            if ph > 1:
                est.add("line_buffer", LUT=(ph - 1) * n_chan * ib * ceil_div(in_w, 32))
            est.add("window", FF=pool * n_chan * ib * calib.ff_pool_window_factor)
            busy = spec.in_pixels
        else:
            busy = 1
    elif kind == "global_pooling":
        est.add("accumulate", LUT=spec.in_channels * (ib + 4) * calib.lut_elem_per_bit, FF=spec.in_channels * (ib + 4))
        busy = spec.in_pixels if stream else 1
    elif kind == "merge":
        est.add("datapath", LUT=lanes_out * ob * calib.lut_elem_per_bit * max(1, spec.n_inputs - 1))
        busy = spec.out_pixels if stream else 1
    elif kind in ("concat", "zeropad", "upsample", "clone"):
        est.add("datapath", LUT=lanes_out * ob * 0.25 * calib.lut_elem_per_bit)
        if stream:
            est.add("pipeline", FF=lanes_out * ob * 0.25)
        if stream and kind == "upsample" and len(spec.input_shape) >= 2:
            # nearest-neighbour upsampling re-emits each input row: the row sits in registers and is
            # read back through a W:1 multiplexer (4 inputs per LUT6) per channel bit
            in_w, n_chan = spec.input_shape[-2], spec.in_channels
            est.add("row_buffer", FF=in_w * n_chan * ib, LUT=n_chan * ib * ceil_div(in_w, 4))
        busy = spec.out_pixels if stream and kind != "clone" else (spec.in_pixels if stream else 1)
    else:  # "other": a generic element-wise layer, flagged
        est.add("datapath", LUT=lanes_out * (ib + ob) * calib.lut_elem_per_bit)
        busy = spec.out_pixels if stream else 1
        est.notes.append(f"{spec.class_name or kind}: no specific model, estimated as an element-wise layer")
    # io_parallel activations that fit in one cycle are inlined into the top: logic but no registers
    inlined = not stream and kind in ("activation", "batchnorm") and not elem_lat and "datapath" in est.parts
    inlined = inlined and "tables" not in est.parts
    est.add("control", LUT=calib.lut_layer_base, FF=0.0 if inlined else calib.ff_layer_base)

    if stream:
        est.latency_cycles = busy + depth
        est.ii_cycles = max(1, busy)
        est.fill_cycles = depth + 1
        est.tail_cycles = depth + 1
        if kind == "pooling" and len(spec.kernel) >= 1:
            ph = spec.kernel[0]
            pw = spec.kernel[-1]
            in_w = spec.input_shape[-2] if len(spec.input_shape) >= 2 else 1
            est.fill_cycles = (ph - 1) * in_w + pw + depth
    else:
        est.latency_cycles = depth
        est.ii_cycles = 1
        est.fill_cycles = est.tail_cycles = est.latency_cycles


def estimate_layer(
    spec: LayerSpec, clock_period_ns: float = 10.0, calib: Calibration = DEFAULT_CALIBRATION
) -> LayerEstimate:
    """Estimate one layer's resources, latency and II (FIFOs between layers are added by `estimate_design`).

    A layer whose cost has its own model (the sparse kernel: `flows.estimator.sparse`) carries that
    estimate in ``spec.extra["fixed_estimate"]`` (set by `describe_hls_model`); it is returned as is."""
    fixed = spec.extra.get(FIXED_ESTIMATE)
    if fixed is not None:
        return copy.deepcopy(fixed)
    est = LayerEstimate(name=spec.name, kind=spec.kind, reuse_factor=spec.reuse_factor, strategy=spec.strategy)
    if spec.is_mac:
        _estimate_mac(spec, clock_period_ns, calib, est)
    else:
        _estimate_other(spec, clock_period_ns, calib, est)
    return est
