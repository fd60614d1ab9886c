"""da4ml's solutions of a layer's constant matrix-vector product, cached on disk, and their cost.

Distributed arithmetic (DA) turns `y = x @ W + b` with constant, quantized `W` into a graph of
shift-and-add operations (da4ml: `FixedVariableArray.from_kif(...) @ W`, then `comb_trace`), so zero
weights cost nothing, low-bit weights few adders, and repeated bit patterns share adders. The graph
is fully parallel: one input vector per clock once pipelined by HLS.

`solve_kernel` runs that solver exactly as hls4ml's `distributed_arithmetic` strategy does (same
calls, same options by default: `SolverOptions`), and caches the solution as JSON under a key that
hashes the quantized kernel and bias, the input's fixed-point type, the solver options and the
da4ml version, because solving a large layer takes minutes. `da_cost(weights, input_type, ...)` is
the call for the fit search: the cost of one layer from da4ml's own solution, without converting a
model. da4ml's cost is the sum of its adders' widths, about one LUT per adder bit on a 6-input-LUT
FPGA (TOOLCHAIN.md: within a few percent of yosys `synth_xilinx` on 7-series parts); it counts the
kernel only (no stream reads/writes, no line buffers, no pipeline registers HLS adds).

da4ml is optional at import time: `require_da4ml()` raises a ToolError that says how to install it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from flows.atomic import atomic_write_text
from flows.errors import ToolError, UsageError
from flows.precision import FixedType, parse_fixed

try:
    import da4ml
    from da4ml.codegen.hls import hls_logic_and_bridge_gen
    from da4ml.trace import FixedVariableArray, HWConfig, comb_trace
    from da4ml.types import CombLogic, JSONEncoder
except ImportError:  # optional dependency: only DA layers need it
    da4ml = None

log = logging.getLogger(__name__)

# hls4ml 1.3.0's `da` extra asks for >=0.5.2,<0.6; 0.6.0 works with its DA templates (tests/test_da.py,
# bit-exact) and solves in compiled code: 0.5.2's numba JIT costs ~2.5 min on the first solve of a fresh venv
DA4ML_PIN = "da4ml==0.6.0"
CACHE_FORMAT = 1
CACHE_ENV = "FIREFLOW_DA_CACHE"  # overrides the default cache folder
SOURCE = "da4ml"


def require_da4ml() -> None:
    """Raise a ToolError naming the fix when da4ml is not installed."""
    if da4ml is None:
        raise ToolError(f"the distributed_arithmetic strategy needs da4ml: pip install '{DA4ML_PIN}'")


def da4ml_version() -> str | None:
    return None if da4ml is None else str(da4ml.__version__)


@dataclass(frozen=True)
class SolverOptions:
    """da4ml's solver settings. The defaults are hls4ml 1.3.0's for its DA strategy.

    `hard_dc`: adder levels allowed beyond the minimal depth (-1: unconstrained, cheaper and 5-10x
    faster to solve, deeper logic); `search_all_decompose_dc`: try every decomposition depth."""

    hard_dc: int = 2
    search_all_decompose_dc: bool = True
    method0: str = "wmc"

    def as_da4ml(self) -> dict:
        return {
            "hard_dc": self.hard_dc,
            "search_all_decompose_dc": self.search_all_decompose_dc,
            "method0": self.method0,
        }


def default_cache_dir() -> Path:
    """`$FIREFLOW_DA_CACHE`, else `$XDG_CACHE_HOME/fireflow/da4ml` (default `~/.cache/fireflow/da4ml`)."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "fireflow" / "da4ml"


def as_fixed(input_type: FixedType | str) -> FixedType:
    """A FixedType from a FixedType or an hls4ml/ap_fixed type string ('ufixed<8,0,RND_CONV,SAT>')."""
    fixed = input_type if isinstance(input_type, FixedType) else parse_fixed(str(input_type))
    if fixed is None:
        raise UsageError(f"DA needs a fixed-point input type, got {input_type!r}: give e.g. 'ufixed<8,0>'")
    return fixed


def input_kif(input_type: FixedType | str, n_in: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """da4ml's (keep-sign, integer, fraction) bits of every kernel input, all of one fixed-point type.

    hls4ml's `_get_input_kif` gives the same for a graph without HGQ's FixedPointQuantizer layers:
    the input variable's type, broadcast (a conv's im2col of a uniform type is uniform)."""
    fixed = as_fixed(input_type)
    k = int(fixed.signed)
    i, f = fixed.integer - k, fixed.width - fixed.integer
    return np.full(n_in, k, np.int16), np.full(n_in, i, np.int16), np.full(n_in, f, np.int16)


def as_kernel(weights: np.ndarray) -> np.ndarray:
    """The (n_in, n_out) matrix of a dense (n_in, n_out) or channels-last conv (..., c_in, c_out) kernel."""
    w = np.asarray(weights, dtype=np.float64)
    if w.ndim < 2:
        raise UsageError(f"DA needs a weight matrix or a conv kernel, got an array of shape {w.shape}")
    return w.reshape(-1, w.shape[-1])


def solution_key(kernel: np.ndarray, bias: np.ndarray | None, kif: tuple, options: SolverOptions) -> str:
    """SHA-256 of everything a solution depends on: kernel, bias, input bits, options, da4ml version."""
    h = hashlib.sha256()
    head = {"format": CACHE_FORMAT, "da4ml": da4ml_version(), "shape": list(kernel.shape), "options": asdict(options)}
    h.update(json.dumps(head, sort_keys=True).encode())
    h.update(np.ascontiguousarray(kernel, dtype=np.float64).tobytes())
    h.update(b"bias" + (b"" if bias is None else np.ascontiguousarray(bias, dtype=np.float64).tobytes()))
    for part in kif:
        h.update(np.ascontiguousarray(part, dtype=np.int16).tobytes())
    return h.hexdigest()


@dataclass
class DASolution:
    """A solved layer: da4ml's `CombLogic`, its cache key and file, and how it was obtained."""

    logic: object  # da4ml.cmvm.types.CombLogic
    key: str
    path: Path
    solve_s: float
    cached: bool
    n_nonzero: int | None = None  # nonzero weights of the kernel (known when solved from weights)

    @property
    def cost(self) -> float:
        return float(self.logic.cost)


def _load(path: Path):
    try:
        envelope = json.loads(path.read_text())
        if envelope.get("format") != CACHE_FORMAT:
            return None
        return CombLogic.deserialize(envelope["logic"]), float(envelope["solve_s"])
    except (OSError, ValueError, KeyError, TypeError, AssertionError) as exc:
        log.warning("ignoring unreadable DA solution %s (%s): solving again", path, exc)
        return None


def cache_path(cache_dir: Path, key: str) -> Path:
    return Path(cache_dir) / key[:2] / f"{key}.json"


def load_solution(key: str, cache_dir: Path | None = None) -> DASolution | None:
    """A cached solution by its key, or None."""
    require_da4ml()
    path = cache_path(cache_dir or default_cache_dir(), key)
    loaded = _load(path) if path.is_file() else None
    return None if loaded is None else DASolution(loaded[0], key, path, loaded[1], True)


def solve_kernel(
    weights: np.ndarray,
    input_type: FixedType | str,
    bias: np.ndarray | None = None,
    options: SolverOptions | None = None,
    cache_dir: Path | None = None,
    name: str = "layer",
) -> DASolution:
    """da4ml's solution of `x @ W (+ b)` for inputs of `input_type`, from the cache when solved before."""
    require_da4ml()
    options = options or SolverOptions()
    kernel = as_kernel(weights)
    b = None if bias is None else np.asarray(bias, dtype=np.float64).reshape(-1)
    if b is not None and len(b) != kernel.shape[1]:
        raise UsageError(f"{name}: bias has {len(b)} values for {kernel.shape[1]} outputs")
    kif = input_kif(input_type, kernel.shape[0])
    key = solution_key(kernel, b, kif, options)
    n_nonzero = int(np.count_nonzero(kernel))
    cached = load_solution(key, cache_dir)
    if cached is not None:
        log.debug("%s: DA solution from the cache (%s)", name, cached.path)
        cached.n_nonzero = n_nonzero
        return cached
    t0 = time.time()
    inp = FixedVariableArray.from_kif(*kif, HWConfig(1, -1, -1), solver_options=options.as_da4ml())
    out = inp @ kernel
    if b is not None:
        out = out + b
    logic = comb_trace(inp, out)
    solve_s = time.time() - t0
    log.info("%s: da4ml solved %dx%d in %.1f s, cost %.0f", name, *kernel.shape, solve_s, logic.cost)
    path = cache_path(cache_dir or default_cache_dir(), key)
    envelope = {"format": CACHE_FORMAT, "da4ml": da4ml_version(), "solve_s": solve_s, "options": asdict(options)}
    envelope["logic"] = json.loads(json.dumps(logic, cls=JSONEncoder))
    atomic_write_text(path, json.dumps(envelope) + "\n")
    return DASolution(logic, key, path, solve_s, False, n_nonzero)


def solution_cost(solution: DASolution, instances: int = 1) -> dict:
    """The labelled cost of a solved kernel (`instances` copies of it: the pixels of an io_parallel conv)."""
    logic = solution.logic
    n_in, n_out = logic.shape
    adders = sum(1 for op in logic.ops if op.opcode in (0, 1))
    return {
        "source": SOURCE,
        "LUT": int(round(solution.cost * instances)),
        "adder_bits": float(solution.cost),
        "adders": int(adders),
        "adder_depth": float(logic.latency[1]),
        "instances": int(instances),
        "n_in": int(n_in),
        "n_out": int(n_out),
        "n_nonzero": solution.n_nonzero,
        "ii_per_vector": 1,
        "solve_s": round(solution.solve_s, 3),
        "cached": solution.cached,
        "key": solution.key,
    }


def da_cost(
    weights: np.ndarray,
    input_type: FixedType | str,
    bias: np.ndarray | None = None,
    options: SolverOptions | None = None,
    cache_dir: Path | None = None,
    instances: int = 1,
    name: str = "layer",
) -> dict:
    """The cost of one layer as distributed arithmetic, from da4ml's own (cached) solution.

    `weights`: the quantized kernel, (n_in, n_out) or channels-last (kh, kw, c_in, c_out), on its
    fixed-point grid; `input_type`: the layer input's fixed-point type. Returns a dict labelled
    `source: "da4ml"`: `LUT` (about one per adder bit, times `instances`), `adders`, `adder_depth`
    (adder levels of the combinational kernel), `ii_per_vector` (1: fully parallel), `solve_s`,
    `cached` (whether the solution came from the cache) and the cache `key`."""
    return solution_cost(solve_kernel(weights, input_type, bias, options, cache_dir, name), instances)


def hls_kernel_code(solution: DASolution, fn_name: str) -> str:
    """The HLS C++ function da4ml writes for a solution (hls4ml's call: Vitis flavour, inlined)."""
    require_da4ml()
    code, _ = hls_logic_and_bridge_gen(
        solution.logic, fn_name, "vitis", pragmas=["#pragma HLS INLINE"], print_latency=True
    )
    return code
