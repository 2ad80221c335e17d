"""Load any image file (or PIL image, in any mode) as 8-bit RGB or L, the two modes vitkit's models consume.

The one place images enter vitkit, so every mode PIL can produce is handled once, here:

| source mode                         | what happens                                                         |
| ----------------------------------- | -------------------------------------------------------------------- |
| RGB, L                              | unchanged (L -> RGB replicates the channel; RGB -> L is ITU-R 601 luma) |
| 1 (bilevel)                         | 0/255 grey levels                                                    |
| P (palette), with or without tRNS   | palette expanded; transparent entries composited like alpha below    |
| RGBA, LA, PA, RGBa, La              | alpha-composited onto `background` (white by default, see below)     |
| I;16, I;16B, I;16L, I;16N (16-bit)  | scaled by the bit depth: v * 255 / 65535 (never clipped to white)     |
| I (32-bit int), F (float)           | scaled by the bit depth the file declares (PNG 16, TIFF BitsPerSample),|
|                                     | else by the smallest of 8/16/32 bits that holds the values; F in [0,1] |
|                                     | is scaled by 255, any other range is min-max stretched                 |
| CMYK, YCbCr, LAB, HSV, RGBX         | PIL's conversion to RGB                                              |

EXIF orientation is applied first (`ImageOps.exif_transpose`), so phone photos come out upright. Animated
GIF / WebP / APNG files give their first frame.

Why composite on white: a transparent PNG (icons, logos, product cut-outs) is meant to be seen on a page,
and viewers and browsers show it on white; Hugging Face's image processors (`convert_to_rgb`, used by the
ViT / CLIP / ViLT processors) also composite onto white, so a model fine-tuned through vitkit sees
transparent images as those checkpoints were trained to. Plain `img.convert("RGB")` instead drops alpha and
reveals whatever colour the encoder left in fully transparent pixels (often black, sometimes noise).
Pass `background="black"` (or any RGB tuple) for data where black is the natural backdrop (e.g. sprites
rendered on black).

Every failure - missing file, not an image, truncated or corrupt data - raises `ImageLoadError` (a
`VitkitError`) whose message names the file.
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from struct import error as struct_error  # some PIL plugins leak it on short headers
from typing import BinaryIO

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from ..errors import ConfigError, VitkitError

# Interpolation names used in configs -> PIL filters (one table for every module that resizes).
PIL_RESAMPLING = {
    "nearest": Image.Resampling.NEAREST,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "lanczos": Image.Resampling.LANCZOS,
    "box": Image.Resampling.BOX,
    "hamming": Image.Resampling.HAMMING,
}


def pil_resampling(name: str, *, field: str = "interpolation") -> Image.Resampling:
    """A filter name from a config ('bicubic', ...) -> the PIL filter. An unknown name raises ConfigError that
    names the config `field` it came from and the valid names."""
    try:
        return PIL_RESAMPLING[name]
    except (KeyError, TypeError):  # TypeError: an unhashable value read from a config file
        raise ConfigError(f"unknown {field} {name!r}; choose one of {', '.join(PIL_RESAMPLING)}") from None

#: The file extensions scanned as images (compared lower-case).
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".gif", ".tif", ".tiff")

_BACKGROUNDS = {"white": (255, 255, 255), "black": (0, 0, 0)}
_ALPHA_MODES = ("RGBA", "LA", "PA", "RGBa", "La")
_INT16_MODES = ("I;16", "I;16B", "I;16L", "I;16N")
# PIL reports truncated / corrupt data with any of these, depending on the format plugin.
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, KeyError, IndexError, TypeError, struct_error)


class DatasetError(VitkitError):
    """A dataset that cannot be used as given: missing folders, mismatched classes, unreadable files."""


class ImageLoadError(DatasetError):
    """An image file that cannot be read: missing, not an image, truncated or corrupt. `path` names it."""

    def __init__(self, message: str, path: str | os.PathLike | None = None) -> None:
        super().__init__(message)
        self.path = path


Background = str | tuple[int, int, int]


def _background_rgb(background: Background) -> tuple[int, int, int]:
    if isinstance(background, str):
        if background not in _BACKGROUNDS:
            raise ConfigError(f"background must be 'white', 'black' or an (r, g, b) tuple, got {background!r}")
        return _BACKGROUNDS[background]
    rgb = tuple(int(v) for v in background)
    if len(rgb) != 3 or not all(0 <= v <= 255 for v in rgb):
        raise ConfigError(f"background must be three values in 0..255, got {background!r}")
    return rgb  # type: ignore[return-value]


def channels_to_mode(in_chans: int) -> str:
    """The PIL mode a model with `in_chans` input channels consumes: 1 -> "L", 3 -> "RGB"."""
    if in_chans == 1:
        return "L"
    if in_chans == 3:
        return "RGB"
    raise ConfigError(f"images can be decoded to 1 (grayscale) or 3 (RGB) channels, not in_chans={in_chans}")


def _declared_bit_depth(img: Image.Image) -> int | None:
    """The bit depth the file declares for a high-bit-depth grey image, when PIL exposes it."""
    if img.mode in _INT16_MODES:
        return 16
    if img.format == "PNG" and img.mode == "I":  # older Pillow opens 16-bit grey PNGs as "I"
        return 16
    tags = getattr(img, "tag_v2", None)  # TIFF
    if tags is not None:
        bits = tags.get(258)  # BitsPerSample
        if isinstance(bits, tuple | list) and bits:
            bits = bits[0]
        if isinstance(bits, int) and bits > 0:
            return bits
    return None


def _high_bit_depth_to_l(img: Image.Image, bit_depth: int | None) -> Image.Image:
    """16/32-bit integer or float grey -> 8-bit L, scaled by the bit depth (PIL's own convert clips at 255)."""
    arr = np.asarray(img)
    if img.mode == "F":
        with np.errstate(invalid="ignore"):  # signalling NaNs in the file warn on the cast; replaced just below
            arr = arr.astype(np.float64)
        if not np.isfinite(arr).all():
            arr = np.nan_to_num(arr, nan=0.0, posinf=0.0, neginf=0.0)
        lo, hi = float(arr.min(initial=0.0)), float(arr.max(initial=0.0))
        if bit_depth is not None:
            scaled = arr * (255.0 / (2**bit_depth - 1))
        elif lo >= 0.0 and hi <= 1.0:
            scaled = arr * 255.0
        elif hi > lo:  # an arbitrary float range (depth maps, HDR): stretch it
            scaled = (arr - lo) * (255.0 / (hi - lo))
        else:
            scaled = np.zeros_like(arr)
        return Image.fromarray(np.clip(np.rint(scaled), 0, 255).astype(np.uint8))  # 2-D uint8 -> "L"
    arr = arr.astype(np.int64)
    depth = bit_depth or _declared_bit_depth(img)
    if depth is None:
        if arr.size and arr.min() < 0:  # signed data with no declared depth: stretch min..max
            lo, hi = int(arr.min()), int(arr.max())
            scaled = (arr - lo) * 255 // max(1, hi - lo)
            return Image.fromarray(scaled.astype(np.uint8))
        top = int(arr.max(initial=0))
        depth = next(d for d in (8, 16, 32) if top < 2**d)
    full = 2**depth - 1
    scaled = (np.clip(arr, 0, full) * 255 + full // 2) // full  # round to nearest
    return Image.fromarray(scaled.astype(np.uint8))


def _has_transparency(img: Image.Image) -> bool:
    return img.mode in _ALPHA_MODES or (img.mode in ("P", "L", "RGB") and "transparency" in img.info)


def to_mode(
    img: Image.Image, mode: str = "RGB", *, background: Background = "white", bit_depth: int | None = None
) -> Image.Image:
    """Convert a PIL image in any mode to 8-bit `mode` ("RGB" or "L"); see the module docstring for the rules.

    `background` is what transparent pixels are composited onto; `bit_depth` overrides the bit depth assumed
    for 16/32-bit grey images (e.g. 12 for 12-bit sensor data stored in 16-bit PNGs, which would otherwise
    come out dark). Does not apply EXIF orientation: `load_image` does that, before calling this.
    """
    if mode not in ("RGB", "L"):
        raise ConfigError(f"mode must be 'RGB' or 'L', got {mode!r}")
    if img.mode == mode and "transparency" not in img.info:
        return img
    if img.mode in (*_INT16_MODES, "I", "F"):
        img = _high_bit_depth_to_l(img, bit_depth)
    elif img.mode == "1":
        img = img.convert("L")
    if _has_transparency(img):
        if img.mode == "La":  # premultiplied grey + alpha: PIL converts it to LA only
            img = img.convert("LA")
        rgba = img.convert("RGBA")  # applies a palette's / L's / RGB's tRNS transparency too
        canvas = Image.new("RGBA", rgba.size, (*_background_rgb(background), 255))
        img = Image.alpha_composite(canvas, rgba).convert("RGB")
    if img.mode == mode:
        return img
    if img.mode not in ("RGB", "L"):
        img = img.convert("RGB")  # CMYK, YCbCr, LAB, HSV, RGBX, P
    return img.convert(mode) if img.mode != mode else img


def load_image(
    source: str | os.PathLike | BinaryIO | bytes,
    mode: str = "RGB",
    *,
    background: Background = "white",
    bit_depth: int | None = None,
) -> Image.Image:
    """Read an image file (path, binary file object or bytes) into a fully decoded 8-bit RGB or L PIL image.

    EXIF orientation is applied, then `to_mode(img, mode, background=..., bit_depth=...)`. Any failure raises
    `ImageLoadError` naming the file; a truncated file is an error, never silently padded with grey.
    """
    if mode not in ("RGB", "L"):
        raise ConfigError(f"mode must be 'RGB' or 'L', got {mode!r}")
    _background_rgb(background)  # bad arguments are the caller's error, not the file's: check them first
    name = _describe(source)
    fp = io.BytesIO(source) if isinstance(source, bytes | bytearray) else source
    try:
        with Image.open(fp) as img:
            img.load()  # decode now, inside the try, so truncation is caught here and the file is closed
            img = _exif_upright(img)
            img = to_mode(img, mode, background=background, bit_depth=bit_depth)
            img.load()
            return img
    except FileNotFoundError as e:
        raise ImageLoadError(f"image file not found: {name}", path=name) from e
    except IsADirectoryError as e:
        raise ImageLoadError(f"expected an image file but found a directory: {name}", path=name) from e
    except UnidentifiedImageError as e:
        raise ImageLoadError(f"not an image file (or a format PIL cannot read): {name}", path=name) from e
    except Image.DecompressionBombError as e:
        raise ImageLoadError(f"image is implausibly large (decompression bomb guard): {name}: {e}", path=name) from e
    except _DECODE_ERRORS as e:
        raise ImageLoadError(f"cannot decode image {name}: {type(e).__name__}: {e}", path=name) from e


def _exif_upright(img: Image.Image) -> Image.Image:
    """Apply the EXIF orientation; a malformed EXIF block leaves the pixels as stored rather than failing."""
    try:
        return ImageOps.exif_transpose(img)
    except (SyntaxError, ValueError, TypeError, KeyError, OSError, struct_error):
        return img


def image_size(path: str | os.PathLike) -> tuple[int, int]:
    """(width, height) from the file header without decoding the pixels; errors as `load_image`."""
    try:
        with Image.open(path) as img:
            return img.size
    except FileNotFoundError as e:
        raise ImageLoadError(f"image file not found: {path}", path=path) from e
    except Image.DecompressionBombError as e:
        raise ImageLoadError(f"image is implausibly large (decompression bomb guard): {path}: {e}", path=path) from e
    except (UnidentifiedImageError, *_DECODE_ERRORS) as e:
        raise ImageLoadError(f"not a readable image file: {path}: {e}", path=path) from e


def rgb_to_luma(rgb: np.ndarray) -> np.ndarray:
    """uint8 [..., 3] RGB -> uint8 [...] luma, bit-exact with PIL's `convert("L")` (ITU-R 601-2 weights)."""
    r, g, b = (rgb[..., i].astype(np.uint32) for i in range(3))
    return ((r * 19595 + g * 38470 + b * 7471 + 0x8000) >> 16).astype(np.uint8)


def _describe(source: object) -> str:
    if isinstance(source, str | os.PathLike):
        return str(Path(source))
    if isinstance(source, bytes | bytearray):
        return f"<{len(source)} bytes>"
    return str(getattr(source, "name", None) or repr(source))


# ---- in-memory images and batches (the processors' inputs) --------------------------------------------------------

#: What a processor accepts as one image.
ImageInput = Image.Image | np.ndarray | str | os.PathLike


def load_rgb(image: ImageInput) -> Image.Image:
    """A PIL image, an HW/HWC numpy array or a file path -> upright 8-bit RGB PIL image.

    Files go through `load_image`, PIL images through `to_mode` (the one place modes are handled: alpha onto
    white, 16-bit scaled), after their EXIF orientation is applied.
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
        raise VitkitError("torch tensors take the on-device path (ViltProcessor.preprocess_tensors), not the PIL path")
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


def is_single_image(images: object) -> bool:
    """Whether `images` is one image (a PIL image, a path, an HW/HWC array) rather than a batch of them."""
    return isinstance(images, (Image.Image, str, os.PathLike)) or (
        isinstance(images, np.ndarray) and images.ndim in (2, 3)
    )


def as_image_batch(images: object) -> list:
    """One image (PIL, path, HW/HWC array) -> [it]; a sequence of images (or an NHWC array) -> a list.
    An empty batch, or something that is neither, raises VitkitError."""
    if is_single_image(images):
        return [images]
    if isinstance(images, np.ndarray) and images.ndim != 4:
        raise VitkitError(f"expected an HW or HWC image array (or NHWC for a batch), got shape {images.shape}")
    try:
        batch = list(images)  # type: ignore[call-overload]
    except TypeError:
        raise VitkitError(f"expected an image or a sequence of images, got {type(images).__name__}") from None
    if not batch:
        raise VitkitError("got an empty batch of images")
    return batch
