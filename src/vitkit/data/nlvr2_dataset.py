"""NLVR2 as a torch Dataset for ViLT training and evaluation: a statement and its two images (each decoded once,
in memory when they fit), as read by `vitkit.data.nlvr2.load_nlvr2`."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import torch
from torch.utils.data import Dataset

from ..processing.vilt_config import ViLTProcessorConfig
from .vl import ImageStore, TokenizedTexts, describe_bad

log = logging.getLogger("vitkit")


class NLVR2Dataset(Dataset):
    """NLVR2 examples -> items {"images": (left, right) uint8, "ids", "label"}; both images decoded once."""

    def __init__(self, examples: Sequence[Any], config: ViLTProcessorConfig, tokenizer: Any, *,
                 skip_bad: bool = False) -> None:
        paths = sorted({p for ex in examples for p in (ex.left_path, ex.right_path)})
        row = {p: i for i, p in enumerate(paths)}
        self.store = ImageStore(paths, config, skip_bad=skip_bad)
        if self.store.bad:
            log.warning("nlvr2: %s", describe_bad(self.store.bad))
        keep = [ex for ex in examples
                if not (self.store.is_bad(row[ex.left_path]) or self.store.is_bad(row[ex.right_path]))]
        self.rows = [(row[ex.left_path], row[ex.right_path]) for ex in keep]
        self.labels = torch.tensor([int(bool(ex.label)) for ex in keep])
        self.texts = TokenizedTexts.build([ex.sentence for ex in keep], tokenizer, config.max_text_len)
        self.in_memory = self.store.in_memory

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> dict[str, Any]:
        left, right = self.rows[i]
        n = int(self.texts.lengths[i])
        return {"images": (self.store[left], self.store[right]), "ids": self.texts.ids[i, :n],
                "label": int(self.labels[i])}


__all__ = ["NLVR2Dataset"]
