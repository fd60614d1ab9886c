"""A data set from one `.npz` file with the arrays `x_train`, `y_train`, `x_test`, `y_test`.

Read with `np.load(allow_pickle=False)`: an object array (which would need unpickling) is refused, not
executed. Image and label conventions: flows/data/arrays.py. Train and test images must have one
shape after the optional resize (`data.image_size`) and channel conversion (`data.channels`).
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from flows.data.arrays import (
    check_classes,
    convert_channels,
    image_size_hw,
    images_from_array,
    labels_from_array,
    resize_images,
)
from flows.data.dataset import Dataset, first_line
from flows.errors import DataError

NPZ_ARRAYS = ("x_train", "y_train", "x_test", "y_test")


def read_npz_arrays(path: Path) -> dict[str, np.ndarray]:
    """The four arrays of `path`; a missing, unreadable or pickled file is a one-line DataError."""
    if not path.is_file():
        raise DataError(f"--dataset {path}: no such file")
    if not zipfile.is_zipfile(path):  # np.load would try to unpickle anything else (refused, but say what it is)
        raise DataError(f"--dataset {path}: not a readable .npz file (not a zip archive); write it with np.savez")
    try:
        with np.load(path, allow_pickle=False) as archive:
            missing = [k for k in NPZ_ARRAYS if k not in archive.files]
            if missing:
                raise DataError(
                    f"--dataset {path}: missing arrays {missing} (it holds {sorted(archive.files)}); "
                    f"save it with np.savez(path, {', '.join(f'{k}=...' for k in NPZ_ARRAYS)})"
                )
            return {k: archive[k] for k in NPZ_ARRAYS}
    except DataError:
        raise
    except ValueError as exc:
        if "allow_pickle" in str(exc):
            raise DataError(
                f"--dataset {path}: holds object arrays, which only unpickling could read (refused); "
                "store plain numeric arrays"
            ) from None
        raise DataError(f"--dataset {path}: not a readable .npz file ({first_line(exc)})") from None
    except (OSError, EOFError, zipfile.BadZipFile, KeyError) as exc:
        raise DataError(f"--dataset {path}: not a readable .npz file ({first_line(exc)})") from None


def load_npz(path: str | Path, image_size=None, channels: int | None = None) -> tuple[Dataset, Dataset, int, str]:
    """(train, test, number of classes, source description) from an .npz file."""
    path = Path(path)
    arrays = read_npz_arrays(path)
    size = image_size_hw(image_size)
    splits = {}
    for split in ("train", "test"):
        where = f"--dataset {path} x_{split}"
        images = images_from_array(arrays[f"x_{split}"], where)
        images = resize_images(convert_channels(images, channels, where), size)
        labels = labels_from_array(arrays[f"y_{split}"], images.shape[0], f"--dataset {path} y_{split}")
        splits[split] = Dataset(images, labels)
    train, test = splits["train"], splits["test"]
    if train.images.shape[1:] != test.images.shape[1:]:
        raise DataError(
            f"--dataset {path}: train images are {tuple(train.images.shape[1:])} (C, H, W) but test images "
            f"{tuple(test.images.shape[1:])}; give them one shape (or --set data.image_size=N --set data.channels=C)"
        )
    num_classes = check_classes(train.labels, test.labels, f"--dataset {path}")
    c, h, w = train.images.shape[1:]
    return train, test, num_classes, f"arrays of {path.name} ({c}x{h}x{w}, {num_classes} classes)"
