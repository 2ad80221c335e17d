"""Variable-length sequences without padding in the per-token layers.

A padded batch spends as much on a padding position as on a real token in every LayerNorm, projection and MLP,
which is nearly all of a transformer's work. Here the real tokens of b sequences sit back to back in one [T, D]
tensor (`pack`); the per-token layers run on those T rows only, and a token attends within its own sequence
exactly as it would alone. The result equals running each sequence separately, up to float rounding.

The attention, the one step that needs the sequences apart, is `Packed.attend`: sequences of equal length are
already a [b, n] batch (one call, no mask); on the CPU, sequences of mixed lengths attend one by one over their
slice of the packed rows (no padded keys: the attention costs sum(n_j^2), not b * max(n_j)^2, and no scatter or
gather); elsewhere (GPU: one kernel rather than b launches) they are scattered into a padded [b, N] layout with a
key-padding mask and gathered back.

    x, slots, first = pack(tokens, mask)             # [T, D]
    lay = Packed.of(slots)
    for blk in blocks[:-1]:
        x = blk(x, lay)
    cls = blocks[-1](x, lay.rows(first))             # [b, D]: the last block on each sequence's first row
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F

from .attention import Attention


def pack(x: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Padded tokens x [b, L, D] with mask [b, L] (True = real, anywhere in the row) -> (packed [T, D]: each row's
    real tokens in order, row after row; slots [b, N] bool, row j's n_j tokens at slots[j, :n_j] with N the
    longest n_j; first [b]: the packed index of each row's first real token)."""
    lengths = mask.sum(1)
    packed = x.flatten(0, 1)[mask.flatten()]
    n = int(lengths.max())
    slots = torch.arange(n, device=mask.device)[None, :] < lengths[:, None]
    return packed, slots, lengths.cumsum(0) - lengths


def unpack(packed: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The inverse of `pack`: packed [T, D] -> padded [b, L, D] laid out as `mask` [b, L], zeros where it is
    False."""
    b, L = mask.shape
    return packed.new_zeros(b * L, packed.shape[-1]).index_copy_(
        0, mask.flatten().nonzero().squeeze(1), packed).view(b, L, -1)


@dataclass(frozen=True)
class Packed:
    """The layout of packed sequences (see the module docstring). `slots` [b, N] (from `pack`); `lengths` (host
    ints) to attend sequence by sequence; else `where` (packed row -> slot in the flattened [b, N] layout) to
    scatter into it, or neither when every sequence has N tokens. `out_rows` [b]: one packed row per sequence
    whose output alone the block computes (e.g. each sequence's first token: what a [CLS]-pooled head reads),
    its query against every key of its sequence. Inference only: stochastic depth would draw per row."""

    slots: torch.Tensor
    where: torch.Tensor | None = None
    lengths: list[int] | None = None
    out_rows: torch.Tensor | None = None
    groups: None = None

    @classmethod
    def of(cls, slots: torch.Tensor) -> Packed:
        if bool(slots.all()):
            return cls(slots)
        if slots.device.type == "cpu":
            return cls(slots, lengths=slots.sum(1).tolist())
        return cls(slots, where=slots.flatten().nonzero().squeeze(1))

    def rows(self, out_rows: torch.Tensor) -> Packed:
        """This layout with only `out_rows` [b] (one per sequence) computed."""
        return replace(self, out_rows=out_rows)

    def keep(self, x: torch.Tensor) -> torch.Tensor:
        return x if self.out_rows is None else x[self.out_rows]

    def attend(self, attn: Attention, h: torch.Tensor) -> torch.Tensor:
        """Normed packed rows h [T, C] -> projected attention output [T, C] (or [b, C] for `out_rows`)."""
        rows = self.out_rows
        qkv = attn.project(h, "qkv" if rows is None else "kv")  # every row's q, k, v; or only k, v
        q_rows = None if rows is None else attn.heads(attn.project(h[rows][:, None], "q"))[0]  # [b, H, 1, hd]
        if self.lengths is not None:  # sequence by sequence: [1, H, n_j, hd] slices of the packed rows
            outs = []
            for j, part in enumerate(qkv.split(self.lengths)):
                heads = attn.heads(part[None])
                q, k, v = heads if q_rows is None else (q_rows[j:j + 1], *heads)
                outs.append(F.scaled_dot_product_attention(q, k, v).transpose(1, 2))  # [1, Q, H, hd], a view
            out = torch.cat(outs, dim=1).flatten(2).flatten(0, 1)  # [T or b, C]: one copy
        else:
            b, n = self.slots.shape
            padded = qkv if self.where is None else qkv.new_zeros(b * n, qkv.shape[-1]).index_copy_(0, self.where,
                                                                                                      qkv)
            heads = attn.heads(padded.view(b, n, -1))  # each [b, H, n, hd]
            q, k, v = heads if q_rows is None else (q_rows, *heads)
            mask = None if self.where is None else self.slots[:, None, None, :]
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask).transpose(1, 2).flatten(2).flatten(0, 1)
            if rows is None and self.where is not None:
                out = out.index_select(0, self.where)  # [b * n, C] -> back to the packed rows
        return attn.proj(out)
