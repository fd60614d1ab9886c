"""CIFAR-10 and Fashion-MNIST loading from generated files in torchvision's layouts, md5 checks and their
switch, the offline errors, and a VGG build on generated 32x32x3 data through C-simulation parity.

Refused pickles, stale extractions and damaged archives: tests/test_data_integrity.py."""

from __future__ import annotations

import pickle
import stat
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch

import flows.data.cifar
from flows.api import run_build
from flows.data import CIFAR_ARCHIVE, CIFAR_FOLDER, SKIP_MD5_ENV, file_md5, load_data
from flows.errors import DataError
from tests.conftest import SMALL
from tests.datagen import TRAIN_FILES, write_fake_cifar, write_idx


@pytest.fixture
def fake_cifar(tmp_path):
    data = write_fake_cifar(tmp_path / "data")
    data["root"] = tmp_path / "data"
    return data


@pytest.fixture
def real_md5_of(monkeypatch):
    """Make the expected md5 sums those of the given (generated) folder / archive, as if torchvision listed them."""

    def use(folder: Path, archive: Path | None = None) -> None:
        train = [(n, file_md5(folder / n)) for n in TRAIN_FILES]
        test = [("test_batch", file_md5(folder / "test_batch"))]
        tgz = file_md5(archive) if archive else "0" * 32
        monkeypatch.setattr(flows.data.cifar, "cifar_checksums", lambda: (train, test, tgz))

    monkeypatch.delenv(SKIP_MD5_ENV, raising=False)
    return use


def _read_only(paths: list[Path]) -> None:
    for p in paths:
        p.chmod(p.stat().st_mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))


def test_fake_cifar_loads_as_uint8_chw(fake_cifar, tmp_path):
    folder = fake_cifar["folder"]
    _read_only([*folder.iterdir(), folder])
    try:
        data = load_data(
            "cifar10", data_dir=fake_cifar["root"], cache_dir=tmp_path / "cache", download=False, verify=False
        )
    finally:
        folder.chmod(folder.stat().st_mode | stat.S_IWUSR)
    assert (len(data.train), len(data.test)) == (100, 20)
    assert data.train.images.shape == (100, 3, 32, 32) and data.train.images.dtype == torch.uint8
    assert data.test.images.shape == (20, 3, 32, 32) and data.train.labels.dtype == torch.int64
    assert data.in_shape == (3, 32, 32) and data.num_classes == 10
    assert np.array_equal(data.train.images.numpy(), fake_cifar["train_images"])
    assert np.array_equal(data.test.labels.numpy(), fake_cifar["test_labels"])
    assert str(folder) in data.source
    head = load_data(
        "cifar10", data_dir=fake_cifar["root"], cache_dir=tmp_path / "cache", download=False, verify=False, max_train=7
    )
    assert len(head.train) == 7


def test_md5_checked_by_default_and_env_switch_skips_it(fake_cifar, tmp_path, monkeypatch):
    monkeypatch.delenv(SKIP_MD5_ENV, raising=False)
    with pytest.raises(DataError, match="data_batch_1 is corrupt") as err:
        load_data("cifar10", data_dir=fake_cifar["root"], cache_dir=tmp_path / "cache", download=False)
    message = str(err.value)
    assert "\n" not in message and "replace it with an intact copy" in message and err.value.exit_code == 3
    # issue 12: the message never advises switching the check off
    assert SKIP_MD5_ENV not in message and "verify_md5" not in message
    monkeypatch.setenv(SKIP_MD5_ENV, "1")
    data = load_data("cifar10", data_dir=fake_cifar["root"], cache_dir=tmp_path / "cache", download=False)
    assert len(data.train) == 100


def test_corrupt_batch_is_named(fake_cifar, tmp_path, real_md5_of):
    real_md5_of(fake_cifar["folder"])
    data = load_data("cifar10", data_dir=fake_cifar["root"], cache_dir=tmp_path / "cache", download=False)
    assert len(data.test) == 20  # the generated files pass when their sums are the expected ones
    bad = fake_cifar["folder"] / "data_batch_3"
    raw = bytearray(bad.read_bytes())
    raw[-100] ^= 0xFF
    bad.write_bytes(bytes(raw))
    with pytest.raises(DataError, match=r"data_batch_3 is corrupt \(md5"):
        load_data("cifar10", data_dir=fake_cifar["root"], cache_dir=tmp_path / "cache", download=False)


def test_missing_or_unreadable_batch_is_named(fake_cifar, tmp_path):
    (fake_cifar["folder"] / "test_batch").unlink()
    with pytest.raises(DataError, match="test_batch is missing"):
        load_data("cifar10", data_dir=fake_cifar["root"], cache_dir=tmp_path / "c", download=False, verify=False)
    (fake_cifar["folder"] / "test_batch").write_bytes(b"\x80\x02}q\x00(")  # a truncated pickle
    with pytest.raises(DataError, match="test_batch is not a readable CIFAR-10 batch"):
        load_data("cifar10", data_dir=fake_cifar["root"], cache_dir=tmp_path / "c", download=False, verify=False)
    with open(fake_cifar["folder"] / "test_batch", "wb") as f:
        pickle.dump({b"data": np.zeros((3, 100), np.uint8), b"labels": [0, 1, 2]}, f)
    with pytest.raises(DataError, match="expected N x 3072"):
        load_data("cifar10", data_dir=fake_cifar["root"], cache_dir=tmp_path / "c", download=False, verify=False)


def test_missing_cifar_offline_is_one_clear_line(tmp_path):
    with pytest.raises(DataError) as err:
        load_data("cifar10", cache_dir=tmp_path / "cache", download=False)
    message = str(err.value)
    assert "--data-dir" in message and CIFAR_FOLDER in message and CIFAR_ARCHIVE in message and "\n" not in message
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="has neither"):
        load_data("cifar10", data_dir=tmp_path / "empty", cache_dir=tmp_path / "cache", download=False)


def test_download_through_torchvision_when_allowed(tmp_path, monkeypatch):
    """torchvision downloads only the archive (md5-checked by torchvision); it is extracted and read here.

    torchvision's CIFAR10 class itself is never instantiated: it would unpickle the batches.
    """
    import torchvision
    import torchvision.datasets.utils

    real = torchvision.datasets.CIFAR10
    calls = []
    fake = write_fake_cifar(tmp_path / "generated")

    def fake_download(url, root, filename=None, md5=None):  # stands in for the network
        calls.append((url, root, filename, md5))
        with tarfile.open(Path(root) / filename, "w:gz") as tar:
            tar.add(fake["folder"], arcname=CIFAR_FOLDER)

    class NeverCIFAR10(real):
        def __init__(self, *args, **kwargs):
            raise AssertionError("torchvision's CIFAR10 unpickles the batches; it must not be used")

    monkeypatch.setattr(torchvision.datasets.utils, "download_url", fake_download)
    monkeypatch.setattr(torchvision.datasets, "CIFAR10", NeverCIFAR10)
    monkeypatch.setenv(SKIP_MD5_ENV, "1")
    data = load_data("cifar10", cache_dir=tmp_path / "cache", download=True)
    assert calls == [(real.url, str(tmp_path / "cache"), CIFAR_ARCHIVE, real.tgz_md5)] and len(data.train) == 100
    assert np.array_equal(data.train.images.numpy(), fake["train_images"])

    def offline(url, root, filename=None, md5=None):
        raise RuntimeError("<urlopen error [Errno -3] Temporary failure in name resolution>\nmore")

    monkeypatch.setattr(torchvision.datasets.utils, "download_url", offline)
    with pytest.raises(DataError, match="download failed: <urlopen error") as err:
        load_data("cifar10", cache_dir=tmp_path / "other", download=True)
    assert "\n" not in str(err.value) and "--data-dir" in str(err.value)


def test_archive_is_checked_and_extracted_into_the_cache(fake_cifar, tmp_path, real_md5_of):
    src = tmp_path / "src"
    src.mkdir()
    archive = src / CIFAR_ARCHIVE
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(fake_cifar["folder"], arcname=CIFAR_FOLDER)
    real_md5_of(fake_cifar["folder"], archive)
    cache = tmp_path / "cache"
    data = load_data("cifar10", data_dir=src, cache_dir=cache, download=False)
    assert (cache / CIFAR_FOLDER / "test_batch").is_file() and not (src / CIFAR_FOLDER).exists()
    assert np.array_equal(data.train.images.numpy(), fake_cifar["train_images"])
    assert not [p for p in cache.iterdir() if p.name.startswith(".cifar-extract")]  # no temporary left
    # without data_dir, the cache's extracted copy is found
    again = load_data("cifar10", cache_dir=cache, download=False)
    assert len(again.train) == 100
    real_md5_of(fake_cifar["folder"])  # the archive's expected sum no longer matches
    with pytest.raises(DataError, match=f"{CIFAR_ARCHIVE} is corrupt"):
        load_data("cifar10", data_dir=src, cache_dir=tmp_path / "cache2", download=False)


def test_fashion_mnist_from_generated_idx_files(tmp_path):
    rng = np.random.default_rng(1)
    raw = tmp_path / "data" / "FashionMNIST" / "raw"
    raw.mkdir(parents=True)
    arrays = {}
    for prefix, n in (("train", 30), ("t10k", 12)):
        arrays[prefix] = (rng.integers(0, 256, (n, 28, 28)), rng.integers(0, 10, (n,)))
        write_idx(raw / f"{prefix}-images-idx3-ubyte.gz", arrays[prefix][0], 2051)
        write_idx(raw / f"{prefix}-labels-idx1-ubyte.gz", arrays[prefix][1], 2049)
    data = load_data("fashion_mnist", data_dir=tmp_path / "data", cache_dir=tmp_path / "cache", download=False)
    assert data.train.images.shape == (30, 1, 28, 28) and data.train.images.dtype == torch.uint8
    assert np.array_equal(data.test.images[:, 0].numpy(), arrays["t10k"][0])
    assert np.array_equal(data.train.labels.numpy(), arrays["train"][1])
    assert "FashionMNIST" in data.source
    with pytest.raises(DataError, match="FashionMNIST"):
        load_data("fashion_mnist", cache_dir=tmp_path / "empty_cache", download=False)


def test_vgg_on_generated_cifar_bit_exact(tmp_path, monkeypatch):
    """VGG-19 at width 1/16 on 32x32x3 (five pools) through hls4ml's C simulation, bit-exact.

    1,050 training images: QAT calibration reads 8 batches of 128, and the generated set is learnable.
    """
    write_fake_cifar(tmp_path / "data", per_batch=210, n_test=40)
    overrides = {
        "data.verify_md5": False,  # the generated batches do not have CIFAR-10's md5 sums
        **SMALL,
        "data.dataset": "cifar10",
        "data.data_dir": str(tmp_path / "data"),
        "data.cache_dir": str(tmp_path / "cache"),
        "data.download": False,
        "arch.width": 1 / 16,
        "arch.batch_norm": False,
        "csim.samples": 20,
        "hls.require_fit": False,
        "out_dir": str(tmp_path / "build"),
    }
    report = run_build("vgg19", "pynq-z2", overrides)
    c = report["csim"]
    assert c["samples"] == 20 and c["bit_exact_fraction"] == 1.0 and c["max_abs_diff"] == 0.0
    rows = (tmp_path / "build" / "csim" / "tb_data" / "tb_input_features.dat").read_text().splitlines()
    assert len(rows[0].split()) == 3 * 32 * 32
    assert report["accuracy"]["quantized"] > 0.2  # the prototypes are learnable: activations are alive
