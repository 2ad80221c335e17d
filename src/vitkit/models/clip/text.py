"""CLIP's text tower: token + position embeddings, a causal transformer of the core's pre-norm blocks, a final
LayerNorm, and the end-of-text token's output projected into the shared space (Radford et al. 2021)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ...errors import ConfigError
from ...layers import Attention, Block, Dense, run_block
from ..base import PretrainedModel
from .config import CLIPConfig, CLIPTextConfig


@dataclass(frozen=True)
class AtRows:
    """A layout for a causal last block whose reader wants one row per sequence (CLIP's end-of-text token):
    only those rows' outputs are computed, each attending to the tokens up to itself. rows [B] positions."""

    rows: torch.Tensor
    groups: None = None

    def attend(self, attn: Attention, h: torch.Tensor) -> torch.Tensor:
        """h [B, N, C] -> [B, 1, C]"""
        (q,) = attn.heads(attn.project(self.keep(h), "q"))  # [B, heads, 1, hd]
        k, v = attn.heads(attn.project(h, "kv"))  # each [B, heads, N, hd]
        upto = torch.arange(h.shape[1], device=h.device)[None, :] <= self.rows[:, None]  # [B, N]: keys 0..row
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=upto[:, None, None, :], dropout_p=attn.dropout_p)
        return attn.output(out)

    def keep(self, x: torch.Tensor) -> torch.Tensor:
        return x[torch.arange(x.shape[0], device=x.device), self.rows][:, None]  # [B, 1, C]


class TextTransformer(PretrainedModel):
    """input_ids [B, L] (L <= context_length) -> projected text embeddings [B, embed_dim] (`forward`) or the
    token features after the final norm [B, L, width] (`forward_features`). Parameter names: `token_embedding`,
    `pos_embed`, `blocks.i.*` (the core's block), `norm` (CLIP's ln_final), `proj` (text_projection).

    Inside a `CLIP` it is the `text` tower; on its own (a `CLIPTextConfig`, e.g. from transformers'
    CLIPTextModelWithProjection) a model that saves and loads like any other."""

    model_type = "clip_text"
    config_class = CLIPTextConfig

    def __init__(self, config: CLIPConfig) -> None:
        super().__init__()
        c = self.config = config
        D = c.text_width
        self.token_embedding = nn.Embedding(c.vocab_size, D)
        self.pos_embed = nn.Parameter(torch.zeros(1, c.context_length, D))
        dpr = [c.drop_path_rate * i / max(c.text_layers - 1, 1) for i in range(c.text_layers)]
        self.blocks = nn.ModuleList(
            Block(D, num_heads=c.text_heads, mlp_hidden=int(D * c.text_mlp_ratio), act=c.act, norm_eps=c.norm_eps,
                  drop_path=dpr[i])
            for i in range(c.text_layers)
        )
        self.norm = nn.LayerNorm(D, eps=c.norm_eps)
        self.proj = nn.Linear(D, c.embed_dim, bias=False)
        self.grad_checkpointing = False
        self.initialize_weights()

    def initialize_weights(self) -> None:
        """open_clip's text-tower init: embeddings N(0, 0.02) / N(0, 0.01), attention and MLP weights scaled by
        the width and depth, the projection N(0, width^-0.5)."""
        c, D = self.config, self.config.text_width
        nn.init.normal_(self.token_embedding.weight, std=0.02)
        nn.init.normal_(self.pos_embed, std=0.01)
        attn_std, proj_std, fc_std = D**-0.5, D**-0.5 * (2 * c.text_layers) ** -0.5, (2 * D) ** -0.5
        for blk in self.blocks:
            nn.init.normal_(blk.attn.qkv.weight, std=attn_std)
            nn.init.zeros_(blk.attn.qkv.bias)
            nn.init.normal_(blk.attn.proj.weight, std=proj_std)
            nn.init.zeros_(blk.attn.proj.bias)
            nn.init.normal_(blk.mlp.fc1.weight, std=fc_std)
            nn.init.normal_(blk.mlp.fc2.weight, std=proj_std)
        nn.init.normal_(self.proj.weight, std=D**-0.5)

    def eot_positions(self, input_ids: torch.Tensor) -> torch.Tensor:
        """[B] the first end-of-text position of each row (where CLIP reads a text's features); a row without one
        reads its largest token id, as OpenAI's code does (the end-of-text token has the largest id)."""
        is_eot = input_ids == self.config.eot_token_id
        return torch.where(is_eot.any(-1), is_eot.int().argmax(-1), input_ids.argmax(-1))

    def embed(self, input_ids: torch.Tensor) -> torch.Tensor:
        """ids [B, L] -> [B, L, D]"""
        L = input_ids.shape[1]
        if L > self.config.context_length:
            raise ConfigError(f"text of {L} tokens is longer than this CLIP's context of {self.config.context_length}")
        return self.token_embedding(input_ids) + self.pos_embed[:, :L]

    def forward_features(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Every token's features after the final norm [B, L, D]. The mask matters only at padding positions
        (a causal token never sees the padding after it)."""
        x = self.embed(input_ids)
        lay = Dense(None if attention_mask is None else attention_mask.bool(), is_causal=True)
        for blk in self.blocks:
            x = run_block(blk, x, lay, checkpointing=self.grad_checkpointing)
        return self.norm(x)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        """Projected (not normalised) text embeddings [B, embed_dim]. The last block computes the end-of-text rows
        only: nothing else reads the other rows' outputs."""
        rows = self.eot_positions(input_ids)
        x = self.embed(input_ids)
        causal = Dense(is_causal=True)
        for blk in self.blocks[:-1]:
            x = run_block(blk, x, causal, checkpointing=self.grad_checkpointing)
        if len(self.blocks):
            x = run_block(self.blocks[-1], x, AtRows(rows), checkpointing=self.grad_checkpointing)[:, 0]
        else:
            x = x[torch.arange(x.shape[0], device=x.device), rows]
        return self.proj(self.norm(x))

    def encode_text(self, input_ids: torch.Tensor, normalize: bool = False) -> torch.Tensor:
        """`forward`, optionally L2-normalised: the same call as `CLIP.encode_text`."""
        x = self(input_ids)
        return F.normalize(x, dim=-1) if normalize else x

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        self.grad_checkpointing = enable
