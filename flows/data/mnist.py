"""MNIST and Fashion-MNIST from torchvision's raw layout (`MNIST/raw/*-idx?-ubyte[.gz]`), checked byte for byte.

`data_dir` may be read-only (e.g. `../shared/data`): its four files are copied into the writable cache
(`<cache>/MNIST/raw/`) when the cache's copy differs, and each `.gz` is extracted beside its copy with
a `SourceRecord` (`<file>.source.json`) naming the archive's size and sha256 and the extracted file's.
A load re-extracts when the archive or the extracted file no longer matches that record, so a replaced
or truncated archive is never shadowed by old extracted files. Uncompressed files in `data_dir` are
copied as they are. Without `data_dir`, the cache's files are used; when they are missing and
`download` is allowed, torchvision downloads them (md5-checked) into the cache.

The IDX files are parsed here (magic number, uint8 type, dimensions, byte count), not by torchvision,
and the labels must lie in 0..9 and match the images in number. A damaged gzip, a wrong header or
size, or bad labels is a one-line `DataError` naming the file and saying how to replace it.
"""

from __future__ import annotations

import gzip
import logging
import math
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from flows.data.cache import (
    SourceRecord,
    copy_if_changed,
    digest_bytes,
    file_digests,
    make_cache,
    sweep_temporaries,
    temp_beside,
)
from flows.data.dataset import Dataset, first_line
from flows.errors import DataError

log = logging.getLogger(__name__)

IDX_CLASSES = 10
_IMAGES_NDIM, _LABELS_NDIM = 3, 1
_UBYTE = 0x08  # the IDX type code of unsigned bytes


@dataclass(frozen=True)
class IdxLayout:
    """Where one torchvision IDX data set lives: its class name and folder under the root."""

    torchvision_class: str
    folder: str


IDX_DATASETS = {
    "mnist": IdxLayout("MNIST", "MNIST"),
    "fashion_mnist": IdxLayout("FashionMNIST", "FashionMNIST"),
}
SPLIT_FILES = {  # split -> (images file, labels file), as in torchvision's raw folder
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


def _fix(origin: Path, cache_dir: Path) -> str:
    if origin.is_relative_to(cache_dir):
        return "delete it to download it again, or pass --data-dir DIR holding intact copies"
    return "replace it with an intact copy of torchvision's file (download it again)"


def parse_idx(data: bytes, ndim: int, where: str) -> np.ndarray:
    """An IDX file's uint8 array; `where` names the file in errors (raised as ValueError)."""
    if len(data) < 4 + 4 * ndim:
        raise ValueError(f"{where} is too short for an IDX header ({len(data)} bytes)")
    zero, kind, dims = struct.unpack(">HBB", data[:4])
    if zero != 0 or kind != _UBYTE or dims != ndim:
        raise ValueError(
            f"{where} has the magic number 0x{int.from_bytes(data[:4], 'big'):08x}; "
            f"expected 0x{_UBYTE << 8 | ndim:08x} (unsigned bytes, {ndim} dimension{'s' if ndim > 1 else ''})"
        )
    shape = struct.unpack(f">{ndim}I", data[4 : 4 + 4 * ndim])
    payload = len(data) - 4 - 4 * ndim
    if payload != math.prod(shape):
        raise ValueError(f"{where}: its header says {' x '.join(map(str, shape))} values but it holds {payload} bytes")
    if shape[0] == 0 or 0 in shape:
        raise ValueError(f"{where} holds no data (shape {shape})")
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(shape).copy()


def _record_path(extracted: Path) -> Path:
    return extracted.with_name(extracted.name + ".source.json")


def _extract(archive: Path, target: Path, origin: Path, cache_dir: Path, name: str) -> None:
    """gunzip `archive` onto `target` unless its record says this exact archive was extracted there."""
    digest, _ = file_digests(archive)
    record = SourceRecord.read(_record_path(target))
    if record is not None and record.matches(digest, target.parent):
        return
    try:
        with gzip.open(archive, "rb") as f:
            data = f.read()
    except (OSError, EOFError, zlib.error) as exc:  # BadGzipFile is an OSError
        raise DataError(
            f"{name}: {origin} is not an intact gzip file ({first_line(exc)}); {_fix(origin, cache_dir)}"
        ) from None
    with temp_beside(target) as tmp, open(tmp, "xb") as f:
        f.write(data)
    SourceRecord(archive.name, digest, {target.name: digest_bytes(data)}).write(_record_path(target))
    log.info("extracted %s into %s", archive, target)


def _sync_file(name: str, file: str, src_raw: Path | None, raw: Path, cache_dir: Path) -> tuple[Path, Path]:
    """Bring one IDX file into the cache: (the extracted file to read, the file the user provided)."""
    target = raw / file
    if src_raw is not None:
        gz, plain = src_raw / f"{file}.gz", src_raw / file
        if gz.is_file():
            copy_if_changed(gz, raw / gz.name)
            _extract(raw / gz.name, target, gz, cache_dir, name)
            return target, gz
        if plain.is_file():
            (raw / f"{file}.gz").unlink(missing_ok=True)  # the data_dir's plain file wins over an older archive
            _record_path(target).unlink(missing_ok=True)
            copy_if_changed(plain, target)
            return target, plain
        raise DataError(
            f"{name}: {src_raw} has neither {file}.gz nor {file}; expected torchvision's raw layout "
            f"(the four *-ubyte.gz files of {IDX_DATASETS[name].torchvision_class})"
        )
    if (raw / f"{file}.gz").is_file():
        _extract(raw / f"{file}.gz", target, raw / f"{file}.gz", cache_dir, name)
        return target, raw / f"{file}.gz"
    return target, target


def _read_split(name: str, files: list[tuple[Path, Path]], cache_dir: Path) -> Dataset:
    arrays = []
    for (path, origin), ndim in zip(files, (_IMAGES_NDIM, _LABELS_NDIM), strict=True):
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise DataError(f"{name}: cannot read {path} ({exc.strerror or first_line(exc)})") from None
        record = SourceRecord.read(_record_path(path)) if origin == path else None  # else _extract checked it
        if record is not None and record.files.get(path.name) not in (None, digest_bytes(data)):
            raise DataError(
                f"{name}: {path} no longer matches the {record.archive} it was extracted from; delete it and load "
                f"again with --data-dir DIR (or a download)"
            )
        try:
            arrays.append(parse_idx(data, ndim, str(origin)))
        except ValueError as exc:
            raise DataError(f"{name}: {exc}; {_fix(origin, cache_dir)}") from None
    images, labels = arrays
    origin = files[1][1]
    if len(labels) != len(images):
        raise DataError(
            f"{name}: {files[0][1]} holds {len(images)} images but {origin} holds {len(labels)} labels; "
            f"{_fix(origin, cache_dir)}"
        )
    if int(labels.max()) >= IDX_CLASSES:
        raise DataError(
            f"{name}: {origin} has labels up to {int(labels.max())}, outside 0..{IDX_CLASSES - 1}; "
            f"{_fix(origin, cache_dir)}"
        )
    return Dataset(torch.from_numpy(images).unsqueeze(1).contiguous(), torch.from_numpy(labels).to(torch.int64))


def _missing_message(name: str, folder: str, cache_dir: Path) -> str:
    return (
        f"{name} not found in {cache_dir / folder} and it could not be downloaded; pass --data-dir DIR "
        f"where DIR/{folder}/ holds torchvision's files (e.g. --data-dir ../shared/data for MNIST)"
    )


def _download(name: str, cache_dir: Path) -> None:
    import torchvision  # torchvision takes ~1.5 s to import: only when downloading

    layout = IDX_DATASETS[name]
    try:
        log.info("downloading %s into %s", layout.torchvision_class, cache_dir)
        getattr(torchvision.datasets, layout.torchvision_class)(root=str(cache_dir), train=True, download=True)
    except Exception as exc:  # network errors come in many types
        raise DataError(
            _missing_message(name, layout.folder, cache_dir) + f" (download failed: {first_line(exc)})"
        ) from None


def load_idx_dataset(name: str, data_dir: Path | None, cache_dir: Path, download: bool) -> tuple[Dataset, Dataset]:
    """MNIST or Fashion-MNIST (`name` in IDX_DATASETS) as uint8 (N, 1, 28, 28) images and int64 labels."""
    layout = IDX_DATASETS[name]
    make_cache(cache_dir)
    src_raw = None
    if data_dir is not None:
        src = data_dir / layout.folder
        if not src.is_dir():
            raise DataError(
                f"--data-dir {data_dir} has no {layout.folder}/ folder; expected torchvision's layout, "
                f"e.g. {src / 'raw'}/*.gz for {layout.torchvision_class}"
            )
        src_raw = src / "raw"
        if not src_raw.is_dir():
            raise DataError(f"{name}: {src} has no raw/ folder; expected torchvision's layout, e.g. {src_raw}/*.gz")
    raw = cache_dir / layout.folder / "raw"
    sweep_temporaries(raw)
    wanted = [file for pair in SPLIT_FILES.values() for file in pair]
    if src_raw is None and not all((raw / f).is_file() or (raw / f"{f}.gz").is_file() for f in wanted):
        if not download:
            raise DataError(_missing_message(name, layout.folder, cache_dir))
        _download(name, cache_dir)
    located = {file: _sync_file(name, file, src_raw, raw, cache_dir) for file in wanted}
    for path, _ in located.values():
        if not path.is_file():
            raise DataError(_missing_message(name, layout.folder, cache_dir) + f" ({path.name} is missing)")
    train, test = (_read_split(name, [located[f] for f in SPLIT_FILES[s]], cache_dir) for s in ("train", "test"))
    return train, test
