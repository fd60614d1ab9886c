"""Data sets that need no files: scikit-learn's 8x8 digits (upscaled) and generated class prototypes (tests)."""

from __future__ import annotations

import torch

from flows.data.dataset import Dataset


def load_digits_dataset(size: int = 28, seed: int = 0) -> tuple[Dataset, Dataset]:
    """scikit-learn's 1,797 8x8 digits, upscaled to size x size (bilinear), split 80/20 deterministically."""
    from sklearn.datasets import load_digits  # scikit-learn is imported only for this data set

    digits = load_digits()
    x = torch.tensor(digits.images, dtype=torch.float32).unsqueeze(1) / 16.0
    x = torch.nn.functional.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
    images = (x.clamp(0, 1) * 255).round().to(torch.uint8)
    labels = torch.tensor(digits.target, dtype=torch.int64)
    order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(seed))
    n_train = int(0.8 * len(labels))
    tr, te = order[:n_train], order[n_train:]
    return Dataset(images[tr], labels[tr]), Dataset(images[te], labels[te])


def make_synthetic(
    n: int, shape: tuple[int, int, int] = (3, 32, 32), num_classes: int = 10, seed: int = 0
) -> tuple[Dataset, Dataset]:
    """Generated, learnable images: each class is a fixed random pattern plus noise (for tests)."""
    g = torch.Generator().manual_seed(seed)
    prototypes = torch.rand((num_classes, *shape), generator=g)
    labels = torch.randint(0, num_classes, (n,), generator=g)
    noise = torch.rand((n, *shape), generator=g)
    images = ((0.6 * prototypes[labels] + 0.4 * noise) * 255).round().to(torch.uint8)
    n_train = int(0.8 * n)
    return Dataset(images[:n_train], labels[:n_train]), Dataset(images[n_train:], labels[n_train:])
