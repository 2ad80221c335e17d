"""NLVR2: the official JSON-lines files, the image naming (identifier without its sentence id + -img0/-img1.png),
the folder layouts (official archives, ViLT's, flat), and every error path."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from PIL import Image

from vitkit.data.nlvr2 import NLVR2Example, find_nlvr2_file, load_nlvr2
from vitkit.processing.images import DatasetError


def _example(identifier: str, label: str = "True", sentence: str = "Two dogs.", **extra) -> dict:
    return {"identifier": identifier, "sentence": sentence, "label": label, "left_url": "http://x/l.jpg",
            "right_url": "http://x/r.jpg", "writer": "1", "synset": "dog", **extra}


def _write_lines(path: Path, rows: list) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _write_pair(folder: Path, prefix: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for side in (0, 1):
        Image.new("RGB", (4, 4), (side * 255, 0, 0)).save(folder / f"{prefix}-img{side}.png")


def test_dev_layout_and_naming(tmp_path: Path) -> None:
    _write_lines(tmp_path / "dev.json", [_example("dev-850-0-0", "True"), _example("dev-850-0-1", "False", "One cat."),
                                         _example("dev-851-2-0", "false")])
    _write_pair(tmp_path / "dev", "dev-850-0")
    _write_pair(tmp_path / "dev", "dev-851-2")
    examples = load_nlvr2(tmp_path, "dev")
    assert examples[0] == NLVR2Example("dev-850-0-0", "Two dogs.", True, tmp_path / "dev" / "dev-850-0-img0.png",
                                       tmp_path / "dev" / "dev-850-0-img1.png")
    # the two sentences about one pair share its images
    assert (examples[1].label, examples[1].sentence) == (False, "One cat.")
    assert (examples[1].left_path, examples[1].right_path) == (examples[0].left_path, examples[0].right_path)
    assert examples[2].label is False and examples[2].right_path.name == "dev-851-2-img1.png"


@pytest.mark.parametrize("layout", ["official", "images", "flat"])
def test_train_layouts(tmp_path: Path, layout: str) -> None:
    _write_lines(tmp_path / "train.json", [_example("train-10-1-0", directory="12"),
                                           _example("train-11-0-1", directory=3)])  # an int directory is accepted
    folders = {"official": ("train/12", "train/3"), "images": ("images/train/12", "images/train/3"),
               "flat": ("train", "train")}[layout]
    _write_pair(tmp_path / folders[0], "train-10-1")
    _write_pair(tmp_path / folders[1], "train-11-0")
    examples = load_nlvr2(tmp_path, "train")
    assert examples[0].left_path == tmp_path / folders[0] / "train-10-1-img0.png"
    assert examples[1].right_path == tmp_path / folders[1] / "train-11-0-img1.png"


def test_annotation_file_locations(tmp_path: Path) -> None:
    # a clone of the NLVR2 repository (ViLT's layout), with the balanced/unbalanced sub-folders
    _write_lines(tmp_path / "nlvr2" / "data" / "test1.json", [_example("test1-0-1-0")])
    _write_lines(tmp_path / "nlvr2" / "data" / "balanced" / "balanced_dev.json", [_example("dev-5-0-1")])
    _write_pair(tmp_path / "test1", "test1-0-1")
    _write_pair(tmp_path / "images" / "dev", "dev-5-0")  # balanced_dev uses dev's images
    assert find_nlvr2_file(tmp_path, "test1") == tmp_path / "nlvr2" / "data" / "test1.json"
    assert load_nlvr2(tmp_path, "test1")[0].left_path == tmp_path / "test1" / "test1-0-1-img0.png"
    assert load_nlvr2(tmp_path, "balanced_dev")[0].left_path == tmp_path / "images" / "dev" / "dev-5-0-img0.png"
    _write_lines(tmp_path / "data" / "test1.json", [_example("test1-0-1-0")])
    assert find_nlvr2_file(tmp_path, "test1") == tmp_path / "data" / "test1.json"  # the nearer one first


def test_missing_file_and_bad_split(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="directory not found"):
        load_nlvr2(tmp_path / "missing", "dev")
    with pytest.raises(DatasetError, match=r"split 'dev' not found; looked for .*dev\.json.*data/dev\.json"):
        load_nlvr2(tmp_path, "dev")
    for bad in ("", "../dev", "a/b", ".."):
        with pytest.raises(DatasetError, match="plain name"):
            load_nlvr2(tmp_path, bad)


def test_missing_images(tmp_path: Path) -> None:
    _write_lines(tmp_path / "dev.json", [_example(f"dev-{i}-0-0") for i in range(5)])
    _write_pair(tmp_path / "dev", "dev-0-0")
    (tmp_path / "dev" / "dev-0-0-img1.png").unlink()  # half a pair is a missing pair
    with pytest.raises(DatasetError, match=r"5 of 5 image pairs for NLVR2 split 'dev' are missing .*"
                                           r"dev-0-0-img0\.png.* and 2 more"):
        load_nlvr2(tmp_path, "dev")
    examples = load_nlvr2(tmp_path, "dev", check_images=False)
    assert examples[3].left_path == tmp_path / "dev" / "dev-3-0-img0.png"


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ('["dev-1-0-0"]', "example 1 should be a JSON object, got list"),
        ('{"sentence": "x", "label": "True"}', "example 1 has no 'identifier'"),
        ('{"identifier": "dev-1-0-0", "label": "True"}', "has no 'sentence'"),
        ('{"identifier": "dev-1-0-0", "sentence": "x"}', "has no 'label'"),
        ('{"identifier": 5, "sentence": "x", "label": "True"}', "'identifier' should be a string"),
        ('{"identifier": "dev-1-0-0", "sentence": 5, "label": "True"}', "'sentence' should be a string"),
        ('{"identifier": "dev-1-0-0", "sentence": "x", "label": "yes"}', "'label' should be \"True\" or \"False\""),
        ('{"identifier": "dev-1-0-0", "sentence": "x", "label": 1}', "'label' should be"),
        ('{"identifier": "dev", "sentence": "x", "label": "True"}', "identifier should look like"),
        ('{"identifier": "dev-1-0-x", "sentence": "x", "label": "True"}', "identifier should look like"),
        ('{"identifier": "../dev-1-0-0", "sentence": "x", "label": "True"}', "identifier should look like"),
        ('{"identifier": "dev-1-0-0", "sentence": "x", "label": "True", "directory": 1.5}',
         "'directory' should be an integer"),
        ('{"identifier": "train-1-0-0", "sentence": "x", "label": "True", "directory": "../../.."}',
         "'directory' should be a folder name"),
        ('{"identifier": "train-1-0-0", "sentence": "x", "label": "True", "directory": ".."}',
         "'directory' should be a folder name"),
        ('{"identifier": "dev-1-0-0", "sentence": "x", "label": "True", "directory": "/etc"}',
         "'directory' should be a folder name"),
        ('{"identifier": "dev-1-0-0"', "line 1 is not valid JSON"),
    ],
)
def test_malformed_lines(tmp_path: Path, line: str, message: str) -> None:
    (tmp_path / "dev.json").write_text(line + "\n")
    with pytest.raises(DatasetError, match=message) as info:
        load_nlvr2(tmp_path, "dev", check_images=False)
    assert "dev.json" in str(info.value)


def test_duplicates_and_empty(tmp_path: Path) -> None:
    _write_lines(tmp_path / "dev.json", [_example("dev-1-0-0"), _example("dev-1-0-0")])
    with pytest.raises(DatasetError, match="identifier 'dev-1-0-0' appears more than once"):
        load_nlvr2(tmp_path, "dev", check_images=False)
    (tmp_path / "dev.json").write_text("\n")
    with pytest.raises(DatasetError, match=r"dev\.json: no examples"):
        load_nlvr2(tmp_path, "dev")


@pytest.mark.skipif(os.name == "nt", reason="symlinks need privileges on Windows")
def test_image_folder_linked_elsewhere_by_the_user_is_followed(tmp_path: Path) -> None:
    root, outside = tmp_path / "nlvr2", tmp_path / "elsewhere"
    _write_lines(root / "dev.json", [_example("dev-1-0-0")])
    _write_pair(outside, "dev-1-0")
    (root / "dev").symlink_to(outside, target_is_directory=True)
    (ex,) = load_nlvr2(root, "dev")
    assert ex.left_path.resolve().parent == outside.resolve()
