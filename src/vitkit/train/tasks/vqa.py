"""Visual question answering on the training engine (ViLT's VQAv2 fine-tuning, Kim et al. 2021).

Loss: binary cross-entropy of the answer logits against VQA soft targets (ViLT's score per annotator count:
1 -> 0.3, 2 -> 0.6, 3 -> 0.9, >= 4 -> 1), times the number of answers, as the paper. Evaluation: the official
VQA accuracy of the argmax answer (per question the mean over the ten 9-annotator subsets of
min(1, matches / 3)), overall and per answer type, computed with a per-question table so it costs one gather.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset

from ...data.randaugment import RandAugment
from ...data.vl import ImageStore, TokenizedTexts, group_by_image, pad_ids
from ...inference.vilt import processor_config_for
from ...processing.vilt import ViLTProcessor
from ...processing.vilt_config import ViLTProcessorConfig
from ...processing.vilt_images import normalize_pad
from ...utils.random import Rng
from ..engine import StepContext, all_reduce_metrics

log = logging.getLogger("vitkit")

ANSWER_TYPES = ("yes/no", "number", "other")
ANSWER_MIN_COUNT = 9  # ViLT: answers given >= 9 times over train + val annotations (3,129 for VQAv2)


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
        return self.token_map[ids]

    def can_mirror(self, answer_indices: torch.Tensor) -> bool:
        return bool((self.answer_map[answer_indices] >= 0).all())

    def answers(self, indices: torch.Tensor) -> torch.Tensor:
        return self.answer_map[indices]


class VQADataset(Dataset):
    """Questions about images -> dict items (image uint8, token ids, soft targets, accuracy table, answer type).

    Each question's accuracy table lists the official accuracy of every vocabulary answer an annotator gave
    (any other prediction scores 0), so evaluating an argmax is a lookup.

    `hflip` (with `mirror` and `rng`): the probability of a horizontal flip, the question and its answers
    mirrored with it (`TextMirror`); an image whose questions cannot all be mirrored is never flipped.
    """

    in_memory = True  # decoded images and tokenised text live in memory; workers would only copy them

    def __init__(self, questions: Sequence[Any], store: ImageStore, image_rows: Sequence[int],
                 texts: TokenizedTexts, answers: Sequence[str], *, randaugment: RandAugment | None = None,
                 hflip: float = 0.0, mirror: TextMirror | None = None, rng: Rng | None = None) -> None:
        from ...data.vqa import soft_targets, sparse_accuracy_table

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
        image = self.store[row]
        if self.randaugment is not None:
            from PIL import Image

            pil = self.randaugment(Image.fromarray(image.permute(1, 2, 0).numpy()))
            image = torch.from_numpy(np.asarray(pil).transpose(2, 0, 1).copy())
        return image.flip(-1) if flip else image

    def question(self, i: int, *, mirrored: bool = False) -> dict[str, Any]:
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


class VQATask:
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
def images_per_batch(cfg: Any, groups: Any, what: str = "questions") -> Any:
    """--batch-size counts texts (questions, captions); with texts grouped by image (`groups`: ImageGroups,
    CaptionGroups) a step takes whole images: the batch becomes the number of images holding about that many
    texts (a multiple of processes x accumulation)."""
    import os
    from dataclasses import replace

    per_step = int(os.environ.get("WORLD_SIZE", "1")) * cfg.accum_steps
    per_image = groups.num_texts / max(1, len(groups))
    images = max(per_step, round(cfg.batch_size / per_image / per_step) * per_step)
    log.info("%s grouped by image (one-way fusion encodes each image once): batch %d %s -> %d images x %.1f %s",
             what, cfg.batch_size, what, images, per_image, what)
    return replace(cfg, batch_size=images)


def build_vilt(spec: str, *, overrides: dict[str, Any], pretrained: str | None, init_from: str | None) -> nn.Module:
    """A ViLT for a training task: a registered name (random init, `init_from` a ViT for the encoder, or
    `pretrained` weights), or any from_pretrained ViLT source. `overrides` set the task head."""
    from ...errors import ConfigError
    from ...models.vilt.model import ViLT
    from ...registry import create_model, from_pretrained, list_models

    registered = spec in list_models()
    if pretrained:
        model = from_pretrained(pretrained, model=spec if registered else None, **overrides)
    elif registered:
        model = create_model(spec, init_from=init_from, **overrides)
    else:
        model = from_pretrained(spec, **overrides)
    if not isinstance(model, ViLT):
        raise ConfigError(f"{spec}: this task trains a ViLT, got a {type(model).__name__}")
    if init_from and not registered:
        model.init_encoder_from(init_from)
    return model.train()


def load_vqa_data(data: Path, processor_config: ViLTProcessorConfig, tokenizer: Any, *, split: str,
                  answers: Sequence[str], randaugment: RandAugment | None = None, skip_bad_images: bool = False,
                  questions: Sequence[Any] | None = None, hflip: float = 0.0, rng: Rng | None = None) -> VQADataset:
    """One split of a VQAv2-layout folder as a VQADataset (images decoded once when they fit in memory)."""
    from ...data.vl import describe_bad
    from ...data.vqa import load_vqa_split

    qs = list(questions) if questions is not None else load_vqa_split(data, split)
    paths = sorted({q.image_path for q in qs})
    row_of = {p: i for i, p in enumerate(paths)}
    store = ImageStore(paths, processor_config, skip_bad=skip_bad_images)
    if store.bad:
        log.warning("%s: %s", split, describe_bad(store.bad))
    texts = TokenizedTexts.build([q.question for q in qs], tokenizer, processor_config.max_text_len)
    return VQADataset(qs, store, [row_of[q.image_path] for q in qs], texts, answers, randaugment=randaugment,
                      hflip=hflip, mirror=TextMirror(tokenizer, answers) if hflip else None, rng=rng)


def vilt_overrides(cfg: Any, img_size: int | None, **head: Any) -> dict[str, Any]:
    """Config overrides for a ViLT trained on a task: its head fields, stochastic depth and the image size."""
    overrides = {**head, "drop_path_rate": cfg.drop_path}
    if img_size:
        overrides.update(shorter_edge=img_size, longer_edge=int(1333 / 800 * img_size))
    return overrides


def vl_recipe(net: nn.Module, *, task: str, model: str, pretrained: str | None, cfg: Any) -> tuple[Any, Any]:
    """(processor config, resolved recipe) for a ViLT task."""
    from ...registry import list_models
    from ..config import resolve_vl_recipe

    pcfg = processor_config_for(net)
    from_weights = bool(pretrained) or model not in list_models()
    return pcfg, resolve_vl_recipe(cfg, task=task, pretrained=from_weights, img_size=pcfg.shorter_edge)


def vl_randaugment(spec: str, pcfg: ViLTProcessorConfig, rng: Rng) -> RandAugment | None:
    """RandAugment as ViLT uses it: every op but colour inversion (questions and captions name colours); timm's
    op list has no cutout, the other op ViLT drops."""
    if spec == "none":
        return None
    ra = RandAugment.from_string(spec, fill=(128, 128, 128), interpolation=pcfg.resample, generator=rng)
    ra.ops = tuple(op for op in ra.ops if op != "Invert")
    return ra


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
