"""Fuzzing the bundle decoder (issue 12): seeded mutations of valid bundles, with and without resealing.

Every mutant either decodes to a correct result or raises `BundleError`; no other exception, no hang.
"Correct" means: a mutant whose checksums were not recomputed is refused unless it equals the
original (then it decodes to the original layers); a resealed mutant that decodes gives float32
arrays the encoder accepts, and re-encoding them decodes bitwise to the same arrays. The default run
tries 400 mutants (about a second); `-m slow` tries 20,000.
"""

from __future__ import annotations

import hashlib
import math
import signal
import struct
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import pytest

from flows.bundle import HEADER_SIZE, TRAILER_SIZE, Decoded, LayerPayload, decode_bundle, encode_bundle
from flows.bundle.format import Header
from flows.bundle.records import LayerRecord, read_records
from flows.errors import BundleError

MAX_ELEMENTS = 50_000  # mutants may declare big shapes; keep each decode (and re-encode) fast
SECONDS_PER_DECODE = 10
INTERESTING = [0, 1, 2, 3, 4, 7, 8, 15, 16, 17, 31, 32, 33, 63, 64, 65, 127, 128, 255, 256, 2**15, 2**16 - 1, 2**16]
INTERESTING += [2**31 - 1, 2**31, 2**32 - 1, 2**32, 2**63 - 1, 2**63, 2**64 - 1]
SPECIAL_FLOATS = np.array([np.nan, np.inf, -np.inf, 0.0, -0.0, 1e-45, -3.4e38, 0.5], np.float32)


def base_layers() -> list[list[LayerPayload]]:
    """Valid bundles covering every stream mode, fillers, biases, b + 1 code bits, empty and scalar layers."""
    rng = np.random.default_rng(2)
    conv = np.zeros((2, 1, 3, 3), np.float32)
    conv[0, 0, 0, 1], conv[1, 0, 2, 2] = 0.5, -0.25
    fc = np.zeros((4, 10), np.float32)
    fc[0, 2], fc[3, 9], fc[2, 0] = 1.5, 1.5, -2.0
    codebook = np.linspace(-1, 1, 16).astype(np.float32)
    probs = np.exp(-np.abs(np.arange(16) - 7.5) / 2)
    skewed = np.zeros(3000, np.float32)
    pos = rng.choice(skewed.size, 300, replace=False)
    skewed[pos] = rng.choice(codebook, size=pos.size, p=probs / probs.sum())  # both streams Huffman
    full = np.zeros(200, np.float32)
    full[rng.choice(200, 8, replace=False)] = np.arange(1, 9, dtype=np.float32) / 8  # K == 2**b: 4-bit codes
    return [
        [
            LayerPayload("conv1", conv, 2, 2, np.array([0.1, -0.2], np.float32)),
            LayerPayload("fc1", fc, 2, 3),
        ],
        [LayerPayload("fc", skewed, 5, 3, rng.standard_normal(4).astype(np.float32))],
        [LayerPayload("const", np.full((8, 9), 0.75, np.float32), 4, 4), LayerPayload("full", full, 3, 2)],
        [
            LayerPayload("zeros", np.zeros((5, 7), np.float32), 5, 5),
            LayerPayload("empty", np.zeros((0, 3), np.float32), 5, 5, np.zeros(0, np.float32)),
            LayerPayload("scalar", np.array(2.5, np.float32), 1, 1, np.array(-0.0, np.float32)),
        ],
    ]


@dataclass
class Base:
    """One valid bundle and what it decodes to."""

    data: bytes
    decoded: Decoded


def bases() -> list[Base]:
    out = []
    for layers in base_layers():
        data = encode_bundle(layers)[0]
        out.append(Base(data, decode_bundle(data)))
    return out


# ----------------------------------------------------------------------------------------------
# Mutations


def record_length(rec: LayerRecord) -> int:
    """Bytes of a record in the table (the layout of flows/bundle/format.py)."""
    size = 2 + len(rec.name.encode("utf-8")) + 1 + 1 + 4 * len(rec.shape) + 4 + 24 + 4 + 4 * rec.codebook.size
    size += sum(1 + 4 + len(desc.table) + 24 for desc in (rec.weights, rec.index)) + 1 + 20
    if rec.bias_shape is not None:
        size += 1 + 4 * len(rec.bias_shape) + 16
    return size


def reseal(blob: bytes) -> bytes:
    """Make the container consistent again: the payload length, then every checksum the mutant's layout lets
    us find (layer payload CRCs, table, header, file), so that the mutant reaches the deeper checks."""
    data = bytearray(blob)
    if len(data) < HEADER_SIZE + TRAILER_SIZE:
        return bytes(data)
    n_layers, table_len = struct.unpack_from("<IQ", data, 12)
    table_end = HEADER_SIZE + table_len
    if table_end + TRAILER_SIZE <= len(data):
        payload_len = len(data) - TRAILER_SIZE - table_end  # the header declares the mutant's own length
        struct.pack_into("<Q", data, 24, payload_len)
        try:
            records = read_records(bytes(data), Header(n_layers, table_len, payload_len, 0))
        except BundleError:
            records = []
        pos = HEADER_SIZE
        for rec in records:
            pos += record_length(rec)
            payload = bytes(data[rec.payload_offset : rec.payload_offset + rec.payload_length])
            struct.pack_into("<I", data, pos - 4, zlib.crc32(payload))
        struct.pack_into("<I", data, 32, zlib.crc32(bytes(data[HEADER_SIZE:table_end])))
    struct.pack_into("<I", data, 36, zlib.crc32(bytes(data[:36])))
    body = bytes(data[:-TRAILER_SIZE])
    return body + hashlib.sha256(body).digest()


def mutate(data: bytes, rng: np.random.Generator) -> bytes:
    """One to three random edits; most land in the layer table, where the structure is."""
    blob = bytearray(data)
    table_end = HEADER_SIZE + struct.unpack_from("<Q", data, 16)[0]
    for _ in range(int(rng.integers(1, 4))):
        n = len(blob)
        in_table = rng.random() < 0.7 and table_end > HEADER_SIZE
        lo, hi = (HEADER_SIZE, min(table_end, n)) if in_table else (0, n)
        if hi <= lo:
            lo, hi = 0, max(n, 1)
        pos = int(rng.integers(lo, hi))
        op = int(rng.integers(0, 9))
        if op == 0 and n:  # flip a bit
            blob[pos % n] ^= 1 << int(rng.integers(0, 8))
        elif op == 1 and n:  # a random byte
            blob[pos % n] = int(rng.integers(0, 256))
        elif op in (2, 3):  # an interesting integer as u8/u16/u32/u64 at any offset
            width = int(rng.choice([1, 2, 4, 8]))
            value = int(rng.choice(INTERESTING)) % (1 << (8 * width))
            if rng.random() < 0.3:
                value = int(rng.integers(0, 1 << min(8 * width, 62)))
            field = value.to_bytes(width, "little")
            blob[pos : pos + width] = field[: max(0, min(width, n - pos))]
        elif op == 4:  # insert bytes, and sometimes tell the header
            chunk = rng.integers(0, 256, int(rng.integers(1, 9))).astype(np.uint8).tobytes()
            blob[pos:pos] = chunk
            if rng.random() < 0.7 and len(blob) >= 24:
                fix_length(blob, pos, len(chunk), table_end)
        elif op == 5 and n > 1:  # delete bytes, and sometimes tell the header
            count = int(rng.integers(1, min(9, n)))
            del blob[pos : pos + count]
            if rng.random() < 0.7 and len(blob) >= 24:
                fix_length(blob, pos, -count, table_end)
        elif op == 6:  # a special float32 (NaN, inf, -0.0, subnormal) on a codebook value or a bias, maybe
            if rng.random() < 0.5:  # the last layer's bias ends the payload region
                pos = max(0, n - TRAILER_SIZE - 4 * int(rng.integers(1, 5)))
            blob[pos : pos + 4] = SPECIAL_FLOATS[int(rng.integers(0, SPECIAL_FLOATS.size))].tobytes()[: max(0, n - pos)]
        elif op == 7:  # truncate or extend
            blob = blob[:pos] if rng.random() < 0.5 else blob + bytes(int(rng.integers(1, 16)))
        else:  # copy a chunk over another place (e.g. one record's fields over another's)
            src = int(rng.integers(0, max(n, 1)))
            count = int(rng.integers(1, 17))
            blob[pos : pos + count] = blob[src : src + count]
    return bytes(blob)


def fix_length(blob: bytearray, pos: int, delta: int, table_end: int) -> None:
    """After inserting or deleting at `pos`, adjust table_len or payload_len so the header stays plausible."""
    field = 16 if HEADER_SIZE <= pos < table_end else 24 if pos >= table_end else None
    if field is not None:
        value = struct.unpack_from("<Q", blob, field)[0] + delta
        struct.pack_into("<Q", blob, field, value % 2**64)


# ----------------------------------------------------------------------------------------------
# The oracle


class DecodeHang(Exception):
    """A decode ran past SECONDS_PER_DECODE."""


@contextmanager
def time_limit(seconds: int) -> Iterator[None]:
    def on_alarm(signum: int, frame: object) -> None:
        raise DecodeHang(f"decode took more than {seconds} s")

    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def bits_of(arr: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(arr, dtype=np.float32).view(np.uint32)


def same(a: Decoded, b: Decoded) -> bool:
    if list(a) != list(b):
        return False
    for name, (wa, ba) in a.items():
        wb, bb = b[name]
        if wa.shape != wb.shape or not np.array_equal(bits_of(wa), bits_of(wb)):
            return False
        if (ba is None) != (bb is None):
            return False
        if ba is not None and (ba.shape != bb.shape or not np.array_equal(bits_of(ba), bits_of(bb))):
            return False
    return True


def check_mutant(mutant: bytes, base: Base, resealed: bool) -> str:
    """Decode one mutant; assert the outcome is allowed; return "refused", "original" or "decoded"."""
    try:
        with time_limit(SECONDS_PER_DECODE):
            got = decode_bundle(mutant, max_elements=MAX_ELEMENTS)
    except BundleError:
        return "refused"
    if mutant == base.data:
        assert same(got, base.decoded)
        return "original"
    assert resealed, "a mutant with stale checksums decoded"
    layers = []
    for name, (weight, bias) in got.items():
        assert weight.dtype == np.float32 and np.isfinite(weight).all()
        assert bias is None or (bias.dtype == np.float32 and np.isfinite(bias).all())
        assert math.prod(weight.shape) <= MAX_ELEMENTS
        layers.append(LayerPayload(name, weight, 16, 16, bias))
    again = decode_bundle(encode_bundle(layers)[0], max_elements=MAX_ELEMENTS)  # the encoder accepts it all
    assert same(again, got)
    return "decoded"


def run_mutants(count: int, seed: int) -> dict[str, int]:
    """`count` mutants spread over the base bundles, 80% resealed; returns how many ended which way."""
    rng = np.random.default_rng(seed)
    all_bases = bases()
    outcomes = {"refused": 0, "original": 0, "decoded": 0}
    for i in range(count):
        base = all_bases[i % len(all_bases)]
        mutant = mutate(base.data, rng)
        resealed = rng.random() < 0.8
        if resealed:
            mutant = reseal(mutant)
        try:
            outcomes[check_mutant(mutant, base, resealed)] += 1
        except Exception as exc:  # name the mutant, so that a failure can be replayed
            raise AssertionError(f"seed {seed}, mutant {i} ({mutant.hex()}): {exc!r}") from exc
    return outcomes


# ----------------------------------------------------------------------------------------------
# Tests


def test_reseal_of_an_unchanged_bundle_is_the_identity() -> None:
    for base in bases():
        assert reseal(base.data) == base.data


def test_mutants_decode_correctly_or_raise_bundle_error() -> None:
    outcomes = run_mutants(400, seed=0)
    assert sum(outcomes.values()) == 400
    assert outcomes["refused"] > 200 and outcomes["decoded"] > 0  # the oracle saw both kinds


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(1, 5))
def test_many_mutants_decode_correctly_or_raise_bundle_error(seed: int) -> None:
    outcomes = run_mutants(5000, seed=seed)
    assert outcomes["refused"] > 2500 and outcomes["decoded"] > 0
