"""The two symbol streams of a layer (weight codes, relative indices): fixed-width packing and canonical Huffman.

Section 4 of Deep Compression. Each stream is coded with a canonical Huffman code (code lengths from
`bitarray.util.canonical_huffman`, decoding with `bitarray.util.canonical_decode`); only the code
lengths are stored. A stream with one distinct symbol is stored "constant" (0 payload bits, the
symbol in the table). The encoder compares each stream with plain fixed-width packing (`width` bits
per symbol) and stores whichever takes fewer bytes (stream bytes plus its code table); ties go to
fixed. Bits are most significant first within a byte, zero-padded to a whole byte.
"""

from __future__ import annotations

import logging
import struct
from dataclasses import dataclass

import numpy as np
from bitarray import bitarray
from bitarray.util import canonical_decode, canonical_huffman, int2ba

from flows.bundle.format import MODE_CONSTANT, MODE_FIXED, MODE_HUFFMAN, ceil8
from flows.errors import BundleError

log = logging.getLogger(__name__)

MAX_CODE_LENGTH = 31  # longest canonical code bitarray can decode


@dataclass
class EncodedStream:
    """One encoded stream as written, plus the sizes of both alternatives."""

    mode: int
    table: bytes
    data: bytes
    bit_length: int
    bits_fixed: int
    bits_huffman: int


@dataclass
class StreamDesc:
    """What a layer record says about one stream: mode, code table and where its bytes are."""

    mode: int
    table: bytes
    offset: int
    byte_length: int
    bit_length: int


def pack_fixed(symbols: np.ndarray, width: int) -> bytes:
    """Each symbol as `width` bits, most significant first, zero-padded to a whole byte."""
    shifts = np.arange(width - 1, -1, -1, dtype=np.int64)
    bits = ((symbols[:, None] >> shifts) & 1).astype(np.uint8)
    return np.packbits(bits.ravel()).tobytes()


def unpack_fixed(data: bytes, count: int, width: int) -> np.ndarray:
    """`count` symbols of `width` bits; ValueError if a padding bit after them is set."""
    bits = np.unpackbits(np.frombuffer(data, dtype=np.uint8))
    if count * width < bits.size and bits[count * width :].any():
        raise ValueError("nonzero padding bits after the last symbol")
    grid = bits[: count * width].reshape(count, width)
    out = np.zeros(count, dtype=np.int64)
    for column in range(width):  # one bit column at a time: memory stays at one int64 per symbol
        out <<= 1
        out |= grid[:, column]
    return out


def canonical_code(lengths: dict[int, int]) -> dict[int, bitarray]:
    """Canonical codewords: in (length, symbol) order, counting up, shifting left per length."""
    codes: dict[int, bitarray] = {}
    value, prev_len = 0, 0
    for sym in sorted(lengths, key=lambda s: (lengths[s], s)):
        value <<= lengths[sym] - prev_len
        prev_len = lengths[sym]
        codes[sym] = int2ba(value, length=prev_len, endian="big")
        value += 1
    return codes


def encode_stream(symbols: np.ndarray, width: int) -> EncodedStream:
    """Encode one stream both ways and keep the smaller (stream bytes plus table; ties: fixed)."""
    n = int(symbols.size)
    bits_fixed = n * width
    values, counts = np.unique(symbols, return_counts=True)
    fixed_data = pack_fixed(symbols, width)
    if values.size <= 1:  # empty stream, or one symbol: a zero-bit code
        table = struct.pack("<I", int(values[0])) if n else b""
        if n and len(table) < len(fixed_data):
            return EncodedStream(MODE_CONSTANT, table, b"", 0, bits_fixed, 0)
        return EncodedStream(MODE_FIXED, b"", fixed_data, bits_fixed, bits_fixed, 0)
    code, _, _ = canonical_huffman({int(v): int(c) for v, c in zip(values, counts)})
    lengths = {sym: len(bits) for sym, bits in code.items()}
    bits_huffman = sum(lengths[int(v)] * int(c) for v, c in zip(values, counts))
    fixed = EncodedStream(MODE_FIXED, b"", fixed_data, bits_fixed, bits_fixed, bits_huffman)
    if max(lengths.values()) > MAX_CODE_LENGTH:
        log.warning("Huffman code longer than %d bits; stream stored fixed-width", MAX_CODE_LENGTH)
        return fixed
    table = bytes(lengths.get(s, 0) for s in range(int(values[-1]) + 1))
    if ceil8(bits_huffman) + len(table) >= len(fixed_data):
        return fixed
    coded = bitarray(endian="big")
    coded.encode(canonical_code(lengths), symbols.tolist())
    return EncodedStream(MODE_HUFFMAN, table, coded.tobytes(), len(coded), bits_fixed, bits_huffman)


def huffman_tables(table: bytes, alphabet: int, where: str) -> tuple[list[int], list[int]]:
    """Check a stored table of code lengths; returns `count` (per length, from 0) and symbols in canonical order."""
    if len(table) > alphabet:
        raise BundleError(f"{where}: Huffman table has {len(table)} symbols, alphabet has only {alphabet}")
    lengths = {sym: ln for sym, ln in enumerate(table) if ln}
    if len(lengths) < 2:
        raise BundleError(f"{where}: Huffman table has {len(lengths)} used symbols, expected at least 2")
    longest = max(lengths.values())
    if longest > MAX_CODE_LENGTH:
        raise BundleError(f"{where}: Huffman code length {longest} exceeds the limit {MAX_CODE_LENGTH}")
    kraft = sum(1 << (longest - ln) for ln in lengths.values())
    if kraft != 1 << longest:
        raise BundleError(f"{where}: Huffman code lengths do not form a complete prefix code (Kraft sum != 1)")
    count = [0] * (longest + 1)
    for length in lengths.values():
        count[length] += 1
    return count, sorted(lengths, key=lambda s: (lengths[s], s))


def decode_stream(desc: StreamDesc, data: bytes, count: int, width: int, alphabet: int, where: str) -> np.ndarray:
    """Decode `count` symbols of one stream whose lengths were checked; every symbol must be < alphabet."""
    if desc.mode == MODE_FIXED:
        try:
            out = unpack_fixed(data, count, width)
        except ValueError as exc:
            raise BundleError(f"{where}: {exc}") from exc
    elif desc.mode == MODE_CONSTANT:
        (symbol,) = struct.unpack("<I", desc.table)
        if symbol >= alphabet:  # checked before `count` copies are made
            raise BundleError(f"{where}: symbol {symbol} out of range (alphabet size {alphabet})")
        out = np.full(count, symbol, dtype=np.int64)
    else:
        count_tab, symbols = huffman_tables(desc.table, alphabet, where)
        bits = bitarray(endian="big")
        bits.frombytes(data)
        if bits[desc.bit_length :].any():
            raise BundleError(f"{where}: nonzero padding bits after the last Huffman code")
        try:
            decoded = list(canonical_decode(bits[: desc.bit_length], count_tab, symbols))
        except ValueError as exc:
            raise BundleError(f"{where}: Huffman data is corrupt ({exc})") from exc
        if len(decoded) != count:
            raise BundleError(f"{where}: Huffman data holds {len(decoded)} symbols, expected {count}")
        out = np.asarray(decoded, dtype=np.int64)
    if out.size and int(out.max()) >= alphabet:
        raise BundleError(f"{where}: symbol {int(out.max())} out of range (alphabet size {alphabet})")
    return out
