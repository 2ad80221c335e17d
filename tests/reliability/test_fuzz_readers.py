"""Property-based fuzzing of the dataset readers and image decoding with malformed input.

Every reader either returns well-formed data or raises one of vitkit's own errors (a `VitkitError`, here always a
`DatasetError` naming the file or folder); no other exception may escape. Inputs: valid images of every format
and mode, then truncated, bit-flipped, spliced or replaced by random bytes; ImageFolder trees with odd names,
empty folders, bad files and one class; CIFAR pickles built from random plain data, numpy arrays of random
dtypes and shapes, mutated official batches; MNIST IDX files with random headers, lengths and gzip wrapping.
"""

from __future__ import annotations

import gzip
import io
import json
import os
import pickle
import struct
import subprocess
import sys
import tempfile
import textwrap
import warnings
import zipfile
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, event, given, settings
from hypothesis import strategies as st
from PIL import Image, ImageOps, features

import vitkit
from vitkit.data import DataConfig, load_classification_data, read_cifar, read_idx, read_mnist, safe_unpickle
from vitkit.data.cifar import find_cifar
from vitkit.data.imagefolder import scan_image_folder
from vitkit.errors import VitkitError
from vitkit.processing.images import DatasetError, ImageLoadError, image_size, load_image

FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
# PIL warns on some odd headers (corrupt EXIF, decompression-bomb sizes); what matters here is what is raised.
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning", "ignore::PIL.Image.DecompressionBombWarning")

FORMATS = ["PNG", "JPEG", "GIF", "BMP", "TIFF"] + (["WEBP"] if features.check("webp") else [])
EXT = {"PNG": ".png", "JPEG": ".jpg", "GIF": ".gif", "BMP": ".bmp", "TIFF": ".tif", "WEBP": ".webp"}
# modes each format can store (PIL's writers)
SAVABLE = {
    "PNG": ["1", "L", "LA", "P", "RGB", "RGBA", "I;16"],
    "JPEG": ["L", "RGB", "CMYK"],
    "GIF": ["L", "P"],
    "BMP": ["1", "L", "P", "RGB"],
    "TIFF": ["1", "L", "LA", "P", "RGB", "RGBA", "CMYK", "I;16", "I", "F"],
    "WEBP": ["RGB", "RGBA"],
}


@contextmanager
def scratch():
    """A fresh folder per hypothesis example (pytest's tmp_path is per test, not per example)."""
    with tempfile.TemporaryDirectory(prefix="vitkit-fuzz-") as d:
        yield Path(d)


def make_image(mode: str, w: int, h: int, seed: int) -> Image.Image:
    rng = np.random.default_rng(seed)
    if mode == "I;16":
        return Image.fromarray(rng.integers(0, 65536, (h, w), dtype=np.uint16))
    if mode == "I":
        return Image.fromarray(rng.integers(0, 65536, (h, w)).astype(np.int32))
    if mode == "F":
        return Image.fromarray(rng.random((h, w), dtype=np.float32))
    return Image.frombytes(mode, (w, h), rng.integers(0, 256, 4 * w * h, dtype=np.uint8).tobytes())


@st.composite
def encoded_images(draw) -> tuple[str, bytes]:
    """(format, bytes of a valid image file in a random mode, size and EXIF orientation)."""
    fmt = draw(st.sampled_from(FORMATS))
    mode = draw(st.sampled_from(SAVABLE[fmt]))
    w, h = draw(st.integers(1, 40)), draw(st.integers(1, 40))
    img = make_image(mode, w, h, draw(st.integers(0, 2**16)))
    kwargs = {}
    if fmt in ("JPEG", "PNG", "WEBP", "TIFF") and draw(st.booleans()):
        exif = Image.Exif()
        exif[0x0112] = draw(st.integers(1, 8))  # orientation
        kwargs["exif"] = exif.tobytes()
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kwargs)
    return fmt, buf.getvalue()


@st.composite
def damaged(draw, data: bytes) -> bytes:
    """`data` truncated, with bytes overwritten, with a slice deleted or junk inserted, or left intact."""
    how = draw(st.sampled_from(["intact", "truncate", "flip", "delete", "insert", "tail"]))
    n = len(data)
    if how == "truncate":
        return data[: draw(st.integers(0, max(0, n - 1)))]
    if how == "flip":
        out = bytearray(data)
        for _ in range(draw(st.integers(1, 8))):
            i = draw(st.integers(0, n - 1))
            out[i] = draw(st.integers(0, 255))
        return bytes(out)
    if how == "delete":
        i = draw(st.integers(0, n - 1))
        return data[:i] + data[i + draw(st.integers(1, 64)):]
    if how == "insert":
        i = draw(st.integers(0, n))
        return data[:i] + draw(st.binary(min_size=1, max_size=64)) + data[i:]
    if how == "tail":  # a valid header followed by garbage
        return data[: draw(st.integers(8, max(8, n)))] + draw(st.binary(max_size=256))
    return data


def check_decoded(img: Image.Image, mode: str) -> None:
    assert img.mode == mode and img.width >= 1 and img.height >= 1
    np.asarray(img)  # pixels really are there


# ------------------------------------------------------------------------------------------- image decoding
@FUZZ
@given(data=st.data(), mode=st.sampled_from(["RGB", "L"]))
def test_load_image_on_damaged_files_raises_only_image_load_error(data, mode):
    fmt, raw = data.draw(encoded_images())
    blob = data.draw(damaged(raw))
    with scratch() as d:
        path = d / f"sample{EXT[fmt]}"
        path.write_bytes(blob)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # PIL warns on some odd headers (e.g. EXIF, decompression bombs)
            try:
                img = load_image(path, mode)
            except ImageLoadError as e:
                assert "sample" in str(e) and Path(e.path).name == path.name  # the message names the file
            else:
                check_decoded(img, mode)
            try:
                w, h = image_size(path)
            except ImageLoadError as e:
                assert "sample" in str(e)
            else:
                assert w >= 0 and h >= 0


@FUZZ
@given(blob=st.binary(max_size=2048), mode=st.sampled_from(["RGB", "L"]),
       prefix=st.sampled_from([b"", b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff\xe0", b"GIF89a", b"BM", b"II*\x00",
                               b"MM\x00*", b"RIFF\x00\x00\x00\x00WEBPVP8 "]))
def test_load_image_on_random_bytes_behind_a_real_magic_number(blob, mode, prefix):
    try:
        img = load_image(prefix + blob, mode)
    except ImageLoadError as e:
        assert "bytes>" in str(e)
    else:
        check_decoded(img, mode)


@FUZZ
@given(data=st.data(), mode=st.sampled_from(["RGB", "L"]))
def test_valid_images_of_any_format_and_mode_decode(data, mode):
    """Odd but valid: grayscale, palette, RGBA, 16-bit, CMYK, float, EXIF-rotated, 1x1 images all just work."""
    _, raw = data.draw(encoded_images())
    img = load_image(raw, mode)
    check_decoded(img, mode)
    with Image.open(io.BytesIO(raw)) as src:
        upright = ImageOps.exif_transpose(src).size  # (TIFF's reader already reports the rotated size)
    assert img.size == upright


# ---------------------------------------------------------------------------------------------- ImageFolder
NAME = st.text(alphabet=st.characters(blacklist_categories=("Cs", "Cc"), blacklist_characters="/\\\x00"),
               min_size=1, max_size=12).filter(lambda s: s not in (".", "..") and len(s.encode()) < 200)
CFG = {1: DataConfig(img_size=8, in_chans=1, mean=(0.5,), std=(0.5,)), 3: DataConfig(img_size=8)}


def sometimes(draw, one_in: int) -> bool:
    """True about once in `one_in` draws: most generated inputs stay nearly valid, so the fuzzers reach past the
    first check, and each kind of damage is still tried often."""
    return draw(st.integers(0, one_in - 1)) == 0


@st.composite
def folder_file(draw) -> tuple[str, bytes | None]:
    """(file name, content) for a file inside a class folder; content None makes a sub-folder."""
    kind = draw(st.sampled_from(["good"] * 6 + ["bad", "random", "empty", "other", "dir"]))
    stem = draw(NAME)
    if kind == "dir":
        return stem, None
    if kind == "other":
        return stem + draw(st.sampled_from([".txt", ".heic", ".csv", ""])), draw(st.binary(max_size=32))
    fmt, raw = draw(encoded_images())
    ext = draw(st.sampled_from([EXT[fmt]] * 3 + [EXT[fmt].upper(), ".png", ".jpeg"]))  # also a lying extension
    if kind == "bad":
        raw = draw(damaged(raw))
    elif kind == "random":
        raw = draw(st.binary(max_size=128))
    elif kind == "empty":
        raw = b""
    return stem + ext, raw


@st.composite
def image_folders(draw) -> dict[str, dict[str, list[tuple[str, bytes | None]]]]:
    """{split: {class: [(file name, content)]}}: mostly a usable layout with a few odd or broken files; sometimes
    a split missing, a single class, an empty class or val classes that train lacks."""
    classes = draw(st.lists(NAME, min_size=0 if sometimes(draw, 8) else 2, max_size=4, unique_by=str.lower))
    tree = {}
    for split in ("train", "val"):
        if sometimes(draw, 15):
            continue  # split folder missing
        names = draw(st.lists(NAME, max_size=3, unique_by=str.lower)) if sometimes(draw, 10) else classes
        tree[split] = {c: draw(st.lists(folder_file(), min_size=0 if sometimes(draw, 10) else 1, max_size=3))
                       for c in names}
    return tree


def write_tree(root: Path, tree) -> None:
    for split, classes in tree.items():
        (root / split).mkdir(parents=True)
        for cls, files in classes.items():
            folder = root / split / cls
            folder.mkdir(exist_ok=True)
            for name, content in files:
                target = folder / name
                if target.exists():
                    continue
                if content is None:
                    target.mkdir()
                else:
                    target.write_bytes(content)


def iterate(dataset) -> None:
    for i in range(len(dataset)):
        x, y = dataset[i]
        assert x.ndim == 3 and x.shape[1:] == (8, 8) and 0 <= y


def add_links(root: Path, outside: Path) -> None:
    """In every class folder, a link back to itself (`again -> .`), one up to the split (`up -> ..`) and one to a
    folder of images outside the data root (`elsewhere`)."""
    for folder in sorted(p for split in ("train", "val") if (root / split).is_dir() for p in (root / split).iterdir()
                         if p.is_dir()):
        for name, target in (("again", "."), ("up", ".."), ("elsewhere", str(outside))):
            if not (folder / name).exists():
                (folder / name).symlink_to(target)


def check_scan(root: Path) -> None:
    """Every path the scan returns lies under the root (as written: the user's links are followed, the paths
    are not resolved) and names an image file; no real file is listed twice, however the links loop."""
    scan = scan_image_folder(root)
    for split in (scan.train, scan.val):
        real = [os.path.realpath(p) for p, _ in split]
        assert len(real) == len(set(real)), "a file reached twice through a link"
        for path, _ in split:
            rel = path.relative_to(root)
            assert ".." not in rel.parts and path.is_file(), path


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(tree=image_folders(), in_chans=st.sampled_from([1, 3]), skip=st.booleans(), cache=st.sampled_from([None, False]),
       links=st.booleans())
def test_image_folder_reader_raises_only_dataset_errors(tree, in_chans, skip, cache, links):
    with scratch() as root, scratch() as outside, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        write_tree(root, tree)
        if links:
            Image.new("L", (4, 4)).save(outside / "far.png")
            add_links(root, outside)
        try:
            data = load_classification_data(root, CFG[in_chans], randaugment=None, re_prob=0.0,
                                            skip_bad_images=skip, cache=cache)
        except DatasetError as e:
            event(f"refused ({type(e).__name__})")
            return
        event(f"loaded ({'skipped some' if data.skipped else 'all read'})")
        assert len(data.classes) >= 2  # one class is refused with an explanation
        assert len(data.train) > 0
        check_scan(root)
        try:
            iterate(data.train)
            iterate(data.val)
        except ImageLoadError as e:  # lazy decoding without skip_bad_images: stops at the bad file, named
            assert not skip and cache is False and str(e.path) in str(e)
        except DatasetError as e:  # lazy decoding with skip_bad_images, every file of a split unreadable: said so
            assert skip and cache is False and "no readable image left" in str(e)


def test_lazy_split_with_no_readable_image_left_is_a_dataset_error(tmp_path):
    """The case the fuzzer found: lazy decoding, skip_bad_images, and every val file undecodable (there: a GIF
    PIL could not decode; here: PNGs whose header reads but whose pixel data is zeroed): iterating the split ends in one
    DatasetError that says so."""
    png = io.BytesIO()
    Image.new("L", (8, 8), 128).save(png, format="PNG")
    good = png.getvalue()
    body = good.index(b"IDAT") + 4
    broken = good[:body] + b"\x00" * (len(good) - body - 16) + good[-16:]  # header reads, pixels do not
    for split, cls, name, content in [("train", "a", "0.png", good), ("train", "b", "0.png", good),
                                      ("val", "a", "0.png", broken), ("val", "b", "0.png", broken)]:
        (tmp_path / split / cls).mkdir(parents=True, exist_ok=True)
        (tmp_path / split / cls / name).write_bytes(content)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        data = load_classification_data(tmp_path, CFG[1], randaugment=None, re_prob=0.0, skip_bad_images=True,
                                        cache=False)
        iterate(data.train)
        with pytest.raises(DatasetError, match="no readable image left"):
            iterate(data.val)


# ------------------------------------------------------------------------------------------------- CIFAR
PLAIN = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats() | st.text(max_size=8)
    | st.binary(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.tuples(inner, inner)
    | st.dictionaries(st.text(max_size=4) | st.binary(max_size=4), inner, max_size=4),
    max_leaves=8,
)
DTYPES = st.sampled_from(["u1", "i1", "u2", "i4", "i8", "f4", "f8", "?", "c8", "S3", "U2", "V4", "O"])


@st.composite
def arrays(draw) -> np.ndarray:
    dtype = np.dtype(draw(DTYPES))
    shape = tuple(draw(st.lists(st.integers(0, 5), max_size=3)))
    n = int(np.prod(shape))
    if dtype == np.dtype("O"):
        return np.array([draw(PLAIN) for _ in range(n)] + [None], dtype=object)[:-1].reshape(shape)
    return np.frombuffer(draw(st.binary(min_size=dtype.itemsize * n, max_size=dtype.itemsize * n)),
                         dtype=dtype).reshape(shape)


@st.composite
def odd_batch(draw, batch: dict, num_classes: int) -> object:
    """`batch` with one field missing or holding something else, or not a dict at all."""
    n = len(batch[b"labels"])
    how = draw(st.sampled_from(["missing", "data", "labels", "not a dict"]))
    if how == "not a dict":
        return draw(PLAIN | arrays())
    batch = dict(batch)
    if how == "missing":
        del batch[draw(st.sampled_from([b"data", b"labels"]))]
    elif how == "data":
        data = batch[b"data"]
        batch[b"data"] = draw(st.sampled_from([data.astype(np.int16), data.reshape(n, 3, 32, 32), data[:, :100],
                                               data[:-1], data.astype(np.float32)]) | arrays() | PLAIN)
    else:
        batch[b"labels"] = draw(st.lists(st.integers(-3, num_classes + 3) | PLAIN, min_size=n, max_size=n)
                                | st.lists(st.integers(0, 9), max_size=6) | arrays() | PLAIN)
    return batch


@st.composite
def cifar_files(draw) -> dict[str, bytes]:
    """The six CIFAR-10 files as pickles, consistent and small; often one of them holds odd content (another
    shape, dtype or type, labels out of range, names that are not text) or damaged bytes."""
    protocol = draw(st.sampled_from([2, 4, 5]))
    num_classes = draw(st.integers(1, 12))
    names = [draw(st.text(max_size=6)).encode() for _ in range(num_classes)]
    files: dict[str, object] = {"batches.meta": {b"label_names": names, b"num_vis": 3072}}
    for name in ["data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5", "test_batch"]:
        n = draw(st.integers(0, 3))
        data = np.random.default_rng(draw(st.integers(0, 2**16))).integers(0, 256, (n, 3072), dtype=np.uint8)
        labels = draw(st.lists(st.integers(0, num_classes - 1), min_size=n, max_size=n))
        files[name] = {b"data": data, b"labels": labels, b"batch_label": b"", b"filenames": [b"x.png"] * n}
    how = draw(st.sampled_from(["valid", "odd", "odd", "meta", "bytes"]))
    target = draw(st.sampled_from(sorted(files)))
    if how == "odd" and target != "batches.meta":
        files[target] = draw(odd_batch(files[target], num_classes))
    elif how == "meta":
        files["batches.meta"] = draw(st.dictionaries(st.just(b"label_names"), st.lists(
            st.binary(max_size=6) | st.text(max_size=6), max_size=12) | PLAIN) | PLAIN)
    out = {name: pickle.dumps(obj, protocol=protocol) for name, obj in files.items()}
    if how == "bytes":
        out[target] = draw(damaged(out[target]))
    return out


@FUZZ
@given(files=cifar_files())
def test_cifar_reader_raises_only_dataset_errors(files):
    with scratch() as root:
        for name, raw in files.items():
            (root / name).write_bytes(raw)
        assert find_cifar(root) is not None
        try:
            data = read_cifar(root)
        except DatasetError as e:
            event(f"refused ({type(e.__cause__).__name__ if e.__cause__ else 'checked'})")
            return
        event("loaded")
        assert data.train_images.dtype == np.uint8 and data.train_images.shape[1:] == (3, 32, 32)
        assert len(data.train_images) == len(data.train_labels)
        assert all(isinstance(c, str) for c in data.classes)
        assert data.train_labels.max(initial=0) < max(1, len(data.classes))
        try:
            ds = load_classification_data(root, CFG[3], randaugment=None, re_prob=0.0)
        except DatasetError as e:
            assert len(data.classes) < 2 and "at least two" in str(e)
            return
        for split in (ds.train, ds.val):
            for i in range(min(len(split), 2)):
                assert split[i][0].shape == (3, 8, 8)


@FUZZ
@given(obj=PLAIN | arrays(), protocol=st.sampled_from([0, 2, 4, 5]), data=st.data())
def test_safe_unpickle_on_any_plain_pickle_and_its_damaged_copies(obj, protocol, data):
    raw = pickle.dumps(obj, protocol=protocol)
    blob = data.draw(damaged(raw))
    try:
        safe_unpickle(io.BytesIO(blob))
    except DatasetError:
        pass


@FUZZ
@given(blob=st.binary(max_size=512))
def test_safe_unpickle_on_random_bytes(blob):
    try:
        safe_unpickle(io.BytesIO(b"\x80\x02" + blob))
    except DatasetError:
        pass


# ------------------------------------------------------------------------------------------------- MNIST
IDX_CODES = {0x08: "u1", 0x09: "i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def idx_file(a: np.ndarray, code: int) -> bytes:
    return bytes([0, 0, code, a.ndim]) + struct.pack(f">{a.ndim}I", *a.shape) + a.astype(IDX_CODES[code]).tobytes()


@st.composite
def lying_idx(draw, raw: bytes) -> bytes:
    """`raw` with a header that lies: another dtype code, ndim or dimension, or an invalid magic number."""
    out = bytearray(raw)
    field = draw(st.sampled_from(["code", "ndim", "dim", "magic"]))
    if field == "code":
        out[2] = draw(st.sampled_from([*IDX_CODES, 0x00, 0x0A, 0xFF]))
    elif field == "ndim":
        out[3] = draw(st.integers(0, 255))
    elif field == "dim" and len(out) >= 8:
        out[4:8] = struct.pack(">I", draw(st.integers(0, 2**32 - 1)))
    else:
        out[0:2] = draw(st.binary(min_size=2, max_size=2))
    return bytes(out)


@st.composite
def mnist_files(draw) -> dict[str, bytes]:
    """The four IDX files, consistent and small; sometimes one has a lying header, odd dtype or shape,
    out-of-range labels, damaged bytes, or a (truncated) gzip wrapper."""
    h, w = draw(st.integers(0, 6)), draw(st.integers(0, 6))
    files = {}
    for split in ("train", "t10k"):
        n = draw(st.integers(0 if sometimes(draw, 10) else 1, 4))
        files[f"{split}-images-idx3-ubyte"] = idx_file(np.zeros((n, h, w), np.uint8) + draw(st.integers(0, 255)), 0x08)
        labels = np.array(draw(st.lists(st.integers(0, 9), min_size=n, max_size=n)), dtype=np.int64)
        files[f"{split}-labels-idx1-ubyte"] = idx_file(labels, 0x08)
    if sometimes(draw, 2):
        name = draw(st.sampled_from(sorted(files)))
        how = draw(st.sampled_from(["lie", "damaged", "dtype", "shape", "labels", "gzip", "gzip-truncated"]))
        raw = files[name]
        if how == "lie":
            raw = draw(lying_idx(raw))
        elif how == "damaged":
            raw = draw(damaged(raw))
        elif how == "dtype":
            code = draw(st.sampled_from(list(IDX_CODES)))
            n = struct.unpack(">I", raw[4:8])[0]
            raw = idx_file(np.zeros((n, h, w) if "images" in name else (n,)), code)
        elif how == "shape":
            raw = idx_file(np.zeros(tuple(draw(st.lists(st.integers(0, 4), max_size=4)))), 0x08)
        elif how == "labels" and "labels" in name:
            n = struct.unpack(">I", raw[4:8])[0]
            raw = idx_file(np.array(draw(st.lists(st.integers(-(2**31), 2**31 - 1), min_size=n, max_size=n)),
                                    dtype=np.int64), 0x0C)
        elif how.startswith("gzip"):
            raw = gzip.compress(raw)
            if how == "gzip-truncated":
                raw = raw[: draw(st.integers(0, len(raw) - 1))]
        files[name] = raw
    return files


@FUZZ
@given(files=mnist_files(), kind=st.sampled_from([None, "fashion-mnist"]))
def test_mnist_reader_raises_only_dataset_errors(files, kind):
    with scratch() as root:
        for name, raw in files.items():
            (root / name).write_bytes(raw)
        for name in files:
            try:
                read_idx(root / name)
            except DatasetError as e:
                assert name in str(e)
        try:
            mnist = read_mnist(root, kind=kind)
        except DatasetError:
            event("refused by read_mnist")
            return
        assert mnist.train_images.dtype == np.uint8 and mnist.train_images.ndim == 4
        assert len(mnist.classes) >= int(max(mnist.train_labels.max(initial=0), mnist.test_labels.max(initial=0))) + 1
        try:
            ds = load_classification_data(root, CFG[1], kind=kind or "mnist", randaugment=None, re_prob=0.0)
        except DatasetError:
            event("refused by load_classification_data")
            return
        event("loaded")
        for split in (ds.train, ds.val):
            for i in range(min(len(split), 3)):
                x, _ = split[i]
                assert x.shape == (1, 8, 8)


@FUZZ
@given(blob=st.binary(max_size=256), gz=st.booleans())
def test_read_idx_on_random_bytes(blob, gz):
    assume(blob[:2] != b"\x1f\x8b")
    with scratch() as root:
        path = root / "train-images-idx3-ubyte"
        path.write_bytes(gzip.compress(blob) if gz else blob)
        try:
            a = read_idx(path)
        except DatasetError as e:
            assert "train-images-idx3-ubyte" in str(e)
        else:
            assert isinstance(a, np.ndarray)


def test_errors_here_are_vitkit_errors():
    assert issubclass(DatasetError, VitkitError) and issubclass(ImageLoadError, DatasetError)


# Each case runs in a fresh process that measures what it costs: tracemalloc's peak (numpy reports its buffers
# to it, even untouched ones) and the growth of the peak resident set (PIL's buffers, decompression). The address
# space is capped 2 GB above what importing vitkit took, so a regression fails here with a MemoryError instead of
# taking the machine's memory.
MEASURE = textwrap.dedent("""
    import json, resource, sys, tracemalloc, warnings
    warnings.simplefilter("ignore")
    import vitkit
    from vitkit.data import read_cifar, read_idx
    from vitkit.data.transforms import DataConfig, EvalTransform
    from vitkit.checkpoint.converters.jax import read_npz
    from vitkit.processing.images import load_image
    with open("/proc/self/status") as f:
        vm = int(next(line for line in f if line.startswith("VmSize:")).split()[1]) * 1024
    resource.setrlimit(resource.RLIMIT_AS, (vm + (2 << 30), resource.RLIM_INFINITY))
    case, path = sys.argv[1], sys.argv[2]
    run = {
        "strip": lambda: EvalTransform(DataConfig(img_size=224, in_chans=1, mean=(0.5,), std=(0.5,)))(
            load_image(path, "L")),
        "png-bomb": lambda: load_image(path),
        "gzip-bomb": lambda: read_idx(path),
        "gzip-header": lambda: read_idx(path),
        "cifar": lambda: read_cifar(path),
        "npz": lambda: read_npz(path),
    }[case]
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    tracemalloc.start()
    try:
        run()
        error = None
    except Exception as e:
        error = f"{type(e).__name__}: {e}"
    peak = tracemalloc.get_traced_memory()[1]
    grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - before
    print(json.dumps({"error": error, "traced_peak": peak, "rss_growth": grown}))
""")


class _Ndarray:
    def __reduce__(self):
        return np.ndarray, ((200_000, 3072), "u1")


def _bomb(kind: str, d: Path) -> Path:
    """A small file that asks for a lot: (path to read)."""
    import zlib

    if kind == "strip":  # 177 bytes: 100000 x 1 pixels, which the 224 px eval resize makes 24,800,000 x 248
        Image.new("L", (100_000, 1)).save(d / "strip.png", optimize=True)
        return d / "strip.png"
    if kind == "png-bomb":  # a real one: 20000 x 20000 pixels of zeros, deflated to ~400 KB
        ihdr = struct.pack(">IIBBBBB", 20_000, 20_000, 8, 0, 0, 0, 0)
        raw = zlib.compress(bytes(20_001) * 20_000, 9)

        def chunk(tag: bytes, body: bytes) -> bytes:
            return struct.pack(">I", len(body)) + tag + body + struct.pack(">I", zlib.crc32(tag + body))

        (d / "bomb.png").write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", raw)
                                     + chunk(b"IEND", b""))
        return d / "bomb.png"
    if kind == "gzip-bomb":  # a header for 16 8x8 images, then 256 MB of zeros: ~250 KB gzipped
        header = bytes([0, 0, 8, 3]) + struct.pack(">3I", 16, 8, 8) + bytes(16 * 64)
        (d / "train-images-idx3-ubyte.gz").write_bytes(gzip.compress(header + bytes(256 << 20), 9))
        return d / "train-images-idx3-ubyte.gz"
    if kind == "gzip-header":  # 60 bytes gzipped, a header declaring 2^32 - 1 images of 65536 x 65536
        (d / "train-images-idx3-ubyte.gz").write_bytes(
            gzip.compress(bytes([0, 0, 8, 3]) + struct.pack(">3I", 2**32 - 1, 2**16, 2**16)))
        return d / "train-images-idx3-ubyte.gz"
    if kind == "cifar":  # a 200-byte batch calling numpy.ndarray((200000, 3072), 'u1'): 614 MB
        good = pickle.dumps({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0, 1]}, protocol=2)
        (d / "batches.meta").write_bytes(pickle.dumps({b"label_names": [b"a", b"b"]}, protocol=2))
        for name in ["data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5", "test_batch"]:
            (d / name).write_bytes(good)
        (d / "data_batch_1").write_bytes(pickle.dumps({b"data": _Ndarray(), b"labels": []}, protocol=2))
        return d
    # npz: a header claiming 2^28 floats (1 GB), no data
    text = repr({"descr": "<f4", "fortran_order": False, "shape": (2**28,)}).encode("latin1")
    text += b" " * (63 - (10 + len(text)) % 64) + b"\n"
    with zipfile.ZipFile(d / "vit.npz", "w") as zf:
        zf.writestr("Transformer/encoder_norm/scale.npy", b"\x93NUMPY\x01\x00" + struct.pack("<H", len(text)) + text)
    return d / "vit.npz"


@pytest.mark.parametrize("kind, match", [
    ("strip", "resize output pixels"),
    ("png-bomb", "decompression bomb"),
    ("gzip-bomb", "holds more than 1024 data bytes"),
    ("gzip-header", "truncated or forged"),
    ("cifar", "more than the file's"),
    ("npz", "truncated or forged"),
])
def test_implausibly_large_inputs_are_refused_not_allocated(tmp_path, kind, match):
    """A few hundred bytes (or a real decompression bomb of a few hundred KB) that ask for 100 MB to 25 GB: each
    refused with a DatasetError / CheckpointError naming the limit, having allocated less than 32 MB."""
    path = _bomb(kind, tmp_path)
    size = sum(p.stat().st_size for p in ([path] if path.is_file() else path.iterdir()))
    assert size < 500_000
    src = str(Path(vitkit.__file__).resolve().parents[1])
    proc = subprocess.run([sys.executable, "-c", MEASURE, kind, str(path)], capture_output=True, text=True,
                          timeout=300, env={**os.environ, "PYTHONPATH": src, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["error"] is not None and match in result["error"], result
    assert result["error"].split(":")[0] in ("DatasetError", "ImageLoadError", "CheckpointError"), result
    assert result["traced_peak"] < 32 << 20, result
    assert result["rss_growth"] < 32 << 20, result


# ------------------------------------------------------------------------------- regressions the fuzzers found
def _idx(a: np.ndarray, code: int) -> bytes:
    return bytes([0, 0, code, a.ndim]) + struct.pack(f">{a.ndim}I", *a.shape) + a.tobytes()


def test_mnist_label_of_two_billion_is_refused_not_enumerated(tmp_path):
    """A corrupt label file whose largest label is 2^31 - 1 used to build 2^31 class names (hang, then out of
    memory); it is now a DatasetError."""
    (tmp_path / "train-images-idx3-ubyte").write_bytes(_idx(np.zeros((2, 4, 4), np.uint8), 0x08))
    (tmp_path / "t10k-images-idx3-ubyte").write_bytes(_idx(np.zeros((1, 4, 4), np.uint8), 0x08))
    (tmp_path / "train-labels-idx1-ubyte").write_bytes(_idx(np.array([0, 2**31 - 1], ">i4"), 0x0C))
    (tmp_path / "t10k-labels-idx1-ubyte").write_bytes(_idx(np.array([0], ">i4"), 0x0C))
    with pytest.raises(DatasetError, match="labels go up to 2147483647"):
        read_mnist(tmp_path)


@pytest.mark.parametrize("meta, batch, match", [
    ({b"label_names": [b"\x80\xff", b"dog"]}, None, "not UTF-8"),
    ({b"label_names": [b"cat", b"dog"]}, {b"data": np.zeros((2, 3072), np.uint8), b"labels": [0, [1, 1]]},
     "not a list of integer labels"),
])
def test_cifar_names_that_are_not_utf8_and_ragged_labels(tmp_path, meta, batch, match):
    """Used to escape as UnicodeDecodeError / numpy's ValueError (inhomogeneous shape)."""
    good = {b"data": np.zeros((2, 3072), np.uint8), b"labels": [0, 1]}
    (tmp_path / "batches.meta").write_bytes(pickle.dumps(meta, protocol=2))
    for name in ["data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5", "test_batch"]:
        (tmp_path / name).write_bytes(pickle.dumps(batch if batch is not None and name == "data_batch_1" else good))
    with pytest.raises(DatasetError, match=match):
        read_cifar(tmp_path)


def test_image_size_of_a_decompression_bomb_is_an_image_load_error(tmp_path):
    """`image_size` (the lazy loader's header check) let PIL's DecompressionBombError escape."""
    path = tmp_path / "huge.gif"
    path.write_bytes(b"GIF87a" + struct.pack("<HH", 60000, 60000) + b"\x00\x00\x00" + b"\x00" * 32)
    with pytest.raises(ImageLoadError, match=r"huge\.gif"):
        image_size(path)


@pytest.mark.parametrize("protocol", [2, 4])
def test_cifar_batch_with_empty_bytes_and_no_labels_reads(tmp_path, protocol):
    """A protocol-2 pickle written by Python 3 rebuilds b"" with `__builtin__.bytes()`, which the restricted
    unpickler refused; an empty label list became a float array and was refused with a wrong message."""
    meta = {b"label_names": [b"cat", b"dog"]}
    (tmp_path / "batches.meta").write_bytes(pickle.dumps(meta, protocol=protocol))
    for name in ["data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5", "test_batch"]:
        n = 0 if name == "data_batch_5" else 2
        batch = {b"data": np.zeros((n, 3072), np.uint8), b"labels": [0, 1][:n], b"batch_label": b""}
        (tmp_path / name).write_bytes(pickle.dumps(batch, protocol=protocol))
    data = read_cifar(tmp_path)
    assert data.classes == ("cat", "dog") and len(data.train_labels) == 8
    with pytest.raises(DatasetError, match="refusing bytes"):  # bytes(n) would allocate what the file asks for
        safe_unpickle(io.BytesIO(b"\x80\x02c__builtin__\nbytes\nJ\x00\x00\x00\x40\x85R."))


def test_one_class_is_refused_with_an_explanation(tmp_path):
    for split in ("train", "val"):
        (tmp_path / split / "cat").mkdir(parents=True)
        Image.new("RGB", (4, 4)).save(tmp_path / split / "cat" / "a.png")
    with pytest.raises(DatasetError, match=r"single class folder \('cat'\).*at least two classes"):
        load_classification_data(tmp_path, CFG[3])


def test_val_without_class_folders_is_refused(tmp_path):
    """An empty val/ used to give a run whose validation covered nothing (top-1 0 every epoch)."""
    for name in ("ant", "bee"):
        (tmp_path / "train" / name).mkdir(parents=True)
        Image.new("RGB", (4, 4)).save(tmp_path / "train" / name / "a.png")
    (tmp_path / "val").mkdir()
    with pytest.raises(DatasetError, match=r"val folder .* has no class folders, so nothing could be validated"):
        load_classification_data(tmp_path, CFG[3])
