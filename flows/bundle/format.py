"""The bundle file format, version 1: constants, the header and trailer, and the checksums around them.

All integers little-endian, unsigned; "f32" is an IEEE-754 binary32 in little-endian byte order;
CRC32 is zlib's (ISO-HDLC, as `zlib.crc32`); offsets are absolute from the start of the file.

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
      u16 name_len, name (UTF-8, name_len >= 1 bytes, unique in the file)
      u8  dtype            1 = float32
      u8  ndim, then ndim x u32 shape (C order; ndim 0 is a scalar; ndim <= 64, numpy's limit)
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
        u8 ndim, ndim x u32 shape, u64 offset, u64 byte_len (= 4 * size, raw f32, all finite)
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
(must have gap M = 2**index_bits - 1, must not be the last entry), else weight[p] = codebook[code - 1];
everything else is 0.

Zeros after the last entry cost nothing, so a file's size does not bound the size of the arrays it
decodes to: the reader takes a budget (`DEFAULT_MAX_ELEMENTS` elements over the whole bundle) and
refuses a bundle over it before allocating anything.
"""

from __future__ import annotations

import hashlib
import struct
import zlib
from dataclasses import dataclass

from flows.errors import BundleError

MAGIC = b"FFDCBNDL"
FORMAT_VERSION = 1
DTYPE_FLOAT32 = 1
MODE_FIXED, MODE_HUFFMAN, MODE_CONSTANT = 0, 1, 2
MODE_NAMES = {MODE_FIXED: "fixed", MODE_HUFFMAN: "huffman", MODE_CONSTANT: "constant"}
MAX_BITS = 16  # weight_bits and index_bits
MAX_NDIM = 64  # numpy's limit on the number of dimensions
# Decoded elements (weights and biases, all layers) a reader accepts by default: 2**27 float32 is
# 512 MiB, far more weight than any FPGA holds on chip.
DEFAULT_MAX_ELEMENTS = 2**27

HEADER_STRUCT = struct.Struct("<8sHHIQQII")
HEADER_SIZE = HEADER_STRUCT.size  # 40
TRAILER_SIZE = 32
FIXED_OVERHEAD = HEADER_SIZE + TRAILER_SIZE
# The shortest layer record: a 1-byte name, a scalar weight, no codebook, empty stream tables, no bias.
MIN_RECORD_SIZE = 2 + 1 + 1 + 1 + 4 + 24 + 4 + 2 * (1 + 4 + 24) + 1 + 20


def ceil8(bits: int) -> int:
    """Bytes needed for `bits` bits."""
    return (bits + 7) // 8


@dataclass(frozen=True)
class Header:
    """The header fields a reader uses, after `check_header` has validated them."""

    n_layers: int
    table_len: int
    payload_len: int
    table_crc: int

    @property
    def table_end(self) -> int:
        """Absolute offset of the first payload byte."""
        return HEADER_SIZE + self.table_len


def seal(n_layers: int, table: bytes, payload: bytes) -> bytes:
    """The whole file: header (with both CRCs), layer table, payload, SHA-256 trailer."""
    head = HEADER_STRUCT.pack(MAGIC, FORMAT_VERSION, 0, n_layers, len(table), len(payload), zlib.crc32(table), 0)
    head = head[:-4] + struct.pack("<I", zlib.crc32(head[:-4]))
    body = head + table + payload
    return body + hashlib.sha256(body).digest()


def check_header(data: bytes) -> Header:
    """Magic, version, header checksum, flags, total length and the layer table's checksum."""
    if len(data) < HEADER_SIZE:
        raise BundleError(f"truncated bundle: {len(data)} bytes, shorter than the {HEADER_SIZE}-byte header")
    magic, version, flags, n_layers, table_len, payload_len, table_crc, header_crc = HEADER_STRUCT.unpack_from(data)
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
    header = Header(n_layers, table_len, payload_len, table_crc)
    found = zlib.crc32(data[HEADER_SIZE : header.table_end])
    if found != table_crc:
        raise BundleError(f"layer table checksum mismatch: stored {table_crc:#010x}, computed {found:#010x}")
    if n_layers * MIN_RECORD_SIZE > table_len:
        raise BundleError(
            f"layer table: header declares {n_layers} layers, but a {table_len}-byte table holds at most "
            f"{table_len // MIN_RECORD_SIZE}"
        )
    return header


def check_trailer(data: bytes) -> None:
    """The SHA-256 trailer over every byte before it."""
    if hashlib.sha256(data[:-TRAILER_SIZE]).digest() != data[-TRAILER_SIZE:]:
        raise BundleError("file checksum mismatch: the SHA-256 trailer does not match the file contents")
