"""CIFAR-10 from torchvision's python layout, with a restricted unpickler: folder, archive, cache, download.

The batches `cifar-10-batches-py/data_batch_1..5` and `test_batch` are pickled dicts (b"data": N x 3072
uint8 in CHW order, b"labels": N ints). They are read with `safe_pickle.load_restricted`, which accepts
only that structure and never runs code, whatever the md5 setting. Where the folder comes from:

- with `data_dir`: its `cifar-10-batches-py/`, read in place; else its `cifar-10-python.tar.gz`,
  extracted into the cache;
- without: the cache's `cifar-10-python.tar.gz` (extracted), else the cache's `cifar-10-batches-py/`,
  else, when `download` is allowed, the archive fetched by torchvision's `download_url` (md5-checked)
  into the cache and extracted.

An extraction writes only the batch files (no links, nothing outside the folder) and a `SourceRecord`
(`.fireflow-source.json`: the archive's size and sha256 and each extracted file's). The archive is
extracted again when it or an extracted file no longer matches the record; without the archive, a
changed extracted batch is refused.

Each batch (and an archive about to be extracted) is checked against the md5 sums torchvision lists
(`CIFAR10.train_list` / `test_list` / `tgz_md5`) unless `verify` is False or the environment sets
FIREFLOW_SKIP_MD5=1 (tests use it with generated batches). A corrupt, truncated or foreign file is a
one-line `DataError` naming it and saying to replace it with an intact copy.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import tarfile
import zlib
from pathlib import Path, PurePosixPath

import numpy as np
import torch

from flows.data.cache import (
    FileDigest,
    SourceRecord,
    digest_bytes,
    file_digests,
    make_cache,
    sweep_temporaries,
    temp_name,
)
from flows.data.dataset import Dataset, first_line
from flows.data.safe_pickle import load_restricted
from flows.errors import DataError

log = logging.getLogger(__name__)

CIFAR_FOLDER = "cifar-10-batches-py"
CIFAR_ARCHIVE = "cifar-10-python.tar.gz"
SKIP_MD5_ENV = "FIREFLOW_SKIP_MD5"
CIFAR_SHAPE = (3, 32, 32)
CIFAR_CLASSES = 10
RECORD_NAME = ".fireflow-source.json"  # the SourceRecord of an extraction, inside the extracted folder
_REPLACE = f"replace it with an intact copy (re-download torchvision's {CIFAR_ARCHIVE})"  # true for any file
_OPTIONAL_MEMBERS = ("batches.meta", "readme.html")  # extracted when present, never read


def md5_check_enabled(verify: bool = True) -> bool:
    """False when `verify` is False or the environment sets FIREFLOW_SKIP_MD5 to 1/true/yes/on."""
    return verify and os.environ.get(SKIP_MD5_ENV, "").strip().lower() not in ("1", "true", "yes", "on")


def cifar_checksums() -> tuple[list[tuple[str, str]], list[tuple[str, str]], str]:
    """(train files, test files, archive md5) as torchvision lists them."""
    from torchvision.datasets import CIFAR10  # torchvision takes ~1.5 s to import: only when CIFAR-10 is used

    train = [(str(n), str(m)) for n, m in CIFAR10.train_list]
    test = [(str(n), str(m)) for n, m in CIFAR10.test_list]
    return train, test, str(CIFAR10.tgz_md5)


def _labels_array(labels: object, path: Path) -> np.ndarray:
    """The labels as int64: a list of ints (the documented form) or an integer array, nothing converted."""
    if isinstance(labels, np.ndarray) and labels.dtype.kind in "iu":
        return labels.astype(np.int64)
    if isinstance(labels, list) and all(type(v) is int for v in labels):
        try:
            return np.array(labels, dtype=np.int64)
        except OverflowError:
            pass
    raise DataError(f"cifar10: {path} has labels that are not a list of integers")


def read_cifar_batch(path: Path, md5: str | None = None, digest: FileDigest | None = None) -> Dataset:
    """One CIFAR-10 batch -> uint8 images (N, 3, 32, 32) and int64 labels, never running code from the file.

    `md5`: the sum torchvision lists (checked when given); `digest`: the size and sha256 recorded when
    the file was extracted (checked when given).
    """
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise DataError(f"cifar10: cannot read {path} ({exc.strerror or first_line(exc)})") from None
    if md5 is not None:
        got = hashlib.md5(raw, usedforsecurity=False).hexdigest()
        if got != md5:
            raise DataError(f"cifar10: {path} is corrupt (md5 {got}, torchvision expects {md5}); {_REPLACE}")
    if digest is not None and digest_bytes(raw) != digest:
        raise DataError(
            f"cifar10: {path} changed after it was extracted; delete {path.parent} and load again from the archive "
            f"(--data-dir DIR with DIR/{CIFAR_ARCHIVE}, or a download)"
        )
    entry = load_restricted(raw, str(path))
    data = entry.get(b"data", entry.get("data"))
    labels = entry.get(b"labels", entry.get("labels"))
    if data is None or labels is None:
        raise DataError(f"cifar10: {path} has no b'data' and b'labels' entries")
    data = np.asarray(data)
    labels = _labels_array(labels, path)
    per_image = int(np.prod(CIFAR_SHAPE))
    if data.ndim != 2 or data.shape[1] != per_image or labels.ndim != 1 or len(labels) != data.shape[0]:
        raise DataError(
            f"cifar10: {path} holds data {data.shape} and {len(labels)} labels; expected N x {per_image} and N labels"
        )
    if data.dtype != np.uint8 or (labels.size and not (0 <= labels.min() and labels.max() < CIFAR_CLASSES)):
        raise DataError(f"cifar10: {path} has {data.dtype} pixels or labels outside 0..{CIFAR_CLASSES - 1}")
    images = torch.from_numpy(np.ascontiguousarray(data).reshape(-1, *CIFAR_SHAPE).copy())
    return Dataset(images, torch.as_tensor(labels, dtype=torch.int64))


def _extract_members(archive: Path, into: Path, wanted: set[str]) -> dict[str, FileDigest]:
    """Write the archive's cifar-10-batches-py/<name> regular files into `into`; their digests by name."""
    files: dict[str, FileDigest] = {}
    with tarfile.open(archive, "r:*") as tar:
        for member in tar:
            parts = PurePosixPath(member.name).parts
            if len(parts) != 2 or parts[0] != CIFAR_FOLDER or parts[1] not in wanted:
                continue  # nothing else is read, so nothing else is extracted (no links, no paths outside)
            if not member.isfile():
                raise DataError(f"cifar10: {archive} holds {member.name} as a link or special file; replace it")
            source = tar.extractfile(member)
            data = source.read() if source is not None else b""
            with open(into / parts[1], "xb") as f:  # a plain open: the user's umask applies
                f.write(data)
            files[parts[1]] = digest_bytes(data)
    return files


def _swap_in(new: Path, target: Path) -> None:
    """Rename the folder `new` onto `target`, moving an older `target` out of the way first."""
    old = target.parent / temp_name("cifar-old") if target.exists() else None
    if old is not None:
        os.replace(target, old)
    try:
        os.replace(new, target)
    except OSError:
        if not target.is_dir():  # another build extracted the same archive at the same time: use theirs
            raise
    finally:
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)


def extract_cifar_archive(archive: Path, cache_dir: Path, verify: bool) -> Path:
    """The cache's cifar-10-batches-py/ extracted from `archive`, extracting only when it does not match."""
    target = cache_dir / CIFAR_FOLDER
    try:
        digest, md5 = file_digests(archive, md5=verify)
    except OSError as exc:
        raise DataError(f"cifar10: cannot read {archive} ({exc.strerror or first_line(exc)})") from None
    record = SourceRecord.read(target / RECORD_NAME)
    if record is not None and record.matches(digest, target):
        log.debug("cifar10: %s matches %s", target, archive)
        return target
    if verify:
        expected = cifar_checksums()[2]
        if md5 != expected:
            raise DataError(f"cifar10: {archive} is corrupt (md5 {md5}, torchvision expects {expected}); {_REPLACE}")
    train, test, _ = cifar_checksums()
    required = {name for name, _ in (*train, *test)}
    tmp = cache_dir / temp_name("cifar-extract")
    tmp.mkdir()
    try:
        try:
            files = _extract_members(archive, tmp, required | set(_OPTIONAL_MEMBERS))
        except (tarfile.TarError, EOFError, OSError, zlib.error) as exc:
            raise DataError(f"cifar10: cannot extract {archive} ({first_line(exc)}); {_REPLACE}") from None
        missing = sorted(required - set(files))
        if missing:
            raise DataError(f"cifar10: {archive} has no {CIFAR_FOLDER}/{missing[0]}; {_REPLACE}")
        SourceRecord(archive.name, digest, files).write(tmp / RECORD_NAME)
        _swap_in(tmp, target)
        log.info("extracted %s into %s", archive, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def _missing_message(where: Path, cache_dir: Path) -> str:
    return (
        f"cifar10 not found in {where} and it could not be downloaded; pass --data-dir DIR where "
        f"DIR/{CIFAR_FOLDER}/ holds data_batch_1..5 and test_batch, or DIR/{CIFAR_ARCHIVE} "
        f"(extracted into the cache {cache_dir})"
    )


def _download_archive(cache_dir: Path) -> Path:
    from torchvision.datasets import CIFAR10  # torchvision takes ~1.5 s to import: only when downloading
    from torchvision.datasets.utils import download_url

    try:
        log.info("downloading CIFAR-10 into %s", cache_dir)
        download_url(CIFAR10.url, str(cache_dir), filename=CIFAR10.filename, md5=CIFAR10.tgz_md5)
    except Exception as exc:  # network errors come in many types
        raise DataError(
            _missing_message(cache_dir / CIFAR_FOLDER, cache_dir) + f" (download failed: {first_line(exc)})"
        ) from None
    archive = cache_dir / CIFAR_ARCHIVE
    if not archive.is_file():
        raise DataError(_missing_message(cache_dir / CIFAR_FOLDER, cache_dir) + " (the download left no archive)")
    return archive


def find_cifar_folder(data_dir: Path | None, cache_dir: Path, download: bool, verify: bool) -> Path:
    """The folder holding the batches: data_dir's, extracted from an archive, the cache's, or downloaded."""
    make_cache(cache_dir)
    sweep_temporaries(cache_dir)
    if data_dir is not None:
        if (data_dir / CIFAR_FOLDER).is_dir():
            return data_dir / CIFAR_FOLDER
        if (data_dir / CIFAR_ARCHIVE).is_file():
            return extract_cifar_archive(data_dir / CIFAR_ARCHIVE, cache_dir, verify)
        raise DataError(
            f"--data-dir {data_dir} has neither {CIFAR_FOLDER}/ nor {CIFAR_ARCHIVE}; expected torchvision's "
            f"CIFAR-10 layout, e.g. {data_dir / CIFAR_FOLDER}/data_batch_1"
        )
    folder = cache_dir / CIFAR_FOLDER
    if (cache_dir / CIFAR_ARCHIVE).is_file():
        return extract_cifar_archive(cache_dir / CIFAR_ARCHIVE, cache_dir, verify)
    if folder.is_dir():
        return folder
    if not download:
        raise DataError(_missing_message(folder, cache_dir))
    return extract_cifar_archive(_download_archive(cache_dir), cache_dir, verify)


def load_cifar10(
    data_dir: Path | None, cache_dir: Path, download: bool = True, verify: bool = True
) -> tuple[Dataset, Dataset, Path]:
    """CIFAR-10's 50,000 train and 10,000 test images as uint8 (N, 3, 32, 32), md5-checked unless told not to."""
    verify = md5_check_enabled(verify)
    folder = find_cifar_folder(data_dir, cache_dir, download, verify)
    record = SourceRecord.read(folder / RECORD_NAME)
    train_files, test_files, _ = cifar_checksums()
    splits = []
    for files in (train_files, test_files):
        parts = []
        for name, md5 in files:
            path = folder / name
            if not path.is_file():
                raise DataError(
                    f"cifar10: {path} is missing; {folder} must hold data_batch_1..5 and test_batch "
                    f"(torchvision's {CIFAR_FOLDER} layout)"
                )
            recorded = record.files.get(name) if record is not None else None
            parts.append(read_cifar_batch(path, md5 if verify else None, recorded))
        if not sum(len(p) for p in parts):
            raise DataError(f"cifar10: the batches {', '.join(n for n, _ in files)} in {folder} hold no images")
        splits.append(Dataset(torch.cat([p.images for p in parts]), torch.cat([p.labels for p in parts])))
    if not verify:
        log.warning("cifar10: md5 check of %s skipped (%s or verify=False)", folder, SKIP_MD5_ENV)
    return splits[0], splits[1], folder
