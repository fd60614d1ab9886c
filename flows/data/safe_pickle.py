"""A pickle reader that accepts only the documented CIFAR-10 batch structure and never runs code.

A CIFAR-10 python batch is a pickled dict whose keys are bytes (or str) and whose values are bytes,
str, ints, lists of those, and numpy integer arrays (b"data": N x 3072 uint8). `load_restricted`
reads such a file with a `pickle.Unpickler` whose `find_class` knows only the few globals that
structure needs, and answers each of them with a stand-in that builds nothing but plain data:

- `numpy.core.multiarray._reconstruct` / `numpy._core.multiarray._reconstruct` (numpy 1 and 2
  spellings), `numpy.ndarray` and `numpy.dtype`: how numpy pickles an array (protocols 2-4);
- `numpy.core.numeric._frombuffer` / `numpy._core.numeric._frombuffer`: the same with protocol 5;
- `_codecs.encode(text, "latin1")`: how Python 3 writes bytes with protocol 2.

No numpy constructor or `__setstate__` ever sees the file's contents: arrays are described by the
stand-ins and built afterwards with `np.frombuffer` from raw bytes, only for integer dtypes without
fields or sub-arrays, and only when the byte count matches the shape. The stand-ins are plain
functions, so the pickle cannot instantiate (NEWOBJ) or modify them. Any other global (`os.system`,
`builtins.eval`, ...), persistent id, or malformed array is refused: a one-line `DataError` naming the
file.
"""

from __future__ import annotations

import io
import math
import pickle
from typing import Any

import numpy as np

from flows.data.dataset import first_line
from flows.errors import DataError

# integer dtypes an array in a batch may have (labels may be stored as an int array)
_INT_DTYPES = frozenset(f"{kind}{size}" for kind in "iu" for size in (1, 2, 4, 8))
_BYTE_ORDERS = frozenset(("|", "<", ">", "="))


def _refuse(reason: str) -> pickle.UnpicklingError:
    return pickle.UnpicklingError(f"refused: {reason}")


def _text(value: Any, what: str) -> str:
    if isinstance(value, bytes):
        return value.decode("latin1")
    if isinstance(value, str):
        return value
    raise _refuse(f"{what} is a {type(value).__name__}, not text")


def _ndarray_marker(*args: Any) -> Any:
    """Stands for `numpy.ndarray` as the first argument of `_reconstruct`; never builds anything."""
    raise _refuse("a call of numpy.ndarray")


class _DtypeSpec:
    """Describes a `numpy.dtype`: its name from the constructor, its byte order from `__setstate__`."""

    def __init__(self, name: Any) -> None:
        self.name = _text(name, "a dtype name")
        if self.name not in _INT_DTYPES:
            raise _refuse(f"dtype {self.name!r} is not an integer dtype")
        self.byteorder = "|"

    def __setstate__(self, state: Any) -> None:
        if not isinstance(state, tuple) or len(state) < 5:
            raise _refuse("malformed dtype state")
        byteorder = _text(state[1], "a dtype byte order")
        if byteorder not in _BYTE_ORDERS or any(part is not None for part in state[2:5]):
            raise _refuse("a dtype with fields, sub-arrays or an unknown byte order")
        self.byteorder = byteorder

    def dtype(self) -> np.dtype:
        base = np.dtype(self.name)
        return base if self.byteorder in ("|", "=") else base.newbyteorder(self.byteorder)


class _ArraySpec:
    """Describes an array made by `_reconstruct`; `__setstate__` receives shape, dtype and raw bytes."""

    def __init__(self) -> None:
        self.array: np.ndarray | None = None

    def __setstate__(self, state: Any) -> None:
        if not isinstance(state, tuple) or len(state) != 5:
            raise _refuse("malformed array state")
        _, shape, dtype, fortran, raw = state
        self.array = _build_array(raw, dtype, shape, "F" if fortran else "C")


def _build_array(raw: Any, dtype: Any, shape: Any, order: str) -> np.ndarray:
    if not isinstance(dtype, _DtypeSpec):
        raise _refuse("an array without an integer dtype")
    if not isinstance(shape, tuple) or not all(isinstance(s, int) and s >= 0 for s in shape):
        raise _refuse("an array with a malformed shape")
    if not isinstance(raw, bytes | bytearray | pickle.PickleBuffer):
        raise _refuse("an array whose data are not raw bytes")
    data = bytes(raw)
    dt = dtype.dtype()
    if len(data) != math.prod(shape) * dt.itemsize:
        raise _refuse(f"an array of shape {shape} holding {len(data)} bytes")
    return np.frombuffer(data, dtype=dt).reshape(shape, order=order).copy()


def _dtype(name: Any, align: Any = False, copy: Any = False) -> _DtypeSpec:
    return _DtypeSpec(name)


def _reconstruct(cls: Any, shape: Any, typecode: Any) -> _ArraySpec:
    if cls is not _ndarray_marker:
        raise _refuse("_reconstruct of something other than numpy.ndarray")
    return _ArraySpec()


def _frombuffer(buf: Any, dtype: Any, shape: Any, order: Any) -> np.ndarray:
    return _build_array(buf, dtype, shape, "F" if _text(order, "an array order") == "F" else "C")


def _latin1_encode(text: Any, encoding: Any = "utf-8") -> bytes:
    if not isinstance(text, str) or encoding != "latin1":
        raise _refuse("_codecs.encode other than of text to latin1")
    return text.encode("latin1")


_ALLOWED: dict[tuple[str, str], Any] = {
    ("numpy", "ndarray"): _ndarray_marker,
    ("numpy", "dtype"): _dtype,
    ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy.core.numeric", "_frombuffer"): _frombuffer,
    ("numpy._core.numeric", "_frombuffer"): _frombuffer,
    ("_codecs", "encode"): _latin1_encode,
}


class _BatchUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        try:
            return _ALLOWED[(module, name)]
        except KeyError:
            raise _refuse(f"{module}.{name} is not part of a CIFAR-10 batch") from None

    def persistent_load(self, pid: Any) -> Any:
        raise _refuse("a persistent id")


def _plain(value: Any, budget: list[int], depth: int = 0) -> Any:
    """Replace array stand-ins by arrays; refuse anything that is not plain data.

    `budget` counts the items still allowed: shared references could otherwise make a small file
    describe an enormous tree (a batch never shares anything).
    """
    budget[0] -= 1
    if depth > 4 or budget[0] < 0:
        raise _refuse("nested deeper or wider than a CIFAR-10 batch")
    if isinstance(value, bytes | str | int | float | bool | np.ndarray) or value is None:
        return value
    if isinstance(value, _ArraySpec):
        if value.array is None:
            raise _refuse("an array without data")
        return value.array
    if isinstance(value, list | tuple):
        return [_plain(v, budget, depth + 1) for v in value]
    if isinstance(value, dict):
        if not all(isinstance(k, bytes | str) for k in value):
            raise _refuse("a dict with keys other than text")
        return {k: _plain(v, budget, depth + 1) for k, v in value.items()}
    raise _refuse(f"a {type(value).__name__} object")


def load_restricted(data: bytes, where: str) -> dict:
    """Unpickle a CIFAR-10 batch from `data` without running code; `where` names the file in the DataError."""
    try:
        entry = _BatchUnpickler(io.BytesIO(data), encoding="bytes").load()
        if not isinstance(entry, dict):
            raise _refuse(f"a pickled {type(entry).__name__}, not a dict")
        return _plain(entry, [len(data) + 16])
    except Exception as exc:  # a damaged pickle raises many kinds of errors; none of them ran foreign code
        raise DataError(
            f"cifar10: {where} is not a readable CIFAR-10 batch ({first_line(exc)}); it was not loaded: replace "
            f"it with an intact copy of torchvision's file"
        ) from None
