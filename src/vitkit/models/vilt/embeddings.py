"""ViLT's embeddings and the one encoder they feed.

`TextEmbeddings`: BERT's word + position + segment embeddings, LayerNorm, dropout. `ViLTTransformer` (the model's
`transformer`): ViT's image embedding (patches, [CLS], a learned position grid resampled per image to its valid
patch grid) and the encoder blocks + final norm that run over [text | image]. Parameter names are the original
ViLT's, which are timm ViT's under `transformer.` (`transformer.patch_embed.proj`, `transformer.cls_token`,
`transformer.pos_embed`, `transformer.blocks.i.attn.qkv`, `transformer.norm`), so an ImageNet ViT initialises it
as an identity map (`ViLT.init_encoder_from`).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ...errors import ConfigError
from ...layers import Block, ConvStem, OverlapConvEmbed, OverlapPatchEmbed, PatchEmbed, sincos_2d_pos_embed

PATCH_STEMS = {"patchify": PatchEmbed, "conv": ConvStem, "overlap": OverlapPatchEmbed,
               "overlap_conv": OverlapConvEmbed}


class TextEmbeddings(nn.Module):
    """BERT embeddings: LayerNorm(word + position + segment), then dropout. Positions are 0..L-1 (computed, not
    stored: the original's `position_ids` buffer is checked and dropped by the converters)."""

    def __init__(self, c: Any) -> None:
        super().__init__()
        self.word_embeddings = nn.Embedding(c.vocab_size, c.embed_dim)
        self.position_embeddings = nn.Embedding(c.max_text_len, c.embed_dim)
        self.token_type_embeddings = nn.Embedding(c.type_vocab_size, c.embed_dim)
        self.LayerNorm = nn.LayerNorm(c.embed_dim, eps=c.text_norm_eps)
        self.dropout = nn.Dropout(c.drop_rate)

    def forward(self, input_ids: torch.Tensor, token_type_ids: torch.Tensor | None = None) -> torch.Tensor:
        """ids [B, L] -> [B, L, D]"""
        L, max_len = input_ids.shape[1], self.position_embeddings.num_embeddings
        if L > max_len:
            raise ConfigError(f"text of {L} tokens is longer than max_text_len={max_len}")
        x = self.word_embeddings(input_ids) + self.position_embeddings.weight[:L]
        x = x + self.token_type_embeddings(torch.zeros_like(input_ids) if token_type_ids is None else token_type_ids)
        return self.dropout(self.LayerNorm(x))


class ViLTTransformer(nn.Module):
    """The image embedding and the shared encoder of a ViLT (config: a `ViLTConfig`)."""

    def __init__(self, c: Any) -> None:
        super().__init__()
        self.config = c
        D = c.embed_dim
        self.patch_embed = PATCH_STEMS[c.patch_stem](img_size=c.img_size, patch_size=c.patch_size,
                                                     in_chans=c.in_chans, embed_dim=D)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, D))
        if c.pos_embed == "learn":
            self.pos_embed = nn.Parameter(torch.zeros(1, 1 + self.patch_embed.num_patches, D))
        else:  # fixed sin-cos of each patch's (row, column): computed per image, nothing stored
            self.pos_embed = None
        self.pos_drop = nn.Dropout(c.drop_rate)
        dpr = [c.drop_path_rate * i / max(c.depth - 1, 1) for i in range(c.depth)]  # stochastic depth grows linearly
        self.blocks = nn.ModuleList(
            Block(D, num_heads=c.num_heads, mlp_hidden=int(D * c.mlp_ratio), qkv_bias=c.qkv_bias, act=c.act,
                  norm_eps=c.norm_eps, proj_drop=c.drop_rate, attn_drop=c.attn_drop_rate, drop_path=dpr[i])
            for i in range(c.depth)
        )
        self.norm = nn.LayerNorm(D, eps=c.norm_eps)

    def initialize_weights(self, scheme: str = "normal") -> None:
        """timm's ViT init (truncated-normal 0.02 linears and position grid, tiny [CLS]); scheme="xavier":
        xavier-uniform block linears instead (timm's jax init: on small from-scratch models attention moves off
        uniform sooner)."""
        if self.pos_embed is not None:
            nn.init.trunc_normal_(self.pos_embed, std=0.02)
        nn.init.normal_(self.cls_token, std=1e-6)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                if scheme == "xavier" and any(m is mm for b in self.blocks for mm in b.modules()):
                    nn.init.xavier_uniform_(m.weight)
                else:
                    nn.init.trunc_normal_(m.weight, std=0.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def embed_image(
        self, pixel_values: torch.Tensor, pixel_mask: torch.Tensor | None = None, *,
        image_norm: nn.Module | None = None, valid_only: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """pixels [B, C, H, W] (+ mask [B, H, W], 1 = real pixel) -> (tokens [B, 1+N, D] with position
        embeddings added, masks [B, 1+N] bool, patch_index [B, N, 2]).

        Each image's valid patch grid (h, w) is read from pixel_mask (nearest-sampled to the patch grid, as the
        original); the learned grid is resized to (h, w) bilinearly with align_corners=True, all images at once
        with grid_sample, and is zero on the padding patches. Eval keeps every patch (padding masked out): no host
        sync, deterministic. Training with 0 < max_image_len < N keeps max_image_len random patches per image, valid
        ones first (the original's multinomial draw, batched). The original shortens the sequence to the batch's
        largest valid count when that is smaller; here the extra tokens are masked padding, which changes no
        output. image_norm: a LayerNorm on the patch tokens before positions are added (config.image_embed_norm).
        valid_only (padding-free inference): the patch embedding computes the valid patches only, zeros elsewhere.
        """
        ph, pw = self.patch_embed.patch_size
        gh, gw = pixel_values.shape[-2] // ph, pixel_values.shape[-1] // pw
        B = pixel_values.shape[0]
        if pixel_mask is None:
            valid = torch.ones(B, gh, gw, dtype=torch.bool, device=pixel_values.device)
        else:  # nearest-sampled to the patch grid, as the original
            valid = F.interpolate(pixel_mask[:, None].float(), size=(gh, gw), mode="nearest")[:, 0] > 0  # [B, gh, gw]
        if valid_only and gh and gw and type(self.patch_embed) is PatchEmbed and not bool(valid.all()):
            x = self.patch_embed.forward_selected(pixel_values, valid)  # [B, N, D]
        else:
            x, _ = self.patch_embed(pixel_values)  # [B, N, D]
        if image_norm is not None:
            x = image_norm(x)
        N, D = x.shape[1:]
        h = valid[:, :, 0].sum(1)  # [B] valid rows (counted down the first column, as the original)
        w = valid[:, 0, :].sum(1)  # [B] valid columns
        rows = torch.arange(gh, device=x.device)
        cols = torch.arange(gw, device=x.device)
        inside = (rows[None, :, None] < h[:, None, None]) & (cols[None, None, :] < w[:, None, None])  # [B, gh, gw]
        if self.pos_embed is None:  # each patch's own (row, column); zero outside (h, w)
            pos = sincos_2d_pos_embed((gh, gw), D).to(x)[None] * inside.flatten(1)[..., None].to(x.dtype)
        else:
            pos = self.resampled_pos_embed(h, w, gh, gw, inside)
        x = x + pos
        masks = valid.flatten(1)  # [B, N]
        patch_index = torch.stack(torch.meshgrid(rows, cols, indexing="ij"), dim=-1).reshape(1, N, 2).expand(B, -1, -1)
        L = self.config.max_image_len
        if self.training and 0 < L < N:
            # random keys in [0, 1) for valid patches, [1, 2) for padding: sorting puts valid ones first
            order = (torch.rand(B, N, device=x.device) + (~masks).float()).argsort(dim=1)[:, :L]  # [B, L]
            x = x.gather(1, order[..., None].expand(-1, -1, D))
            masks = masks.gather(1, order)
            patch_index = patch_index.gather(1, order[..., None].expand(-1, -1, 2))
        cls = self.cls_token if self.pos_embed is None else self.cls_token + self.pos_embed[:, :1]
        x = self.pos_drop(torch.cat([cls.expand(B, -1, -1), x], dim=1))  # [B, 1+N, D]
        masks = torch.cat([masks.new_ones(B, 1), masks], dim=1)
        return x, masks, patch_index

    def resampled_pos_embed(self, h: torch.Tensor, w: torch.Tensor, gh: int, gw: int,
                            inside: torch.Tensor) -> torch.Tensor:
        """The learned P x P grid resized to each image's valid (h, w) patch grid, zero outside: [B, gh*gw, D]."""
        B, D = h.shape[0], self.config.embed_dim
        rows = torch.arange(gh, device=h.device)
        cols = torch.arange(gw, device=h.device)
        # align_corners=True: output i of n samples the source at i * (P - 1) / (n - 1), i.e. grid -1 + 2i/(n-1)
        gy = rows[None, :] * (2.0 / (h - 1).clamp_min(1)[:, None]) - 1  # [B, gh]
        gx = cols[None, :] * (2.0 / (w - 1).clamp_min(1)[:, None]) - 1  # [B, gw]
        grid = torch.stack(torch.broadcast_tensors(gx[:, None, :], gy[:, :, None]), dim=-1)  # [B, gh, gw, 2] (x, y)
        P = self.config.grid_size
        pos = self.pos_embed[:, 1:].reshape(1, P, P, D).permute(0, 3, 1, 2)  # [1, D, P, P]
        pos = F.grid_sample(pos.expand(B, -1, -1, -1), grid.to(pos.dtype), mode="bilinear", align_corners=True)
        return (pos * inside[:, None]).flatten(2).transpose(1, 2)  # [B, N, D]; zero outside (h, w), as the original
