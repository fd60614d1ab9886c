"""Data loading: torchvision's MNIST layout from a read-only folder (generated files), the offline
error, scikit-learn digits and the synthetic set; the training-time augmentation. Damaged and stale
data files: tests/test_data_integrity.py."""

from __future__ import annotations

import os
import stat

import pytest
import torch

from flows.data import load_data
from flows.errors import DataError
from flows.train import shift_images
from tests.datagen import write_fake_mnist


@pytest.fixture
def fake_mnist(tmp_path):
    """A read-only folder in torchvision's MNIST layout with 50 train and 20 test images."""
    raw = tmp_path / "data" / "MNIST" / "raw"
    write_fake_mnist(raw, {"train": 50, "t10k": 20})
    for p in [raw, raw.parent, *raw.iterdir()]:
        p.chmod(p.stat().st_mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))
    yield tmp_path / "data"
    for p in [raw, raw.parent, *raw.iterdir()]:
        p.chmod(p.stat().st_mode | stat.S_IWUSR)


def test_mnist_from_read_only_folder(fake_mnist, tmp_path):
    data = load_data("mnist", data_dir=fake_mnist, cache_dir=tmp_path / "cache", download=False)
    assert (len(data.train), len(data.test)) == (50, 20)
    assert data.in_shape == (1, 28, 28) and data.train.images.dtype == torch.uint8
    # the read-only source was not written to; the cache holds the extracted files
    assert sorted(p.name for p in (fake_mnist / "MNIST" / "raw").iterdir()) == sorted(
        p.name for p in (fake_mnist / "MNIST" / "raw").glob("*.gz")
    )
    assert (tmp_path / "cache" / "MNIST" / "raw" / "train-images-idx3-ubyte").exists()
    again = load_data("mnist", data_dir=fake_mnist, cache_dir=tmp_path / "cache", download=False, max_train=10)
    assert len(again.train) == 10 and torch.equal(again.train.images, data.train.images[:10])


def test_missing_mnist_offline_is_a_clear_error(tmp_path):
    with pytest.raises(DataError, match="--data-dir"):
        load_data("mnist", cache_dir=tmp_path / "cache", download=False)


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write anywhere")
def test_unwritable_cache(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    with pytest.raises(DataError, match="cache"):
        load_data("mnist", cache_dir=locked / "sub", download=False)


def test_digits_and_synthetic():
    digits = load_data("digits")
    assert digits.in_shape == (1, 28, 28) and digits.num_classes == 10
    assert len(digits.train) + len(digits.test) == 1797
    assert digits.train.float_images().max() <= 1.0
    synth = load_data("synthetic")
    assert synth.in_shape == (1, 28, 28) and len(synth.train) == 1600


def test_shift_images_moves_content_and_keeps_shape():
    x = torch.zeros(4, 1, 8, 8)
    x[:, :, 4, 4] = 1.0
    out = shift_images(x, 2, torch.Generator().manual_seed(0))
    assert out.shape == x.shape
    assert torch.all(out.sum(dim=(1, 2, 3)) == 1.0)  # a shift by <= 2 keeps the centre pixel inside
    positions = {tuple(torch.nonzero(o[0])[0].tolist()) for o in out}
    assert all(abs(r - 4) <= 2 and abs(c - 4) <= 2 for r, c in positions)
