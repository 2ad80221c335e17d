"""One-way fusion (vitkit's ViLT option `image_attends_text=False`) as a layout: image tokens attend within their
image; text tokens attend over [their text | their image]. Equal to the joint pass with image rows masked from
text columns, but each image is encoded once however many texts read it (`index`, checked by
`check_image_index`).

The residual stream is one [T, D] tensor: the N texts' rows (N * Lt) then the B images' rows (B * Li), so every
per-token layer of the block runs once over both; `OneWay.attend` splits the projections into the two streams.

    x = torch.cat([text.flatten(0, 1), image.flatten(0, 1)])  # [N*Lt + B*Li, D]
    lay = OneWay(text_masks, image_masks, index)
    x = block(x, lay)                                          # same rows
    cls = last_block(x, lay.cls_only())                        # [N, D]: each text's [CLS] row only
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, replace
from typing import Any

import torch
import torch.nn.functional as F

from ..errors import ConfigError
from .attention import Attention


@dataclass(frozen=True)
class OneWay:
    """text_masks [N, Lt] and image_masks [B, Li] bool (True = real token); index [N]: the image each text reads
    (None: text n reads image n). `cls_only`: the block computes each text's [CLS] row alone ([N, D] out; the image
    tokens then give keys and values only)."""

    text_masks: torch.Tensor
    image_masks: torch.Tensor
    index: torch.Tensor | None = None
    only_cls: bool = False

    def cls_only(self) -> OneWay:
        return replace(self, only_cls=True)

    @property
    def num_text_rows(self) -> int:
        return self.text_masks.numel()

    def split(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Stream rows [T, ...] -> (text [N, Lt, ...], image [B, Li, ...]) views."""
        T = self.num_text_rows
        return x[:T].unflatten(0, self.text_masks.shape), x[T:].unflatten(0, self.image_masks.shape)

    def keep(self, x: torch.Tensor) -> torch.Tensor:
        if not self.only_cls:
            return x
        return x[: self.num_text_rows : self.text_masks.shape[1]]  # [N, D]: row 0 of each text

    @functools.cached_property
    def groups(self) -> tuple[torch.Tensor, int]:
        """Stochastic depth draws per text and per image: (sample of each output row, count). The [CLS]-only block
        draws for every text and image too (the images' draws unused), so that a pooled_only pass consumes the
        random stream as the full pass does and gives its very values in training."""
        (N, Lt), (B, Li) = self.text_masks.shape, self.image_masks.shape
        dev = self.text_masks.device
        if self.only_cls:
            return torch.arange(N, device=dev), N + B
        return torch.cat([torch.arange(N, device=dev).repeat_interleave(Lt),
                          N + torch.arange(B, device=dev).repeat_interleave(Li)]), N + B

    def attend(self, attn: Attention, h: torch.Tensor) -> torch.Tensor:
        """Normed stream rows h [T, C] -> projected attention output for the output rows."""
        drop = attn.dropout_p
        image_masks = self.image_masks
        if self.only_cls:
            kt, vt = attn.heads(attn.project(self.split(h)[0], "kv"))  # each [N, H, Lt, hd]
            ki, vi = attn.heads(attn.project(self.split(h)[1], "kv"))  # each [B, H, Li, hd]
            (qt,) = attn.heads(attn.project(self.keep(h)[:, None], "q"))  # [N, H, 1, hd]
            hi = None
        else:
            text, image = self.split(attn.project(h))  # [N, Lt, 3C], [B, Li, 3C]: one projection for both
            qt, kt, vt = attn.heads(text)
            qi, ki, vi = attn.heads(image)
            hi = F.scaled_dot_product_attention(qi, ki, vi, attn_mask=image_masks[:, None, None, :], dropout_p=drop)
        if self.index is not None:  # each text's image: keys, values and mask gathered per text
            ki, vi, image_masks = ki[self.index], vi[self.index], image_masks[self.index]
        k, v = torch.cat([kt, ki], dim=2), torch.cat([vt, vi], dim=2)
        mask = torch.cat([self.text_masks, image_masks], dim=1)[:, None, None, :]
        ht = F.scaled_dot_product_attention(qt, k, v, attn_mask=mask, dropout_p=drop)  # [N, H, Q, hd]
        out = ht.transpose(1, 2).flatten(2).flatten(0, 1)  # [N * Q, C]
        if hi is not None:
            out = torch.cat([out, hi.transpose(1, 2).flatten(2).flatten(0, 1)])  # + [B * Li, C]
        return attn.proj_drop(attn.proj(out))


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
