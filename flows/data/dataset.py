"""The in-memory data types every loader returns: `Dataset` (one split) and `DataBundle` (train, validation
and test splits plus what the model needs to know about them)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import torch


@dataclass
class Dataset:
    """A labelled split held in memory: uint8 images (N, C, H, W) and int64 labels (N,).

    `to(device)` gives the split on a device; the copy is kept, so a build moves each split once.
    """

    images: torch.Tensor
    labels: torch.Tensor
    moved: dict = field(default_factory=dict, init=False, repr=False, compare=False)

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def float_images(self, index: slice | torch.Tensor | None = None) -> torch.Tensor:
        x = self.images if index is None else self.images[index]
        return x.float().div_(255.0)

    def head(self, n: int | None) -> Dataset:
        if n is None or n >= len(self):
            return self
        return Dataset(self.images[:n], self.labels[:n])

    @property
    def device(self) -> torch.device:
        return self.images.device

    def to(self, device: torch.device | str | None) -> Dataset:
        """This split on `device` (itself when it is there already; else a copy made once and kept)."""
        if device is None:
            return self
        device = torch.device(device)
        if device == self.device or (device.type == self.device.type and device.index is None):
            return self
        key = str(device)
        if key not in self.moved:
            self.moved[key] = Dataset(self.images.to(device), self.labels.to(device))
        return self.moved[key]

    def subset(self, index: torch.Tensor) -> Dataset:
        return Dataset(self.images[index], self.labels[index])


def empty_like(split: Dataset) -> Dataset:
    """A split with no images of the same image shape (the validation split when it is disabled)."""
    return Dataset(split.images[:0].clone(), split.labels[:0].clone())


@dataclass
class DataBundle:
    """Train, test and validation splits plus what the model needs to know about them.

    `val` is carved from the training data (flows/data/split.py) and is what every automatic choice
    of a build is measured on; `test` is only reported. `val` is empty (len 0) when the split is
    disabled (`data.val_fraction=0`).
    """

    name: str
    train: Dataset
    test: Dataset
    in_shape: tuple[int, int, int]
    num_classes: int
    source: str  # where the data came from, for the report
    val: Dataset | None = None
    class_names: list[str] = field(default_factory=list)  # image folders: the class folder names

    def __post_init__(self) -> None:
        if self.val is None:
            self.val = empty_like(self.train)

    def fingerprint(self) -> str:
        """Content hash of every split (images and labels): a build's cache key covers the data itself."""
        h = hashlib.sha256(f"{self.name}|{self.in_shape}|{self.num_classes}".encode())
        splits = (self.train, self.test) if not len(self.val) else (self.train, self.val, self.test)
        for split in splits:
            for tensor in (split.images, split.labels):
                h.update(str(tuple(tensor.shape)).encode())
                h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
        if self.class_names:
            h.update("|".join(self.class_names).encode())
        return h.hexdigest()[:16]


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (its type name when empty), for one-line errors."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
