"""Checks and conversions shared by the user's own data sources (`.npz` arrays, image folders).

Images become uint8 (N, C, H, W) like every other data set of the flow: uint8 as it is, other integers
when they lie in 0..255, floats in [0, 1] scaled by 255 (floats up to 255 taken as they are), rounded.
`(N, H, W)` is grayscale; 4-D arrays are channels-last `(N, H, W, C)` when the last axis has 1 or 3
entries (numpy/Keras/PIL order), else channels-first `(N, C, H, W)`. `data.channels` converts to
grayscale (ITU-R 601 luma, as PIL's "L") or RGB (the gray channel repeated); `data.image_size`
resizes (bilinear, antialiased). Labels are integers 0..K-1; K is the largest training label + 1.
Everything that does not fit is a one-line `DataError` naming the array and the fix.
"""

from __future__ import annotations

import logging

import numpy as np
import torch
import torch.nn.functional as F

from flows.errors import DataError

log = logging.getLogger(__name__)

LUMA = (0.299, 0.587, 0.114)  # ITU-R 601-2, what PIL's convert("L") uses


def image_size_hw(image_size) -> tuple[int, int] | None:
    """`data.image_size` (None, an int for a square, or [height, width]) as (height, width)."""
    if image_size is None:
        return None
    if isinstance(image_size, int) and not isinstance(image_size, bool):
        return (image_size, image_size)
    return (int(image_size[0]), int(image_size[1]))


def images_from_array(x: np.ndarray, where: str) -> torch.Tensor:
    """An image array (see the module docstring) as uint8 (N, C, H, W)."""
    if x.dtype == object or x.dtype.kind not in "uif":
        raise DataError(f"{where}: images of type {x.dtype} are not supported; store uint8 (0..255) or float (0..1)")
    if x.ndim == 3:
        x = x[:, None]
    elif x.ndim == 4:
        if x.shape[-1] in (1, 3):
            x = np.moveaxis(x, -1, 1)
        elif x.shape[1] not in (1, 3):
            raise DataError(
                f"{where}: image array of shape {x.shape} has neither 1 nor 3 channels (first or last axis)"
            )
    else:
        raise DataError(f"{where}: image array of shape {x.shape}; expected (N, H, W), (N, H, W, C) or (N, C, H, W)")
    if x.shape[0] == 0:
        raise DataError(f"{where}: no images (the array is empty)")
    if x.dtype == np.uint8:
        return torch.from_numpy(np.ascontiguousarray(x))
    if x.dtype.kind == "f":
        if not np.isfinite(x).all():
            raise DataError(f"{where}: images contain NaN or infinite values")
        lo, hi = float(x.min()), float(x.max())
        if lo < 0 or hi > 255:
            raise DataError(
                f"{where}: image values span {lo:g}..{hi:g}; store raw pixels (0..1 or 0..255), not normalized ones"
            )
        x = x * 255.0 if hi <= 1.0 else x
        return torch.from_numpy(np.ascontiguousarray(np.rint(x).astype(np.uint8)))
    lo, hi = int(x.min()), int(x.max())
    if lo < 0 or hi > 255:
        raise DataError(f"{where}: integer image values span {lo}..{hi}; expected 0..255")
    return torch.from_numpy(np.ascontiguousarray(x.astype(np.uint8)))


def labels_from_array(y: np.ndarray, n_images: int, where: str) -> torch.Tensor:
    """Integer class labels (N,) (or (N, 1)) matching `n_images`, as int64."""
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1:
        raise DataError(f"{where}: labels of shape {y.shape}; expected one integer class per image, shape (N,)")
    if y.dtype.kind == "f" and np.isfinite(y).all() and (y == np.rint(y)).all():
        y = y.astype(np.int64)
    if y.dtype.kind not in "iu":
        raise DataError(f"{where}: labels of type {y.dtype}; expected integer class indices 0..K-1")
    if len(y) != n_images:
        raise DataError(f"{where}: {len(y)} labels for {n_images} images; one label per image")
    if len(y) and int(y.min()) < 0:
        raise DataError(f"{where}: label {int(y.min())} is out of range; labels are class indices 0..K-1")
    return torch.from_numpy(y.astype(np.int64))


def convert_channels(images: torch.Tensor, channels: int | None, where: str) -> torch.Tensor:
    """uint8 (N, C, H, W) with C converted to `channels` (1: luma, 3: gray repeated); None keeps C."""
    c = images.shape[1]
    if channels is None or channels == c:
        return images
    if channels == 1 and c == 3:
        weights = torch.tensor(LUMA).view(1, 3, 1, 1)
        return (images.float() * weights).sum(1, keepdim=True).round().clamp(0, 255).to(torch.uint8)
    if channels == 3 and c == 1:
        return images.repeat(1, 3, 1, 1)
    raise DataError(f"{where}: cannot convert {c}-channel images to {channels} channels")


def resize_images(images: torch.Tensor, size: tuple[int, int] | None) -> torch.Tensor:
    """uint8 (N, C, H, W) resized to `size` (bilinear, antialiased), in chunks to bound memory."""
    if size is None or tuple(images.shape[2:]) == tuple(size):
        return images
    out = []
    for start in range(0, images.shape[0], 1024):
        x = images[start : start + 1024].float()
        x = F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=True)
        out.append(x.round().clamp(0, 255).to(torch.uint8))
    return torch.cat(out)


def check_classes(train_labels: torch.Tensor, test_labels: torch.Tensor, where: str) -> int:
    """The class count (largest training label + 1); refuses one class and test labels never trained on."""
    classes = torch.unique(train_labels)
    if len(classes) < 2:
        raise DataError(
            f"{where}: the training labels hold {len(classes)} class ({classes.tolist()}); a classifier needs 2 or more"
        )
    num_classes = int(classes.max()) + 1
    if len(test_labels) and int(test_labels.max()) >= num_classes:
        raise DataError(
            f"{where}: test label {int(test_labels.max())} is out of range: the training labels span "
            f"0..{num_classes - 1}"
        )
    if len(classes) < num_classes:
        missing = sorted(set(range(num_classes)) - set(classes.tolist()))
        log.warning("%s: classes %s have no training images (labels span 0..%d)", where, missing, num_classes - 1)
    return num_classes
