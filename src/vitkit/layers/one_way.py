"""One-way fusion (vitkit's ViLT option `image_attends_text=False`) as two streams through one block's weights:
image tokens attend within their image, text tokens over [their text | their image]. Equal to the joint pass
with image rows masked from text columns, but each image is encoded once however many texts read it."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def one_way_block(blk: nn.Module, text: torch.Tensor, text_masks: torch.Tensor, image: torch.Tensor,
                  image_masks: torch.Tensor, index: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    """One pre-norm block (`layers.Block`'s weights) over text [N, Lt, D] and image [B, Li, D] tokens: image
    queries attend to their image's tokens; text n's queries attend to [its text | image index[n]] (index
    None: text n reads image n, no gather)."""
    attn = blk.attn
    H, hd = attn.num_heads, attn.head_dim
    drop = attn.attn_drop if blk.training else 0.0

    def heads(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        b, n, _ = x.shape
        return attn.qkv(x).reshape(b, n, 3, H, hd).permute(2, 0, 3, 1, 4).unbind(0)  # each [b, H, n, hd]

    qt, kt, vt = heads(blk.norm1(text))
    qi, ki, vi = heads(blk.norm1(image))
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

    return finish(text, ht), finish(image, hi)
