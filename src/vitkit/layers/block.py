"""Pre-norm transformer block: x + drop_path(ls(attn(norm(x)))), then the same with the MLP."""

from __future__ import annotations

import torch
from torch import nn

from .attention import Attention
from .drop import DropPath
from .mlp import Mlp


class LayerScale(nn.Module):
    """Per-channel residual scaling (Touvron et al. 2021, CaiT, https://arxiv.org/abs/2103.17239)."""

    def __init__(self, dim: int, init_values: float) -> None:
        super().__init__()
        self.gamma = nn.Parameter(torch.full((dim,), float(init_values)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gamma


class Block(nn.Module):
    def __init__(
        self,
        dim: int,
        *,
        num_heads: int,
        mlp_hidden: int,
        qkv_bias: bool = True,
        act: str = "gelu",
        norm_eps: float = 1e-6,
        proj_drop: float = 0.0,
        attn_drop: float = 0.0,
        drop_path: float = 0.0,
        init_values: float | None = None,
    ) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=norm_eps)
        self.attn = Attention(dim, num_heads=num_heads, qkv_bias=qkv_bias, attn_drop=attn_drop, proj_drop=proj_drop)
        self.ls1 = LayerScale(dim, init_values) if init_values else nn.Identity()
        self.drop_path1 = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.norm2 = nn.LayerNorm(dim, eps=norm_eps)
        self.mlp = Mlp(dim, hidden_features=mlp_hidden, act=act, drop=proj_drop)
        self.ls2 = LayerScale(dim, init_values) if init_values else nn.Identity()
        self.drop_path2 = DropPath(drop_path) if drop_path > 0 else nn.Identity()

    def forward(
        self, x: torch.Tensor, key_mask: torch.Tensor | None = None, return_attention: bool = False,
        num_out: int | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """x: [B, N, D] -> ([B, N, D], attention [B, heads, N, N] when asked, else None). With `num_out`, only
        the first `num_out` tokens' outputs are computed ([B, num_out, D]; attention [B, heads, num_out, N]):
        what a last block needs when only [CLS] is read, with every token still attended to."""
        h, attn = self.attn(self.norm1(x), key_mask, return_attention, num_queries=num_out)
        if num_out is not None:
            x = x[:, :num_out]
        x = x + self.drop_path1(self.ls1(h))  # a new tensor: the caller's x is never modified
        h = self.drop_path2(self.ls2(self.mlp(self.norm2(x))))
        if torch.is_grad_enabled() and (x.requires_grad or h.requires_grad):
            return x + h, attn
        return x.add_(h), attn  # inference: the second residual in place (same values, one allocation fewer)
