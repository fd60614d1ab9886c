"""Sparse form of a pruned, weight-shared layer: the codebook and relative indices with fillers.

This is Section 3 of Han, Mao & Dally, "Deep Compression" (ICLR 2016). The weight is flattened in C
order; its nonzero entries are stored with *relative indices*: each stored entry carries the gap, the
number of zeros skipped since the previous stored entry (the first entry counts from position 0),
in `index_bits` bits. A gap larger than M = 2**index_bits - 1 is bridged by *filler* entries (the
paper's Figure 2): a filler has gap M, sits on a zero position and carries the zero code 0, so a gap
g needs g // (M + 1) fillers. Zeros after the last nonzero entry need no entries (the decoder knows
the size from the shape).

The codebook is the sorted distinct nonzero values (float32). Code 0 is reserved for the filler
zero; code i (1..K) means codebook[i - 1]. Negative zeros count as zeros.
"""

from __future__ import annotations

import numpy as np


def build_codebook(flat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sorted distinct nonzero float32 values and the code of every element (0 for zero)."""
    flat = np.asarray(flat, dtype=np.float32).ravel()
    nonzero = flat != 0
    codebook = np.unique(flat[nonzero])
    codes = np.zeros(flat.shape, dtype=np.int64)
    codes[nonzero] = np.searchsorted(codebook, flat[nonzero]) + 1
    return codebook, codes


def to_relative(codes: np.ndarray, index_bits: int) -> tuple[np.ndarray, np.ndarray]:
    """Sparse form of a flat code array: (gaps, entry codes), fillers included (code 0, gap M)."""
    codes = np.asarray(codes, dtype=np.int64).ravel()
    span = 1 << index_bits  # M + 1: positions one filler covers
    positions = np.flatnonzero(codes)
    gaps = np.diff(positions, prepend=-1) - 1
    fillers = gaps // span
    per_entry = fillers + 1
    n_entries = int(per_entry.sum())
    out_gaps = np.full(n_entries, span - 1, dtype=np.int64)
    out_codes = np.zeros(n_entries, dtype=np.int64)
    real = np.cumsum(per_entry) - 1
    out_gaps[real] = gaps - fillers * span
    out_codes[real] = codes[positions]
    return out_gaps, out_codes


def from_relative(gaps: np.ndarray, codes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Positions and codes of the real (non-filler) entries; no validation (the decoder checks first)."""
    positions = np.cumsum(np.asarray(gaps, dtype=np.int64) + 1) - 1
    real = np.asarray(codes) != 0
    return positions[real], np.asarray(codes)[real]
