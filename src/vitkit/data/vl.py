"""Vision-language training data: decoded images, tokenised text and the collate functions the ViLT tasks use.

`ImageStore` decodes each image once with ViLT's resize rule (shorter side -> `size`, longer capped, both floored
to the patch size) and keeps the 8-bit result in memory when the dataset is small enough (the generated scenes,
a few thousand photos); otherwise it decodes per item in DataLoader workers. Normalisation and padding happen in
the collate function (`vitkit.processing.vilt_images.normalize_pad`, the processor's own last step), so a batch of mixed
sizes becomes `pixel_values` + `pixel_mask` exactly as the processor builds them for inference.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from ..processing.bert import BertTokenizer
from ..processing.images import ImageLoadError, load_image, pil_resampling
from ..processing.vilt_config import ViLTProcessorConfig
from ..processing.vilt_images import normalize_pad, resize_output_size

log = logging.getLogger("vitkit")

IN_MEMORY_BYTES = 2 << 30  # decode-once budget: every image at its largest resized size must fit in this


class ImageStore:
    """Images by index -> uint8 [3, h, w] tensors at the model's input geometry (ViLT's resize rule).

    `in_memory` None decides by size: kept in memory when all images at the largest possible resized size fit
    in IN_MEMORY_BYTES. `skip_bad`: unreadable images become None (the datasets drop their samples) instead of
    stopping with the file named.
    """

    def __init__(self, paths: Sequence[Path], config: ViLTProcessorConfig, *, in_memory: bool | None = None,
                 skip_bad: bool = False) -> None:
        self.paths = [Path(p) for p in paths]
        self.config = config
        if in_memory is None:
            in_memory = len(self.paths) * 3 * config.shorter_edge * config.longer_side <= IN_MEMORY_BYTES
        self.in_memory = in_memory
        self.bad: list[Path] = []
        self._cache: list[torch.Tensor | None] | None = None
        if in_memory:
            self._cache = [self._decode(i, skip_bad) for i in range(len(self.paths))]
        elif skip_bad:  # lazily decoded: check the files open now, so bad ones are known up front
            for p in self.paths:
                try:
                    with Image.open(p) as im:
                        im.verify()
                except Exception:  # any failure to open marks the file bad
                    self.bad.append(p)
                    log.debug("skipping unreadable image %s", p)
        self._bad_set = set(self.bad)

    def _decode(self, i: int, skip_bad: bool) -> torch.Tensor | None:
        path = self.paths[i]
        try:
            img = load_image(path, "RGB")
        except ImageLoadError:
            if not skip_bad:
                raise
            self.bad.append(path)
            return None
        h, w = resize_output_size(img.height, img.width, self.config)
        if (h, w) != (img.height, img.width):
            img = img.resize((w, h), resample=pil_resampling(self.config.resample, field="resample"))
        return torch.from_numpy(np.asarray(img).transpose(2, 0, 1).copy())  # [3, h, w] uint8

    def is_bad(self, i: int) -> bool:
        """Whether image `i` could not be read (only ever True with skip_bad)."""
        if self._cache is not None:
            return self._cache[i] is None
        return self.paths[i] in self._bad_set

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> torch.Tensor:
        if self._cache is not None:
            x = self._cache[i]
            if x is None:
                raise ImageLoadError(f"unreadable image {self.paths[i]}", path=str(self.paths[i]))
            return x
        x = self._decode(i, skip_bad=False)
        assert x is not None
        return x


def pad_ids(rows: Sequence[torch.Tensor], pad_id: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Token id vectors of different lengths -> (input_ids [B, L] padded with `pad_id`, attention_mask [B, L])."""
    L = max(1, max(len(r) for r in rows))
    ids = torch.full((len(rows), L), pad_id, dtype=torch.long)
    mask = torch.zeros(len(rows), L, dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, : len(r)] = r
        mask[i, : len(r)] = 1
    return ids, mask


def group_by_image(image_rows: Sequence[int]) -> tuple[list[int], list[list[int]]]:
    """(distinct image rows in first-seen order, the indices of the texts about each): how one-way ViLT batches
    regroup texts (questions, captions) so that each image is encoded once for all of them."""
    groups: dict[int, list[int]] = {}
    for i, row in enumerate(image_rows):
        groups.setdefault(row, []).append(i)
    return list(groups), list(groups.values())


@dataclass
class TokenizedTexts:
    """Texts tokenised once: ids [N, L] padded to the longest, lengths [N], word_ids [N, L] (-1 on specials)."""

    ids: torch.Tensor
    lengths: torch.Tensor
    word_ids: torch.Tensor

    @classmethod
    def build(cls, texts: Sequence[str], tokenizer: BertTokenizer, max_length: int) -> TokenizedTexts:
        """Tokenise `texts` once, each cut to `max_length` tokens ([CLS]/[SEP] included)."""
        if not texts:
            z = torch.zeros(0, 1, dtype=torch.long)
            return cls(z, torch.zeros(0, dtype=torch.long), z)
        enc = tokenizer.encode(list(texts), max_length=max_length, return_word_ids=True)
        return cls(enc["input_ids"], enc["attention_mask"].sum(1), enc["word_ids"])

    def __len__(self) -> int:
        return len(self.lengths)



class CaptionPairs(torch.utils.data.Dataset):
    """Every (image, caption) pair of a caption dataset: items {"image" uint8 [3, h, w], "image_row" (the image's
    index in the store), "text_row", "ids", "word_ids"}. Images that could not be read (skip_bad) are dropped."""

    def __init__(self, store: ImageStore, texts: TokenizedTexts, pairs: Sequence[tuple[int, int]]) -> None:
        self.store, self.texts = store, texts
        self.pairs = [(i, t) for i, t in pairs if not store.is_bad(i)]
        self.in_memory = store.in_memory

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, k: int) -> dict[str, Any]:
        i, t = self.pairs[k]
        n = int(self.texts.lengths[t])
        return {"image": self.store[i], "image_row": i, "text_row": t, "ids": self.texts.ids[t, :n],
                "word_ids": self.texts.word_ids[t, :n]}


class CaptionGroups(torch.utils.data.Dataset):
    """CaptionPairs regrouped by image: item g is one image with all its captions, for models with one-way fusion
    (`image_attends_text=False`), which encode each image once for every text that reads it."""

    def __init__(self, pairs: CaptionPairs) -> None:
        self.pairs = pairs
        self.rows, self.members = group_by_image([i for i, _ in pairs.pairs])
        self.in_memory = pairs.in_memory
        self.num_texts = len(pairs)

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, g: int) -> dict[str, Any]:
        texts = [self.pairs[k] for k in self.members[g]]
        image = texts[0]["image"]
        return {"image": image, "texts": [{k: v for k, v in t.items() if k != "image"} for t in texts]}


def collate_pairs(items: list[dict[str, Any]], config: ViLTProcessorConfig) -> dict[str, Any]:
    """(image, caption) items -> a batch; CaptionGroups items -> one copy of each image, every caption pointing to
    its image by `image_index`. Images are normalized and padded as `config`'s processor does."""
    pixels, pixel_mask = normalize_pad([it["image"] for it in items], config)
    image_index = None
    if items and "texts" in items[0]:
        image_index = torch.tensor([g for g, it in enumerate(items) for _ in it["texts"]])
        items = [t for it in items for t in it["texts"]]
    ids, text_mask = pad_ids([it["ids"] for it in items])
    word_ids, _ = pad_ids([it["word_ids"] for it in items], pad_id=-1)
    batch = {"pixel_values": pixels, "pixel_mask": pixel_mask, "input_ids": ids, "attention_mask": text_mask,
             "word_ids": word_ids, "image_rows": torch.tensor([it["image_row"] for it in items]),
             "text_rows": torch.tensor([it["text_row"] for it in items])}
    if image_index is not None:
        batch["image_index"] = image_index
    return batch


def load_caption_pairs(images: Sequence[Any], config: ViLTProcessorConfig, tokenizer: BertTokenizer, *,
                       skip_bad: bool = False) -> CaptionPairs:
    """`CaptionImage`s (image_path, captions) -> CaptionPairs over every caption of every image."""
    store = ImageStore([im.image_path for im in images], config, skip_bad=skip_bad)
    if store.bad:
        log.warning("%s", describe_bad(store.bad))
    captions, pairs = [], []
    for i, im in enumerate(images):
        for c in im.captions:
            pairs.append((i, len(captions)))
            captions.append(c)
    return CaptionPairs(store, TokenizedTexts.build(captions, tokenizer, config.max_text_len), pairs)


def whole_word_mask(
    input_ids: torch.Tensor, word_ids: torch.Tensor, attention_mask: torch.Tensor, *, vocab_size: int,
    mask_token_id: int, special_ids: Sequence[int], prob: float = 0.15, generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """BERT-style masking by whole words (ViLT's whole-word masking): each word of each text is picked with
    probability `prob`; every word piece of a picked word is a target and is replaced by [MASK] 80% of the time,
    a random token 10%, itself 10%. Returns (masked ids, labels with -100 where nothing is predicted).
    A text in which no word was drawn gets one word picked at random, so every text contributes a target.

    Args:
        input_ids: token ids [B, L].
        word_ids: the source word of each token [B, L], -1 on special tokens (the tokenizer's `word_ids`).
        attention_mask: 1 on real tokens [B, L].
        vocab_size: random replacements are drawn from 0..vocab_size-1.
        mask_token_id: the id of [MASK].
        special_ids: ids never picked ([CLS], [SEP], [PAD], ...).
        prob: the probability that a word is picked.
        generator: the random source (None: torch's global RNG).
    """
    B, L = input_ids.shape
    real = (attention_mask > 0) & (word_ids >= 0)
    for t in special_ids:
        real &= input_ids != t
    # one draw per (text, word): word ids are < L, so a [B, L] table covers every word
    draw = torch.rand(B, L, generator=generator) < prob
    wid = word_ids.clamp_min(0)
    picked = draw.gather(1, wid) & real  # [B, L] token picked when its word was
    none = ~picked.any(1) & real.any(1)
    if none.any():  # one random word for texts that got none
        keys = torch.rand(B, L, generator=generator).masked_fill(~real, -1.0)
        choice = wid.gather(1, keys.argmax(1, keepdim=True))  # [B, 1] a word id present in the text
        picked |= none[:, None] & real & (wid == choice)
    labels = input_ids.masked_fill(~picked, -100)
    u = torch.rand(B, L, generator=generator)
    ids = input_ids.clone()
    ids[picked & (u < 0.8)] = mask_token_id
    rand_pos = picked & (u >= 0.8) & (u < 0.9)
    ids[rand_pos] = torch.randint(vocab_size, (int(rand_pos.sum()),), generator=generator)
    return ids, labels


def describe_bad(bad: Sequence[Path], limit: int = 5) -> str:
    """One log line naming the first `limit` unreadable images and how many there were."""
    shown = ", ".join(str(p) for p in bad[:limit])
    more = f" and {len(bad) - limit} more" if len(bad) > limit else ""
    return f"{len(bad)} unreadable image(s) skipped: {shown}{more}"


__all__ = [
    "CaptionGroups",
    "CaptionPairs",
    "ImageStore",
    "TokenizedTexts",
    "collate_pairs",
    "describe_bad",
    "load_caption_pairs",
    "pad_ids",
    "whole_word_mask",
]
