"""Deep Compression storage: the compressed model file ("bundle"), its encoder and its decoder.

The storage part of Han, Mao & Dally, "Deep Compression" (ICLR 2016), Sections 3-4. Each layer
arrives pruned (most weights exactly 0) and weight-shared (its nonzero weights take at most 2**b
distinct float32 values); it is stored as a codebook plus relative indices with fillers, each of the
two symbol streams fixed-width, canonical Huffman or constant, whichever is smallest. Decoding is
lossless (bitwise, except that -0.0 weights come back as +0.0).

Modules, lowest layer first (each imports only the ones above it):
- `format`: the file layout (documented there), constants, header, trailer and checksums;
- `sizes`: `LayerSizes` / `BundleSizes`, what each part of the file costs;
- `sparse`: codebook and relative indices with fillers;
- `streams`: fixed-width packing and canonical Huffman coding of one stream;
- `encoder`: `LayerPayload`, `encode_bundle`, `write_bundle`;
- `records`: reading and cross-checking the layer table before anything is decoded;
- `decoder`: `decode_bundle`, `read_bundle`.

The names below are the public API (`from flows.bundle import LayerPayload, read_bundle, write_bundle`).
"""

from flows.bundle.decoder import Decoded, decode_bundle, read_bundle
from flows.bundle.encoder import LayerPayload, encode_bundle, write_bundle
from flows.bundle.format import DEFAULT_MAX_ELEMENTS, HEADER_SIZE, MAGIC, TRAILER_SIZE
from flows.bundle.sizes import BundleSizes, LayerSizes
from flows.bundle.sparse import build_codebook, from_relative, to_relative

__all__ = [
    "DEFAULT_MAX_ELEMENTS",
    "HEADER_SIZE",
    "MAGIC",
    "TRAILER_SIZE",
    "BundleSizes",
    "Decoded",
    "LayerPayload",
    "LayerSizes",
    "build_codebook",
    "decode_bundle",
    "encode_bundle",
    "from_relative",
    "read_bundle",
    "to_relative",
    "write_bundle",
]
