"""The in-memory data types every loader returns: `Dataset` (one split) and `DataBundle` (train + test)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import torch


@dataclass
class Dataset:
    """A labelled split held in memory: uint8 images (N, C, H, W) and int64 labels (N,)."""

    images: torch.Tensor
    labels: torch.Tensor

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def float_images(self, index: slice | torch.Tensor | None = None) -> torch.Tensor:
        x = self.images if index is None else self.images[index]
        return x.float().div_(255.0)

    def head(self, n: int | None) -> Dataset:
        if n is None or n >= len(self):
            return self
        return Dataset(self.images[:n], self.labels[:n])


@dataclass
class DataBundle:
    """Train and test splits plus what the model needs to know about them."""

    name: str
    train: Dataset
    test: Dataset
    in_shape: tuple[int, int, int]
    num_classes: int
    source: str  # where the data came from, for the report

    def fingerprint(self) -> str:
        """Content hash of both splits (images and labels): a build's cache key covers the data itself."""
        h = hashlib.sha256(f"{self.name}|{self.in_shape}|{self.num_classes}".encode())
        for split in (self.train, self.test):
            for tensor in (split.images, split.labels):
                h.update(str(tuple(tensor.shape)).encode())
                h.update(tensor.contiguous().numpy().tobytes())
        return h.hexdigest()[:16]


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (its type name when empty), for one-line errors."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
