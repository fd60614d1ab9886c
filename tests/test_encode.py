"""Tests for flows/bundle: the Deep Compression bundle (sparse relative indices, codebook, Huffman).

Round trips are property tests (hypothesis) on random sparse weights; the hand-worked example checks
relative indices, fillers and the exact packed bytes; corruption tests flip and cut every byte.
"""

from __future__ import annotations

import hashlib
import logging
import os
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flows.bundle import (
    HEADER_SIZE,
    MAGIC,
    TRAILER_SIZE,
    BundleSizes,
    LayerPayload,
    build_codebook,
    decode_bundle,
    encode_bundle,
    from_relative,
    read_bundle,
    to_relative,
    write_bundle,
)
from flows.errors import BundleError, FlowError

REPO = Path(__file__).resolve().parent.parent
SETTINGS = settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# ----------------------------------------------------------------------------------------------
# Helpers


def bits_of(arr: np.ndarray) -> np.ndarray:
    """Bit patterns, so that comparisons are bitwise (and -0.0 != 0.0)."""
    return np.ascontiguousarray(arr, dtype=np.float32).view(np.uint32)


def assert_bitwise_equal(got: np.ndarray, want: np.ndarray) -> None:
    assert got.dtype == np.float32
    assert got.shape == want.shape
    np.testing.assert_array_equal(bits_of(got), bits_of(want))


def expected_fillers(weight: np.ndarray, index_bits: int) -> tuple[int, int]:
    """(fillers, largest gap) by walking the flat weight, one filler at a time."""
    limit = (1 << index_bits) - 1
    fillers, prev, largest = 0, -1, 0
    for pos in np.flatnonzero(weight.ravel()):
        gap = int(pos) - prev - 1
        largest = max(largest, gap)
        while gap > limit:
            fillers += 1
            gap -= limit + 1
        prev = int(pos)
    return fillers, largest


def reseal(data: bytes, layer_crc: bool = False) -> bytes:
    """Recompute the checksums after an edit (for a one-layer bundle, also its payload CRC)."""
    data = bytearray(data)
    table_len, payload_len = struct.unpack_from("<QQ", data, 16)
    table_end = HEADER_SIZE + table_len
    if layer_crc:
        payload = bytes(data[table_end : table_end + payload_len])
        struct.pack_into("<I", data, table_end - 4, zlib.crc32(payload))
    struct.pack_into("<I", data, 32, zlib.crc32(bytes(data[HEADER_SIZE:table_end])))
    struct.pack_into("<I", data, 36, zlib.crc32(bytes(data[:36])))
    body = bytes(data[:-TRAILER_SIZE])
    return body + hashlib.sha256(body).digest()


def sparse_weight(rng: np.random.Generator, shape: tuple[int, ...], density: float, codebook: np.ndarray) -> np.ndarray:
    weight = np.zeros(shape, dtype=np.float32)
    mask = rng.random(shape) < density
    weight[mask] = rng.choice(codebook, size=int(mask.sum()))
    return weight


def figure2_layer() -> LayerPayload:
    """Nonzeros at 1, 4, 15, 16, 29 of 30 (worked by hand in `test_figure2_relative_indices_and_fillers`)."""
    weight = np.zeros(30, dtype=np.float32)
    weight[[1, 4, 15, 16, 29]] = np.array([3.4, 0.9, 1.7, 3.4, -0.5], dtype=np.float32)
    return LayerPayload("fig2", weight, weight_bits=3, index_bits=3)


def small_bundle() -> tuple[bytes, BundleSizes]:
    """Two layers with fillers, one with a bias; small enough to flip every byte."""
    conv = np.zeros((2, 1, 3, 3), dtype=np.float32)
    conv[0, 0, 0, 1], conv[1, 0, 2, 2] = 0.5, -0.25
    fc = np.zeros((4, 10), dtype=np.float32)
    fc[0, 2], fc[3, 9], fc[2, 0] = 1.5, 1.5, -2.0
    layers = [
        LayerPayload("conv1", conv, weight_bits=2, index_bits=2, bias=np.array([0.1, -0.2], np.float32)),
        LayerPayload("fc1", fc, weight_bits=2, index_bits=3),
    ]
    return encode_bundle(layers)


def regions(data: bytes) -> dict[str, range]:
    table_len, payload_len = struct.unpack_from("<QQ", data, 16)
    table_end = HEADER_SIZE + table_len
    return {
        "magic": range(0, 8),
        "version": range(8, 10),
        "header": range(10, HEADER_SIZE),
        "table": range(HEADER_SIZE, table_end),
        "payload": range(table_end, table_end + payload_len),
        "trailer": range(len(data) - TRAILER_SIZE, len(data)),
    }


# ----------------------------------------------------------------------------------------------
# Hand-worked example (the paper's Figure 2 trick with 3-bit indices)


def test_figure2_relative_indices_and_fillers() -> None:
    """Nonzeros at 1, 4, 15, 16, 29 of 30 with 3-bit gaps (max 7).

    gaps: 1 (pos 0), 2 (pos 2-3), then 10 zeros > 7 -> filler at 12 (gap 7), then gap 2 (13-14),
    0, then 12 zeros -> filler at 24 (gap 7), then gap 4 (25-28).
    codebook sorted: -0.5 -> 1, 0.9 -> 2, 1.7 -> 3, 3.4 -> 4; fillers have code 0.
    """
    weight = figure2_layer().weight
    codebook, codes = build_codebook(weight)
    np.testing.assert_array_equal(codebook, np.array([-0.5, 0.9, 1.7, 3.4], np.float32))
    gaps, entry_codes = to_relative(codes, index_bits=3)
    assert gaps.tolist() == [1, 2, 7, 2, 0, 7, 4]
    assert entry_codes.tolist() == [4, 2, 0, 3, 4, 0, 1]
    positions = np.cumsum(gaps + 1) - 1
    assert positions.tolist() == [1, 4, 12, 15, 16, 24, 29]  # fillers sit on zeros at 12 and 24
    real_pos, real_codes = from_relative(gaps, entry_codes)
    assert real_pos.tolist() == [1, 4, 15, 16, 29] and real_codes.tolist() == [4, 2, 3, 4, 1]

    data, sizes = encode_bundle([figure2_layer()])
    layer = sizes.layers[0]
    assert (layer.total, layer.nonzero, layer.stored_entries, layer.fillers) == (30, 5, 7, 2)
    assert (layer.bits_weights_fixed, layer.bits_index_fixed, layer.code_bits) == (21, 21, 3)
    assert (layer.weights_mode, layer.index_mode) == ("fixed", "fixed")  # 7 entries: tables cost more
    # 3-bit codes 4,2,0,3,4,0,1 = 100 010 000 011 100 000 001 (+000 padding)
    # 3-bit gaps  1,2,7,2,0,7,4 = 001 010 111 010 000 111 100 (+000 padding)
    table_len = struct.unpack_from("<Q", data, 16)[0]
    payload = data[HEADER_SIZE + table_len : -TRAILER_SIZE]
    assert payload == bytes([0b10001000, 0b00111000, 0b00001000, 0b00101011, 0b10100001, 0b11100000])
    assert_bitwise_equal(decode_bundle(data)["fig2"][0], weight)


def test_layout_of_header() -> None:
    data, sizes = small_bundle()
    magic, version, flags, n_layers, table_len, payload_len = struct.unpack_from("<8sHHIQQ", data)
    assert (magic, version, flags, n_layers) == (MAGIC, 1, 0, 2)
    assert len(data) == HEADER_SIZE + table_len + payload_len + TRAILER_SIZE == sizes.bytes_total
    assert data[-TRAILER_SIZE:] == hashlib.sha256(data[:-TRAILER_SIZE]).digest()


# ----------------------------------------------------------------------------------------------
# Round trips


@st.composite
def layer_specs(draw: st.DrawFn, name: str) -> tuple[LayerPayload, int]:
    """A random pruned, weight-shared layer; returns it with the number of distinct values used."""
    ndim = draw(st.integers(0, 4))
    max_dim = {0: 1, 1: 3000, 2: 60, 3: 14, 4: 7}[ndim]
    shape = tuple(draw(st.lists(st.integers(0, max_dim), min_size=ndim, max_size=ndim)))
    weight_bits = draw(st.integers(1, 8))
    index_bits = draw(st.integers(1, 8))
    density = draw(st.one_of(st.sampled_from([0.0, 0.001, 0.01, 0.05, 1.0]), st.floats(0.0, 1.0)))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    k = draw(st.integers(1, 1 << weight_bits))
    if draw(st.booleans()):  # exotic floats: subnormals, huge, tiny, signs
        floats = st.floats(width=32, allow_nan=False, allow_infinity=False).filter(lambda x: x != 0)
        values = draw(st.lists(floats, min_size=1, max_size=min(k, 24), unique=True))
        codebook = np.unique(np.array(values, dtype=np.float32))
    else:
        codebook = np.unique(rng.standard_normal(k).astype(np.float32))
        codebook = codebook[codebook != 0]
    weight = sparse_weight(rng, shape, density, codebook)
    bias = None
    if draw(st.booleans()):
        bias = rng.standard_normal(draw(st.integers(0, 20))).astype(np.float32)
    return LayerPayload(name, weight, weight_bits, index_bits, bias), int(codebook.size)


@st.composite
def long_run_specs(draw: st.DrawFn, name: str) -> tuple[LayerPayload, int]:
    """A few nonzeros spread over a long 1-D weight: long zero runs that need fillers."""
    index_bits = draw(st.integers(1, 8))
    size = draw(st.integers(1, 6000))
    positions = draw(st.lists(st.integers(0, size - 1), max_size=8, unique=True))
    weight = np.zeros(size, dtype=np.float32)
    weight[positions] = np.float32(-1.25)
    return LayerPayload(name, weight, draw(st.integers(1, 8)), index_bits), 1


def check_layer_sizes(layer: LayerPayload) -> None:
    """Sizes of one single-layer bundle: counts, fillers, fixed vs Huffman, file size."""
    data, sizes = encode_bundle([layer])
    assert sizes.bytes_total == len(data) == sizes.bytes_header + sum(s.bytes_total for s in sizes.layers)
    s = sizes.layers[0]
    fillers, largest_gap = expected_fillers(layer.weight, layer.index_bits)
    assert s.fillers == fillers
    assert (s.fillers > 0) == (largest_gap > (1 << layer.index_bits) - 1)
    assert s.nonzero == int(np.count_nonzero(layer.weight))
    assert s.stored_entries == s.nonzero + s.fillers
    assert s.bits_weights_fixed == s.stored_entries * s.code_bits
    assert s.bits_index_fixed == s.stored_entries * layer.index_bits
    assert s.bits_weights_huffman <= s.bits_weights_fixed
    assert s.bits_index_huffman <= s.bits_index_fixed
    written = s.bytes_weights + s.bytes_index + s.bytes_code_tables
    assert written <= s.bytes_fixed_streams  # the smaller form is stored
    assert s.bytes_weights + s.bytes_index <= s.bytes_fixed_streams
    assert s.bytes_weights <= (s.bits_weights_huffman + 7) // 8 or s.weights_mode == "fixed"
    assert sizes.bytes_total <= sizes.bytes_total_fixed


@SETTINGS
@given(st.lists(st.one_of(layer_specs("x"), long_run_specs("x")), min_size=1, max_size=3))
def test_round_trip_is_bitwise_exact(specs: list[tuple[LayerPayload, int]]) -> None:
    layers = []
    for i, (layer, _) in enumerate(specs):
        layer.name = f"layer{i}"
        layers.append(layer)
    data, sizes = encode_bundle(layers)
    decoded = decode_bundle(data)
    assert list(decoded) == [layer.name for layer in layers]
    for layer in layers:
        weight, bias = decoded[layer.name]
        assert_bitwise_equal(weight, layer.weight)
        if layer.bias is None:
            assert bias is None
        else:
            assert_bitwise_equal(bias, layer.bias)
    for layer in layers:
        check_layer_sizes(layer)


@SETTINGS
@given(long_run_specs("runs"))
def test_fillers_exactly_when_gaps_exceed_index_range(spec: tuple[LayerPayload, int]) -> None:
    layer, _ = spec
    check_layer_sizes(layer)
    assert_bitwise_equal(decode_bundle(encode_bundle([layer])[0])["runs"][0], layer.weight)


def test_full_codebook_needs_one_more_bit(caplog: pytest.LogCaptureFixture) -> None:
    """2**b distinct values plus the reserved zero code: fixed codes are b + 1 bits, still exact."""
    rng = np.random.default_rng(1)
    codebook = np.arange(1, 9, dtype=np.float32) / 8  # 8 values, b = 3
    weight = sparse_weight(rng, (3000,), 0.02, codebook)
    weight[rng.choice(3000, 8, replace=False)] = codebook
    with caplog.at_level(logging.WARNING, logger="flows.bundle"):
        data, sizes = encode_bundle([LayerPayload("full", weight, weight_bits=3, index_bits=2)])
    assert sizes.layers[0].code_bits == 4 and sizes.layers[0].fillers > 0
    assert "need 4 bits" in caplog.text
    assert_bitwise_equal(decode_bundle(data)["full"][0], weight)


def test_single_symbol_streams_are_constant() -> None:
    weight = np.full((8, 9), 0.75, dtype=np.float32)  # dense: every gap 0, every code 1
    data, sizes = encode_bundle([LayerPayload("const", weight, weight_bits=4, index_bits=4)])
    s = sizes.layers[0]
    assert (s.weights_mode, s.index_mode) == ("constant", "constant")
    assert (s.bytes_weights, s.bytes_index, s.bits_weights_huffman, s.bits_index_huffman) == (0, 0, 0, 0)
    assert_bitwise_equal(decode_bundle(data)["const"][0], weight)


def test_all_zero_and_empty_layers() -> None:
    layers = [
        LayerPayload("zeros", np.zeros((5, 7), np.float32), 5, 5),
        LayerPayload("empty", np.zeros((0, 3), np.float32), 5, 5, bias=np.zeros(0, np.float32)),
        LayerPayload("scalar", np.array(2.5, np.float32), 1, 1),
    ]
    data, sizes = encode_bundle(layers)
    assert [s.stored_entries for s in sizes.layers] == [0, 0, 1]
    decoded = decode_bundle(data)
    for layer in layers:
        assert_bitwise_equal(decoded[layer.name][0], layer.weight)
    assert decoded["empty"][1].shape == (0,)


def test_huffman_wins_on_skewed_codes() -> None:
    weight = skewed_layer().weight
    data, sizes = encode_bundle([skewed_layer()])
    s = sizes.layers[0]
    assert s.weights_mode == "huffman" and s.index_mode == "huffman"
    assert s.bits_weights_huffman < 0.9 * s.bits_weights_fixed
    assert sizes.bytes_total < sizes.bytes_total_fixed
    totals = sizes.totals()
    parts = ("weights", "indices", "codebooks", "code_tables", "bias", "layer_metadata", "header")
    assert sum(totals[k] for k in parts) == totals["total"] == len(data)
    assert_bitwise_equal(decode_bundle(data)["fc"][0], weight)


def skewed_layer(name: str = "fc") -> LayerPayload:
    """Codes with a peaked distribution over 32 values, 10% density: Huffman pays off."""
    rng = np.random.default_rng(2)
    codebook = np.linspace(-1, 1, 32).astype(np.float32)
    probs = np.exp(-np.abs(np.arange(32) - 15.5) / 3)
    weight = np.zeros(40_000, np.float32)
    pos = rng.choice(weight.size, 4000, replace=False)
    weight[pos] = rng.choice(codebook, size=pos.size, p=probs / probs.sum())
    return LayerPayload(name, weight, weight_bits=5, index_bits=5)


def test_too_long_huffman_codes_fall_back_to_fixed(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr("flows.bundle.streams.MAX_CODE_LENGTH", 3)
    layer = skewed_layer()
    with caplog.at_level(logging.WARNING, logger="flows.bundle"):
        data, sizes = encode_bundle([layer])
    assert sizes.layers[0].weights_mode == "fixed" and "longer than 3 bits" in caplog.text
    assert sizes.layers[0].bits_weights_huffman < sizes.layers[0].bits_weights_fixed  # still reported
    assert_bitwise_equal(decode_bundle(data)["fc"][0], layer.weight)


def test_bad_huffman_table_is_reported() -> None:
    data, sizes = encode_bundle([skewed_layer()])
    assert sizes.layers[0].weights_mode == "huffman"
    # record: u16 + "fc" + u8 dtype + u8 ndim + u32 dim + 4 x u8 + 3 x u64 + u32 K + 32 x f32 codebook
    at = HEADER_SIZE + 2 + 2 + 1 + 1 + 4 + 4 + 24 + 4 + 4 * 32
    mode, table_len = struct.unpack_from("<BI", data, at)
    assert (mode, table_len) == (1, 33)  # Huffman, lengths of codes 0..32
    bad = bytearray(data)
    bad[at + 5 + 16] += 1  # one code longer: the code is no longer complete
    with pytest.raises(BundleError, match="layer #0 'fc', weight stream: Huffman code lengths .*Kraft"):
        decode_bundle(reseal(bytes(bad)))


@pytest.mark.parametrize("weights_mode", ["huffman", "fixed"])
def test_nonzero_padding_bits_are_reported(weights_mode: str) -> None:
    layer = skewed_layer() if weights_mode == "huffman" else figure2_layer()
    data, sizes = encode_bundle([layer])
    s = sizes.layers[0]
    bits = s.bits_weights_huffman if weights_mode == "huffman" else s.bits_weights_fixed
    assert s.weights_mode == weights_mode and bits % 8
    last = HEADER_SIZE + struct.unpack_from("<Q", data, 16)[0] + s.bytes_weights - 1
    bad = bytearray(data)
    bad[last] |= 1
    with pytest.raises(BundleError, match=f"'{layer.name}', weight stream: nonzero padding bits"):
        decode_bundle(reseal(bytes(bad), layer_crc=True))


def test_negative_zero_is_a_zero() -> None:
    """-0.0 (e.g. from w * mask) is pruned, decodes as +0.0; biases are raw and keep it."""
    weight = np.array([-0.0, 1.0, -0.0, 0.0, -1.0], np.float32)
    bias = np.array([-0.0, 3.0], np.float32)
    data, sizes = encode_bundle([LayerPayload("nz", weight, 1, 2, bias)])
    assert sizes.layers[0].nonzero == 2
    got_w, got_b = decode_bundle(data)["nz"]
    assert_bitwise_equal(got_w, np.array([0.0, 1.0, 0.0, 0.0, -1.0], np.float32))
    assert_bitwise_equal(got_b, bias)


def test_encoding_is_deterministic_across_processes() -> None:
    script = (
        "import hashlib, numpy as np\n"
        "from flows.bundle import LayerPayload, encode_bundle\n"
        "rng = np.random.default_rng(3)\n"
        "w = np.where(rng.random((60, 80)) < 0.1, rng.choice(np.linspace(-1, 1, 16), (60, 80)), 0)\n"
        "data, _ = encode_bundle([LayerPayload('fc', w.astype(np.float32), 4, 4)])\n"
        "print(hashlib.sha256(data).hexdigest())\n"
    )
    digests = set()
    for seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        out = subprocess.run([sys.executable, "-c", script], cwd=REPO, env=env, capture_output=True, text=True)
        assert out.returncode == 0, out.stderr
        digests.add(out.stdout.strip())
    assert len(digests) == 1
    data1, _ = small_bundle()
    data2, _ = small_bundle()
    assert data1 == data2


# ----------------------------------------------------------------------------------------------
# Invalid input


@pytest.mark.parametrize(
    ("layer", "words"),
    [
        (LayerPayload("fc", np.arange(1, 5, dtype=np.float32), 1, 4), ["'fc'", "4 distinct", "at most 2"]),
        (LayerPayload("fc", np.array([0, np.nan], np.float32), 4, 4), ["'fc'", "NaN/inf"]),
        (LayerPayload("fc", np.array([0, np.inf], np.float32), 4, 4), ["'fc'", "NaN/inf"]),
        (LayerPayload("fc", np.ones(3, np.float32), 4, 4, np.array([np.nan], np.float32)), ["'fc'", "bias"]),
        (LayerPayload("fc", np.ones(3, np.float32), 4, 0), ["'fc'", "index_bits", "1..16"]),
        (LayerPayload("fc", np.ones(3, np.float32), 0, 4), ["'fc'", "weight_bits", "1..16"]),
        (LayerPayload("fc", np.ones(3, np.float32), 17, 4), ["'fc'", "weight_bits"]),
        (LayerPayload("fc", np.ones(3, np.float64), 4, 4), ["'fc'", "float32"]),
        (LayerPayload("fc", [1.0, 0.0], 4, 4), ["'fc'", "float32"]),  # type: ignore[arg-type]
        (LayerPayload("", np.ones(3, np.float32), 4, 4), ["layer name"]),
    ],
)
def test_invalid_layers_are_rejected(layer: LayerPayload, words: list[str]) -> None:
    with pytest.raises(BundleError) as info:
        encode_bundle([layer])
    for word in words:
        assert word in str(info.value)


def test_duplicate_names_are_rejected() -> None:
    layer = LayerPayload("fc", np.ones(3, np.float32), 4, 4)
    with pytest.raises(BundleError, match="'fc'.*duplicate"):
        encode_bundle([layer, layer])


def test_bundle_error_is_a_flow_error() -> None:
    assert issubclass(BundleError, FlowError) and issubclass(BundleError, ValueError)


# ----------------------------------------------------------------------------------------------
# Corrupt files


def test_every_flipped_byte_is_caught_with_its_region() -> None:
    data, _ = small_bundle()
    words = {
        "magic": "magic",
        "version": "unsupported bundle format version",
        "header": "header checksum mismatch",
        "table": "layer table checksum mismatch",
        "trailer": "file checksum mismatch",
    }
    table_len = struct.unpack_from("<Q", data, 16)[0]
    conv_payload = decode_offsets(data, table_len)
    for region, positions in regions(data).items():
        for pos in positions:
            bad = bytearray(data)
            bad[pos] ^= 0x5A
            with pytest.raises(BundleError) as info:
                decode_bundle(bytes(bad))
            message = str(info.value)
            if region == "payload":
                layer = "'conv1'" if pos in conv_payload else "'fc1'"
                assert "payload checksum mismatch" in message and layer in message, (pos, message)
            else:
                assert words[region] in message, (region, pos, message)


def decode_offsets(data: bytes, table_len: int) -> range:
    """Payload range of the first layer of `small_bundle()` (conv1), read from its record's end."""
    start = HEADER_SIZE + table_len
    sizes = small_bundle()[1]
    conv = sizes.layers[0]
    return range(start, start + conv.bytes_weights + conv.bytes_index + conv.bytes_bias)


def test_every_truncation_is_caught() -> None:
    data, _ = small_bundle()
    for cut in range(len(data)):
        with pytest.raises(BundleError, match="truncated"):
            decode_bundle(data[:cut])
    with pytest.raises(BundleError, match="trailing bytes"):
        decode_bundle(data + b"\x00")


def test_wrong_magic_and_version() -> None:
    data, _ = small_bundle()
    with pytest.raises(BundleError, match="wrong magic"):
        decode_bundle(b"PK\x03\x04" + data[4:])
    newer = bytearray(data)
    struct.pack_into("<H", newer, 8, 2)
    with pytest.raises(BundleError, match="unsupported bundle format version 2; this reader supports version 1"):
        decode_bundle(reseal(bytes(newer)))
    flagged = bytearray(data)
    struct.pack_into("<H", flagged, 10, 1)
    with pytest.raises(BundleError, match="unknown flags"):
        decode_bundle(reseal(bytes(flagged)))


def one_layer_bundle() -> bytes:
    weight = np.zeros(200, np.float32)
    weight[[3, 60, 61, 199]] = np.array([0.5, -0.5, 0.5, 0.25], np.float32)
    return encode_bundle([LayerPayload("a", weight, 2, 3)])[0]


def test_inconsistent_table_with_valid_checksums() -> None:
    """A well-checksummed but wrong table (a buggy writer) is reported, not decoded."""
    data = one_layer_bundle()
    # record of "a": u16 name_len, "a", u8 dtype, u8 ndim, u32 dim, 4 x u8 bits -> nonzero at +13
    nonzero_at = HEADER_SIZE + 13
    assert struct.unpack_from("<QQQ", data, nonzero_at) == (4, 28, 24)  # gaps 3, 56, 0, 137: 7 + 17 fillers
    bad = bytearray(data)
    struct.pack_into("<Q", bad, nonzero_at, 5)
    with pytest.raises(BundleError, match=r"layer #0 'a': inconsistent entry counts: expected nonzero \+ fillers = 28"):
        decode_bundle(reseal(bytes(bad)))
    bad = bytearray(data)
    struct.pack_into("<I", bad, HEADER_SIZE + 5, 100)  # shape 200 -> 100: entries run past the end
    with pytest.raises(BundleError, match="'a': inconsistent extent of the entries: expected <= 100"):
        decode_bundle(reseal(bytes(bad)))


@settings(max_examples=600, deadline=None)
@given(st.data())
def test_resealed_garbage_never_escapes_as_another_error(data: st.DataObject) -> None:
    """Random edits with all checksums recomputed: BundleError or a decode, never IndexError etc."""
    blob = bytearray(one_layer_bundle())
    table_len, payload_len = struct.unpack_from("<QQ", blob, 16)
    lo = data.draw(st.sampled_from([HEADER_SIZE, HEADER_SIZE + table_len]))
    hi = HEADER_SIZE + table_len if lo == HEADER_SIZE else lo + payload_len
    for _ in range(data.draw(st.integers(1, 4))):
        pos = data.draw(st.integers(lo, hi - 1))
        blob[pos] = data.draw(st.integers(0, 255))
    try:
        decoded = decode_bundle(reseal(bytes(blob), layer_crc=True), max_elements=10**6)
    except BundleError:
        return
    for weight, _ in decoded.values():
        assert weight.dtype == np.float32


# ----------------------------------------------------------------------------------------------
# Files


def test_write_and_read_bundle(tmp_path: Path) -> None:
    rng = np.random.default_rng(4)
    weight = sparse_weight(rng, (16, 1, 5, 5), 0.2, np.linspace(-1, 1, 200).astype(np.float32))
    layer = LayerPayload("conv", weight, 8, 8, rng.standard_normal(16).astype(np.float32))
    path = tmp_path / "model.ffb"
    sizes = write_bundle(path, [layer])
    assert path.stat().st_size == sizes.bytes_total
    assert os.listdir(tmp_path) == ["model.ffb"]  # no temp file left behind
    got_w, got_b = read_bundle(path)["conv"]
    assert_bitwise_equal(got_w, weight)
    assert_bitwise_equal(got_b, layer.bias)


def test_failed_write_keeps_the_old_file(tmp_path: Path) -> None:
    path = tmp_path / "model.ffb"
    write_bundle(path, [LayerPayload("a", np.ones(3, np.float32), 1, 1)])
    before = path.read_bytes()
    with pytest.raises(BundleError):
        write_bundle(path, [LayerPayload("a", np.array([np.nan], np.float32), 1, 1)])
    assert path.read_bytes() == before and os.listdir(tmp_path) == ["model.ffb"]


def test_read_errors_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(BundleError, match="cannot read bundle .*missing.ffb"):
        read_bundle(tmp_path / "missing.ffb")
    path = tmp_path / "cut.ffb"
    path.write_bytes(small_bundle()[0][:100])
    with pytest.raises(BundleError, match=r"cut\.ffb: truncated"):
        read_bundle(path)
