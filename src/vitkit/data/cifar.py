"""CIFAR-10 / CIFAR-100 from the "python version" archives as users download and extract them
(https://www.cs.toronto.edu/~kriz/cifar.html):

    cifar-10-batches-py/  data_batch_1 .. data_batch_5, test_batch, batches.meta   (label_names)
    cifar-100-python/     train, test, meta                                         (fine_label_names)

`data_dir` may be the extracted folder or its parent. The files are Python pickles (of dicts holding a numpy
uint8 array [N, 3072], label lists and bytes). A pickle can run arbitrary code when loaded, so they are read
with `safe_unpickle`, which only lets the numpy array-reconstruction functions through: anything else in
the file is refused with an error, never executed. CIFAR-100 uses the 100 fine labels.
"""

from __future__ import annotations

import io
import math
import os
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from ..processing.images import DatasetError

CIFAR10_FILES = ("data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5", "test_batch")
CIFAR10_DIR, CIFAR100_DIR = "cifar-10-batches-py", "cifar-100-python"


def _latin1_encode(text: str, encoding: str = "latin1") -> bytes:
    """What Python-3 protocol-2 pickles call (`_codecs.encode`) to rebuild bytes; only latin-1 is allowed."""
    if encoding.replace("-", "").replace("_", "").lower() not in ("latin1", "iso88591"):
        raise pickle.UnpicklingError(f"refusing _codecs.encode with encoding {encoding!r}")
    return text.encode("latin1")


def _bytes(*args: Any) -> bytes:
    """What Python-3 protocol-2 pickles call (`__builtin__.bytes`) to rebuild an empty bytes value. Only that,
    or a copy of bytes: `bytes(10**12)` would allocate whatever a forged file asks for."""
    if not args:
        return b""
    if len(args) == 1 and isinstance(args[0], bytes | bytearray):
        return bytes(args[0])
    raise pickle.UnpicklingError(f"refusing bytes{tuple(type(a).__name__ for a in args)}")


_RECONSTRUCT = np.zeros(1).__reduce__()[0]  # numpy(._)core.multiarray._reconstruct
_FROMBUFFER = np.zeros(1).__reduce_ex__(5)[0]  # numpy(._)core.numeric._frombuffer (protocol 5)


def _declared_bytes(shape: Any, dtype: Any) -> int:
    """Bytes an array of `shape` and `dtype` (as a pickle passes them) would take; UnpicklingError if malformed."""
    dims = (shape,) if isinstance(shape, int) else shape
    if not isinstance(dims, tuple | list) or not all(type(d) is int and d >= 0 for d in dims):
        raise pickle.UnpicklingError(f"array shape {shape!r:.60} is not a tuple of non-negative integers")
    try:
        itemsize = np.dtype(dtype).itemsize
    except (TypeError, ValueError) as e:
        raise pickle.UnpicklingError(f"bad array dtype {dtype!r:.60} ({e})") from None
    return math.prod(dims) * itemsize


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Resolves only the globals numpy arrays need; everything else is an error (no code can run). The array
    constructors are wrapped: the arrays a file declares may not add up to more bytes than the file holds (a
    240-byte pickle calling `numpy.ndarray((200000, 3072), 'u1')` would otherwise allocate 600 MB)."""

    def __init__(self, f: BinaryIO, *, budget: int) -> None:
        super().__init__(f, encoding="bytes")
        self._budget = budget
        self._allowed: dict[tuple[str, str], Any] = {
            ("_codecs", "encode"): _latin1_encode, ("__builtin__", "bytes"): _bytes, ("builtins", "bytes"): _bytes,
            ("numpy", "ndarray"): self._new_array, ("numpy", "dtype"): np.dtype,
        }
        # The deprecated `numpy.core` is never imported: the functions come from numpy's own pickling above.
        for core in ("numpy.core", "numpy._core"):
            self._allowed[(f"{core}.multiarray", "_reconstruct")] = self._reconstruct
            self._allowed[(f"{core}.numeric", "_frombuffer")] = _FROMBUFFER  # its data are bytes of the file

    def _charge(self, shape: Any, dtype: Any) -> None:
        need = _declared_bytes(shape, dtype)
        if need > self._budget:
            raise pickle.UnpicklingError(
                f"it declares an array of shape {shape!r:.60} ({need:,} bytes), more than the file's "
                f"{self._budget:,} bytes could fill")
        self._budget -= need

    def _new_array(self, shape: Any = (0,), dtype: Any = float, *args: Any) -> np.ndarray:
        self._charge(shape, dtype)
        return np.ndarray(shape, dtype, *args)

    def _reconstruct(self, subtype: Any, shape: Any, dtype: Any) -> np.ndarray:
        if subtype != self._new_array:  # the pickle's `numpy.ndarray`, resolved above
            raise pickle.UnpicklingError(f"refusing to reconstruct an array of type {subtype!r:.60}")
        self._charge(shape, dtype)
        return _RECONSTRUCT(np.ndarray, shape, dtype)

    def find_class(self, module: str, name: str) -> Any:
        try:
            return self._allowed[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(f"global '{module}.{name}' is not allowed in a CIFAR pickle") from None

    def persistent_load(self, pid: Any) -> Any:
        raise pickle.UnpicklingError("persistent ids are not allowed in a CIFAR pickle")


def _remaining_bytes(f: BinaryIO) -> int:
    try:
        return os.fstat(f.fileno()).st_size - f.tell()
    except (OSError, AttributeError, ValueError, io.UnsupportedOperation):
        pos = f.tell()  # BytesIO and friends: measure, then go back to where we were
        end = f.seek(0, io.SEEK_END)
        f.seek(pos)
        return end - pos


def safe_unpickle(f: BinaryIO, *, name: str = "<pickle>") -> Any:
    """Load a pickle of plain data + numpy arrays (e.g. a CIFAR batch); any other global raises DatasetError.

    `encoding="bytes"` reads the original Python-2 files (their str become bytes, as the CIFAR page says). The
    arrays the pickle declares may add up to at most the bytes left in `f` (see `_NumpyOnlyUnpickler`).
    """
    try:
        obj = _NumpyOnlyUnpickler(f, budget=_remaining_bytes(f)).load()
    except pickle.UnpicklingError as e:
        raise DatasetError(f"{name}: refused to load: {e}") from e
    except Exception as e:  # only the allowed numpy functions run: any failure means bad bytes
        # (EOFError, ValueError, OverflowError on a forged FRAME length, MemoryError, RecursionError, ...)
        raise DatasetError(f"{name}: not a readable CIFAR pickle ({type(e).__name__}: {e})") from e
    return obj


def _load_dict(path: Path) -> dict[str, Any]:
    with open(path, "rb") as f:
        obj = safe_unpickle(f, name=str(path))
    if not isinstance(obj, dict):
        raise DatasetError(f"{path}: expected a pickled dict, found {type(obj).__name__}")
    return {(k.decode("latin1") if isinstance(k, bytes) else str(k)): v for k, v in obj.items()}


def _names(values: Any, path: Path, key: str) -> tuple[str, ...]:
    if not isinstance(values, list | tuple) or not all(isinstance(v, bytes | str) for v in values):
        raise DatasetError(f"{path}: '{key}' should be a list of names")
    try:
        return tuple(v.decode("utf-8") if isinstance(v, bytes) else v for v in values)
    except UnicodeDecodeError as e:
        raise DatasetError(f"{path}: '{key}' holds a name that is not UTF-8 text ({e})") from None


def _batch(path: Path, label_key: str, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """One batch file -> (uint8 [N, 3, 32, 32], int64 [N])."""
    d = _load_dict(path)
    if "data" not in d or label_key not in d:
        raise DatasetError(f"{path}: missing 'data' or '{label_key}' (keys: {', '.join(sorted(d))})")
    data = d["data"]
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        desc = f"{data.dtype} {data.shape}" if isinstance(data, np.ndarray) else type(data).__name__
        raise DatasetError(f"{path}: 'data' should be a uint8 array [N, 3072], found {desc}")
    try:
        labels = np.asarray(d[label_key])
    except (ValueError, TypeError, OverflowError) as e:  # ragged or mixed lists
        raise DatasetError(f"{path}: '{label_key}' is not a list of integer labels ({e})") from None
    if labels.size == 0:
        labels = labels.astype(np.int64)  # np.asarray([]) is float64
    if labels.shape != (data.shape[0],) or not np.issubdtype(labels.dtype, np.integer):
        raise DatasetError(f"{path}: {data.shape[0]} images but '{label_key}' has shape {labels.shape}")
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise DatasetError(f"{path}: labels outside 0..{num_classes - 1}")
    return data.reshape(-1, 3, 32, 32), labels.astype(np.int64)  # rows are R(1024) G(1024) B(1024), row-major


@dataclass
class CifarData:
    kind: str  # "cifar10" or "cifar100"
    root: Path
    classes: tuple[str, ...]
    train_images: np.ndarray  # uint8 [50000, 3, 32, 32]
    train_labels: np.ndarray  # int64 [50000]
    test_images: np.ndarray  # uint8 [10000, 3, 32, 32]
    test_labels: np.ndarray


def find_cifar(data_dir: str | Path) -> tuple[str, Path] | None:
    """("cifar10" | "cifar100", folder holding the batch files) when `data_dir` is such a folder or its
    parent; else None."""
    root = Path(data_dir)
    for folder in (root, root / CIFAR10_DIR):
        if (folder / "batches.meta").is_file() and (folder / "data_batch_1").is_file():
            return "cifar10", folder
    for folder in (root, root / CIFAR100_DIR):
        if all((folder / n).is_file() for n in ("meta", "train", "test")):
            return "cifar100", folder
    return None


def read_cifar(data_dir: str | Path) -> CifarData:
    """Read CIFAR-10 or CIFAR-100 (which one is detected) into uint8 arrays; see the module docstring."""
    found = find_cifar(data_dir)
    if found is None:
        raise DatasetError(
            f"no CIFAR data in {data_dir}: looked for {CIFAR10_DIR}/ (data_batch_1..5, test_batch, batches.meta) "
            f"and {CIFAR100_DIR}/ (train, test, meta), in the folder itself and one level down"
        )
    kind, folder = found
    if kind == "cifar10":
        missing = [n for n in CIFAR10_FILES if not (folder / n).is_file()]
        if missing:
            raise DatasetError(f"CIFAR-10 folder {folder} is missing {', '.join(missing)}")
        classes = _names(_load_dict(folder / "batches.meta").get("label_names"), folder / "batches.meta", "label_names")
        train = [_batch(folder / f"data_batch_{i}", "labels", len(classes)) for i in range(1, 6)]
        train_images = np.concatenate([b[0] for b in train])
        train_labels = np.concatenate([b[1] for b in train])
        test_images, test_labels = _batch(folder / "test_batch", "labels", len(classes))
    else:
        meta = _load_dict(folder / "meta")
        classes = _names(meta.get("fine_label_names"), folder / "meta", "fine_label_names")
        train_images, train_labels = _batch(folder / "train", "fine_labels", len(classes))
        test_images, test_labels = _batch(folder / "test", "fine_labels", len(classes))
    return CifarData(kind, folder, classes, train_images, train_labels, test_images, test_labels)
