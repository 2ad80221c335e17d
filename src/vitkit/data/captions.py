"""Image-caption data: COCO's own captions files and Karpathy's splits (COCO, Flickr30k), as ViLT uses them.

- COCO `captions_{split}.json`: {"images": [{"id", "file_name", ...}], "annotations": [{"image_id", "caption",
  ...}]}, images in a folder of their own (`train2014/`, ...). `load_coco_captions`.
- Karpathy `dataset_coco.json` / `dataset_flickr30k.json`: {"images": [{"filepath" (COCO only), "filename",
  "split": train | restval | val | test, "sentences": [{"raw", ...}], "cocoid" (COCO) / "imgid", ...}]}; image
  paths are `image_root / filepath / filename`. `load_karpathy`. ViLT trains on train + restval and uses the raw
  sentences.
- `find_caption_files(root)` finds either in a data dir and loads train and validation lists.

Every image path goes through `safe_join`, so an annotation cannot point outside the image root. Each function
returns `CaptionImage`s: one per image, with all its captions.
"""

from __future__ import annotations

import logging
import os
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from ..processing.images import DatasetError
from .paths import SafeRoot, expect_int, expect_list, expect_mapping, expect_str, read_json, safe_join

logger = logging.getLogger(__name__)

__all__ = ["KARPATHY_SPLITS", "CaptionImage", "CaptionSplits", "find_caption_files", "load_coco_captions",
           "load_karpathy"]

KARPATHY_SPLITS = ("train", "restval", "val", "test")


@dataclass(frozen=True)
class CaptionImage:
    """One image and its captions. `image_id`: COCO's id (int), or for Flickr30k the Karpathy "imgid";
    `split`: the Karpathy split, or for a COCO captions file the name in `captions_{split}.json` (else None)."""

    image_id: int | str
    image_path: Path
    captions: tuple[str, ...]
    split: str | None


class CaptionSplits(NamedTuple):
    """What `find_caption_files` found: the train and validation images (unpacks as `train, val = ...`)."""

    train: list[CaptionImage]
    val: list[CaptionImage]


def _id(value: object, where: str) -> int | str:
    if isinstance(value, str) and value:
        return value
    return expect_int(value, where)


def _check_images(images: Sequence[CaptionImage], where: str) -> None:
    missing = [im.image_path for im in images if not im.image_path.is_file()]
    if missing:
        shown = ", ".join(str(p) for p in missing[:3])
        more = f" and {len(missing) - 3} more" if len(missing) > 3 else ""
        raise DatasetError(f"{len(missing)} of {len(images)} images for {where} are missing: {shown}{more}")


def _top_lists(path: Path, what: str, keys: Sequence[str]) -> list[list]:
    """The lists under `keys` of the JSON object in `path`."""
    data = expect_mapping(read_json(path, what), f"{path}: top level")
    out = []
    for key in keys:
        if key not in data:
            raise DatasetError(f"{path}: no {key!r} list (keys: {', '.join(map(str, data)) or 'none'})")
        out.append(expect_list(data[key], f"{path}: {key!r}"))
    return out


def load_coco_captions(
    json_path: str | os.PathLike, image_root: str | os.PathLike, *, check_images: bool = True
) -> list[CaptionImage]:
    """The images of a COCO captions file (`captions_train2014.json`, ...), in its "images" order, each with
    its captions in "annotations" order; image paths are `image_root / file_name`.

    Images without captions are dropped (their number logged as a warning). DatasetError (naming the file) for
    JSON of the wrong shape, a duplicated image id, a caption of an image the file does not list, no captioned
    image at all, a file name escaping `image_root`, and (with `check_images`) missing image files.
    """
    path, image_root = Path(json_path), Path(image_root)
    entries, annotations = _top_lists(path, "COCO captions file", ("images", "annotations"))
    match = re.fullmatch(r"captions_(.+)\.json", path.name)
    split = match.group(1) if match else None

    files: dict[int | str, str] = {}
    for i, entry in enumerate(entries):
        where = f"{path}: images[{i}]"
        entry = expect_mapping(entry, where, ("id", "file_name"))
        image_id = _id(entry["id"], f"{where}: 'id'")
        if image_id in files:
            raise DatasetError(f"{path}: image {image_id!r} is listed more than once")
        files[image_id] = expect_str(entry["file_name"], f"{where}: 'file_name'")

    captions: dict[int | str, list[str]] = {image_id: [] for image_id in files}
    for i, entry in enumerate(annotations):
        where = f"{path}: annotations[{i}]"
        entry = expect_mapping(entry, where, ("image_id", "caption"))
        image_id = _id(entry["image_id"], f"{where}: 'image_id'")
        if image_id not in captions:
            raise DatasetError(f"{path}: annotations[{i}] is a caption of image {image_id!r}, which 'images' "
                               "does not list")
        captions[image_id].append(expect_str(entry["caption"], f"{where}: 'caption'"))

    out = []
    safe_root = SafeRoot(image_root)
    for image_id, file_name in files.items():
        if captions[image_id]:
            try:
                image_path = safe_root.join(file_name)
            except DatasetError as e:
                raise DatasetError(f"{path}: image {image_id!r}: {e}") from None
            out.append(CaptionImage(image_id, image_path, tuple(captions[image_id]), split))
    if len(out) < len(files):
        logger.warning("%s: %d of %d images have no caption; skipped", path, len(files) - len(out), len(files))
    if not out:
        raise DatasetError(f"{path}: no image has a caption")
    if check_images:
        _check_images(out, f"{path.name} (under {image_root})")
    return out


def load_karpathy(
    json_path: str | os.PathLike,
    image_root: str | os.PathLike,
    splits: Iterable[str] = ("train", "restval"),
    *,
    check_images: bool = True,
) -> list[CaptionImage]:
    """The images of a Karpathy split file (`dataset_coco.json`, `dataset_flickr30k.json`, ...) whose "split" is
    in `splits`, in file order, each with its "raw" sentences; paths `image_root / filepath / filename` (no
    "filepath" key, as in Flickr30k: `image_root / filename`). `image_id` is "cocoid" when present, else "imgid",
    else the file name. Images without sentences are dropped (counted in a logged warning).

    DatasetError (naming the file) for JSON of the wrong shape, an unknown split name asked for, no image in the
    asked splits (listing the splits present), a path escaping `image_root`, and (with `check_images`) missing
    image files.
    """
    path, image_root = Path(json_path), Path(image_root)
    wanted = (splits,) if isinstance(splits, str) else tuple(splits)
    if not wanted:
        raise DatasetError("load_karpathy: no split asked for")
    for s in wanted:
        if s not in KARPATHY_SPLITS:
            raise DatasetError(f"unknown Karpathy split {s!r}; the splits are {', '.join(KARPATHY_SPLITS)}")
    (entries,) = _top_lists(path, "Karpathy split file", ("images",))
    safe_root = SafeRoot(image_root)
    out, present, no_sentences = [], Counter(), 0
    for i, entry in enumerate(entries):
        where = f"{path}: images[{i}]"
        entry = expect_mapping(entry, where, ("filename", "split", "sentences"))
        split = expect_str(entry["split"], f"{where}: 'split'")
        present[split] += 1
        if split not in wanted:
            continue
        filename = expect_str(entry["filename"], f"{where}: 'filename'")
        filepath = entry.get("filepath")
        relative = filename if filepath in (None, "") else f"{expect_str(filepath, f'{where}: filepath')}/{filename}"
        if "cocoid" in entry:
            image_id = _id(entry["cocoid"], f"{where}: 'cocoid'")
        elif "imgid" in entry:
            image_id = _id(entry["imgid"], f"{where}: 'imgid'")
        else:
            image_id = filename
        sentences = []
        for j, sentence in enumerate(expect_list(entry["sentences"], f"{where}: 'sentences'")):
            sentence = expect_mapping(sentence, f"{where}: sentences[{j}]")
            if "raw" not in sentence:
                raise DatasetError(f"{where}: sentences[{j}] has no 'raw'")
            sentences.append(expect_str(sentence["raw"], f"{where}: sentences[{j}]['raw']"))
        if not sentences:
            no_sentences += 1
            continue
        try:
            image_path = safe_root.join(relative)
        except DatasetError as e:
            raise DatasetError(f"{where}: {e}") from None
        out.append(CaptionImage(image_id, image_path, tuple(sentences), split))
    if no_sentences:
        logger.warning("%s: %d images of splits %s have no sentence; skipped", path, no_sentences, "/".join(wanted))
    if not out:
        found = ", ".join(f"{s} ({n})" for s, n in sorted(present.items())) or "none"
        raise DatasetError(f"{path}: no captioned image in split(s) {', '.join(wanted)}; splits present: {found}")
    if check_images:
        _check_images(out, f"{path.name} splits {'/'.join(wanted)} (under {image_root})")
    return out


def _karpathy_image_root(root: Path, json_path: Path) -> Path:
    """`root`, or for `dataset_flickr30k.json` `root/flickr30k-images` (the Flickr30k archive's folder) when it
    exists."""
    candidate = root / "flickr30k-images"
    if json_path.name == "dataset_flickr30k.json" and candidate.is_dir():
        return candidate
    return root


def find_caption_files(root: str | os.PathLike, *, val_split: str = "val", check_images: bool = True) -> CaptionSplits:
    """Find the caption annotations in a data dir `root` and load (train, val) `CaptionImage` lists.

    Rules, in order:
    1. Karpathy: exactly one `dataset_*.json` in `root` or `root/karpathy/` (ViLT's layout). train = "train" +
       "restval", val = `val_split` ("val", or "test" for the Karpathy test split); images under `root` (COCO:
       `root/train2014/...`, `root/val2014/...` from the file's "filepath"); for `dataset_flickr30k.json` (no
       "filepath") under `root/flickr30k-images/` when that folder exists, else `root`.
    2. COCO: `captions_{split}.json` in `root` or `root/annotations/`; train = the one split named train*
       (e.g. train2014), val = the one named val* (e.g. val2014); images under `root/{split}/`
       (`root/train2014/COCO_train2014_...jpg`).
    Several Karpathy files, or several train*/val* COCO files (2014 and 2017), are ambiguous: DatasetError
    listing them (load the one you want with `load_karpathy` / `load_coco_captions`). Nothing found:
    DatasetError listing what was looked for.
    """
    root = Path(root)
    if val_split not in ("val", "test"):
        raise DatasetError(f"val_split should be 'val' or 'test', got {val_split!r}")
    if not root.is_dir():
        raise DatasetError(f"caption data directory not found: {root}")

    karpathy_dirs = (root, root / "karpathy")
    karpathy = sorted(p for d in karpathy_dirs if d.is_dir() for p in d.glob("dataset_*.json") if p.is_file())
    if len(karpathy) > 1:
        raise DatasetError(f"several Karpathy split files in {root}: {', '.join(map(str, karpathy))}; "
                           "load one with load_karpathy(json_path, image_root)")
    if karpathy:
        json_path = karpathy[0]
        image_root = _karpathy_image_root(root, json_path)
        train = load_karpathy(json_path, image_root, ("train", "restval"), check_images=check_images)
        val = load_karpathy(json_path, image_root, (val_split,), check_images=check_images)
        logger.info("captions: %s (train+restval: %d images, %s: %d)", json_path, len(train), val_split, len(val))
        return CaptionSplits(train, val)

    coco_dirs = (root, root / "annotations")
    coco: dict[str, list[Path]] = {"train": [], "val": []}
    for d in coco_dirs:
        if not d.is_dir():
            continue
        for p in sorted(d.glob("captions_*.json")):
            split = p.name[len("captions_") : -len(".json")]
            for kind in coco:
                if split.startswith(kind) and p.is_file():
                    coco[kind].append(p)
    for kind, paths in coco.items():
        if len(paths) > 1:
            raise DatasetError(f"several COCO {kind} captions files in {root}: {', '.join(map(str, paths))}; "
                               "load one with load_coco_captions(json_path, image_root)")
    if coco["train"] and coco["val"]:
        lists = []
        for kind in ("train", "val"):
            json_path = coco[kind][0]
            split = json_path.name[len("captions_") : -len(".json")]
            lists.append(load_coco_captions(json_path, safe_join(root, split), check_images=check_images))
        logger.info("captions: %s (%d images), %s (%d)", coco["train"][0], len(lists[0]), coco["val"][0],
                    len(lists[1]))
        return CaptionSplits(lists[0], lists[1])

    looked = [
        *(str(d / "dataset_*.json") for d in karpathy_dirs),
        *(str(d / f"captions_{kind}*.json") for d in coco_dirs for kind in ("train", "val")),
    ]
    partial = ""
    if coco["train"] or coco["val"]:
        have, lack = ("train", "val") if coco["train"] else ("val", "train")
        partial = f" (found COCO {have} captions {coco[have][0]}, but no {lack} file)"
    raise DatasetError(f"no caption annotations found in {root}{partial}; looked for: {', '.join(looked)}")

