"""A data set from an image folder in torchvision's `ImageFolder` layout: one sub-folder per class.

    DIR/train/<class>/*.png  and  DIR/test/<class>/*.png    two splits as given
    DIR/<class>/*.png                                        one folder, split by `data.test_fraction`

Classes are the sorted folder names (ImageFolder's order; hidden folders are skipped), image files are
those with torchvision's image extensions, found recursively and sorted. Images are read with PIL,
converted to grayscale or RGB (`data.channels`; by default what the files hold, which must then be the
same for all) and resized to `data.image_size` when given (bilinear); without it every image must
already have one size. The one-folder split is stratified (per class, a fixed permutation); both splits
are then shuffled with a fixed generator, so `data.max_train` takes a mix of classes. An empty folder,
a class without images, a single class, mixed sizes or modes, or an unreadable file is a one-line
`DataError`.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from flows.data.arrays import check_classes, image_size_hw
from flows.data.dataset import Dataset, first_line
from flows.errors import DataError

GRAY_MODES = ("1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "F")
SPLIT_SEED = 0


def image_extensions() -> tuple[str, ...]:
    from torchvision.datasets.folder import IMG_EXTENSIONS  # torchvision is imported only for this list

    return tuple(IMG_EXTENSIONS)


def class_folders(root: Path) -> list[str]:
    return sorted(e.name for e in os.scandir(root) if e.is_dir() and not e.name.startswith("."))


def image_files(folder: Path) -> list[Path]:
    exts = image_extensions()
    found = []
    for dirpath, _, names in os.walk(folder, followlinks=True):
        found += [Path(dirpath) / n for n in names if n.lower().endswith(exts)]
    return sorted(found)


def scan(root: Path, classes: list[str] | None = None) -> tuple[list[str], list[tuple[Path, int]]]:
    """(class names, [(file, label)]) of one split; `classes` given: the training split's classes."""
    found = class_folders(root)
    if not found:
        raise DataError(
            f"--dataset {root}: no class folders; expected {root}/<class>/<image>.png (or train/ and test/ with them)"
        )
    is_training = classes is None  # a test split may lack a class; a training split may not
    if classes is None:
        classes = found
    unknown = sorted(set(found) - set(classes))
    if unknown:
        raise DataError(f"--dataset {root}: class folders {unknown} do not exist in the training split {classes}")
    samples = []
    for name in found:
        files = image_files(root / name)
        if not files and is_training:
            raise DataError(
                f"--dataset {root}/{name}: no image files ({', '.join(image_extensions()[:4])}, ...); "
                "remove the folder or add images"
            )
        samples += [(f, classes.index(name)) for f in files]
    if not samples:
        raise DataError(f"--dataset {root}: no image files in its class folders")
    return classes, samples


def read_images(samples: list[tuple[Path, int]], size: tuple[int, int] | None, channels: int | None) -> Dataset:
    """The files as uint8 (N, C, H, W) and int64 labels; mixed sizes (without resize) or modes refused."""
    from PIL import Image, UnidentifiedImageError  # Pillow comes with torchvision

    arrays, first = [], None
    for path, _ in samples:
        try:
            with Image.open(path) as img:
                gray = img.mode in GRAY_MODES if channels is None else channels == 1
                img = img.convert("L" if gray else "RGB")
                if size is not None:
                    img = img.resize((size[1], size[0]), Image.BILINEAR)
                a = np.asarray(img, dtype=np.uint8)
        except (OSError, UnidentifiedImageError, ValueError) as exc:
            raise DataError(f"--dataset: cannot read image {path} ({first_line(exc)}); remove or replace it") from None
        a = a[None] if a.ndim == 2 else np.moveaxis(a, -1, 0)
        if first is None:
            first = (path, a.shape)
        elif a.shape != first[1]:
            what = "sizes" if a.shape[0] == first[1][0] else "modes (grayscale and RGB)"
            raise DataError(
                f"--dataset: images of mixed {what}: {first[0]} is {first[1]} (C, H, W), {path} is {a.shape}; "
                + ("set --set data.image_size=N (or [H,W])" if what == "sizes" else "set --set data.channels=1 or 3")
            )
        arrays.append(a)
    images = torch.from_numpy(np.stack(arrays))
    labels = torch.tensor([label for _, label in samples], dtype=torch.int64)
    return Dataset(images, labels)


def stratified_split(samples: list[tuple[Path, int]], fraction: float) -> tuple[list, list]:
    """(train, test): per class, round(fraction x n) files to test, at least one kept for training."""
    g = torch.Generator().manual_seed(SPLIT_SEED)
    train, test = [], []
    for label in sorted({lab for _, lab in samples}):
        files = [s for s in samples if s[1] == label]
        order = torch.randperm(len(files), generator=g).tolist()
        n_test = min(int(round(fraction * len(files))), len(files) - 1)
        test += [files[i] for i in order[:n_test]]
        train += [files[i] for i in order[n_test:]]
    return train, test


def shuffled(data: Dataset) -> Dataset:
    return data.subset(torch.randperm(len(data), generator=torch.Generator().manual_seed(SPLIT_SEED)))


def load_image_folder(
    root: str | Path, image_size=None, channels: int | None = None, test_fraction: float = 0.2
) -> tuple[Dataset, Dataset, int, list[str], str]:
    """(train, test, number of classes, class names, source description) of an image folder."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"--dataset {root}: no such folder")
    size = image_size_hw(image_size)
    try:
        if (root / "train").is_dir():
            classes, train_samples = scan(root / "train")
            if (root / "test").is_dir():
                _, test_samples = scan(root / "test", classes)
                layout = "train/ and test/"
            else:
                train_samples, test_samples = stratified_split(train_samples, test_fraction)
                layout = f"train/ split {1 - test_fraction:g}/{test_fraction:g}"
        else:
            classes, samples = scan(root)
            train_samples, test_samples = stratified_split(samples, test_fraction)
            layout = f"one folder split {1 - test_fraction:g}/{test_fraction:g}"
    except OSError as exc:
        raise DataError(f"--dataset {root}: cannot read the folder ({exc.strerror or first_line(exc)})") from None
    if not test_samples:
        raise DataError(
            f"--dataset {root}: no test images; add {root}/test/<class>/ or raise data.test_fraction "
            f"(now {test_fraction})"
        )
    both = read_images(train_samples + test_samples, size, channels)  # one pass: one size/mode check for both
    n = len(train_samples)
    train = shuffled(both.subset(torch.arange(n)))
    test = shuffled(both.subset(torch.arange(n, len(both))))
    num_classes = check_classes(train.labels, test.labels, f"--dataset {root}")
    c, h, w = train.images.shape[1:]
    source = f"image folder {root} ({layout}; {len(classes)} classes; {c}x{h}x{w})"
    return train, test, num_classes, classes, source
