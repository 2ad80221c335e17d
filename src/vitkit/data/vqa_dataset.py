"""VQA as a torch Dataset for ViLT training and evaluation: each question with its image (decoded once, in
memory when it fits), token ids, soft targets and a per-question accuracy table; regrouped by image for one-way
fusion (`ImageGroups`); horizontal flips that mirror their questions (`TextMirror`)."""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from ..processing.vilt_config import ViLTProcessorConfig
from ..utils.random import Rng
from .randaugment import RandAugment
from .vl import ImageStore, TokenizedTexts, describe_bad, group_by_image
from .vqa import load_vqa_split, soft_targets
from .vqa_accuracy import ANSWER_TYPES, sparse_accuracy_table

log = logging.getLogger("vitkit")

MIRROR_WORDS = (("left", "right"),)  # the words a horizontal flip turns into each other


class TextMirror:
    """What a horizontal flip does to a question: the mirrored image of "what color is the leftmost object?" is
    asked "... the rightmost object?", and an answer "left" becomes "right".

    Token ids: the word pieces of `MIRROR_WORDS` swap (WordPiece starts "leftmost", "left-hand" with the piece
    "left", so whole words and their compounds swap alike). Answers: each vocabulary answer maps to the answer
    with those words swapped; `answer_map[i]` is -1 when that answer is not in the vocabulary, and a question
    with such an answer is not mirrored (`can_mirror`)."""

    def __init__(self, tokenizer: Any, answers: Sequence[str]) -> None:
        vocab = tokenizer.get_vocab()
        self.token_map = torch.arange(len(vocab))
        for a, b in MIRROR_WORDS:
            if a in vocab and b in vocab:
                self.token_map[vocab[a]], self.token_map[vocab[b]] = vocab[b], vocab[a]
        swap = {a: b for pair in MIRROR_WORDS for a, b in (pair, pair[::-1])}
        pattern = re.compile(r"\b(" + "|".join(map(re.escape, swap)) + r")")
        index = {a: i for i, a in enumerate(answers)}
        self.answer_map = torch.tensor(
            [index.get(pattern.sub(lambda m: swap[m.group(1)], a), -1) for a in answers], dtype=torch.long)

    def ids(self, ids: torch.Tensor) -> torch.Tensor:
        """Token ids of a question about the mirrored image (side words swapped)."""
        return self.token_map[ids]

    def can_mirror(self, answer_indices: torch.Tensor) -> bool:
        """Whether every one of these vocabulary answers has a mirrored counterpart in the vocabulary."""
        return bool((self.answer_map[answer_indices] >= 0).all())

    def answers(self, indices: torch.Tensor) -> torch.Tensor:
        """Vocabulary indices of the mirrored answers (-1 where an answer has none)."""
        return self.answer_map[indices]


class VQADataset(Dataset):
    """Questions about images -> dict items (image uint8, token ids, soft targets, accuracy table, answer type).

    Each question's accuracy table lists the official accuracy of every vocabulary answer an annotator gave
    (any other prediction scores 0), so evaluating an argmax is a lookup.

    Args:
        questions: the `VQAQuestion`s.
        store: their images, decoded at the model's geometry.
        image_rows: the index in `store` of each question's image.
        texts: the questions tokenised, one row per question.
        answers: the answer vocabulary (the head's labels).
        randaugment: applied to each image as it is drawn (None: no augmentation).
        hflip: the probability of a horizontal flip, the question and its answers mirrored with it; an image
            whose questions cannot all be mirrored is never flipped.
        mirror: what a flip does to questions and answers (required with hflip).
        rng: the random source of flips (None: a fresh `Rng`).
    """

    in_memory = True  # decoded images and tokenised text live in memory; workers would only copy them

    def __init__(self, questions: Sequence[Any], store: ImageStore, image_rows: Sequence[int],
                 texts: TokenizedTexts, answers: Sequence[str], *, randaugment: RandAugment | None = None,
                 hflip: float = 0.0, mirror: TextMirror | None = None, rng: Rng | None = None) -> None:
        index = {a: i for i, a in enumerate(answers)}
        keep = [i for i, r in enumerate(image_rows) if not store.is_bad(r)]
        kept = [questions[i] for i in keep]
        self.store, self.texts, self.randaugment = store, texts, randaugment
        self.image_rows = [image_rows[i] for i in keep]
        self.text_rows = keep
        self.in_memory = store.in_memory
        self.types = torch.tensor([ANSWER_TYPES.index(q.answer_type) if q.answer_type in ANSWER_TYPES
                                   else len(ANSWER_TYPES) for q in kept])
        self.targets = [(torch.tensor(i, dtype=torch.long), torch.tensor(v, dtype=torch.float32))
                        for i, v in (soft_targets(q.answers, index) for q in kept)]
        table = sparse_accuracy_table(kept, answers)
        real = table.indices >= 0
        self.accuracy = [(table.indices[k][real[k]], table.values[k][real[k]]) for k in range(len(kept))]
        if hflip and mirror is None:
            raise ValueError("hflip needs a TextMirror (a flipped image changes questions about left and right)")
        self.hflip, self.mirror, self.rng = hflip, mirror, rng if rng is not None else Rng()
        self.mirrorable = (torch.tensor([mirror.can_mirror(torch.cat([t[0], a[0]]))
                                         for t, a in zip(self.targets, self.accuracy, strict=True)], dtype=torch.bool)
                           if mirror is not None else torch.zeros(len(kept), dtype=torch.bool))

    def __len__(self) -> int:
        return len(self.image_rows)

    def __getitem__(self, i: int) -> dict[str, Any]:
        flip = self.draw_flip([i])
        return {"image": self.load_image(self.image_rows[i], flip=flip), **self.question(i, mirrored=flip)}

    def draw_flip(self, questions: Sequence[int]) -> bool:
        """Whether to flip the image these questions share (never when one of them cannot be mirrored)."""
        return (self.hflip > 0 and self.rng.random() < self.hflip
                and bool(self.mirrorable[torch.as_tensor(questions, dtype=torch.long)].all()))

    def load_image(self, row: int, *, flip: bool = False) -> torch.Tensor:
        """Image `row` of the store as uint8 [3, h, w], augmented, and mirrored when `flip`."""
        image = self.store[row]
        if self.randaugment is not None:
            pil = self.randaugment(Image.fromarray(image.permute(1, 2, 0).numpy()))
            image = torch.from_numpy(np.asarray(pil).transpose(2, 0, 1).copy())
        return image.flip(-1) if flip else image

    def question(self, i: int, *, mirrored: bool = False) -> dict[str, Any]:
        """Question `i`'s ids, soft targets, accuracy table and answer type (mirrored when `mirrored`)."""
        row = self.text_rows[i]
        ids = self.texts.ids[row, : int(self.texts.lengths[row])]
        targets, accuracy = self.targets[i], self.accuracy[i]
        if mirrored:
            ids = self.mirror.ids(ids)
            targets = (self.mirror.answers(targets[0]), targets[1])
            accuracy = (self.mirror.answers(accuracy[0]), accuracy[1])
        return {"ids": ids, "targets": targets, "accuracy": accuracy, "type": int(self.types[i])}


class ImageGroups(Dataset):
    """A VQADataset regrouped by image: item g is one image (decoded and augmented once) with all its
    questions, for models with one-way fusion, which encode each image once for all the texts that read it."""

    def __init__(self, questions: VQADataset) -> None:
        self.questions = questions
        self.rows, self.members = group_by_image(questions.image_rows)
        self.in_memory = questions.in_memory
        self.num_texts = self.num_questions = len(questions)

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, g: int) -> dict[str, Any]:
        flip = self.questions.draw_flip(self.members[g])
        return {"image": self.questions.load_image(self.rows[g], flip=flip),
                "questions": [self.questions.question(i, mirrored=flip) for i in self.members[g]]}


def load_vqa_data(data: Path, processor_config: ViLTProcessorConfig, tokenizer: Any, *, split: str,
                  answers: Sequence[str], randaugment: RandAugment | None = None, skip_bad_images: bool = False,
                  questions: Sequence[Any] | None = None, hflip: float = 0.0, rng: Rng | None = None) -> VQADataset:
    """One split of a VQAv2-layout folder as a VQADataset (images decoded once when they fit in memory).

    Args:
        data: the VQAv2-layout folder.
        processor_config: the model's image geometry and text length.
        tokenizer: the BERT tokenizer the model reads.
        split: "train2014", "val2014", ...
        answers: the answer vocabulary (the head's labels).
        randaugment: training augmentation (None: none).
        skip_bad_images: drop questions whose image cannot be read instead of stopping with its name.
        questions: the split's questions if already read (None: read them from `data`).
        hflip: horizontal flip probability, questions mirrored with their image.
        rng: the random source of flips.
    """
    qs = list(questions) if questions is not None else load_vqa_split(data, split)
    paths = sorted({q.image_path for q in qs})
    row_of = {p: i for i, p in enumerate(paths)}
    store = ImageStore(paths, processor_config, skip_bad=skip_bad_images)
    if store.bad:
        log.warning("%s: %s", split, describe_bad(store.bad))
    texts = TokenizedTexts.build([q.question for q in qs], tokenizer, processor_config.max_text_len)
    return VQADataset(qs, store, [row_of[q.image_path] for q in qs], texts, answers, randaugment=randaugment,
                      hflip=hflip, mirror=TextMirror(tokenizer, answers) if hflip else None, rng=rng)


__all__ = ["MIRROR_WORDS", "ImageGroups", "TextMirror", "VQADataset", "load_vqa_data"]
