"""Caption data (COCO captions files, Karpathy splits, discovery in a data dir) and `safe_join`, which every
reader uses for the paths read from annotation files."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import pytest
from PIL import Image

from vitkit.data.captions import CaptionImage, find_caption_files, load_coco_captions, load_karpathy
from vitkit.data.paths import read_json, read_json_lines, safe_join
from vitkit.processing.images import DatasetError

# ---- safe_join ------------------------------------------------------------------------------------------------------


def test_safe_join_accepts_paths_inside_the_root(tmp_path: Path) -> None:
    assert safe_join(tmp_path, "a/b.jpg") == tmp_path / "a" / "b.jpg"
    assert safe_join(tmp_path, "./a/../b.jpg") == tmp_path / "b.jpg"  # a '..' that stays inside is fine
    assert safe_join(tmp_path, "a\\b.jpg") == tmp_path / "a" / "b.jpg"  # backslashes are separators
    assert safe_join(str(tmp_path), "x.jpg") == tmp_path / "x.jpg"  # the file need not exist


@pytest.mark.parametrize(
    ("relative", "message"),
    [
        ("../x.jpg", "leaves the data root"),
        ("a/../../x.jpg", "leaves the data root"),
        ("..\\x.jpg", "leaves the data root"),
        ("/etc/passwd", "absolute"),
        ("\\\\server\\share\\x.jpg", "absolute"),
        ("C:\\x.jpg", "absolute"),
        ("C:x.jpg", "absolute"),
        ("", "empty path"),
        ("a/..", "data root itself"),
        ("a\0b", "NUL"),
    ],
)
def test_safe_join_refuses_escapes(tmp_path: Path, relative: str, message: str) -> None:
    with pytest.raises(DatasetError, match=message):
        safe_join(tmp_path, relative)


def test_safe_join_refuses_non_strings(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="relative path string"):
        safe_join(tmp_path, 5)  # type: ignore[arg-type]


@pytest.mark.skipif(os.name == "nt", reason="symlinks need privileges on Windows")
def test_safe_join_trusts_the_users_symlinks(tmp_path: Path) -> None:
    root, outside = tmp_path / "root", tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    (root / "link").symlink_to(outside, target_is_directory=True)  # e.g. data/train2014 -> /mnt/coco/train2014
    assert safe_join(root, "link/x.jpg") == root / "link" / "x.jpg"
    with pytest.raises(DatasetError):
        safe_join(root, "link/../../outside/x.jpg")  # the json itself still cannot climb out
    (root / "inner").mkdir()
    (root / "ok").symlink_to(root / "inner", target_is_directory=True)
    assert safe_join(root, "ok/x.jpg") == root / "ok" / "x.jpg"  # a link that stays inside is fine
    alias = tmp_path / "alias"
    alias.symlink_to(root, target_is_directory=True)
    assert safe_join(alias, "inner/x.jpg") == alias / "inner" / "x.jpg"  # the root itself may be a link


def test_read_json_errors(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="annotation file not found"):
        read_json(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{")
    with pytest.raises(DatasetError, match=r"bad\.json: not valid JSON"):
        read_json(bad)
    bad.write_bytes(b'{"a": "\xff"}')
    with pytest.raises(DatasetError, match="not UTF-8"):
        read_json(bad)
    lines = tmp_path / "lines.json"
    lines.write_text('{"a": 1}\n\n{"a": \n')
    with pytest.raises(DatasetError, match=r"lines\.json: line 3 is not valid JSON"):
        read_json_lines(lines)


# ---- COCO captions --------------------------------------------------------------------------------------------------


def _write_json(path: Path, data: object) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))
    return path


def _write_image(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (4, 4), (0, 128, 255)).save(path)


def _coco_json(path: Path, split: str, ids=(9, 3, 5), captioned=(9, 3)) -> Path:
    images = [{"id": i, "file_name": f"COCO_{split}_{i:012d}.jpg", "height": 4, "width": 4} for i in ids]
    annotations = []
    for n, i in enumerate(captioned):
        annotations += [{"image_id": i, "id": 10 * n + k, "caption": f"image {i} caption {k}"} for k in range(2)]
    return _write_json(path, {"info": {}, "images": images, "annotations": annotations})


def _coco_images(folder: Path, split: str, ids=(9, 3)) -> None:
    for i in ids:
        _write_image(folder / f"COCO_{split}_{i:012d}.jpg")


def test_load_coco_captions(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = _coco_json(tmp_path / "annotations" / "captions_val2014.json", "val2014")
    _coco_images(tmp_path / "val2014", "val2014")
    with caplog.at_level(logging.WARNING, logger="vitkit.data.captions"):
        images = load_coco_captions(path, tmp_path / "val2014")
    assert "1 of 3 images have no caption" in caplog.text  # image 5 dropped, counted
    assert images == [
        CaptionImage(9, tmp_path / "val2014" / "COCO_val2014_000000000009.jpg",
                     ("image 9 caption 0", "image 9 caption 1"), "val2014"),
        CaptionImage(3, tmp_path / "val2014" / "COCO_val2014_000000000003.jpg",
                     ("image 3 caption 0", "image 3 caption 1"), "val2014"),
    ]


def test_coco_caption_of_an_unknown_image(tmp_path: Path) -> None:
    path = _coco_json(tmp_path / "captions_val2014.json", "val2014", ids=(9,), captioned=(9, 4))
    with pytest.raises(DatasetError, match=r"captions_val2014\.json: annotations\[2\] is a caption of image 4"):
        load_coco_captions(path, tmp_path, check_images=False)


def test_coco_missing_images_and_escaping_paths(tmp_path: Path) -> None:
    path = _coco_json(tmp_path / "captions_val2014.json", "val2014")
    with pytest.raises(DatasetError, match=r"2 of 2 images for captions_val2014\.json .* missing"):
        load_coco_captions(path, tmp_path / "val2014")
    assert len(load_coco_captions(path, tmp_path, check_images=False)) == 2
    for bad, message in (("../x.jpg", "leaves the data root"), ("/abs/x.jpg", "absolute")):
        data = json.loads(path.read_text())
        data["images"][0]["file_name"] = bad
        _write_json(path, data)
        with pytest.raises(DatasetError, match=rf"captions_val2014\.json: image 9: .*{message}"):
            load_coco_captions(path, tmp_path, check_images=False)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ([], "top level should be a JSON object"),
        ({"images": []}, "no 'annotations' list"),
        ({"images": {}, "annotations": []}, "'images' should be a JSON list"),
        ({"images": [{"id": 1}], "annotations": []}, r"images\[0\] has no 'file_name'"),
        ({"images": [{"id": 1.5, "file_name": "a.jpg"}], "annotations": []}, "'id' should be an integer"),
        ({"images": [{"id": 1, "file_name": 7}], "annotations": []}, "'file_name' should be a string"),
        ({"images": [{"id": 1, "file_name": "a"}] * 2, "annotations": []}, "image 1 is listed more than once"),
        ({"images": [{"id": 1, "file_name": "a"}], "annotations": [{"image_id": 1}]}, "has no 'caption'"),
        ({"images": [{"id": 1, "file_name": "a"}], "annotations": [{"image_id": 1, "caption": ["x"]}]},
         "'caption' should be a string"),
        ({"images": [{"id": 1, "file_name": "a"}], "annotations": []}, "no image has a caption"),
    ],
)
def test_coco_malformed_json(tmp_path: Path, data: object, message: str) -> None:
    path = _write_json(tmp_path / "captions_train2014.json", data)
    with pytest.raises(DatasetError, match=message) as info:
        load_coco_captions(path, tmp_path, check_images=False)
    assert "captions_train2014.json" in str(info.value)


# ---- Karpathy splits ------------------------------------------------------------------------------------------------


def _karpathy_coco(root: Path, images: bool = True) -> Path:
    entries = []
    for n, (split, folder) in enumerate([("train", "train2014"), ("restval", "val2014"), ("val", "val2014"),
                                         ("test", "val2014"), ("train", "train2014")]):
        name = f"COCO_{folder}_{n:012d}.jpg"
        entries.append({"filepath": folder, "filename": name, "split": split, "cocoid": n, "imgid": 100 + n,
                        "sentences": [{"raw": f"a photo {n}.", "tokens": ["a", "photo"], "sentid": 2 * n},
                                      {"raw": f"another {n}", "tokens": [], "sentid": 2 * n + 1}]})
        if images:
            _write_image(root / folder / name)
    entries.append({"filepath": "train2014", "filename": "nosent.jpg", "split": "train", "cocoid": 99,
                    "sentences": []})
    return _write_json(root / "dataset_coco.json", {"images": entries, "dataset": "coco"})


def _karpathy_flickr(root: Path, image_dir: Path) -> Path:
    entries = []
    for n, split in enumerate(["train", "train", "val", "test"]):
        entries.append({"filename": f"{1000 + n}.jpg", "split": split, "imgid": n,
                        "sentences": [{"raw": f"a dog {n}"}]})
        _write_image(image_dir / f"{1000 + n}.jpg")
    return _write_json(root / "dataset_flickr30k.json", {"images": entries, "dataset": "flickr30k"})


def test_load_karpathy_coco(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = _karpathy_coco(tmp_path)
    with caplog.at_level(logging.WARNING, logger="vitkit.data.captions"):
        train = load_karpathy(path, tmp_path)
    assert "1 images of splits train/restval have no sentence" in caplog.text
    assert [(im.image_id, im.split) for im in train] == [(0, "train"), (1, "restval"), (4, "train")]
    assert train[1].image_path == tmp_path / "val2014" / "COCO_val2014_000000000001.jpg"
    assert train[0].captions == ("a photo 0.", "another 0")  # the raw sentences, as given
    assert [im.image_id for im in load_karpathy(path, tmp_path, ("val",))] == [2]
    assert [im.image_id for im in load_karpathy(path, tmp_path, "test")] == [3]


def test_load_karpathy_flickr_has_no_filepath(tmp_path: Path) -> None:
    path = _karpathy_flickr(tmp_path, tmp_path / "flickr30k-images")
    train = load_karpathy(path, tmp_path / "flickr30k-images")
    assert [(im.image_id, im.image_path.name) for im in train] == [(0, "1000.jpg"), (1, "1001.jpg")]
    assert train[0].image_path == tmp_path / "flickr30k-images" / "1000.jpg"


def test_karpathy_errors(tmp_path: Path) -> None:
    path = _karpathy_flickr(tmp_path, tmp_path / "img")
    with pytest.raises(DatasetError, match="unknown Karpathy split 'dev'"):
        load_karpathy(path, tmp_path / "img", ("dev",))
    with pytest.raises(DatasetError, match=r"no captioned image in split\(s\) restval; splits present: test \(1\), "
                                           r"train \(2\), val \(1\)"):
        load_karpathy(path, tmp_path / "img", ("restval",))
    with pytest.raises(DatasetError, match=r"2 of 2 images .* missing: .*1000\.jpg"):
        load_karpathy(path, tmp_path)  # wrong image root
    data = json.loads(path.read_text())
    data["images"][0]["filepath"] = "../.."
    _write_json(path, data)
    with pytest.raises(DatasetError, match=r"images\[0\]: .*leaves the data root"):
        load_karpathy(path, tmp_path / "img")
    for edit, message in [
        (lambda d: {"dataset": "x"}, "no 'images' list"),
        (lambda d: {"images": [{"filename": "a.jpg", "split": "train"}]}, "has no 'sentences'"),
        (lambda d: {"images": [{"filename": "a.jpg", "split": "train", "sentences": [{"tokens": []}]}]},
         r"sentences\[0\] has no 'raw'"),
        (lambda d: {"images": [{"filename": "a.jpg", "split": 1, "sentences": []}]}, "'split' should be a string"),
        (lambda d: {"images": [{"filename": "a.jpg", "split": "train", "sentences": "x"}]},
         "'sentences' should be a JSON list"),
    ]:
        _write_json(path, edit(data))
        with pytest.raises(DatasetError, match=message):
            load_karpathy(path, tmp_path, check_images=False)


# ---- discovery ------------------------------------------------------------------------------------------------------


def test_find_karpathy_coco(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    _karpathy_coco(tmp_path)
    with caplog.at_level(logging.INFO, logger="vitkit.data.captions"):
        found = find_caption_files(tmp_path)
    assert "dataset_coco.json" in caplog.text  # the file used is logged
    assert [im.image_id for im in found.train] == [0, 1, 4]
    assert [im.image_id for im in found.val] == [2]
    _, val = find_caption_files(tmp_path, val_split="test")  # unpacks like a tuple
    assert [im.image_id for im in val] == [3]
    with pytest.raises(DatasetError, match="val_split"):
        find_caption_files(tmp_path, val_split="restval")


def test_find_karpathy_in_subfolder_with_flickr_images(tmp_path: Path) -> None:
    (tmp_path / "karpathy").mkdir()
    _karpathy_flickr(tmp_path / "karpathy", tmp_path / "flickr30k-images")
    found = find_caption_files(tmp_path)
    assert len(found.train) == 2 and len(found.val) == 1
    assert found.val[0].image_path == tmp_path / "flickr30k-images" / "1002.jpg"


def test_find_coco_captions(tmp_path: Path) -> None:
    _coco_json(tmp_path / "annotations" / "captions_train2014.json", "train2014")
    _coco_json(tmp_path / "captions_val2014.json", "val2014", ids=(7,), captioned=(7,))
    _coco_images(tmp_path / "train2014", "train2014")
    _coco_images(tmp_path / "val2014", "val2014", ids=(7,))
    found = find_caption_files(tmp_path)
    assert [im.image_id for im in found.train] == [9, 3]
    assert [im.image_id for im in found.val] == [7]
    assert found.val[0].image_path == tmp_path / "val2014" / "COCO_val2014_000000000007.jpg"
    # a second train file (2017) is ambiguous
    _coco_json(tmp_path / "annotations" / "captions_train2017.json", "train2017")
    with pytest.raises(DatasetError, match="several COCO train captions files"):
        find_caption_files(tmp_path)


def test_find_caption_files_errors(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="directory not found"):
        find_caption_files(tmp_path / "missing")
    with pytest.raises(DatasetError, match=r"no caption annotations found .*looked for: .*dataset_\*\.json.*"
                                           r"annotations/captions_val\*\.json"):
        find_caption_files(tmp_path)
    _coco_json(tmp_path / "captions_train2014.json", "train2014")
    with pytest.raises(DatasetError, match=r"found COCO train captions .* but no val file"):
        find_caption_files(tmp_path)
    _write_json(tmp_path / "dataset_coco.json", {"images": []})
    _write_json(tmp_path / "karpathy" / "dataset_flickr30k.json", {"images": []})
    with pytest.raises(DatasetError, match="several Karpathy split files"):
        find_caption_files(tmp_path)
