"""ViLT inputs: images and text -> model tensors (Kim et al. 2021, https://arxiv.org/abs/2102.03334).

ViLT keeps each image's aspect ratio: the shorter side is resized to `size` (384) unless that would make the
longer side exceed `int(1333 / 800 * size)` (639 at 384: COCO's 800x1333 detection budget scaled down), in which
case the longer side is capped instead; both sides are then rounded and floored to a multiple of `size_divisor`
(32, the patch size), so at size 384 the longer side is at most 608. Resampling is PIL bicubic, pixels are
scaled to [0, 1] and normalized with mean = std = 0.5, and a batch is zero-padded at the bottom/right to its
largest image, with `pixel_mask` [B, H, W] marking the real pixels (1) for the model's patch masking.

`ViltProcessor` reproduces Hugging Face transformers' `ViltProcessor` (PIL `ViltImageProcessor` + BERT tokenizer):
same `pixel_values` (to float32 rounding), `pixel_mask`, `input_ids`, `attention_mask` and `token_type_ids`
(tests/test_processing.py checks this). Where HF has no sensible answer, vitkit picks one:

- any PIL mode becomes RGB through `vitkit.images.to_mode`: transparency is composited onto white (as HF's
  `convert_to_rgb`), 16-bit images ("I;16", "I") are scaled to 8 bits instead of clipped to white;
- EXIF orientation is applied (`PIL.ImageOps.exif_transpose`), so phone photos are upright;
- images so elongated (beyond ~20:1) that a side would round to 0 keep at least `size_divisor` pixels.

    processor = ViltProcessor()
    batch = processor(images=[Image.open("cat.jpg")], text=["How many cats are there?"])
    # input_ids / attention_mask / token_type_ids [B, L]; pixel_values [B, 3, H, W]; pixel_mask [B, H, W]
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps

from ..config import config_from_dict, config_to_dict, replace_config
from ..errors import ConfigError, VitkitError
from ..utils.files import atomic_write_text
from ..utils.limits import check_resize, parse_json
from .bert import BertTokenizer
from .images import PIL_RESAMPLING as PIL_RESAMPLE
from .images import load_image, to_mode

# COCO detection's 800 x 1333 budget; ViLT scales it to its shorter side: int(1333 / 800 * 384) = 639.
MAX_SHORTER_EDGE = 800
MAX_LONGER_EDGE = 1333

# F.interpolate modes for the tensor path; PIL's box/hamming/lanczos filters have no torch counterpart.
TORCH_RESAMPLE = {"nearest": "nearest-exact", "bilinear": "bilinear", "bicubic": "bicubic"}

ImageInput = Image.Image | np.ndarray | str | os.PathLike

# Not "processor_config.json": transformers 5 writes its own (differently shaped) file under that name.
CONFIG_NAME = "vitkit_processor.json"


@dataclass(frozen=True)
class ViltProcessorConfig:
    """Everything that turns an image and a question into ViLT inputs; saved alongside a model's weights."""

    size: int = 384  # target length of the shorter image side
    max_size: int | None = None  # cap on the longer side before flooring; None: int(1333 / 800 * size)
    size_divisor: int = 32  # both sides are floored to a multiple of this (the patch size)
    mean: tuple[float, float, float] = (0.5, 0.5, 0.5)  # per-channel normalization of [0, 1] pixels
    std: tuple[float, float, float] = (0.5, 0.5, 0.5)
    resample: str = "bicubic"  # PIL filter name: nearest, bilinear, bicubic, lanczos, box, hamming
    max_length: int = 40  # text length in tokens, [CLS]/[SEP] included (ViLT's position-embedding budget)

    def __post_init__(self) -> None:
        if self.size < 1 or self.size_divisor < 1 or self.max_length < 3:
            raise ConfigError(f"size, size_divisor must be >= 1 and max_length >= 3, got {self}")
        if self.max_size is not None and self.max_size < self.size:
            raise ConfigError(f"max_size={self.max_size} is smaller than size={self.size}")
        if len(self.mean) != 3 or len(self.std) != 3 or any(s <= 0 for s in self.std):
            raise ConfigError(f"mean and std need 3 values each (std > 0), got mean={self.mean} std={self.std}")
        if self.resample not in PIL_RESAMPLE:
            raise ConfigError(f"resample={self.resample!r} is not one of {', '.join(PIL_RESAMPLE)}")

    @property
    def longer_side(self) -> int:
        # Same float expression as ViLT/HF: (1333 / 800) * 384 = 639.84 -> 639.
        return self.max_size if self.max_size is not None else int(MAX_LONGER_EDGE / MAX_SHORTER_EDGE * self.size)

    def to_dict(self) -> dict[str, Any]:
        return config_to_dict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ViltProcessorConfig:
        """Inverse of `to_dict`; unknown keys raise ConfigError naming the valid fields."""
        return config_from_dict(cls, data)

    @classmethod
    def from_hf_dict(cls, data: dict[str, Any]) -> ViltProcessorConfig:
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
        names = {int(v): k for k, v in PIL_RESAMPLE.items()}
        resample = data.get("resample", int(Image.Resampling.BICUBIC))
        if resample not in names:
            raise ConfigError(f"preprocessor config resample={resample} is not a PIL filter id {sorted(names)}")
        normalize = data.get("do_normalize", True)
        return cls(
            size=int(size),
            size_divisor=int(data.get("size_divisor", 32)),
            mean=tuple(data.get("image_mean", (0.5, 0.5, 0.5))) if normalize else (0.0, 0.0, 0.0),
            std=tuple(data.get("image_std", (0.5, 0.5, 0.5))) if normalize else (1.0, 1.0, 1.0),
            resample=names[resample],
        )


# ---- image loading ----------------------------------------------------------------------------------------------


def load_rgb(image: ImageInput) -> Image.Image:
    """A PIL image, an HW/HWC numpy array or a file path -> upright 8-bit RGB PIL image.

    Files go through `vitkit.images.load_image`, PIL images through `vitkit.images.to_mode` (the one place
    modes are handled: alpha onto white, 16-bit scaled), after their EXIF orientation is applied.
    """
    if isinstance(image, (str, os.PathLike)):
        return load_image(image, "RGB")
    if isinstance(image, np.ndarray):
        return to_mode(array_to_pil(image), "RGB")
    if isinstance(image, Image.Image):
        # Orientation 1 (or none) is upright; only the other seven need a transposed copy.
        if image.getexif().get(0x0112, 1) != 1:
            image = ImageOps.exif_transpose(image)
        return to_mode(image, "RGB")
    if isinstance(image, torch.Tensor):
        raise VitkitError("torch tensors go through preprocess_tensors() (the on-device path), not the PIL path")
    raise VitkitError(f"expected a PIL image, a numpy array or a file path, got {type(image).__name__}")


def array_to_pil(array: np.ndarray) -> Image.Image:
    """HW or HWC (C = 1, 3 or 4) numpy array -> PIL image. uint8 as is, bool as 0/255; a 2-D uint16, other
    integer or float array becomes an "I;16" / "I" / "F" image that `to_mode` scales; a 3- or 4-channel uint16
    array is scaled by 255/65535 and a floating one read as [0, 1] (clipped), as transformers does."""
    a = array[..., 0] if array.ndim == 3 and array.shape[-1] == 1 else array
    if not (a.ndim == 2 or (a.ndim == 3 and a.shape[-1] in (3, 4))):
        raise VitkitError(f"expected an HW or HWC (C = 1, 3 or 4) image array, got shape {tuple(array.shape)}")
    if a.dtype == np.bool_:
        a = a.astype(np.uint8) * 255
    if a.ndim == 2 and a.dtype != np.uint8:
        if a.dtype == np.uint16:
            return Image.fromarray(np.ascontiguousarray(a))  # mode "I;16"
        if np.issubdtype(a.dtype, np.integer):
            return Image.fromarray(np.clip(a, -(2**31), 2**31 - 1).astype(np.int32))  # mode "I"
        if np.issubdtype(a.dtype, np.floating):
            return Image.fromarray(a.astype(np.float32))  # mode "F"
    elif a.dtype == np.uint16:
        a = np.rint(a / 257.0).astype(np.uint8)  # 65535 / 257 = 255
    elif np.issubdtype(a.dtype, np.floating):
        a = np.rint(np.clip(np.nan_to_num(a), 0.0, 1.0) * 255.0).astype(np.uint8)
    if a.dtype != np.uint8:
        raise VitkitError(f"unsupported image array dtype {array.dtype} for shape {tuple(array.shape)}")
    mode = "L" if a.ndim == 2 else ("RGB" if a.shape[-1] == 3 else "RGBA")
    return Image.fromarray(np.ascontiguousarray(a), mode=mode)


# ---- geometry and batching ---------------------------------------------------------------------------------------


def resize_output_size(height: int, width: int, config: ViltProcessorConfig | None = None) -> tuple[int, int]:
    """(height, width) after ViLT's resize: shorter side -> size, longer side capped, both floored to the divisor."""
    cfg = config or ViltProcessorConfig()
    shorter, longer, divisor = cfg.size, cfg.longer_side, cfg.size_divisor
    scale = shorter / min(height, width)
    if height < width:
        new_h, new_w = float(shorter), scale * width
    else:
        new_h, new_w = scale * height, float(shorter)
    if max(new_h, new_w) > longer:
        scale = longer / max(new_h, new_w)
        new_h, new_w = scale * new_h, scale * new_w
    new_h, new_w = int(new_h + 0.5), int(new_w + 0.5)
    # max(divisor, .): a >20:1 strip would otherwise floor to a 0-pixel side (HF errors there).
    out_h, out_w = max(divisor, new_h // divisor * divisor), max(divisor, new_w // divisor * divisor)
    check_resize((width, height), (out_w, out_h))  # a processor config of enormous size / max_size
    return out_h, out_w


def pad_batch(images: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """[C, h_i, w_i] tensors -> (zero-padded [B, C, H, W], pixel_mask [B, H, W] long with 1 on real pixels)."""
    if not images:
        raise VitkitError("got an empty batch of images")
    height = max(int(x.shape[-2]) for x in images)
    width = max(int(x.shape[-1]) for x in images)
    first = images[0]
    out = first.new_zeros((len(images), first.shape[0], height, width))  # [B, C, H, W]
    mask = torch.zeros((len(images), height, width), dtype=torch.long, device=first.device)  # [B, H, W]
    for i, x in enumerate(images):
        h, w = x.shape[-2:]
        out[i, :, :h, :w] = x
        mask[i, :h, :w] = 1
    return out, mask


def _is_single_image(images: Any) -> bool:
    return isinstance(images, (Image.Image, str, os.PathLike)) or (
        isinstance(images, np.ndarray) and images.ndim in (2, 3)
    )


def _as_batch(images: Any) -> list[Any]:
    """One image (PIL, path, HW/HWC array) -> [it]; a sequence of images (or an NHWC array) -> a list."""
    if _is_single_image(images):
        return [images]
    if isinstance(images, np.ndarray) and images.ndim != 4:
        raise VitkitError(f"expected an HW or HWC image array (or NHWC for a batch), got shape {images.shape}")
    try:
        batch = list(images)
    except TypeError:
        raise VitkitError(f"expected an image or a sequence of images, got {type(images).__name__}") from None
    if not batch:
        raise VitkitError("got an empty batch of images")
    return batch


def preprocess_images(
    images: ImageInput | Sequence[ImageInput], config: ViltProcessorConfig | None = None
) -> dict[str, torch.Tensor]:
    """Images (PIL, HWC numpy, paths; one or a list) -> `pixel_values` [B, 3, H, W] float32, `pixel_mask` [B, H, W].

    Matches transformers' PIL ViltImageProcessor (resize, rescale, normalize, pad) to float32 rounding.
    """
    cfg = config or ViltProcessorConfig()
    batch = _as_batch(images)
    resized = []
    for item in batch:
        rgb = load_rgb(item)
        if rgb.width < 1 or rgb.height < 1:
            raise VitkitError(f"an image of {rgb.width}x{rgb.height} pixels has no content to resize")
        height, width = resize_output_size(rgb.height, rgb.width, cfg)
        resized.append(np.asarray(rgb.resize((width, height), resample=PIL_RESAMPLE[cfg.resample])))  # [h, w, 3]
    # Normalizing 8-bit pixels is a table look-up: (v / 255 - mean) / std for the 256 values of each channel,
    # computed in float64 (like HF's rescale) and far faster than float arithmetic on the whole image.
    levels = np.arange(256, dtype=np.float64)[None, :] / 255.0  # [1, 256]
    lut = ((levels - np.array(cfg.mean)[:, None]) / np.array(cfg.std)[:, None]).astype(np.float32)  # [3, 256]
    height = max(a.shape[0] for a in resized)
    width = max(a.shape[1] for a in resized)
    pixel_values = np.zeros((len(resized), 3, height, width), dtype=np.float32)  # zero padding, bottom/right
    pixel_mask = np.zeros((len(resized), height, width), dtype=np.int64)
    for i, a in enumerate(resized):
        h, w = a.shape[:2]
        chw = np.ascontiguousarray(a.transpose(2, 0, 1))  # [3, h, w]
        for c in range(3):
            pixel_values[i, c, :h, :w] = lut[c].take(chw[c])
        pixel_mask[i, :h, :w] = 1
    return {"pixel_values": torch.from_numpy(pixel_values), "pixel_mask": torch.from_numpy(pixel_mask)}


def preprocess_tensors(
    images: torch.Tensor | Sequence[torch.Tensor], config: ViltProcessorConfig | None = None
) -> dict[str, torch.Tensor]:
    """The fast path for images already on a device: [B, C, H, W] or a list of [C, H, W] (C = 1 or 3) -> the same
    `pixel_values` / `pixel_mask` as `preprocess_images`, computed on the images' device.

    uint8 tensors are read as 0..255, floating tensors as [0, 1] (clipped, NaN read as 0). The resize is
    `F.interpolate(antialias=True)` (PyTorch's port of PIL's filters) run as PIL runs it: a horizontal then a
    vertical pass, each clamped and rounded to 8-bit levels. It matches the PIL path only approximately, since
    PIL filters in fixed point: on CPU a few pixels in a thousand differ by one 8-bit level, i.e. 2/255 = 0.0078
    after normalization (tests/test_processing.py bounds the max |diff| by one level and the mean by 1e-4). CUDA
    kernels sum in a different order; the same bound is expected there but is only tested on CPU.
    """
    cfg = config or ViltProcessorConfig()
    if cfg.resample not in TORCH_RESAMPLE:
        raise ConfigError(f"resample={cfg.resample!r} has no torch equivalent; use one of {', '.join(TORCH_RESAMPLE)}")
    if isinstance(images, torch.Tensor):
        if images.ndim == 3:
            images = images.unsqueeze(0)
        if images.ndim != 4:
            raise VitkitError(f"expected [B, C, H, W] or [C, H, W] images, got shape {tuple(images.shape)}")
        batch = list(images)
    else:
        batch = list(images)
    if not batch:
        raise VitkitError("got an empty batch of images")
    for x in batch:
        if not isinstance(x, torch.Tensor) or x.ndim != 3 or x.shape[0] not in (1, 3):
            raise VitkitError(f"expected [C, H, W] tensors with C = 1 or 3, got {getattr(x, 'shape', type(x))}")
        if x.shape[1] < 1 or x.shape[2] < 1:
            raise VitkitError(f"an image of {x.shape[2]}x{x.shape[1]} pixels has no content to resize")
    device = batch[0].device
    mean = torch.tensor(cfg.mean, dtype=torch.float32, device=device).view(1, 3, 1, 1)
    std = torch.tensor(cfg.std, dtype=torch.float32, device=device).view(1, 3, 1, 1)
    mode = TORCH_RESAMPLE[cfg.resample]
    # Same-sized images are resized together: one interpolate call per distinct input size.
    groups: dict[tuple, list[int]] = {}
    for i, x in enumerate(batch):
        groups.setdefault((tuple(x.shape), x.dtype), []).append(i)
    resized: list[torch.Tensor | None] = [None] * len(batch)
    for (shape, dtype), idx in groups.items():
        x = torch.stack([batch[i] for i in idx]).float()  # [b, C, H, W]
        if dtype.is_floating_point:
            # as the numpy path: NaN -> 0, clipped to [0, 1] (a NaN or inf would spread through the resize)
            x = torch.nan_to_num(x, nan=0.0, posinf=1.0, neginf=0.0).clamp_(0.0, 1.0)
            x = x * 255.0  # [0, 1] -> the 0..255 scale PIL works in; integer tensors already are
        x = x.expand(-1, 3, -1, -1)  # [b, 3, H, W]; grayscale -> RGB
        height, width = resize_output_size(shape[1], shape[2], cfg)
        if mode == "nearest-exact":
            y = F.interpolate(x, size=(height, width), mode=mode)
        else:
            # Two separable passes, width first, each rounded to 8-bit levels: what PIL does. One 2-D pass
            # instead would differ from PIL by a level on ~17% of pixels (up to 12 levels on sharp edges).
            y = F.interpolate(x, size=(shape[1], width), mode=mode, align_corners=False, antialias=True)
            y = y.clamp(0.0, 255.0).round()  # [b, 3, H, w]
            y = F.interpolate(y, size=(height, width), mode=mode, align_corners=False, antialias=True)
        y = y.clamp(0.0, 255.0).round()  # [b, 3, h, w]; PIL's output is uint8: clip the bicubic overshoot
        y = (y / 255.0 - mean) / std  # [b, 3, h, w]
        for j, i in enumerate(idx):
            resized[i] = y[j]
    pixel_values, pixel_mask = pad_batch(resized)  # type: ignore[arg-type]
    return {"pixel_values": pixel_values, "pixel_mask": pixel_mask}


def _read_json(path: Path) -> dict[str, Any]:
    """The JSON object in `path`, {} when the file does not exist."""
    if not path.exists():
        return {}
    try:
        return parse_json(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise VitkitError(f"cannot read {path}: {e}") from e


# ---- images + text ---------------------------------------------------------------------------------------------


class ViltProcessor:
    """Images and questions -> ViLT model inputs, like transformers' `ViltProcessor`.

    Args:
        config: image and text settings (defaults: ViLT's 384 / 32 / mean = std = 0.5 / bicubic / 40 tokens).
        tokenizer: defaults to `BertTokenizer()` with the shipped bert-base-uncased vocabulary.
        **overrides: fields of `ViltProcessorConfig` (an unknown name raises ConfigError listing the valid ones).
    """

    def __init__(
        self, config: ViltProcessorConfig | None = None, tokenizer: BertTokenizer | None = None, **overrides: Any
    ):
        config = config or ViltProcessorConfig()
        self.config = replace_config(config, **overrides) if overrides else config
        self.tokenizer = tokenizer or BertTokenizer(max_length=self.config.max_length)

    def __call__(
        self,
        images: ImageInput | Sequence[ImageInput] | None = None,
        text: str | Sequence[str] | None = None,
        *,
        max_length: int | None = None,
        padding: Literal["longest", "max_length"] = "longest",
        return_tensors: str = "pt",
        return_word_ids: bool = False,
    ) -> dict[str, torch.Tensor]:
        """-> `input_ids`, `attention_mask`, `token_type_ids` [B, L] long (when `text` is given) and `pixel_values`
        [B, 3, H, W] float32, `pixel_mask` [B, H, W] long (when `images` are given). Text is truncated to
        `max_length` tokens (default: the config's 40) and padded to the longest text ("max_length" pads to it).
        `return_word_ids` adds the tokenizer's `word_ids` [B, L] (-1 on special tokens), for whole-word masking."""
        if return_tensors != "pt":
            raise ConfigError(f"return_tensors={return_tensors!r}: only 'pt' (torch tensors) is supported")
        if images is None and text is None:
            raise VitkitError("ViltProcessor needs images, text or both")
        out: dict[str, torch.Tensor] = {}
        if text is not None:
            max_length = self.config.max_length if max_length is None else max_length
            out.update(
                self.tokenizer.encode(
                    text,
                    max_length=max_length,
                    padding=padding,
                    return_word_ids=return_word_ids,
                )
            )
        if images is not None:
            out.update(preprocess_images(images, self.config))
        if text is not None and images is not None and len(out["input_ids"]) != len(out["pixel_values"]):
            raise VitkitError(f"got {len(out['pixel_values'])} images but {len(out['input_ids'])} texts")
        return out

    def preprocess_tensors(self, images: torch.Tensor | Sequence[torch.Tensor]) -> dict[str, torch.Tensor]:
        """On-device image path (approximate to the PIL path); see `vitkit.processing.preprocess_tensors`."""
        return preprocess_tensors(images, self.config)

    def decode(self, ids: Sequence[int] | torch.Tensor, skip_special_tokens: bool = True) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=skip_special_tokens)

    # ---- persistence -------------------------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """Config fields plus the tokenizer's `lowercase` (the vocabulary itself is saved as vocab.txt)."""
        return {**self.config.to_dict(), "lowercase": self.tokenizer.lowercase}

    @classmethod
    def from_dict(cls, data: dict[str, Any], vocab_file: str | os.PathLike | None = None) -> ViltProcessor:
        """Inverse of `to_dict`; `vocab_file` None uses the shipped bert-base-uncased vocabulary."""
        data = dict(data)
        lowercase = bool(data.pop("lowercase", True))
        config = ViltProcessorConfig.from_dict(data)
        return cls(config, BertTokenizer(vocab_file, lowercase=lowercase, max_length=config.max_length))

    def save_pretrained(self, directory: str | os.PathLike) -> None:
        """Write `processor_config.json` and the tokenizer's `vocab.txt` into `directory`."""
        path = Path(directory)
        path.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path / CONFIG_NAME, json.dumps(self.to_dict(), indent=2) + "\n")
        self.tokenizer.save_vocabulary(path)

    @classmethod
    def from_pretrained(cls, directory: str | os.PathLike) -> ViltProcessor:
        """Read a directory written by `save_pretrained`, or a transformers ViLT model/processor directory
        (`processor_config.json` or `preprocessor_config.json`, `vocab.txt` or `tokenizer.json`,
        `tokenizer_config.json`); a missing vocabulary falls back to the shipped bert-base-uncased one."""
        path = Path(directory)
        if not path.is_dir():
            raise VitkitError(f"{path} is not a directory")
        vocab = next((path / n for n in ("vocab.txt", "tokenizer.json") if (path / n).exists()), None)
        if (path / CONFIG_NAME).exists():
            return cls.from_dict(_read_json(path / CONFIG_NAME), vocab)
        # A transformers directory: version 5 nests the image settings in processor_config.json.
        lowercase = True
        hf = _read_json(path / "processor_config.json").get("image_processor")
        if hf is None and (path / "preprocessor_config.json").exists():  # transformers 4 and hub checkpoints
            hf = _read_json(path / "preprocessor_config.json")
        if hf is None:
            raise VitkitError(f"{path} has no {CONFIG_NAME}, processor_config.json or preprocessor_config.json")
        config = ViltProcessorConfig.from_hf_dict(hf)
        if (path / "tokenizer_config.json").exists():
            tok = _read_json(path / "tokenizer_config.json")
            lowercase = bool(tok.get("do_lower_case", True))
            limit = tok.get("model_max_length")
            if isinstance(limit, int) and 3 <= limit < config.max_length:
                config = dataclasses.replace(config, max_length=limit)
        tokenizer = BertTokenizer(vocab, lowercase=lowercase, max_length=config.max_length)
        return cls(config, tokenizer)

    def __repr__(self) -> str:
        return f"ViltProcessor({self.config}, {self.tokenizer!r})"
