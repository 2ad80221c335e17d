"""The ImageFolder layout: `DIR/train/<class>/<image>` and `DIR/val/<class>/<image>`.

Images are files with one of `vitkit.images.IMAGE_EXTENSIONS` (png, jpg/jpeg, bmp, webp, gif, tif/tiff; any
case), found recursively inside each class folder; hidden files and folders (".name") are ignored, as are other
files (counted, so a folder of .heic photos is not silently empty). Classes are the train folder's
sub-folder names, sorted (torchvision's and timm's order, so label indices agree with theirs).

Rules, each failing with a `DatasetError` that names the folder or file:
- DIR, DIR/train and DIR/val must exist; train needs at least two class folders (one class has nothing to
  learn), val at least one.
- A class folder without images is an error (in either split).
- A val class that train lacks is an error; a train class that val lacks is allowed with a warning (its
  accuracy simply goes unmeasured).

`scan_image_folder` does the above; `ImageFolderDataset` decodes lazily per item (for data too large to cache,
used with DataLoader workers); `decode_images` decodes a list of files once, in threads, for the in-memory
cache that `vitkit.data.classification` builds for small datasets.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image
from torch.utils.data import Dataset

from ..errors import did_you_mean
from ..processing.images import IMAGE_EXTENSIONS, DatasetError, ImageLoadError, image_size, load_image

VAL_ALIASES = ("validation", "valid", "test", "eval")


def is_image_file(name: str) -> bool:
    return not name.startswith(".") and name.lower().endswith(IMAGE_EXTENSIONS)


def _class_dirs(split_dir: Path) -> list[str]:
    return sorted(p.name for p in split_dir.iterdir() if p.is_dir() and not p.name.startswith("."))


def _images_under(folder: Path, seen: set[tuple[int, int]] | None = None) -> tuple[list[Path], list[str]]:
    """(sorted image paths found recursively, names of the other non-hidden files).

    Symbolic links to folders are followed (a class folder may link to images kept elsewhere), but each real
    folder is visited once: a link back up the tree (`again -> .`) would otherwise repeat its images at every
    level, and two such links make the walk exponential. `seen` (device, inode) pairs are shared across calls:
    the scan marks the data root, the split and every class folder first, so a link never pulls another class's
    images into this one."""
    images, others = [], []
    seen = set() if seen is None else seen
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=True):
        try:
            key = _dir_key(dirpath)
        except OSError:
            dirnames[:] = []
            continue
        if dirpath != str(folder):
            if key in seen:
                dirnames[:] = []  # a folder already walked (or another class's), reached again through a link
                continue
            seen.add(key)
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            if name.startswith("."):
                continue
            if is_image_file(name):
                images.append(Path(dirpath, name))
            else:
                others.append(name)
    return images, others


def _dir_key(path: str | Path) -> tuple[int, int]:
    st = os.stat(path)
    return st.st_dev, st.st_ino


def _empty_class_error(folder: Path, others: list[str]) -> DatasetError:
    exts = ", ".join(IMAGE_EXTENSIONS)
    if others:
        kinds = sorted({Path(n).suffix.lower() or n for n in others})[:8]
        detail = f"; it holds {len(others)} other file(s) ({', '.join(kinds)})"
    else:
        detail = "; it is empty"
    return DatasetError(f"class folder {folder} holds no images (looked for {exts}){detail}")


@dataclass
class ImageFolderScan:
    root: Path
    classes: tuple[str, ...]
    train: list[tuple[Path, int]]
    val: list[tuple[Path, int]]
    missing_val_classes: tuple[str, ...] = ()
    ignored_files: int = 0  # non-image files inside class folders
    warnings: list[str] = field(default_factory=list)


def _require_dir(path: Path, what: str, hint: str = "") -> None:
    if not path.is_dir():
        raise DatasetError(f"{what} {path} {'is not a folder' if path.exists() else 'does not exist'}{hint}")


def scan_image_folder(data_dir: str | Path) -> ImageFolderScan:
    """Find the classes and (path, label) samples of both splits, applying the rules in the module docstring."""
    root = Path(data_dir)
    layout = " (expected DIR/train/<class>/<image> and DIR/val/<class>/<image>)"
    _require_dir(root, "data directory")
    _require_dir(root / "train", "train folder", layout)
    val_hint = layout
    alias = next((a for a in VAL_ALIASES if (root / a).is_dir()), None)
    if alias:
        val_hint = f"; found {root / alias}: rename it to 'val'"
    _require_dir(root / "val", "val folder", val_hint)

    classes = _class_dirs(root / "train")
    if not classes:
        loose = [p.name for p in (root / "train").iterdir() if p.is_file() and is_image_file(p.name)]
        extra = f" ({len(loose)} images lie directly in it: move them into per-class folders)" if loose else ""
        raise DatasetError(f"train folder {root / 'train'} has no class folders{extra}{layout}")
    if len(classes) == 1:
        raise DatasetError(
            f"train folder {root / 'train'} has a single class folder ({classes[0]!r}): a classifier needs at "
            "least two classes (with one, every prediction is trivially right and nothing is learnt); add a "
            "folder per class under train/ and val/"
        )
    index = {c: i for i, c in enumerate(classes)}
    scan = ImageFolderScan(root, tuple(classes), [], [])

    val_classes = _class_dirs(root / "val")
    if not val_classes:
        loose = [p.name for p in (root / "val").iterdir() if p.is_file() and is_image_file(p.name)]
        extra = f" ({len(loose)} images lie directly in it: move them into per-class folders)" if loose else ""
        raise DatasetError(f"val folder {root / 'val'} has no class folders{extra}, so nothing could be "
                           f"validated{layout}")
    unknown = [c for c in val_classes if c not in index]
    if unknown:
        hints = "".join(f"\n  {c!r}{did_you_mean(c, classes)}" for c in unknown[:10])
        raise DatasetError(
            f"val has {len(unknown)} class folder(s) that train lacks, so they could never be predicted:{hints}\n"
            f"train classes: {', '.join(classes[:20])}{' ...' if len(classes) > 20 else ''}"
        )
    for split, names, out in (("train", classes, scan.train), ("val", val_classes, scan.val)):
        seen = {_dir_key(p) for p in (root, root / split, *(root / split / n for n in names))}
        for name in names:
            folder = root / split / name
            images, others = _images_under(folder, seen)
            if not images:
                raise _empty_class_error(folder, others)
            scan.ignored_files += len(others)
            out.extend((p, index[name]) for p in images)
        loose = [p.name for p in (root / split).iterdir() if p.is_file() and is_image_file(p.name)]
        if loose:
            scan.warnings.append(f"{len(loose)} image(s) lie directly in {root / split}, outside any class folder; "
                                 "they are ignored")
    missing = tuple(c for c in classes if c not in set(val_classes))
    if missing:
        scan.missing_val_classes = missing
        shown = ", ".join(missing[:10]) + (" ..." if len(missing) > 10 else "")
        scan.warnings.append(
            f"val has no folder for {len(missing)} of {len(classes)} train classes ({shown}); "
            "validation accuracy will not cover them"
        )
    for message in scan.warnings:
        warnings.warn(message, UserWarning, stacklevel=2)
    return scan


def decode_images(
    paths: Sequence[Path], mode: str = "RGB", *, skip_bad_images: bool = False, num_threads: int | None = None
) -> tuple[list[np.ndarray | None], list[tuple[Path, str]]]:
    """Decode every file to uint8 [H, W, C] (C = 3 for RGB, 1 for L), in threads (PIL releases the GIL).

    Returns (arrays, bad): with `skip_bad_images`, a bad file gives None and a (path, reason) entry in bad;
    without it, the first bad file raises its ImageLoadError.
    """

    def one(path: Path) -> np.ndarray | ImageLoadError:
        try:
            arr = np.array(load_image(path, mode))  # a writable copy (torch.from_numpy wants one)
        except ImageLoadError as e:
            if not skip_bad_images:
                raise
            return e
        return arr[:, :, None] if arr.ndim == 2 else arr

    threads = num_threads or min(8, os.cpu_count() or 1)
    arrays: list[np.ndarray | None] = []
    bad: list[tuple[Path, str]] = []
    pool = ThreadPoolExecutor(max_workers=threads)
    try:
        for path, result in zip(paths, pool.map(one, paths)):
            if isinstance(result, ImageLoadError):
                arrays.append(None)
                bad.append((path, str(result)))
            else:
                arrays.append(result)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)  # on the first error, do not decode the rest first
    return arrays, bad


def check_headers(paths: Sequence[Path], *, num_threads: int | None = None) -> list[tuple[Path, str]]:
    """(path, reason) for every file whose header PIL cannot read (not an image, empty, unknown format).

    Cheap (no pixel decoding), so it cannot catch every truncated file; `ImageFolderDataset` covers those.
    """

    def one(path: Path) -> str | None:
        try:
            image_size(path)
        except ImageLoadError as e:
            return str(e)
        return None

    with ThreadPoolExecutor(max_workers=num_threads or min(8, os.cpu_count() or 1)) as pool:
        return [(p, r) for p, r in zip(paths, pool.map(one, paths)) if r is not None]


class ImageFolderDataset(Dataset):
    """Decodes each image when asked: item i -> (transform(PIL image in `mode`), label).

    With `skip_bad_images`, a file that fails to decode is replaced by the next readable sample (a warning
    names it) instead of stopping training; the replacement is deterministic. Without it, the error names
    the file (and DataLoader re-raises it in the main process).
    """

    in_memory = False  # the training engine uses no DataLoader workers for in-memory data

    def __init__(
        self,
        samples: Sequence[tuple[Path, int]],
        classes: Sequence[str],
        *,
        mode: str = "RGB",
        transform: Callable[[Image.Image], object] | None = None,
        skip_bad_images: bool = False,
    ) -> None:
        self.samples = list(samples)
        self.classes = tuple(classes)
        self.targets = [label for _, label in self.samples]
        self.mode, self.transform, self.skip_bad_images = mode, transform, skip_bad_images
        self.bad_files: set[Path] = set()  # found during iteration (per process: workers keep their own)

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[object, int]:
        for k in range(len(self.samples)):
            path, label = self.samples[(index + k) % len(self.samples)]
            try:
                img = load_image(path, self.mode)
            except ImageLoadError as e:
                if not self.skip_bad_images:
                    raise
                if path not in self.bad_files:
                    self.bad_files.add(path)
                    warnings.warn(f"skipping unreadable image: {e}", UserWarning, stacklevel=2)
                continue
            return (self.transform(img) if self.transform is not None else img), label
        raise DatasetError(f"no readable image left among the {len(self.samples)} files of this dataset")

    def __repr__(self) -> str:
        return f"ImageFolderDataset({len(self)} images, {len(self.classes)} classes, mode={self.mode}, lazy)"
