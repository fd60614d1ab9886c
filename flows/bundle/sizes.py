"""Size accounting of a bundle: what every layer and the whole file cost, by kind, for reports.

`LayerSizes` holds one layer's counts and bytes (streams as written and as they would be fixed-width,
codebook, code tables, bias, record metadata); `BundleSizes` sums them and adds the header and trailer,
so that `BundleSizes.bytes_total` is the length of the file.
"""

from __future__ import annotations

from dataclasses import dataclass

from flows.bundle.format import ceil8


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
        return ceil8(self.bits_weights_fixed) + ceil8(self.bits_index_fixed)

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
