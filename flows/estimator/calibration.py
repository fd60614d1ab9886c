"""The constants of the estimator: `Calibration`, one fitted preset per HLS tool, and the expected error.

The presets live in the data file ``calibration.json`` beside this module (`CALIBRATION_FILE`),
written by `save_calibrations` with what `flows.estimator.fit` fitted (``python bench/estimator.py
--fit``), never pasted by hand:

* ``vivado_hls`` / ``vitis_hls``: every field of `Calibration`; the fitted ones come from all
  reference runs of that tool (`flows.estimator.runs`). `VIVADO_HLS_CALIBRATION` is the default (the
  VivadoAccelerator backend for PYNQ-Z2 runs Vivado HLS).
* ``expected_error``: the median |relative error| of each tool's estimates on networks its
  calibration did not see (leave-one-network-out cross-validation, rounded to the percent): what a
  build report quotes as the typical error (`EXPECTED_ERROR`).

`tool_of` maps an hls4ml backend to its HLS tool, `calibration_for` to that tool's preset.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from flows.atomic import atomic_write_bytes
from flows.errors import DataError

CALIBRATION_FILE = Path(__file__).resolve().parent / "calibration.json"
TOOLS = ("vivado_hls", "vitis_hls")
ERROR_METRICS = ("LUT", "FF", "DSP", "BRAM36", "latency", "II")
SIGNIFICANT_DIGITS = 4  # fitted constants are stored to this many significant digits
RESOLUTION_DIGITS = 6  # ... and this many decimals


@dataclass(frozen=True)
class Calibration:
    """The constants of the model, in one place.

    Field defaults are hand-set starting values (device facts and per-layer report readings) and the
    prior of the fit; the presets `VIVADO_HLS_CALIBRATION`/`VITIS_HLS_CALIBRATION` hold the values
    fitted by `flows.estimator.fit` (``python bench/estimator.py --fit``), read from `CALIBRATION_FILE`.
    ``const_dsp_fraction`` (a step function of DSP counts, which least squares cannot move) is read off
    the RF-1 runs: 664/896 (Vivado HLS), 2557/4256 to 110/120 (Vitis).
    Units are in the names: ``lut_*``/``ff_*`` are LUTs/flip-flops, ``*_bits`` bit widths, ``*_ns``
    nanoseconds of combinational delay, ``*_cycles`` clock cycles.
    """

    # DSP vs LUT multipliers
    dsp_a_bits: int = 25  # DSP48E1 multiplier port widths (7-series); 27x18 on UltraScale+
    dsp_b_bits: int = 18
    lut_mult_max_bits: int = 10  # both operands at most this wide: Vivado HLS maps the product to LUTs
    const_lut_weight_bits: int = 8  # latency strategy: constant weights this narrow become shift-add logic
    const_dsp_fraction: float = 0.75  # RF 1, latency, wide constants: share of nonzero products kept on DSPs
    # LUT costs
    lut_per_adder_bit: float = 1.0
    lut_per_lutmult_bit2: float = 0.6  # generic a x w LUT multiplier: k * a * w LUTs
    lut_per_constmult_bit2: float = 0.25  # multiplication by a constant (shift-add): k * a * w LUTs
    lut_per_dsp_mult: float = 4.0  # glue logic per DSP multiplier
    lut_mux_per_bit: float = 0.35  # RF:1 operand multiplexers when multipliers are shared
    lut_accmux_per_bit: float = 1.0  # resource strategy with RF > n_in: accumulator select per output bit
    lut_res_per_mult_bit: float = 1.0  # resource strategy: operand/accumulator steering per multiplier and bit
    lut_sat_factor: float = 1.0  # saturating (AP_SAT) accumulators: extra adder LUTs, as a fraction
    lut_layer_base: float = 60.0  # control (FSM, handshakes) per layer
    lut_elem_per_bit: float = 1.5  # element-wise layers (ReLU, casts, pooling compare): per element and bit
    lut_act_narrow_per_elem: float = 40.0  # activation whose output is narrower than its input (clip/round)
    lut_softmax_per_elem: float = 60.0
    lut_per_rom_bit: float = 1.0 / 32  # a ROM kept in LUTs (LUTRAM/logic)
    lut_fifo_bram: float = 35.0  # control of a BRAM FIFO
    lut_fifo_srl: float = 10.0  # control of an SRL FIFO (plus one LUT per bit and 32 words)
    # FF costs
    ff_per_adder_bit: float = 0.3  # per adder bit and pipeline stage
    ff_shared_tree_factor: float = 1.0  # latency strategy with RF > 1: tree registers relative to RF 1
    ff_tree_decay: float = 1.0  # 1: a cut after k of L tree levels holds 2^-k of the sums; 0: a full copy per cut
    ff_per_mult_bit: float = 0.5  # per multiplier operand bit and multiplier pipeline stage
    ff_res_per_mult_bit: float = 1.0  # resource strategy: registers per multiplier and (a + w + acc) bit
    ff_layer_base: float = 40.0
    ff_elem_per_bit: float = 0.5  # element-wise layers in io_stream (pipeline registers)
    ff_fifo_bram: float = 50.0  # pointers and output register of a BRAM FIFO
    ff_fifo_srl: float = 6.0
    ff_parallel_reg_per_bit: float = 0.0  # io_parallel: registers between the layers of the top pipeline
    ff_pool_window_factor: float = 1.0  # io_stream pooling: window registers relative to pool * chan * bits
    ff_softmax_per_elem: float = 5.0  # per element and pipeline stage
    ff_softmax_base: float = 0.0  # the sum, its inverse and the table reads, once per softmax
    ff_prod_reg_per_bit: float = 0.0  # latency strategy with RF > 1: every product is held until the tree sums it
    # Timing
    t_mult_ns: float = 3.5  # multiplier incl. routing
    t_add_ns: float = 2.0  # one adder-tree level
    t_elem_ns: float = 3.0  # element-wise op; a register stage is added when the period is shorter
    t_softmax_ns: float = 40.0
    clock_uncertainty: float = 0.125  # hls4ml's default ClockUncertainty
    t_reg_ns: float = 0.0  # register overhead per pipeline stage (clock-to-out, setup, routing)
    depth_extra_cycles: int = 1  # kernel depth = ceil(delay / usable period) + this
    resource_extra_cycles: int = 2  # resource strategy: kernel latency = RF + depth + this
    resource_conv_overhead: int = 9  # io_stream resource conv: cycles per output pixel = RF + this
    resource_conv_skip_cycles: int = 4  # ... and per input pixel that yields no output
    stream_conv_min_ii: int = 1  # io_stream latency conv: cycles per input pixel = max(RF, this)
    parallel_layer_cycles: int = 1  # io_parallel: register/call overhead per layer
    elem_depth_cycles: int = 2  # pipeline depth of element-wise stream layers
    # Memories
    fifo_srl_max_depth: int = 16  # deeper FIFOs go to BRAM
    fifo_bits_per_bram18: int = 18  # FIFO width per BRAM_18K up to 1K words (Vivado HLS)
    rom_bram_min_bits: int = 1024  # smaller weight ROMs stay in LUTs
    # Latency-strategy layers larger than this fail in HLS (complete partitioning, hls4ml MaximumSize)
    latency_max_weights: int = 4096
    # VivadoAccelerator AXI wrapper (float in/out)
    axi_lut_base: float = 2200.0  # one float->fixed and one fixed->float converter, AXI-stream handshakes
    axi_lut_parallel_extra: float = 3300.0  # io_parallel wrapper (not pipelined top, is_last logic)
    axi_ff_base: float = 1700.0
    axi_ff_parallel_extra: float = 0.0
    axi_per_io_bit: float = 1.0  # io_parallel: in_local/out_local arrays, LUT and FF per bit
    axi_latency_cycles: int = 8
    axi_elem_ns: float = 48.0  # io_stream wrapper loops (not pipelined): ns per converted element

    def to_dict(self) -> dict:
        """Every constant by field name."""
        return asdict(self)


def _field_value(name: str, typ: str, value: object, path: Path) -> int | float:
    """A JSON value as the field's type: ints must be integral, floats finite."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise DataError(
            f"{path}: {name} = {value!r} must be a finite number; refit with python bench/estimator.py --fit"
        )
    if typ == "int":
        if float(value) != int(value):
            raise DataError(f"{path}: {name} = {value!r} must be a whole number")
        return int(value)
    return float(value)


def _calibration_from(values: object, tool: str, path: Path) -> Calibration:
    """One tool's `Calibration` from its JSON object, which must name every field exactly once."""
    names = {f.name: str(f.type) for f in fields(Calibration)}
    if not isinstance(values, dict) or set(values) != set(names):
        have = set(values) if isinstance(values, dict) else set()
        missing, unknown = sorted(set(names) - have), sorted(have - set(names))
        raise DataError(
            f"{path}: {tool} must set exactly the fields of Calibration (missing {missing}, unknown {unknown}); "
            "refit with python bench/estimator.py --fit"
        )
    return Calibration(**{n: _field_value(n, names[n], values[n], path) for n in names})


def load_calibrations(path: Path = CALIBRATION_FILE) -> tuple[dict[str, Calibration], dict[str, dict[str, float]]]:
    """The per-tool calibrations and expected errors stored in ``path`` (default `CALIBRATION_FILE`)."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise DataError(f"cannot read the estimator calibration {path} ({exc}); reinstall fireflow") from None
    if not isinstance(data, dict):
        raise DataError(f"{path}: expected a JSON object with {list(TOOLS)} and expected_error")
    calibs = {tool: _calibration_from(data.get(tool), tool, path) for tool in TOOLS}
    errors = data.get("expected_error", {})
    if (
        not isinstance(errors, dict)
        or set(errors) != set(TOOLS)
        or any(set(errors[t]) != set(ERROR_METRICS) for t in TOOLS)
    ):
        raise DataError(f"{path}: expected_error must give {list(ERROR_METRICS)} for {list(TOOLS)}")
    expected = {t: {m: float(errors[t][m]) for m in ERROR_METRICS} for t in TOOLS}
    return calibs, expected


def _stored(calib: Calibration) -> dict[str, int | float]:
    """A calibration as stored: int fields as ints, floats to `SIGNIFICANT_DIGITS` significant digits and
    `RESOLUTION_DIGITS` decimals."""
    out: dict[str, int | float] = {}
    for f in fields(calib):
        value = getattr(calib, f.name)
        if str(f.type) == "int":
            out[f.name] = int(value)
        else:  # a constant that sits on a bound of the fit comes back as 1e-10: store it as 0
            out[f.name] = round(float(f"{value:.{SIGNIFICANT_DIGITS}g}"), RESOLUTION_DIGITS) + 0.0
    return out


def save_calibrations(
    calibs: dict[str, Calibration], expected_error: dict[str, dict[str, float]], path: Path = CALIBRATION_FILE
) -> None:
    """Write the calibrations (floats rounded as `_stored` says) and the expected errors to ``path``."""
    data = {tool: _stored(calibs[tool]) for tool in TOOLS}
    data["expected_error"] = {t: {m: round(float(expected_error[t][m]), 2) for m in ERROR_METRICS} for t in TOOLS}
    atomic_write_bytes(path, (json.dumps(data, indent=1) + "\n").encode())


CALIBRATIONS, EXPECTED_ERROR = load_calibrations()
"""`CALIBRATIONS`: tool -> fitted `Calibration`. `EXPECTED_ERROR`: tool -> metric -> median |relative
error| on networks the calibration did not see (``LUT FF DSP BRAM36 latency II``)."""
VIVADO_HLS_CALIBRATION = CALIBRATIONS["vivado_hls"]
VITIS_HLS_CALIBRATION = CALIBRATIONS["vitis_hls"]
DEFAULT_CALIBRATION = VIVADO_HLS_CALIBRATION  # the VivadoAccelerator backend (PYNQ-Z2) runs Vivado HLS


def tool_of(backend: str) -> str:
    """The HLS tool an hls4ml backend runs: ``vitis_hls`` for ``Vitis``, ``vivado_hls`` otherwise."""
    return "vitis_hls" if backend.lower().startswith("vitis") else "vivado_hls"


def calibration_for(backend: str) -> Calibration:
    """The calibration of the HLS tool an hls4ml backend runs: Vitis HLS for ``Vitis``, Vivado HLS otherwise."""
    return CALIBRATIONS[tool_of(backend)]
