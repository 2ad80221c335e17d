"""One-way fusion (vitkit's ViLT option `image_attends_text=False`) as two streams through one block's weights:
image tokens attend within their image, text tokens over [their text | their image]. Equal to the joint pass
with image rows masked from text columns, but each image is encoded once however many texts read it
(`image_index`, checked by `check_image_index`)."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError


def one_way_block(blk: nn.Module, text: torch.Tensor, text_masks: torch.Tensor, image: torch.Tensor,
                  image_masks: torch.Tensor, index: torch.Tensor | None,
                  cls_only: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """One pre-norm block (`layers.Block`'s weights) over text [N, Lt, D] and image [B, Li, D] tokens: image
    queries attend to their image's tokens; text n's queries attend to [its text | image index[n]] (index
    None: text n reads image n, no gather). `cls_only` (a last block whose reader wants the pooled text [CLS]
    alone): returns (text [CLS] row [N, 1, D], an empty image [B, 0, D]); the image tokens then give keys and
    values only, and no image row or other text row is computed."""
    attn = blk.attn
    drop = attn.attn_drop if blk.training else 0.0
    qt, kt, vt = attn.heads(attn.project(blk.norm1(text)))  # each [b, H, n, hd]
    if cls_only:  # keys and values of the image, no image queries
        qt, text = qt[:, :, :1], text[:, :1]
        ki, vi = attn.heads(attn.project(blk.norm1(image), "kv"))
        hi, image = None, image[:, :0]
    else:
        qi, ki, vi = attn.heads(attn.project(blk.norm1(image)))
        hi = F.scaled_dot_product_attention(qi, ki, vi, attn_mask=image_masks[:, None, None, :], dropout_p=drop)
    if index is not None:  # each text's image: keys, values and mask gathered per text
        ki, vi, image_masks = ki[index], vi[index], image_masks[index]
    k, v = torch.cat([kt, ki], dim=2), torch.cat([vt, vi], dim=2)
    mask = torch.cat([text_masks, image_masks], dim=1)[:, None, None, :]
    ht = F.scaled_dot_product_attention(qt, k, v, attn_mask=mask, dropout_p=drop)

    def finish(x: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        h = attn.proj_drop(attn.proj(h.transpose(1, 2).flatten(2)))
        x = x + blk.drop_path1(blk.ls1(h))
        return x + blk.drop_path2(blk.ls2(blk.mlp(blk.norm2(x))))

    return finish(text, ht), (image if hi is None else finish(image, hi))


def check_image_index(config: Any, image_index: torch.Tensor, num_texts: int, num_images: int) -> None:
    """The texts-share-images index of one-way fusion, checked against a ViLTConfig: [num_texts] image numbers."""
    if config.image_attends_text:
        raise ConfigError("image_index (several texts sharing one image's encoding) needs one-way fusion: "
                          "image_attends_text=False; with early fusion each text changes the image tokens")
    if config.num_images != 1:
        raise ConfigError("image_index works with one image per example (num_images=1)")
    if image_index.dim() != 1 or image_index.shape[0] != num_texts:
        raise ConfigError(f"image_index must be [{num_texts}] (one image per text), got {tuple(image_index.shape)}")
    # the value check reads the tensor on the host: done for CPU tensors only, so a GPU step never waits on it
    # (out-of-range indices still fail there, in the gather)
    if num_texts and image_index.device.type == "cpu" and (int(image_index.min()) < 0
                                                          or int(image_index.max()) >= num_images):
        raise ConfigError(f"image_index values must lie in [0, {num_images}); got {image_index.tolist()[:8]}...")
