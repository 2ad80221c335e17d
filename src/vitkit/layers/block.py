"""The pre-norm transformer block, written once: x + drop_path(ls(attn(norm(x)))), then the same with the MLP.

Every model builds on it: ViT and ViLT as is, DiT with adaLN modulation (`Modulation`), CLIP's text tower with a
causal layout. How tokens are arranged for attention (padded, packed, two streams, causal) comes from a layout
(`layers.layout`); the block owns the residual structure.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from .attention import Attention
from .drop import DropPath
from .layout import DENSE, Layout
from .mlp import Mlp


class LayerScale(nn.Module):
    """Per-channel residual scaling (Touvron et al. 2021, CaiT, https://arxiv.org/abs/2103.17239)."""

    def __init__(self, dim: int, init_values: float) -> None:
        super().__init__()
        self.gamma = nn.Parameter(torch.full((dim,), float(init_values)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gamma


@dataclass(frozen=True)
class Modulation:
    """adaLN (DiT, Peebles & Xie 2022): a per-sample shift and scale after each norm and a gate on each branch,
    each [B, D]. `Modulation.of(t)` splits one [B, 6D] projection in DiT's order."""

    shift1: torch.Tensor
    scale1: torch.Tensor
    gate1: torch.Tensor
    shift2: torch.Tensor
    scale2: torch.Tensor
    gate2: torch.Tensor

    @classmethod
    def of(cls, t: torch.Tensor) -> Modulation:
        return cls(*t.chunk(6, dim=-1))


def modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """x [B, N, D] * (1 + scale [B, D]) + shift [B, D]."""
    return x * (1 + scale.unsqueeze(1)) + shift.unsqueeze(1)


class Block(nn.Module):
    """Pre-norm transformer block. Parameter names are timm's (`norm1`, `attn.qkv`, `attn.proj`, `ls1`, `norm2`,
    `mlp.fc1`, `mlp.fc2`, `ls2`).

    Args:
        dim: token width.
        num_heads: attention heads.
        mlp_hidden: the MLP's hidden width.
        qkv_bias: bias on the fused qkv projection.
        act: the MLP activation (`layers.mlp.get_activation` names).
        norm_eps: LayerNorm epsilon.
        norm_affine: LayerNorms with weight and bias (False for DiT, whose adaLN supplies them).
        proj_drop / attn_drop: dropout after the projections / on attention probabilities.
        drop_path: stochastic depth rate of both residual branches.
        init_values: LayerScale init (None: no LayerScale).
    """

    def __init__(
        self,
        dim: int,
        *,
        num_heads: int,
        mlp_hidden: int,
        qkv_bias: bool = True,
        act: str = "gelu",
        norm_eps: float = 1e-6,
        norm_affine: bool = True,
        proj_drop: float = 0.0,
        attn_drop: float = 0.0,
        drop_path: float = 0.0,
        init_values: float | None = None,
    ) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=norm_eps, elementwise_affine=norm_affine)
        self.attn = Attention(dim, num_heads=num_heads, qkv_bias=qkv_bias, attn_drop=attn_drop, proj_drop=proj_drop)
        self.ls1 = LayerScale(dim, init_values) if init_values else nn.Identity()
        self.drop_path1 = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.norm2 = nn.LayerNorm(dim, eps=norm_eps, elementwise_affine=norm_affine)
        self.mlp = Mlp(dim, hidden_features=mlp_hidden, act=act, drop=proj_drop)
        self.ls2 = LayerScale(dim, init_values) if init_values else nn.Identity()
        self.drop_path2 = DropPath(drop_path) if drop_path > 0 else nn.Identity()

    def forward(self, x: torch.Tensor, layout: Layout = DENSE, *, modulation: Modulation | None = None
                ) -> torch.Tensor:
        """x: tokens in the layout's arrangement ([B, N, D] for `Dense`, packed rows [T, D] otherwise) -> the
        block's output rows (all of them, or those the layout keeps, e.g. [B, 1, D] for a [CLS]-only last block).
        modulation: DiT's adaLN shift / scale / gate (dense layout)."""
        h = self.norm1(x)
        if modulation is not None:
            h = modulate(h, modulation.shift1, modulation.scale1)
        h = layout.attend(self.attn, h)
        x = layout.keep(x)
        if modulation is not None:
            h = modulation.gate1.unsqueeze(1) * h
        x = x + self._drop(self.drop_path1, self.ls1(h), layout)  # a new tensor: the caller's x is never modified
        h = self.norm2(x)
        if modulation is not None:
            h = modulate(h, modulation.shift2, modulation.scale2)
        h = self.mlp(h)
        if modulation is not None:
            h = modulation.gate2.unsqueeze(1) * h
        h = self._drop(self.drop_path2, self.ls2(h), layout)
        if torch.is_grad_enabled() and (x.requires_grad or h.requires_grad):
            return x + h
        return x.add_(h)  # no autograd: the second residual in place (same values, one allocation fewer)

    @staticmethod
    def _drop(drop: nn.Module, h: torch.Tensor, layout: Layout) -> torch.Tensor:
        if isinstance(drop, DropPath):
            return drop(h, layout.groups)
        return h


def run_block(block: nn.Module, x: torch.Tensor, layout: Layout = DENSE, *, checkpointing: bool = False,
              **kwargs: object) -> torch.Tensor:
    """`block(x, layout, **kwargs)`, with activation checkpointing when asked and it can help (training with
    autograd on): the block's activations are recomputed in the backward instead of kept."""
    if checkpointing and block.training and torch.is_grad_enabled():
        return checkpoint(block, x, layout, use_reentrant=False, **kwargs)
    return block(x, layout, **kwargs)
