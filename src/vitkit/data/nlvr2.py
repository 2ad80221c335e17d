"""NLVR2 in its official format: JSON-lines annotation files and the image pairs they name.

Each line of `{split}.json` (train, dev, test1; also balanced_dev, unbalanced_test1, ...) is an object with
"identifier" (`split-set_id-pair_id-sentence_id`, e.g. "dev-850-0-0"), "sentence", "label" ("True" / "False"),
"left_url", "right_url", and for train "directory" (e.g. "12"). The pair's images are named after the identifier
without its sentence id: `dev-850-0-img0.png` (left) and `dev-850-0-img1.png` (right). (Not every ".png" is a PNG;
PIL reads them by content.)

Where files are looked for, in a data dir `root`:
- annotations: `root/{split}.json`, else `root/data/{split}.json`, else `root/nlvr2/data/{split}.json` (a clone
  of the NLVR2 repository, ViLT's layout); balanced_* / unbalanced_* files also in a `balanced/` /
  `unbalanced/` sub-folder of these.
- images: under the folder of the identifier's own split (so balanced_dev's images are dev's):
  `root/{s}/` for dev/test1, `root/train/{directory}/` for train; each also under `root/images/` (the layout the
  official image archives unpack to, ViLT's). A flat layout is accepted too, for train as well:
  `root/train/train-...-img0.png`. For each pair the first folder holding both images wins.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from ..processing.images import DatasetError
from .paths import SafeRoot, expect_int, expect_mapping, expect_str, read_json_lines

__all__ = ["NLVR2Example", "find_nlvr2_file", "load_nlvr2"]


@dataclass(frozen=True)
class NLVR2Example:
    """One sentence about an image pair; `label` is whether the sentence is true of the pair."""

    identifier: str
    sentence: str
    label: bool
    left_path: Path
    right_path: Path


def _json_candidates(root: Path, split: str) -> list[Path]:
    bases = (root, root / "data", root / "nlvr2" / "data")
    out = [base / f"{split}.json" for base in bases]
    for prefix in ("balanced", "unbalanced"):
        if split.startswith(prefix + "_"):
            out += [base / prefix / f"{split}.json" for base in bases]
    return out


def find_nlvr2_file(root: str | os.PathLike, split: str) -> Path:
    """The annotation file of `split` under `root` (see the module doc); DatasetError listing where it looked."""
    root = Path(root)
    if not isinstance(split, str) or not split or "/" in split or "\\" in split or split in (".", ".."):
        raise DatasetError(f"NLVR2 split should be a plain name such as 'train', 'dev' or 'test1', got {split!r}")
    if not root.is_dir():
        raise DatasetError(f"NLVR2 data directory not found: {root}")
    candidates = _json_candidates(root, split)
    for path in candidates:
        if path.is_file():
            return path
    raise DatasetError(f"NLVR2 annotations for split {split!r} not found; looked for {', '.join(map(str, candidates))}")


def _label(value: object, where: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    raise DatasetError(f"{where}: 'label' should be \"True\" or \"False\", got {value!r:.60}")


def _image_dirs(image_split: str, directory: str | None) -> list[str]:
    """Folders (relative to root) that may hold a pair's images, most specific first."""
    dirs = []
    for base in ("", "images/"):
        if directory is not None:
            dirs.append(f"{base}{image_split}/{directory}")
        dirs.append(f"{base}{image_split}")
    return dirs


def load_nlvr2(root: str | os.PathLike, split: str, *, check_images: bool = True) -> list[NLVR2Example]:
    """The examples of one NLVR2 split, in file order, with the paths of their left and right images.

    Files are found as the module doc says. DatasetError (naming the file and line) for a missing file, a line
    that is not a JSON object, a missing or mistyped field, a malformed identifier, a duplicated identifier, a
    path escaping `root`, and (with `check_images`) pairs whose images are in none of the folders looked in
    (how many, and the first few). Without `check_images`, paths point into the first candidate folder.
    """
    root = Path(root)
    path = find_nlvr2_file(root, split)
    safe_root = SafeRoot(root)
    rows = read_json_lines(path, "NLVR2 annotations file")
    out: list[NLVR2Example] = []
    seen: set[str] = set()
    missing: list[Path] = []
    pairs: dict[tuple[str, str | None], tuple[Path, Path]] = {}
    for lineno, row in enumerate(rows, 1):
        where = f"{path}: example {lineno}"
        row = expect_mapping(row, where, ("identifier", "sentence", "label"))
        identifier = expect_str(row["identifier"], f"{where}: 'identifier'")
        where = f"{path}: example {identifier!r}"
        prefix, sep, sentence_id = identifier.rpartition("-")
        image_split = prefix.split("-", 1)[0]
        if not sep or not prefix or not image_split or not sentence_id.isdigit() or any(c in identifier for c in "/\\"):
            raise DatasetError(f"{where}: identifier should look like 'split-set_id-pair_id-sentence_id'")
        if identifier in seen:
            raise DatasetError(f"{path}: identifier {identifier!r} appears more than once")
        seen.add(identifier)
        directory = row.get("directory")
        if directory is not None and not isinstance(directory, str):
            directory = str(expect_int(directory, f"{where}: 'directory'"))
        if directory is not None and (not directory or directory in (".", "..") or any(c in directory for c in "/\\")):
            raise DatasetError(f"{where}: 'directory' should be a folder name such as '12', got {directory!r}")
        key = (prefix, directory)
        if key not in pairs:
            pair, found = _find_pair(safe_root, image_split, prefix, directory, check_images, where)
            pairs[key] = pair
            if not found:
                missing.append(pair[0])
        pair = pairs[key]
        out.append(NLVR2Example(identifier, expect_str(row["sentence"], f"{where}: 'sentence'"),
                                _label(row["label"], where), pair[0], pair[1]))
    if missing:
        shown = ", ".join(str(p) for p in missing[:3])
        more = f" and {len(missing) - 3} more" if len(missing) > 3 else ""
        raise DatasetError(
            f"{len(missing)} of {len(pairs)} image pairs for NLVR2 split {split!r} are missing (looked under "
            f"{root}/<split>[/<directory>] and {root}/images/<split>[/<directory>]): {shown}{more}"
        )
    if not out:
        raise DatasetError(f"{path}: no examples")
    return out


def _find_pair(
    root: SafeRoot, image_split: str, prefix: str, directory: str | None, check_images: bool, where: str
) -> tuple[tuple[Path, Path], bool]:
    """((left, right), found): the first candidate folder holding both images, or (without `check_images`, or
    when none does) the first candidate folder, with found False when checking found nothing."""
    first: tuple[Path, Path] | None = None
    for folder in _image_dirs(image_split, directory):
        try:
            pair = (root.join(f"{folder}/{prefix}-img0.png"), root.join(f"{folder}/{prefix}-img1.png"))
        except DatasetError as e:
            raise DatasetError(f"{where}: {e}") from None
        if not check_images:
            return pair, True
        first = first or pair
        if pair[0].is_file() and pair[1].is_file():
            return pair, True
    assert first is not None
    return first, False
