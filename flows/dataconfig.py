"""The `data` section of the build configuration: where the data comes from, the validation split, and
the keys of the user's own data (an `.npz` or an image folder); validated here, used by flows/data/.

A part of flows/config.py (which imports and re-exports `DataConfig`), kept apart to keep both small.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flows.errors import UsageError

DATASETS = ("mnist", "fashion_mnist", "cifar10", "digits", "synthetic")
SPLIT_SEED_MAX = 2**32 - 1


@dataclass
class DataConfig:
    """Where the data comes from. `data_dir` holds torchvision's layout (e.g. MNIST/raw/*.gz); `dataset` is a
    name (DATASETS) or a path: an image folder (ImageFolder layout) or an .npz (x_train, y_train, x_test, y_test)."""

    dataset: str = "mnist"
    data_dir: str | None = None
    cache_dir: str | None = None  # writable cache; default ~/.cache/fireflow/data
    download: bool = True  # let torchvision download when the data is not found
    max_train: int | None = None  # use only the first N training images (quick runs, tests)
    max_test: int | None = None
    augment: bool = True  # random +-2 pixel shifts during training
    verify_md5: bool = True  # check CIFAR-10 batch files against torchvision's md5 sums
    # validation split carved from the training data (after max_train); every automatic choice uses it, the
    # test set is only reported. val_size (images) wins over val_fraction; 0 disables the split
    val_fraction: float = 0.1
    val_size: int | None = None
    val_seed: int = 0  # the split's own permutation seed (independent of `seed`)
    # the user's own data: resize to image_size (int, or [height, width]); channels 1 (grayscale) or 3 (RGB)
    # (None: as stored); test_fraction splits an image folder that has no train/ and test/ sub-folders
    image_size: Any = None
    channels: int | None = None
    test_fraction: float = 0.2


def is_dataset_path(name: str) -> bool:
    """`dataset` names the user's own data (an .npz file or an image folder), not a built-in data set."""
    return name not in DATASETS and (name.endswith(".npz") or "/" in name or "\\" in name or Path(name).is_dir())


def _positive_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def validate_data(d: DataConfig) -> None:
    """Choice and range checks of the data section (UsageError naming the key)."""
    if not is_dataset_path(d.dataset) and d.dataset not in DATASETS:
        raise UsageError(
            f"config data.dataset = {d.dataset!r} is not valid; choose one of {list(DATASETS)}, "
            "or give a path to an image folder or an .npz file"
        )
    for key in ("max_train", "max_test"):
        if getattr(d, key) is not None and getattr(d, key) <= 0:
            raise UsageError(f"config data.{key} = {getattr(d, key)!r} must be > 0")
    if not 0 <= d.val_fraction < 1:
        raise UsageError(f"config data.val_fraction = {d.val_fraction} must be in [0, 1) (0 disables the split)")
    if d.val_size is not None and d.val_size < 0:
        raise UsageError(f"config data.val_size = {d.val_size} must be >= 0 (0 disables the split)")
    if not 0 <= d.val_seed <= SPLIT_SEED_MAX:
        raise UsageError(f"config data.val_seed = {d.val_seed} must be in 0..{SPLIT_SEED_MAX}")
    if not 0 < d.test_fraction < 1:
        raise UsageError(f"config data.test_fraction = {d.test_fraction} must be in (0, 1)")
    if d.channels is not None and d.channels not in (1, 3):
        raise UsageError(f"config data.channels = {d.channels} must be 1 (grayscale) or 3 (RGB)")
    size = d.image_size
    pair = isinstance(size, list) and len(size) == 2 and all(map(_positive_int, size))
    ok = size is None or _positive_int(size) or pair
    if not ok:
        raise UsageError(f"config data.image_size = {size!r} must be a positive integer or [height, width]")
