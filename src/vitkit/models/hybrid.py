"""Hybrid ViT patch embedding (Dosovitskiy et al. 2020, https://arxiv.org/abs/2010.11929, section 3.1): the
tokens are patches of a CNN feature map rather than of the image.

A ResNet-V2 (`resnetv2.py`) turns the image into a stride-16 (or -32) feature map; a conv with
kernel = stride = `patch_size` (1 in the paper, so a 1x1 projection) maps it to the transformer width.
Drop-in for `layers.PatchEmbed` (same attributes, same `forward` contract); names follow timm
(`backbone.*`, `proj`).
"""

from __future__ import annotations

import torch
from torch import nn

from ..errors import VitkitError
from ..layers.patch_embed import to_2tuple
from .resnetv2 import ResNetV2


class HybridEmbed(nn.Module):
    """pixels [B, C, H, W] -> CNN features [B, F, ceil(H/s), ceil(W/s)] -> tokens [B, gh*gw, D].

    Args:
        img_size: the image size the model is configured for; sets `grid_size` / `num_patches` (the learned
            position grid). Other sizes still run: `forward` returns the grid of the actual feature map.
        patch_size: patch size on the feature map (1 for the published hybrids).
        in_chans: image channels.
        embed_dim: token width D.
        layers: ResNet-V2 stage depths, e.g. (3, 4, 9) (stride 16) or (3, 4, 6, 3) (stride 32).
    """

    def __init__(
        self,
        *,
        img_size: int | tuple[int, int],
        patch_size: int | tuple[int, int],
        in_chans: int,
        embed_dim: int,
        layers: tuple[int, ...],
    ) -> None:
        super().__init__()
        self.backbone = ResNetV2(layers=tuple(layers), in_chans=in_chans)
        self.img_size = to_2tuple(img_size)
        self.patch_size = to_2tuple(patch_size)
        self.feature_size = self.backbone.feature_size(self.img_size)
        fh, fw = self.feature_size
        self.grid_size = (fh // self.patch_size[0], fw // self.patch_size[1])
        if self.grid_size[0] < 1 or self.grid_size[1] < 1:
            raise VitkitError(
                f"img_size {self.img_size} gives a {self.feature_size} feature map, smaller than one "
                f"{self.patch_size} patch"
            )
        self.num_patches = self.grid_size[0] * self.grid_size[1]
        self.proj = nn.Conv2d(self.backbone.num_features, embed_dim, kernel_size=self.patch_size,
                              stride=self.patch_size)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
        """x: [B, C, H, W] -> (tokens [B, gh*gw, D], (gh, gw)). Feature cells past the last whole patch are
        dropped (none when patch_size is 1)."""
        x = self.backbone(x)  # [B, F, ceil(H/s), ceil(W/s)]
        fh, fw = x.shape[-2:]
        if fh < self.patch_size[0] or fw < self.patch_size[1]:
            raise VitkitError(f"the {fh}x{fw} feature map is smaller than one {self.patch_size} patch")
        x = self.proj(x)  # [B, D, gh, gw]
        grid = (x.shape[-2], x.shape[-1])
        return x.flatten(2).transpose(1, 2), grid  # [B, gh*gw, D]


__all__ = ["HybridEmbed"]
