"""Decoder edges of flows/bundle (issue 12): files with valid checksums that the encoder could not have written.

Each bundle here is built by the real encoder with one record field replaced (`encode_layer`, then
`dataclasses.replace`, then `assemble_bundle`), so every checksum is valid and only the edge is tested.
The two reported bugs have regression tests named after them.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest

from flows.bundle import DEFAULT_MAX_ELEMENTS, LayerPayload, decode_bundle
from flows.bundle.encoder import EncodedLayer, assemble_bundle, encode_layer
from flows.bundle.format import MAX_NDIM, MIN_RECORD_SIZE, MODE_CONSTANT, MODE_HUFFMAN
from flows.bundle.streams import EncodedStream
from flows.errors import BundleError

REPO = Path(__file__).resolve().parent.parent


def layer(name: str = "fc", size: int = 40, bias: bool = True) -> EncodedLayer:
    """A small valid layer: a few nonzeros, fillers with 2-bit indices, a 2-element bias."""
    weight = np.zeros(size, np.float32)
    weight[[1, 9, size - 1]] = np.array([0.5, -0.25, 0.5], np.float32)
    b = np.array([0.1, -0.2], np.float32) if bias else None
    return encode_layer(LayerPayload(name, weight, 2, 2, b), set())


def bundle(*layers: EncodedLayer) -> bytes:
    return assemble_bundle(list(layers))


def test_crafting_keeps_a_valid_bundle_valid() -> None:
    weight, bias = decode_bundle(bundle(layer()))["fc"]
    assert weight.shape == (40,) and np.count_nonzero(weight) == 3
    np.testing.assert_array_equal(bias, np.array([0.1, -0.2], np.float32))


# ----------------------------------------------------------------------------------------------
# Regressions (issue 12)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_resealed_nan_bias_is_refused(bad: float) -> None:
    """A NaN/inf bias with valid checksums decoded; the encoder refuses those, so must the decoder."""
    data = bundle(layer("conv1"), dataclasses.replace(layer("fc2"), bias=np.array([1.0, bad], np.float32)))
    with pytest.raises(BundleError, match=r"layer #1 'fc2': bias has 1 NaN/inf values"):
        decode_bundle(data)


def test_huge_declared_size_is_refused_before_allocating() -> None:
    """A layer declaring 2**31 - 1 elements (a few nonzeros, the rest implied zeros) allocated 8 GiB."""
    data = bundle(dataclasses.replace(layer(), shape=(2**31 - 1,)))
    with pytest.raises(BundleError, match=r"'fc': weight shape \(2147483647,\) .* more than max_elements=134217728"):
        decode_bundle(data)
    assert decode_bundle(bundle(layer()), max_elements=42)["fc"][0].size == 40  # 40 weights + 2 biases fit


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="needs RLIMIT_AS and /proc")
def test_huge_declared_size_under_a_memory_limit_is_a_bundle_error(tmp_path: Path) -> None:
    """The reported setting: under a 1 GiB address-space limit the old decoder raised MemoryError."""
    path = tmp_path / "huge.bundle"
    path.write_bytes(bundle(dataclasses.replace(layer(), shape=(2**31 - 1,))))
    script = (
        "import re, resource, sys\n"
        "from flows.bundle import read_bundle\n"
        "from flows.errors import BundleError\n"
        "vm = int(re.search(r'VmSize:\\s+(\\d+)', open('/proc/self/status').read()).group(1)) * 1024\n"
        "resource.setrlimit(resource.RLIMIT_AS, (vm + 2**30, resource.RLIM_INFINITY))\n"
        "try:\n"
        "    read_bundle(sys.argv[1])\n"
        "except BundleError as exc:\n"
        "    print('BundleError', exc)\n"
    )
    out = subprocess.run([sys.executable, "-c", script, str(path)], cwd=REPO, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("BundleError") and "max_elements" in out.stdout


# ----------------------------------------------------------------------------------------------
# Sizes the file cannot hold


def test_element_budget_counts_the_whole_bundle() -> None:
    data = bundle(layer("a", 600, bias=False), layer("b", 600))
    with pytest.raises(BundleError, match=r"layer #1 'b': weight shape \(600,\) brings the bundle to 1200 elements"):
        decode_bundle(data, max_elements=1000)
    with pytest.raises(BundleError, match=r"layer #1 'b': bias shape \(2,\) brings the bundle to 1202 elements"):
        decode_bundle(data, max_elements=1201)
    assert list(decode_bundle(data, max_elements=1202)) == ["a", "b"]
    assert DEFAULT_MAX_ELEMENTS == 2**27


@pytest.mark.parametrize(
    ("shape", "words"),
    [
        ((0, 2**32 - 1, 2**32 - 1, 2**32 - 1), r"weight shape \(0, 4294967295, .* more than max_elements"),
        ((1,) * (MAX_NDIM + 1), rf"weight shape has {MAX_NDIM + 1} dimensions, numpy allows at most {MAX_NDIM}"),
        ((2**32 - 1, 2**32 - 1), "more than max_elements"),
    ],
)
def test_shapes_numpy_or_the_budget_cannot_hold_are_refused(shape: tuple[int, ...], words: str) -> None:
    """An all-zero layer (no entries) with such a shape made numpy raise ValueError in reshape."""
    all_zero = encode_layer(LayerPayload("fc", np.zeros(40, np.float32), 2, 2), set())
    assert all_zero.entries == 0
    with pytest.raises(BundleError, match=words):
        decode_bundle(bundle(dataclasses.replace(all_zero, shape=shape)))
    with pytest.raises(BundleError, match=words.replace("weight", "bias")):
        decode_bundle(bundle(dataclasses.replace(all_zero, bias=RawBias(shape))))  # type: ignore[arg-type]


@dataclasses.dataclass
class RawBias:
    """Stands in for a bias array whose shape numpy cannot make: the record gets the shape, the payload zeros."""

    shape: tuple[int, ...]

    @property
    def nbytes(self) -> int:
        return 4 * math.prod(self.shape) if math.prod(self.shape) <= 1 else 0

    def tobytes(self) -> bytes:
        return bytes(self.nbytes)


def test_entries_beyond_the_shape_are_refused() -> None:
    with pytest.raises(BundleError, match=r"'fc': inconsistent stored entries: expected <= 0 \(layer size\)"):
        decode_bundle(bundle(dataclasses.replace(layer(), shape=(5, 0))))


def test_bias_shapes_count_against_the_budget() -> None:
    deepest = dataclasses.replace(layer(), bias=np.zeros((1,) * MAX_NDIM, np.float32))
    assert decode_bundle(bundle(deepest))["fc"][1].ndim == MAX_NDIM  # the deepest numpy array is fine
    empty_but_wide = dataclasses.replace(layer(), bias=np.zeros((3, 0, 1000), np.float32))
    with pytest.raises(BundleError, match=r"'fc': bias shape \(3, 0, 1000\) brings the bundle to 3040 elements"):
        decode_bundle(bundle(empty_but_wide), max_elements=2000)
    assert decode_bundle(bundle(layer(bias=False)), max_elements=40)["fc"][1] is None  # no bias costs nothing


def test_more_layers_than_the_table_can_hold() -> None:
    data = bundle(layer())
    head = bytearray(data[:36])
    struct.pack_into("<I", head, 12, 2**32 - 1)
    forged = assemble_with_header(data, bytes(head))
    with pytest.raises(BundleError, match=r"declares 4294967295 layers, but a \d+-byte table holds at most 1\b"):
        decode_bundle(forged)
    assert MIN_RECORD_SIZE == 116


def assemble_with_header(data: bytes, head36: bytes) -> bytes:
    """`data` with its first 36 header bytes replaced and both header-level checksums recomputed."""
    body = head36 + struct.pack("<I", zlib.crc32(head36)) + data[40:-32]
    return body + hashlib.sha256(body).digest()


def test_empty_layer_name_is_refused() -> None:
    with pytest.raises(BundleError, match="layer #0: empty layer name"):
        decode_bundle(bundle(dataclasses.replace(layer(), name="")))


def test_codebook_larger_than_the_bits_allow() -> None:
    big = dataclasses.replace(layer(), codebook=np.arange(1, 6, dtype=np.float32))  # 5 values, weight_bits 2
    with pytest.raises(BundleError, match="inconsistent codebook size: expected <= 4, found 5"):
        decode_bundle(bundle(big))


def test_constant_stream_symbol_out_of_range_is_refused_before_expanding() -> None:
    enc = layer()
    bad = EncodedStream(MODE_CONSTANT, struct.pack("<I", 2**32 - 1), b"", 0, 0, 0)
    with pytest.raises(BundleError, match="weight stream: symbol 4294967295 out of range"):
        decode_bundle(bundle(dataclasses.replace(enc, streams=(bad, enc.streams[1]))))


@pytest.mark.parametrize("table", [b"", b"\x01", b"\x00" * 4])
def test_huffman_table_with_fewer_than_two_codes_is_refused(table: bytes) -> None:
    enc = layer()
    fixed = enc.streams[1]
    bad = EncodedStream(MODE_HUFFMAN, table, fixed.data, fixed.bit_length, 0, 0)
    with pytest.raises(BundleError, match="index stream: Huffman table has [01] used symbols, expected at least 2"):
        decode_bundle(bundle(dataclasses.replace(enc, streams=(enc.streams[0], bad))))


def test_constant_streams_cannot_claim_more_entries_than_the_layer_has() -> None:
    """Constant streams spend no bits per entry: their count is bounded by the layer size instead."""
    dense = encode_layer(LayerPayload("d", np.full(50, 0.5, np.float32), 1, 1), set())
    assert [s.mode for s in dense.streams] == [MODE_CONSTANT, MODE_CONSTANT]
    huge = dataclasses.replace(dense, nonzero=2**40, entries=2**40)
    with pytest.raises(BundleError, match=r"'d': inconsistent stored entries: expected <= 50 \(layer size\)"):
        decode_bundle(bundle(huge))
