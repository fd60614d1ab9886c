"""Pace the sparse kernels to the design: a sparse layer that does not set the pace needs fewer PEs.

By default a sparse Dense layer gets as many PEs as it needs to walk its nonzeros, and settle its rows,
in ``n_in`` cycles, the pace at which its input arrives (`flows.sparse.layout.choose_pes`). In a design whose initiation
interval is set by another layer (LeNet-300-100: the 784-input first layer sets 786 cycles; its
300- and 100-input successors would walk in 300 and 100), the later layers can take the whole
interval: `paced_settings` gives each sparse layer the walk budget ``SparseCycles = II - n_out -
PACE_MARGIN`` (room for the rows the PEs settle, a result word and the pipeline, so the layer's
estimated interval stays within the design's) when that is more than ``n_in``. Fewer PEs mean fewer
copies of the input buffer (block RAM), multipliers and accumulators; the fit search
(`flows.variants.fit_with_kernels`) keeps the paced design only when it ranks better.
"""

from __future__ import annotations

import numpy as np

from flows.sparse.extension import CYCLES_KEY, PES_KEY

PACE_MARGIN = 8  # cycles beyond n_out: result word, pipeline depth, loop entries (flows.estimator.sparse)


def dense_shapes(hls_model) -> dict[str, tuple[int, int]]:
    """``{layer: (n_in, n_out)}`` of the model's Dense layers (hls4ml's weight is ``n_in x n_out``)."""
    out = {}
    for layer in hls_model.get_layers():
        weight = layer.weights.get("weight") if layer.class_name == "Dense" else None
        if weight is not None:
            shape = np.asarray(weight.data).shape
            if len(shape) == 2:
                out[layer.name] = (int(shape[0]), int(shape[1]))
    return out


def paced_settings(sparse: dict[str, dict], shapes: dict[str, tuple[int, int]], ii: int) -> dict[str, dict]:
    """`sparse` (hls4ml layer settings) with ``SparseCycles`` set where the design's `ii` leaves a layer
    more cycles than its input takes; layers with PEs or cycles already set, or unknown shapes, stay."""
    out = {}
    for name, settings in sparse.items():
        budget = ii - shapes[name][1] - PACE_MARGIN if name in shapes else 0
        pinned = PES_KEY in settings or CYCLES_KEY in settings
        if not pinned and name in shapes and budget > shapes[name][0]:
            out[name] = {**settings, CYCLES_KEY: int(budget)}
        else:
            out[name] = settings
    return out
