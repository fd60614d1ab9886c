"""The bundle decoder: check a bundle completely, then rebuild every layer's dense weight and bias.

Order of work: the header and its checksum, the layer table's checksum, every record and the element
budget (`flows.bundle.records`), each layer's payload checksum, the SHA-256 trailer; only then are
the streams decoded and the arrays allocated. A damaged, truncated, hand-edited or hostile file gives
a `BundleError` naming the layer and the problem, never another exception: even with every checksum
recomputed, a file is refused unless the encoder could have written it (e.g. a NaN/inf bias).
"""

from __future__ import annotations

import logging
import os
import zlib
from pathlib import Path

import numpy as np

from flows.bundle.format import DEFAULT_MAX_ELEMENTS, check_header, check_trailer
from flows.bundle.records import LayerRecord, check_records, expect, read_records
from flows.bundle.sparse import from_relative
from flows.bundle.streams import decode_stream
from flows.errors import BundleError

log = logging.getLogger(__name__)

Decoded = dict[str, tuple[np.ndarray, np.ndarray | None]]  # name -> (weight, bias)


def rebuild_layer(rec: LayerRecord, data: bytes, where: str) -> tuple[np.ndarray, np.ndarray | None]:
    """Decode both streams of a checked record and rebuild the dense weight (and the bias)."""
    k = rec.codebook.size

    def chunk(offset: int, length: int) -> bytes:
        return data[offset : offset + length]

    codes = decode_stream(
        rec.weights,
        chunk(rec.weights.offset, rec.weights.byte_length),
        rec.stored,
        rec.code_bits,
        k + 1,
        f"{where}, weight stream",
    )
    gaps = decode_stream(
        rec.index,
        chunk(rec.index.offset, rec.index.byte_length),
        rec.stored,
        rec.index_bits,
        1 << rec.index_bits,
        f"{where}, index stream",
    )
    is_filler = codes == 0
    n_fill = int(is_filler.sum())
    expect(n_fill == rec.fillers, where, "filler count", rec.fillers, n_fill)
    max_gap = (1 << rec.index_bits) - 1
    bad = int((gaps[is_filler] != max_gap).sum())
    expect(bad == 0, where, "filler gaps", f"all {max_gap}", f"{bad} fillers with a smaller gap")
    expect(rec.stored == 0 or not is_filler[-1], where, "last entry", "a nonzero weight", "a filler")
    bias = None
    if rec.bias_shape is not None:
        raw = chunk(rec.bias_offset, rec.bias_length)
        bias = np.frombuffer(raw, dtype="<f4").astype(np.float32).reshape(rec.bias_shape)
        bad = int((~np.isfinite(bias)).sum())
        if bad:
            raise BundleError(f"{where}: bias has {bad} NaN/inf values, which the encoder never writes")
    positions, real_codes = from_relative(gaps, codes)
    end = int(np.sum(gaps, dtype=np.int64)) + rec.stored
    expect(end <= rec.total, where, "extent of the entries", f"<= {rec.total} positions", end)
    flat = np.zeros(rec.total, dtype=np.float32)
    flat[positions] = rec.codebook[real_codes - 1]
    return flat.reshape(rec.shape), bias


def decode_bundle(data: bytes, max_elements: int = DEFAULT_MAX_ELEMENTS) -> Decoded:
    """Decode a bundle into {name: (weight, bias)}, in file order; raises `BundleError` if it is damaged.

    `max_elements` bounds the elements decoded from the whole bundle (weights and biases of all
    layers), so a damaged or hostile shape cannot allocate unbounded memory; a bundle over it is
    refused before anything is allocated.
    """
    data = bytes(data)
    header = check_header(data)
    records = read_records(data, header)
    check_records(records, header, max_elements)
    for i, rec in enumerate(records):
        crc = zlib.crc32(data[rec.payload_offset : rec.payload_offset + rec.payload_length])
        if crc != rec.payload_crc:
            raise BundleError(
                f"layer #{i} '{rec.name}': payload checksum mismatch: stored {rec.payload_crc:#010x}, "
                f"computed {crc:#010x}"
            )
    check_trailer(data)
    return {rec.name: rebuild_layer(rec, data, f"layer #{i} '{rec.name}'") for i, rec in enumerate(records)}


def read_bundle(path: str | os.PathLike, max_elements: int = DEFAULT_MAX_ELEMENTS) -> Decoded:
    """Read and decode a bundle file; errors name the file."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise BundleError(f"cannot read bundle {path}: {exc.strerror or exc}") from exc
    try:
        decoded = decode_bundle(data, max_elements=max_elements)
    except BundleError as exc:
        raise BundleError(f"{path}: {exc}") from exc
    log.debug("read %s: %d layers", path, len(decoded))
    return decoded
