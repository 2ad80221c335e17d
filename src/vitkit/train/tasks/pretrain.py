"""ViLT's pretraining and image-text retrieval on the training engine (Kim et al. 2021, Sec. 3.2 and 4.3).

`--task pretrain`, per step on a batch of (image, caption) pairs:
- masked language modelling with whole-word masking (15% of words; their pieces -> [MASK] 80%, a random token
  10%, unchanged 10%) on the true image;
- image-text matching on the unmasked captions, half of the pairs given another image of the batch;
- word-patch alignment: the IPOT distance between text and image tokens of the ITM pass, pushed down for
  matched and up for mismatched pairs, weight 0.1 (ViLT: (sum over matched - sum over mismatched) / B).
Each loss is logged (metrics.jsonl `mlm_loss`, `itm_loss`, `wpa_loss`) and plotted. Validation reports ITM and
MLM accuracy and zero-shot retrieval R@1 from the ITM head on up to `EVAL_IMAGES` validation images.

With one-way fusion (`image_attends_text=False`) the captions are grouped by image (`CaptionGroups`; --batch-size
still counts captions) and one encoder pass serves both objectives: every image is encoded once for its masked
captions, its unmasked captions and the captions that get it as their negative. The MLM head runs only at the
masked positions (its 30,522-way projection costs more per token than a small encoder).

`--task retrieval` (the task itself: `vitkit.train.tasks.retrieval`) reads the same caption datasets, so
`setup` here builds both.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader

from ...data.vl import CaptionGroups, CaptionPairs, collate_pairs, whole_word_mask
from ...models.vilt.ot import word_patch_alignment
from ...processing.vilt import ViLTProcessor
from ..engine import StepContext, all_reduce_metrics
from .retrieval import EVAL_IMAGES, RetrievalTask, retrieval_metrics
from .vl import build_vilt, images_per_batch, on_rank0, unwrap_model, vilt_overrides, vl_recipe

log = logging.getLogger("vitkit")

WPA_WEIGHT = 0.1


def other_image(image_rows: torch.Tensor) -> torch.Tensor:
    """For each pair of a batch, the index of the nearest following pair (cyclically) that shows a different image:
    consecutive captions often share an image (an unshuffled caption file lists an image's five together), so a
    plain roll would give "negatives" that match. Pairs whose whole batch is one image get themselves."""
    B = len(image_rows)
    idx = torch.arange(B)
    pick = idx.clone()
    todo = torch.ones(B, dtype=torch.bool)
    for shift in range(1, B):
        cand = (idx + shift) % B
        ok = todo & (image_rows[cand] != image_rows)
        pick[ok] = cand[ok]
        todo &= ~ok
        if not todo.any():
            break
    return pick


class PretrainTask:
    """ViLT pretraining on the engine: whole-word MLM + ITM + word-patch alignment (see the module docstring)."""

    name = "pretrain"
    primary_metric = "val_itm_accuracy"
    head_prefixes = ("itm_score.", "mlm_score.")

    def __init__(self, *, processor: ViLTProcessor, val_set: CaptionPairs | None = None,
                 eval_images: int = EVAL_IMAGES) -> None:
        self.processor = processor
        tok = processor.tokenizer
        self.mask_id = tok.convert_tokens_to_ids("[MASK]")
        self.special = list(tok.special_token_ids)
        self.vocab_size = tok.vocab_size
        self.val_set, self.eval_images = val_set, eval_images

    def collate(self, items: list[dict[str, Any]]) -> dict[str, Any]:
        return collate_pairs(items, self.processor.config)

    def _losses(self, model: nn.Module, batch: dict[str, Any], device: torch.device,
                generator: torch.Generator | None) -> dict[str, torch.Tensor]:
        ids, tmask, word_ids = batch["input_ids"], batch["attention_mask"], batch["word_ids"]
        pixels, pmask, image_rows = batch["pixel_values"], batch["pixel_mask"], batch["image_rows"]
        image_index = batch.get("image_index")  # grouped captions (one-way fusion): text -> its image in `pixels`
        B = ids.shape[0]
        own = image_index if image_index is not None else torch.arange(B)
        # MLM: masked words, true image; the head runs at the masked positions only
        masked, labels = whole_word_mask(ids, word_ids, tmask, vocab_size=self.vocab_size, mask_token_id=self.mask_id,
                                         special_ids=self.special, generator=generator)
        targets = labels != -100
        # ITM: half the pairs get another image of the batch (a match after all only if the batch has one image)
        order = torch.randperm(B, generator=generator)
        negative = torch.zeros(B, dtype=torch.bool)
        negative[order[: B - B // 2]] = True
        source = torch.where(negative, other_image(image_rows), torch.arange(B))  # the pair whose image text b gets
        itm_labels = (image_rows[source] == image_rows).long().to(device)
        take = own[source]  # that image's index in `pixels`
        if image_index is not None:  # one pass: the images are encoded once for the MLM and the ITM texts
            out = model(input_ids=torch.cat([masked, ids]).to(device), attention_mask=tmask.repeat(2, 1).to(device),
                        pixel_values=pixels.to(device), pixel_mask=pmask.to(device),
                        image_index=torch.cat([own, take]).to(device),
                        mlm_mask=torch.cat([targets, torch.zeros_like(targets)]).to(device))
            mlm_logits, itm_logits = out.extra_logits["mlm"].float(), out.logits[B:].float()
            text_feats, text_masks = out.text_feats[B:], out.text_masks[B:]
            take = take.to(device)
            image_feats, image_masks = out.image_feats[take], out.image_masks[take]
        else:
            out = model(input_ids=masked.to(device), attention_mask=tmask.to(device), pixel_values=pixels.to(device),
                        pixel_mask=pmask.to(device), mlm_mask=targets.to(device))
            mlm_logits = out.extra_logits["mlm"].float()
            out = model(input_ids=ids.to(device), attention_mask=tmask.to(device), pixel_values=pixels[take].to(device),
                        pixel_mask=pmask[take].to(device), mlm_mask=torch.zeros_like(targets).to(device))
            itm_logits = out.logits.float()
            text_feats, text_masks, image_feats, image_masks = (out.text_feats, out.text_masks, out.image_feats,
                                                                out.image_masks)
        labels = labels[targets].to(device)  # [K], row-major like the head's logits
        mlm_loss = F.cross_entropy(mlm_logits, labels)
        itm_loss = F.cross_entropy(itm_logits, itm_labels)
        dist, _ = word_patch_alignment(text_feats.float(), image_feats.float(), text_masks, image_masks)
        match = itm_labels.bool()
        wpa_loss = (dist[match].sum() - dist[~match].sum()) / B
        return {"mlm_loss": mlm_loss, "itm_loss": itm_loss, "wpa_loss": wpa_loss, "_mlm_logits": mlm_logits,
                "_labels": labels, "_itm_logits": itm_logits, "_itm_labels": itm_labels}

    def train_step(self, model: nn.Module, batch: dict[str, Any], ctx: StepContext) -> tuple[torch.Tensor, dict]:
        parts = self._losses(model, batch, ctx.device, None)
        loss = parts["mlm_loss"] + parts["itm_loss"] + WPA_WEIGHT * parts["wpa_loss"]
        return loss, {k: v.detach() for k, v in parts.items() if not k.startswith("_")}

    @torch.no_grad()
    def evaluate(self, model: nn.Module, loader: DataLoader, ctx: StepContext) -> dict[str, Any]:
        g = torch.Generator().manual_seed(0)  # the same masks and negatives every epoch
        sums = {"mlm_loss": 0.0, "itm_loss": 0.0, "wpa_loss": 0.0, "mlm_correct": 0.0, "mlm_count": 0.0,
                "itm_correct": 0.0, "n": 0.0, "batches": 0.0}
        for batch in loader:
            with ctx.autocast():
                parts = self._losses(model, batch, ctx.device, g)
            for k in ("mlm_loss", "itm_loss", "wpa_loss"):
                sums[k] += parts[k].item()
            sums["mlm_correct"] += (parts["_mlm_logits"].argmax(-1) == parts["_labels"]).sum().item()
            sums["mlm_count"] += len(parts["_labels"])
            sums["itm_correct"] += (parts["_itm_logits"].argmax(-1) == parts["_itm_labels"]).sum().item()
            sums["n"] += len(parts["_itm_labels"])
            sums["batches"] += 1
        sums = all_reduce_metrics(sums, ctx)
        nb = max(sums["batches"], 1)
        out = {"val_itm_accuracy": sums["itm_correct"] / max(sums["n"], 1),
               "val_mlm_accuracy": sums["mlm_correct"] / max(sums["mlm_count"], 1),
               "val_mlm_loss": sums["mlm_loss"] / nb, "val_itm_loss": sums["itm_loss"] / nb,
               "val_wpa_loss": sums["wpa_loss"] / nb}
        if self.val_set is not None and self.eval_images > 0:
            out.update(on_rank0(lambda: retrieval_metrics(
                unwrap_model(model), self.val_set, self.processor, ctx, head="itm", max_images=self.eval_images,
                prefix="val_zs_"), ctx))
        return out

    def export(self, model: nn.Module, out_dir: Path, metrics: dict[str, Any]) -> None:
        model.save_pretrained(out_dir)
        self.processor.save_pretrained(out_dir)


def setup(*, task: str, data: Path, model: str, pretrained: str | None, init_from: str | None,
          img_size: int | None, cfg: Any, net: nn.Module | None, skip_bad_images: bool) -> tuple:
    """`--task pretrain` / `--task retrieval` on a caption dataset (Karpathy split json or COCO captions json)."""
    from ...data.captions import find_caption_files
    from ...data.vl import load_caption_pairs
    from ...processing.bert import BertTokenizer

    train_images, val_images = find_caption_files(data)
    if net is None:
        head = ({"task": "itm", "extra_heads": ("mlm",)} if task == "pretrain"
                else {"task": "retrieval", "extra_heads": ()})
        net = build_vilt(model, overrides=vilt_overrides(cfg, img_size, labels=None, **head), pretrained=pretrained,
                         init_from=init_from)
    pcfg, cfg = vl_recipe(net, task=task, model=model, pretrained=pretrained, cfg=cfg)
    tokenizer = BertTokenizer(max_length=pcfg.max_text_len)
    processor = ViLTProcessor(pcfg, tokenizer)
    train_set = load_caption_pairs(train_images, pcfg, tokenizer, skip_bad=skip_bad_images)
    val_set = load_caption_pairs(val_images, pcfg, tokenizer, skip_bad=skip_bad_images)
    log.info("%s: %d train / %d val image-caption pairs (%d / %d images)", task, len(train_set), len(val_set),
             len(train_images), len(val_images))
    if task == "pretrain":
        task_obj: Any = PretrainTask(processor=processor, val_set=val_set)
        if not net.config.image_attends_text:  # one-way fusion: an image's captions share one encoding
            train_set = CaptionGroups(train_set)
            cfg = images_per_batch(cfg, train_set, what="captions")
            val_groups: Any = CaptionGroups(val_set)
            return net, train_set, val_groups, task_obj, cfg
    else:
        task_obj = RetrievalTask(processor=processor, train_set=train_set, val_set=val_set)
    return net, train_set, val_set, task_obj, cfg
