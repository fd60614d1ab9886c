"""Analytical resource and latency estimates for hls4ml designs, and a search that fits a design to a board.

Vivado/Vitis HLS are not available to most users of this flow, so they need numbers they can trust
*before* synthesis. This package predicts what the HLS csynth report would say for an hls4ml 1.3
project (LUT, FF, DSP, BRAM36, URAM; latency and initiation interval in clock cycles) from the
structure hls4ml generates, and it chooses reuse factors and strategies that make a design fit.
Every figure it produces carries ``source="estimate"``.

Modules, lowest layer first (each imports only modules listed before it):

* `calibration`: the constants (`Calibration`), one fitted preset per HLS tool read from
  ``calibration.json``, the expected error per tool (`EXPECTED_ERROR`), `tool_of`, `calibration_for`.
* `spec`: `LayerSpec` (one hls4ml layer as the estimator sees it) and `LayerEstimate`.
* `blocks`: building blocks (multipliers, DSP tiles, pipeline depth, adder trees, BRAM, FIFOs).
* `layers`: the per-layer cost model, `estimate_layer`.
* `dataflow`: whole designs (FIFOs, the AXI wrapper, dataflow timing), `estimate_design` ->
  `DesignEstimate`.
* `hls4ml_adapter`: `describe_hls_model` (ModelGraph -> `LayerSpec` list) and `valid_reuse_factors`.
* `sparse`: the sparse weight-shared dense kernel (`flows/sparse/`): its resources and latency from
  its structure (PEs, ROM bits, accumulators, input buffers), uncalibrated; `describe_hls_model`
  attaches it to such a layer's spec, so every estimate and search costs it with this model.
* `explain`, `search`: `fit_to_budget` and `shrink_to_ii` -> `FitResult`.
* `runs`, `evaluation`, `fit`: the reference runs (real csynth reports of public hls4ml projects,
  their networks rebuilt in ``reference_runs.json``), the comparison with the reports (errors,
  claims, the results page), and the calibration fitter (scipy robust least squares,
  leave-one-network-out cross-validation) whose constants `calibration` stores in
  ``calibration.json``. ``python bench/estimator.py`` runs them and writes
  ``bench/results/estimator.md``; they are not imported here (they need the reports and scipy).

Estimates target csynth, which over-reports LUTs relative to Vivado synthesis.
"""

from flows.estimator.blocks import (
    acc_bits,
    bram18_for,
    dsp_per_multiplier,
    fifo_cost,
    kernel_depth,
    multiplier_count,
    tree_registers,
)
from flows.estimator.calibration import (
    CALIBRATIONS,
    DEFAULT_CALIBRATION,
    EXPECTED_ERROR,
    VITIS_HLS_CALIBRATION,
    VIVADO_HLS_CALIBRATION,
    Calibration,
    calibration_for,
    tool_of,
)
from flows.estimator.dataflow import DesignEstimate, estimate_design
from flows.estimator.hls4ml_adapter import describe_hls_model, valid_reuse_factors
from flows.estimator.layers import estimate_layer
from flows.estimator.search import FitResult, LayerChoice, fit_to_budget, shrink_to_ii
from flows.estimator.spec import IO_TYPES, KINDS, MAC_KINDS, SOURCE, STRATEGIES, LayerEstimate, LayerSpec

__all__ = [
    "CALIBRATIONS",
    "DEFAULT_CALIBRATION",
    "EXPECTED_ERROR",
    "IO_TYPES",
    "KINDS",
    "MAC_KINDS",
    "SOURCE",
    "STRATEGIES",
    "VITIS_HLS_CALIBRATION",
    "VIVADO_HLS_CALIBRATION",
    "Calibration",
    "DesignEstimate",
    "FitResult",
    "LayerChoice",
    "LayerEstimate",
    "LayerSpec",
    "acc_bits",
    "bram18_for",
    "calibration_for",
    "describe_hls_model",
    "dsp_per_multiplier",
    "estimate_design",
    "estimate_layer",
    "fifo_cost",
    "fit_to_budget",
    "kernel_depth",
    "multiplier_count",
    "shrink_to_ii",
    "tool_of",
    "tree_registers",
    "valid_reuse_factors",
]
