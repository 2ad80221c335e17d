"""Train and eval image transforms, PIL image -> normalised float tensor [C, H, W], built from a `DataConfig`.

Eval (timm's `transforms_factory` eval path): resize the shorter side to `img_size / crop_pct` with the
model's interpolation, centre-crop `img_size`, scale to [0, 1], normalise with the model's mean / std. An image
smaller than the target is upsampled by the same resize.

Train (timm / DeiT recipe): RandomResizedCrop -> horizontal flip -> RandAugment -> normalise -> random erasing.

Crop scale. timm's default RandomResizedCrop scale (0.08, 1) was tuned for ImageNet at 224 px, where an 8 %
crop still spans ~63x63 source pixels. On a 32x32 image it spans ~9x9 pixels, which, blown back up to 32x32,
is mostly blur with little of the object left; with the label kept, that is label noise. So below 128 px
(`SMALL_IMAGE_SIZE`) the default is (0.35, 1): the crop keeps at least a third of the image (>= ~19x19 px at
32 px), still a real scale and aspect augmentation, which a ViT - lacking a CNN's built-in translation and
scale priors - needs more than the pad-4-and-random-crop CNN recipe gives (that is only a +-4 px translation).
Pass `scale=` to override.

Horizontal flip is on (0.5) by default; turn it off (`hflip=0`) for data where mirroring changes the class
(digits, text). `load_classification_data` does this for MNIST.

Both pipelines are plain PIL + numpy per image, with no tensor work before normalisation: at the small sizes
vitkit trains on CPUs that is cheap enough for a 2-core machine to keep a small ViT fed (docs/benchmarks.md,
last section, has the throughput).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from PIL import Image

from ..errors import ConfigError, InputTooLarge
from ..processing.images import DatasetError, channels_to_mode, pil_resampling, to_mode
from ..utils.limits import check_resize
from ..utils.random import GeneratorLike, Rng, as_rng
from .randaugment import RandAugment

SMALL_IMAGE_SIZE = 128  # below this (the shorter side of img_size), the gentler crop scale is the default
DEFAULT_SCALE = (0.08, 1.0)
SMALL_IMAGE_SCALE = (0.35, 1.0)
DEFAULT_RANDAUGMENT = "rand-m9-mstd0.5-inc1"


@dataclass(frozen=True)
class DataConfig:
    """The preprocessing a model expects; `DataConfig.from_model(model)` reads it off a ViT's config."""

    img_size: int | tuple[int, int] = 224  # (height, width) when a tuple
    in_chans: int = 3
    mean: tuple[float, ...] = (0.5, 0.5, 0.5)
    std: tuple[float, ...] = (0.5, 0.5, 0.5)
    crop_pct: float = 0.9
    interpolation: str = "bicubic"

    def __post_init__(self) -> None:
        channels_to_mode(self.in_chans)  # 1 or 3
        mean, std = tuple(float(v) for v in self.mean), tuple(float(v) for v in self.std)
        if self.in_chans == 1 and len(mean) == 3 and len(set(mean)) == 1 and len(set(std)) == 1:
            mean, std = mean[:1], std[:1]  # a grey model with an RGB-shaped but uniform mean/std
        if len(mean) != self.in_chans or len(std) != self.in_chans:
            raise ConfigError(
                f"mean {self.mean} and std {self.std} need one value per channel (in_chans={self.in_chans})"
            )
        if any(s <= 0 for s in std):
            raise ConfigError(f"std values must be > 0, got {self.std}")
        if not 0.0 < self.crop_pct <= 1.0:
            raise ConfigError(f"crop_pct must be in (0, 1], got {self.crop_pct}")
        pil_resampling(self.interpolation)  # an unknown name raises here, at configuration time
        size = (self.img_size, self.img_size) if isinstance(self.img_size, int) else tuple(self.img_size)
        if len(size) != 2 or not all(isinstance(v, int) and v > 0 for v in size):
            raise ConfigError(f"img_size must be a positive int or an (height, width) pair, got {self.img_size!r}")
        object.__setattr__(self, "mean", mean)
        object.__setattr__(self, "std", std)
        if not isinstance(self.img_size, int):
            object.__setattr__(self, "img_size", size)

    @property
    def size_hw(self) -> tuple[int, int]:
        """The model's input size as (height, width)."""
        return (self.img_size, self.img_size) if isinstance(self.img_size, int) else self.img_size

    @property
    def mode(self) -> str:
        """The PIL mode images are decoded to: "L" for one channel, else "RGB"."""
        return channels_to_mode(self.in_chans)

    @classmethod
    def from_model(cls, model_or_config: Any) -> DataConfig:
        """From a model with a `.config`, or a config, carrying img_size, in_chans, mean, std, crop_pct,
        interpolation (ViTConfig does)."""
        cfg = getattr(model_or_config, "config", model_or_config)
        names = ("img_size", "in_chans", "mean", "std", "crop_pct", "interpolation")
        missing = [n for n in names if not hasattr(cfg, n)]
        if missing:
            raise ConfigError(f"{type(cfg).__name__} has no {', '.join(missing)}; cannot derive a DataConfig")
        return cls(**{n: getattr(cfg, n) for n in names})


def default_crop_scale(img_size: int | tuple[int, int]) -> tuple[float, float]:
    """(0.08, 1) from 128 px up (timm), (0.35, 1) below (see the module docstring)."""
    short = img_size if isinstance(img_size, int) else min(img_size)
    return DEFAULT_SCALE if short >= SMALL_IMAGE_SIZE else SMALL_IMAGE_SCALE


class ToNormalizedTensor:
    """8-bit PIL image (RGB or L) -> float tensor [C, H, W], (x / 255 - mean) / std."""

    def __init__(self, mean: Sequence[float], std: Sequence[float]) -> None:
        std_t = torch.tensor(std, dtype=torch.float32)
        self.scale = (1.0 / (255.0 * std_t)).view(-1, 1, 1)  # [C, 1, 1]
        self.bias = (-torch.tensor(mean, dtype=torch.float32) / std_t).view(-1, 1, 1)

    def __call__(self, img: Image.Image) -> torch.Tensor:
        """The image as a normalised float tensor [C, H, W]."""
        arr = np.array(img, dtype=np.uint8, copy=True)  # a writable copy: torch.from_numpy warns on read-only
        x = torch.from_numpy(arr)
        x = x[None] if x.ndim == 2 else x.permute(2, 0, 1)  # [C, H, W]
        if x.shape[0] != self.scale.shape[0]:
            raise ConfigError(f"image has {x.shape[0]} channel(s), the normalisation expects {self.scale.shape[0]}")
        return x.to(torch.float32).mul_(self.scale).add_(self.bias)


def resize_shorter(img: Image.Image, size: int, resample: Image.Resampling) -> Image.Image:
    """Resize so the shorter side is `size`, keeping the aspect ratio (torchvision's rounding: truncate)."""
    w, h = img.size
    if min(w, h) == size:
        return img
    if w <= h:
        new_w, new_h = size, int(size * h / w)
    else:
        new_w, new_h = int(size * w / h), size
    try:  # before resizing: a 100000x1 image would otherwise become 24,800,000 x 248 pixels (~25 GB) at 224
        check_resize((w, h), (new_w, new_h))
    except InputTooLarge as e:
        raise DatasetError(str(e)) from None
    return img.resize((new_w, new_h), resample)


def center_crop(img: Image.Image, size_hw: tuple[int, int]) -> Image.Image:
    """The centred (height, width) = `size_hw` crop of `img`, with timm's rounding of the offsets."""
    th, tw = size_hw
    w, h = img.size
    if (w, h) == (tw, th):
        return img
    top, left = round((h - th) / 2.0), round((w - tw) / 2.0)
    return img.crop((left, top, left + tw, top + th))  # PIL pads with black if the image is smaller


class EvalTransform:
    """Resize (shorter side to img_size / crop_pct) -> centre crop img_size -> normalise. PIL -> [C, H, W]."""

    def __init__(self, config: DataConfig) -> None:
        self.config = config
        self.resample = pil_resampling(config.interpolation)
        h, w = config.size_hw
        self.scale_size = (math.floor(h / config.crop_pct), math.floor(w / config.crop_pct))
        self.to_tensor = ToNormalizedTensor(config.mean, config.std)

    def crop(self, img: Image.Image) -> Image.Image:
        """The resized, centre-cropped picture the model sees (before normalisation)."""
        img = _ensure_mode(img, self.config.mode)
        sh, sw = self.scale_size
        if sh == sw:
            img = resize_shorter(img, sh, self.resample)
        elif img.size != (sw, sh):
            img = img.resize((sw, sh), self.resample)  # non-square target: exact size (timm's rule)
        return center_crop(img, self.config.size_hw)

    def __call__(self, img: Image.Image) -> torch.Tensor:
        """`img` as the model sees it: a normalised float tensor [C, H, W]."""
        return self.to_tensor(self.crop(img))

    def __repr__(self) -> str:
        c = self.config
        return f"EvalTransform(resize={self.scale_size}, crop={c.size_hw}, {c.interpolation}, mean={c.mean})"


def random_resized_crop_params(
    width: int, height: int, scale: tuple[float, float], ratio: tuple[float, float], rng: Rng
) -> tuple[int, int, int, int]:
    """torchvision's RandomResizedCrop.get_params: (top, left, h, w) covering a `scale` fraction of the area
    at an aspect ratio log-uniform in `ratio`; 10 tries, then the largest centred crop within `ratio`.

    Args:
        width: the image's width in pixels.
        height: the image's height in pixels.
        scale: (min, max) fraction of the image's area the crop covers.
        ratio: (min, max) aspect ratio (width / height) of the crop.
        rng: the random source.
    """
    area = width * height
    log_lo, log_hi = math.log(ratio[0]), math.log(ratio[1])
    for _ in range(10):
        target_area = area * rng.uniform(scale[0], scale[1])
        aspect = math.exp(rng.uniform(log_lo, log_hi))
        w = round(math.sqrt(target_area * aspect))
        h = round(math.sqrt(target_area / aspect))
        if 0 < w <= width and 0 < h <= height:
            return rng.randint(0, height - h + 1), rng.randint(0, width - w + 1), h, w
    in_ratio = width / height
    if in_ratio < min(ratio):
        w, h = width, round(width / min(ratio))
    elif in_ratio > max(ratio):
        h, w = height, round(height * max(ratio))
    else:
        w, h = width, height
    return (height - h) // 2, (width - w) // 2, h, w


class RandomErasing:
    """Random erasing (Zhong et al. 2017, https://arxiv.org/abs/1708.04896) as timm's `RandomErasing(mode=
    'pixel')`: with probability `prob`, one rectangle of 2 %..33 % of the area, aspect log-uniform in
    [0.3, 1/0.3], is filled with per-pixel N(0, 1) noise (on the normalised tensor). In place; returns x."""

    def __init__(
        self, prob: float = 0.25, *, area: tuple[float, float] = (0.02, 1 / 3), min_aspect: float = 0.3,
        generator: GeneratorLike | Rng = None,
    ) -> None:
        if not 0.0 <= prob <= 1.0:
            raise ConfigError(f"random erasing probability must be in [0, 1], got {prob}")
        self.prob, self.area = prob, area
        self.log_aspect = (math.log(min_aspect), math.log(1 / min_aspect))
        self.rng = as_rng(generator)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """Erase one random rectangle of `x` [C, H, W] with probability `prob` (in place; returns x)."""
        if self.prob == 0.0 or self.rng.random() >= self.prob:
            return x
        c, height, width = x.shape
        for _ in range(10):
            target_area = self.rng.uniform(*self.area) * height * width
            aspect = math.exp(self.rng.uniform(*self.log_aspect))
            h = round(math.sqrt(target_area * aspect))
            w = round(math.sqrt(target_area / aspect))
            if 0 < w < width and 0 < h < height:
                top, left = self.rng.randint(0, height - h + 1), self.rng.randint(0, width - w + 1)
                x[:, top : top + h, left : left + w] = self.rng.normal((c, h, w), dtype=x.dtype)
                break
        return x


class TrainTransform:
    """RandomResizedCrop -> horizontal flip -> RandAugment -> normalise -> random erasing. PIL -> [C, H, W].

    Args:
        config: the model's input geometry and normalisation.
        scale: RandomResizedCrop's area range (None: `default_crop_scale(img_size)`).
        ratio: RandomResizedCrop's aspect range.
        hflip: horizontal flip probability.
        randaugment: a timm RandAugment string (None or "" disables it).
        re_prob: random erasing probability.
        generator: one torch / numpy / random generator for every random choice (None: torch's global RNG).
        shift: instead of RandomResizedCrop, resize the whole image to the target size and translate it by up
            to `shift` pixels each way (zero fill, as CIFAR's pad-and-crop): the gentle geometry that suits
            tiny images of small objects (digits), where zooming and aspect changes alter stroke widths.
    """

    def __init__(
        self,
        config: DataConfig,
        *,
        scale: tuple[float, float] | None = None,
        ratio: tuple[float, float] = (3 / 4, 4 / 3),
        hflip: float = 0.5,
        randaugment: str | None = DEFAULT_RANDAUGMENT,
        re_prob: float = 0.25,
        generator: GeneratorLike | Rng = None,
        shift: int | None = None,
    ) -> None:
        self.config = config
        if shift is not None and shift < 0:
            raise ConfigError(f"shift must be >= 0 pixels, got {shift}")
        self.shift = shift
        self.scale = tuple(scale) if scale is not None else default_crop_scale(config.img_size)
        if not 0.0 < self.scale[0] <= self.scale[1] <= 1.0:
            raise ConfigError(f"crop scale must satisfy 0 < min <= max <= 1, got {self.scale}")
        if not 0.0 < ratio[0] <= ratio[1]:
            raise ConfigError(f"crop aspect ratio must satisfy 0 < min <= max, got {ratio}")
        if not 0.0 <= hflip <= 1.0:
            raise ConfigError(f"hflip probability must be in [0, 1], got {hflip}")
        self.ratio, self.hflip = tuple(ratio), hflip
        self.rng = as_rng(generator)
        self.resample = pil_resampling(config.interpolation)
        fill = tuple(min(255, round(255 * m)) for m in config.mean)  # geometric ops fill with the mean (timm)
        self.randaugment = (
            RandAugment.from_string(
                randaugment, fill=fill, interpolation=config.interpolation,
                translate_pct=0.45, generator=self.rng,
            )
            if randaugment
            else None
        )
        self.to_tensor = ToNormalizedTensor(config.mean, config.std)
        self.erase = RandomErasing(re_prob, generator=self.rng)

    def __call__(self, img: Image.Image) -> torch.Tensor:
        """One augmented view of `img` as a normalised float tensor [C, H, W]."""
        img = _ensure_mode(img, self.config.mode)
        th, tw = self.config.size_hw
        if self.shift is not None:
            if img.size != (tw, th):
                img = img.resize((tw, th), self.resample)
            s = self.shift
            dx, dy = self.rng.randint(-s, s + 1), self.rng.randint(-s, s + 1)
            img = img.transform(img.size, Image.Transform.AFFINE, (1, 0, dx, 0, 1, dy), fillcolor=0)  # zero padding
        else:
            top, left, h, w = random_resized_crop_params(img.width, img.height, self.scale, self.ratio, self.rng)
            img = img.crop((left, top, left + w, top + h)).resize((tw, th), self.resample)
        if self.hflip > 0 and self.rng.random() < self.hflip:
            img = img.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        if self.randaugment is not None:
            img = self.randaugment(img)
        return self.erase(self.to_tensor(img))

    def __repr__(self) -> str:
        return (
            f"TrainTransform(size={self.config.size_hw}, scale={self.scale}, ratio={self.ratio}, hflip={self.hflip}, "
            f"{self.randaugment!r}, re_prob={self.erase.prob})"
        )


def build_transforms(
    config: DataConfig,
    *,
    scale: tuple[float, float] | None = None,
    ratio: tuple[float, float] = (3 / 4, 4 / 3),
    hflip: float = 0.5,
    randaugment: str | None = DEFAULT_RANDAUGMENT,
    re_prob: float = 0.25,
    generator: GeneratorLike | Rng = None,
    shift: int | None = None,
) -> tuple[TrainTransform, EvalTransform]:
    """(train, eval) transforms for `config`; the arguments are `TrainTransform`'s (its Args section says what
    each means)."""
    train = TrainTransform(
        config, scale=scale, ratio=ratio, hflip=hflip, randaugment=randaugment, re_prob=re_prob, generator=generator,
        shift=shift,
    )
    return train, EvalTransform(config)


def _ensure_mode(img: Image.Image, mode: str) -> Image.Image:
    """Any other mode (RGBA, P, 16-bit, ...) goes through the shared rules in vitkit.images. An image without
    pixels (0 wide or 0 high) cannot be resized to anything: a DatasetError, not a ZeroDivisionError."""
    if img.width < 1 or img.height < 1:
        raise DatasetError(f"an image of {img.width}x{img.height} pixels has no content to resize")
    return img if img.mode == mode else to_mode(img, mode)
