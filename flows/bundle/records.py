"""Reading and cross-checking the layer table of a bundle, before any payload is decoded.

`read_records` parses the records with bounds checks; `check_records` cross-checks every record
(bit widths, codebook, entry counts, stream lengths against the bits present, the payloads tiling
the payload region) and the whole table against an element budget. Together they guarantee that
the decoder allocates only what the file holds or what the caller allowed: a count of entries is
bounded by the bits of its stream (a constant stream's, which spends no bits, by the layer size),
and since zeros after the last entry cost nothing, the decoded size (weights and biases, all
layers) by `max_elements`. Every problem is a `BundleError` that
names the layer. The layout is in `flows.bundle.format`.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from flows.bundle.format import (
    DTYPE_FLOAT32,
    HEADER_SIZE,
    MAX_BITS,
    MAX_NDIM,
    MODE_CONSTANT,
    MODE_FIXED,
    MODE_NAMES,
    Header,
    ceil8,
)
from flows.bundle.streams import MAX_CODE_LENGTH, StreamDesc
from flows.errors import BundleError


class TableReader:
    """Bounds-checked little-endian reader over the layer table; errors say where it was reading."""

    def __init__(self, data: bytes, start: int, end: int) -> None:
        self.data, self.pos, self.end = data, start, end
        self.where = "layer table"

    def take(self, fmt: str, field: str) -> tuple:
        """Unpack `fmt` (struct format, little-endian) at the current position."""
        size = struct.calcsize("<" + fmt)
        return struct.unpack("<" + fmt, self.raw(size, field))

    def raw(self, size: int, field: str) -> bytes:
        """The next `size` bytes."""
        if self.pos + size > self.end:
            raise BundleError(
                f"{self.where}: truncated while reading {field} "
                f"(needs {size} bytes at offset {self.pos}, table ends at {self.end})"
            )
        out = self.data[self.pos : self.pos + size]
        self.pos += size
        return out


@dataclass
class LayerRecord:
    """One layer record as read from the table (not yet checked)."""

    name: str
    shape: tuple[int, ...]
    weight_bits: int
    code_bits: int
    index_bits: int
    nonzero: int
    stored: int
    fillers: int
    codebook: np.ndarray
    weights: StreamDesc
    index: StreamDesc
    bias_shape: tuple[int, ...] | None
    bias_offset: int
    bias_length: int
    payload_offset: int
    payload_length: int
    payload_crc: int

    @property
    def total(self) -> int:
        """Elements of the weight."""
        return math.prod(self.shape)


def _read_shape(reader: TableReader, what: str) -> tuple[int, ...]:
    (ndim,) = reader.take("B", f"{what} ndim")
    if ndim > MAX_NDIM:
        raise BundleError(f"{reader.where}: {what} shape has {ndim} dimensions, numpy allows at most {MAX_NDIM}")
    return reader.take(f"{ndim}I", f"{what} shape")


def _read_stream_desc(reader: TableReader, what: str) -> StreamDesc:
    mode, table_len = reader.take("BI", f"{what} mode")
    if mode not in MODE_NAMES:
        raise BundleError(f"{reader.where}: {what} has unknown mode {mode} (expected 0, 1 or 2)")
    table = reader.raw(table_len, f"{what} code table")
    offset, byte_length, bit_length = reader.take("QQQ", f"{what} offsets")
    return StreamDesc(mode, table, offset, byte_length, bit_length)


def _read_record(reader: TableReader, index: int) -> LayerRecord:
    reader.where = f"layer table, layer #{index}"
    (name_len,) = reader.take("H", "name length")
    if name_len == 0:
        raise BundleError(f"{reader.where}: empty layer name (the encoder never writes one)")
    try:
        name = reader.raw(name_len, "name").decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BundleError(f"{reader.where}: layer name is not valid UTF-8") from exc
    reader.where = f"layer table, layer #{index} '{name}'"
    (dtype,) = reader.take("B", "dtype")
    if dtype != DTYPE_FLOAT32:
        raise BundleError(f"{reader.where}: unsupported dtype code {dtype} (expected {DTYPE_FLOAT32} = float32)")
    shape = _read_shape(reader, "weight")
    b, code_bits, ib, reserved, nonzero, stored, fillers, k = reader.take("BBBBQQQI", "layer counts")
    if reserved:
        raise BundleError(f"{reader.where}: reserved byte is {reserved}, expected 0")
    codebook = np.frombuffer(reader.raw(4 * k, "codebook"), dtype="<f4").astype(np.float32)
    weights = _read_stream_desc(reader, "weight stream")
    index_desc = _read_stream_desc(reader, "index stream")
    (has_bias,) = reader.take("B", "has_bias")
    bias_shape, bias_offset, bias_length = None, 0, 0
    if has_bias not in (0, 1):
        raise BundleError(f"{reader.where}: has_bias is {has_bias}, expected 0 or 1")
    if has_bias:
        bias_shape = _read_shape(reader, "bias")
        bias_offset, bias_length = reader.take("QQ", "bias offsets")
    payload_offset, payload_length, crc = reader.take("QQI", "payload offsets")
    return LayerRecord(
        name,
        shape,
        b,
        code_bits,
        ib,
        nonzero,
        stored,
        fillers,
        codebook,
        weights,
        index_desc,
        bias_shape,
        bias_offset,
        bias_length,
        payload_offset,
        payload_length,
        crc,
    )


def read_records(data: bytes, header: Header) -> list[LayerRecord]:
    """Parse the layer table that `check_header` has validated; it must hold exactly `n_layers` records."""
    reader = TableReader(data, HEADER_SIZE, header.table_end)
    records = [_read_record(reader, i) for i in range(header.n_layers)]
    expect(reader.pos == header.table_end, "layer table", "table length", reader.pos - HEADER_SIZE, header.table_len)
    names = [rec.name for rec in records]
    if len(set(names)) != len(names):
        raise BundleError(f"layer table: duplicate layer names in {names}")
    return records


def expect(cond: bool, where: str, what: str, expected: object, found: object) -> None:
    """Raise `BundleError` "<where>: inconsistent <what>: expected ..., found ..." unless `cond`."""
    if not cond:
        raise BundleError(f"{where}: inconsistent {what}: expected {expected}, found {found}")


def _check_stream(desc: StreamDesc, count: int, width: int, where: str) -> None:
    """A descriptor's table, bit and byte lengths against `count` symbols of `width` bits.

    Fixed and Huffman streams spend at least one bit per symbol, so `count` is bounded by the file;
    a constant stream spends none (its count is bounded by the layer size, checked by the caller).
    """
    if desc.mode == MODE_FIXED:
        expect(desc.bit_length == count * width, where, "bit length", count * width, desc.bit_length)
        expect(desc.table == b"", where, "code table length", 0, len(desc.table))
    elif desc.mode == MODE_CONSTANT:
        expect(desc.bit_length == 0, where, "bit length of a constant stream", 0, desc.bit_length)
        expect(len(desc.table) == 4, where, "constant table length", 4, len(desc.table))
        expect(count > 0, where, "entry count of a constant stream", ">= 1", count)
    else:
        lo, hi = count, count * MAX_CODE_LENGTH
        expect(lo <= desc.bit_length <= hi, where, "Huffman bit length", f"{lo}..{hi}", desc.bit_length)
    expect(desc.byte_length == ceil8(desc.bit_length), where, "byte length", ceil8(desc.bit_length), desc.byte_length)


def check_record(rec: LayerRecord, where: str, payload_offset: int) -> None:
    """Cross-check one record: bit widths, codebook, counts, and that its streams tile its payload."""
    total = rec.total
    expect(1 <= rec.weight_bits <= MAX_BITS, where, "weight_bits", f"1..{MAX_BITS}", rec.weight_bits)
    expect(1 <= rec.index_bits <= MAX_BITS, where, "index_bits", f"1..{MAX_BITS}", rec.index_bits)
    k = rec.codebook.size
    expect(k <= 1 << rec.weight_bits, where, "codebook size", f"<= {1 << rec.weight_bits}", k)
    expected_code_bits = max(rec.weight_bits, k.bit_length())
    expect(rec.code_bits == expected_code_bits, where, "code_bits", expected_code_bits, rec.code_bits)
    cb = rec.codebook
    good = bool(np.isfinite(cb).all() and (cb != 0).all() and (np.diff(cb) > 0).all())
    expect(good, where, "codebook", "strictly ascending finite nonzero values", cb.tolist()[:8])
    expect(rec.stored <= total, where, "stored entries", f"<= {total} (layer size)", rec.stored)
    expect(
        rec.nonzero + rec.fillers == rec.stored,
        where,
        "entry counts",
        f"nonzero + fillers = {rec.stored}",
        f"{rec.nonzero} + {rec.fillers}",
    )
    _check_stream(rec.weights, rec.stored, rec.code_bits, f"{where}, weight stream")
    _check_stream(rec.index, rec.stored, rec.index_bits, f"{where}, index stream")
    pos = payload_offset
    expect(rec.payload_offset == pos, where, "payload offset", pos, rec.payload_offset)
    for label, offset, length in (
        ("weight stream", rec.weights.offset, rec.weights.byte_length),
        ("index stream", rec.index.offset, rec.index.byte_length),
        ("bias", rec.bias_offset, rec.bias_length),
    ):
        expect(offset == pos or (label == "bias" and rec.bias_shape is None), where, f"{label} offset", pos, offset)
        pos += length
    if rec.bias_shape is not None:
        bias_bytes = 4 * math.prod(rec.bias_shape)
        expect(rec.bias_length == bias_bytes, where, "bias byte length", bias_bytes, rec.bias_length)
    expect(
        rec.payload_length == pos - payload_offset, where, "payload length", pos - payload_offset, rec.payload_length
    )


def shape_extent(shape: Sequence[int]) -> int:
    """Elements of `shape` with zero dimensions counted as 1: at least its size, and what numpy must index."""
    return math.prod(max(d, 1) for d in shape)


def check_records(records: Sequence[LayerRecord], header: Header, max_elements: int) -> None:
    """Check every record, the payload region they tile, and the decoded size against `max_elements`."""
    pos, elements = header.table_end, 0
    for i, rec in enumerate(records):
        where = f"layer #{i} '{rec.name}'"
        shapes = {"weight": rec.shape} if rec.bias_shape is None else {"weight": rec.shape, "bias": rec.bias_shape}
        for what, shape in shapes.items():
            elements += shape_extent(shape)
            if elements > max_elements:
                raise BundleError(
                    f"{where}: {what} shape {shape} brings the bundle to {elements} elements, more than "
                    f"max_elements={max_elements}; pass a larger max_elements if the file is trusted"
                )
        check_record(rec, where, pos)
        pos += rec.payload_length
    used = pos - header.table_end
    expect(used == header.payload_len, "payload region", "payload length", header.payload_len, used)
