"""NLVR2 on the training engine (ViLT's pair setting, Kim et al. 2021, Sec. 4.2): a statement and two images;
each image goes through the encoder with the statement (modality types 1 and 2), the two pooled outputs are
concatenated and classified True / False with cross-entropy. Validation: accuracy on `dev`."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset

from ...data.vl import ImageStore, TokenizedTexts, describe_bad, pad_ids
from ...processing.vilt import ViLTProcessor
from ...processing.vilt_config import ViLTProcessorConfig
from ...processing.vilt_images import normalize_pad
from ..engine import StepContext, all_reduce_metrics

log = logging.getLogger("vitkit")

LABELS = ("False", "True")


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


class NLVR2Task:
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
    from .vqa import build_vilt, vilt_overrides, vl_recipe

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
