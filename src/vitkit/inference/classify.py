"""Using a trained image classifier: predict labels for images, and attention maps (evaluation on a dataset's val
split is `vitkit.train.evaluate.evaluate_classifier`).

Preprocessing comes from the model's own config (size, mean, std, crop, interpolation), so it matches what
training used."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..data.imagefolder import is_image_file
from ..data.transforms import DataConfig, EvalTransform
from ..errors import VitkitError
from ..processing.images import load_image


def expand_image_paths(paths: Sequence[str | Path]) -> list[Path]:
    """Files as given; folders contribute their images (recursively, sorted)."""
    out: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            found = sorted(f for f in p.rglob("*") if f.is_file() and is_image_file(f.name))
            if not found:
                raise VitkitError(f"folder {p} holds no images")
            out.extend(found)
        elif p.is_file():
            out.append(p)
        else:
            raise VitkitError(f"image not found: {p}")
    return out


@torch.no_grad()
def predict(model: nn.Module, images: Sequence[str | Path], *, top_k: int = 5,
            batch_size: int = 32) -> list[list[dict[str, Any]]]:
    """For each image, the top-k `{"label", "score"}` predictions, best first (scores are probabilities)."""
    cfg = DataConfig.from_model(model)
    transform = EvalTransform(cfg)
    labels = list(model.config.labels or [str(i) for i in range(model.config.num_classes)])
    k = max(1, min(top_k, len(labels)))
    device = next(model.parameters()).device
    model.eval()
    results: list[list[dict[str, Any]]] = []
    for i in range(0, len(images), batch_size):
        batch = torch.stack([transform(load_image(p, cfg.mode)) for p in images[i : i + batch_size]])
        probs = model(batch.to(device)).float().softmax(-1)
        top = probs.topk(k, dim=-1)
        for scores, idx in zip(top.values.tolist(), top.indices.tolist()):
            results.append([{"label": labels[j], "score": s} for s, j in zip(scores, idx)])
    return results


@torch.no_grad()
def attention_maps(model: nn.Module, image: str | Path, out_png: str | Path) -> dict[str, Any]:
    """Attention rollout and the last layer's [CLS] attention (for a model without [CLS]: the mean over every
    token's attention) for one image, overlaid on it, saved as a PNG. Returns the two [gh, gw] maps and the top
    prediction."""
    from ..utils.viz import attention_rollout, last_layer_cls_attention, plot_attention_overlay

    cfg = DataConfig.from_model(model)
    transform = EvalTransform(cfg)
    shown = transform.crop(load_image(image, cfg.mode))  # the maps cover exactly what the model saw
    x = transform.to_tensor(shown)[None].to(next(model.parameters()).device)
    out = model.eval().forward_with_attention(x)
    gh, gw = out["grid"]
    prefix = model.num_prefix_tokens
    rollout = attention_rollout(out["attentions"], num_prefix=prefix)[0].reshape(gh, gw).cpu().numpy()
    last = last_layer_cls_attention(out["attentions"], num_prefix=prefix)[0].reshape(gh, gw).cpu().numpy()
    probs = out["logits"].float().softmax(-1)[0]
    labels = list(model.config.labels or [str(i) for i in range(len(probs))])
    score, idx = probs.max(0)
    title = f"{labels[int(idx)]} {float(score):.2f}"
    # Without a [CLS] token (mean-pooled models) both maps follow the mean over every token's row.
    last_name = "last layer [CLS] attention" if prefix else "last layer attention (mean over tokens)"
    plot_attention_overlay(shown, {"attention rollout": rollout, last_name: last}, Path(out_png), title=title)
    return {"rollout": rollout, "last_layer": last, "label": labels[int(idx)], "score": float(score)}
