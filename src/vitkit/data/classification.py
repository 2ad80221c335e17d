"""Image-classification data for `vitkit train --task classification --data DIR`: find out what DIR holds,
and build the train / val datasets.

Recognised, in this order (the first that matches wins; `kind=` forces one):

| kind            | DIR holds                                                                          |
| --------------- | ---------------------------------------------------------------------------------- |
| imagefolder     | train/<class>/<image> and val/<class>/<image>                                      |
| cifar10         | cifar-10-batches-py/ (data_batch_1..5, test_batch, batches.meta), or those files   |
| cifar100        | cifar-100-python/ (train, test, meta), or those files                              |
| mnist           | MNIST IDX files (train-images-idx3-ubyte[.gz], ...), here or up to 2 levels down    |
| fashion-mnist   | the same, with "fashion" in the folder path                                        |

CIFAR's and MNIST's test splits serve as val. Every dataset item is (float tensor [C, H, W] normalised with
the model's mean / std, int label), C = the model's in_chans (1: grey, 3: RGB).

Caching: data that decodes to less than `cache_limit_mb` (200 MB by default; CIFAR and MNIST always) is
decoded once into memory as uint8 [N, C, H, W] (a list of [C, H, W] when image sizes differ), so epochs
after the first cost only the transforms, and DataLoader workers share the pages. Larger ImageFolders are
decoded per item (`ImageFolderDataset`): use DataLoader workers. The decision uses image headers of up to 64
sampled files, so it is an estimate.

    cfg = DataConfig.from_model(model)
    data = load_classification_data("data/flowers", cfg)
    print(data.summary())
    loader = DataLoader(data.train, batch_size=64, shuffle=True, num_workers=2)
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from ..errors import ConfigError, did_you_mean
from ..processing.images import DatasetError, ImageLoadError, image_size, rgb_to_luma
from ..utils.random import GeneratorLike, Rng
from .cifar import CIFAR10_DIR, CIFAR100_DIR, find_cifar, read_cifar
from .imagefolder import ImageFolderDataset, check_headers, decode_images, scan_image_folder
from .mnist import find_mnist, guess_mnist_kind, read_mnist
from .transforms import DEFAULT_RANDAUGMENT, DataConfig, build_transforms

KINDS = ("imagefolder", "cifar10", "cifar100", "mnist", "fashion-mnist")
DEFAULT_CACHE_LIMIT_MB = 200.0
_HEADER_SAMPLE = 64

Transform = Callable[[Image.Image], object]


class TensorImageDataset(Dataset):
    """Images decoded once into memory. item i -> (transform(PIL image), label); no transform: the uint8
    tensor [C, H, W] itself.

    `images` is uint8 [N, C, H, W] (C = 1 or 3), or a sequence of uint8 [C, H_i, W_i] when sizes differ.
    """

    in_memory = True  # the training engine uses no DataLoader workers for in-memory data

    def __init__(
        self,
        images: torch.Tensor | Sequence[torch.Tensor],
        labels: torch.Tensor | Sequence[int],
        classes: Sequence[str],
        transform: Transform | None = None,
    ) -> None:
        self.images = images
        self.labels = torch.as_tensor(labels, dtype=torch.int64)
        if len(images) != len(self.labels):
            raise DatasetError(f"{len(images)} images but {len(self.labels)} labels")
        self.classes = tuple(classes)
        self.transform = transform

    @property
    def targets(self) -> list[int]:
        """The class index of every image (torchvision's name for it)."""
        return self.labels.tolist()

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[object, int]:
        img = self.images[index]  # uint8 [C, H, W]
        if self.transform is None:
            return img, int(self.labels[index])
        return self.transform(tensor_to_pil(img)), int(self.labels[index])

    @property
    def nbytes(self) -> int:
        """Memory the decoded images hold."""
        if isinstance(self.images, torch.Tensor):
            return self.images.untyped_storage().nbytes()
        return sum(t.untyped_storage().nbytes() for t in self.images)

    def __repr__(self) -> str:
        shape = tuple(self.images.shape[1:]) if isinstance(self.images, torch.Tensor) else "mixed sizes"
        return f"TensorImageDataset({len(self)} images {shape}, {len(self.classes)} classes, in memory)"


def tensor_to_pil(img: torch.Tensor) -> Image.Image:
    """uint8 [1 or 3, H, W] -> PIL "L" or "RGB"."""
    if img.shape[0] == 1:
        return Image.fromarray(img[0].numpy())
    return Image.fromarray(np.ascontiguousarray(img.permute(1, 2, 0).numpy()))


def _to_channels(images: np.ndarray, in_chans: int) -> torch.Tensor:
    """uint8 [N, C, H, W] with C in (1, 3) -> uint8 [N, in_chans, H, W] (luma as PIL's convert("L"); grey
    -> RGB as a broadcast view, no copy)."""
    x = torch.from_numpy(np.ascontiguousarray(images))
    if x.shape[1] == in_chans:
        return x
    if in_chans == 1:  # RGB -> luma
        return torch.from_numpy(rgb_to_luma(np.ascontiguousarray(images.transpose(0, 2, 3, 1))))[:, None]
    return x.expand(-1, 3, -1, -1)


@dataclass
class ClassificationData:
    """What `load_classification_data` returns."""

    train: Dataset
    val: Dataset
    classes: tuple[str, ...]
    kind: str  # one of KINDS
    root: Path  # the folder the data was read from
    cached: bool  # decoded into memory (TensorImageDataset) rather than per item
    skipped: tuple[Path, ...] = ()  # unreadable images left out (skip_bad_images=True)
    warnings: tuple[str, ...] = ()

    @property
    def num_classes(self) -> int:
        """How many classes the dataset has."""
        return len(self.classes)

    def summary(self) -> str:
        """One paragraph for logs: kind, sizes, caching, skipped files, warnings."""
        where = "decoded per item"
        if self.cached:
            nbytes = sum(getattr(d, "nbytes", 0) for d in (self.train, self.val))
            where = f"decoded into memory ({nbytes / 2**20:.1f} MB)"
        lines = [
            f"{self.kind} data in {self.root}: {self.num_classes} classes, {len(self.train)} train / "
            f"{len(self.val)} val images, {where}"
        ]
        if self.skipped:
            shown = ", ".join(str(p) for p in self.skipped[:5]) + (" ..." if len(self.skipped) > 5 else "")
            lines.append(f"skipped {len(self.skipped)} unreadable image(s): {shown}")
        lines += [f"warning: {w}" for w in self.warnings]
        return "\n".join(lines)


def detect_dataset_kind(data_dir: str | Path) -> tuple[str, Path]:
    """(kind, folder the files are in) for what `data_dir` holds; a DatasetError lists what was looked for."""
    root = Path(data_dir)
    if not root.is_dir():
        raise DatasetError(f"data directory {root} {'is not a folder' if root.exists() else 'does not exist'}")
    if (root / "train").is_dir():
        return "imagefolder", root
    cifar = find_cifar(root)
    if cifar is not None:
        return cifar
    mnist = find_mnist(root)
    if mnist is not None:
        return guess_mnist_kind(root, mnist), mnist
    entries = sorted(p.name + ("/" if p.is_dir() else "") for p in root.iterdir() if not p.name.startswith("."))
    shown = ", ".join(entries[:12]) + (" ..." if len(entries) > 12 else "") if entries else "nothing"
    raise DatasetError(
        f"cannot tell what dataset {root} holds (it contains: {shown}). Looked for:\n"
        f"  ImageFolder: {root}/train/<class>/<image> and {root}/val/<class>/<image>\n"
        f"  CIFAR-10:    {root}/{CIFAR10_DIR}/ with data_batch_1..5, test_batch, batches.meta (or those files)\n"
        f"  CIFAR-100:   {root}/{CIFAR100_DIR}/ with train, test, meta (or those files)\n"
        f"  MNIST / Fashion-MNIST: train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte, "
        f"t10k-labels-idx1-ubyte (optionally .gz), here or up to two folder levels down"
    )


def load_classification_data(
    data_dir: str | Path,
    data_config: DataConfig,
    *,
    kind: str | None = None,
    scale: tuple[float, float] | None = None,
    ratio: tuple[float, float] = (3 / 4, 4 / 3),
    hflip: float | None = None,
    randaugment: str | None = DEFAULT_RANDAUGMENT,
    re_prob: float = 0.25,
    generator: GeneratorLike | Rng = None,
    train_transform: Transform | None = None,
    eval_transform: Transform | None = None,
    skip_bad_images: bool = False,
    cache: bool | None = None,
    cache_limit_mb: float = DEFAULT_CACHE_LIMIT_MB,
    shift: int | None = None,
) -> ClassificationData:
    """Detect the dataset in `data_dir` and build its train / val datasets for a model with `data_config`.

    Args:
        data_dir: an ImageFolder (`train/<class>/...`, `val/<class>/...`), CIFAR-10/100 python batches or
            MNIST / Fashion-MNIST IDX files; the kind is recognised.
        data_config: the model's input geometry and normalisation (`DataConfig.from_model(model)`).
        kind: force the dataset kind (one of `KINDS`) instead of detecting it.
        scale: RandomResizedCrop's area range (None: `default_crop_scale` of the image size).
        ratio: RandomResizedCrop's aspect range.
        hflip: horizontal flip probability (None: 0 for MNIST digits, where a mirrored digit is another
            glyph, else 0.5).
        randaugment: a timm RandAugment string; None disables it.
        re_prob: random erasing probability.
        generator: one torch / numpy / random generator for every random choice (None: torch's global RNG).
        train_transform: replaces the built train transform outright.
        eval_transform: replaces the built eval transform outright.
        skip_bad_images: leave unreadable ImageFolder images out (listed in `.skipped`) instead of stopping
            at the first.
        cache: True / False forces decoding into memory or per item; None decides by `cache_limit_mb`.
        cache_limit_mb: the decoded size up to which images are kept in memory.
        shift: translate the whole resized image by up to this many pixels instead of RandomResizedCrop (see
            `TrainTransform`).
    """
    if kind is None:
        kind, _ = detect_dataset_kind(data_dir)
    elif kind not in KINDS:
        raise ConfigError(f"unknown dataset kind {kind!r}{did_you_mean(kind, KINDS)}; choose one of {', '.join(KINDS)}")
    if hflip is None:
        hflip = 0.0 if kind == "mnist" else 0.5
    built_train, built_eval = build_transforms(
        data_config, scale=scale, ratio=ratio, hflip=hflip, randaugment=randaugment, re_prob=re_prob,
        generator=generator, shift=shift,
    )
    train_tf = train_transform if train_transform is not None else built_train
    eval_tf = eval_transform if eval_transform is not None else built_eval

    if kind == "imagefolder":
        return _load_image_folder(
            Path(data_dir), data_config, train_tf, eval_tf, skip_bad_images=skip_bad_images, cache=cache,
            cache_limit_mb=cache_limit_mb,
        )
    if kind in ("cifar10", "cifar100"):
        raw = read_cifar(data_dir)
        if raw.kind != kind:
            raise DatasetError(f"{data_dir} holds {raw.kind}, not {kind}")
    else:
        raw = read_mnist(data_dir, kind=kind)
    if len(raw.classes) < 2:
        raise DatasetError(f"{raw.root} names {len(raw.classes)} class(es): a classifier needs at least two")
    c = data_config.in_chans
    train = TensorImageDataset(_to_channels(raw.train_images, c), raw.train_labels, raw.classes, train_tf)
    val = TensorImageDataset(_to_channels(raw.test_images, c), raw.test_labels, raw.classes, eval_tf)
    return ClassificationData(train, val, raw.classes, kind, raw.root, cached=True)


def estimate_decoded_bytes(paths: Sequence[Path], channels: int, sample: int = _HEADER_SAMPLE) -> int:
    """Decoded size of `paths` at `channels` bytes per pixel, from the headers of up to `sample` evenly
    spaced files (unreadable ones are left out of the estimate)."""
    if not paths:
        return 0
    k = min(sample, len(paths))
    picks = sorted({round(i * (len(paths) - 1) / max(1, k - 1)) for i in range(k)})
    areas = []
    for i in picks:
        try:
            w, h = image_size(paths[i])
        except ImageLoadError:
            continue
        areas.append(w * h)
    return int(len(paths) * channels * (float(np.mean(areas)) if areas else 0.0))


def _stack_or_list(arrays: list[np.ndarray]) -> torch.Tensor | list[torch.Tensor]:
    """HWC uint8 arrays -> [N, C, H, W] when they share a size, else a list of [C, H, W]."""
    tensors = [torch.from_numpy(np.ascontiguousarray(a.transpose(2, 0, 1))) for a in arrays]
    if tensors and all(t.shape == tensors[0].shape for t in tensors):
        return torch.stack(tensors)
    return tensors


def _load_image_folder(
    root: Path, cfg: DataConfig, train_tf: Transform, eval_tf: Transform, *, skip_bad_images: bool,
    cache: bool | None, cache_limit_mb: float,
) -> ClassificationData:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        scan = scan_image_folder(root)
    for w in caught:  # re-issue from here, so the warning points at the caller's call
        warnings.warn(str(w.message), w.category, stacklevel=3)
    mode = cfg.mode
    if cache is None:
        paths = [p for p, _ in scan.train] + [p for p, _ in scan.val]
        cache = estimate_decoded_bytes(paths, cfg.in_chans) < cache_limit_mb * 2**20

    skipped: list[Path] = []
    splits = {}
    for split, samples in (("train", scan.train), ("val", scan.val)):
        paths = [p for p, _ in samples]
        if cache:
            arrays, bad = decode_images(paths, mode, skip_bad_images=skip_bad_images)
        else:
            arrays, bad = None, (check_headers(paths) if skip_bad_images else [])
        bad_paths = {p for p, _ in bad}
        keep = [i for i, p in enumerate(paths) if p not in bad_paths]
        skipped += [p for p, _ in bad]
        for _p, reason in bad:
            warnings.warn(f"skipping unreadable image: {reason}", UserWarning, stacklevel=3)
        if split == "train":
            present = {samples[i][1] for i in keep}
            lost = [scan.classes[c] for c in sorted({label for _, label in samples} - present)]
            if lost:
                raise DatasetError(f"every train image of class(es) {', '.join(lost)} is unreadable")
        if cache:
            images = _stack_or_list([arrays[i] for i in keep])  # type: ignore[index]
            labels = [samples[i][1] for i in keep]
            splits[split] = TensorImageDataset(images, labels, scan.classes, train_tf if split == "train" else eval_tf)
        else:
            splits[split] = ImageFolderDataset(
                [samples[i] for i in keep], scan.classes, mode=mode,
                transform=train_tf if split == "train" else eval_tf, skip_bad_images=skip_bad_images,
            )
    return ClassificationData(
        splits["train"], splits["val"], scan.classes, "imagefolder", root, cached=cache, skipped=tuple(skipped),
        warnings=tuple(scan.warnings),
    )


GREY_MODES = {"L", "1", "I;16", "I;16B", "I;16L", "I", "F", "LA"}


def peek_dataset(data_dir: Path) -> tuple[list[str], int, int]:
    """What a training run needs before it builds a model, without decoding an ImageFolder: (class names,
    training-set size, input channels). Channels: 1 for grey data (MNIST, Fashion-MNIST, an ImageFolder whose
    first 16 training images are grey), else 3."""
    kind, _ = detect_dataset_kind(data_dir)
    if kind != "imagefolder":
        ds = load_classification_data(data_dir, DataConfig(img_size=32, in_chans=1, mean=(0.5,), std=(0.5,)),
                                      kind=kind, randaugment=None)
        return list(ds.classes), len(ds.train), 1 if kind in ("mnist", "fashion-mnist") else 3
    scan = scan_image_folder(data_dir)
    modes = set()
    for path, _ in scan.train[:16]:
        try:
            with Image.open(path) as im:
                modes.add(im.mode)
        except OSError:
            continue
    grey = bool(modes) and modes <= GREY_MODES
    return list(scan.classes), len(scan.train), 1 if grey else 3
