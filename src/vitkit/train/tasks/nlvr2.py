"""NLVR2 on the training engine (ViLT's pair setting, Kim et al. 2021, Sec. 4.2): a statement and two images;
each image goes through the encoder with the statement (modality types 1 and 2), the two pooled outputs are
concatenated and classified True / False with cross-entropy. Validation: accuracy on `dev`."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader

from ...data.nlvr2_dataset import NLVR2Dataset
from ...data.vl import pad_ids
from ...processing.vilt import ViLTProcessor
from ...processing.vilt_images import normalize_pad
from ..engine import StepContext, all_reduce_metrics
from .vl import build_vilt, vilt_overrides, vl_recipe

log = logging.getLogger("vitkit")

LABELS = ("False", "True")


class NLVR2Task:
    """NLVR2 on the engine: cross-entropy over True / False for a statement and its image pair; dev accuracy."""

    name = "nlvr2"
    primary_metric = "val_accuracy"
    head_prefixes = ("nlvr2_classifier.",)

    def __init__(self, *, processor: ViLTProcessor) -> None:
        self.processor = processor

    def collate(self, items: list[dict[str, Any]]) -> dict[str, Any]:
        flat = [im for it in items for im in it["images"]]  # left, right, left, right, ...
        pixels, pmask = normalize_pad(flat, self.processor.config)
        B = len(items)
        ids, tmask = pad_ids([it["ids"] for it in items])
        return {"pixel_values": pixels.view(B, 2, *pixels.shape[1:]), "pixel_mask": pmask.view(B, 2, *pmask.shape[1:]),
                "input_ids": ids, "attention_mask": tmask, "labels": torch.tensor([it["label"] for it in items])}

    @staticmethod
    def _logits(model: nn.Module, batch: dict[str, Any], device: torch.device) -> torch.Tensor:
        return model(input_ids=batch["input_ids"].to(device), attention_mask=batch["attention_mask"].to(device),
                     pixel_values=batch["pixel_values"].to(device), pixel_mask=batch["pixel_mask"].to(device),
                     pooled_only=True).logits  # the head reads the pooled outputs: last block on [CLS] only

    def train_step(self, model: nn.Module, batch: dict[str, Any], ctx: StepContext) -> tuple[torch.Tensor, dict]:
        logits = self._logits(model, batch, ctx.device).float()
        return F.cross_entropy(logits, batch["labels"].to(ctx.device)), {}

    @torch.no_grad()
    def evaluate(self, model: nn.Module, loader: DataLoader, ctx: StepContext) -> dict[str, Any]:
        correct = n = loss = 0.0
        for batch in loader:
            with ctx.autocast():
                logits = self._logits(model, batch, ctx.device).float()
            labels = batch["labels"].to(ctx.device)
            loss += F.cross_entropy(logits, labels, reduction="sum").item()
            correct += (logits.argmax(-1) == labels).sum().item()
            n += len(labels)
        s = all_reduce_metrics({"correct": correct, "n": n, "loss": loss}, ctx)
        return {"val_accuracy": s["correct"] / max(s["n"], 1), "val_loss": s["loss"] / max(s["n"], 1)}

    def export(self, model: nn.Module, out_dir: Path, metrics: dict[str, Any]) -> None:
        model.save_pretrained(out_dir)
        self.processor.save_pretrained(out_dir)


def setup(*, task: str, data: Path, model: str, pretrained: str | None, init_from: str | None,
          img_size: int | None, cfg: Any, net: nn.Module | None, skip_bad_images: bool) -> tuple:
    """`--task nlvr2`: NLVR2 json lines `train.json` / `dev.json` with the official image naming."""
    from ...data.nlvr2 import load_nlvr2
    from ...processing.bert import BertTokenizer

    train_ex, val_ex = load_nlvr2(data, "train"), load_nlvr2(data, "dev")
    if net is None:
        overrides = vilt_overrides(cfg, img_size, task="nlvr2", extra_heads=(), num_images=2,
                                   modality_type_vocab_size=3, num_answers=2, labels=LABELS, max_image_len=-1)
        net = build_vilt(model, overrides=overrides, pretrained=pretrained, init_from=init_from)
    pcfg, cfg = vl_recipe(net, task=task, model=model, pretrained=pretrained, cfg=cfg)
    tokenizer = BertTokenizer(max_length=pcfg.max_text_len)
    train_set = NLVR2Dataset(train_ex, pcfg, tokenizer, skip_bad=skip_bad_images)
    val_set = NLVR2Dataset(val_ex, pcfg, tokenizer, skip_bad=skip_bad_images)
    log.info("nlvr2: %d train / %d dev examples", len(train_set), len(val_set))
    return net, train_set, val_set, NLVR2Task(processor=ViLTProcessor(pcfg, tokenizer)), cfg
