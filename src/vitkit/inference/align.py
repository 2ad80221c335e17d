"""Which image patches each word of a text aligns with, in a ViLT: word-patch alignment (WPA) heat maps from the
IPOT transport plan, as in Figure 5 of the ViLT paper (Kim et al. 2021, https://arxiv.org/abs/2102.03334), and
the last layer's text-to-image attention.

The plan is the one ViLT's WPA objective computes (`vitkit.ot.word_patch_alignment`): IPOT between the final
layer's text features and image patch features under cosine cost, over the real word pieces (no [CLS] / [SEP],
no padding) and the real image patches (no image [CLS], no padding patches). Each word piece carries
1 / (number of pieces) of mass, spread over the patches it is transported to; a whole word's map is the sum of
its pieces' rows.

    model = vitkit.from_pretrained("path/to/vilt-b32-mlm-itm")
    a = word_patch_alignment(model, "giraffes.jpg", "a giraffe eating leaves")
    a.words, a.word_heatmaps().shape            # ['a', 'giraffe', 'eating', 'leaves'], [4, rows, cols]
    plot_alignment(a, "align.png")              # the image, one overlay per word, the question's attention
    align("path/to/model", "giraffes.jpg", "a giraffe eating leaves", "align.png")  # both, from a path
"""

from __future__ import annotations

import math
import os
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..errors import ConfigError, VitkitError
from ..models.vilt import ot
from ..models.vilt.model import ViLT, ViLTOutput
from ..processing.images import ImageInput
from ..processing.vilt import ViLTProcessor
from ..utils.device import device_of
from ..utils.files import atomic_save_image
from .vilt import evaluating, head_logits, pixels_for, processor_for, require_vilt

TOP_ANSWERS = 3


@dataclass
class Alignment:
    """Word-patch alignment of one image-text pair. T = real word pieces, W = whole words, (rows, cols) = the
    image's valid patch grid, P = rows * cols patches in row-major order. Tensors are float32 on the CPU."""

    text: str
    tokens: list[str]  # [T] word pieces between [CLS] and [SEP] ("gi", "##raf", "##fe")
    words: list[str]  # [W] whole words the pieces form ("giraffe"), in order
    token_words: list[int]  # [T] index into `words` of each piece
    plan: torch.Tensor  # [T, P] IPOT plan, real pieces x valid patches; rows sum to 1 / T, all to 1
    heatmaps: torch.Tensor  # [T, rows, cols] each piece's plan row on the patch grid
    token_attention: torch.Tensor  # [T, rows, cols] last layer, mean over heads: attention of each piece to patches
    question_attention: torch.Tensor  # [rows, cols] the mean of `token_attention` over the pieces
    grid: tuple[int, int]  # (rows, cols) of valid patches
    patch_size: int
    image: np.ndarray  # [H, W, 3] uint8: the resized RGB image the model saw, normalisation undone
    distance: float  # the WPA (IPOT) distance: sum(cost * plan)
    answer: list[dict[str, Any]] | None = None  # VQA head: top-3 {"label", "score"} (sigmoid), best first
    itm_score: float | None = None  # ITM head: probability that the text matches the image

    def word_plan(self) -> torch.Tensor:
        """[W, P]: the plan rows of each word's pieces summed."""
        index = torch.tensor(self.token_words, dtype=torch.long)
        return torch.zeros(len(self.words), self.plan.shape[1]).index_add_(0, index, self.plan)

    def word_heatmaps(self) -> torch.Tensor:
        """[W, rows, cols]: each whole word's transport mass on the patch grid."""
        index = torch.tensor(self.token_words, dtype=torch.long)
        return torch.zeros(len(self.words), *self.grid).index_add_(0, index, self.heatmaps)

    def summary(self) -> dict[str, Any]:
        """JSON-able: text, tokens, words, grid, distance, answer, itm_score."""
        return {"text": self.text, "tokens": list(self.tokens), "words": list(self.words), "grid": list(self.grid),
                "distance": self.distance, "answer": self.answer, "itm_score": self.itm_score}


# ---- computing -----------------------------------------------------------------------------------------------------


def word_patch_alignment(
    model: nn.Module, image: ImageInput, text: str, *, processor: ViLTProcessor | None = None
) -> Alignment:
    """Align `text` with `image` in a single-image ViLT: one forward (eval mode, no grad, on the model's device)
    with attentions, the WPA plan of its final-layer features, heat maps over the valid patch grid, and the
    answer (VQA head) or match probability (ITM head) when the model has one. `processor` defaults to the
    model's (`vitkit.vilt_inference.processor_for`)."""
    vilt = require_vilt(model)
    if not isinstance(text, str):
        raise VitkitError(f"text must be a string, got {type(text).__name__}")
    processor = processor or processor_for(vilt)
    enc = processor(text=[text], return_word_ids=True)
    pixel_values, pixel_mask = pixels_for(processor, [image], vilt)
    enc.update(pixel_values=pixel_values, pixel_mask=pixel_mask)
    device = device_of(vilt)
    with evaluating(vilt):
        out = vilt(enc["input_ids"].to(device), enc["attention_mask"].to(device), pixel_values, pixel_mask,
                   enc["token_type_ids"].to(device), output_attentions=True)
    return alignment_from_output(vilt, out, enc, processor, text=text)


def alignment_from_output(
    model: ViLT,
    output: ViLTOutput,
    inputs: dict[str, torch.Tensor],
    processor: ViLTProcessor,
    *,
    row: int = 0,
    text: str | None = None,
) -> Alignment:
    """The `Alignment` of one example of a batch the model has already run.

    Args:
        model: the ViLT that produced `output`.
        output: its forward's output, run with `output_attentions=True`.
        inputs: the processor's dict for that batch (`input_ids`, `pixel_values`, `pixel_mask`, and `word_ids`
            from `return_word_ids=True`).
        processor: the processor that built `inputs` (for the tokens and the image geometry).
        row: which example of the batch.
        text: the example's text, for the summary; None decodes it from the input ids.
    """
    if output.attentions is None:
        raise VitkitError("the forward was run without output_attentions=True")
    if "word_ids" not in inputs:
        raise VitkitError("inputs lack word_ids: encode the text with return_word_ids=True")
    with torch.no_grad():
        distance, plan = ot.word_patch_alignment(output.text_feats, output.image_feats, output.text_masks,
                                                 output.image_masks)  # [B], [B, Lt, 1 + Li]
        t_mask, i_mask = ot.wpa_masks(output.text_masks, output.image_masks)
        t_mask, i_mask = t_mask[row].cpu(), i_mask[row, 1:].cpu()  # [Lt] real pieces, [Li] valid patches
        if not t_mask.any():
            raise VitkitError("the text has no tokens to align")
        if not i_mask.any():
            raise VitkitError("the image has no valid patches")
        where = output.patch_index[row].cpu()[i_mask]  # [P, 2] (row, col) of each valid patch
        grid = (int(where[:, 0].max()) + 1, int(where[:, 1].max()) + 1)
        plan_rows = plan[row].float().cpu()[t_mask][:, 1:][:, i_mask]  # [T, P]
        Lt = output.text_feats.shape[1]
        attn = output.attentions[-1][row].float().mean(0).cpu()  # [N, N] over [text | image CLS | patches]
        attn_rows = attn[: Lt][t_mask][:, Lt + 1 :][:, i_mask]  # [T, P]
    ids = inputs["input_ids"][row].cpu()[t_mask].tolist()
    word_ids = inputs["word_ids"][row].cpu()[t_mask].tolist()
    tokens = processor.tokenizer.convert_ids_to_tokens(ids)
    words, token_words = _merge_pieces(tokens, word_ids)
    answer, itm = _head_scores(model, output, row)
    return Alignment(
        text=text if text is not None else processor.decode(inputs["input_ids"][row]),
        tokens=tokens, words=words, token_words=token_words, plan=plan_rows,
        heatmaps=_on_grid(plan_rows, where, grid), token_attention=_on_grid(attn_rows, where, grid),
        question_attention=_on_grid(attn_rows.mean(0, keepdim=True), where, grid)[0], grid=grid,
        patch_size=model.config.patch_size, image=_seen_image(inputs, processor, row),
        distance=float(distance[row]), answer=answer, itm_score=itm,
    )


def _on_grid(values: torch.Tensor, where: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """[K, P] per-patch values + [P, 2] patch positions -> [K, rows, cols] (zero where no patch lies)."""
    out = torch.zeros(values.shape[0], *grid)
    out[:, where[:, 0], where[:, 1]] = values
    return out


def _merge_pieces(tokens: list[str], word_ids: list[int]) -> tuple[list[str], list[int]]:
    """Word pieces + the tokenizer's word index of each -> (whole words, index into them of each piece)."""
    words: list[str] = []
    token_words: list[int] = []
    last = None
    for tok, wid in zip(tokens, word_ids):
        piece = tok[2:] if tok.startswith("##") else tok
        if wid != last or wid < 0 or not words:
            words.append(piece)
        else:
            words[-1] += piece
        token_words.append(len(words) - 1)
        last = wid
    return words, token_words


def _head_scores(model: ViLT, output: ViLTOutput, row: int) -> tuple[list[dict[str, Any]] | None, float | None]:
    """(VQA top-3 answers with sigmoid scores, ITM match probability), each None without that head."""
    c = model.config
    answer = itm = None
    if "vqa" in c.heads:
        labels = list(c.labels) if c.labels else [f"answer_{i}" for i in range(c.num_answers)]
        top = head_logits(model, output, "vqa")[row].float().sigmoid().topk(min(TOP_ANSWERS, c.num_answers))
        answer = [{"label": labels[j], "score": s} for s, j in zip(top.values.tolist(), top.indices.tolist())]
    if "itm" in c.heads:
        itm = float(head_logits(model, output, "itm")[row].float().softmax(-1)[1])
    return answer, itm


def _seen_image(inputs: dict[str, torch.Tensor], processor: ViLTProcessor, row: int) -> np.ndarray:
    """The model's input pixels with normalisation undone, cropped to the real (unpadded) pixels: [H, W, 3] uint8."""
    x = inputs["pixel_values"][row].float().cpu()  # [3, H, W]
    mask = inputs["pixel_mask"][row].cpu().bool()  # [H, W]
    h, w = int(mask.any(1).sum()), int(mask.any(0).sum())
    mean = torch.tensor(processor.config.mean, dtype=torch.float32)[:, None, None]
    std = torch.tensor(processor.config.std, dtype=torch.float32)[:, None, None]
    rgb = (x[:, :h, :w] * std + mean).clamp(0, 1).mul(255).round().to(torch.uint8)
    return rgb.permute(1, 2, 0).numpy()


# ---- drawing -------------------------------------------------------------------------------------------------------


def plot_alignment(
    alignment: Alignment, out_png: str | os.PathLike, *, words: Sequence[str] | None = None, max_words: int = 8
) -> Path:
    """One PNG: the image the model saw, one panel per whole word with its transport plan (pieces summed)
    upsampled and overlaid, and a panel with the question's last-layer image attention; the answer or ITM score
    in the title. `words` picks the words to draw (case-insensitive, each occurrence in the text); by default
    the first `max_words` words that hold a letter or digit."""
    from ..utils.viz import pyplot

    if max_words < 0:
        raise VitkitError(f"max_words must be >= 0, got {max_words}")
    chosen = _choose_words(alignment.words, words, max_words)
    maps = alignment.word_heatmaps()  # [W, rows, cols]
    panels: list[tuple[str, np.ndarray | None]] = [("image", None)]
    seen: dict[str, int] = {}
    for i in chosen:
        w = alignment.words[i]
        seen[w] = seen.get(w, 0) + 1
        panels.append((w if seen[w] == 1 else f"{w} ({seen[w]})", maps[i].numpy()))
    panels.append(("question attention", alignment.question_attention.numpy()))

    plt = pyplot()
    img = alignment.image
    cols = min(len(panels), 5)
    rows = math.ceil(len(panels) / cols)
    aspect = img.shape[0] / max(img.shape[1], 1)
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, (3.2 * aspect + 0.5) * rows + 0.8), squeeze=False)
    for ax, (title, grid) in zip(axes.flat, panels):
        ax.imshow(img)
        if grid is not None:
            _overlay(ax, grid, alignment.patch_size)
        ax.set_title(title, fontsize=11)
    for ax in axes.flat:
        ax.axis("off")
    fig.suptitle(_headline(alignment), fontsize=11)
    fig.tight_layout()
    atomic_save_image(out_png, fig, dpi=110)
    plt.close(fig)
    return Path(out_png)


def _choose_words(all_words: list[str], words: Sequence[str] | None, max_words: int) -> list[int]:
    """Indices into `all_words` to draw."""
    if words is None:
        return [i for i, w in enumerate(all_words) if any(ch.isalnum() for ch in w)][:max_words]
    if isinstance(words, str):
        words = [words]
    chosen: list[int] = []
    lowered = [w.lower() for w in all_words]
    for want in words:
        hits = [i for i, w in enumerate(lowered) if w == want.lower()]
        if not hits:
            raise VitkitError(f"{want!r} is not a word of the text; its words are: {', '.join(all_words)}")
        chosen.extend(i for i in hits if i not in chosen)
    return chosen


def _overlay(ax: Any, grid: np.ndarray, patch_size: int) -> None:
    """A [rows, cols] patch map scaled to [0, 1] (min to max), smoothly upsampled and drawn as a heat map over
    the patches it covers."""
    from PIL import Image

    g = np.asarray(grid, dtype=np.float32)
    g = (g - g.min()) / max(float(g.max() - g.min()), 1e-12)
    rows, cols = g.shape
    heat = Image.fromarray(g).resize((cols * patch_size, rows * patch_size), Image.Resampling.BILINEAR)
    ax.imshow(np.asarray(heat), cmap="jet", alpha=0.5, vmin=0.0, vmax=1.0,
              extent=(-0.5, cols * patch_size - 0.5, rows * patch_size - 0.5, -0.5))


def _headline(a: Alignment) -> str:
    lines = textwrap.wrap(f'"{a.text}"', 100) or ['""']
    if a.answer is not None:
        lines.append("answer: " + ", ".join(f"{x['label']} {x['score']:.2f}" for x in a.answer))
    if a.itm_score is not None:
        lines.append(f"image-text match: {a.itm_score:.2f}")
    return "\n".join(lines)


# ---- one call ------------------------------------------------------------------------------------------------------


def align(
    model_or_source: nn.Module | str | os.PathLike,
    image: ImageInput,
    text: str,
    out_png: str | os.PathLike,
    *,
    words: Sequence[str] | None = None,
    max_words: int = 8,
    device: str | torch.device | None = None,
    processor: ViLTProcessor | None = None,
) -> dict[str, Any]:
    """`word_patch_alignment` + `plot_alignment` in one call (what `vitkit align` runs).

    Args:
        model_or_source: a ViLT, or anything `vitkit.from_pretrained` reads (a directory's own vocab.txt is
            used when it has one).
        image: a PIL image, an HW/HWC array or an image file path.
        text: the question or caption whose words are aligned with the image's patches.
        out_png: where the picture is written.
        words: the words to draw (None: the first `max_words` content words).
        max_words: how many words to draw at most.
        device: "auto", "cpu", "cuda", ... to move the model there; None leaves it where it is.
        processor: the ViLT processor to use; None builds it from the model's config.

    Returns:
        A JSON-able summary: text, tokens, words, grid, distance, answer (VQA top-3 or None), itm_score (or
        None), shown (the words drawn) and out (the PNG's path).
    """
    model, vocab = model_or_source, None
    if not isinstance(model, nn.Module):
        from ..registry import from_pretrained

        source = str(model_or_source)
        model = from_pretrained(source)
        vocab = Path(source) / "vocab.txt"
        where = source
    else:
        where = "the given model"
    if not isinstance(model, ViLT):
        raise ConfigError(f"{where} is a {type(model).__name__}, not a ViLT: word-patch alignment needs a ViLT "
                          "(VQA, ITM or pretraining checkpoint)")
    if device is not None:
        from ..utils.device import resolve_device

        model.to(resolve_device(str(device)))
    if processor is None:
        processor = processor_for(model, vocab if vocab is not None and vocab.is_file() else None)
    alignment = word_patch_alignment(model, image, text, processor=processor)
    path = plot_alignment(alignment, out_png, words=words, max_words=max_words)
    shown = [alignment.words[i] for i in _choose_words(alignment.words, words, max_words)]
    return {**alignment.summary(), "shown": shown, "out": str(path)}


__all__ = ["Alignment", "align", "alignment_from_output", "plot_alignment", "word_patch_alignment"]
