"""The sparse kernel's weight layout: codebook, per-PE relative-index entries, and the PE count for a rate.

A Dense layer's weight ``W`` (``n_in x n_out``, hls4ml's order) becomes, for P processing elements:

- a **codebook**: entry 0 is the zero weight, entries 1..K the layer's distinct nonzero values, sorted
  (`flows.bundle.sparse.build_codebook`); ``code_bits = ceil(log2(K + 1))``;
- for PE ``p``, the outputs (rows of ``W^T``) ``p, p + P, p + 2P, ...`` (``n_rows = ceil(n_out / P)``
  of them): its ``n_rows x n_in`` block, flattened row by row, in the relative-index form of
  `flows.bundle.sparse.to_relative` (Deep Compression's Figure 2): each entry is a code and the gap
  to the previous entry, fillers (code 0, gap ``M = 2^index_bits - 1``) bridging longer gaps;
- an **entry** word ``code << index_bits | gap`` (``code_bits + index_bits`` bits); every PE's list
  is padded to the longest one, ``n_steps`` entries, with *padding* entries (code 0, gap 0: a filler
  always has gap ``M >= 1``, a real entry a nonzero code, so padding is recognisable and does not
  move the PE). The entries are stored step-major, ``entries[t * P + p]``, so a cyclic reshape by
  ``P`` makes one ROM word of every PE's entry for step t (the PEs read in lockstep).

A PE walks its entries one per clock: its column advances by ``gap + 1``; ``2^index_bits <= n_in``
keeps every advance within one row change. `walk` is that walk in numpy (the C++ kernel's reference).

`choose_pes` picks P for a cycle budget per image: ``P = ceil(nnz / budget)`` (the rate formula),
raised while the longest PE (imbalance, fillers) still needs more than ``budget`` steps.

**Balanced rows** (``balance=True``; EIE's load balancing): the PEs' rows need not be ``p, p + P, ...``.
Rows are dealt out longest first, each to the least loaded PE with room (`balanced_order`), so the
longest PE, which sets the steps, is close to the average and fewer PEs keep the pace. The kernel still
writes its results slot by slot (slot ``r * P + p``: PE ``p``'s ``r``-th row), so its output vector is
permuted: slot ``q`` holds output ``out_order[q]``. Only a layer whose consumer reorders its own weight
rows to match can take that (the pass does so for a Dense consumer, `flows.sparse.extension`).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import numpy as np

from flows.bundle.sparse import build_codebook, to_relative
from flows.errors import UsageError

log = logging.getLogger(__name__)

LAYER_CLASS = "SparseDense"  # the hls4ml layer class of the kernel (flows.sparse.extension)
MIN_INPUTS = 2  # one index bit needs 2^1 <= n_in
PES_PER_COPY = 2  # two PEs read one dual-port copy of the input buffer
# the walk's sizes (`SparseLayout.sizes`): attributes of the hls4ml layer, fields of the estimate's spec
SIZE_NAMES = ("n_in", "n_out", "n_pe", "n_rows", "n_steps", "n_codes", "code_bits", "index_bits", "nnz")
WALK_RESERVE = 6  # clocks of a compute beyond its walk and rows: pipeline depth, a result word, loop entries
OUTPUT_ORDER_ATTR = "output_order"  # a SparseDense node's out_order when it is not the identity


@dataclass(frozen=True)
class SparseLayout:
    """The ROM contents and sizes of one sparse Dense layer for `n_pe` processing elements."""

    n_in: int
    n_out: int
    n_pe: int
    n_rows: int  # outputs per PE, ceil(n_out / n_pe)
    n_steps: int  # entries per PE (the longest PE's; the others padded)
    index_bits: int
    code_bits: int
    codebook: np.ndarray  # (K + 1,) float64, codebook[0] == 0
    entries: np.ndarray  # (n_steps * n_pe,) int64, step-major: entries[t * n_pe + p]
    nnz: int
    n_fillers: int
    pe_lengths: tuple[int, ...]  # entries of each PE before padding
    out_order: tuple[int, ...] = ()  # slot q holds output out_order[q]; () = the identity (rows p, p + P, ...)

    @property
    def order(self) -> np.ndarray:
        """The output each result slot holds (the identity unless the rows were balanced)."""
        return np.asarray(self.out_order, dtype=np.int64) if self.out_order else np.arange(self.n_out)

    @property
    def entry_bits(self) -> int:
        return self.code_bits + self.index_bits

    @property
    def n_codes(self) -> int:
        return len(self.codebook)

    @property
    def n_copies(self) -> int:
        """Copies of the input buffer: one dual-port copy per `PES_PER_COPY` PEs."""
        return math.ceil(self.n_pe / PES_PER_COPY)

    @property
    def rom_bits(self) -> int:
        """Bits of the entry ROMs, all PEs (padding included)."""
        return self.n_steps * self.n_pe * self.entry_bits

    def sizes(self) -> dict[str, int]:
        """The walk's sizes, as the kernel's config and the estimate name them."""
        return {name: int(getattr(self, name)) for name in SIZE_NAMES}

    @property
    def balance(self) -> float:
        """Useful entries over the steps the PEs spend (1.0: no padding)."""
        return sum(self.pe_lengths) / max(1, self.n_steps * self.n_pe)


def max_index_bits(n_in: int) -> int:
    """The widest relative index the walk allows: ``2^bits <= n_in`` (one row change per step)."""
    if n_in < MIN_INPUTS:
        raise UsageError(f"a sparse dense layer needs at least {MIN_INPUTS} inputs, not {n_in}")
    return int(math.floor(math.log2(n_in)))


def _pe_entries(codes: np.ndarray, n_pe: int, n_rows: int, index_bits: int) -> list[np.ndarray]:
    """Entry words of each PE: its rows (p, p + P, ...) flattened, in relative-index form."""
    n_out, n_in = codes.shape
    padded = np.zeros((n_rows * n_pe, n_in), dtype=np.int64)
    padded[:n_out] = codes
    out = []
    for p in range(n_pe):
        gaps, ecodes = to_relative(padded[p::n_pe].ravel(), index_bits)
        out.append((ecodes << index_bits) | gaps)
    return out


def balanced_order(codes: np.ndarray, n_pe: int, index_bits: int) -> np.ndarray:
    """Output rows in slot order (slot ``r * P + p``) after dealing the rows to the PEs longest first.

    A row's length is its entry count in relative-index form (fillers included); each row goes to the
    PE with the least load that still has room: ``n_rows`` slots, one fewer for the PEs whose last slot
    lies past ``n_out`` (the padding slots stay at the end, as the kernel expects). Deterministic."""
    n_out = codes.shape[0]
    n_rows = math.ceil(n_out / n_pe)
    room = np.array([n_rows if (n_rows - 1) * n_pe + p < n_out else n_rows - 1 for p in range(n_pe)])
    lengths = [len(to_relative(codes[r], index_bits)[0]) for r in range(n_out)]
    load = np.zeros(n_pe, dtype=np.int64)
    rows: list[list[int]] = [[] for _ in range(n_pe)]
    for r in sorted(range(n_out), key=lambda i: (-lengths[i], i)):
        p = min((q for q in range(n_pe) if len(rows[q]) < room[q]), key=lambda q: (load[q], q))
        rows[p].append(r)
        load[p] += lengths[r]
    order = np.full(n_rows * n_pe, -1, dtype=np.int64)
    for p, mine in enumerate(rows):
        for slot, r in enumerate(sorted(mine)):
            order[slot * n_pe + p] = r
    return order[:n_out]


def build_layout(
    weight: np.ndarray,
    n_pe: int,
    index_bits: int | None = None,
    max_steps: int | None = None,
    balance: bool = False,
) -> SparseLayout:
    """The layout of a ``n_in x n_out`` weight for `n_pe` PEs (rows ``p, p + P, ...``, or `balance`d).

    `index_bits` None picks the width with the fewest ROM bits among those whose walk fits `max_steps`
    (any width when none fits or no limit is given: then the fewest bits, ties to the fewest steps)."""
    weight = np.asarray(weight, dtype=np.float64)
    if weight.ndim != 2:
        raise UsageError(f"a sparse dense layer needs a 2-D weight (n_in, n_out), not shape {weight.shape}")
    n_in, n_out = weight.shape
    widest = max_index_bits(n_in)
    if not 1 <= n_pe <= n_out:
        raise UsageError(f"SparsePEs must be between 1 and the layer's {n_out} outputs, not {n_pe}")
    if index_bits is not None and not 1 <= index_bits <= widest:
        raise UsageError(f"SparseIndexBits must be between 1 and {widest} for {n_in} inputs, not {index_bits}")
    values, codes = build_codebook(weight.T.ravel())
    codebook = np.concatenate([[0.0], values.astype(np.float64)])
    if not np.array_equal(codebook[1:], np.unique(weight[weight != 0])):
        raise UsageError("the layer's weights are not exact in float32: the sparse codebook cannot hold them")
    code_bits = max(1, math.ceil(math.log2(len(codebook))))
    codes = codes.reshape(n_out, n_in)
    n_rows = math.ceil(n_out / n_pe)
    candidates = [index_bits] if index_bits is not None else list(range(1, widest + 1))
    best = None
    for bits in candidates:
        order = balanced_order(codes, n_pe, bits) if balance and n_pe > 1 else np.arange(n_out)
        per_pe = _pe_entries(codes[order], n_pe, n_rows, bits)
        steps = max(1, max(len(e) for e in per_pe))
        key = (max_steps is not None and steps > max_steps, steps * n_pe * (code_bits + bits), steps)
        if best is None or key < best[0]:
            best = (key, bits, steps, per_pe, order)
    _, bits, steps, per_pe, order = best
    entries = np.zeros((steps, n_pe), dtype=np.int64)  # padding: code 0, gap 0
    for p, e in enumerate(per_pe):
        entries[: len(e), p] = e
    nnz = int(np.count_nonzero(codes))
    lengths = tuple(len(e) for e in per_pe)
    return SparseLayout(
        n_in=n_in,
        n_out=n_out,
        n_pe=n_pe,
        n_rows=n_rows,
        n_steps=steps,
        index_bits=bits,
        code_bits=code_bits,
        codebook=codebook,
        entries=entries.ravel(),
        nnz=nnz,
        n_fillers=sum(lengths) - nnz,
        pe_lengths=lengths,
        out_order=() if np.array_equal(order, np.arange(n_out)) else tuple(int(i) for i in order),
    )


def choose_pes(
    weight: np.ndarray,
    cycles_per_image: int,
    index_bits: int | None = None,
    balance: bool = False,
    reserve_rows: bool = False,
) -> SparseLayout:
    """The layout with the fewest PEs whose walk fits `cycles_per_image` steps (rows `balance`d or not).

    With `reserve_rows` the budget is the whole compute: the walk plus the rows each PE settles after it
    and `WALK_RESERVE` (pipeline, a result word, loop entries), so the kernel keeps the pace of an input
    that takes `cycles_per_image` clocks. Starts at ``P = ceil(nnz / budget)`` and adds PEs while the
    longest PE needs more steps (uneven rows, fillers); stops at one PE per output (then the budget may
    be out of reach: logged)."""
    if cycles_per_image < 1:
        raise UsageError(f"SparseCycles (cycles per image) must be at least 1, not {cycles_per_image}")
    weight = np.asarray(weight, dtype=np.float64)
    n_out = weight.shape[-1]
    nnz = int(np.count_nonzero(weight))

    def limit(n_pe: int) -> int:
        return max(1, cycles_per_image - (math.ceil(n_out / n_pe) + WALK_RESERVE if reserve_rows else 0))

    def fits(layout: SparseLayout) -> bool:
        return layout.n_steps <= limit(layout.n_pe)

    def build(n_pe: int) -> SparseLayout:
        return build_layout(weight, n_pe, index_bits, limit(n_pe), balance)

    n_pe = min(n_out, max(1, math.ceil(nnz / cycles_per_image)))
    layout = build(n_pe)
    while not fits(layout) and n_pe < n_out:
        # the steps shrink about as 1/P: jump close to the answer, then step by one
        n_pe = min(n_out, max(n_pe + 1, math.ceil(n_pe * layout.n_steps / limit(n_pe)) - 1))
        layout = build(n_pe)
    while n_pe > 1 and fits(layout):
        smaller = build(n_pe - 1)
        if not fits(smaller):
            break
        n_pe, layout = n_pe - 1, smaller
    if not fits(layout):
        log.warning(
            "sparse dense: %d steps per image even with one PE per output (budget %d)", layout.n_steps, limit(n_pe)
        )
    return layout


def walk(layout: SparseLayout, x: np.ndarray, bias: np.ndarray | None = None) -> np.ndarray:
    """``x @ W + bias`` computed the way the kernel's PEs walk their entries (float64; exact for fixed point),
    in the outputs' own order (the kernel writes slot order: ``walk(...)[:, layout.order]``).

    `x` is (n_in,) or (N, n_in). Checks the walk's invariants: one row change per step, rows in range."""
    x = np.atleast_2d(np.asarray(x, dtype=np.float64))
    P, S, n_in = layout.n_pe, layout.n_rows, layout.n_in
    b = np.zeros(S * P)
    if bias is not None:
        b[: layout.n_out] = np.asarray(bias, dtype=np.float64)[layout.order]
    out = np.tile(b, (len(x), 1))
    mask = (1 << layout.index_bits) - 1
    entries = layout.entries.reshape(layout.n_steps, P)
    for p in range(P):
        row, nxt = 0, 0
        acc = np.full(len(x), b[p])
        for e in entries[:, p]:
            gap, code = int(e) & mask, int(e) >> layout.index_bits
            if code == 0 and gap == 0:
                continue  # padding
            col = nxt + gap
            if col >= n_in:
                col -= n_in
                if col >= n_in:
                    raise AssertionError("an entry moved a PE by more than one row")
                out[:, row * P + p] = acc
                row += 1
                acc = np.full(len(x), b[row * P + p])
            nxt = col + 1
            acc = acc + x[:, col] * layout.codebook[code]
        if row >= S:
            raise AssertionError(f"PE {p} walked past its {S} rows")
        out[:, row * P + p] = acc
    result = np.empty((len(x), layout.n_out))
    result[:, layout.order] = out[:, : layout.n_out]
    return result
