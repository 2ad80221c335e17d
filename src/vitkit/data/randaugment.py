"""RandAugment (Cubuk et al. 2019, "RandAugment: Practical automated data augmentation with a reduced search
space", https://arxiv.org/abs/1909.13719) in timm's flavour, on PIL images.

Each image gets `num_ops` ops drawn uniformly (with replacement) from 15; each op then fires with probability
`prob` (timm's 0.5) at a magnitude drawn from N(magnitude, magnitude_std) clipped to [0, 10]. The op list and
the magnitude -> argument maps are timm's (`timm.data.auto_augment`, `_RAND_TRANSFORMS` /
`_RAND_INCREASING_TRANSFORMS`); `increasing=True` ("inc1") uses the variants whose severity grows with the
magnitude (Posterize keeps fewer bits, Solarize lowers its threshold, the enhance ops move further from 1 in a
random direction). tests/data/test_randaugment.py checks every op and every magnitude map against timm.

Randomness comes from one `Rng` (a torch / numpy / `random` generator, or torch's global RNG), so a seeded
run is reproducible, and DataLoader workers get distinct streams (see `Rng`).

    gen = torch.Generator().manual_seed(0)
    ra = RandAugment.from_string("rand-m9-mstd0.5-inc1", fill=(128, 128, 128), generator=gen)
    img = ra(img)  # PIL in, PIL out (RGB or L)
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageChops, ImageEnhance

from ..errors import ConfigError
from ..processing.images import pil_resampling
from ..utils.random import GeneratorLike, Rng, as_rng

# --------------------------------------------------------------------------------------------------- the ops
# Each op is f(img, arg, fill, resample) -> img; args come from the level maps below.
Fill = int | tuple[int, ...]


def _affine(img: Image.Image, matrix: tuple[float, ...], fill: Fill, resample: Image.Resampling) -> Image.Image:
    return img.transform(img.size, Image.Transform.AFFINE, matrix, resample=resample, fillcolor=fill)


def _apply_lut(img: Image.Image, table: np.ndarray) -> Image.Image:
    """Map every channel through a uint8[256] table. Same result as `img.point(list)` (what ImageOps uses),
    but Pillow's `point` rounds its 768-entry list in Python on every call, which dominates on small images
    (docs/benchmarks.md, last section)."""
    return Image.fromarray(table[np.asarray(img)])


def _apply_channel_luts(img: Image.Image, tables: np.ndarray) -> Image.Image:
    """Map channel c through tables[c] (uint8 [C, 256])."""
    a = np.asarray(img)
    if a.ndim == 2:
        return Image.fromarray(tables[0][a])
    return Image.fromarray(tables[np.arange(a.shape[2]), a])  # [H, W, C]


def _histograms(img: Image.Image) -> np.ndarray:
    return np.asarray(img.histogram(), dtype=np.int64).reshape(-1, 256)  # [C, 256]


def _autocontrast(img: Image.Image) -> Image.Image:
    """ImageOps.autocontrast(img) (no cutoff), with the tables built in numpy: the same arithmetic, so the same
    pixels, without ImageOps' per-call Python work (docs/benchmarks.md, last section). Each channel is stretched
    so its darkest value becomes 0 and its lightest 255."""
    tables = []
    ix = np.arange(256, dtype=np.float64)
    for h in _histograms(img):
        nz = np.flatnonzero(h)
        lo, hi = (int(nz[0]), int(nz[-1])) if nz.size else (0, 0)
        if hi <= lo:
            tables.append(np.arange(256))
        else:
            scale = 255.0 / (hi - lo)
            tables.append(np.clip(np.trunc(ix * scale + -lo * scale), 0, 255))
    return _apply_channel_luts(img, np.stack(tables).astype(np.uint8))


def _equalize(img: Image.Image) -> Image.Image:
    """ImageOps.equalize(img) with the tables built in numpy (same integer arithmetic, same pixels)."""
    tables = []
    for h in _histograms(img):
        nz = h[h > 0]
        step = int(nz.sum() - nz[-1]) // 255 if nz.size > 1 else 0
        if not step:
            tables.append(np.arange(256))
        else:
            before = np.concatenate([[0], np.cumsum(h)[:-1]])  # pixels below each value
            tables.append(np.clip((step // 2 + before) // step, 0, 255))
    return _apply_channel_luts(img, np.stack(tables).astype(np.uint8))


@functools.lru_cache(maxsize=64)
def _posterize_table(bits: int) -> np.ndarray:
    """Keep the top `bits` bits. Pillow >= 12 refuses bits=0 (timm's magnitude-10 value), which older Pillow -
    and so timm's reference runs - turned into black; the table keeps that behaviour."""
    mask = ~(2 ** (8 - max(bits, 0)) - 1) & 0xFF
    return (np.arange(256) & mask).astype(np.uint8)


@functools.lru_cache(maxsize=64)
def _solarize_table(thresh: int) -> np.ndarray:
    """ImageOps.solarize: invert the values at or above `thresh`."""
    i = np.arange(256)
    return np.where(i < thresh, i, 255 - i).astype(np.uint8)


@functools.lru_cache(maxsize=64)
def _solarize_add_table(add: int, thresh: int = 128) -> np.ndarray:
    """timm's solarize_add: add `add` (saturating) to the values below `thresh`."""
    i = np.arange(256)
    return np.where(i < thresh, np.minimum(255, i + add), i).astype(np.uint8)


_OPS: dict[str, Callable[..., Image.Image]] = {
    "AutoContrast": lambda img, _a, _f, _r: _autocontrast(img),
    "Equalize": lambda img, _a, _f, _r: _equalize(img),
    "Invert": lambda img, _a, _f, _r: ImageChops.invert(img),
    "Rotate": lambda img, deg, f, r: img.rotate(deg, resample=r, fillcolor=f),
    "Posterize": lambda img, bits, _f, _r: img if bits >= 8 else _apply_lut(img, _posterize_table(bits)),
    "Solarize": lambda img, thresh, _f, _r: _apply_lut(img, _solarize_table(thresh)),
    "SolarizeAdd": lambda img, add, _f, _r: _apply_lut(img, _solarize_add_table(add)),
    "Color": lambda img, v, _f, _r: ImageEnhance.Color(img).enhance(v),
    "Contrast": lambda img, v, _f, _r: ImageEnhance.Contrast(img).enhance(v),
    "Brightness": lambda img, v, _f, _r: ImageEnhance.Brightness(img).enhance(v),
    "Sharpness": lambda img, v, _f, _r: ImageEnhance.Sharpness(img).enhance(v),
    "ShearX": lambda img, s, f, r: _affine(img, (1, s, 0, 0, 1, 0), f, r),
    "ShearY": lambda img, s, f, r: _affine(img, (1, 0, 0, s, 1, 0), f, r),
    "TranslateXRel": lambda img, pct, f, r: _affine(img, (1, 0, pct * img.size[0], 0, 1, 0), f, r),
    "TranslateYRel": lambda img, pct, f, r: _affine(img, (1, 0, 0, 0, 1, pct * img.size[1]), f, r),
}
for _name in ("Posterize", "Solarize", "Color", "Contrast", "Brightness", "Sharpness"):
    _OPS[_name + "Increasing"] = _OPS[_name]

RAND_TRANSFORMS = (
    "AutoContrast", "Equalize", "Invert", "Rotate", "Posterize", "Solarize", "SolarizeAdd", "Color", "Contrast",
    "Brightness", "Sharpness", "ShearX", "ShearY", "TranslateXRel", "TranslateYRel",
)  # fmt: skip
RAND_INCREASING_TRANSFORMS = (
    "AutoContrast", "Equalize", "Invert", "Rotate", "PosterizeIncreasing", "SolarizeIncreasing", "SolarizeAdd",
    "ColorIncreasing", "ContrastIncreasing", "BrightnessIncreasing", "SharpnessIncreasing", "ShearX", "ShearY",
    "TranslateXRel", "TranslateYRel",
)  # fmt: skip

# Ops whose argument gets a random sign (timm's `_randomly_negate`).
SIGNED_OPS = frozenset({
    "Rotate", "ShearX", "ShearY", "TranslateXRel", "TranslateYRel",
    "ColorIncreasing", "ContrastIncreasing", "BrightnessIncreasing", "SharpnessIncreasing",
})  # fmt: skip

_LEVEL_DENOM = 10.0  # magnitude 10 = the op's full range


def level_to_arg(
    name: str, magnitude: float, *, negate: bool = False, translate_pct: float = 0.45
) -> float | int | None:
    """timm's magnitude -> op argument map (`LEVEL_TO_ARG`), with the random sign made explicit (`negate`)."""
    level = magnitude / _LEVEL_DENOM
    sign = -1.0 if negate else 1.0
    if name in ("AutoContrast", "Equalize", "Invert"):
        return None
    if name == "Rotate":
        return sign * level * 30.0  # degrees in [-30, 30]
    if name in ("ShearX", "ShearY"):
        return sign * level * 0.3
    if name in ("TranslateXRel", "TranslateYRel"):
        return sign * level * translate_pct  # fraction of the image size
    if name == "Posterize":
        return int(level * 4)  # bits kept, 0..4 (severity falls with magnitude)
    if name == "PosterizeIncreasing":
        return 4 - int(level * 4)
    if name == "Solarize":
        return min(256, int(level * 256))  # threshold (severity falls with magnitude)
    if name == "SolarizeIncreasing":
        return 256 - min(256, int(level * 256))
    if name == "SolarizeAdd":
        return min(128, int(level * 110))
    if name in ("Color", "Contrast", "Brightness", "Sharpness"):
        return level * 1.8 + 0.1  # enhance factor in [0.1, 1.9]
    if name in ("ColorIncreasing", "ContrastIncreasing", "BrightnessIncreasing", "SharpnessIncreasing"):
        return max(0.1, 1.0 + sign * level * 0.9)  # 1.0 = unchanged; further from 1 as magnitude grows
    raise ConfigError(f"unknown RandAugment op {name!r}; known: {', '.join(sorted(_OPS))}")


def apply_op(
    img: Image.Image, name: str, arg: float | int | None, *, fill: Fill = 128,
    interpolation: str = "bicubic",
) -> Image.Image:
    """Apply one named op with an explicit argument.

    Args:
        img: an RGB or L PIL image.
        name: the op, one of timm's RandAugment op names (e.g. "Rotate", "PosterizeIncreasing").
        arg: its argument, as `level_to_arg` maps a magnitude to it (None for ops without one).
        fill: the colour geometric ops fill uncovered pixels with (a grey level or an RGB triple).
        interpolation: the resampling filter of geometric ops ("bicubic", "bilinear", "nearest", ...).
    """
    return _OPS[name](img, arg, _fill_for(img, fill), pil_resampling(interpolation))


def _fill_for(img: Image.Image, fill: Fill) -> Fill:
    """The fill colour in the image's mode: a grey level for L, a triple for RGB."""
    values = (fill,) if isinstance(fill, int) else tuple(int(v) for v in fill)
    if img.mode == "L":
        return round(sum(values) / len(values))
    return values * 3 if len(values) == 1 else values


# ---------------------------------------------------------------------------------------------- the policy
@dataclass(frozen=True)
class RandAugmentSpec:
    """What a timm-style string like "rand-m9-mstd0.5-inc1-n2" says."""

    num_ops: int = 2  # n
    magnitude: float = 10.0  # m (timm's default when absent)
    magnitude_std: float = 0.0  # mstd; inf (or > 100 in the string) = uniform in [0, magnitude]
    magnitude_max: float = _LEVEL_DENOM  # mmax
    prob: float = 0.5  # p: each chosen op fires with this probability
    increasing: bool = False  # inc


def parse_randaugment(config: str) -> RandAugmentSpec:
    """Parse timm's RandAugment string: "rand" then dash-separated m<int>, n<int>, mstd<float>, mmax<int>,
    p<float>, inc<0|1>, in any order. "rand-m9-mstd0.5-inc1" is DeiT's recipe (2 ops, magnitude 9 +- 0.5)."""
    parts = config.strip().split("-")
    if parts[0] != "rand":
        raise ConfigError(f"a RandAugment string starts with 'rand-', got {config!r} (e.g. 'rand-m9-mstd0.5-inc1')")
    fields: dict[str, float | int | bool] = {}
    for part in parts[1:]:
        m = re.fullmatch(r"(mstd|mmax|inc|m|n|p)(\d+(?:\.\d*)?|inf)", part)
        if m is None:
            raise ConfigError(
                f"bad section {part!r} in RandAugment string {config!r}: expected m<magnitude>, n<num ops>, "
                "mstd<std>, mmax<max>, p<prob> or inc<0|1>"
            )
        key, val = m.groups()
        v = float(val)
        if key == "mstd":
            fields["magnitude_std"] = math.inf if v > 100 else v
        elif key == "mmax":
            fields["magnitude_max"] = v
        elif key == "inc":
            fields["increasing"] = bool(int(v))
        elif key == "m":
            fields["magnitude"] = v
        elif key == "n":
            fields["num_ops"] = int(v)
        else:
            if not 0.0 <= v <= 1.0:
                raise ConfigError(f"RandAugment p must be in [0, 1], got {v} in {config!r}")
            fields["prob"] = v
    return RandAugmentSpec(**fields)


class RandAugment:
    """PIL image -> PIL image. See the module docstring; `from_string` builds one from a timm string.

    Args:
        num_ops: ops applied to each image (drawn with replacement).
        magnitude: the mean magnitude, 0..magnitude_max.
        magnitude_std: the spread of each draw's magnitude (inf: uniform in 0..magnitude).
        magnitude_max: the magnitude at which every op reaches its strongest argument (timm's 10).
        prob: the probability that a drawn op is applied.
        increasing: use the op variants whose severity grows with the magnitude (timm's "inc1").
        fill: the colour geometric ops fill uncovered pixels with.
        interpolation: the resampling filter of geometric ops.
        translate_pct: the largest translation, as a fraction of the image's side.
        generator: one torch / numpy / random generator for every draw (None: torch's global RNG).
    """

    def __init__(
        self,
        num_ops: int = 2,
        magnitude: float = 9.0,
        *,
        magnitude_std: float = 0.5,
        magnitude_max: float = _LEVEL_DENOM,
        prob: float = 0.5,
        increasing: bool = True,
        fill: Fill = (128, 128, 128),
        interpolation: str = "bicubic",
        translate_pct: float = 0.45,
        generator: GeneratorLike | Rng = None,
    ) -> None:
        if num_ops < 0:
            raise ConfigError(f"num_ops must be >= 0, got {num_ops}")
        self.spec = RandAugmentSpec(num_ops, magnitude, magnitude_std, magnitude_max, prob, increasing)
        self.ops = RAND_INCREASING_TRANSFORMS if increasing else RAND_TRANSFORMS
        self.fill = fill
        self.interpolation = interpolation
        self.resample = pil_resampling(interpolation)
        self.translate_pct = translate_pct
        self.rng = as_rng(generator)

    @classmethod
    def from_string(cls, config: str, **kwargs) -> RandAugment:
        """`RandAugment.from_string("rand-m9-mstd0.5-inc1", fill=..., interpolation=..., generator=...)`."""
        s = parse_randaugment(config)
        return cls(
            s.num_ops, s.magnitude, magnitude_std=s.magnitude_std, magnitude_max=s.magnitude_max, prob=s.prob,
            increasing=s.increasing, **kwargs,
        )

    def _magnitude(self) -> float:
        m, std = self.spec.magnitude, self.spec.magnitude_std
        if std == math.inf:
            m = self.rng.uniform(0.0, m)
        elif std > 0:
            m = self.rng.gauss(m, std)
        return max(0.0, min(m, self.spec.magnitude_max))

    def __call__(self, img: Image.Image) -> Image.Image:
        """`img` (RGB or L) with `num_ops` randomly drawn ops applied."""
        if img.mode not in ("RGB", "L"):
            raise ConfigError(f"RandAugment works on RGB or L images, got mode {img.mode!r}")
        fill = _fill_for(img, self.fill)
        for _ in range(self.spec.num_ops):
            name = self.ops[self.rng.randint(0, len(self.ops))]
            if self.spec.prob < 1.0 and self.rng.random() > self.spec.prob:
                continue
            magnitude = self._magnitude()
            negate = name in SIGNED_OPS and self.rng.random() > 0.5
            arg = level_to_arg(name, magnitude, negate=negate, translate_pct=self.translate_pct)
            img = _OPS[name](img, arg, fill, self.resample)
        return img

    def __repr__(self) -> str:
        s = self.spec
        return (
            f"RandAugment(n={s.num_ops}, m={s.magnitude}, mstd={s.magnitude_std}, p={s.prob}, "
            f"increasing={s.increasing})"
        )
