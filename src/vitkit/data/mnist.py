"""MNIST and Fashion-MNIST from their IDX files (http://yann.lecun.com/exdb/mnist/,
https://github.com/zalandoresearch/fashion-mnist):

    train-images-idx3-ubyte[.gz]  train-labels-idx1-ubyte[.gz]  t10k-images-idx3-ubyte[.gz]  t10k-labels-idx1-ubyte[.gz]

gzipped or not (told apart by content, not name), also with the `train-images.idx3-ubyte` spelling some mirrors
use. The four files are looked for in `data_dir` and up to two levels below it (torchvision keeps them in
`<root>/MNIST/raw/`). Both datasets share the format, so the kind comes from a hint: "fashion" in the name of
`data_dir`, of its parent, or of a folder between `data_dir` and the files (`--data ~/fashion-mnist`,
`--data ~/datasets` holding `FashionMNIST/raw/`), or `kind="fashion-mnist"`, gives Fashion-MNIST's class
names; otherwise the labels are named "0".."9" (or "0".."K-1"). Folders further up are not looked at, so a
project folder that happens to be called "fashion-..." does not turn MNIST into Fashion-MNIST.
"""

from __future__ import annotations

import gzip
import math
import os
import re
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import InputTooLarge
from ..processing.images import DatasetError
from ..utils.limits import check_decompressed

FASHION_MNIST_CLASSES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)  # fmt: skip

_IDX_DTYPES = {0x08: np.dtype("u1"), 0x09: np.dtype("i1"), 0x0B: np.dtype(">i2"), 0x0C: np.dtype(">i4"),
               0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8")}  # fmt: skip
MAX_CLASSES = 100_000  # label values beyond this are taken for corruption (EMNIST, the largest variant, has 62)
_IDX_NAME = re.compile(r"(?P<split>train|t10k)-(?P<what>images|labels)[.-]idx(?P<ndim>[13])-ubyte(?P<gz>\.gz)?")


def read_idx(path: str | Path) -> np.ndarray:
    """An IDX file (gzipped or not) -> numpy array with the dtype and shape its header declares.

    The header is read first and checked against the file's size before the data is read, so a header that
    lies costs nothing: an uncompressed file must hold exactly the declared bytes; a gzipped one may only declare
    what its compressed size can expand to (`vitkit.utils.limits.check_decompressed`), and is decompressed only
    up to the declared size (plus one byte, to tell a file with trailing data, e.g. a decompression bomb behind a
    small header, from a complete one)."""
    path = Path(path)
    try:
        with open(path, "rb") as raw_file:
            size = os.fstat(raw_file.fileno()).st_size
            gz = raw_file.read(2) == b"\x1f\x8b"
            raw_file.seek(0)
            f = gzip.GzipFile(fileobj=raw_file) if gz else raw_file
            head = f.read(4)
            if len(head) < 4 or head[:2] != b"\x00\x00" or head[2] not in _IDX_DTYPES:
                raise DatasetError(f"{path} is not an IDX file (bad magic number {head[:4].hex()})")
            dtype, ndim = _IDX_DTYPES[head[2]], head[3]
            dims = f.read(4 * ndim)
            if len(dims) < 4 * ndim:
                raise DatasetError(f"IDX file {path} is truncated (header)")
            shape = struct.unpack(f">{ndim}I", dims)
            expected = math.prod(shape) * dtype.itemsize
            header = 4 + 4 * ndim
            if gz:
                try:
                    check_decompressed(expected, size, f"gzipped IDX file {path} (header {shape})")
                except InputTooLarge as e:
                    raise DatasetError(str(e)) from None
            elif size - header != expected:
                raise DatasetError(_size_mismatch(path, size - header, shape, expected))
            data = f.read(expected + 1)  # one byte more than declared: trailing data is an error, not read on
    except (OSError, EOFError, zlib.error) as e:  # gzip.BadGzipFile is an OSError
        raise DatasetError(f"cannot read IDX file {path}: {e}") from e
    if len(data) != expected:
        held = f"more than {expected}" if len(data) > expected else str(len(data))
        raise DatasetError(_size_mismatch(path, held, shape, expected))
    return np.frombuffer(data, dtype=dtype).reshape(shape).astype(dtype.newbyteorder("="))


def _size_mismatch(path: Path, held: object, shape: tuple[int, ...], expected: int) -> str:
    return (f"IDX file {path} holds {held} data bytes but its header {shape} needs {expected} "
            "(truncated or corrupt download?)")


def _idx_files(folder: Path) -> dict[tuple[str, str], Path]:
    """{(split, what): path} for the IDX files directly in `folder`, preferring uncompressed copies."""
    found: dict[tuple[str, str], Path] = {}
    try:
        entries = sorted(folder.iterdir())
    except OSError:
        return found
    for p in entries:
        m = _IDX_NAME.fullmatch(p.name)
        if m is None or not p.is_file():
            continue
        key = (m["split"], m["what"])
        if key not in found or found[key].suffix == ".gz":
            found[key] = p
    return found


def find_mnist(data_dir: str | Path) -> Path | None:
    """The folder in or below `data_dir` (depth <= 2) holding the four IDX files, or None."""
    root = Path(data_dir)
    levels = [[root]]
    for _ in range(2):
        levels.append([d for parent in levels[-1] for d in _subdirs(parent)])
    for level in levels:
        for folder in level:
            if len(_idx_files(folder)) == 4:
                return folder
    return None


def guess_mnist_kind(data_dir: str | Path, folder: str | Path) -> str:
    """"fashion-mnist" when the folder names near the data say so (see the module docstring), else "mnist"."""
    root, folder = Path(data_dir).resolve(), Path(folder).resolve()
    try:
        between = folder.relative_to(root).parts
    except ValueError:
        between = ()
    names = (*root.parts[-2:], *between)
    return "fashion-mnist" if any("fashion" in n.lower() for n in names) else "mnist"


def _subdirs(folder: Path) -> list[Path]:
    try:
        return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    except OSError:
        return []


@dataclass
class MnistData:
    kind: str  # "mnist" or "fashion-mnist"
    root: Path
    classes: tuple[str, ...]
    train_images: np.ndarray  # uint8 [N, 1, 28, 28]
    train_labels: np.ndarray  # int64 [N]
    test_images: np.ndarray
    test_labels: np.ndarray


def read_mnist(data_dir: str | Path, kind: str | None = None) -> MnistData:
    """Read MNIST-format IDX files; `kind` ("mnist" / "fashion-mnist") overrides the folder-name hint."""
    if kind not in (None, "mnist", "fashion-mnist"):
        raise DatasetError(f"kind must be 'mnist' or 'fashion-mnist', got {kind!r}")
    folder = find_mnist(data_dir)
    if folder is None:
        raise DatasetError(
            f"no MNIST IDX files in {data_dir} or two levels below: looked for train-images-idx3-ubyte, "
            "train-labels-idx1-ubyte, t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte (optionally .gz)"
        )
    files = _idx_files(folder)
    arrays = {}
    for split in ("train", "t10k"):
        images, labels = read_idx(files[(split, "images")]), read_idx(files[(split, "labels")])
        if images.ndim != 3 or images.dtype != np.uint8 or 0 in images.shape[1:]:
            raise DatasetError(f"{files[(split, 'images')]}: expected uint8 images [N, H, W] (H, W >= 1), got "
                               f"{images.dtype} {images.shape}")
        if labels.ndim != 1 or labels.shape[0] != images.shape[0] or not np.issubdtype(labels.dtype, np.integer):
            raise DatasetError(f"{files[(split, 'labels')]}: {labels.shape} labels for {images.shape[0]} images")
        if labels.size and labels.min() < 0:
            raise DatasetError(f"{files[(split, 'labels')]}: negative labels")
        arrays[split] = (images[:, None], labels.astype(np.int64))  # [N, 1, H, W]
    if kind is None:
        kind = guess_mnist_kind(data_dir, folder)
    num_classes = int(max(a[1].max(initial=0) for a in arrays.values())) + 1
    if num_classes > MAX_CLASSES:  # a corrupt label file; naming 2**31 classes would exhaust memory
        raise DatasetError(f"{folder}: labels go up to {num_classes - 1}; more than {MAX_CLASSES} classes is not "
                           "plausible for MNIST-format data (corrupt label file?)")
    if kind == "fashion-mnist":
        if num_classes > len(FASHION_MNIST_CLASSES):
            raise DatasetError(f"{folder}: labels go up to {num_classes - 1}, Fashion-MNIST has 10 classes")
        classes = FASHION_MNIST_CLASSES
    else:
        classes = tuple(str(i) for i in range(max(num_classes, 10)))
    return MnistData(kind, folder, classes, *arrays["train"], *arrays["t10k"])
