"""Pictures for people: training curves and confusion matrices (PNG, matplotlib's Agg backend, no display).

Attention maps and word-patch alignments live next to the models that make them."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .files import atomic_save_image


def pyplot():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def read_jsonl(path: Path) -> list[dict]:
    rows = []
    for line in Path(path).read_text().splitlines():
        line = line.strip()
        if line:
            rows.append(json.loads(line))
    return rows


def plot_training_curves(metrics_jsonl: Path, out_png: Path, *, metric: str = "val_top1") -> Path:
    """Loss (per logging window and per epoch on val), the validation metric (and its EMA twin), and the
    learning rate, against optimizer steps."""
    rows = read_jsonl(metrics_jsonl)
    steps = [r for r in rows if "loss" in r and "lr" in r]
    evals = [r for r in rows if metric in r]
    plt = pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    ax = axes[0]
    ax.plot([r["step"] for r in steps], [r["loss"] for r in steps], label="train loss", lw=1)
    if evals and "val_loss" in evals[0]:
        ax.plot([r["step"] for r in evals], [r["val_loss"] for r in evals], "o-", label="val loss")
    ax.set(xlabel="step", ylabel="loss", title="loss")
    ax.legend()
    ax = axes[1]
    if evals:
        ax.plot([r["step"] for r in evals], [r[metric] for r in evals], "o-", label=metric)
        if f"ema_{metric}" in evals[0]:
            ax.plot([r["step"] for r in evals], [r[f"ema_{metric}"] for r in evals], "s--", label=f"EMA {metric}")
        ax.legend()
    ax.set(xlabel="step", ylabel=metric, title=metric)
    ax.grid(alpha=0.3)
    ax = axes[2]
    ax.plot([r["step"] for r in steps], [r["lr"] for r in steps])
    ax.set(xlabel="step", ylabel="learning rate", title="learning rate")
    fig.tight_layout()
    atomic_save_image(out_png, fig, dpi=110)
    plt.close(fig)
    return Path(out_png)


def plot_confusion_matrix(matrix: np.ndarray, labels: Sequence[str], out_png: Path, *, title: str = "") -> Path:
    """Row-normalised confusion matrix (rows: true class, columns: predicted), counts in the cells when few."""
    m = np.asarray(matrix, dtype=np.float64)
    norm = m / np.maximum(m.sum(axis=1, keepdims=True), 1)
    n = len(labels)
    plt = pyplot()
    size = min(4 + 0.45 * n, 20)
    fig, ax = plt.subplots(figsize=(size, size))
    ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    if n <= 30:
        ax.set_xticks(range(n), labels, rotation=90)
        ax.set_yticks(range(n), labels)
        for i in range(n):
            for j in range(n):
                if m[i, j]:
                    ax.text(j, i, int(m[i, j]), ha="center", va="center", fontsize=8,
                            color="white" if norm[i, j] > 0.5 else "black")
    ax.set(xlabel="predicted", ylabel="true", title=title or "confusion matrix")
    fig.tight_layout()
    atomic_save_image(out_png, fig, dpi=110)
    plt.close(fig)
    return Path(out_png)


# ------------------------------------------------------------------------------------------ attention maps
def attention_rollout(attentions: Sequence, *, num_prefix: int = 1, residual: float = 0.5):
    """Attention rollout (Abnar & Zuidema 2020, https://arxiv.org/abs/2005.00928): per layer, the head-mean
    attention mixed with the identity for the residual path, rows renormalised, multiplied through the depth.

    attentions: per layer [B, heads, N, N]. Returns [B, N - num_prefix]: how much each patch flows into the
    [CLS] token (the mean over all tokens' rows when the model has no prefix token).
    """
    import torch

    rollout = None
    for attn in attentions:
        a = attn.float().mean(dim=1)  # [B, N, N]
        eye = torch.eye(a.shape[-1], device=a.device)
        a = residual * eye + (1 - residual) * a
        a = a / a.sum(dim=-1, keepdim=True)
        rollout = a if rollout is None else a @ rollout
    assert rollout is not None, "no attention maps given"
    rows = rollout[:, 0] if num_prefix else rollout.mean(dim=1)  # [B, N]
    return rows[:, num_prefix:]


def last_layer_cls_attention(attentions: Sequence, *, num_prefix: int = 1):
    """[B, N - num_prefix]: the last layer's head-mean attention from [CLS] (or from all tokens) to the patches."""
    a = attentions[-1].float().mean(dim=1)  # [B, N, N]
    rows = a[:, 0] if num_prefix else a.mean(dim=1)
    return rows[:, num_prefix:]


def plot_attention_overlay(image, maps: dict[str, np.ndarray], out_png: Path, *, title: str = "") -> Path:
    """The picture, then each [gh, gw] map upsampled to it and overlaid as a heat map."""
    from PIL import Image

    plt = pyplot()
    img = np.asarray(image.convert("RGB"))
    h, w = img.shape[:2]
    fig, axes = plt.subplots(1, 1 + len(maps), figsize=(4 * (1 + len(maps)), 4.4))
    axes[0].imshow(img)
    axes[0].set_title(title or "input")
    for ax, (name, grid) in zip(axes[1:], maps.items()):
        g = np.asarray(grid, dtype=np.float32)
        g = (g - g.min()) / max(float(g.max() - g.min()), 1e-12)
        heat = np.asarray(Image.fromarray((g * 255).astype(np.uint8)).resize((w, h), Image.Resampling.BICUBIC))
        ax.imshow(img)
        ax.imshow(heat, cmap="jet", alpha=0.5)
        ax.set_title(name)
    for ax in axes:
        ax.axis("off")
    fig.tight_layout()
    atomic_save_image(out_png, fig, dpi=110)
    plt.close(fig)
    return Path(out_png)


def save_sample_grid(images: np.ndarray, out_png: Path, *, ncol: int, row_labels: Sequence[str] | None = None,
                     scale: int | None = None, pad: int = 2) -> Path:
    """Images `[N, H, W, C]` uint8 (C = 1 or 3) as one PNG grid of `ncol` columns, rows in order, optionally
    with a label left of each row. Small images are enlarged by an integer `scale` (nearest neighbour; default:
    up to about 64 px) so that a grid of 32x32 samples is readable."""
    from PIL import Image, ImageDraw

    images = np.asarray(images)
    if images.ndim != 4 or images.shape[-1] not in (1, 3) or images.dtype != np.uint8:
        raise ValueError(f"expected uint8 images [N, H, W, 1 or 3], got {images.dtype} {images.shape}")
    n, h, w, c = images.shape
    if n == 0 or ncol < 1:
        raise ValueError("no images to draw")
    scale = scale or max(1, 64 // max(h, w))
    h, w = h * scale, w * scale
    nrow = -(-n // ncol)
    label_w = 0
    if row_labels:
        label_w = 8 + 6 * max(len(str(s)) for s in row_labels[:nrow])
    grid = Image.new("RGB", (label_w + ncol * (w + pad) + pad, nrow * (h + pad) + pad), (255, 255, 255))
    draw = ImageDraw.Draw(grid)
    for i in range(n):
        r, col = divmod(i, ncol)
        tile = images[i] if c == 3 else np.repeat(images[i], 3, axis=-1)
        tile_im = Image.fromarray(tile).resize((w, h), Image.Resampling.NEAREST)
        grid.paste(tile_im, (label_w + pad + col * (w + pad), pad + r * (h + pad)))
    for r, text in enumerate((row_labels or [])[:nrow]):
        draw.text((4, pad + r * (h + pad) + h // 2 - 5), str(text), fill=(0, 0, 0))
    atomic_save_image(out_png, grid)
    return Path(out_png)
