"""The writable data cache: where it is, writing files into it, and records of where its files came from.

Files are written to a uniquely named temporary file beside their target and renamed into place, so an
interrupted or concurrent load never leaves a half-written file under the final name; what an
interrupted load leaves (`.<name>.<pid>.<random>.tmp`) is swept by a later load once it is an hour old.
Files are created with a plain `open()`, so they get 0666 minus the user's umask (not `mkstemp`'s 0600).

Every file extracted from an archive (an MNIST `.gz`, the CIFAR-10 tar) is covered by a `SourceRecord`
(MNIST: `<file>.source.json` beside it; CIFAR-10: `.fireflow-source.json` in the extracted folder): the
size and sha256 of the archive and of each extracted file. A load re-extracts when the archive or
an extracted file no longer matches its record, so a replaced or truncated archive is never shadowed
by old extracted files.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import secrets
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

from flows.errors import DataError

log = logging.getLogger(__name__)

_CHUNK = 1 << 20
TEMP_SUFFIX = ".tmp"
STALE_TEMP_AGE_S = 3600.0  # a temporary this old belongs to no running load


def default_cache_dir() -> Path:
    """$FIREFLOW_CACHE, else $XDG_CACHE_HOME, else ~/.cache, followed by fireflow/data."""
    base = os.environ.get("FIREFLOW_CACHE") or os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "fireflow" / "data"


def make_cache(cache_dir: Path) -> None:
    """Create the cache folder, or say how to choose a writable one."""
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DataError(
            f"cannot create the data cache {cache_dir} ({exc}); set --cache-dir to a writable folder"
        ) from None


@dataclass(frozen=True)
class FileDigest:
    """A file's size in bytes and its sha256 (hex)."""

    size: int
    sha256: str


def digest_bytes(data: bytes) -> FileDigest:
    return FileDigest(len(data), hashlib.sha256(data).hexdigest())


def file_digests(path: Path, md5: bool = False) -> tuple[FileDigest, str | None]:
    """One pass over `path`: its FileDigest and, when asked, its md5 (None otherwise)."""
    sha = hashlib.sha256()
    md = hashlib.md5(usedforsecurity=False) if md5 else None
    size = 0
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            sha.update(chunk)
            if md is not None:
                md.update(chunk)
            size += len(chunk)
    return FileDigest(size, sha.hexdigest()), (md.hexdigest() if md is not None else None)


def file_md5(path: Path) -> str:
    """The md5 of a file (hex), as torchvision lists them."""
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def temp_name(stem: str) -> str:
    """A unique hidden name for a temporary file or folder: `.<stem>.<pid>.<random>.tmp`."""
    return f".{stem}.{os.getpid()}.{secrets.token_hex(4)}{TEMP_SUFFIX}"


def sweep_temporaries(folder: Path, max_age_s: float = STALE_TEMP_AGE_S) -> None:
    """Remove temporaries an interrupted load left in `folder` (only ones older than `max_age_s`)."""
    if not folder.is_dir():
        return
    now = time.time()
    for path in folder.iterdir():
        if not (path.name.startswith(".") and path.name.endswith(TEMP_SUFFIX)):
            continue
        try:
            if now - path.lstat().st_mtime < max_age_s:
                continue  # perhaps another build is writing it right now
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            else:
                path.unlink()
            log.info("removed %s, left by an interrupted load", path)
        except OSError:
            pass  # another build removed it first


@contextmanager
def temp_beside(target: Path) -> Iterator[Path]:
    """A unique temporary path next to `target`, renamed onto it when the block ends without error.

    The caller creates the file with a plain `open(path, "xb")`; safe for concurrent loads.
    """
    tmp = target.parent / temp_name(target.name)
    try:
        yield tmp
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def write_file(target: Path, data: bytes) -> None:
    """Write `data` to `target` through a temporary file beside it."""
    target.parent.mkdir(parents=True, exist_ok=True)
    with temp_beside(target) as tmp, open(tmp, "xb") as f:
        f.write(data)


def copy_if_changed(src: Path, dst: Path) -> bool:
    """Copy `src` onto `dst` unless `dst` already has the same bytes; True when it copied."""
    if dst.is_file() and dst.stat().st_size == src.stat().st_size:
        if file_digests(dst)[0] == file_digests(src)[0]:
            return False
    dst.parent.mkdir(parents=True, exist_ok=True)
    with temp_beside(dst) as tmp, open(src, "rb") as fin, open(tmp, "xb") as fout:
        shutil.copyfileobj(fin, fout, _CHUNK)
    log.info("copied %s into the cache %s", src, dst)
    return True


@dataclass
class SourceRecord:
    """What a set of extracted files came from: the archive's digest and each extracted file's digest."""

    archive: str  # the archive's file name
    archive_digest: FileDigest
    files: dict[str, FileDigest] = field(default_factory=dict)  # name (relative to the record) -> digest

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=1, sort_keys=True) + "\n"

    @classmethod
    def read(cls, path: Path) -> SourceRecord | None:
        """The record at `path`, or None when it is missing or unreadable (the files are then re-extracted)."""
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
            return cls(
                archive=str(raw["archive"]),
                archive_digest=FileDigest(**raw["archive_digest"]),
                files={str(k): FileDigest(**v) for k, v in raw["files"].items()},
            )
        except (OSError, ValueError, TypeError, KeyError, AttributeError):
            return None

    def write(self, path: Path) -> None:
        write_file(path, self.to_json().encode())

    def matches(self, archive_digest: FileDigest | None, folder: Path) -> bool:
        """True when the archive (if given) and every recorded file in `folder` are unchanged."""
        if archive_digest is not None and archive_digest != self.archive_digest:
            return False
        for name, digest in self.files.items():
            path = folder / name
            if not path.is_file() or path.stat().st_size != digest.size or file_digests(path)[0] != digest:
                return False
        return True
