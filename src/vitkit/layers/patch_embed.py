"""Patch embedding: a convolution with kernel = stride = patch size, i.e. a linear map of each flattened patch;
`OverlapPatchEmbed`, the same linear map over a window twice the patch, centred on it; `ConvStem`, a few
stride-2 3x3 convolutions to the same grid (Xiao et al. 2021); or `OverlapConvEmbed`, the sum of the two."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import VitkitError


def to_2tuple(v: int | tuple[int, int] | list[int]) -> tuple[int, int]:
    return (int(v[0]), int(v[1])) if isinstance(v, (tuple, list)) else (int(v), int(v))


class PatchEmbed(nn.Module):
    """Non-overlapping patches, each linearly embedded (a convolution with kernel = stride = patch size). `bias`:
    False for models with a LayerNorm right after the embedding (CLIP's `ln_pre`), as timm's `pre_norm`."""

    def __init__(
        self, *, img_size: int | tuple[int, int], patch_size: int | tuple[int, int], in_chans: int, embed_dim: int,
        bias: bool = True,
    ) -> None:
        super().__init__()
        self.img_size = to_2tuple(img_size)
        self.patch_size = to_2tuple(patch_size)
        self.grid_size = (self.img_size[0] // self.patch_size[0], self.img_size[1] // self.patch_size[1])
        self.num_patches = self.grid_size[0] * self.grid_size[1]
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=self.patch_size, stride=self.patch_size, bias=bias)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
        """x: [B, C, H, W] -> (tokens [B, gh*gw, D], (gh, gw)). Pixels past the last whole patch are dropped."""
        H, W = x.shape[-2:]
        if H < self.patch_size[0] or W < self.patch_size[1]:
            raise VitkitError(f"input {H}x{W} is smaller than one {self.patch_size[0]}x{self.patch_size[1]} patch")
        x = self.proj(x)  # [B, D, gh, gw]
        grid = (x.shape[-2], x.shape[-1])
        return x.flatten(2).transpose(1, 2), grid  # [B, gh*gw, D]

    def forward_selected(self, x: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        """x: [B, C, H, W], keep [B, gh, gw] bool -> tokens [B, gh*gw, D] where only the kept patches are computed
        (one matmul over them; the others are zero): what `forward` gives at those patches, without spending
        the convolution on the rest (e.g. a padded batch's padding). A projection that is not one linear map
        per patch (a subclass's overlapping windows) computes every patch and zeroes the others."""
        ph, pw = self.patch_size
        gh, gw = keep.shape[1:]
        if tuple(self.proj.kernel_size) != (ph, pw) or tuple(self.proj.padding) != (0, 0):
            return self.forward(x)[0] * keep.flatten(1)[..., None].to(x.dtype)
        patches = x[..., : gh * ph, : gw * pw].unflatten(2, (gh, ph)).unflatten(-1, (gw, pw))  # [B, C, gh, ph, gw, pw]
        picked = patches.permute(0, 2, 4, 1, 3, 5)[keep].flatten(1)  # [K, C*ph*pw], the kept patches only
        tokens = F.linear(picked, self.proj.weight.flatten(1), self.proj.bias)  # [K, D]
        out = tokens.new_zeros(keep.numel(), tokens.shape[-1])
        return out.index_copy_(0, keep.flatten().nonzero().squeeze(1), tokens).view(x.shape[0], gh * gw, -1)


class OverlapPatchEmbed(PatchEmbed):
    """A linear map of the 2p x 2p window centred on each p x p patch (a convolution with kernel 2p, stride p,
    zero padding p/2): the same grid as `PatchEmbed`, but each token also sees half a patch of its neighbours
    on every side, so an object cut by patch borders is seen whole by the tokens around it. Like
    `PatchEmbed` it keeps a patch's colour linear in its token (a BatchNorm+ReLU stem does not)."""

    def __init__(
        self, *, img_size: int | tuple[int, int], patch_size: int | tuple[int, int], in_chans: int, embed_dim: int
    ) -> None:
        super().__init__(img_size=img_size, patch_size=patch_size, in_chans=in_chans, embed_dim=embed_dim)
        ph, pw = self.patch_size
        if ph % 2 or pw % 2:
            raise VitkitError(f"an overlapping patch embedding needs even patch sides, got {self.patch_size}")
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=(2 * ph, 2 * pw), stride=(ph, pw),
                              padding=(ph // 2, pw // 2))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
        """x: [B, C, H, W] -> (tokens [B, gh*gw, D], (gh, gw)) with gh = H // patch (pixels past it dropped,
        so the last windows see zero padding, not them)."""
        H, W = x.shape[-2:]
        ph, pw = self.patch_size
        if H >= ph and W >= pw:
            x = x[..., : H - H % ph, : W - W % pw]
        return super().forward(x)


class ConvStem(nn.Module):
    """Early convolutions (Xiao et al. 2021, "Early Convolutions Help Transformers See Better",
    https://arxiv.org/abs/2106.14881): log2(patch_size) 3x3 stride-2 convolutions, each BatchNorm + ReLU, then a
    1x1 convolution to the width, in place of the patchify convolution. Same grid, attributes and `forward`
    contract as `PatchEmbed`; channels double per conv up to `embed_dim` (D/4, D/2, D for patch 8)."""

    def __init__(
        self, *, img_size: int | tuple[int, int], patch_size: int | tuple[int, int], in_chans: int, embed_dim: int
    ) -> None:
        super().__init__()
        self.img_size = to_2tuple(img_size)
        self.patch_size = to_2tuple(patch_size)
        p = self.patch_size[0]
        if self.patch_size[1] != p or p < 2 or p & (p - 1):
            raise VitkitError(f"a conv stem needs a square power-of-two patch size, got {self.patch_size}")
        self.grid_size = (self.img_size[0] // p, self.img_size[1] // p)
        self.num_patches = self.grid_size[0] * self.grid_size[1]
        n = p.bit_length() - 1  # stride-2 convs
        chans = [max(8, embed_dim >> (n - 1 - i)) for i in range(n)]
        layers: list[nn.Module] = []
        prev = in_chans
        for c in chans:
            layers += [nn.Conv2d(prev, c, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(c), nn.ReLU(inplace=True)]
            prev = c
        self.stem = nn.Sequential(*layers)
        self.proj = nn.Conv2d(prev, embed_dim, kernel_size=1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
        """x: [B, C, H, W] -> (tokens [B, gh*gw, D], (gh, gw)) with gh = H // patch (pixels past it dropped)."""
        H, W = x.shape[-2:]
        p = self.patch_size[0]
        if H < p or W < p:
            raise VitkitError(f"input {H}x{W} is smaller than one {p}x{p} patch")
        x = self.proj(self.stem(x[..., : H - H % p, : W - W % p]))  # [B, D, gh, gw]
        grid = (x.shape[-2], x.shape[-1])
        return x.flatten(2).transpose(1, 2), grid


class OverlapConvEmbed(OverlapPatchEmbed):
    """`OverlapPatchEmbed` plus a `ConvStem` branch, summed per token. The linear window keeps each patch's colour
    linear in its token; the early convolutions add local shape (edges, corners, curvature), which a single
    linear map of raw pixels learns slowly. On its own a BatchNorm+ReLU stem learned counting fast but lost the
    colour questions; summed, a model gets both. The conv branch's final 1x1 projection starts at zero, so a new
    model starts as the overlap stem and grows the shape path as training needs it. Same grid, attributes and
    `forward` contract as `PatchEmbed` (a square power-of-two patch, as `ConvStem`)."""

    def __init__(
        self, *, img_size: int | tuple[int, int], patch_size: int | tuple[int, int], in_chans: int, embed_dim: int
    ) -> None:
        super().__init__(img_size=img_size, patch_size=patch_size, in_chans=in_chans, embed_dim=embed_dim)
        self.conv = ConvStem(img_size=img_size, patch_size=patch_size, in_chans=in_chans, embed_dim=embed_dim)
        nn.init.zeros_(self.conv.proj.weight)
        nn.init.zeros_(self.conv.proj.bias)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
        """x: [B, C, H, W] -> (tokens [B, gh*gw, D], (gh, gw)), gh = H // patch (pixels past it dropped)."""
        tokens, grid = super().forward(x)
        shape, _ = self.conv(x)
        return tokens + shape, grid

