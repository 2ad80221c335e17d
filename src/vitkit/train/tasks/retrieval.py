"""Image-text retrieval on the training engine (ViLT's fine-tuning for retrieval, Kim et al. 2021, Sec. 4.3).

The rank head (initialised from the ITM head's match row) scores each caption's image against `NEGATIVES` = 15
other captions; cross-entropy over the 16 scores. Validation: text and image retrieval R@1/5/10 over up to
`EVAL_IMAGES` images and all their captions, each image embedded once (`retrieval_metrics`, which pretraining
also reports zero-shot from its ITM head). `vitkit train --task retrieval` is set up by
`vitkit.train.tasks.pretrain.setup`, which reads caption datasets for both tasks.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader

from ...data.vl import CaptionPairs, collate_pairs, pad_ids
from ...inference.vilt import score_embedded_pairs
from ...models.vilt.model import ViLT
from ...processing.vilt import ViLTProcessor
from ...processing.vilt_images import normalize_pad
from ..engine import StepContext
from .vl import on_rank0, unwrap_model

NEGATIVES = 15
EVAL_IMAGES = 100  # validation images scored all-against-all at each epoch's end (time grows with its square)


def recall_at(scores: torch.Tensor, text_image: torch.Tensor, ks: Sequence[int] = (1, 5, 10)) -> dict[str, float]:
    """scores [I, T] (image i vs text t), text_image [T] the image index of each text -> text retrieval
    (`tr_r{k}`: an image's best-ranked texts include one of its own) and image retrieval (`ir_r{k}`: a text's
    best-ranked images include its own) recall at k."""
    I, T = scores.shape
    own = text_image[None, :] == torch.arange(I)[:, None]  # [I, T]
    out = {}
    for k in ks:
        top_t = scores.topk(min(k, T), dim=1).indices  # [I, k]
        out[f"tr_r{k}"] = own.gather(1, top_t).any(1).float().mean().item()
        top_i = scores.topk(min(k, I), dim=0).indices  # [k, T]
        out[f"ir_r{k}"] = (top_i == text_image[None, :]).any(0).float().mean().item()
    return out


def _eval_subset(dataset: CaptionPairs, max_images: int) -> tuple[list[int], list[int], torch.Tensor]:
    """(image rows, text rows, image index of each text) for the first `max_images` images of a dataset."""
    rows: dict[int, int] = {}
    texts, owner = [], []
    for i, t in dataset.pairs:
        if i not in rows:
            if len(rows) == max_images:
                continue
            rows[i] = len(rows)
        texts.append(t)
        owner.append(rows[i])
    return list(rows), texts, torch.tensor(owner)


def retrieval_metrics(model: ViLT, dataset: CaptionPairs, processor: ViLTProcessor, ctx: StepContext, *,
                      head: str, max_images: int = EVAL_IMAGES, prefix: str = "val_") -> dict[str, float]:
    """R@1/5/10 both ways over up to `max_images` images of `dataset` and all their captions (rank 0 only; the
    others get the same numbers broadcast)."""
    image_rows, text_rows, owner = _eval_subset(dataset, max_images)
    pixels, pmask = normalize_pad([dataset.store[i] for i in image_rows], processor.config)
    ids, tmask = pad_ids([dataset.texts.ids[t, : int(dataset.texts.lengths[t])] for t in text_rows])
    with torch.no_grad(), ctx.autocast():
        image, image_masks, patch_index = model.embed_image(pixels.to(ctx.device), pmask.to(ctx.device))
        embedded = (image + model.token_type_embeddings.weight[1], image_masks, patch_index)
        scores = score_embedded_pairs(model, embedded, ids.to(ctx.device), tmask.to(ctx.device), tmask.sum(1),
                                      head=head, batch_size=256)
    out = recall_at(scores, owner)
    out["r_mean"] = sum(out.values()) / len(out)
    return {prefix + k: v for k, v in out.items()}


class RetrievalTask:
    """Retrieval on the engine: each image against its caption and `negatives` captions of other images."""

    name = "retrieval"
    primary_metric = "val_r_mean"
    head_prefixes = ("rank_output.",)

    def __init__(self, *, processor: ViLTProcessor, train_set: CaptionPairs, val_set: CaptionPairs,
                 negatives: int = NEGATIVES, eval_images: int = EVAL_IMAGES) -> None:
        self.processor = processor
        self.train_set, self.val_set = train_set, val_set
        self.negatives, self.eval_images = negatives, eval_images
        self._owner = torch.tensor([i for i, _ in train_set.pairs])  # the image of each training pair
        self._text = [t for _, t in train_set.pairs]

    def collate(self, items: list[dict[str, Any]]) -> dict[str, Any]:
        return collate_pairs(items, self.processor.config)

    def train_step(self, model: nn.Module, batch: dict[str, Any], ctx: StepContext) -> tuple[torch.Tensor, dict]:
        """Each image against its caption (index 0) and `negatives` captions of other images."""
        ds, device = self.train_set, ctx.device
        B, K = batch["input_ids"].shape[0], self.negatives
        owner = self._owner
        rows = torch.randint(len(ds.pairs), (B, K))
        clash = owner[rows] == batch["image_rows"][:, None]
        while clash.any():  # redraw captions of the same image
            rows[clash] = torch.randint(len(ds.pairs), (int(clash.sum()),))
            clash = owner[rows] == batch["image_rows"][:, None]
        neg = [ds.texts.ids[t, : int(ds.texts.lengths[t])] for t in (self._text[r] for r in rows.flatten().tolist())]
        pos = [batch["input_ids"][b, : int(batch["attention_mask"][b].sum())] for b in range(B)]
        texts = [t for b in range(B) for t in (pos[b], *neg[b * K : (b + 1) * K])]  # [B * (1 + K)] image-major
        ids, tmask = pad_ids(texts)
        pixels, pmask = batch["pixel_values"], batch["pixel_mask"]
        if unwrap_model(model).config.image_attends_text:  # early fusion: an image copy per text
            pixels, pmask, extra = pixels.repeat_interleave(1 + K, dim=0), pmask.repeat_interleave(1 + K, dim=0), {}
        else:  # one-way fusion: each image encoded once for its 1 + K texts
            extra = {"image_index": torch.arange(B).repeat_interleave(1 + K).to(device)}
        out = model(input_ids=ids.to(device), attention_mask=tmask.to(device), pixel_values=pixels.to(device),
                    pixel_mask=pmask.to(device), pooled_only=True, **extra)
        scores = out.logits.float().view(B, 1 + K)
        return F.cross_entropy(scores, torch.zeros(B, dtype=torch.long, device=device)), {}

    @torch.no_grad()
    def evaluate(self, model: nn.Module, loader: DataLoader, ctx: StepContext) -> dict[str, Any]:
        return on_rank0(lambda: retrieval_metrics(unwrap_model(model), self.val_set, self.processor, ctx,
                                                          head="retrieval", max_images=self.eval_images), ctx)

    def export(self, model: nn.Module, out_dir: Path, metrics: dict[str, Any]) -> None:
        model.save_pretrained(out_dir)
        self.processor.save_pretrained(out_dir)


__all__ = ["EVAL_IMAGES", "NEGATIVES", "RetrievalTask", "recall_at", "retrieval_metrics"]
