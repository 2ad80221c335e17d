"""The ViLT processor's settings (`ViLTProcessorConfig`): image geometry, normalization, resampling and text
length, named as on `ViLTConfig`; saved with a model as `vitkit_processor.json`."""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from PIL import Image

from ..checkpoint.converters.hf import HF_RESAMPLE_NAMES
from ..config import config_from_dict, config_to_dict
from ..errors import ConfigError
from .images import pil_resampling

# COCO detection's 800 x 1333 budget; ViLT scales it to its shorter side: int(1333 / 800 * 384) = 639.
MAX_SHORTER_EDGE = 800
MAX_LONGER_EDGE = 1333


# The names earlier versions gave three of the processor's settings -> the names ViLTConfig gives them, which the
# processor uses too. The old names keep working: as keyword arguments and attributes (with a DeprecationWarning)
# and as keys of a saved vitkit_processor.json (read silently: models saved by earlier versions must load).
RENAMED_SETTINGS = {"size": "shorter_edge", "max_size": "longer_edge", "max_length": "max_text_len"}


def current_setting_names(settings: Mapping[str, Any], *, warn: bool = True) -> dict[str, Any]:
    """`settings` with each old name in RENAMED_SETTINGS replaced by its current one (a DeprecationWarning per
    old name when `warn`). Giving both names of one setting, with different values, raises ConfigError."""
    out = dict(settings)
    for old, new in RENAMED_SETTINGS.items():
        if old not in out:
            continue
        value = out.pop(old)
        if new in out and out[new] != value:
            raise ConfigError(f"{old}={value!r} and {new}={out[new]!r} name one setting; give only {new}")
        if warn:
            warnings.warn(f"the ViLT processor setting {old!r} is now {new!r}, as on ViLTConfig",
                          DeprecationWarning, stacklevel=3)
        out[new] = value
    return out


@dataclass(frozen=True, init=False)
class ViLTProcessorConfig:
    """Everything that turns an image and a question into ViLT inputs; saved alongside a model's weights.

    The settings are named as on `ViLTConfig`, which holds the same preprocessing for a model.

    Args:
        shorter_edge: target length of the shorter image side (384).
        longer_edge: cap on the longer side before flooring; None: int(1333 / 800 * shorter_edge), 639 at 384.
        size_divisor: both sides are floored to a multiple of this (the patch size, 32).
        mean: per-channel normalization of [0, 1] pixels (three values).
        std: per-channel divisor after subtracting the mean (three values > 0).
        resample: PIL filter name: nearest, bilinear, bicubic, lanczos, box or hamming.
        max_text_len: text length in tokens, [CLS]/[SEP] included (ViLT's position-embedding budget, 40).
        size, max_size, max_length: deprecated names of shorter_edge, longer_edge and max_text_len.
    """

    shorter_edge: int
    longer_edge: int | None
    size_divisor: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    resample: str
    max_text_len: int

    def __init__(
        self,
        *,
        shorter_edge: int = 384,
        longer_edge: int | None = None,
        size_divisor: int = 32,
        mean: Sequence[float] = (0.5, 0.5, 0.5),
        std: Sequence[float] = (0.5, 0.5, 0.5),
        resample: str = "bicubic",
        max_text_len: int = 40,
        size: int | None = None,
        max_size: int | None = None,
        max_length: int | None = None,
    ) -> None:
        settings = {"shorter_edge": shorter_edge, "longer_edge": longer_edge, "max_text_len": max_text_len}
        old = {"size": size, "max_size": max_size, "max_length": max_length}
        if any(v is not None for v in old.values()):
            # a new name left at its default does not compete with the old name's value
            defaults = ViLTProcessorConfig.__init__.__kwdefaults__
            explicit = {k: v for k, v in settings.items() if v != defaults[k]}
            settings |= current_setting_names({**explicit, **{k: v for k, v in old.items() if v is not None}})
        for name, value in settings.items():
            object.__setattr__(self, name, value)
        object.__setattr__(self, "size_divisor", size_divisor)
        object.__setattr__(self, "mean", tuple(mean))
        object.__setattr__(self, "std", tuple(std))
        object.__setattr__(self, "resample", resample)
        self._check()

    def _check(self) -> None:
        if self.shorter_edge < 1 or self.size_divisor < 1 or self.max_text_len < 3:
            raise ConfigError(f"shorter_edge, size_divisor must be >= 1 and max_text_len >= 3, got {self}")
        if self.longer_edge is not None and self.longer_edge < self.shorter_edge:
            raise ConfigError(f"longer_edge={self.longer_edge} is smaller than shorter_edge={self.shorter_edge}")
        if len(self.mean) != 3 or len(self.std) != 3 or any(s <= 0 for s in self.std):
            raise ConfigError(f"mean and std need 3 values each (std > 0), got mean={self.mean} std={self.std}")
        pil_resampling(self.resample, field="resample")  # an unknown filter name raises here

    @property
    def longer_side(self) -> int:
        """The cap on the longer side in use: `longer_edge`, or ViLT's int(1333 / 800 * shorter_edge)."""
        # Same float expression as ViLT/HF: (1333 / 800) * 384 = 639.84 -> 639.
        if self.longer_edge is not None:
            return self.longer_edge
        return int(MAX_LONGER_EDGE / MAX_SHORTER_EDGE * self.shorter_edge)

    @property
    def size(self) -> int:
        """Deprecated name of `shorter_edge`."""
        return self._renamed("size")

    @property
    def max_size(self) -> int | None:
        """Deprecated name of `longer_edge`."""
        return self._renamed("max_size")

    @property
    def max_length(self) -> int:
        """Deprecated name of `max_text_len`."""
        return self._renamed("max_length")

    def _renamed(self, old: str) -> Any:
        new = RENAMED_SETTINGS[old]
        warnings.warn(f"the ViLT processor setting {old!r} is now {new!r}, as on ViLTConfig", DeprecationWarning,
                      stacklevel=3)
        return getattr(self, new)

    def to_dict(self) -> dict[str, Any]:
        """The settings as plain JSON types, under their current names."""
        return config_to_dict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ViLTProcessorConfig:
        """Inverse of `to_dict`; unknown keys raise ConfigError naming the valid fields. A dict saved by an earlier
        version, with the old setting names (`size`, `max_size`, `max_length`), reads the same."""
        return config_from_dict(cls, current_setting_names(data, warn=False))

    @classmethod
    def from_hf_dict(cls, data: dict[str, Any]) -> ViLTProcessorConfig:
        """Read a transformers `preprocessor_config.json` (ViltImageProcessor) into the equivalent config."""
        for key, ok in (("do_resize", True), ("do_rescale", True), ("do_pad", True)):
            if data.get(key, ok) != ok:
                raise ConfigError(f"preprocessor config sets {key}={data[key]}, which vitkit's ViLT pipeline lacks")
        if abs(float(data.get("rescale_factor", 1 / 255)) - 1 / 255) > 1e-9:
            raise ConfigError(f"preprocessor config rescale_factor={data['rescale_factor']} is not 1/255")
        size = data.get("size", 384)
        if isinstance(size, dict):
            if "shortest_edge" not in size:
                raise ConfigError(f"preprocessor config size={size} has no 'shortest_edge'")
            size = size["shortest_edge"]
        resample = data.get("resample", int(Image.Resampling.BICUBIC))
        if not isinstance(resample, int) or resample not in HF_RESAMPLE_NAMES:
            raise ConfigError(f"preprocessor config resample={resample} is not a PIL filter id "
                              f"{sorted(HF_RESAMPLE_NAMES)}")
        normalize = data.get("do_normalize", True)
        return cls(
            shorter_edge=int(size),
            size_divisor=int(data.get("size_divisor", 32)),
            mean=tuple(data.get("image_mean", (0.5, 0.5, 0.5))) if normalize else (0.0, 0.0, 0.0),
            std=tuple(data.get("image_std", (0.5, 0.5, 0.5))) if normalize else (1.0, 1.0, 1.0),
            resample=HF_RESAMPLE_NAMES[resample],
        )


__all__ = ["RENAMED_SETTINGS", "ViLTProcessorConfig", "current_setting_names"]
