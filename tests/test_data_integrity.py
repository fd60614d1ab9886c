"""Issue 12, data: pickles that would run code are refused, extracted files follow their archives, and
damaged or malformed data files are one-line DataErrors (exit 3) naming the file. Generated files only."""

from __future__ import annotations

import gzip
import os
import pickle
import stat
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch

import flows.data.cifar
from flows.config import DATASETS
from flows.data import CIFAR_ARCHIVE, CIFAR_FOLDER, DATASET_NAMES, SKIP_MD5_ENV, load_data, read_cifar_batch
from flows.data.safe_pickle import load_restricted
from flows.errors import DataError, UsageError
from tests.datagen import (
    IDX_FILES,
    TRAIN_FILES,
    idx_bytes,
    py2_style_batch,
    write_fake_cifar,
    write_fake_mnist,
    write_idx,
)

TRAIN_IMAGES, TRAIN_LABELS = IDX_FILES["train"]


def one_line_data_error(excinfo: pytest.ExceptionInfo) -> str:
    message = str(excinfo.value)
    assert excinfo.value.exit_code == 3 and "\n" not in message and "Traceback" not in message
    return message


# ----------------------------------------------------------------------------------- refused pickles


class RunsCode:
    """Unpickling this calls os.system: what a crafted data_batch_1 did before issue 12."""

    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self):
        return (os.system, (self.command,))


class Evaluates:
    def __reduce__(self):
        return (eval, ("__import__('pathlib').Path('EVAL_RAN').touch()",))


def crafted_batches(marker: Path) -> dict[str, bytes]:
    data = np.zeros((2, 3072), np.uint8)
    return {
        "os.system": pickle.dumps({b"data": data, b"labels": [0, 1], b"x": RunsCode(f"touch {marker}")}, protocol=2),
        "os.system as the whole file": pickle.dumps(RunsCode(f"touch {marker}"), protocol=4),
        "eval": pickle.dumps({b"data": data, b"labels": Evaluates()}, protocol=5),
        "object array": pickle.dumps({b"data": np.array([RunsCode(f"touch {marker}")] * 2, dtype=object)}),
        "float array": pickle.dumps({b"data": data.astype(np.float32), b"labels": [0, 1]}),
        "structured dtype": pickle.dumps({b"data": np.zeros(2, dtype=[("a", "u1"), ("b", "u1")]), b"labels": [0]}),
        "dict subclass": pickle.dumps(__import__("collections").OrderedDict({b"data": data, b"labels": [0, 1]})),
    }


@pytest.mark.parametrize("kind", list(crafted_batches(Path("m"))))
def test_a_batch_that_would_run_code_is_refused_with_md5_off(kind, tmp_path, monkeypatch):
    marker = tmp_path / "CODE_RAN"
    data = write_fake_cifar(tmp_path / "data")
    (data["folder"] / "data_batch_1").write_bytes(crafted_batches(marker)[kind])
    monkeypatch.setenv(SKIP_MD5_ENV, "1")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(DataError, match="data_batch_1 is not a readable CIFAR-10 batch") as err:
        load_data("cifar10", data_dir=tmp_path / "data", cache_dir=tmp_path / "cache", download=False, verify=False)
    message = one_line_data_error(err)
    assert "not loaded" in message and SKIP_MD5_ENV not in message
    assert not marker.exists() and not (tmp_path / "EVAL_RAN").exists()


def test_the_refusal_names_the_global(tmp_path):
    raw = pickle.dumps({b"x": RunsCode("true")}, protocol=2)
    with pytest.raises(DataError, match=r"\.system is not part of a CIFAR-10 batch"):
        load_restricted(raw, "batch")


def test_a_small_file_describing_a_huge_tree_is_refused_quickly():
    leaf = [0] * 1000
    middle = [leaf] * 1000
    raw = pickle.dumps({b"data": [middle] * 1000, b"labels": []}, protocol=4)  # 10^9 items in 6 kB
    assert len(raw) < 10_000
    with pytest.raises(DataError, match="wider than a CIFAR-10 batch"):
        load_restricted(raw, "batch")


@pytest.mark.parametrize("protocol", [2, 3, 4, 5])
def test_real_structure_loads_with_every_protocol(protocol):
    data = np.arange(3 * 3072, dtype=np.int64).astype(np.uint8).reshape(3, 3072)
    entry = {b"batch_label": b"b", b"labels": [1, 2, 9], b"data": data, b"filenames": [b"a.png", b"b.png", b"c.png"]}
    got = load_restricted(pickle.dumps(entry, protocol=protocol), "batch")
    assert np.array_equal(got[b"data"], data) and got[b"data"].dtype == np.uint8 and got[b"labels"] == [1, 2, 9]
    fortran = load_restricted(pickle.dumps({b"d": np.asfortranarray(data[:, :4])}, protocol=protocol), "batch")
    assert np.array_equal(fortran[b"d"], data[:, :4])
    labels = load_restricted(pickle.dumps({b"labels": np.array([3, 4], dtype=">i4")}, protocol=protocol), "batch")
    assert labels[b"labels"].tolist() == [3, 4]


def test_python2_style_batch_with_numpy1_globals_loads(tmp_path):
    """The real files: cPickle protocol 2, str keys, numpy.core.multiarray._reconstruct."""
    data = np.random.default_rng(0).integers(0, 256, (4, 3072)).astype(np.uint8)
    path = tmp_path / "data_batch_1"
    path.write_bytes(py2_style_batch(data, [0, 3, 9, 1]))
    batch = read_cifar_batch(path)
    assert np.array_equal(batch.images.numpy(), data.reshape(4, 3, 32, 32)) and batch.labels.tolist() == [0, 3, 9, 1]


def test_array_whose_bytes_do_not_match_its_shape_is_refused(tmp_path):
    data = np.zeros((2, 3072), np.uint8)
    raw = py2_style_batch(data, [0, 1]).replace(
        b"J\x02\x00\x00\x00J\x00\x0c\x00\x00", b"J\x03\x00\x00\x00J\x00\x0c\x00\x00"
    )
    with pytest.raises(DataError, match="holding 6144 bytes"):
        load_restricted(raw, "batch")


@pytest.mark.parametrize(
    "entry, match",
    [
        ({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0, 10]}, "labels outside 0..9"),
        ({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0, -1]}, "labels outside 0..9"),
        ({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0]}, "expected N x 3072 and N labels"),
        ({b"data": np.zeros((2, 3072), np.uint16), b"labels": [0, 1]}, "uint16 pixels"),
        ({b"data": np.zeros((2, 3072), np.uint8), b"labels": [b"a", b"b"]}, "labels that are not a list of integers"),
        ({b"data": np.zeros((2, 3072), np.uint8), b"labels": [b"1", b"2"]}, "labels that are not a list of integers"),
        ({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0.5, 1.0]}, "labels that are not a list of integers"),
        ({b"data": np.zeros((2, 3072), np.uint8), b"labels": [True, 2**70]}, "labels that are not a list of integers"),
        ([1, 2], "not a dict"),
    ],
)
def test_malformed_batches_are_named(entry, match, tmp_path):
    path = tmp_path / "test_batch"
    path.write_bytes(pickle.dumps(entry, protocol=2))
    with pytest.raises(DataError, match=match) as err:
        read_cifar_batch(path)
    assert str(path) in one_line_data_error(err)


# ------------------------------------------------------------------------------------- MNIST cache


@pytest.fixture
def mnist(tmp_path):
    raw = tmp_path / "data" / "MNIST" / "raw"
    return {"raw": raw, "arrays": write_fake_mnist(raw), "root": tmp_path / "data", "cache": tmp_path / "cache"}


def load_mnist(m, **kw):
    return load_data("mnist", data_dir=m["root"], cache_dir=m["cache"], download=False, **kw)


def test_changed_source_is_extracted_again_even_at_the_same_size(mnist):
    first = load_mnist(mnist)
    assert np.array_equal(first.train.images[:, 0].numpy(), mnist["arrays"][TRAIN_IMAGES])
    cached = mnist["cache"] / "MNIST" / "raw" / TRAIN_IMAGES
    assert (cached.parent / f"{TRAIN_IMAGES}.source.json").is_file()
    new = np.random.default_rng(7).integers(0, 256, (50, 28, 28)).astype(np.uint8)
    write_idx(mnist["raw"] / f"{TRAIN_IMAGES}.gz", new, 2051)
    again = load_mnist(mnist)
    assert np.array_equal(again.train.images[:, 0].numpy(), new)
    assert np.array_equal(np.frombuffer(cached.read_bytes()[16:], np.uint8).reshape(50, 28, 28), new)


def test_truncated_source_with_a_warm_cache_is_a_data_error(mnist):
    load_mnist(mnist)  # warm the cache
    gz = mnist["raw"] / f"{TRAIN_IMAGES}.gz"
    gz.write_bytes(gz.read_bytes()[: gz.stat().st_size // 2])
    with pytest.raises(DataError, match="is not an intact gzip file") as err:
        load_mnist(mnist)
    message = one_line_data_error(err)
    assert str(gz) in message and "end-of-stream marker" in message and "intact copy" in message


def test_tampered_extracted_file_is_extracted_again(mnist):
    load_mnist(mnist)
    cached = mnist["cache"] / "MNIST" / "raw" / TRAIN_IMAGES
    raw = bytearray(cached.read_bytes())
    raw[100] ^= 0xFF
    cached.write_bytes(bytes(raw))
    again = load_mnist(mnist)
    assert np.array_equal(again.train.images[:, 0].numpy(), mnist["arrays"][TRAIN_IMAGES])
    # without an archive to extract from, a changed extracted file is an error, never silently used
    (mnist["cache"] / "MNIST" / "raw" / f"{TRAIN_IMAGES}.gz").unlink()
    cached.write_bytes(bytes(raw))
    with pytest.raises(DataError, match="no longer matches") as err:
        load_data("mnist", cache_dir=mnist["cache"], download=False)
    one_line_data_error(err)


def _replace_gz(path: Path, payload: bytes) -> None:
    with gzip.open(path, "wb") as f:
        f.write(payload)


@pytest.mark.parametrize(
    "file, payload, match",
    [
        (TRAIN_IMAGES, idx_bytes(np.zeros((50, 28, 28)), 2049), "magic number 0x00000801; expected 0x00000803"),
        (TRAIN_IMAGES, idx_bytes(np.zeros((50, 28, 28)), 2051)[:-28], "header says 50 x 28 x 28 values but it holds"),
        (TRAIN_IMAGES, idx_bytes(np.zeros((0, 28, 28)), 2051), "holds no data"),
        (TRAIN_IMAGES, b"\x00\x00", "too short for an IDX header"),
        (TRAIN_LABELS, idx_bytes(np.full(50, 10), 2049), "labels up to 10, outside 0..9"),
        (TRAIN_LABELS, idx_bytes(np.zeros(49), 2049), "holds 50 images but .* holds 49 labels"),
        (TRAIN_LABELS, idx_bytes(np.zeros((50, 1)), 2049), "header says 50 values but it holds 54 bytes"),
    ],
)
def test_malformed_idx_files_are_named(mnist, file, payload, match):
    _replace_gz(mnist["raw"] / f"{file}.gz", payload)
    with pytest.raises(DataError, match=match) as err:
        load_mnist(mnist)
    assert str(mnist["raw"] / f"{file}.gz") in one_line_data_error(err)


def test_not_gzip_and_missing_files_are_named(mnist):
    gz = mnist["raw"] / f"{TRAIN_LABELS}.gz"
    gz.write_bytes(b"plain text, not gzip")
    with pytest.raises(DataError, match="Not a gzipped file") as err:
        load_mnist(mnist)
    assert str(gz) in one_line_data_error(err)
    gz.unlink()
    with pytest.raises(DataError, match=f"has neither {TRAIN_LABELS}.gz nor {TRAIN_LABELS}") as err:
        load_mnist(mnist)
    one_line_data_error(err)


def test_empty_folders_are_named(tmp_path):
    (tmp_path / "data" / "MNIST").mkdir(parents=True)
    with pytest.raises(DataError, match="has no raw/ folder") as err:
        load_data("mnist", data_dir=tmp_path / "data", cache_dir=tmp_path / "cache", download=False)
    one_line_data_error(err)
    (tmp_path / "data" / "MNIST" / "raw").mkdir()
    with pytest.raises(DataError, match=f"has neither {TRAIN_IMAGES}.gz") as err:
        load_data("mnist", data_dir=tmp_path / "data", cache_dir=tmp_path / "cache", download=False)
    one_line_data_error(err)


def test_uncompressed_source_files_are_copied_and_followed(tmp_path):
    raw = tmp_path / "data" / "MNIST" / "raw"
    arrays = write_fake_mnist(raw)
    for gz in list(raw.glob("*.gz")):
        gz.with_suffix("").write_bytes(gzip.decompress(gz.read_bytes()))
        gz.unlink()
    first = load_data("mnist", data_dir=tmp_path / "data", cache_dir=tmp_path / "cache", download=False)
    assert np.array_equal(first.test.labels.numpy(), arrays[IDX_FILES["t10k"][1]])
    new = np.random.default_rng(3).integers(0, 10, (20,)).astype(np.uint8)
    (raw / IDX_FILES["t10k"][1]).write_bytes(idx_bytes(new, 2049))
    again = load_data("mnist", data_dir=tmp_path / "data", cache_dir=tmp_path / "cache", download=False)
    assert np.array_equal(again.test.labels.numpy(), new)


@pytest.mark.parametrize("umask", [0o022, 0o027])
def test_cache_files_follow_the_umask(mnist, umask, tmp_path):
    old = os.umask(umask)
    try:
        load_mnist(mnist)
        cifar = write_fake_cifar(tmp_path / "c")
        with tarfile.open(tmp_path / CIFAR_ARCHIVE, "w:gz") as tar:
            tar.add(cifar["folder"], arcname=CIFAR_FOLDER)
        (tmp_path / "src").mkdir()
        (tmp_path / CIFAR_ARCHIVE).rename(tmp_path / "src" / CIFAR_ARCHIVE)
        load_data("cifar10", data_dir=tmp_path / "src", cache_dir=mnist["cache"], download=False, verify=False)
    finally:
        os.umask(old)
    files = [p for p in mnist["cache"].rglob("*") if p.is_file()]
    assert len(files) > 8
    assert {stat.S_IMODE(p.stat().st_mode) for p in files} == {0o666 & ~umask}
    dirs = [p for p in mnist["cache"].rglob("*") if p.is_dir()]
    assert {stat.S_IMODE(p.stat().st_mode) for p in dirs} == {0o777 & ~umask}


# ------------------------------------------------------------------------------------- CIFAR archive


@pytest.fixture
def cifar_archive(tmp_path, monkeypatch):
    monkeypatch.setenv(SKIP_MD5_ENV, "1")
    src = tmp_path / "src"
    src.mkdir()
    fake = write_fake_cifar(tmp_path / "gen")
    with tarfile.open(src / CIFAR_ARCHIVE, "w:gz") as tar:
        tar.add(fake["folder"], arcname=CIFAR_FOLDER)
    return {"src": src, "archive": src / CIFAR_ARCHIVE, "cache": tmp_path / "cache", "fake": fake}


def load_cifar(c, **kw):
    return load_data("cifar10", data_dir=c["src"], cache_dir=c["cache"], download=False, **kw)


def _write_archive(path: Path, folder: Path, names: list[str] | None = None, extra=None) -> None:
    with tarfile.open(path, "w:gz") as tar:
        for name in names if names is not None else [*TRAIN_FILES, "test_batch"]:
            tar.add(folder / name, arcname=f"{CIFAR_FOLDER}/{name}")
        if extra:
            extra(tar)


def test_changed_archive_is_extracted_again(cifar_archive, tmp_path):
    c = cifar_archive
    first = load_cifar(c)
    assert np.array_equal(first.train.images.numpy(), c["fake"]["train_images"])
    other = write_fake_cifar(tmp_path / "other", seed=5)
    _write_archive(c["archive"], other["folder"])
    again = load_cifar(c)
    assert np.array_equal(again.train.images.numpy(), other["train_images"])
    assert not [p for p in c["cache"].iterdir() if p.name.startswith(".cifar")]  # no temporary folders left


def test_unchanged_archive_is_not_extracted_again(cifar_archive, caplog):
    load_cifar(cifar_archive)
    before = (cifar_archive["cache"] / CIFAR_FOLDER / "test_batch").stat().st_ino
    caplog.clear()
    with caplog.at_level("INFO", logger="flows.data.cifar"):
        load_cifar(cifar_archive)
    assert "extracted" not in caplog.text
    assert (cifar_archive["cache"] / CIFAR_FOLDER / "test_batch").stat().st_ino == before


def test_tampered_extracted_batch(cifar_archive):
    c = cifar_archive
    load_cifar(c)
    batch = c["cache"] / CIFAR_FOLDER / "data_batch_2"
    batch.write_bytes(pickle.dumps({b"data": np.zeros((20, 3072), np.uint8), b"labels": [0] * 20}, protocol=2))
    again = load_cifar(c)  # the archive is still there: extracted again
    assert np.array_equal(again.train.images.numpy(), c["fake"]["train_images"])
    batch.write_bytes(pickle.dumps({b"data": np.zeros((20, 3072), np.uint8), b"labels": [0] * 20}, protocol=2))
    with pytest.raises(DataError, match="data_batch_2 changed after it was extracted") as err:
        load_data("cifar10", cache_dir=c["cache"], download=False)  # no archive: refused, not used
    one_line_data_error(err)


def test_truncated_archive_is_a_data_error(cifar_archive):
    c = cifar_archive
    load_cifar(c)
    c["archive"].write_bytes(c["archive"].read_bytes()[:5000])
    with pytest.raises(DataError, match=f"cannot extract {c['archive']}") as err:
        load_cifar(c)
    assert "intact copy" in one_line_data_error(err)


def test_archive_missing_a_batch_or_holding_links(cifar_archive, tmp_path):
    c = cifar_archive
    _write_archive(c["archive"], c["fake"]["folder"], names=TRAIN_FILES)
    with pytest.raises(DataError, match=f"has no {CIFAR_FOLDER}/test_batch") as err:
        load_cifar(c)
    one_line_data_error(err)

    def link(tar: tarfile.TarFile) -> None:
        info = tarfile.TarInfo(f"{CIFAR_FOLDER}/test_batch")
        info.type, info.linkname = tarfile.SYMTYPE, "/etc/passwd"
        tar.addfile(info)

    _write_archive(c["archive"], c["fake"]["folder"], names=TRAIN_FILES, extra=link)
    with pytest.raises(DataError, match="test_batch as a link or special file") as err:
        load_cifar(c)
    one_line_data_error(err)


def test_archive_members_outside_the_folder_are_never_written(cifar_archive, tmp_path):
    c = cifar_archive

    def escape(tar: tarfile.TarFile) -> None:
        for name in ("../../escaped", f"{CIFAR_FOLDER}/../escaped", "/tmp/escaped-abs"):
            info = tarfile.TarInfo(name)
            info.size = 4
            tar.addfile(info, __import__("io").BytesIO(b"evil"))

    _write_archive(c["archive"], c["fake"]["folder"], extra=escape)
    data = load_cifar(c)
    assert len(data.train) == 100
    assert not list(tmp_path.rglob("escaped*")) and not Path("/tmp/escaped-abs").exists()
    assert sorted(p.name for p in (c["cache"] / CIFAR_FOLDER).iterdir()) == sorted(
        [*TRAIN_FILES, "test_batch", ".fireflow-source.json"]
    )


def test_corrupt_archive_md5_message_has_no_skip_advice(cifar_archive, monkeypatch):
    monkeypatch.delenv(SKIP_MD5_ENV)
    monkeypatch.setattr(flows.data.cifar, "cifar_checksums", lambda: ([], [], "0" * 32))
    with pytest.raises(DataError, match=f"{CIFAR_ARCHIVE} is corrupt") as err:
        load_cifar(cifar_archive)
    message = one_line_data_error(err)
    assert SKIP_MD5_ENV not in message and "verify_md5" not in message and "re-download" in message


@pytest.mark.skipif(not Path("/work/shared/data/MNIST/raw").is_dir(), reason="the shared MNIST copy is absent")
def test_shared_mnist_reads_as_torchvision_reads_it(tmp_path):
    import torchvision

    data = load_data("mnist", data_dir="/work/shared/data", cache_dir=tmp_path / "cache", download=False)
    assert (len(data.train), len(data.test), data.num_classes) == (60000, 10000, 10)
    assert data.train.labels[:10].tolist() == [5, 0, 4, 1, 9, 2, 1, 3, 1, 4]
    for split, train in ((data.train, True), (data.test, False)):
        reference = torchvision.datasets.MNIST(root=str(tmp_path / "cache"), train=train, download=False)
        assert torch.equal(split.images[:, 0], reference.data) and torch.equal(split.labels, reference.targets)


def test_a_cache_that_cannot_be_written_is_one_line(mnist):
    mnist["cache"].mkdir()
    (mnist["cache"] / "MNIST").write_text("a file where the cache needs a folder")
    with pytest.raises(DataError, match="--cache-dir .* is writable") as err:
        load_mnist(mnist)
    assert str(mnist["cache"] / "MNIST") in one_line_data_error(err)


def test_dataset_names_agree_with_the_config():
    assert sorted(DATASET_NAMES) == sorted(DATASETS)


def test_non_positive_limits_are_refused():
    with pytest.raises(UsageError, match="max_train must be a positive number"):
        load_data("synthetic", max_train=0)


def test_temporaries_of_an_interrupted_load_are_swept_once_old(mnist, cifar_archive):
    load_mnist(mnist)
    raw = mnist["cache"] / "MNIST" / "raw"
    old, fresh = raw / f".{TRAIN_IMAGES}.99999.dead.tmp", raw / f".{TRAIN_IMAGES}.99998.busy.tmp"
    old_dir = cifar_archive["cache"] / ".cifar-extract.99999.dead.tmp"
    for path in (old, fresh):
        path.write_bytes(b"half")
    old_dir.mkdir(parents=True)
    (old_dir / "data_batch_1").write_bytes(b"half")
    for path in (old, old_dir):
        os.utime(path, (1e9, 1e9))
    load_mnist(mnist)
    load_cifar(cifar_archive)
    assert not old.exists() and fresh.exists() and not old_dir.exists()
