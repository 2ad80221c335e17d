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

`--task retrieval`: the rank head (initialised from the ITM head's match row) scores each caption's image
against `NEGATIVES` = 15 other captions; cross-entropy over the 16 scores. Validation: text and image
retrieval R@1/5/10 over up to `EVAL_IMAGES` images and all their captions, each image embedded once.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset

from ...data.vl import CaptionPairs, group_by_image, pad_ids, whole_word_mask
from ...inference.vilt import score_embedded_pairs
from ...models.vilt.model import ViLT
from ...models.vilt.ot import word_patch_alignment
from ...processing.vilt import ViLTProcessor
from ...processing.vilt_images import normalize_pad
from ...utils.distributed import all_reduce_sum
from ..engine import StepContext, all_reduce_metrics

log = logging.getLogger("vitkit")

WPA_WEIGHT = 0.1
NEGATIVES = 15
EVAL_IMAGES = 100  # validation images scored all-against-all at each epoch's end (time grows with its square)


def _unwrap(model: nn.Module) -> ViLT:
    m = getattr(model, "module", model)  # DDP
    m = getattr(m, "_orig_mod", m)  # torch.compile
    return m


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


class CaptionGroups(Dataset):
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


def collate_pairs(items: list[dict[str, Any]], processor: ViLTProcessor) -> dict[str, Any]:
    """(image, caption) items -> a batch; CaptionGroups items -> one copy of each image, every caption pointing to
    its image by `image_index`."""
    pixels, pixel_mask = normalize_pad([it["image"] for it in items], processor.config)
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


class PretrainTask:
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
        return collate_pairs(items, self.processor)

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
            out.update(_rank0_broadcast(lambda: retrieval_metrics(
                _unwrap(model), self.val_set, self.processor, ctx, head="itm", max_images=self.eval_images,
                prefix="val_zs_"), ctx))
        return out

    def export(self, model: nn.Module, out_dir: Path, metrics: dict[str, Any]) -> None:
        model.save_pretrained(out_dir)
        self.processor.save_pretrained(out_dir)


class RetrievalTask:
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
        return collate_pairs(items, self.processor)

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
        if _unwrap(model).config.image_attends_text:  # early fusion: an image copy per text
            pixels, pmask, extra = pixels.repeat_interleave(1 + K, dim=0), pmask.repeat_interleave(1 + K, dim=0), {}
        else:  # one-way fusion: each image encoded once for its 1 + K texts
            extra = {"image_index": torch.arange(B).repeat_interleave(1 + K).to(device)}
        out = model(input_ids=ids.to(device), attention_mask=tmask.to(device), pixel_values=pixels.to(device),
                    pixel_mask=pmask.to(device), pooled_only=True, **extra)
        scores = out.logits.float().view(B, 1 + K)
        return F.cross_entropy(scores, torch.zeros(B, dtype=torch.long, device=device)), {}

    @torch.no_grad()
    def evaluate(self, model: nn.Module, loader: DataLoader, ctx: StepContext) -> dict[str, Any]:
        return _rank0_broadcast(lambda: retrieval_metrics(_unwrap(model), self.val_set, self.processor, ctx,
                                                          head="retrieval", max_images=self.eval_images), ctx)

    def export(self, model: nn.Module, out_dir: Path, metrics: dict[str, Any]) -> None:
        model.save_pretrained(out_dir)
        self.processor.save_pretrained(out_dir)


def _rank0_broadcast(fn: Any, ctx: StepContext) -> dict[str, float]:
    """Run `fn` (a dict of floats) on rank 0 only and give every rank its result (zeros elsewhere + a sum)."""
    if not ctx.dist.enabled:
        return fn()
    result = fn() if ctx.dist.is_main else None
    keys = sorted(result) if result is not None else None
    box = [keys]
    torch.distributed.broadcast_object_list(box, src=0)
    keys = box[0]
    t = torch.tensor([result[k] for k in keys] if result is not None else [0.0] * len(keys), dtype=torch.float64,
                     device=ctx.device)
    t = all_reduce_sum(t, ctx.dist)
    return dict(zip(keys, t.tolist()))


def setup(*, task: str, data: Path, model: str, pretrained: str | None, init_from: str | None,
          img_size: int | None, cfg: Any, net: nn.Module | None, skip_bad_images: bool) -> tuple:
    """`--task pretrain` / `--task retrieval` on a caption dataset (Karpathy split json or COCO captions json)."""
    from ...data.captions import find_caption_files
    from ...data.vl import load_caption_pairs
    from ...processing.bert import BertTokenizer
    from .vqa import build_vilt, vilt_overrides, vl_recipe

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
            from .vqa import images_per_batch

            train_set = CaptionGroups(train_set)
            cfg = images_per_batch(cfg, train_set, what="captions")
            val_groups: Any = CaptionGroups(val_set)
            return net, train_set, val_groups, task_obj, cfg
    else:
        task_obj = RetrievalTask(processor=processor, train_set=train_set, val_set=val_set)
    return net, train_set, val_set, task_obj, cfg
