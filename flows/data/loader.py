"""`load_data`: a data set by name as a `DataBundle` (train and test splits, input shape, class count, source)."""

from __future__ import annotations

import logging
from pathlib import Path

from flows.data.cache import default_cache_dir
from flows.data.cifar import load_cifar10
from flows.data.dataset import DataBundle, Dataset, first_line
from flows.data.mnist import IDX_DATASETS, load_idx_dataset
from flows.data.synthetic import load_digits_dataset, make_synthetic
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
) -> DataBundle:
    """Load a data set by name; errors say how to provide missing data.

    `verify=False` (or FIREFLOW_SKIP_MD5=1 in the environment) skips CIFAR-10's md5 checks; the batches
    are read without unpickling either way.
    """
    for what, value in (("max_train", max_train), ("max_test", max_test)):
        if value is not None and value < 1:
            raise UsageError(f"{what} must be a positive number of images, not {value}")
    if name in FILE_DATASETS:
        train, test, source = _load_files(name, data_dir, cache_dir, download, verify)
    elif name == "digits":
        train, test = load_digits_dataset()
        source = "scikit-learn digits, upscaled to 28x28"
    elif name == "synthetic":
        train, test = make_synthetic(2000, (1, 28, 28), 10, seed)
        source = "synthetic class prototypes + noise, 28x28x1"
    else:
        raise UsageError(f"unknown dataset {name!r}; valid: {sorted(DATASET_NAMES)}")
    train, test = train.head(max_train), test.head(max_test)
    in_shape = tuple(int(s) for s in train.images.shape[1:])
    num_classes = int(max(train.labels.max(), test.labels.max())) + 1
    log.info("data %s: %d train, %d test images of shape %s", name, len(train), len(test), in_shape)
    return DataBundle(name, train, test, in_shape, num_classes, source)  # type: ignore[arg-type]
