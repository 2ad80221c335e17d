"""Using a ViLT: visual question answering, image-text matching, masked-word filling and retrieval ranking
(Kim et al. 2021, https://arxiv.org/abs/2102.03334).

Preprocessing comes from the model's own config (`processor_for`: shorter/longer edge, size divisor, mean, std,
interpolation, text length) with the shipped bert-base-uncased vocabulary, so inputs match what the weights
expect. Every function runs the model in eval mode under `torch.no_grad()` on whatever device the model is on
(and puts back the train/eval mode it found); images are PIL images, HW/HWC numpy arrays or file paths.

    model = vitkit.from_pretrained("path/to/vilt-b32-finetuned-vqa")
    vitkit.vqa(model, "cats.jpg", "How many cats are there?")        # [{"label": "2", "score": 0.95}, ...]
    vitkit.itm_score(itm_model, "cats.jpg", "two cats on a sofa")      # 0.97
    vitkit.fill_mask(mlm_model, "cats.jpg", "two [MASK] on a sofa")    # [[{"token": "cats", ...}, ...]]
    vitkit.rank_texts(itm_model, "cats.jpg", captions)                 # [{"index": 3, "score": 0.97}, ...]

Retrieval (`retrieval_scores`, `rank_texts`, `rank_images`) embeds each image once (patches, resampled position
grid, modality type, masks) and tokenizes each text once, then runs only the text look-up and the joint
transformer per image-text pair (`ViLT.forward_joint`): ranking N captions costs one image embedding and
preprocessing plus N encoder passes, not N full forwards. The scores equal those of separate forwards
(tests/test_vilt_inference.py checks this to 1e-5); `python benchmarks/bench.py --only vilt_retrieval` measures
the saving. `vqa`, `itm_score` and retrieval scoring pack each batch's real tokens back to back
(`ViLT.pooled_output`: no padding in the per-token layers, the last block on [CLS] only); `fill_mask` buckets
pairs by image size and text length. Either way a mixed list of images and questions is not padded to its
largest image and longest text.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import nn

from ..errors import VitkitError
from ..models.vilt.model import HEAD_ATTRS, ViLT, ViLTOutput
from ..processing.bert import BertTokenizer
from ..processing.images import ImageInput, is_single_image
from ..processing.vilt import ViLTProcessor
from ..processing.vilt_config import ViLTProcessorConfig
from ..processing.vilt_images import resize_output_size
from ..utils.device import device_of

ImagesInput = ImageInput | Sequence[ImageInput]
TextsInput = str | Sequence[str]


# ---- set-up ----------------------------------------------------------------------------------------------------


def processor_for(model: nn.Module, vocab_file: str | os.PathLike | None = None) -> ViLTProcessor:
    """The ViLTProcessor a ViLT's weights expect: image geometry, mean/std and interpolation from its config, text
    cut at its `max_text_len`, and the shipped bert-base-uncased vocabulary (or `vocab_file`, e.g. a model
    directory's vocab.txt). Built once per (config, vocabulary) and reused."""
    c = require_vilt(model).config
    processor = _cached_processor(processor_config_for(model), None if vocab_file is None else str(vocab_file))
    if processor.tokenizer.vocab_size > c.vocab_size:
        raise VitkitError(f"the tokenizer has {processor.tokenizer.vocab_size} tokens but the model embeds only "
                          f"{c.vocab_size}; pass the vocabulary the model was trained with")
    return processor


def processor_config_for(model: nn.Module) -> ViLTProcessorConfig:
    """The image and text settings a ViLT's config implies (shorter / longer edge, divisor, mean, std,
    interpolation, text length): what training, evaluation and inference all preprocess with."""
    c = model.config
    return ViLTProcessorConfig(
        shorter_edge=c.shorter_edge, longer_edge=c.longer_edge, size_divisor=c.size_divisor, mean=tuple(c.mean),
        std=tuple(c.std), resample=c.interpolation, max_text_len=c.max_text_len,
    )


@functools.lru_cache(maxsize=8)
def _cached_processor(config: ViLTProcessorConfig, vocab_file: str | None) -> ViLTProcessor:
    return ViLTProcessor(config, BertTokenizer(vocab_file, max_length=config.max_text_len))


def require_vilt(model: nn.Module, head: str | None = None) -> ViLT:
    """`model` as a single-image ViLT that has `head` (a clear error otherwise)."""
    if not isinstance(model, ViLT):
        raise VitkitError(f"expected a ViLT model, got a {type(model).__name__}")
    c = model.config
    if c.num_images != 1:
        raise VitkitError(f"this ViLT takes {c.num_images} images per example (task {c.task!r}); the inference "
                          "helpers are for single-image models")
    if head is not None and head not in c.heads:
        have = ", ".join(c.heads) or "none (a backbone)"
        raise VitkitError(f"this needs a ViLT with a {head!r} head; the model's task is {c.task!r} (heads: {have})")
    return model


@contextmanager
def evaluating(model: nn.Module) -> Iterator[None]:
    """Eval mode and no autograd for the block; the model's previous mode is restored afterwards."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            yield
    finally:
        model.train(was_training)


def _pair_up(images: ImagesInput, texts: TextsInput) -> tuple[list[Any], list[str], bool]:
    """-> (images, texts, single): equal-length lists, one image or one text broadcast against many of the other.
    `single` is True when both were given as one item (callers then return one result, not a list)."""
    single = is_single_image(images) and isinstance(texts, str)
    ims = [images] if is_single_image(images) else list(images)  # type: ignore[arg-type]
    txt = [texts] if isinstance(texts, str) else list(texts)
    if not ims or not txt:
        raise VitkitError("got an empty list of images or texts")
    if len(ims) == 1 < len(txt):
        ims = ims * len(txt)  # the same object: preprocessed once (see _forward_pairs)
    elif len(txt) == 1 < len(ims):
        txt = txt * len(ims)
    if len(ims) != len(txt):
        raise VitkitError(f"got {len(ims)} images but {len(txt)} texts (give one of either, or equally many)")
    return ims, txt, single


def pixels_for(processor: ViLTProcessor, images: Sequence[Any], model: ViLT) -> tuple[torch.Tensor, torch.Tensor]:
    """Images -> (pixel_values [B, 3, H, W] in the model's dtype, pixel_mask [B, H, W]) on the model's device."""
    enc = processor(images=list(images))
    dtype = model.transformer.patch_embed.proj.weight.dtype
    device = device_of(model)
    return enc["pixel_values"].to(device, dtype), enc["pixel_mask"].to(device)


def _resized_hw(item: Any, config: ViLTProcessorConfig) -> tuple[int, int]:
    """The (height, width) an image will have after the processor's resize, read without decoding the pixels
    (PIL size / array shape / file header; EXIF rotations swap the sides, as `load_rgb` will). (0, 0) if unknown:
    the size only orders the batches, it never changes a result."""
    try:
        if isinstance(item, np.ndarray):
            h, w = item.shape[:2]
        elif isinstance(item, Image.Image):
            w, h = item.size
            if item.getexif().get(0x0112, 1) in (5, 6, 7, 8):
                h, w = w, h
        elif isinstance(item, (str, os.PathLike)):
            with Image.open(item) as im:
                w, h = im.size
                if im.getexif().get(0x0112, 1) in (5, 6, 7, 8):
                    h, w = w, h
        else:
            return 0, 0
        return resize_output_size(int(h), int(w), config) if h and w else (0, 0)
    except Exception:  # an unreadable file fails later, in the processor, with its own message
        return 0, 0


def _buckets(sizes: list[tuple[int, int]], lengths: list[int], batch_size: int, patch: int,
             slack: float = 0.125) -> list[list[int]]:
    """Length bucketing: pair indices sorted by (image size, text length), cut into batches of at most batch_size
    whose padded token count (batch x (longest text + 1 + largest patch grid)) exceeds their real token count by
    at most `slack`. A padded position costs as much as a real one, so mixed sizes in one batch would cost every
    pair the largest image and the longest text; alike pairs go together instead."""
    order = sorted(range(len(lengths)), key=lambda i: (sizes[i], lengths[i]))
    batches: list[list[int]] = []
    chunk: list[int] = []
    real = max_l = max_h = max_w = 0
    for i in order:
        (h, w), n = sizes[i], lengths[i]
        tokens = n + 1 + (h // patch) * (w // patch)
        mh, mw, ml = max(max_h, h), max(max_w, w), max(max_l, n)
        padded = (len(chunk) + 1) * (ml + 1 + (mh // patch) * (mw // patch))
        if chunk and (len(chunk) == batch_size or padded > (1 + slack) * (real + tokens)):
            batches.append(chunk)
            chunk, real, mh, mw, ml = [], 0, h, w, n
        chunk.append(i)
        real, max_h, max_w, max_l = real + tokens, mh, mw, ml
    return [*batches, chunk] if chunk else batches


def _forward_pairs(
    model: ViLT, processor: ViLTProcessor, images: list[Any], texts: list[str], batch_size: int,
    head: str | None = None,
) -> Iterator[tuple[list[int], torch.Tensor, Any]]:
    """Forwards over image-text pairs: yields (pair indices, input_ids [b, L] on CPU, output) per batch; the
    output is the ViLTOutput, or with `head` (one that reads the pooled output: vqa, itm) that head's logits.

    Texts are tokenized once; pairs are sorted by image size and text length. For a full output, batches are
    bucketed (`_buckets`) so a batch holds alike sizes and is cut to its own longest text and largest image; for
    a pooled head, `ViLT.pooled_output` packs each batch's real tokens without padding, so batches are simply
    `batch_size` consecutive pairs. Either way a mixed list costs about what its real tokens cost.
    When every pair shares one image object it is preprocessed once and its pixels expanded over each batch."""
    if batch_size < 1:
        raise VitkitError(f"batch_size must be >= 1, got {batch_size}")
    shared = pixels_for(processor, images[:1], model) if all(im is images[0] for im in images) else None
    device = device_of(model)
    enc = processor(text=texts)
    lengths = enc["attention_mask"].sum(1).tolist()
    sizes = [(0, 0)] * len(images) if shared is not None else [_resized_hw(im, processor.config) for im in images]
    slack = float("inf") if head is not None else 0.125  # packed: padding costs only in the embeddings
    for idx in _buckets(sizes, lengths, batch_size, model.config.patch_size, slack):
        L = max(lengths[i] for i in idx)
        ids, am, segments = (enc[k][idx, :L] for k in ("input_ids", "attention_mask", "token_type_ids"))
        if shared is None:
            pixel_values, pixel_mask = pixels_for(processor, [images[i] for i in idx], model)
        else:
            pixel_values = shared[0].expand(len(idx), -1, -1, -1)  # [b, 3, H, W]
            pixel_mask = shared[1].expand(len(idx), -1, -1)
        if head is None:
            yield idx, ids, model(ids.to(device), am.to(device), pixel_values, pixel_mask, segments.to(device))
        else:
            pooled = model.pooled_output(ids.to(device), am.to(device), pixel_values, pixel_mask, segments.to(device))
            yield idx, ids, getattr(model, HEAD_ATTRS[head])(pooled)


def head_logits(model: ViLT, out: ViLTOutput, head: str) -> torch.Tensor:
    """The logits of `head` in a ViLT output: `out.logits` for the model's task head, else its extra head's."""
    return out.logits if model.config.task == head else out.extra_logits[head]


# ---- VQA, ITM, MLM -------------------------------------------------------------------------------------------------


def vqa(
    model: nn.Module,
    image: ImagesInput,
    question: TextsInput,
    top_k: int = 5,
    *,
    batch_size: int = 32,
    processor: ViLTProcessor | None = None,
) -> list[dict[str, Any]] | list[list[dict[str, Any]]]:
    """Answer `question` about `image`: the top-k `{"label", "score"}` answers, best first.

    Scores are per-answer sigmoid probabilities (independent, not summing to 1): ViLT trains its VQA head with
    binary cross-entropy against soft VQA targets, and the original ViLT and transformers read it with a sigmoid
    too. Labels come from `model.config.labels` (`answer_<i>` when the model has none). One image and one
    question give one list; a list of either (one image for many questions, or one question for many images, or
    equally many of both) gives one list per pair.

    Args:
        model: a ViLT with a "vqa" head.
        image: a PIL image, an HW/HWC array or a file path, or a list of them.
        question: a question, or a list of them.
        top_k: how many answers per pair.
        batch_size: image-question pairs per forward.
        processor: the ViLT processor to use; None builds it from the model's config (`processor_for`).
    """
    vilt = require_vilt(model, "vqa")
    processor = processor or processor_for(vilt)
    images, questions, single = _pair_up(image, question)
    blank = [i for i, q in enumerate(questions) if isinstance(q, str) and not q.strip()]
    if blank:  # the model would still score its answers (over the image alone): an answer to nothing
        which = "the question is" if single else f"question {blank[0]} (of {len(questions)}) is"
        raise VitkitError(f"{which} empty: a VQA model answers a question about the image; ask one")
    n = vilt.config.num_answers
    labels = list(vilt.config.labels) if vilt.config.labels else [f"answer_{i}" for i in range(n)]
    k = max(1, min(top_k, n))
    results: list[list[dict[str, Any]]] = [[] for _ in questions]
    with evaluating(vilt):
        for pairs, _, logits in _forward_pairs(vilt, processor, images, questions, batch_size, head="vqa"):
            top = logits.float().sigmoid().topk(k, dim=-1)  # [b, k]
            for i, scores, idx in zip(pairs, top.values.tolist(), top.indices.tolist()):
                results[i] = [{"label": labels[j], "score": s} for s, j in zip(scores, idx)]
    return results[0] if single else results


def itm_score(
    model: nn.Module,
    image: ImagesInput,
    text: TextsInput,
    *,
    batch_size: int = 32,
    processor: ViLTProcessor | None = None,
) -> float | list[float]:
    """Probability that `text` describes `image`: softmax over the ITM head's two logits, index 1 = match (as
    ViLT's pretraining labels them). Works for ITM models and any ViLT with "itm" among its extra heads (the
    pretraining checkpoint). One pair gives a float; lists (broadcast as in `vqa`) give a list.

    Args:
        model: a ViLT with an "itm" head.
        image: a PIL image, an HW/HWC array or a file path, or a list of them.
        text: a caption, or a list of them.
        batch_size: image-text pairs per forward.
        processor: the ViLT processor to use; None builds it from the model's config (`processor_for`).
    """
    vilt = require_vilt(model, "itm")
    processor = processor or processor_for(vilt)
    images, texts, single = _pair_up(image, text)
    scores = [0.0] * len(texts)
    with evaluating(vilt):
        for pairs, _, logits in _forward_pairs(vilt, processor, images, texts, batch_size, head="itm"):
            for i, p in zip(pairs, logits.float().softmax(-1)[:, 1].tolist()):
                scores[i] = p
    return scores[0] if single else scores


def fill_mask(
    model: nn.Module,
    image: ImagesInput,
    text: TextsInput,
    top_k: int = 5,
    *,
    batch_size: int = 32,
    processor: ViLTProcessor | None = None,
) -> list[list[dict[str, Any]]] | list[list[list[dict[str, Any]]]]:
    """Fill each `[MASK]` in `text` from the image: for every [MASK], in order, the top-k
    `{"token", "token_id", "score"}` WordPiece predictions of the MLM head (softmax over the vocabulary, each
    position on its own, as BERT's fill-mask). Every text needs at least one [MASK]. One pair gives the
    per-mask list; lists (broadcast as in `vqa`) give one such list per pair.

    Args:
        model: a ViLT with an "mlm" head.
        image: a PIL image, an HW/HWC array or a file path, or a list of them.
        text: a text with one or more "[MASK]", or a list of them.
        top_k: how many tokens per [MASK].
        batch_size: image-text pairs per forward.
        processor: the ViLT processor to use; None builds it from the model's config (`processor_for`).
    """
    vilt = require_vilt(model, "mlm")
    processor = processor or processor_for(vilt)
    images, texts, single = _pair_up(image, text)
    tok = processor.tokenizer
    for t in texts:
        if "[MASK]" not in t:
            raise VitkitError(f"text has no [MASK] to fill: {t!r}")
    vocab = tok.vocab_size  # logits past the tokenizer's vocabulary (if the model has more rows) have no token
    k = max(1, min(top_k, vocab))
    results: list[list[list[dict[str, Any]]]] = [[] for _ in texts]
    with evaluating(vilt):
        for pairs, ids, out in _forward_pairs(vilt, processor, images, texts, batch_size):
            logits = head_logits(vilt, out, "mlm")[..., :vocab]  # [b, L, V]
            for i, row, row_logits in zip(pairs, ids, logits):
                where = (row == tok.mask_token_id).nonzero().flatten()  # [M] positions of [MASK]
                if where.numel() == 0:
                    raise VitkitError("every [MASK] was cut off: the text is longer than the model's max_text_len")
                top = row_logits[where.to(row_logits.device)].float().softmax(-1).topk(k, dim=-1)  # [M, k]
                results[i] = [
                    [{"token": tok.convert_ids_to_tokens(j), "token_id": j, "score": s} for s, j in zip(ss, ii)]
                    for ss, ii in zip(top.values.tolist(), top.indices.tolist())
                ]
    return results[0] if single else results


# ---- retrieval -----------------------------------------------------------------------------------------------------


def retrieval_scores(
    model: nn.Module,
    images: ImagesInput,
    texts: TextsInput,
    *,
    batch_size: int = 64,
    processor: ViLTProcessor | None = None,
) -> torch.Tensor:
    """Score every image against every text: [num_images, num_texts] float32 on the CPU, higher = better match.

    The score is the retrieval head's logit when the model has one (task "retrieval"), else the ITM head's match
    probability (softmax index 1). Each image is embedded once (`ViLT.embed_image` + its modality type; images
    go `batch_size` at a time) and each text tokenized once; per pair only the text look-up and the joint
    transformer (`ViLT.forward_joint`) run, `batch_size` pairs at a time, each batch cut to its longest text.

    Args:
        model: a ViLT with a "retrieval" or an "itm" head.
        images: one image or a list (PIL images, HW/HWC arrays or file paths).
        texts: one text or a list.
        batch_size: images embedded, and image-text pairs scored, per forward.
        processor: the ViLT processor to use; None builds it from the model's config (`processor_for`).
    """
    heads = require_vilt(model).config.heads
    head = "retrieval" if "retrieval" in heads else "itm"
    vilt = require_vilt(model, head)
    processor = processor or processor_for(vilt)
    ims = [images] if is_single_image(images) else list(images)  # type: ignore[arg-type]
    txt = [texts] if isinstance(texts, str) else list(texts)
    if not ims or not txt:
        raise VitkitError("got an empty list of images or texts")
    if batch_size < 1:
        raise VitkitError(f"batch_size must be >= 1, got {batch_size}")
    device = device_of(vilt)
    enc = processor(text=txt)
    lengths = enc["attention_mask"].sum(1)  # [T] on the CPU: batches are cut to their longest text without a sync
    ids, segments, text_masks = (enc[k].to(device) for k in ("input_ids", "token_type_ids", "attention_mask"))
    scores = torch.empty(len(ims), len(txt))
    with evaluating(vilt):
        for i0 in range(0, len(ims), batch_size):
            embedded = _embed_images(vilt, processor, ims[i0 : i0 + batch_size])  # each image once
            scores[i0 : i0 + embedded[0].shape[0]] = score_embedded_pairs(
                vilt, embedded, ids, text_masks, lengths, head=head, batch_size=batch_size, segments=segments)
    return scores


def score_embedded_pairs(
    model: ViLT,
    embedded: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
    ids: torch.Tensor,
    text_masks: torch.Tensor,
    lengths: torch.Tensor,
    *,
    head: str,
    batch_size: int = 64,
    segments: torch.Tensor | None = None,
) -> torch.Tensor:
    """Every embedded image against every text: [I, T] scores on the CPU. Per pair only the text look-up and the
    joint encoder run, `batch_size` pairs at a time, shortest texts first so each batch is cut to the least
    padding.

    Args:
        model: the ViLT.
        embedded: the images' half of the input, computed once: (tokens [I, 1+N, D] with modality type 1,
            masks [I, 1+N], patch_index [I, N, 2]), as `ViLT.embed_image` plus the type embedding gives them.
        ids: token ids [T, L] on the model's device.
        text_masks: attention masks [T, L] on the model's device.
        lengths: real tokens per text [T], on the CPU (batches are cut to their longest text without a sync).
        head: "retrieval" (the rank logit) or "itm" (the match probability).
        batch_size: image-text pairs per forward.
        segments: token type ids [T, L] on the model's device (None: all zeros).
    """
    image, image_masks, patch_index = embedded
    I, T = image.shape[0], ids.shape[0]
    by_length = lengths.argsort(stable=True)
    flat = torch.empty(I * T)  # pairs image-major: image * T + text
    text_type = model.token_type_embeddings.weight[0]  # [D] modality type 0
    score_head = model.rank_output if head == "retrieval" else model.itm_score
    for p0 in range(0, I * T, batch_size):
        pairs = torch.arange(p0, min(p0 + batch_size, I * T))
        im, tx = pairs // T, by_length[pairs % T]
        L = int(lengths[tx].max())
        where = im * T + tx  # [b] these pairs' places in `flat`
        im, tx = im.to(image.device), tx.to(image.device)
        # Text embeddings are a table look-up + LayerNorm: recomputed per batch rather than held for all texts.
        text = model.text_embeddings(ids[tx, :L], None if segments is None else segments[tx, :L]) + text_type
        if model.config.image_attends_text:  # packed: no text or image padding, the [CLS] row alone at the end
            pooled = model.pooled_joint(text, text_masks[tx, :L].bool(), image[im], image_masks[im])
        else:  # one-way fusion: the batch's few images are encoded once each, not once per pair
            ims, inv = im.unique(return_inverse=True)
            pooled = model.forward_joint(text, text_masks[tx, :L].bool(), image[ims], image_masks[ims],
                                         patch_index[ims], image_index=inv, pooled_only=True).pooled
        logits = score_head(pooled).float()
        flat[where] = (logits[:, 0] if head == "retrieval" else logits.softmax(-1)[:, 1]).cpu()
    return flat.view(I, T)


def _embed_images(
    model: ViLT, processor: ViLTProcessor, images: Sequence[ImageInput]
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Images -> the image half of ViLT's input, computed once: tokens [B, 1+N, D] (patches + resampled position
    grid + image [CLS] + modality type 1), masks [B, 1+N] bool, patch_index [B, N, 2], padded to the largest."""
    pixel_values, pixel_mask = pixels_for(processor, images, model)
    tokens, masks, patch_index = model.embed_image(pixel_values, pixel_mask)
    return tokens + model.token_type_embeddings.weight[1], masks, patch_index


def _ranked(scores: torch.Tensor, top_k: int | None) -> list[dict[str, Any]]:
    order = scores.argsort(descending=True, stable=True)[: top_k if top_k is not None else None]
    return [{"index": int(i), "score": float(scores[i])} for i in order]


def rank_texts(
    model: nn.Module,
    image: ImageInput,
    texts: Sequence[str],
    *,
    top_k: int | None = None,
    batch_size: int = 64,
    processor: ViLTProcessor | None = None,
) -> list[dict[str, Any]]:
    """Text retrieval: `texts` ranked for one image, best first, as `{"index", "score"}` (index into `texts`;
    score as in `retrieval_scores`). The image is embedded once; each extra text costs one encoder pass.

    Args:
        model: a ViLT with a "retrieval" or an "itm" head.
        image: one image (PIL image, HW/HWC array or file path).
        texts: the candidate texts.
        top_k: how many to return (None: all, ranked).
        batch_size: image-text pairs per forward.
        processor: the ViLT processor to use; None builds it from the model's config (`processor_for`).
    """
    if not is_single_image(image):
        raise VitkitError("rank_texts takes one image (use retrieval_scores for many)")
    return _ranked(retrieval_scores(model, image, texts, batch_size=batch_size, processor=processor)[0], top_k)


def rank_images(
    model: nn.Module,
    images: Sequence[ImageInput],
    text: str,
    *,
    top_k: int | None = None,
    batch_size: int = 64,
    processor: ViLTProcessor | None = None,
) -> list[dict[str, Any]]:
    """Image retrieval: `images` ranked for one text, best first, as `{"index", "score"}` (index into `images`;
    score as in `retrieval_scores`). Each image is embedded once and the text once.

    Args:
        model: a ViLT with a "retrieval" or an "itm" head.
        images: the candidate images (PIL images, HW/HWC arrays or file paths).
        text: one text.
        top_k: how many to return (None: all, ranked).
        batch_size: images embedded, and image-text pairs scored, per forward.
        processor: the ViLT processor to use; None builds it from the model's config (`processor_for`).
    """
    if not isinstance(text, str):
        raise VitkitError("rank_images takes one text (use retrieval_scores for many)")
    return _ranked(retrieval_scores(model, images, text, batch_size=batch_size, processor=processor)[:, 0], top_k)


__all__ = [
    "fill_mask",
    "itm_score",
    "processor_for",
    "rank_images",
    "rank_texts",
    "retrieval_scores",
    "vqa",
]
