"""MNIST / Fashion-MNIST from tiny synthetic IDX files (gzipped or not): the IDX reader, finding the files,
telling Fashion-MNIST by its folder name, and the datasets load_classification_data builds."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from vitkit.data import FASHION_MNIST_CLASSES, DataConfig, DatasetError, load_classification_data, read_idx, read_mnist
from vitkit.data.classification import detect_dataset_kind
from vitkit.data.mnist import find_mnist


def idx_bytes(a: np.ndarray) -> bytes:
    codes = {np.dtype("u1"): 0x08, np.dtype("i1"): 0x09, np.dtype(">i2"): 0x0B, np.dtype(">i4"): 0x0C,
             np.dtype(">f4"): 0x0D, np.dtype(">f8"): 0x0E}
    a = a.astype(a.dtype.newbyteorder(">")) if a.dtype.itemsize > 1 else a
    return bytes([0, 0, codes[a.dtype], a.ndim]) + struct.pack(f">{a.ndim}I", *a.shape) + a.tobytes()


def write_mnist(folder: Path, *, gz: bool = False, n_train: int = 12, n_test: int = 5, size: int = 28,
                dotted: bool = False) -> dict[str, np.ndarray]:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    arrays = {
        "train-images": rng.integers(0, 256, (n_train, size, size), dtype=np.uint8),
        "train-labels": (np.arange(n_train) % 10).astype(np.uint8),
        "t10k-images": rng.integers(0, 256, (n_test, size, size), dtype=np.uint8),
        "t10k-labels": (np.arange(n_test)[::-1] % 10).astype(np.uint8),
    }
    for name, a in arrays.items():
        sep = "." if dotted else "-"
        fname = f"{name}{sep}idx{3 if 'images' in name else 1}-ubyte" + (".gz" if gz else "")
        data = idx_bytes(a)
        (folder / fname).write_bytes(gzip.compress(data) if gz else data)
    return arrays


# ------------------------------------------------------------------------------------------------- IDX
@pytest.mark.parametrize("dtype", ["u1", "i1", ">i2", ">i4", ">f4", ">f8"])
def test_read_idx_types(tmp_path, dtype):
    a = (np.arange(24).reshape(2, 3, 4) - 5).astype(dtype) if dtype != "u1" else np.arange(24, dtype="u1")
    (tmp_path / "x.idx").write_bytes(idx_bytes(a))
    got = read_idx(tmp_path / "x.idx")
    np.testing.assert_array_equal(got, a)
    assert got.dtype.isnative and got.flags.writeable


def test_read_idx_gzip_is_detected_by_content(tmp_path):
    a = np.arange(10, dtype=np.uint8)
    (tmp_path / "plain-but-named.gz").write_bytes(idx_bytes(a))
    (tmp_path / "gzipped-no-suffix").write_bytes(gzip.compress(idx_bytes(a)))
    np.testing.assert_array_equal(read_idx(tmp_path / "plain-but-named.gz"), a)
    np.testing.assert_array_equal(read_idx(tmp_path / "gzipped-no-suffix"), a)


def test_read_idx_errors_name_the_file(tmp_path):
    good = idx_bytes(np.zeros((3, 4, 4), np.uint8))
    cases = {
        "short": good[:-5],
        "long": good + b"\x00",
        "magic": b"\x01\x02\x08\x03" + good[4:],
        "header": good[:7],
        "gz": gzip.compress(good)[:-12],
        "html": b"<html>rate limited</html>",
    }
    for name, data in cases.items():
        (tmp_path / name).write_bytes(data)
        with pytest.raises(DatasetError, match=name):
            read_idx(tmp_path / name)


# ---------------------------------------------------------------------------------------------- finding
@pytest.mark.parametrize("gz", [False, True])
def test_read_mnist_plain_and_gz(tmp_path, gz):
    arrays = write_mnist(tmp_path, gz=gz)
    d = read_mnist(tmp_path)
    assert d.kind == "mnist" and d.classes == tuple(str(i) for i in range(10))
    assert d.train_images.shape == (12, 1, 28, 28) and d.train_images.dtype == np.uint8
    np.testing.assert_array_equal(d.train_images[:, 0], arrays["train-images"])
    np.testing.assert_array_equal(d.test_labels, arrays["t10k-labels"])
    assert d.train_labels.dtype == np.int64


def test_finds_torchvision_layout_and_dotted_names(tmp_path):
    write_mnist(tmp_path / "MNIST" / "raw", dotted=True)
    assert find_mnist(tmp_path) == tmp_path / "MNIST" / "raw"
    assert find_mnist(tmp_path / "MNIST") == tmp_path / "MNIST" / "raw"
    deep = tmp_path / "deep"
    write_mnist(deep / "a" / "b" / "c")
    assert find_mnist(deep) is None  # three levels down is too far


def test_prefers_uncompressed_copies(tmp_path):
    write_mnist(tmp_path, gz=True)
    (tmp_path / "train-images-idx3-ubyte").write_bytes(b"broken")  # an uncompressed copy wins, so it is read
    with pytest.raises(DatasetError, match="train-images-idx3-ubyte"):
        read_mnist(tmp_path)


def test_kind_hint_from_folder_names_or_override(tmp_path):
    # (the test's name stays clear of the hint word: tmp_path's own name is the data folder's parent below)
    write_mnist(tmp_path / "FashionMNIST" / "raw")
    d = read_mnist(tmp_path)
    assert d.kind == "fashion-mnist" and d.classes == FASHION_MNIST_CLASSES and d.classes[0] == "T-shirt/top"
    assert detect_dataset_kind(tmp_path)[0] == "fashion-mnist"
    plain = tmp_path / "data"
    write_mnist(plain)
    assert read_mnist(plain).kind == "mnist"
    assert read_mnist(plain, kind="fashion-mnist").classes[9] == "Ankle boot"
    named = tmp_path / "fashion_mnist" / "raw"  # --data pointing at the files, hint one level up
    write_mnist(named)
    assert read_mnist(named).kind == "fashion-mnist"
    unrelated = tmp_path / "fashion-project" / "exp" / "data"  # further up than data_dir's parent: ignored
    write_mnist(unrelated)
    assert read_mnist(unrelated).kind == "mnist"


def test_inconsistent_files(tmp_path):
    write_mnist(tmp_path)
    (tmp_path / "t10k-labels-idx1-ubyte").write_bytes(idx_bytes(np.zeros(4, np.uint8)))  # 5 images, 4 labels
    with pytest.raises(DatasetError, match="t10k-labels"):
        read_mnist(tmp_path)
    (tmp_path / "t10k-labels-idx1-ubyte").unlink()
    with pytest.raises(DatasetError, match="no MNIST IDX files"):
        read_mnist(tmp_path)


# ------------------------------------------------------------------------------------------------ datasets
def test_dataset_for_grey_model_no_flip(tmp_path):
    arrays = write_mnist(tmp_path)
    cfg = DataConfig(img_size=28, in_chans=1, mean=(0.5,), std=(0.5,), crop_pct=1.0)
    data = load_classification_data(tmp_path, cfg)
    assert data.kind == "mnist" and data.cached and len(data.train) == 12 and len(data.val) == 5
    assert data.train.transform.hflip == 0.0  # a mirrored digit is another glyph
    x, y = data.val[0]
    assert x.shape == (1, 28, 28) and y == int(arrays["t10k-labels"][0])
    torch.testing.assert_close(x[0], torch.from_numpy(arrays["t10k-images"][0]).float() / 255 * 2 - 1)
    xt, yt = data.train[3]
    assert xt.shape == (1, 28, 28) and yt == 3


def test_dataset_for_rgb_model_shares_memory(tmp_path):
    write_mnist(tmp_path / "fashion")
    data = load_classification_data(tmp_path, DataConfig(img_size=32))
    assert data.kind == "fashion-mnist" and data.train.transform.hflip == 0.5
    assert data.train.images.shape == (12, 3, 28, 28) and data.train.images.stride(1) == 0  # a view, no copy
    x, _ = data.val[1]
    assert x.shape == (3, 32, 32)
    assert torch.equal(x[0], x[1]) and torch.equal(x[1], x[2])  # grey replicated
