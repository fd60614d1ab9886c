"""Generated data files in torchvision's layouts, for the data tests: IDX (MNIST) and CIFAR-10 batches.

`py2_style_batch` writes a batch opcode by opcode the way Python 2's cPickle wrote the real CIFAR-10
files (str keys and payload as BINSTRING, `numpy.core.multiarray._reconstruct`), which Python 3's
pickle cannot produce.
"""

from __future__ import annotations

import gzip
import pickle
import struct
from pathlib import Path

import numpy as np
import torch

from flows.data import CIFAR_FOLDER, make_synthetic

TRAIN_FILES = [f"data_batch_{i}" for i in range(1, 6)]
IDX_FILES = {  # split -> (images file, labels file)
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "t10k": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


def idx_bytes(array: np.ndarray, magic: int) -> bytes:
    header = struct.pack(">II", magic, array.shape[0]) + b"".join(struct.pack(">I", d) for d in array.shape[1:])
    return header + array.astype(np.uint8).tobytes()


def write_idx(path: Path, array: np.ndarray, magic: int) -> None:
    """A gzip-compressed IDX file (magic 2051 for images, 2049 for labels)."""
    with gzip.open(path, "wb") as f:
        f.write(idx_bytes(array, magic))


def write_fake_mnist(raw: Path, counts: dict[str, int] | None = None, seed: int = 0) -> dict[str, np.ndarray]:
    """raw/{train,t10k}-{images,labels}-*.gz with random images and labels 0..9; returns the arrays by file name."""
    rng = np.random.default_rng(seed)
    raw.mkdir(parents=True, exist_ok=True)
    arrays = {}
    for prefix, n in (counts or {"train": 50, "t10k": 20}).items():
        images, labels = IDX_FILES[prefix]
        arrays[images] = rng.integers(0, 256, (n, 28, 28)).astype(np.uint8)
        arrays[labels] = rng.integers(0, 10, (n,)).astype(np.uint8)
        write_idx(raw / f"{images}.gz", arrays[images], 2051)
        write_idx(raw / f"{labels}.gz", arrays[labels], 2049)
    return arrays


def write_fake_cifar(root: Path, per_batch: int = 20, n_test: int = 20, seed: int = 0) -> dict:
    """root/cifar-10-batches-py/ with 5 x per_batch train and n_test test images, pickled like the real one.

    The images are learnable (class prototypes + noise, flows.data.make_synthetic). Returns the arrays.
    """
    n_train = 5 * per_batch
    total = int(round((n_train + n_test) / 0.8)) + 5  # make_synthetic splits 80/20; take what we need
    a, b = make_synthetic(total, (3, 32, 32), 10, seed)
    images = torch.cat([a.images, b.images])[: n_train + n_test].numpy()
    labels = torch.cat([a.labels, b.labels])[: n_train + n_test].numpy()
    folder = root / CIFAR_FOLDER
    folder.mkdir(parents=True)
    chunks = [(name, slice(i * per_batch, (i + 1) * per_batch)) for i, name in enumerate(TRAIN_FILES)]
    chunks.append(("test_batch", slice(n_train, n_train + n_test)))
    for name, part in chunks:
        entry = {
            b"batch_label": name.encode(),
            b"labels": [int(v) for v in labels[part]],
            b"data": np.ascontiguousarray(images[part].reshape(-1, 3072)),  # CHW order, as the real files
            b"filenames": [f"{name}_{i}.png".encode() for i in range(len(labels[part]))],
        }
        with open(folder / name, "wb") as f:
            pickle.dump(entry, f, protocol=2)
    return {
        "folder": folder,
        "train_images": images[:n_train],
        "train_labels": labels[:n_train],
        "test_images": images[n_train:],
        "test_labels": labels[n_train:],
    }


def _binstring(data: bytes) -> bytes:
    if len(data) < 256:
        return b"U" + bytes([len(data)]) + data  # SHORT_BINSTRING
    return b"T" + struct.pack("<i", len(data)) + data  # BINSTRING


def _binint(value: int) -> bytes:
    return b"J" + struct.pack("<i", value)  # BININT


def py2_style_batch(data: np.ndarray, labels: list[int], name: bytes = b"training batch 1 of 5") -> bytes:
    """A CIFAR-10 batch as Python 2's cPickle (protocol 2) wrote it: str -> BINSTRING, numpy 1 globals."""
    assert data.dtype == np.uint8 and data.ndim == 2
    out = [b"\x80\x02", b"}", b"("]  # PROTO 2, EMPTY_DICT, MARK
    out += [_binstring(b"data"), b"cnumpy.core.multiarray\n_reconstruct\n", b"cnumpy\nndarray\n"]
    out += [_binint(0), b"\x85", _binstring(b"b"), b"\x87", b"R"]  # (0,), 'b' -> TUPLE3, REDUCE
    out += [b"(", _binint(1), _binint(data.shape[0]), _binint(data.shape[1]), b"\x86"]  # MARK 1 (N, 3072)
    out += [b"cnumpy\ndtype\n", _binstring(b"u1"), _binint(0), _binint(1), b"\x87", b"R"]
    out += [b"(", _binint(3), _binstring(b"|"), b"NNN", _binint(-1), _binint(-1), _binint(0), b"t", b"b"]
    out += [b"\x89", _binstring(data.tobytes()), b"t", b"b"]  # NEWFALSE, payload, TUPLE, BUILD
    out += [_binstring(b"labels"), b"]", b"("] + [_binint(int(v)) for v in labels] + [b"e"]  # list, APPENDS
    out += [_binstring(b"batch_label"), _binstring(name), b"u", b"."]  # SETITEMS, STOP
    return b"".join(out)
