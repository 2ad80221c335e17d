"""Multi-head self-attention with a fused qkv projection (Vaswani et al. 2017, https://arxiv.org/abs/1706.03762).

`Attention.forward` returns the output tensor and always runs `F.scaled_dot_product_attention` (padding and
causal masks included). Attention probabilities are materialised only through the separate, explicit
`forward_with_probs` (attention maps, rollout). How tokens are laid out for attention (padded batch, packed
sequences, two streams, ...) is a `layers.layout` object's business; this module owns the weights and the
projections they all share.
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

    @property
    def dropout_p(self) -> float:
        """The attention-probability dropout in effect (0 in eval mode)."""
        return self.attn_drop if self.training else 0.0

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None, *, num_queries: int | None = None,
                is_causal: bool = False) -> torch.Tensor:
        """x [B, N, C] -> [B, Q, C], Q = num_queries or N.

        Args:
            x: the (normed) tokens.
            mask: [B, N] bool, True where a token may be attended to (padding False), or [B, N, N] bool, True where
                query row i may attend to key column j.
            num_queries: compute the output of the first Q tokens only (every token still serves as key and
                value), e.g. the [CLS] token in the last block of a classifier.
            is_causal: token i attends to tokens 0..i only (a text decoder; CLIP's text tower). Combines with a
                [B, N] padding mask.
        """
        q, k, v = self.qkv_heads(x, num_queries)
        allowed = self.allowed(mask, q.shape[2], k.shape[2], is_causal, x.device)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=allowed, dropout_p=self.dropout_p,
                                             is_causal=is_causal and allowed is None)
        return self.output(out)

    def forward_with_probs(self, x: torch.Tensor, mask: torch.Tensor | None = None, *,
                           num_queries: int | None = None, is_causal: bool = False
                           ) -> tuple[torch.Tensor, torch.Tensor]:
        """`forward` that also returns the attention probabilities [B, heads, Q, N] (materialised explicitly:
        slower and more memory than `forward`). Same arguments."""
        q, k, v = self.qkv_heads(x, num_queries)
        scores = (q * self.scale) @ k.transpose(-2, -1)  # [B, heads, Q, N]
        allowed = self.allowed(mask, q.shape[2], k.shape[2], is_causal, x.device)
        if allowed is None and is_causal:  # the square causal case that SDPA handles by itself
            allowed = torch.ones(q.shape[2], k.shape[2], dtype=torch.bool, device=x.device).tril()
        if allowed is not None:
            scores = scores.masked_fill(~allowed, float("-inf"))
        probs = scores.float().softmax(dim=-1).to(q.dtype)
        return self.output(F.dropout(probs, self.dropout_p, self.training) @ v), probs

    def qkv_heads(self, x: torch.Tensor, num_queries: int | None = None) -> tuple[torch.Tensor, ...]:
        """x [B, N, C] -> (q [B, heads, Q, hd], k, v [B, heads, N, hd]); with num_queries only the first Q tokens'
        queries are projected (a third of qkv's work saved per other row)."""
        if num_queries is None or num_queries >= x.shape[1]:
            return self.heads(self.qkv(x))
        (q,) = self.heads(self.project(x[:, :num_queries], "q"))
        return (q, *self.heads(self.project(x, "kv")))

    def output(self, out: torch.Tensor) -> torch.Tensor:
        """Per-head attention output [B, heads, Q, hd] -> projected [B, Q, C]."""
        return self.proj_drop(self.proj(out.transpose(1, 2).flatten(2)))

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

    @staticmethod
    def allowed(mask: torch.Tensor | None, Q: int, N: int, is_causal: bool,
                device: torch.device) -> torch.Tensor | None:
        """The boolean mask (True = may attend) for the first Q queries over N keys, broadcastable to
        [B, heads, Q, N]; None when nothing is masked, or when only the square causal mask applies (SDPA's own
        `is_causal` is then faster than a mask)."""
        if mask is not None:
            mask = mask[:, None, :Q] if mask.dim() == 3 else mask[:, None, None, :]  # over heads (and queries)
        if not is_causal or (mask is None and Q == N):
            return mask
        causal = torch.ones(Q, N, dtype=torch.bool, device=device).tril()  # query i is token i: keys 0..i
        return causal if mask is None else mask & causal
