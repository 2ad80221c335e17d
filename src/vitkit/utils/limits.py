"""Every bound on what an input may make vitkit allocate, in one place.

A few bytes of a file (an image header, an IDX header, a pickle's array shape, an .npz member's header) or of a
string can ask for gigabytes. Each reader checks what it is asked for against the file's real size or against
one of the limits below *before* allocating, and refuses with an `InputTooLarge` error that names the limit and
the environment variable that raises it. The defaults sit far above every real dataset and checkpoint vitkit
knows of, so they only ever stop corrupt or hostile input.

| limit                | default        | environment variable            | bounds                                 |
| -------------------- | -------------- | ------------------------------- | -------------------------------------- |
| resize output pixels | 2^25 (33.6 M)  | `VITKIT_MAX_RESIZE_PIXELS`      | eval / ViLT resizes (a 100000x1 image) |
| decompressed bytes   | 2^32 (4 GiB)   | `VITKIT_MAX_DECOMPRESSED_BYTES` | a gzipped IDX file's content           |
| text characters      | 100,000        | `VITKIT_MAX_TEXT_CHARS`         | one text given to the tokenizer        |

Bounds with no option, because a well-formed file can never exceed them: a CIFAR pickle's or an .npz member's
declared arrays must fit in the bytes the file holds, a gzip stream expands at most `DEFLATE_MAX_RATIO` times,
and JSON nests at most as deep as Python's JSON reader follows (`parse_json`).
"""

from __future__ import annotations

import json
import math
import os
import sys
from dataclasses import dataclass
from typing import Any

from ..errors import ConfigError, InputTooLarge


@dataclass(frozen=True)
class Limit:
    """A named bound with a default, raised through an environment variable."""

    name: str
    default: int
    env: str

    def value(self) -> int:
        """The bound in force: the environment variable when set (a positive integer), else the default."""
        raw = os.environ.get(self.env)
        if raw is None or not raw.strip():
            return self.default
        try:
            value = int(raw.replace("_", ""))
        except ValueError:
            raise ConfigError(f"{self.env}={raw!r}: expected a positive integer ({self.name})") from None
        if value < 1:
            raise ConfigError(f"{self.env}={raw!r}: expected a positive integer ({self.name})")
        return value

    def describe(self) -> str:
        return f"{self.name} limit of {self.value():,} (set {self.env} to raise it)"


MAX_RESIZE_PIXELS = Limit("resize output pixels", 1 << 25, "VITKIT_MAX_RESIZE_PIXELS")
MAX_DECOMPRESSED_BYTES = Limit("decompressed bytes", 1 << 32, "VITKIT_MAX_DECOMPRESSED_BYTES")
MAX_TEXT_CHARS = Limit("text characters", 100_000, "VITKIT_MAX_TEXT_CHARS")

#: DEFLATE (gzip, zip) expands at most ~1032:1 (a 258-byte match coded in about 2 bits); a file declaring more
#: content than this times its compressed size cannot be genuine.
DEFLATE_MAX_RATIO = 1032


def check_resize(src_wh: tuple[int, int], out_wh: tuple[int, int], what: str = "an image") -> None:
    """Refuse a resize of `src_wh` (width, height) to `out_wh` whose output exceeds MAX_RESIZE_PIXELS: an image of
    extreme aspect ratio (100000 x 1) resized to a model's shorter side would otherwise take gigabytes."""
    w, h = out_wh
    if w * h > MAX_RESIZE_PIXELS.value():
        raise InputTooLarge(
            f"resizing {what} of {src_wh[0]}x{src_wh[1]} pixels for the model would make a {w:,}x{h:,} image "
            f"({w * h / 1e6:,.0f} M pixels), over the {MAX_RESIZE_PIXELS.describe()}; an image this elongated is "
            "most likely damaged, or crop it first")


def check_decompressed(declared: int, compressed: int, what: str) -> None:
    """Refuse content of `declared` bytes from `compressed` bytes of DEFLATE data when it could not be genuine
    (over DEFLATE_MAX_RATIO) or exceeds MAX_DECOMPRESSED_BYTES; called before decompressing anything."""
    if declared > DEFLATE_MAX_RATIO * compressed + 1024:
        raise InputTooLarge(
            f"{what} declares {declared:,} bytes of content, but {compressed:,} compressed bytes can hold at most "
            f"{DEFLATE_MAX_RATIO * compressed:,} (gzip expands at most {DEFLATE_MAX_RATIO}:1): truncated or forged")
    if declared > MAX_DECOMPRESSED_BYTES.value():
        raise InputTooLarge(f"{what} declares {declared:,} bytes of content, over the "
                            f"{MAX_DECOMPRESSED_BYTES.describe()}")


def check_text(text: str, what: str = "a text") -> None:
    """Refuse a text over MAX_TEXT_CHARS before it is tokenized (the tokenizer's work grows with the text, even
    when only the first max_length tokens are kept)."""
    if len(text) > MAX_TEXT_CHARS.value():
        raise InputTooLarge(f"{what} of {len(text):,} characters is over the {MAX_TEXT_CHARS.describe()}")


def check_npz(path: str | os.PathLike) -> None:
    """Check every array of an .npz archive (or a lone .npy) against the bytes its zip member (or file) really
    holds, before numpy reads it: numpy allocates the shape a 100-byte header declares first, and only then finds
    the data missing (a 218-byte file claiming 2^33 floats). Raises InputTooLarge for an array declaring more than
    it holds, ValueError (or zipfile.BadZipFile) for a malformed archive or header."""
    import zipfile

    if not zipfile.is_zipfile(path):
        with open(path, "rb") as f:
            _check_npy(f, os.fstat(f.fileno()).st_size, str(path))
        return
    with zipfile.ZipFile(path) as archive:
        for info in archive.infolist():
            if not info.filename.endswith(".npy"):
                continue
            what = f"{path}: array {info.filename[:-4]!r}"
            if info.compress_type == zipfile.ZIP_STORED:
                if info.file_size != info.compress_size:
                    raise ValueError(f"{what}: its zip entry claims {info.file_size:,} bytes but stores "
                                     f"{info.compress_size:,}")
            else:
                check_decompressed(info.file_size, info.compress_size, what)
            with archive.open(info) as f:
                _check_npy(f, info.file_size, what)


def _check_npy(f: Any, size: int, what: str) -> None:
    """The .npy header at the start of `f` declares no more data than the `size` bytes hold."""
    import numpy as np

    version = np.lib.format.read_magic(f)
    read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
    shape, _, dtype = read_header(f)
    if dtype.hasobject:
        return  # pickled objects: refused by np.load(allow_pickle=False), never allocated
    declared, held = math.prod(shape) * dtype.itemsize, max(0, size - f.tell())
    if declared > held:
        raise InputTooLarge(f"{what} declares shape {tuple(shape)} {dtype} ({declared:,} bytes), but holds "
                            f"{held:,}: truncated or forged")


class JSONTooDeep(ValueError):
    """JSON nested deeper than Python's JSON reader follows (a ValueError, as json.JSONDecodeError is)."""


def parse_json(text: str | bytes) -> Any:
    """`json.loads`, with nesting too deep for the reader (a 200,000-deep `[[[...`) raised as JSONTooDeep instead
    of a RecursionError. No file vitkit reads (VQA, captions, configs, tokenizers) nests more than a few levels;
    the bound is the interpreter's recursion limit, which is not worth raising for such input."""
    try:
        return json.loads(text)
    except RecursionError:
        raise JSONTooDeep("JSON nested deeper than Python's JSON reader follows (about "
                          f"{sys.getrecursionlimit()} levels); vitkit's files nest a few levels") from None


__all__ = [
    "DEFLATE_MAX_RATIO",
    "MAX_DECOMPRESSED_BYTES",
    "MAX_RESIZE_PIXELS",
    "MAX_TEXT_CHARS",
    "JSONTooDeep",
    "Limit",
    "check_decompressed",
    "check_npz",
    "check_resize",
    "check_text",
    "parse_json",
]
