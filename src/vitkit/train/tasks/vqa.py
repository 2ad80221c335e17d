"""Visual question answering on the training engine (ViLT's VQAv2 fine-tuning, Kim et al. 2021).

Loss: binary cross-entropy of the answer logits against VQA soft targets (ViLT's score per annotator count:
1 -> 0.3, 2 -> 0.6, 3 -> 0.9, >= 4 -> 1), times the number of answers, as the paper. Evaluation: the official
VQA accuracy of the argmax answer (per question the mean over the ten 9-annotator subsets of
min(1, matches / 3)), overall and per answer type, computed with a per-question table so it costs one gather.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader

from ...data.vl import pad_ids
from ...data.vqa_accuracy import ANSWER_TYPES
from ...data.vqa_dataset import ImageGroups, load_vqa_data
from ...processing.vilt import ViLTProcessor
from ...processing.vilt_config import ViLTProcessorConfig
from ...processing.vilt_images import normalize_pad
from ...utils.random import Rng
from ..engine import StepContext, all_reduce_metrics
from .vl import build_vilt, images_per_batch, vilt_overrides, vl_randaugment, vl_recipe

log = logging.getLogger("vitkit")

ANSWER_MIN_COUNT = 9  # ViLT: answers given >= 9 times over train + val annotations (3,129 for VQAv2)


class VQATask:
    """VQA on the engine: BCE (or CE) against soft targets; evaluation is the official accuracy per answer type."""

    name = "vqa"
    primary_metric = "val_vqa_accuracy"
    head_prefixes = ("vqa_classifier.",)

    def __init__(self, *, answers: Sequence[str], processor: ViLTProcessor, augment_rng: Rng | None = None,
                 loss: str = "bce") -> None:
        if loss not in ("bce", "ce"):
            raise ValueError(f"loss must be 'bce' or 'ce', got {loss!r}")
        self.loss = loss
        self.answers = list(answers)
        self.processor = processor
        self.augment_rng = augment_rng

    @property
    def image_config(self) -> ViLTProcessorConfig:
        return self.processor.config

    def reseed_data(self, seed: int) -> None:
        if self.augment_rng is not None:
            self.augment_rng.reseed(seed)

    def collate(self, items: list[dict[str, Any]]) -> dict[str, Any]:
        pixels, pixel_mask = normalize_pad([it["image"] for it in items], self.image_config)
        image_index = None
        if items and "questions" in items[0]:  # ImageGroups: questions sharing an image point to it
            image_index = torch.tensor([g for g, it in enumerate(items) for _ in it["questions"]])
            items = [q for it in items for q in it["questions"]]
        ids, text_mask = pad_ids([it["ids"] for it in items])
        targets = torch.zeros(len(items), len(self.answers))
        for b, it in enumerate(items):
            idx, score = it["targets"]
            targets[b, idx] = score
        width = max(1, max(len(it["accuracy"][0]) for it in items))
        acc_idx = torch.full((len(items), width), -1, dtype=torch.long)
        acc_val = torch.zeros(len(items), width, dtype=torch.float64)
        for b, it in enumerate(items):
            idx, val = it["accuracy"]
            acc_idx[b, : len(idx)] = idx
            acc_val[b, : len(idx)] = val
        batch = {"pixel_values": pixels, "pixel_mask": pixel_mask, "input_ids": ids, "attention_mask": text_mask,
                 "targets": targets, "acc_idx": acc_idx, "acc_val": acc_val,
                 "types": torch.tensor([it["type"] for it in items])}
        if image_index is not None:
            batch["image_index"] = image_index
        return batch

    @staticmethod
    def _inputs(batch: dict[str, Any], device: torch.device) -> dict[str, torch.Tensor]:
        inputs = {"input_ids": batch["input_ids"].to(device), "attention_mask": batch["attention_mask"].to(device),
                  "pixel_values": batch["pixel_values"].to(device, non_blocking=True),
                  "pixel_mask": batch["pixel_mask"].to(device, non_blocking=True)}
        if "image_index" in batch:
            inputs["image_index"] = batch["image_index"].to(device)
        return inputs

    def train_step(self, model: nn.Module, batch: dict[str, Any], ctx: StepContext) -> tuple[torch.Tensor, dict]:
        # pooled_only: the VQA head reads the pooled [CLS] alone, so the last block computes that row only
        logits = model(**self._inputs(batch, ctx.device), pooled_only=True).logits.float()
        targets = batch["targets"].to(ctx.device, non_blocking=True)
        return self.loss_sum(logits, targets) / targets.shape[0], {}

    def loss_sum(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """The training loss summed over the batch: bce, ViLT's binary cross-entropy per answer (summed over
        answers, i.e. the mean times the number of answers); or ce, softmax cross-entropy against the soft scores
        normalised to a distribution (a question with no answer in the vocabulary contributes 0)."""
        if self.loss == "ce":
            dist = targets / targets.sum(1, keepdim=True).clamp_min(1e-12)
            return -(dist * F.log_softmax(logits, dim=-1)).sum()
        return F.binary_cross_entropy_with_logits(logits, targets, reduction="sum")

    @torch.no_grad()
    def evaluate(self, model: nn.Module, loader: DataLoader, ctx: StepContext) -> dict[str, Any]:
        n_types = len(ANSWER_TYPES) + 1
        acc_sum = torch.zeros(n_types, dtype=torch.float64)
        count = torch.zeros(n_types, dtype=torch.float64)
        loss_sum = 0.0
        for batch in loader:
            with ctx.autocast():
                logits = model(**self._inputs(batch, ctx.device), pooled_only=True).logits.float()
            targets = batch["targets"].to(ctx.device)
            loss_sum += self.loss_sum(logits, targets).item()
            pred = logits.argmax(-1).cpu()
            acc = ((batch["acc_idx"] == pred[:, None]) * batch["acc_val"]).sum(1)  # [b] official accuracy
            acc_sum.index_add_(0, batch["types"], acc)
            count.index_add_(0, batch["types"], torch.ones_like(acc))
        sums = {f"acc{i}": acc_sum[i].item() for i in range(n_types)}
        sums.update({f"n{i}": count[i].item() for i in range(n_types)})
        sums["loss"] = loss_sum
        sums = all_reduce_metrics(sums, ctx)
        total = sum(sums[f"n{i}"] for i in range(n_types))
        out = {
            "val_vqa_accuracy": sum(sums[f"acc{i}"] for i in range(n_types)) / max(total, 1),
            "val_loss": sums["loss"] / max(total, 1),
        }
        for i, name in enumerate(ANSWER_TYPES):
            if sums[f"n{i}"]:
                out[f"val_vqa_{name.replace('/', '_')}"] = sums[f"acc{i}"] / sums[f"n{i}"]
        out["num_questions"] = total
        return out

    def export(self, model: nn.Module, out_dir: Path, metrics: dict[str, Any]) -> None:
        model.save_pretrained(out_dir)
        self.processor.save_pretrained(out_dir)


# ---------------------------------------------------------------------------------------------------- set-up
def setup(*, task: str, data: Path, model: str, pretrained: str | None, init_from: str | None,
          img_size: int | None, cfg: Any, net: nn.Module | None, skip_bad_images: bool) -> tuple:
    """`vitkit train --task vqa`: VQAv2 layout (train2014 / val2014), the answer vocabulary from the annotations."""
    from ...data.vqa import build_answer_vocab, load_vqa_split
    from ...errors import VitkitError
    from ...processing.bert import BertTokenizer

    train_q = load_vqa_split(data, "train2014")
    val_q = load_vqa_split(data, "val2014")
    if net is None:
        answers = build_answer_vocab([*train_q, *val_q], min_count=ANSWER_MIN_COUNT)
        if not answers:
            raise VitkitError(f"{data}: no answer occurs {ANSWER_MIN_COUNT} times or more; nothing to learn")
        overrides = vilt_overrides(cfg, img_size, task="vqa", extra_heads=(), num_answers=len(answers),
                                   labels=tuple(answers), max_image_len=-1)
        net = build_vilt(model, overrides=overrides, pretrained=pretrained, init_from=init_from)
    answers = list(net.config.labels or ())
    pcfg, cfg = vl_recipe(net, task=task, model=model, pretrained=pretrained, cfg=cfg)
    tokenizer = BertTokenizer(max_length=pcfg.max_text_len)
    augment_rng = Rng(torch.Generator().manual_seed(cfg.seed))
    randaugment = vl_randaugment(cfg.randaugment, pcfg, augment_rng)
    train_set = load_vqa_data(data, pcfg, tokenizer, split="train2014", answers=answers, randaugment=randaugment,
                              skip_bad_images=skip_bad_images, questions=train_q, hflip=cfg.hflip, rng=augment_rng)
    val_set = load_vqa_data(data, pcfg, tokenizer, split="val2014", answers=answers,
                            skip_bad_images=skip_bad_images, questions=val_q)
    log.info("vqa: %d train / %d val questions, %d answers", len(train_set), len(val_set), len(answers))
    if not net.config.image_attends_text:  # one-way fusion: each image encoded once for all its questions
        train_set, val_set = ImageGroups(train_set), ImageGroups(val_set)
        cfg = images_per_batch(cfg, train_set)
    task_obj = VQATask(answers=answers, processor=ViLTProcessor(pcfg, tokenizer), augment_rng=augment_rng,
                       loss=cfg.vqa_loss)
    return net, train_set, val_set, task_obj, cfg
