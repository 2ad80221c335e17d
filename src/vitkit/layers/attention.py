"""Multi-head self-attention with a fused qkv projection (Vaswani et al. 2017, https://arxiv.org/abs/1706.03762).

The fast path is always `F.scaled_dot_product_attention`, padding masks included; attention probabilities are
materialised only when a caller asks for them (attention maps, rollout), through a separate, explicit path.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class Attention(nn.Module):
    def __init__(
        self,
        dim: int,
        *,
        num_heads: int = 8,
        qkv_bias: bool = True,
        attn_drop: float = 0.0,
        proj_drop: float = 0.0,
    ) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim {dim} is not divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.scale = self.head_dim**-0.5
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.attn_drop = attn_drop
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)

    def forward(
        self, x: torch.Tensor, key_mask: torch.Tensor | None = None, return_attention: bool = False,
        num_queries: int | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """x: [B, N, C]; key_mask: [B, N] bool, True where a token may be attended to (padding False), or
        [B, N, N] bool, True where query row i may attend to key column j. `num_queries`: compute the output of
        the first Q tokens only (every token still serves as key and value), e.g. the [CLS] token in the last
        block of a classifier.

        Returns (output [B, Q, C], attention probabilities [B, heads, Q, N] or None), Q = num_queries or N.
        """
        B, N, C = x.shape
        if num_queries is None or num_queries >= N:
            q, k, v = self.heads(self.qkv(x))  # each [B, heads, N, head_dim]
        else:  # queries of the first tokens only, keys and values of all (a third of qkv's work saved per row)
            (q,) = self.heads(self.project(x[:, :num_queries], "q"))
            k, v = self.heads(self.project(x, "kv"))
        Q = q.shape[2]
        if key_mask is None or key_mask.dim() == 3:
            mask = None if key_mask is None else key_mask[:, None, :Q]  # [B, 1, Q, N] broadcast over heads
        else:
            mask = key_mask[:, None, None, :]  # [B, 1, 1, N] broadcast over heads and queries
        dropout_p = self.attn_drop if self.training else 0.0
        attn = None
        if return_attention:
            scores = (q * self.scale) @ k.transpose(-2, -1)  # [B, heads, Q, N]
            if mask is not None:
                scores = scores.masked_fill(~mask, float("-inf"))
            attn = scores.float().softmax(dim=-1).to(q.dtype)
            x = F.dropout(attn, dropout_p, self.training) @ v
        else:
            x = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout_p)
        x = x.transpose(1, 2).reshape(B, Q, C)  # [B, Q, heads * head_dim]
        return self.proj_drop(self.proj(x)), attn

    def project(self, x: torch.Tensor, part: str = "qkv") -> torch.Tensor:
        """The fused projection or a part of it: "q" -> [..., C], "kv" -> [..., 2C], "qkv" -> [..., 3C]. The
        weight's rows are [q | k | v], so a part is a slice of them (no copy)."""
        if part == "qkv":
            return self.qkv(x)
        C = self.qkv.in_features
        rows = slice(0, C) if part == "q" else slice(C, 3 * C)
        bias = None if self.qkv.bias is None else self.qkv.bias[rows]
        return F.linear(x, self.qkv.weight[rows], bias)

    def heads(self, y: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """A projection [B, N, parts * C] (see `project`) -> its parts, each [B, heads, N, head_dim]."""
        B, N, width = y.shape
        parts = width // (self.num_heads * self.head_dim)
        return y.reshape(B, N, parts, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4).unbind(0)
