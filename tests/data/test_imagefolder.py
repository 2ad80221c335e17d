"""ImageFolder (`DIR/train/<class>/...`, `DIR/val/<class>/...`): scanning rules, the error for each broken
layout, bad-image handling (stop vs skip), in-memory cache vs per-item decoding, and dataset detection."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from vitkit.data import (
    DataConfig,
    DatasetError,
    ImageFolderDataset,
    ImageLoadError,
    TensorImageDataset,
    detect_dataset_kind,
    load_classification_data,
    scan_image_folder,
)
from vitkit.data.classification import estimate_decoded_bytes
from vitkit.errors import ConfigError

# crop_pct 1 and img_size = the images' size: the eval transform is then just the normalisation
EXACT = DataConfig(img_size=16, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0), crop_pct=1.0)


def write_image(path: Path, colour: tuple[int, int, int], size: tuple[int, int] = (16, 16), mode: str = "RGB",
                **kwargs) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    img = Image.new("RGB", size, colour)
    if mode != "RGB":
        img = img.convert(mode)
    img.save(path, **kwargs)
    return path


def make_tree(root: Path, classes=("cat", "dog"), per_class: int = 3, val_classes=None) -> Path:
    for split, names in (("train", classes), ("val", val_classes if val_classes is not None else classes)):
        for c, name in enumerate(names):
            for i in range(per_class):
                write_image(root / split / name / f"{i}.png", (40 * c, 10 * i, 100))
    return root


def no_warnings_load(*args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        return load_classification_data(*args, **kwargs)


# ---------------------------------------------------------------------------------------------- scanning
def test_classes_sorted_extensions_any_case_hidden_ignored(tmp_path):
    root = make_tree(tmp_path, classes=("zebra", "ant", "Bee"))
    write_image(root / "train" / "ant" / "UPPER.JPG", (1, 2, 3), format="JPEG")
    write_image(root / "train" / "ant" / "mixed.JpEg", (1, 2, 3), format="JPEG")
    write_image(root / "train" / "ant" / "pic.bmp", (1, 2, 3))
    write_image(root / "train" / "ant" / "pic.webp", (1, 2, 3))
    write_image(root / "train" / "ant" / "pic.gif", (1, 2, 3))
    write_image(root / "train" / "ant" / "nested" / "deeper.png", (1, 2, 3))
    write_image(root / "train" / "ant" / ".hidden.png", (1, 2, 3))
    write_image(root / "train" / "ant" / ".cache" / "x.png", (1, 2, 3))
    (root / "train" / "ant" / "notes.txt").write_text("hello")
    (root / "train" / ".DS_Store").write_bytes(b"\x00")
    write_image(root / "train" / ".ipynb_checkpoints" / "x.png", (1, 2, 3))
    scan = scan_image_folder(root)
    assert scan.classes == ("Bee", "ant", "zebra")  # plain sorted(), as torchvision / timm
    ant = [p.name for p, label in scan.train if label == 1]
    assert sorted(ant) == sorted(["0.png", "1.png", "2.png", "UPPER.JPG", "mixed.JpEg", "pic.bmp", "pic.webp",
                                  "pic.gif", "deeper.png"])
    assert scan.ignored_files == 1 and len(scan.val) == 9
    data = no_warnings_load(root, EXACT)
    assert len(data.train) == 15 and data.classes == scan.classes


def test_cached_items_are_exact(tmp_path):
    root = make_tree(tmp_path)
    data = no_warnings_load(root, EXACT)
    assert data.kind == "imagefolder" and data.cached and isinstance(data.val, TensorImageDataset)
    assert data.val.images.shape == (6, 3, 16, 16)
    x, y = data.val[4]  # dog (label 1), image 1
    assert y == 1
    torch.testing.assert_close(x[:, 0, 0], torch.tensor([40, 10, 100]) / 255.0)
    xt, yt = data.train[0]
    assert xt.shape == (3, 16, 16) and yt == 0


def test_lazy_matches_cached(tmp_path):
    root = make_tree(tmp_path)
    write_image(root / "val" / "dog" / "big.jpg", (200, 100, 50), size=(40, 24))  # mixed sizes
    cached = no_warnings_load(root, EXACT)
    lazy = no_warnings_load(root, EXACT, cache=False)
    assert not lazy.cached and isinstance(lazy.val, ImageFolderDataset)
    assert isinstance(cached.val.images, list)  # sizes differ: one [C, H, W] tensor per image
    assert len(lazy.val) == len(cached.val) == 7
    for i in range(len(lazy.val)):
        (a, ya), (b, yb) = lazy.val[i], cached.val[i]
        assert ya == yb
        torch.testing.assert_close(a, b, atol=0, rtol=0)
    assert "decoded per item" in lazy.summary()


def test_cache_decision_by_size(tmp_path):
    root = make_tree(tmp_path)
    assert no_warnings_load(root, EXACT).cached
    assert not no_warnings_load(root, EXACT, cache_limit_mb=0.001).cached  # 12 x 16x16x3 = 9 KB > 1 KB
    paths = [p for p in (root / "train").rglob("*.png")]
    assert estimate_decoded_bytes(paths, 3) == len(paths) * 16 * 16 * 3
    assert estimate_decoded_bytes(paths, 1) == len(paths) * 16 * 16
    mixed = [write_image(tmp_path / "m" / f"{i}.png", (0, 0, 0), size=(10 * (i + 1), 10)) for i in range(10)]
    exact = sum(100 * (i + 1) for i in range(10)) * 3
    assert estimate_decoded_bytes(mixed, 3) == exact  # fewer files than the sample: every header is read
    assert estimate_decoded_bytes(mixed, 3, sample=2) == 10 * 3 * (100 + 1000) // 2  # first and last


def test_lazy_dataset_in_dataloader_workers(tmp_path):
    root = make_tree(tmp_path)
    data = no_warnings_load(root, EXACT, cache=False)
    batches = list(DataLoader(data.val, batch_size=3, num_workers=2))
    x = torch.cat([b[0] for b in batches])
    y = torch.cat([b[1] for b in batches])
    assert x.shape == (6, 3, 16, 16) and y.tolist() == [0, 0, 0, 1, 1, 1]


def test_grey_model_and_exotic_modes(tmp_path):
    root = make_tree(tmp_path)
    write_image(root / "train" / "cat" / "rgba.png", (255, 0, 0), mode="RGBA")
    write_image(root / "train" / "cat" / "pal.png", (0, 255, 0), mode="P")
    a16 = Image.fromarray(np.full((16, 16), 65535, dtype=np.uint16))
    a16.save(root / "train" / "cat" / "sixteen.png")
    write_image(root / "train" / "dog" / "cmyk.jpg", (0, 0, 255), mode="CMYK")
    grey = DataConfig(img_size=16, in_chans=1, mean=(0.0,), std=(1.0,), crop_pct=1.0)
    for cache in (True, False):
        data = no_warnings_load(root, grey, cache=cache, randaugment=None)
        names = [p.name for p, _ in scan_image_folder(root).train]
        x, _ = data.train[names.index("sixteen.png")]
        assert x.shape == (1, 16, 16)
        if cache:
            assert data.train.images.shape[1] == 1
        ev = load_classification_data(root, grey, cache=cache, train_transform=data.val.transform)
        x16, _ = ev.train[names.index("sixteen.png")]
        torch.testing.assert_close(x16, torch.ones(1, 16, 16))  # 16-bit white stays white (not clipped/dark)


# ----------------------------------------------------------------------------------------- layout errors
def test_missing_and_empty_dirs(tmp_path):
    with pytest.raises(DatasetError, match="does not exist"):
        load_classification_data(tmp_path / "nope", EXACT)
    with pytest.raises(DatasetError, match="cannot tell what dataset"):
        load_classification_data(tmp_path, EXACT)
    (tmp_path / "train").mkdir()
    with pytest.raises(DatasetError, match="val folder"):
        load_classification_data(tmp_path, EXACT)
    (tmp_path / "test").mkdir()
    with pytest.raises(DatasetError, match="rename it to 'val'"):
        load_classification_data(tmp_path, EXACT)
    (tmp_path / "val").mkdir()
    write_image(tmp_path / "train" / "a.png", (0, 0, 0))
    with pytest.raises(DatasetError, match=r"no class folders \(1 images lie directly in it"):
        load_classification_data(tmp_path, EXACT)


def test_detection_error_lists_what_was_looked_for(tmp_path):
    (tmp_path / "images").mkdir()
    (tmp_path / "labels.csv").write_text("a,b")
    with pytest.raises(DatasetError) as info:
        detect_dataset_kind(tmp_path)
    msg = str(info.value)
    for expected in ("images/", "labels.csv", "ImageFolder", "CIFAR-10", "CIFAR-100", "MNIST", "train-images-idx3"):
        assert expected in msg
    with pytest.raises(ConfigError, match="did you mean: cifar10"):
        load_classification_data(tmp_path, EXACT, kind="cifar-10")


def test_empty_class_folder_is_named(tmp_path):
    root = make_tree(tmp_path)
    (root / "train" / "emu").mkdir()
    (root / "train" / "emu" / "a.heic").write_bytes(b"x")
    (root / "train" / "emu" / "b.HEIC").write_bytes(b"x")
    with pytest.raises(DatasetError, match=r"class folder .*train/emu holds no images .*2 other file\(s\) \(\.heic\)"):
        load_classification_data(root, EXACT)
    (root / "train" / "emu" / "a.heic").unlink()
    (root / "train" / "emu" / "b.HEIC").unlink()
    with pytest.raises(DatasetError, match=r"emu holds no images.*it is empty"):
        load_classification_data(root, EXACT)


def test_val_class_unknown_to_train_is_an_error(tmp_path):
    root = make_tree(tmp_path, classes=("cat", "dog"), val_classes=("cats", "dog"))
    with pytest.raises(DatasetError, match=r"(?s)train lacks.*'cats' \(did you mean: cat\?\)"):
        load_classification_data(root, EXACT)


def test_val_missing_a_class_warns(tmp_path):
    root = make_tree(tmp_path, classes=("cat", "dog", "eel"), val_classes=("cat", "eel"))
    with pytest.warns(UserWarning, match=r"val has no folder for 1 of 3 train classes \(dog\)"):
        data = load_classification_data(root, EXACT)
    assert data.classes == ("cat", "dog", "eel")
    assert [y for _, y in (data.val[i] for i in range(len(data.val)))] == [0, 0, 0, 2, 2, 2]  # train's indices
    assert "val has no folder" in data.summary()


# --------------------------------------------------------------------------------------------- bad images
def _add_bad(root: Path) -> tuple[Path, Path]:
    text = root / "train" / "cat" / "oops.jpg"
    text.write_bytes(b"<html>Forbidden</html>")
    good = write_image(root / "train" / "dog" / "trunc.png", (9, 9, 9), size=(64, 64))
    truncated = good.with_name("trunc2.png")
    truncated.write_bytes(good.read_bytes()[:-30])
    good.unlink()
    return text, truncated


@pytest.mark.parametrize("cache", [True, False])
def test_bad_image_stops_with_its_name_by_default(tmp_path, cache):
    root = make_tree(tmp_path)
    text, _ = _add_bad(root)
    if cache:
        with pytest.raises(ImageLoadError, match=r"oops\.jpg"):
            load_classification_data(root, EXACT, cache=True)
    else:
        data = load_classification_data(root, EXACT, cache=False)
        idx = [p for p, _ in data.train.samples].index(text)
        with pytest.raises(ImageLoadError, match=r"oops\.jpg"):
            data.train[idx]


def test_skip_bad_images_cached(tmp_path):
    root = make_tree(tmp_path)
    text, truncated = _add_bad(root)
    with pytest.warns(UserWarning, match="skipping unreadable image"):
        data = load_classification_data(root, EXACT, skip_bad_images=True)
    assert set(data.skipped) == {text, truncated}
    assert len(data.train) == 6 and "skipped 2 unreadable image(s)" in data.summary()


def test_skip_bad_images_lazy(tmp_path):
    root = make_tree(tmp_path)
    text, truncated = _add_bad(root)
    with pytest.warns(UserWarning, match="skipping unreadable image"):
        data = load_classification_data(root, EXACT, cache=False, skip_bad_images=True)
    assert data.skipped == (text,)  # the header check catches the non-image up front
    paths = [p for p, _ in data.train.samples]
    i = paths.index(truncated)  # the truncated PNG has a valid header: it is replaced when reached
    with pytest.warns(UserWarning, match="trunc2.png"):
        x, y = data.train[i]
    assert x.shape == (3, 16, 16) and (paths[(i + 1) % len(paths)], y) in data.train.samples


def test_class_with_only_bad_images(tmp_path):
    root = make_tree(tmp_path, per_class=1)
    (root / "train" / "cat" / "0.png").write_bytes(b"not a png")
    with pytest.warns(UserWarning), pytest.raises(DatasetError, match=r"every train image of class.*cat"):
        load_classification_data(root, EXACT, skip_bad_images=True)


def test_symlink_loops_visit_each_real_folder_once(tmp_path):
    """`again -> .` in a class folder used to be followed level after level (2 images became 82); two such links
    made the scan exponential. Each real folder is walked once; a link to another class's folder or up to the
    split is not followed into it, a link to images kept elsewhere is."""
    for split in ("train", "val"):
        for name in ("ant", "bee"):
            folder = tmp_path / split / name
            folder.mkdir(parents=True)
            Image.new("L", (4, 4)).save(folder / "0.png")
            (folder / "again").symlink_to(".")
            (folder / "again2").symlink_to(".")
            (folder / "up").symlink_to("..")
    elsewhere = tmp_path.parent / f"{tmp_path.name}-elsewhere"
    elsewhere.mkdir()
    Image.new("L", (4, 4)).save(elsewhere / "far.png")
    (tmp_path / "train" / "bee" / "more").symlink_to(elsewhere)
    scan = scan_image_folder(tmp_path)
    assert sorted((p.relative_to(tmp_path).as_posix(), y) for p, y in scan.train) == [
        ("train/ant/0.png", 0), ("train/bee/0.png", 1), ("train/bee/more/far.png", 1)]
    assert len(scan.val) == 2
