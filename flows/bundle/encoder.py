"""The bundle encoder: validate pruned, weight-shared layers and write them as one bundle file.

Per layer (see `flows.bundle.sparse` and `flows.bundle.streams` for the two halves): the weight is
turned into a codebook and relative indices with fillers; the weight-code stream and the index stream
are each stored fixed-width, canonical Huffman or constant, whichever is smallest. The fixed-width
weight code is `weight_bits` (b) wide, or b + 1 in the one case K == 2**b where the reserved zero
code does not fit. Biases are stored raw (float32). Negative zeros in a weight count as zeros and
decode as +0.0; every other weight decodes bitwise equal (biases are raw, so even their signed zeros
survive). NaN/inf weights or biases are refused. The file layout is in `flows.bundle.format`.

`encode_layer` and `assemble_bundle` are the two halves of `encode_bundle`, public so that tests can
write a record with chosen (even inconsistent) fields and valid checksums.
"""

from __future__ import annotations

import logging
import os
import struct
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from flows.atomic import atomic_write_bytes
from flows.bundle.format import DTYPE_FLOAT32, FIXED_OVERHEAD, HEADER_SIZE, MAX_BITS, MAX_NDIM, MODE_NAMES, seal
from flows.bundle.sizes import BundleSizes, LayerSizes
from flows.bundle.sparse import build_codebook, to_relative
from flows.bundle.streams import EncodedStream, encode_stream
from flows.errors import BundleError

log = logging.getLogger(__name__)


@dataclass
class LayerPayload:
    """One layer to store: pruned, weight-shared float32 weight, optional raw float32 bias."""

    name: str
    weight: np.ndarray
    weight_bits: int
    index_bits: int
    bias: np.ndarray | None = None


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
    if arr.ndim > MAX_NDIM or any(d > 0xFFFFFFFF for d in arr.shape):
        raise BundleError(
            f"layer '{name}': {what} shape {arr.shape} does not fit the format (ndim<={MAX_NDIM}, dims<2**32)"
        )
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
class EncodedLayer:
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
    streams: tuple[EncodedStream, EncodedStream]
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


def encode_layer(layer: LayerPayload, seen: set[str]) -> EncodedLayer:
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
    streams = (encode_stream(entry_codes, code_bits), encode_stream(gaps, ib))
    return EncodedLayer(
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


def assemble_bundle(encoded: Sequence[EncodedLayer]) -> bytes:
    """The file holding already encoded layers, in order: records with their payload offsets, then sealed."""
    table_len = sum(len(enc.record(0)) for enc in encoded)  # record length does not depend on offsets
    offset = HEADER_SIZE + table_len
    records, payloads = [], []
    for enc in encoded:
        records.append(enc.record(offset))
        payloads.append(enc.payload)
        offset += len(payloads[-1])
    return seal(len(encoded), b"".join(records), b"".join(payloads))


def encode_bundle(layers: Sequence[LayerPayload]) -> tuple[bytes, BundleSizes]:
    """Encode layers into one bundle; returns the bytes and their size breakdown."""
    seen: set[str] = set()
    encoded = [encode_layer(layer, seen) for layer in layers]
    data = assemble_bundle(encoded)
    sizes = BundleSizes([enc.sizes(len(enc.record(0))) for enc in encoded], FIXED_OVERHEAD, len(data))
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


def write_bundle(path: str | os.PathLike, layers: Sequence[LayerPayload]) -> BundleSizes:
    """Encode and write atomically (flows/atomic.py): a failed encode leaves any old file untouched."""
    data, sizes = encode_bundle(layers)
    atomic_write_bytes(path, data)
    log.info("wrote %s (%d bytes)", path, len(data))
    return sizes
