"""ViLT's image pipeline (Kim et al. 2021, https://arxiv.org/abs/2102.03334): images -> `pixel_values` and
`pixel_mask`, as transformers' PIL `ViltImageProcessor` builds them.

ViLT keeps each image's aspect ratio: the shorter side is resized to `shorter_edge` (384) unless that would make
the longer side exceed `longer_edge` (by default int(1333 / 800 * shorter_edge), 639 at 384: COCO's 800x1333
detection budget scaled down), in which case the longer side is capped instead; both sides are then rounded and
floored to a multiple of `size_divisor` (32, the patch size), so at 384 the longer side is at most 608.
Resampling is PIL bicubic, pixels are scaled to [0, 1] and normalized with mean = std = 0.5, and a batch is
zero-padded at the bottom/right to its largest image, with `pixel_mask` [B, H, W] marking the real pixels (1) for
the model's patch masking. Where HF has no sensible answer, vitkit picks one:

- any PIL mode becomes RGB through `vitkit.processing.images.to_mode`: transparency is composited onto white
  (as HF's `convert_to_rgb`), 16-bit images ("I;16", "I") are scaled to 8 bits instead of clipped to white;
- EXIF orientation is applied (`PIL.ImageOps.exif_transpose`), so phone photos are upright;
- images so elongated (beyond ~20:1) that a side would round to 0 keep at least `size_divisor` pixels.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import ConfigError, VitkitError
from ..utils.limits import check_resize
from .images import ImageInput, array_to_pil, as_image_batch, is_single_image, load_rgb, pil_resampling
from .vilt_config import ViLTProcessorConfig

# F.interpolate modes for the tensor path; PIL's box/hamming/lanczos filters have no torch counterpart.
TORCH_RESAMPLE = {"nearest": "nearest-exact", "bilinear": "bilinear", "bicubic": "bicubic"}

# ---- geometry and batching ---------------------------------------------------------------------------------------


def resize_output_size(height: int, width: int, config: ViLTProcessorConfig | None = None) -> tuple[int, int]:
    """(height, width) after ViLT's resize: shorter side -> shorter_edge, longer side capped, both floored to the
    divisor."""
    cfg = config or ViLTProcessorConfig()
    shorter, longer, divisor = cfg.shorter_edge, cfg.longer_side, cfg.size_divisor
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


def pad_batch(images: Sequence[torch.Tensor] | Sequence[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
    """[C, h_i, w_i] images (all tensors, or all numpy arrays) -> (zero-padded [B, C, H, W] at the bottom/right to
    the largest height and width, pixel_mask [B, H, W] long with 1 on real pixels): how every ViLT batch of mixed
    image sizes is built. Tensors stay on their device; numpy arrays come back as CPU tensors."""
    if not len(images):
        raise VitkitError("got an empty batch of images")
    height = max(int(x.shape[-2]) for x in images)
    width = max(int(x.shape[-1]) for x in images)
    first = images[0]
    shape = (len(images), first.shape[0], height, width)
    if isinstance(first, np.ndarray):  # numpy's zeroed buffers and strided copies are several times torch's on CPU
        out, mask = np.zeros(shape, dtype=first.dtype), np.zeros((len(images), height, width), dtype=np.int64)
    else:
        out = first.new_zeros(shape)  # [B, C, H, W]
        mask = torch.zeros((len(images), height, width), dtype=torch.long, device=first.device)  # [B, H, W]
    for i, x in enumerate(images):
        h, w = x.shape[-2:]
        out[i, :, :h, :w] = x
        mask[i, :h, :w] = 1
    return (torch.from_numpy(out), torch.from_numpy(mask)) if isinstance(out, np.ndarray) else (out, mask)


def normalize_pad(
    images: Sequence[torch.Tensor | np.ndarray], config: ViLTProcessorConfig | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Resized 8-bit RGB images (uint8 [3, h_i, w_i], on the CPU) -> (`pixel_values` [B, 3, H, W] float32,
    normalized with the config's mean / std and zero-padded after normalization; `pixel_mask` [B, H, W]).

    The last step of `preprocess_images`, and what the training datasets, which decode each image once, apply
    per batch: training and inference see the same numbers.
    """
    cfg = config or ViLTProcessorConfig()
    # Normalizing 8-bit pixels is a table look-up: (v / 255 - mean) / std for the 256 values of each channel,
    # computed in float64 (like HF's rescale) and far faster than float arithmetic on the whole image.
    levels = np.arange(256, dtype=np.float64)[None, :] / 255.0  # [1, 256]
    lut = ((levels - np.array(cfg.mean)[:, None]) / np.array(cfg.std)[:, None]).astype(np.float32)  # [3, 256]
    normalized = []
    for x in images:
        chw = np.ascontiguousarray(x)  # [3, h, w] uint8; a contiguous copy makes the look-ups faster
        if chw.dtype != np.uint8 or chw.ndim != 3 or chw.shape[0] != 3:
            raise VitkitError(f"expected uint8 [3, h, w] images, got {chw.dtype} {tuple(chw.shape)}")
        image = np.empty(chw.shape, dtype=np.float32)  # [3, h, w]
        for c in range(3):  # mode="clip" (a no-op for uint8 indices) lets take write into `image` unbuffered
            lut[c].take(chw[c], out=image[c], mode="clip")
        normalized.append(image)
    return pad_batch(normalized)


def preprocess_images(
    images: ImageInput | Sequence[ImageInput], config: ViLTProcessorConfig | None = None
) -> dict[str, torch.Tensor]:
    """Images (PIL, HWC numpy, paths; one or a list) -> `pixel_values` [B, 3, H, W] float32, `pixel_mask` [B, H, W].

    Matches transformers' PIL ViltImageProcessor (resize, rescale, normalize, pad) to float32 rounding.
    """
    cfg = config or ViLTProcessorConfig()
    batch = as_image_batch(images)
    resample = pil_resampling(cfg.resample, field="resample")
    resized = []
    for item in batch:
        rgb = load_rgb(item)
        if rgb.width < 1 or rgb.height < 1:
            raise VitkitError(f"an image of {rgb.width}x{rgb.height} pixels has no content to resize")
        height, width = resize_output_size(rgb.height, rgb.width, cfg)
        resized.append(np.asarray(rgb.resize((width, height), resample=resample)).transpose(2, 0, 1))  # [3, h, w]
    pixel_values, pixel_mask = normalize_pad(resized, cfg)
    return {"pixel_values": pixel_values, "pixel_mask": pixel_mask}


def preprocess_tensors(
    images: torch.Tensor | Sequence[torch.Tensor], config: ViLTProcessorConfig | None = None
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
    cfg = config or ViLTProcessorConfig()
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
            # Two separable passes, width first, each rounded to 8-bit levels: what PIL does, so the result stays
            # within a level of the PIL path; one 2-D pass would round once and drift further (docs/benchmarks.md).
            y = F.interpolate(x, size=(shape[1], width), mode=mode, align_corners=False, antialias=True)
            y = y.clamp(0.0, 255.0).round()  # [b, 3, H, w]
            y = F.interpolate(y, size=(height, width), mode=mode, align_corners=False, antialias=True)
        y = y.clamp(0.0, 255.0).round()  # [b, 3, h, w]; PIL's output is uint8: clip the bicubic overshoot
        y = (y / 255.0 - mean) / std  # [b, 3, h, w]
        for j, i in enumerate(idx):
            resized[i] = y[j]
    pixel_values, pixel_mask = pad_batch(resized)  # type: ignore[arg-type]
    return {"pixel_values": pixel_values, "pixel_mask": pixel_mask}


__all__ = [
    "ImageInput",
    "array_to_pil",
    "is_single_image",
    "load_rgb",
    "normalize_pad",
    "pad_batch",
    "preprocess_images",
    "preprocess_tensors",
    "resize_output_size",
]
