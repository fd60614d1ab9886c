"""`load_data`: a data set by name or path as a `DataBundle` (train, validation and test splits, input shape,
class count, source).

Names: torchvision's MNIST, Fashion-MNIST and CIFAR-10 layouts, scikit-learn's digits, generated data. Paths:
an `.npz` with x_train/y_train/x_test/y_test (flows/data/npz.py) or an image folder in ImageFolder layout
(flows/data/folder.py). `max_train`/`max_test` cut the splits first; the validation split is then carved
from what remains of the training data (flows/data/split.py).
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch

from flows.data.cache import default_cache_dir
from flows.data.cifar import load_cifar10
from flows.data.dataset import DataBundle, Dataset, first_line
from flows.data.folder import load_image_folder
from flows.data.mnist import IDX_DATASETS, load_idx_dataset
from flows.data.npz import load_npz
from flows.data.split import split_validation
from flows.data.synthetic import load_digits_dataset, make_synthetic
from flows.dataconfig import is_dataset_path
from flows.errors import DataError, UsageError

log = logging.getLogger(__name__)

FILE_DATASETS = ("cifar10", *IDX_DATASETS)  # read from files in torchvision's layouts
DATASET_NAMES = (*FILE_DATASETS, "digits", "synthetic")


def _data_path(data_dir: str | Path | None) -> Path | None:
    if not data_dir:
        return None
    path = Path(data_dir)
    if not path.is_dir():
        raise DataError(f"--data-dir {data_dir} is not a folder")
    return path


def _load_files(
    name: str, data_dir: str | Path | None, cache_dir: str | Path | None, download: bool, verify: bool
) -> tuple[Dataset, Dataset, str]:
    """(train, test, source) of a data set read from files; file-system errors become one-line DataErrors."""
    cache = Path(cache_dir) if cache_dir else default_cache_dir()
    try:
        data_path = _data_path(data_dir)
        if name == "cifar10":
            train, test, folder = load_cifar10(data_path, cache, download, verify)
            return train, test, f"CIFAR-10 python batches ({folder})"
        train, test = load_idx_dataset(name, data_path, cache, download)
        return train, test, f"torchvision {IDX_DATASETS[name].torchvision_class} ({data_path or cache})"
    except OSError as exc:  # a file the loaders could not read or write (permissions, a full disk)
        raise DataError(
            f"{name}: cannot access {exc.filename or 'a data file'} ({exc.strerror or first_line(exc)}); check that "
            f"--data-dir is readable and --cache-dir ({cache}) is writable"
        ) from None


def load_data(
    name: str,
    data_dir: str | Path | None = None,
    cache_dir: str | Path | None = None,
    download: bool = True,
    max_train: int | None = None,
    max_test: int | None = None,
    seed: int = 0,
    verify: bool = True,
    val_fraction: float = 0.0,
    val_size: int | None = None,
    val_seed: int = 0,
    image_size=None,
    channels: int | None = None,
    test_fraction: float = 0.2,
) -> DataBundle:
    """Load a data set by name or path; errors say how to provide missing data.

    `verify=False` (or FIREFLOW_SKIP_MD5=1 in the environment) skips CIFAR-10's md5 checks; the batches
    are read without unpickling either way. `val_fraction`/`val_size` carve the validation split (0: none);
    `image_size`, `channels` and `test_fraction` apply to the user's own data (.npz, image folders).
    """
    for what, value in (("max_train", max_train), ("max_test", max_test)):
        if value is not None and value < 1:
            raise UsageError(f"{what} must be a positive number of images, not {value}")
    num_classes, class_names = None, []
    if is_dataset_path(name):
        if name.endswith(".npz"):
            train, test, num_classes, source = load_npz(name, image_size, channels)
        else:
            train, test, num_classes, class_names, source = load_image_folder(name, image_size, channels, test_fraction)
    elif name in FILE_DATASETS:
        train, test, source = _load_files(name, data_dir, cache_dir, download, verify)
    elif name == "digits":
        train, test = load_digits_dataset()
        source = "scikit-learn digits, upscaled to 28x28"
    elif name == "synthetic":
        train, test = make_synthetic(2000, (1, 28, 28), 10, seed)
        source = "synthetic class prototypes + noise, 28x28x1"
    else:
        raise UsageError(
            f"unknown dataset {name!r}; valid: {sorted(DATASET_NAMES)}, or a path to an .npz file or an image folder"
        )
    train, test = train.head(max_train), test.head(max_test)
    train, val = split_validation(train, val_fraction, val_size, val_seed)
    in_shape = tuple(int(s) for s in train.images.shape[1:])
    if num_classes is None:
        num_classes = int(torch.cat([train.labels, val.labels, test.labels]).max()) + 1
    log.info(
        "data %s: %d train, %d validation, %d test images of shape %s",
        name,
        len(train),
        len(val),
        len(test),
        in_shape,
    )
    return DataBundle(name, train, test, in_shape, num_classes, source, val, class_names)  # type: ignore[arg-type]
