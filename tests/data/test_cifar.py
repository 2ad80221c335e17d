"""CIFAR-10 / CIFAR-100 from tiny synthetic pickle batches written in the official layout: reading, detection
(folder or parent), the restricted unpickler (numpy arrays yes, anything else refused without running it),
and the datasets load_classification_data builds from them."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from vitkit.data import DataConfig, DatasetError, detect_dataset_kind, load_classification_data
from vitkit.data.cifar import find_cifar, read_cifar, safe_unpickle
from vitkit.processing.images import rgb_to_luma

CIFAR10_NAMES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
N = 6  # images per batch


def dump(obj: object, path: Path, protocol: int = 2, py2_names: bool = True) -> None:
    """Pickle like the official files: protocol 2, bytes keys, `numpy.core` global names (what numpy 1.x and
    Python 2 wrote)."""
    data = pickle.dumps(obj, protocol=protocol)
    if py2_names and protocol < 4 and b"numpy._core.multiarray" in data:
        data = data.replace(b"numpy._core.multiarray", b"numpy.core.multiarray")
        assert b"numpy.core.multiarray\n_reconstruct" in data
    path.write_bytes(data)


def batch_arrays(seed: int, n: int = N, num_classes: int = 10) -> tuple[np.ndarray, list[int]]:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, 3072), dtype=np.uint8), [int(v) for v in rng.integers(0, num_classes, n)]


def write_cifar10(root: Path, protocol: int = 2) -> Path:
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    meta = {b"label_names": [n.encode() for n in CIFAR10_NAMES], b"num_cases_per_batch": N, b"num_vis": 3072}
    dump(meta, folder / "batches.meta", protocol)
    for i, name in enumerate([f"data_batch_{k}" for k in range(1, 6)] + ["test_batch"]):
        data, labels = batch_arrays(i)
        obj = {b"batch_label": f"batch {i}".encode(), b"labels": labels, b"data": data,
               b"filenames": [f"img_{i}_{j}.png".encode() for j in range(N)]}
        dump(obj, folder / name, protocol)
    return folder


def write_cifar100(root: Path) -> Path:
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True)
    fine = [f"fine_{i:02d}".encode() for i in range(100)]
    dump({b"fine_label_names": fine, b"coarse_label_names": [f"c{i}".encode() for i in range(20)]}, folder / "meta")
    for i, name in enumerate(["train", "test"]):
        data, labels = batch_arrays(10 + i, n=8, num_classes=100)
        dump({b"data": data, b"fine_labels": labels, b"coarse_labels": [v // 5 for v in labels],
              b"filenames": [b"x"] * 8, b"batch_label": b"b"}, folder / name)
    return folder


# ---------------------------------------------------------------------------------------------- reading
@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_read_cifar10_from_parent_and_folder(tmp_path, protocol):
    folder = write_cifar10(tmp_path, protocol)
    for where in (tmp_path, folder):
        d = read_cifar(where)
        assert d.kind == "cifar10" and d.root == folder and d.classes == tuple(CIFAR10_NAMES)
        assert d.train_images.shape == (5 * N, 3, 32, 32) and d.train_images.dtype == np.uint8
        assert d.test_images.shape == (N, 3, 32, 32)
        data0, labels0 = batch_arrays(0)
        _, labels5 = batch_arrays(5)
        # rows are R(1024) G(1024) B(1024), each 32x32 row-major
        assert d.train_images[0, 1, 2, 3] == data0[0, 1024 + 2 * 32 + 3]
        assert d.train_labels[:N].tolist() == labels0 and d.test_labels.tolist() == labels5
        assert d.train_labels.dtype == np.int64


def test_read_cifar100_uses_fine_labels(tmp_path):
    folder = write_cifar100(tmp_path)
    d = read_cifar(tmp_path)
    assert d.kind == "cifar100" and d.root == folder and len(d.classes) == 100 and d.classes[7] == "fine_07"
    assert d.train_labels.tolist() == batch_arrays(10, n=8, num_classes=100)[1]
    assert find_cifar(folder) == ("cifar100", folder)


def test_detection_and_none(tmp_path):
    assert find_cifar(tmp_path) is None
    write_cifar10(tmp_path)
    assert detect_dataset_kind(tmp_path) == ("cifar10", tmp_path / "cifar-10-batches-py")


# ------------------------------------------------------------------------------------------------ safety
class _Evil:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.mkdir, (str(self.marker),))


def test_unpickler_refuses_other_globals_without_running_them(tmp_path):
    folder = write_cifar10(tmp_path)
    marker = tmp_path / "pwned"
    dump({b"data": np.zeros((N, 3072), np.uint8), b"labels": [0] * N, b"x": _Evil(marker)}, folder / "data_batch_3")
    with pytest.raises(DatasetError, match=r"data_batch_3.*not allowed"):
        read_cifar(tmp_path)
    assert not marker.exists()


@pytest.mark.parametrize("payload", [
    pickle.dumps(eval), pickle.dumps(np.load), pickle.dumps(torch.Tensor), pickle.dumps(Path("x")),
])
def test_unpickler_refuses_functions_and_classes(tmp_path, payload):
    import io

    with pytest.raises(DatasetError, match="not allowed"):
        safe_unpickle(io.BytesIO(payload))


def test_unpickler_loads_plain_data_and_arrays():
    import io

    obj = {"a": [1, 2.5, "s", b"b", None, True], "arr": np.arange(6, dtype=np.int16).reshape(2, 3), "t": (1,)}
    for protocol in (2, 4, 5):
        got = safe_unpickle(io.BytesIO(pickle.dumps(obj, protocol=protocol)))
        assert got["a"] == obj["a"] and got["t"] == (1,)
        np.testing.assert_array_equal(got["arr"], obj["arr"])
        assert got["arr"].dtype == np.int16


def test_unpickler_rejects_codecs_other_than_latin1():
    import io

    # protocol-2 pickle calling _codecs.encode('x', 'rot13')
    payload = b"\x80\x02c_codecs\nencode\nq\x00X\x01\x00\x00\x00xq\x01X\x05\x00\x00\x00rot13q\x02\x86q\x03Rq\x04."
    with pytest.raises(DatasetError, match="rot13"):
        safe_unpickle(io.BytesIO(payload))


# ------------------------------------------------------------------------------------------ bad files
def test_missing_and_malformed_batches(tmp_path):
    folder = write_cifar10(tmp_path)
    (folder / "data_batch_4").unlink()
    with pytest.raises(DatasetError, match="data_batch_4"):
        read_cifar(tmp_path)
    dump({b"data": np.zeros((N, 100), np.uint8), b"labels": [0] * N}, folder / "data_batch_4")
    with pytest.raises(DatasetError, match=r"data_batch_4.*3072"):
        read_cifar(tmp_path)
    dump({b"data": np.zeros((N, 3072), np.uint8), b"labels": [0] * (N - 1)}, folder / "data_batch_4")
    with pytest.raises(DatasetError, match="data_batch_4"):
        read_cifar(tmp_path)
    dump({b"data": np.zeros((N, 3072), np.uint8), b"labels": [11] * N}, folder / "data_batch_4")
    with pytest.raises(DatasetError, match="outside"):
        read_cifar(tmp_path)
    (folder / "data_batch_4").write_bytes((folder / "data_batch_1").read_bytes()[:500])
    with pytest.raises(DatasetError, match="data_batch_4"):
        read_cifar(tmp_path)


# ------------------------------------------------------------------------------------------- datasets
def test_load_classification_data_cifar10(tmp_path):
    write_cifar10(tmp_path)
    cfg = DataConfig(img_size=32, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5), crop_pct=1.0)
    data = load_classification_data(tmp_path, cfg, generator=torch.Generator().manual_seed(0))
    assert data.kind == "cifar10" and data.classes == tuple(CIFAR10_NAMES) and data.cached
    assert len(data.train) == 5 * N and len(data.val) == N
    assert data.train.images.shape == (5 * N, 3, 32, 32) and data.train.images.dtype == torch.uint8
    x, y = data.val[0]
    assert x.shape == (3, 32, 32) and x.dtype == torch.float32 and isinstance(y, int)
    raw = read_cifar(tmp_path)
    expected = torch.from_numpy(raw.test_images[0]).float() / 255 * 2 - 1  # crop_pct 1 at 32 px: identity
    torch.testing.assert_close(x, expected)
    assert y == raw.test_labels[0]
    xt, _ = data.train[0]
    assert xt.shape == (3, 32, 32)
    assert data.train.transform.hflip == 0.5
    assert "cifar10" in data.summary() and "30 train" in data.summary()


def test_grey_model_gets_luma(tmp_path):
    write_cifar10(tmp_path)
    cfg = DataConfig(img_size=32, in_chans=1, mean=(0.5,), std=(0.5,), crop_pct=1.0)
    data = load_classification_data(tmp_path, cfg)
    assert data.val.images.shape == (N, 1, 32, 32)
    raw = read_cifar(tmp_path)
    np.testing.assert_array_equal(data.val.images[:, 0].numpy(), rgb_to_luma(raw.test_images.transpose(0, 2, 3, 1)))
    assert data.val[0][0].shape == (1, 32, 32)


def test_cifar100_dataset_and_kind_mismatch(tmp_path):
    write_cifar100(tmp_path)
    data = load_classification_data(tmp_path, DataConfig(img_size=32))
    assert data.kind == "cifar100" and data.num_classes == 100 and len(data.train) == 8
    with pytest.raises(DatasetError, match="cifar100"):
        load_classification_data(tmp_path, DataConfig(img_size=32), kind="cifar10")
