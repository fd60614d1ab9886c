"""Data sets as in-memory tensors: MNIST, Fashion-MNIST, CIFAR-10 (torchvision), digits, synthetic.

Images are kept as uint8 (N, C, H, W) and scaled to [0, 1] per batch; the network's own input
quantizer puts them on the 8-bit grid. torchvision's loaders are used with download for real users;
`data_dir` may point at a read-only folder in torchvision's layout (e.g. `../shared/data` with
`MNIST/raw/*.gz`, or `FashionMNIST/raw/*.gz`): its files are copied into a writable cache first,
because torchvision extracts next to them. `digits` (scikit-learn's 8x8 digits, upscaled) and
`synthetic` need no files: tests use them.

CIFAR-10 is read by a small reader of torchvision's layout, `cifar-10-batches-py/data_batch_1..5` and
`test_batch` (pickled dicts: b"data" N x 3072 uint8 in CHW order, b"labels"), found in `data_dir`, or
in the cache; a `cifar-10-python.tar.gz` in either place is extracted into the cache. Each batch file
is checked against the md5 sums torchvision lists (`CIFAR10.train_list` / `test_list`); a mismatch is
a `DataError` naming the file. `load_data(..., verify=False)` or the environment variable
`FIREFLOW_SKIP_MD5=1` skips the check (tests use it with generated batches). When nothing is found
and `download` is allowed, torchvision downloads the archive into the cache.
"""

from __future__ import annotations

import gzip
import hashlib
import logging
import os
import pickle
import shutil
import tarfile
import tempfile
import zlib
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from flows.errors import DataError, UsageError

log = logging.getLogger(__name__)

_TORCHVISION = {
    # name: (torchvision class name, folder under root, files that must exist under folder/raw or folder)
    "mnist": ("MNIST", "MNIST"),
    "fashion_mnist": ("FashionMNIST", "FashionMNIST"),
    "cifar10": ("CIFAR10", "cifar-10-batches-py"),
}


@dataclass
class Dataset:
    """A labelled split held in memory: uint8 images (N, C, H, W) and int64 labels (N,)."""

    images: torch.Tensor
    labels: torch.Tensor

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def float_images(self, index: slice | torch.Tensor | None = None) -> torch.Tensor:
        x = self.images if index is None else self.images[index]
        return x.float().div_(255.0)

    def head(self, n: int | None) -> Dataset:
        if n is None or n >= len(self):
            return self
        return Dataset(self.images[:n], self.labels[:n])


@dataclass
class DataBundle:
    """Train and test splits plus what the model needs to know about them."""

    name: str
    train: Dataset
    test: Dataset
    in_shape: tuple[int, int, int]
    num_classes: int
    source: str  # where the data came from, for the report


def default_cache_dir() -> Path:
    base = os.environ.get("FIREFLOW_CACHE") or os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "fireflow" / "data"


@contextmanager
def _temp_beside(target: Path):
    """A unique temporary path next to `target`, renamed onto it on success (safe for concurrent builds)."""
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    os.close(fd)
    try:
        yield tmp
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _prepare_cache(name: str, data_dir: Path | None, cache_dir: Path) -> None:
    """Copy a torchvision-layout folder from a (possibly read-only) data_dir into the cache."""
    if data_dir is None:
        return
    _, folder = _TORCHVISION[name]
    src = Path(data_dir) / folder
    if not src.is_dir():
        raise DataError(
            f"--data-dir {data_dir} has no {folder}/ folder; expected torchvision's layout, "
            f"e.g. {Path(data_dir) / folder / 'raw'}/*.gz for MNIST"
        )
    dst = cache_dir / folder
    for path in sorted(src.rglob("*")):
        if path.is_dir():
            continue
        target = dst / path.relative_to(src)
        if target.exists() and target.stat().st_size == path.stat().st_size:
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        with _temp_beside(target) as tmp:
            shutil.copyfile(path, tmp)
        log.info("copied %s into the cache %s", path, target)
    for gz in sorted(dst.rglob("*.gz")):  # what torchvision's download step would extract
        if gz.name.endswith(".tar.gz"):
            continue
        out = gz.with_suffix("")
        if not out.exists():
            with _temp_beside(out) as tmp, gzip.open(gz, "rb") as fin, open(tmp, "wb") as fout:
                shutil.copyfileobj(fin, fout)


def _make_cache(cache_dir: Path) -> None:
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DataError(
            f"cannot create the data cache {cache_dir} ({exc}); set --cache-dir to a writable folder"
        ) from None


def _load_torchvision(name: str, data_dir: Path | None, cache_dir: Path, download: bool) -> tuple[Dataset, Dataset]:
    import torchvision

    cls_name, folder = _TORCHVISION[name]
    cls = getattr(torchvision.datasets, cls_name)
    _make_cache(cache_dir)
    _prepare_cache(name, data_dir, cache_dir)
    splits = []
    for train in (True, False):
        try:
            ds = cls(root=str(cache_dir), train=train, download=False)
        except RuntimeError:
            if not download:
                raise DataError(_missing_message(name, folder, cache_dir)) from None
            try:
                log.info("downloading %s into %s", cls_name, cache_dir)
                ds = cls(root=str(cache_dir), train=train, download=True)
            except Exception as exc:  # network errors come in many types
                raise DataError(
                    _missing_message(name, folder, cache_dir) + f" (download failed: {_first_line(exc)})"
                ) from None
        data = ds.data
        images = torch.as_tensor(np.asarray(data))
        if images.ndim == 3:  # MNIST-like: (N, H, W)
            images = images.unsqueeze(1)
        else:  # CIFAR: (N, H, W, C)
            images = images.permute(0, 3, 1, 2)
        labels = torch.as_tensor(np.asarray(ds.targets), dtype=torch.int64)
        splits.append(Dataset(images.contiguous().to(torch.uint8), labels))
    return splits[0], splits[1]


def _first_line(exc: Exception) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _missing_message(name: str, folder: str, cache_dir: Path) -> str:
    return (
        f"{name} not found in {cache_dir / folder} and it could not be downloaded; pass --data-dir DIR "
        f"where DIR/{folder}/ holds torchvision's files (e.g. --data-dir ../shared/data for MNIST)"
    )


# ------------------------------------------------------------------------------------------- CIFAR-10

CIFAR_FOLDER = "cifar-10-batches-py"
CIFAR_ARCHIVE = "cifar-10-python.tar.gz"
SKIP_MD5_ENV = "FIREFLOW_SKIP_MD5"
_CIFAR_SHAPE = (3, 32, 32)


def md5_check_enabled(verify: bool = True) -> bool:
    """False when `verify` is False or the environment sets FIREFLOW_SKIP_MD5 to 1/true/yes/on."""
    return verify and os.environ.get(SKIP_MD5_ENV, "").strip().lower() not in ("1", "true", "yes", "on")


def file_md5(path: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _cifar_checksums() -> tuple[list[tuple[str, str]], list[tuple[str, str]], str]:
    """(train files, test files, archive md5) as torchvision lists them."""
    from torchvision.datasets import CIFAR10

    train = [(str(n), str(m)) for n, m in CIFAR10.train_list]
    test = [(str(n), str(m)) for n, m in CIFAR10.test_list]
    return train, test, str(CIFAR10.tgz_md5)


def _check_md5(path: Path, expected: str) -> None:
    got = file_md5(path)
    if got != expected:
        raise DataError(
            f"cifar10: {path} is corrupt (md5 {got}, torchvision expects {expected}); replace it with a good "
            f"copy (delete it to re-download, or --data-dir DIR with DIR/{CIFAR_FOLDER}/), or set "
            f"{SKIP_MD5_ENV}=1 to skip the check"
        )


def read_cifar_batch(path: Path) -> Dataset:
    """One pickled CIFAR-10 batch -> uint8 images (N, 3, 32, 32) and int64 labels."""
    try:
        with open(path, "rb") as f:
            entry = pickle.load(f, encoding="bytes")
    except Exception as exc:  # a damaged pickle raises many kinds of errors
        raise DataError(f"cifar10: {path} is not a readable CIFAR-10 batch ({_first_line(exc)})") from None
    if not isinstance(entry, dict):
        raise DataError(f"cifar10: {path} is not a CIFAR-10 batch (a pickled {type(entry).__name__}, not a dict)")
    data = entry.get(b"data", entry.get("data"))
    labels = entry.get(b"labels", entry.get("labels"))
    if data is None or labels is None:
        raise DataError(f"cifar10: {path} has no b'data' and b'labels' entries")
    data, labels = np.asarray(data), np.asarray(labels)
    per_image = int(np.prod(_CIFAR_SHAPE))
    if data.ndim != 2 or data.shape[1] != per_image or len(labels) != data.shape[0]:
        raise DataError(
            f"cifar10: {path} holds data {data.shape} and {len(labels)} labels; expected N x {per_image} and N labels"
        )
    if data.dtype != np.uint8 or (labels.size and not (0 <= labels.min() and labels.max() <= 9)):
        raise DataError(f"cifar10: {path} has {data.dtype} pixels or labels outside 0..9")
    images = torch.from_numpy(np.ascontiguousarray(data).reshape(-1, *_CIFAR_SHAPE).copy())
    return Dataset(images, torch.as_tensor(labels, dtype=torch.int64))


def _extract_cifar_archive(archive: Path, cache_dir: Path, verify: bool) -> Path:
    """Extract cifar-10-python.tar.gz into cache_dir (atomically: a temporary folder renamed into place)."""
    target = cache_dir / CIFAR_FOLDER
    if verify:
        expected = _cifar_checksums()[2]
        got = file_md5(archive)
        if got != expected:
            raise DataError(
                f"cifar10: {archive} is corrupt (md5 {got}, torchvision expects {expected}); replace it, "
                f"or set {SKIP_MD5_ENV}=1 to skip the check"
            )
    tmp = Path(tempfile.mkdtemp(dir=cache_dir, prefix=".cifar-extract."))
    try:
        with tarfile.open(archive, "r:*") as tar:
            members = [m for m in tar.getmembers() if m.isfile() or m.isdir()]
            for m in members:
                if m.name.startswith("/") or ".." in Path(m.name).parts:
                    raise DataError(f"cifar10: {archive} holds an unsafe path {m.name!r}")
            extra = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
            tar.extractall(tmp, members=members, **extra)
        if not (tmp / CIFAR_FOLDER).is_dir():
            raise DataError(f"cifar10: {archive} has no {CIFAR_FOLDER}/ folder")
        try:
            os.replace(tmp / CIFAR_FOLDER, target)
        except OSError:
            if not target.is_dir():  # another build extracted it at the same time: use theirs
                raise
        log.info("extracted %s into %s", archive, target)
    except (tarfile.TarError, EOFError, OSError, zlib.error) as exc:
        raise DataError(f"cifar10: cannot extract {archive} ({_first_line(exc)})") from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def _cifar_missing_message(where: Path, cache_dir: Path) -> str:
    return (
        f"cifar10 not found in {where} and it could not be downloaded; pass --data-dir DIR where "
        f"DIR/{CIFAR_FOLDER}/ holds data_batch_1..5 and test_batch, or DIR/{CIFAR_ARCHIVE} "
        f"(extracted into the cache {cache_dir})"
    )


def _find_cifar_folder(data_dir: Path | None, cache_dir: Path, download: bool, verify: bool) -> Path:
    """The folder holding the batches: data_dir's, extracted from an archive, the cache's, or downloaded."""
    _make_cache(cache_dir)
    if data_dir is not None:
        if (data_dir / CIFAR_FOLDER).is_dir():
            return data_dir / CIFAR_FOLDER
        if (data_dir / CIFAR_ARCHIVE).is_file():
            return _extract_cifar_archive(data_dir / CIFAR_ARCHIVE, cache_dir, verify)
        raise DataError(
            f"--data-dir {data_dir} has neither {CIFAR_FOLDER}/ nor {CIFAR_ARCHIVE}; expected torchvision's "
            f"CIFAR-10 layout, e.g. {data_dir / CIFAR_FOLDER}/data_batch_1"
        )
    if (cache_dir / CIFAR_FOLDER).is_dir():
        return cache_dir / CIFAR_FOLDER
    if (cache_dir / CIFAR_ARCHIVE).is_file():
        return _extract_cifar_archive(cache_dir / CIFAR_ARCHIVE, cache_dir, verify)
    if not download:
        raise DataError(_cifar_missing_message(cache_dir / CIFAR_FOLDER, cache_dir))
    import torchvision

    try:
        log.info("downloading CIFAR-10 into %s", cache_dir)
        torchvision.datasets.CIFAR10(root=str(cache_dir), train=True, download=True)
    except Exception as exc:  # network errors come in many types
        raise DataError(
            _cifar_missing_message(cache_dir / CIFAR_FOLDER, cache_dir) + f" (download failed: {_first_line(exc)})"
        ) from None
    return cache_dir / CIFAR_FOLDER


def load_cifar10(
    data_dir: Path | None, cache_dir: Path, download: bool = True, verify: bool = True
) -> tuple[Dataset, Dataset, Path]:
    """CIFAR-10's 50,000 train and 10,000 test images as uint8 (N, 3, 32, 32), md5-checked unless told not to."""
    verify = md5_check_enabled(verify)
    folder = _find_cifar_folder(data_dir, cache_dir, download, verify)
    train_files, test_files, _ = _cifar_checksums()
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
            if verify:
                _check_md5(path, md5)
            parts.append(read_cifar_batch(path))
        splits.append(Dataset(torch.cat([p.images for p in parts]), torch.cat([p.labels for p in parts])))
    if not verify:
        log.warning("cifar10: md5 check of %s skipped (%s or verify=False)", folder, SKIP_MD5_ENV)
    return splits[0], splits[1], folder


def load_digits_dataset(size: int = 28, seed: int = 0) -> tuple[Dataset, Dataset]:
    """scikit-learn's 1,797 8x8 digits, upscaled to size x size (bilinear), split 80/20 deterministically."""
    from sklearn.datasets import load_digits

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


def load_data(
    name: str,
    data_dir: str | Path | None = None,
    cache_dir: str | Path | None = None,
    download: bool = True,
    max_train: int | None = None,
    max_test: int | None = None,
    seed: int = 0,
    verify: bool = True,
) -> DataBundle:
    """Load a data set by name; errors say how to provide missing data.

    `verify=False` (or FIREFLOW_SKIP_MD5=1 in the environment) skips CIFAR-10's md5 checks.
    """
    cache = Path(cache_dir) if cache_dir else default_cache_dir()
    if name == "cifar10":
        data_path = Path(data_dir) if data_dir else None
        if data_path is not None and not data_path.is_dir():
            raise DataError(f"--data-dir {data_dir} is not a folder")
        train, test, folder = load_cifar10(data_path, cache, download, verify)
        source = f"CIFAR-10 python batches ({folder})"
    elif name in _TORCHVISION:
        data_path = Path(data_dir) if data_dir else None
        if data_path is not None and not data_path.is_dir():
            raise DataError(f"--data-dir {data_dir} is not a folder")
        train, test = _load_torchvision(name, data_path, cache, download)
        source = f"torchvision {_TORCHVISION[name][0]} ({data_path or cache})"
    elif name == "digits":
        train, test = load_digits_dataset()
        source = "scikit-learn digits, upscaled to 28x28"
    elif name == "synthetic":
        train, test = make_synthetic(2000, (1, 28, 28), 10, seed)
        source = "synthetic class prototypes + noise, 28x28x1"
    else:
        raise UsageError(f"unknown dataset {name!r}; valid: {sorted([*_TORCHVISION, 'digits', 'synthetic'])}")
    train, test = train.head(max_train), test.head(max_test)
    in_shape = tuple(int(s) for s in train.images.shape[1:])
    num_classes = int(max(train.labels.max(), test.labels.max())) + 1
    log.info("data %s: %d train, %d test images of shape %s", name, len(train), len(test), in_shape)
    return DataBundle(name, train, test, in_shape, num_classes, source)  # type: ignore[arg-type]
