"""Patch embedding: a convolution with kernel = stride = patch size, i.e. a linear map of each flattened patch."""

from __future__ import annotations

import torch
from torch import nn

from ..errors import VitkitError


def to_2tuple(v: int | tuple[int, int] | list[int]) -> tuple[int, int]:
    return (int(v[0]), int(v[1])) if isinstance(v, (tuple, list)) else (int(v), int(v))


class PatchEmbed(nn.Module):
    def __init__(
        self, *, img_size: int | tuple[int, int], patch_size: int | tuple[int, int], in_chans: int, embed_dim: int
    ) -> None:
        super().__init__()
        self.img_size = to_2tuple(img_size)
        self.patch_size = to_2tuple(patch_size)
        self.grid_size = (self.img_size[0] // self.patch_size[0], self.img_size[1] // self.patch_size[1])
        self.num_patches = self.grid_size[0] * self.grid_size[1]
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=self.patch_size, stride=self.patch_size)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
        """x: [B, C, H, W] -> (tokens [B, gh*gw, D], (gh, gw)). Pixels past the last whole patch are dropped."""
        H, W = x.shape[-2:]
        if H < self.patch_size[0] or W < self.patch_size[1]:
            raise VitkitError(f"input {H}x{W} is smaller than one {self.patch_size[0]}x{self.patch_size[1]} patch")
        x = self.proj(x)  # [B, D, gh, gw]
        grid = (x.shape[-2], x.shape[-1])
        return x.flatten(2).transpose(1, 2), grid  # [B, gh*gw, D]
