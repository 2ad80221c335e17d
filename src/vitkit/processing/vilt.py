"""ViLT inputs: images and text -> model tensors (Kim et al. 2021, https://arxiv.org/abs/2102.03334).

`ViLTProcessor` (also spelled `ViltProcessor`, as in transformers) reproduces Hugging Face transformers'
`ViltProcessor` (PIL `ViltImageProcessor` + BERT tokenizer): same `pixel_values` (to float32 rounding),
`pixel_mask`, `input_ids`, `attention_mask` and `token_type_ids` (tests/processing/test_vilt.py checks this).
The image pipeline is `vitkit.processing.vilt_images`, the settings `vitkit.processing.vilt_config`; both are
importable from here too. The settings carry `ViLTConfig`'s names (`shorter_edge`, `longer_edge`,
`max_text_len`); the names of earlier versions (`size`, `max_size`, `max_length`) are still read.

    processor = ViLTProcessor()
    batch = processor(images=[Image.open("cat.jpg")], text=["How many cats are there?"])
    # input_ids / attention_mask / token_type_ids [B, L]; pixel_values [B, 3, H, W]; pixel_mask [B, H, W]
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import torch

from ..config import replace_config
from ..errors import ConfigError, VitkitError
from ..utils.files import atomic_write_text
from ..utils.limits import parse_json
from .bert import BertTokenizer
from .vilt_config import RENAMED_SETTINGS, ViLTProcessorConfig, current_setting_names
from .vilt_images import (
    ImageInput,
    array_to_pil,
    is_single_image,
    load_rgb,
    normalize_pad,
    pad_batch,
    preprocess_images,
    preprocess_tensors,
    resize_output_size,
)

# Not "processor_config.json": transformers 5 writes its own (differently shaped) file under that name.
CONFIG_NAME = "vitkit_processor.json"


def _read_json(path: Path) -> dict[str, Any]:
    """The JSON object in `path`, {} when the file does not exist."""
    if not path.exists():
        return {}
    try:
        return parse_json(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise VitkitError(f"cannot read {path}: {e}") from e


# ---- images + text ---------------------------------------------------------------------------------------------


class ViLTProcessor:
    """Images and questions -> ViLT model inputs, like transformers' `ViltProcessor` (also importable under that
    spelling, `vitkit.processing.ViltProcessor`).

    Args:
        config: image and text settings (defaults: ViLT's 384 / 32 / mean = std = 0.5 / bicubic / 40 tokens).
        tokenizer: defaults to `BertTokenizer()` with the shipped bert-base-uncased vocabulary.
        **overrides: fields of `ViLTProcessorConfig` (an unknown name raises ConfigError listing the valid ones;
            the old names `size`, `max_size`, `max_length` still work, with a DeprecationWarning).
    """

    def __init__(
        self, config: ViLTProcessorConfig | None = None, tokenizer: BertTokenizer | None = None, **overrides: Any
    ):
        config = config or ViLTProcessorConfig()
        overrides = current_setting_names(overrides)
        self.config = replace_config(config, **overrides) if overrides else config
        self.tokenizer = tokenizer or BertTokenizer(max_length=self.config.max_text_len)

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
        [B, 3, H, W] float32, `pixel_mask` [B, H, W] long (when `images` are given).

        Args:
            images: an image (PIL image, HW/HWC numpy array or file path) or a list of them; an NHWC array is
                a batch.
            text: a text or a list of texts, as many as the images when both are given.
            max_length: tokens per text, [CLS]/[SEP] included (transformers' argument name; None: the config's
                `max_text_len`, 40); longer texts are truncated.
            padding: "longest" pads to the batch's longest text, "max_length" to `max_length`.
            return_tensors: "pt" (torch tensors), the only kind returned.
            return_word_ids: add the tokenizer's `word_ids` [B, L] (-1 on special tokens), for whole-word
                masking.
        """
        if return_tensors != "pt":
            raise ConfigError(f"return_tensors={return_tensors!r}: only 'pt' (torch tensors) is supported")
        if images is None and text is None:
            raise VitkitError("ViLTProcessor needs images, text or both")
        out: dict[str, torch.Tensor] = {}
        if text is not None:
            max_length = self.config.max_text_len if max_length is None else max_length
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
        """Token ids -> text, WordPiece pieces joined (special tokens dropped unless asked for)."""
        return self.tokenizer.decode(ids, skip_special_tokens=skip_special_tokens)

    # ---- persistence -------------------------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """Config fields plus the tokenizer's `lowercase` (the vocabulary itself is saved as vocab.txt)."""
        return {**self.config.to_dict(), "lowercase": self.tokenizer.lowercase}

    @classmethod
    def from_dict(cls, data: dict[str, Any], vocab_file: str | os.PathLike | None = None) -> ViLTProcessor:
        """Inverse of `to_dict` (old setting names read too); `vocab_file` None uses the shipped bert-base-uncased
        vocabulary."""
        data = dict(data)
        lowercase = bool(data.pop("lowercase", True))
        config = ViLTProcessorConfig.from_dict(data)
        return cls(config, BertTokenizer(vocab_file, lowercase=lowercase, max_length=config.max_text_len))

    def save_pretrained(self, directory: str | os.PathLike) -> None:
        """Write `vitkit_processor.json` and the tokenizer's `vocab.txt` into `directory`."""
        path = Path(directory)
        path.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path / CONFIG_NAME, json.dumps(self.to_dict(), indent=2) + "\n")
        self.tokenizer.save_vocabulary(path)

    @classmethod
    def from_pretrained(cls, directory: str | os.PathLike) -> ViLTProcessor:
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
        config = ViLTProcessorConfig.from_hf_dict(hf)
        if (path / "tokenizer_config.json").exists():
            tok = _read_json(path / "tokenizer_config.json")
            lowercase = bool(tok.get("do_lower_case", True))
            limit = tok.get("model_max_length")
            if isinstance(limit, int) and 3 <= limit < config.max_text_len:
                config = dataclasses.replace(config, max_text_len=limit)
        tokenizer = BertTokenizer(vocab, lowercase=lowercase, max_length=config.max_text_len)
        return cls(config, tokenizer)

    def __repr__(self) -> str:
        return f"ViLTProcessor({self.config}, {self.tokenizer!r})"


# transformers' spelling of the class names, which README examples and earlier versions use.
ViltProcessor = ViLTProcessor
ViltProcessorConfig = ViLTProcessorConfig


__all__ = [
    "CONFIG_NAME",
    "RENAMED_SETTINGS",
    "ImageInput",
    "ViLTProcessor",
    "ViLTProcessorConfig",
    "ViltProcessor",
    "ViltProcessorConfig",
    "array_to_pil",
    "current_setting_names",
    "is_single_image",
    "load_rgb",
    "normalize_pad",
    "pad_batch",
    "preprocess_images",
    "preprocess_tensors",
    "resize_output_size",
]
