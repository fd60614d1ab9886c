"""Deep Compression storage: the compressed model file ("bundle"), encoder and decoder.

This is the storage part of Han, Mao & Dally, "Deep Compression" (ICLR 2016), Sections 3-4. Each
layer arrives pruned (most weights exactly 0) and weight-shared (its nonzero weights take at most
2**b distinct float32 values). Per layer the encoder

1. flattens the weight in C order and keeps the nonzero entries in sparse form with *relative
   indices*: each stored entry carries the gap, i.e. the number of zeros skipped since the previous
   stored entry (the first entry counts from position 0), in `index_bits` bits. A gap larger than
   M = 2**index_bits - 1 is bridged by *filler* entries (the paper's Figure 2): a filler has gap M,
   sits on a zero position and carries the zero code 0. A gap g needs g // (M + 1) fillers. Zeros
   after the last nonzero entry need no entries (the decoder knows the size from the shape).
2. builds the codebook: the sorted distinct nonzero values (float32). Code 0 is reserved for the
   filler zero, code i (1..K) means codebook[i - 1]. The fixed-width code is `code_bits` wide:
   `weight_bits` (b), or b + 1 in the one case K == 2**b where the reserved zero code does not fit.
3. codes the stream of weight codes and, separately, the stream of relative indices, with a
   canonical Huffman code (code lengths from `bitarray.util.canonical_huffman`, decoding with
   `bitarray.util.canonical_decode`); only the code lengths are stored. A stream with one distinct
   symbol is stored "constant" (0 payload bits, the symbol in the table).
4. compares each stream with plain fixed-width packing (code_bits per weight code, index_bits per
   index) and stores whichever takes fewer bytes (stream bytes plus its code table); ties go to
   fixed. Both sizes are reported in `LayerSizes`.

Biases are stored raw (float32). Negative zeros in a weight count as zeros and decode as +0.0;
every other weight decodes bitwise equal (biases are raw, so even their signed zeros survive).

File layout, version 1. All integers little-endian, unsigned; "f32" is an IEEE-754 binary32 in
little-endian byte order; CRC32 is zlib's (ISO-HDLC, as `zlib.crc32`); offsets are absolute from
the start of the file.

    Header (40 bytes)
      0   8  magic           b"FFDCBNDL"
      8   2  u16 version     1
      10  2  u16 flags       0 (no flags defined; nonzero is rejected)
      12  4  u32 n_layers
      16  8  u64 table_len   bytes of the layer table
      24  8  u64 payload_len bytes of the payload region
      32  4  u32 table_crc   CRC32 of the layer table bytes
      36  4  u32 header_crc  CRC32 of header bytes 0..35
    Layer table (table_len bytes, starts at 40): n_layers records back to back, each
      u16 name_len, name (UTF-8, name_len bytes, unique in the file)
      u8  dtype            1 = float32
      u8  ndim, then ndim x u32 shape (C order; ndim 0 is a scalar)
      u8  weight_bits      b, 1..16
      u8  code_bits        width of a fixed-width weight code: b, or b + 1 when K == 2**b
      u8  index_bits       1..16
      u8  reserved         0
      u64 nonzero          number of nonzero weights
      u64 stored_entries   entries in both streams, fillers included
      u64 fillers
      u32 K                codebook size (distinct nonzero values), <= 2**b
      K x f32 codebook     strictly ascending, finite, nonzero; code i (1..K) -> codebook[i-1]
      two stream descriptors, first the weight-code stream then the relative-index stream:
        u8  mode           0 fixed, 1 Huffman, 2 constant
        u32 table_len
        table              mode 0: empty; mode 2: u32 symbol;
                           mode 1: one u8 code length per symbol 0..table_len-1 (0 = unused),
                           lengths 1..31, at least 2 used, Kraft sum exactly 1
        u64 offset, u64 byte_len, u64 bit_len
      u8  has_bias         0 or 1; if 1:
        u8 ndim, ndim x u32 shape, u64 offset, u64 byte_len (= 4 * size, raw f32)
      u64 payload_offset, u64 payload_len, u32 payload_crc (CRC32 of the layer's payload bytes)
    Payload region (payload_len bytes, starts at 40 + table_len): per layer, in table order, the
      weight stream, the index stream and the bias back to back; the layer payloads tile the
      region exactly.
    Trailer (32 bytes): SHA-256 of every byte before it.

Streams are bit strings, most significant bit first within each byte, zero-padded to a whole
byte; `bit_len` is the length before padding and byte_len == ceil(bit_len / 8). Fixed mode: each
symbol is `width` bits (code_bits for weights, index_bits for indices), bit_len == entries * width.
Huffman mode: canonical code, codes assigned in order of (length, symbol), counting up from all
zeros; exactly stored_entries symbols decode from bit_len bits. Constant mode: bit_len == 0.

Decoding a layer: position p = -1; for each entry (gap, code): p += gap + 1; code 0 is a filler
(must have gap M, must not be the last entry), else weight[p] = codebook[code - 1]; everything
else is 0.
"""

from __future__ import annotations

import hashlib
import logging
import os
import struct
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
from bitarray import bitarray
from bitarray.util import canonical_decode, canonical_huffman, int2ba

from flows.atomic import atomic_write_bytes
from flows.errors import BundleError

log = logging.getLogger(__name__)

MAGIC = b"FFDCBNDL"
FORMAT_VERSION = 1
DTYPE_FLOAT32 = 1
MODE_FIXED, MODE_HUFFMAN, MODE_CONSTANT = 0, 1, 2
MODE_NAMES = {MODE_FIXED: "fixed", MODE_HUFFMAN: "huffman", MODE_CONSTANT: "constant"}
MAX_BITS = 16
MAX_CODE_LENGTH = 31  # longest canonical code bitarray can decode
DEFAULT_MAX_ELEMENTS = 2**31

_HEADER = struct.Struct("<8sHHIQQII")
HEADER_SIZE = _HEADER.size  # 40
TRAILER_SIZE = 32
_FIXED_OVERHEAD = HEADER_SIZE + TRAILER_SIZE

Decoded = dict[str, tuple[np.ndarray, np.ndarray | None]]  # name -> (weight, bias)


# ----------------------------------------------------------------------------------------------
# Public data classes


@dataclass
class LayerPayload:
    """One layer to store: pruned, weight-shared float32 weight, optional raw float32 bias."""

    name: str
    weight: np.ndarray
    weight_bits: int
    index_bits: int
    bias: np.ndarray | None = None


@dataclass
class LayerSizes:
    """What one layer costs. Bits are stream bits before byte padding; bytes are what is written."""

    name: str
    total: int
    nonzero: int
    stored_entries: int
    fillers: int
    bits_weights_fixed: int
    bits_index_fixed: int
    bits_weights_huffman: int
    bits_index_huffman: int
    bytes_codebook: int
    bytes_code_tables: int
    bytes_bias: int
    bytes_total: int
    code_bits: int = 0
    weights_mode: str = "fixed"
    index_mode: str = "fixed"
    bytes_weights: int = 0
    bytes_index: int = 0
    bytes_metadata: int = 0

    @property
    def bytes_dense(self) -> int:
        """The layer as dense float32 (weight plus bias): the uncompressed reference."""
        return 4 * self.total + self.bytes_bias

    @property
    def bytes_fixed_streams(self) -> int:
        """Weight and index streams if both were stored fixed-width ("quantized" storage)."""
        return _ceil8(self.bits_weights_fixed) + _ceil8(self.bits_index_fixed)

    @property
    def bytes_total_fixed(self) -> int:
        """What this layer would take with both streams fixed-width and no code tables."""
        return (
            self.bytes_total
            - self.bytes_weights
            - self.bytes_index
            - self.bytes_code_tables
            + (self.bytes_fixed_streams)
        )


@dataclass
class BundleSizes:
    """Sizes of a whole bundle; `bytes_total == len(file)`."""

    layers: list[LayerSizes]
    bytes_header: int
    bytes_total: int

    def _sum(self, attr: str) -> int:
        return sum(getattr(layer, attr) for layer in self.layers)

    @property
    def bytes_weights(self) -> int:
        return self._sum("bytes_weights")

    @property
    def bytes_index(self) -> int:
        return self._sum("bytes_index")

    @property
    def bytes_codebooks(self) -> int:
        return self._sum("bytes_codebook")

    @property
    def bytes_code_tables(self) -> int:
        return self._sum("bytes_code_tables")

    @property
    def bytes_bias(self) -> int:
        return self._sum("bytes_bias")

    @property
    def bytes_metadata(self) -> int:
        return self._sum("bytes_metadata")

    @property
    def bytes_dense(self) -> int:
        return self._sum("bytes_dense")

    @property
    def bytes_total_fixed(self) -> int:
        """The file size had every stream been stored fixed-width ("quantized", no Huffman)."""
        return self.bytes_header + self._sum("bytes_total_fixed")

    def totals(self) -> dict[str, int | float]:
        """Byte totals by kind, for reports. `total` is the file size."""
        return {
            "weights": self.bytes_weights,
            "indices": self.bytes_index,
            "codebooks": self.bytes_codebooks,
            "code_tables": self.bytes_code_tables,
            "bias": self.bytes_bias,
            "layer_metadata": self.bytes_metadata,
            "header": self.bytes_header,
            "total": self.bytes_total,
            "total_fixed": self.bytes_total_fixed,
            "dense_float32": self.bytes_dense,
            "compression_ratio": self.bytes_dense / self.bytes_total if self.bytes_total else 0.0,
        }


# ----------------------------------------------------------------------------------------------
# Sparse form: codebook, relative indices, fillers


def _ceil8(bits: int) -> int:
    return (bits + 7) // 8


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
    """Positions and codes of the real (non-filler) entries; no validation (see `_rebuild_layer`)."""
    positions = np.cumsum(np.asarray(gaps, dtype=np.int64) + 1) - 1
    real = np.asarray(codes) != 0
    return positions[real], np.asarray(codes)[real]


# ----------------------------------------------------------------------------------------------
# Streams: fixed-width packing and canonical Huffman


@dataclass
class _Stream:
    """One encoded stream as written, plus the sizes of both alternatives."""

    mode: int
    table: bytes
    data: bytes
    bit_length: int
    bits_fixed: int
    bits_huffman: int


def _pack_fixed(symbols: np.ndarray, width: int) -> bytes:
    shifts = np.arange(width - 1, -1, -1, dtype=np.int64)
    bits = ((symbols[:, None] >> shifts) & 1).astype(np.uint8)
    return np.packbits(bits.ravel()).tobytes()


def _unpack_fixed(data: bytes, count: int, width: int) -> np.ndarray:
    bits = np.unpackbits(np.frombuffer(data, dtype=np.uint8))
    if count * width < bits.size and bits[count * width :].any():
        raise ValueError("nonzero padding bits after the last symbol")
    weights = np.int64(1) << np.arange(width - 1, -1, -1, dtype=np.int64)
    return bits[: count * width].reshape(count, width).astype(np.int64) @ weights


def _canonical_tables(lengths: dict[int, int]) -> tuple[list[int], list[int]]:
    """`count` (per length, from 0) and symbols in canonical order (by length, then symbol)."""
    order = sorted(lengths, key=lambda s: (lengths[s], s))
    count = [0] * (max(lengths.values()) + 1)
    for length in lengths.values():
        count[length] += 1
    return count, order


def _canonical_code(lengths: dict[int, int]) -> dict[int, bitarray]:
    """Canonical codewords: in (length, symbol) order, counting up, shifting left per length."""
    codes: dict[int, bitarray] = {}
    value, prev_len = 0, 0
    for sym in sorted(lengths, key=lambda s: (lengths[s], s)):
        value <<= lengths[sym] - prev_len
        prev_len = lengths[sym]
        codes[sym] = int2ba(value, length=prev_len, endian="big")
        value += 1
    return codes


def _huffman_encode(symbols: np.ndarray, lengths: dict[int, int]) -> bitarray:
    out = bitarray(endian="big")
    out.encode(_canonical_code(lengths), symbols.tolist())
    return out


def _encode_stream(symbols: np.ndarray, width: int) -> _Stream:
    """Encode one stream both ways and keep the smaller (stream bytes plus table; ties: fixed)."""
    n = int(symbols.size)
    bits_fixed = n * width
    values, counts = np.unique(symbols, return_counts=True)
    fixed_data = _pack_fixed(symbols, width)
    if values.size <= 1:  # empty stream, or one symbol: a zero-bit code
        table = struct.pack("<I", int(values[0])) if n else b""
        if n and len(table) < len(fixed_data):
            return _Stream(MODE_CONSTANT, table, b"", 0, bits_fixed, 0)
        return _Stream(MODE_FIXED, b"", fixed_data, bits_fixed, bits_fixed, 0)
    code, _, _ = canonical_huffman({int(v): int(c) for v, c in zip(values, counts)})
    lengths = {sym: len(bits) for sym, bits in code.items()}
    bits_huffman = sum(lengths[int(v)] * int(c) for v, c in zip(values, counts))
    fixed = _Stream(MODE_FIXED, b"", fixed_data, bits_fixed, bits_fixed, bits_huffman)
    if max(lengths.values()) > MAX_CODE_LENGTH:
        log.warning("Huffman code longer than %d bits; stream stored fixed-width", MAX_CODE_LENGTH)
        return fixed
    table = bytes(lengths.get(s, 0) for s in range(int(values[-1]) + 1))
    if _ceil8(bits_huffman) + len(table) >= len(fixed_data):
        return fixed
    coded = _huffman_encode(symbols, lengths)
    return _Stream(MODE_HUFFMAN, table, coded.tobytes(), len(coded), bits_fixed, bits_huffman)


def _stream_error(where: str, problem: str) -> BundleError:
    return BundleError(f"{where}: {problem}")


def _huffman_from_table(table: bytes, alphabet: int, where: str) -> tuple[list[int], list[int]]:
    lengths = {sym: ln for sym, ln in enumerate(table) if ln}
    if len(table) > alphabet:
        raise _stream_error(where, f"Huffman table has {len(table)} symbols, alphabet has only {alphabet}")
    if len(lengths) < 2:
        raise _stream_error(where, f"Huffman table has {len(lengths)} used symbols, expected at least 2")
    longest = max(lengths.values())
    if longest > MAX_CODE_LENGTH:
        raise _stream_error(where, f"Huffman code length {longest} exceeds the limit {MAX_CODE_LENGTH}")
    kraft = sum(1 << (longest - ln) for ln in lengths.values())
    if kraft != 1 << longest:
        raise _stream_error(where, "Huffman code lengths do not form a complete prefix code (Kraft sum != 1)")
    return _canonical_tables(lengths)


def _decode_stream(desc: _StreamDesc, data: bytes, count: int, width: int, alphabet: int, where: str) -> np.ndarray:
    """Decode `count` symbols of one stream; every symbol is checked to be < alphabet."""
    if desc.mode == MODE_FIXED:
        try:
            out = _unpack_fixed(data, count, width)
        except ValueError as exc:
            raise _stream_error(where, str(exc)) from exc
    elif desc.mode == MODE_CONSTANT:
        (symbol,) = struct.unpack("<I", desc.table)
        out = np.full(count, symbol, dtype=np.int64)
    else:
        count_tab, symbols = _huffman_from_table(desc.table, alphabet, where)
        bits = bitarray(endian="big")
        bits.frombytes(data)
        if bits[desc.bit_length :].any():
            raise _stream_error(where, "nonzero padding bits after the last Huffman code")
        try:
            decoded = list(canonical_decode(bits[: desc.bit_length], count_tab, symbols))
        except ValueError as exc:
            raise _stream_error(where, f"Huffman data is corrupt ({exc})") from exc
        if len(decoded) != count:
            raise _stream_error(where, f"Huffman data holds {len(decoded)} symbols, expected {count}")
        out = np.asarray(decoded, dtype=np.int64)
    if out.size and int(out.max()) >= alphabet:
        raise _stream_error(where, f"symbol {int(out.max())} out of range (alphabet size {alphabet})")
    return out


# ----------------------------------------------------------------------------------------------
# Encoding


def _check_int(value: object, lo: int, hi: int, what: str, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not lo <= int(value) <= hi:
        raise BundleError(f"layer '{name}': {what} must be an integer in {lo}..{hi}, got {value!r}")
    return int(value)


def _check_array(arr: object, what: str, name: str) -> np.ndarray:
    if not isinstance(arr, np.ndarray) or arr.dtype.kind != "f" or arr.dtype.itemsize != 4:
        got = getattr(arr, "dtype", type(arr).__name__)
        raise BundleError(
            f"layer '{name}': {what} must be a float32 numpy array, got {got}; convert with np.asarray(x, np.float32)"
        )
    if arr.ndim > 255 or any(d > 0xFFFFFFFF for d in arr.shape):
        raise BundleError(f"layer '{name}': {what} shape {arr.shape} does not fit the format (ndim<=255, dims<2**32)")
    if not np.isfinite(arr).all():
        bad = int((~np.isfinite(arr)).sum())
        raise BundleError(f"layer '{name}': {what} has {bad} NaN/inf values; fix the model before encoding")
    return arr.astype("<f4", copy=False)


def _validate(layer: LayerPayload, seen: set[str]) -> tuple[np.ndarray, np.ndarray | None, int, int]:
    name = layer.name
    if not isinstance(name, str) or not name or len(name.encode("utf-8")) > 0xFFFF:
        raise BundleError(f"layer name must be a non-empty string of at most 65535 UTF-8 bytes, got {name!r}")
    if name in seen:
        raise BundleError(f"layer '{name}': duplicate layer name; every layer needs a unique name")
    seen.add(name)
    b = _check_int(layer.weight_bits, 1, MAX_BITS, "weight_bits", name)
    ib = _check_int(layer.index_bits, 1, MAX_BITS, "index_bits", name)
    weight = _check_array(layer.weight, "weight", name)
    bias = None if layer.bias is None else _check_array(layer.bias, "bias", name)
    return weight, bias, b, ib


def _shape_bytes(shape: tuple[int, ...]) -> bytes:
    return struct.pack(f"<B{len(shape)}I", len(shape), *shape)


@dataclass
class _EncodedLayer:
    """A layer's streams and record fields; the record is built once its payload offset is known."""

    name: str
    shape: tuple[int, ...]
    weight_bits: int
    code_bits: int
    index_bits: int
    codebook: np.ndarray
    nonzero: int
    entries: int
    fillers: int
    streams: tuple[_Stream, _Stream]
    bias: np.ndarray | None

    @cached_property
    def payload(self) -> bytes:
        bias = b"" if self.bias is None else self.bias.tobytes()
        return self.streams[0].data + self.streams[1].data + bias

    def record(self, offset: int) -> bytes:
        """The layer table record for a payload starting at absolute file offset `offset`."""
        name = self.name.encode("utf-8")
        parts = [
            struct.pack("<H", len(name)),
            name,
            struct.pack("<B", DTYPE_FLOAT32),
            _shape_bytes(self.shape),
            struct.pack(
                "<BBBBQQQI",
                self.weight_bits,
                self.code_bits,
                self.index_bits,
                0,
                self.nonzero,
                self.entries,
                self.fillers,
                self.codebook.size,
            ),
            self.codebook.astype("<f4").tobytes(),
        ]
        pos = offset
        for stream in self.streams:
            parts += [
                struct.pack("<BI", stream.mode, len(stream.table)),
                stream.table,
                struct.pack("<QQQ", pos, len(stream.data), stream.bit_length),
            ]
            pos += len(stream.data)
        if self.bias is None:
            parts.append(b"\x00")
        else:
            parts += [b"\x01", _shape_bytes(self.bias.shape), struct.pack("<QQ", pos, self.bias.nbytes)]
        payload = self.payload
        parts.append(struct.pack("<QQI", offset, len(payload), zlib.crc32(payload)))
        return b"".join(parts)

    def sizes(self, record_len: int) -> LayerSizes:
        w, i = self.streams
        k = int(self.codebook.size)
        tables = len(w.table) + len(i.table)
        bias = 0 if self.bias is None else self.bias.nbytes
        return LayerSizes(
            name=self.name,
            total=int(np.prod(self.shape, dtype=np.int64)),
            nonzero=self.nonzero,
            stored_entries=self.entries,
            fillers=self.fillers,
            bits_weights_fixed=w.bits_fixed,
            bits_index_fixed=i.bits_fixed,
            bits_weights_huffman=w.bits_huffman,
            bits_index_huffman=i.bits_huffman,
            bytes_codebook=4 * k,
            bytes_code_tables=tables,
            bytes_bias=bias,
            bytes_total=record_len + len(w.data) + len(i.data) + bias,
            code_bits=self.code_bits,
            weights_mode=MODE_NAMES[w.mode],
            index_mode=MODE_NAMES[i.mode],
            bytes_weights=len(w.data),
            bytes_index=len(i.data),
            bytes_metadata=record_len - 4 * k - tables,
        )


def _encode_layer(layer: LayerPayload, seen: set[str]) -> _EncodedLayer:
    """Validate one layer and encode its two streams."""
    weight, bias, b, ib = _validate(layer, seen)
    name = layer.name
    codebook, codes = build_codebook(weight)
    k = int(codebook.size)
    if k > 1 << b:
        raise BundleError(
            f"layer '{name}': weight has {k} distinct nonzero values but weight_bits={b} allows at most {1 << b}; "
            f"run weight sharing with at most {1 << b} clusters or raise weight_bits"
        )
    code_bits = max(b, k.bit_length())
    if code_bits > b:
        log.warning(
            "layer '%s': %d distinct values plus the reserved zero code need %d bits, not %d; "
            "use at most %d clusters to keep %d bits",
            name,
            k,
            code_bits,
            b,
            (1 << b) - 1,
            b,
        )
    gaps, entry_codes = to_relative(codes, ib)
    fillers = int((entry_codes == 0).sum())
    streams = (_encode_stream(entry_codes, code_bits), _encode_stream(gaps, ib))
    return _EncodedLayer(
        name,
        tuple(weight.shape),
        b,
        code_bits,
        ib,
        codebook,
        int(gaps.size) - fillers,
        int(gaps.size),
        fillers,
        streams,
        bias,
    )


def encode_bundle(layers: Sequence[LayerPayload]) -> tuple[bytes, BundleSizes]:
    """Encode layers into one bundle; returns the bytes and their size breakdown."""
    seen: set[str] = set()
    encoded = [_encode_layer(layer, seen) for layer in layers]
    table_len = sum(len(enc.record(0)) for enc in encoded)  # record length does not depend on offsets
    offset = HEADER_SIZE + table_len
    records, payloads = [], []
    for enc in encoded:
        records.append(enc.record(offset))
        payloads.append(enc.payload)
        offset += len(payloads[-1])
    table, payload = b"".join(records), b"".join(payloads)
    head = struct.pack("<8sHHIQQI", MAGIC, FORMAT_VERSION, 0, len(encoded), len(table), len(payload), zlib.crc32(table))
    body = head + struct.pack("<I", zlib.crc32(head)) + table + payload
    data = body + hashlib.sha256(body).digest()
    sizes = BundleSizes([enc.sizes(len(rec)) for enc, rec in zip(encoded, records)], _FIXED_OVERHEAD, len(data))
    for s in sizes.layers:
        log.debug("layer %s", s)
    log.info(
        "bundle: %d layers, %d bytes (fixed-width streams: %d, dense float32: %d)",
        len(encoded),
        len(data),
        sizes.bytes_total_fixed,
        sizes.bytes_dense,
    )
    return data, sizes


# ----------------------------------------------------------------------------------------------
# Decoding


class _Reader:
    """Bounds-checked little-endian reader over the layer table."""

    def __init__(self, data: bytes, start: int, end: int) -> None:
        self.data, self.pos, self.end = data, start, end
        self.where = "layer table"

    def take(self, fmt: str, field: str) -> tuple:
        size = struct.calcsize("<" + fmt)
        raw = self.raw(size, field)
        return struct.unpack("<" + fmt, raw)

    def raw(self, size: int, field: str) -> bytes:
        if self.pos + size > self.end:
            raise BundleError(
                f"{self.where}: truncated while reading {field} "
                f"(needs {size} bytes at offset {self.pos}, table ends at {self.end})"
            )
        out = self.data[self.pos : self.pos + size]
        self.pos += size
        return out


@dataclass
class _StreamDesc:
    mode: int
    table: bytes
    offset: int
    byte_length: int
    bit_length: int


@dataclass
class _LayerRecord:
    name: str
    shape: tuple[int, ...]
    weight_bits: int
    code_bits: int
    index_bits: int
    nonzero: int
    stored: int
    fillers: int
    codebook: np.ndarray
    weights: _StreamDesc
    index: _StreamDesc
    bias_shape: tuple[int, ...] | None
    bias_offset: int
    bias_length: int
    payload_offset: int
    payload_length: int
    payload_crc: int


def _read_shape(reader: _Reader, what: str) -> tuple[int, ...]:
    (ndim,) = reader.take("B", f"{what} ndim")
    return reader.take(f"{ndim}I", f"{what} shape")


def _read_stream_desc(reader: _Reader, what: str) -> _StreamDesc:
    mode, table_len = reader.take("BI", f"{what} mode")
    if mode not in MODE_NAMES:
        raise BundleError(f"{reader.where}: {what} has unknown mode {mode} (expected 0, 1 or 2)")
    table = reader.raw(table_len, f"{what} code table")
    offset, byte_length, bit_length = reader.take("QQQ", f"{what} offsets")
    return _StreamDesc(mode, table, offset, byte_length, bit_length)


def _read_record(reader: _Reader, index: int) -> _LayerRecord:
    reader.where = f"layer table, layer #{index}"
    (name_len,) = reader.take("H", "name length")
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
    return _LayerRecord(
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


def _expect(cond: bool, where: str, what: str, expected: object, found: object) -> None:
    if not cond:
        raise BundleError(f"{where}: inconsistent {what}: expected {expected}, found {found}")


def _stream_bits(desc: _StreamDesc, count: int, width: int, where: str) -> None:
    """Check a descriptor's table, bit and byte lengths against `count` symbols of `width` bits."""
    if desc.mode == MODE_FIXED:
        _expect(desc.bit_length == count * width, where, "bit length", count * width, desc.bit_length)
        _expect(desc.table == b"", where, "code table length", 0, len(desc.table))
    elif desc.mode == MODE_CONSTANT:
        _expect(desc.bit_length == 0, where, "bit length of a constant stream", 0, desc.bit_length)
        _expect(len(desc.table) == 4, where, "constant table length", 4, len(desc.table))
        _expect(count > 0, where, "entry count of a constant stream", ">= 1", count)
    else:
        lo, hi = count, count * MAX_CODE_LENGTH
        _expect(lo <= desc.bit_length <= hi, where, "Huffman bit length", f"{lo}..{hi}", desc.bit_length)
    _expect(
        desc.byte_length == _ceil8(desc.bit_length), where, "byte length", _ceil8(desc.bit_length), desc.byte_length
    )


def _check_record(rec: _LayerRecord, where: str, payload_offset: int, max_elements: int) -> None:
    """Cross-check one record: counts, codebook, bit widths, and that its streams tile its payload."""
    total = int(np.prod(rec.shape, dtype=object)) if rec.shape else 1
    _expect(
        total <= max_elements,
        where,
        "element count (raise max_elements if the file is trusted)",
        f"<= {max_elements}",
        total,
    )
    _expect(1 <= rec.weight_bits <= MAX_BITS, where, "weight_bits", f"1..{MAX_BITS}", rec.weight_bits)
    _expect(1 <= rec.index_bits <= MAX_BITS, where, "index_bits", f"1..{MAX_BITS}", rec.index_bits)
    k = rec.codebook.size
    _expect(k <= 1 << rec.weight_bits, where, "codebook size", f"<= {1 << rec.weight_bits}", k)
    expected_code_bits = max(rec.weight_bits, k.bit_length())
    _expect(rec.code_bits == expected_code_bits, where, "code_bits", expected_code_bits, rec.code_bits)
    cb = rec.codebook
    good = bool(np.isfinite(cb).all() and (cb != 0).all() and (np.diff(cb) > 0).all())
    _expect(good, where, "codebook", "strictly ascending finite nonzero values", cb.tolist()[:8])
    _expect(rec.stored <= total, where, "stored entries", f"<= {total} (layer size)", rec.stored)
    _expect(
        rec.nonzero + rec.fillers == rec.stored,
        where,
        "entry counts",
        f"nonzero + fillers = {rec.stored}",
        f"{rec.nonzero} + {rec.fillers}",
    )
    _stream_bits(rec.weights, rec.stored, rec.code_bits, f"{where}, weight stream")
    _stream_bits(rec.index, rec.stored, rec.index_bits, f"{where}, index stream")
    pos = payload_offset
    _expect(rec.payload_offset == pos, where, "payload offset", pos, rec.payload_offset)
    for label, offset, length in (
        ("weight stream", rec.weights.offset, rec.weights.byte_length),
        ("index stream", rec.index.offset, rec.index.byte_length),
        ("bias", rec.bias_offset, rec.bias_length),
    ):
        _expect(offset == pos or (label == "bias" and rec.bias_shape is None), where, f"{label} offset", pos, offset)
        pos += length
    if rec.bias_shape is not None:
        bias_bytes = 4 * (int(np.prod(rec.bias_shape, dtype=object)) if rec.bias_shape else 1)
        _expect(rec.bias_length == bias_bytes, where, "bias byte length", bias_bytes, rec.bias_length)
    _expect(
        rec.payload_length == pos - payload_offset, where, "payload length", pos - payload_offset, rec.payload_length
    )


def _rebuild_layer(rec: _LayerRecord, data: bytes, where: str) -> tuple[np.ndarray, np.ndarray | None]:
    """Decode both streams of a checked record and rebuild the dense weight (and the bias)."""
    total = int(np.prod(rec.shape, dtype=object)) if rec.shape else 1
    k = rec.codebook.size

    def chunk(offset: int, length: int) -> bytes:
        return data[offset : offset + length]

    codes = _decode_stream(
        rec.weights,
        chunk(rec.weights.offset, rec.weights.byte_length),
        rec.stored,
        rec.code_bits,
        k + 1,
        f"{where}, weight stream",
    )
    gaps = _decode_stream(
        rec.index,
        chunk(rec.index.offset, rec.index.byte_length),
        rec.stored,
        rec.index_bits,
        1 << rec.index_bits,
        f"{where}, index stream",
    )
    is_filler = codes == 0
    n_fill = int(is_filler.sum())
    _expect(n_fill == rec.fillers, where, "filler count", rec.fillers, n_fill)
    max_gap = (1 << rec.index_bits) - 1
    bad = int((gaps[is_filler] != max_gap).sum())
    _expect(bad == 0, where, "filler gaps", f"all {max_gap}", f"{bad} fillers with a smaller gap")
    _expect(rec.stored == 0 or not is_filler[-1], where, "last entry", "a nonzero weight", "a filler")
    positions, real_codes = from_relative(gaps, codes)
    end = int(np.sum(gaps, dtype=np.int64)) + rec.stored
    _expect(end <= total, where, "extent of the entries", f"<= {total} positions", end)
    flat = np.zeros(total, dtype=np.float32)
    flat[positions] = rec.codebook[real_codes - 1]
    weight = flat.reshape(rec.shape)
    bias = None
    if rec.bias_shape is not None:
        raw = chunk(rec.bias_offset, rec.bias_length)
        bias = np.frombuffer(raw, dtype="<f4").astype(np.float32).reshape(rec.bias_shape)
    return weight, bias


def _check_header(data: bytes) -> tuple[int, int, int, int]:
    """Magic, version, header checksum, total length; returns (n_layers, table_len, payload_len, table_crc)."""
    if len(data) < HEADER_SIZE:
        raise BundleError(f"truncated bundle: {len(data)} bytes, shorter than the {HEADER_SIZE}-byte header")
    magic, version, flags, n_layers, table_len, payload_len, table_crc, header_crc = _HEADER.unpack_from(data)
    if magic != MAGIC:
        raise BundleError(f"not a fireflow bundle: wrong magic bytes {magic!r}, expected {MAGIC!r}")
    if version != FORMAT_VERSION:
        raise BundleError(f"unsupported bundle format version {version}; this reader supports version {FORMAT_VERSION}")
    found = zlib.crc32(data[: HEADER_SIZE - 4])
    if found != header_crc:
        raise BundleError(f"header checksum mismatch: stored {header_crc:#010x}, computed {found:#010x}")
    if flags:
        raise BundleError(f"header: unknown flags {flags:#06x}; this reader knows none")
    expected = HEADER_SIZE + table_len + payload_len + TRAILER_SIZE
    if len(data) < expected:
        raise BundleError(f"truncated bundle: header declares {expected} bytes, found {len(data)}")
    if len(data) > expected:
        raise BundleError(f"trailing bytes after the bundle: header declares {expected} bytes, found {len(data)}")
    return n_layers, table_len, payload_len, table_crc


def decode_bundle(data: bytes, max_elements: int = DEFAULT_MAX_ELEMENTS) -> Decoded:
    """Decode a bundle into {name: (weight, bias)}, in file order; raises `BundleError` if it is damaged.

    `max_elements` bounds the size of any one weight, so a damaged shape cannot allocate unbounded memory.
    """
    data = bytes(data)
    n_layers, table_len, payload_len, table_crc = _check_header(data)
    table_end = HEADER_SIZE + table_len
    found = zlib.crc32(data[HEADER_SIZE:table_end])
    if found != table_crc:
        raise BundleError(f"layer table checksum mismatch: stored {table_crc:#010x}, computed {found:#010x}")
    reader = _Reader(data, HEADER_SIZE, table_end)
    records = [_read_record(reader, i) for i in range(n_layers)]
    _expect(reader.pos == table_end, "layer table", "table length", reader.pos - HEADER_SIZE, table_len)
    pos = table_end
    for i, rec in enumerate(records):
        where = f"layer #{i} '{rec.name}'"
        _check_record(rec, where, pos, max_elements)
        pos += rec.payload_length
    _expect(pos == table_end + payload_len, "payload region", "payload length", payload_len, pos - table_end)
    names = [rec.name for rec in records]
    if len(set(names)) != len(names):
        raise BundleError(f"layer table: duplicate layer names in {names}")
    for i, rec in enumerate(records):
        crc = zlib.crc32(data[rec.payload_offset : rec.payload_offset + rec.payload_length])
        if crc != rec.payload_crc:
            raise BundleError(
                f"layer #{i} '{rec.name}': payload checksum mismatch: stored {rec.payload_crc:#010x}, "
                f"computed {crc:#010x}"
            )
    digest = hashlib.sha256(data[:-TRAILER_SIZE]).digest()
    if digest != data[-TRAILER_SIZE:]:
        raise BundleError("file checksum mismatch: the SHA-256 trailer does not match the file contents")
    return {rec.name: _rebuild_layer(rec, data, f"layer #{i} '{rec.name}'") for i, rec in enumerate(records)}


# ----------------------------------------------------------------------------------------------
# Files


def write_bundle(path: str | os.PathLike, layers: Sequence[LayerPayload]) -> BundleSizes:
    """Encode and write atomically (flows/atomic.py): a failed encode leaves any old file untouched."""
    data, sizes = encode_bundle(layers)
    atomic_write_bytes(path, data)
    log.info("wrote %s (%d bytes)", path, len(data))
    return sizes


def read_bundle(path: str | os.PathLike, max_elements: int = DEFAULT_MAX_ELEMENTS) -> Decoded:
    """Read and decode a bundle file; errors name the file."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise BundleError(f"cannot read bundle {path}: {exc.strerror or exc}") from exc
    try:
        return decode_bundle(data, max_elements=max_elements)
    except BundleError as exc:
        raise BundleError(f"{path}: {exc}") from exc
