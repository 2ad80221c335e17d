"""CLIP inputs: images and text -> model tensors (Radford et al. 2021, https://arxiv.org/abs/2103.00020).

Images are preprocessed as CLIP's evaluation transform (OpenAI's `clip.load` preprocess, open_clip's
`image_transform(size, is_train=False)`): the shorter side is resized to `image_size` with PIL's bicubic filter
(the longer side to `int(image_size * longer / shorter)`, as torchvision's `Resize` truncates), a centred
`image_size` square is cropped (offsets `int(round(excess / 2))`, as torchvision's `CenterCrop` rounds), and
pixels are scaled to [0, 1] and normalized with the mean / std of CLIP's training images. Text goes through
`CLIPTokenizer` (77 tokens).

    processor = CLIPProcessor()
    batch = processor(images=["cat.jpg", pil_image], text=["a photo of a cat", "a photo of a dog"])
    batch.pixel_values          # [2, 3, 224, 224] float32
    batch.input_ids             # [2, 77] int64, with batch.attention_mask
    batch = batch.to("cuda")    # a BatchFeature: tensors move together

`pixel_values` equal open_clip's to float32 rounding, computed the same way (tests/processing/test_clip.py gives
the figures). They differ slightly from transformers' `CLIPImageProcessor`: its centre crop floors the offset
(`excess // 2`), one pixel off torchvision's rounding when the excess is odd and its half rounds up, and
transformers 5's default (torchvision-tensor) backend resizes with `antialias=True` interpolation instead of
PIL's filter.

Where vitkit differs from open_clip on purpose: the image becomes RGB before resizing, through
`vitkit.processing.images` (alpha composited onto white as transformers' `convert_to_rgb` does, 16-bit scaled,
EXIF orientation applied), where open_clip resizes the image in its own mode and calls `convert("RGB")` after
the crop - for an RGB or greyscale image the result is the same, for a palette image (resized with nearest
neighbours by PIL) or a transparent one it is not.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from PIL import Image

from ..config import config_from_dict, config_to_dict, replace_config
from ..errors import ConfigError, VitkitError
from .batch import BatchFeature
from .clip_bpe import CONTEXT_LENGTH, CLIPTokenizer
from .images import PIL_RESAMPLING, ImageInput, as_image_batch, load_rgb

#: The per-channel mean and std of CLIP's training images (OpenAI's `clip` package).
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


@dataclass(frozen=True)
class CLIPProcessorConfig:
    """How CLIP's images and texts become model inputs (defaults: OpenAI CLIP at 224 px)."""

    image_size: int = 224  # the shorter side is resized to this, then a centred square of this side is cropped
    mean: tuple[float, float, float] = CLIP_MEAN  # per-channel normalization of [0, 1] pixels
    std: tuple[float, float, float] = CLIP_STD
    interpolation: str = "bicubic"  # PIL filter name: bicubic, bilinear, nearest, lanczos, box, hamming
    context_length: int = CONTEXT_LENGTH  # text length in tokens, start and end tokens included

    def __post_init__(self) -> None:
        if self.image_size < 1:
            raise ConfigError(f"image_size must be >= 1, got {self.image_size}")
        if self.context_length < 2:
            raise ConfigError(f"context_length={self.context_length} leaves no room for the start and end tokens")
        if len(self.mean) != 3 or len(self.std) != 3 or any(s <= 0 for s in self.std):
            raise ConfigError(f"mean and std need 3 values each (std > 0), got mean={self.mean} std={self.std}")
        if self.interpolation not in PIL_RESAMPLING:
            raise ConfigError(f"interpolation={self.interpolation!r} is not one of {', '.join(PIL_RESAMPLING)}")

    def to_dict(self) -> dict[str, Any]:
        return config_to_dict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CLIPProcessorConfig:
        """Inverse of `to_dict`; unknown keys raise ConfigError naming the valid fields."""
        return config_from_dict(cls, data)

    @classmethod
    def from_hf_dict(cls, data: dict[str, Any], context_length: int = CONTEXT_LENGTH) -> CLIPProcessorConfig:
        """Read a transformers `preprocessor_config.json` (CLIPImageProcessor) into the equivalent config.

        Only CLIP's own pipeline fits: shorter side resized to the crop size, then the centre crop."""
        for key in ("do_resize", "do_center_crop", "do_rescale", "do_normalize"):
            if data.get(key, True) is not True:
                raise ConfigError(f"preprocessor config sets {key}={data[key]}, which CLIP's pipeline always does")
        if abs(float(data.get("rescale_factor", 1 / 255)) - 1 / 255) > 1e-9:
            raise ConfigError(f"preprocessor config rescale_factor={data['rescale_factor']} is not 1/255")
        size, crop = data.get("size", 224), data.get("crop_size", 224)
        size = size.get("shortest_edge") if isinstance(size, dict) else size
        if isinstance(crop, dict):
            crop = crop.get("height") if crop.get("height") == crop.get("width") else None
        if not isinstance(size, int) or size != crop:
            raise ConfigError(
                f"preprocessor config size={data.get('size')} and crop_size={data.get('crop_size')} "
                "are not one shortest-edge size and its square crop"
            )
        names = {int(v): k for k, v in PIL_RESAMPLING.items()}
        resample = data.get("resample", int(Image.Resampling.BICUBIC))
        if resample not in names:
            raise ConfigError(f"preprocessor config resample={resample} is not a PIL filter id {sorted(names)}")
        return cls(
            image_size=size,
            mean=tuple(data.get("image_mean", CLIP_MEAN)),
            std=tuple(data.get("image_std", CLIP_STD)),
            interpolation=names[resample],
            context_length=context_length,
        )


def resize_shorter_side(height: int, width: int, size: int) -> tuple[int, int]:
    """(height, width) with the shorter side at `size` and the longer at `int(size * longer / shorter)`, as
    torchvision's `Resize(size)` computes it (truncated, so the longer side never falls below `size`)."""
    if width <= height:
        return int(size * height / width), size
    return size, int(size * width / height)


def center_crop_box(height: int, width: int, size: int) -> tuple[int, int, int, int]:
    """PIL crop box (left, top, right, bottom) of the centred `size` square, offsets rounded as torchvision's
    `CenterCrop` (Python's round: half to even)."""
    top = round((height - size) / 2.0)
    left = round((width - size) / 2.0)
    return left, top, left + size, top + size


def preprocess_images(
    images: ImageInput | Sequence[ImageInput], config: CLIPProcessorConfig | None = None
) -> torch.Tensor:
    """Images (PIL, HW/HWC numpy, file paths; one or a list) -> `pixel_values` [B, 3, S, S] float32."""
    cfg = config or CLIPProcessorConfig()
    size = cfg.image_size
    # Normalizing 8-bit pixels is a table look-up. The table is computed in float32 with the same operations as
    # torchvision's ToTensor + Normalize ((v / 255 - mean) / std, each step rounded to float32), so the values
    # are open_clip's exactly, not merely within float rounding.
    levels = np.arange(256, dtype=np.float32)[None, :] / np.float32(255)  # [1, 256]
    mean = np.asarray(cfg.mean, dtype=np.float32)[:, None]  # [3, 1]
    std = np.asarray(cfg.std, dtype=np.float32)[:, None]
    lut = (levels - mean) / std  # [3, 256]
    batch = as_image_batch(images)
    pixel_values = np.empty((len(batch), 3, size, size), dtype=np.float32)  # [B, 3, S, S]
    for i, item in enumerate(batch):
        rgb = load_rgb(item)
        if rgb.width < 1 or rgb.height < 1:
            raise VitkitError(f"an image of {rgb.width}x{rgb.height} pixels has no content to resize")
        height, width = resize_shorter_side(rgb.height, rgb.width, size)
        if (height, width) != (rgb.height, rgb.width):
            rgb = rgb.resize((width, height), resample=PIL_RESAMPLING[cfg.interpolation])
        chw = np.asarray(rgb.crop(center_crop_box(height, width, size))).transpose(2, 0, 1)  # [3, S, S] uint8
        for c in range(3):
            pixel_values[i, c] = lut[c].take(chw[c])
    return torch.from_numpy(pixel_values)


class CLIPProcessor:
    """Images and texts -> CLIP model inputs, as a `BatchFeature`.

    Args:
        config: image and text settings (defaults: CLIP at 224 px, bicubic, CLIP's mean / std, 77 tokens).
        tokenizer: defaults to `CLIPTokenizer()` on the merges shipped with vitkit.
        **overrides: fields of `CLIPProcessorConfig` (an unknown name raises ConfigError listing the valid ones).
    """

    def __init__(
        self, config: CLIPProcessorConfig | None = None, tokenizer: CLIPTokenizer | None = None, **overrides: Any
    ):
        config = config or CLIPProcessorConfig()
        self.config = replace_config(config, **overrides) if overrides else config
        self.tokenizer = tokenizer or CLIPTokenizer(context_length=self.config.context_length)

    def __call__(
        self,
        images: ImageInput | Sequence[ImageInput] | None = None,
        text: str | Sequence[str] | None = None,
        *,
        truncate: bool = True,
    ) -> BatchFeature:
        """-> `pixel_values` [B, 3, S, S] float32 (when `images` are given) and `input_ids`, `attention_mask`
        [B, context_length] int64 (when `text` is given). Images and texts need not be paired: CLIP embeds each
        side on its own, so their batch sizes may differ. A text longer than the context is cut (keeping the
        end-of-text token), or raises ConfigError with `truncate=False`."""
        if images is None and text is None:
            raise VitkitError("CLIPProcessor needs images, text or both")
        out = BatchFeature()
        if text is not None:
            out.update(self.tokenizer(text, context_length=self.config.context_length, truncate=truncate))
        if images is not None:
            out["pixel_values"] = preprocess_images(images, self.config)
        return out

    def decode(self, ids: Sequence[int] | torch.Tensor, skip_special_tokens: bool = True) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=skip_special_tokens)

    def batch_decode(self, ids: Sequence[Sequence[int]] | torch.Tensor, skip_special_tokens: bool = True) -> list[str]:
        return self.tokenizer.batch_decode(ids, skip_special_tokens=skip_special_tokens)

    def to_dict(self) -> dict[str, Any]:
        """The config's fields plus the tokenizer's merges file (None: the merges shipped with vitkit)."""
        return {**self.config.to_dict(), "merges_file": self.tokenizer.merges_file}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CLIPProcessor:
        """Inverse of `to_dict`."""
        data = dict(data)
        merges_file: str | os.PathLike | None = data.pop("merges_file", None)
        config = CLIPProcessorConfig.from_dict(data)
        return cls(config, CLIPTokenizer(merges_file, context_length=config.context_length))

    def __repr__(self) -> str:
        return f"CLIPProcessor({self.config}, {self.tokenizer!r})"
