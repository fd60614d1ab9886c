"""The validation split: a fixed part of the training data held out for every automatic choice.

`split_validation(train, fraction, size, seed)` removes `size` images (or `round(fraction * N)`) from
the training split and returns them as the validation split. The choice is a random permutation of
its own generator (`seed`, `data.val_seed`, independent of the build's training seed), so the same
training data always gives the same split; both parts keep the order the images had. Training never
sees the validation images; the test set is only reported.
"""

from __future__ import annotations

import torch

from flows.data.dataset import Dataset, empty_like
from flows.errors import DataError


def validation_count(n_train: int, fraction: float, size: int | None) -> int:
    """How many of `n_train` images the validation split takes (`size` wins over `fraction`)."""
    return int(size) if size is not None else int(round(fraction * n_train))


def split_validation(
    train: Dataset, fraction: float, size: int | None = None, seed: int = 0
) -> tuple[Dataset, Dataset]:
    """(train without the validation images, validation images); (train, empty) when the count is 0."""
    n = len(train)
    n_val = validation_count(n, fraction, size)
    if n_val <= 0:
        return train, empty_like(train)
    if n_val >= n:
        what = f"data.val_size={size}" if size is not None else f"data.val_fraction={fraction}"
        raise DataError(
            f"{what} takes {n_val} of the {n} training images for validation and leaves none to train on; "
            "lower it (or --set data.val_fraction=0 to disable the validation split)"
        )
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    val_index = torch.sort(order[:n_val]).values
    train_index = torch.sort(order[n_val:]).values
    return train.subset(train_index), train.subset(val_index)
