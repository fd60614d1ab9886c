"""CIFAR-10 and Fashion-MNIST loading from generated files in torchvision's layouts, md5 checks and their
switch, the offline errors, and a VGG build on generated 32x32x3 data through C-simulation parity."""

from __future__ import annotations

import gzip
import pickle
import stat
import struct
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch

import flows.data
from flows.build import run_build
from flows.data import CIFAR_ARCHIVE, CIFAR_FOLDER, SKIP_MD5_ENV, file_md5, load_data, make_synthetic
from flows.errors import DataError
from tests.conftest import SMALL

TRAIN_FILES = [f"data_batch_{i}" for i in range(1, 6)]


def write_fake_cifar(root: Path, per_batch: int = 20, n_test: int = 20, seed: int = 0) -> dict:
    """root/cifar-10-batches-py/ with 5 x per_batch train and n_test test images, pickled like the real one.

    The images are learnable (class prototypes + noise, flows.data.make_synthetic). Returns the arrays.
    """
    n_train = 5 * per_batch
    total = int(round((n_train + n_test) / 0.8)) + 5  # make_synthetic splits 80/20; take what we need
    a, b = make_synthetic(total, (3, 32, 32), 10, seed)
    images = torch.cat([a.images, b.images])[: n_train + n_test].numpy()
    labels = torch.cat([a.labels, b.labels])[: n_train + n_test].numpy()
    folder = root / CIFAR_FOLDER
    folder.mkdir(parents=True)
    chunks = [(name, slice(i * per_batch, (i + 1) * per_batch)) for i, name in enumerate(TRAIN_FILES)]
    chunks.append(("test_batch", slice(n_train, n_train + n_test)))
    for name, part in chunks:
        entry = {
            b"batch_label": name.encode(),
            b"labels": [int(v) for v in labels[part]],
            b"data": np.ascontiguousarray(images[part].reshape(-1, 3072)),  # CHW order, as the real files
            b"filenames": [f"{name}_{i}.png".encode() for i in range(len(labels[part]))],
        }
        with open(folder / name, "wb") as f:
            pickle.dump(entry, f, protocol=2)
    return {
        "folder": folder,
        "train_images": images[:n_train],
        "train_labels": labels[:n_train],
        "test_images": images[n_train:],
        "test_labels": labels[n_train:],
    }


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
        monkeypatch.setattr(flows.data, "_cifar_checksums", lambda: (train, test, tgz))

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
    assert SKIP_MD5_ENV in str(err.value) and "\n" not in str(err.value)
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
    import torchvision

    calls = []
    real = torchvision.datasets.CIFAR10

    class FakeCIFAR10:  # stands in for the network: "downloads" generated batches
        train_list, test_list, tgz_md5 = real.train_list, real.test_list, real.tgz_md5

        def __init__(self, root, train, download):
            calls.append((root, train, download))
            write_fake_cifar(Path(root))

    monkeypatch.setattr(torchvision.datasets, "CIFAR10", FakeCIFAR10)
    monkeypatch.setenv(SKIP_MD5_ENV, "1")
    data = load_data("cifar10", cache_dir=tmp_path / "cache", download=True)
    assert calls == [(str(tmp_path / "cache"), True, True)] and len(data.train) == 100

    class OfflineCIFAR10(FakeCIFAR10):
        def __init__(self, root, train, download):
            raise RuntimeError("<urlopen error [Errno -3] Temporary failure in name resolution>\nmore")

    monkeypatch.setattr(torchvision.datasets, "CIFAR10", OfflineCIFAR10)
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


def _write_idx(path: Path, array: np.ndarray, magic: int) -> None:
    header = struct.pack(">II", magic, array.shape[0]) + b"".join(struct.pack(">I", d) for d in array.shape[1:])
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


def test_fashion_mnist_from_generated_idx_files(tmp_path):
    rng = np.random.default_rng(1)
    raw = tmp_path / "data" / "FashionMNIST" / "raw"
    raw.mkdir(parents=True)
    arrays = {}
    for prefix, n in (("train", 30), ("t10k", 12)):
        arrays[prefix] = (rng.integers(0, 256, (n, 28, 28)), rng.integers(0, 10, (n,)))
        _write_idx(raw / f"{prefix}-images-idx3-ubyte.gz", arrays[prefix][0], 2051)
        _write_idx(raw / f"{prefix}-labels-idx1-ubyte.gz", arrays[prefix][1], 2049)
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
    rows = (tmp_path / "build" / "hls4ml_prj" / "tb_data" / "tb_input_features.dat").read_text().splitlines()
    assert len(rows[0].split()) == 3 * 32 * 32
    assert report["accuracy"]["quantized"] > 0.2  # the prototypes are learnable: activations are alive
