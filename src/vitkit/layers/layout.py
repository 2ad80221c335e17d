"""How a block's attention sees its tokens. The pre-norm block (`layers.block.Block`) is written once; a layout
supplies the one step that depends on how tokens are arranged: which tokens attend to which, and which rows of the
residual stream the block outputs.

- `Dense`: a padded batch [B, N, D] with an optional padding or [B, N, N] mask, causal or not, optionally only the
  first `num_queries` rows out (a [CLS]-pooled last block), optionally recording attention probabilities.
- `layers.packed.Packed`: the real tokens of variable-length sequences back to back, [T, D] (inference).
- `layers.one_way.OneWay`: ViLT's one-way fusion, text and image rows of different batches in one [T, D] stream.

A layout is made per forward (it holds that batch's masks) and may be shared by every block of the forward.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import torch

from .attention import Attention


class Layout(Protocol):
    """What a block asks of a layout: `attend` (normed tokens -> projected attention output, one row per output
    row), `keep` (the residual rows those outputs belong to), and `groups` (for stochastic depth on packed rows:
    (sample of each output row [R], number of samples), or None when dim 0 is the sample)."""

    @property
    def groups(self) -> tuple[torch.Tensor, int] | None: ...

    def attend(self, attn: Attention, h: torch.Tensor) -> torch.Tensor: ...

    def keep(self, x: torch.Tensor) -> torch.Tensor: ...


@dataclass
class Dense:
    """A padded batch [B, N, D].

    mask: [B, N] bool (True = real token) or [B, N, N] bool (True = row may attend to column); None = all real.
    num_queries: only the first Q rows are computed and returned ([B, Q, D]; every token is still a key).
    is_causal: token i attends to tokens 0..i (a text decoder).
    probs: a list to which each block appends its attention probabilities [B, heads, Q, N] (the explicit, slower
        path of `Attention.forward_with_probs`); None = the fused SDPA kernel.
    """

    mask: torch.Tensor | None = None
    num_queries: int | None = None
    is_causal: bool = False
    probs: list[torch.Tensor] | None = None
    groups: None = None

    def attend(self, attn: Attention, h: torch.Tensor) -> torch.Tensor:
        if self.probs is None:
            return attn(h, self.mask, num_queries=self.num_queries, is_causal=self.is_causal)
        out, probs = attn.forward_with_probs(h, self.mask, num_queries=self.num_queries, is_causal=self.is_causal)
        self.probs.append(probs)
        return out

    def keep(self, x: torch.Tensor) -> torch.Tensor:
        return x if self.num_queries is None else x[:, : self.num_queries]


DENSE = Dense()  # no mask, every row: what a plain ViT block sees
