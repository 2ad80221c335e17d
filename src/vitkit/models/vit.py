"""Vision Transformer (Dosovitskiy et al. 2020, "An Image is Worth 16x16 Words", https://arxiv.org/abs/2010.11929).

An image is cut into patches, each linearly embedded; a learnable [CLS] token is prepended, position
embeddings are added, a pre-norm transformer encoder follows, and the [CLS] output (or the mean of the patch
tokens) goes through a linear head. Parameter names follow timm (`patch_embed.proj`, `cls_token`, `pos_embed`,
`blocks.i.attn.qkv`, ...), so timm checkpoints load as an identity map.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ..errors import ConfigError
from ..layers import Block, Dense, PatchEmbed, resample_pos_embed, run_block, sincos_2d_pos_embed
from .base import PretrainedModel

IMAGENET_INCEPTION_MEAN = (0.5, 0.5, 0.5)
IMAGENET_INCEPTION_STD = (0.5, 0.5, 0.5)


@dataclass(frozen=True)
class ViTConfig:
    """Everything that defines a ViT, plus the preprocessing its weights expect."""

    img_size: int | tuple[int, int] = 224
    patch_size: int = 16  # for hybrids: the patch size on the CNN feature map (1 in the paper)
    in_chans: int = 3
    num_classes: int = 1000
    embed_dim: int = 768
    depth: int = 12
    num_heads: int = 12
    mlp_ratio: float = 4.0
    qkv_bias: bool = True
    act: str = "gelu"
    norm_eps: float = 1e-6
    class_token: bool = True
    global_pool: str = "token"  # "token" ([CLS] output) or "avg" (mean of the patch tokens)
    fc_norm: bool | None = None  # None: LayerNorm after pooling iff global_pool == "avg" (timm's rule)
    pos_embed: str = "learn"  # "learn" (1-D learnable), "sincos" (fixed 2-D), "none"
    no_embed_class: bool = False  # True: position embeddings cover patches only (DeiT-3, big_vision)
    init_values: float | None = None  # LayerScale init; None disables it
    pre_norm: bool = False  # LayerNorm on the embedded tokens before the blocks (CLIP's ln_pre); the patch
    # embedding then has no bias, as CLIP's and timm's
    head_bias: bool = True  # False: the head is a plain projection (CLIP's image projection)
    representation_size: int | None = None  # pre-logits Linear + tanh (JAX in21k releases, HF ViTModel pooler)
    backbone_layers: tuple[int, ...] | None = None  # hybrid ViT: ResNet-V2 stage depths, e.g. (3, 4, 9)
    drop_rate: float = 0.0  # dropout before the head
    pos_drop_rate: float = 0.0
    proj_drop_rate: float = 0.0
    attn_drop_rate: float = 0.0
    drop_path_rate: float = 0.0
    labels: tuple[str, ...] | None = None  # class names, index-aligned with the head's outputs
    # Preprocessing the weights expect; carried so training, eval and predict agree.
    mean: tuple[float, ...] = IMAGENET_INCEPTION_MEAN
    std: tuple[float, ...] = IMAGENET_INCEPTION_STD
    crop_pct: float = 0.9
    interpolation: str = "bicubic"

    def __post_init__(self) -> None:
        if self.global_pool not in ("token", "avg"):
            raise ConfigError(f"global_pool must be 'token' or 'avg', got {self.global_pool!r}")
        if self.global_pool == "token" and not self.class_token:
            raise ConfigError("global_pool='token' needs class_token=True; use global_pool='avg' without one")
        if self.pos_embed not in ("learn", "sincos", "none"):
            raise ConfigError(f"pos_embed must be 'learn', 'sincos' or 'none', got {self.pos_embed!r}")
        if self.labels is not None and self.num_classes and len(self.labels) != self.num_classes:
            raise ConfigError(f"{len(self.labels)} labels given for num_classes={self.num_classes}")
        if self.embed_dim % self.num_heads:
            raise ConfigError(f"embed_dim {self.embed_dim} is not divisible by num_heads {self.num_heads}")

    @property
    def mlp_hidden(self) -> int:
        return int(self.embed_dim * self.mlp_ratio)

    @property
    def id2label(self) -> dict[int, str]:
        """Class index -> name, as transformers' configs have it (names are the indices when no labels are set)."""
        return {i: name for i, name in enumerate(self.labels or [str(i) for i in range(self.num_classes)])}

    @property
    def label2id(self) -> dict[str, int]:
        return {name: i for i, name in self.id2label.items()}


class VisionTransformer(PretrainedModel):
    """ViT classifier. `forward(x [B,C,H,W]) -> logits [B, num_classes]`; any input size (position embeddings
    are resampled to the input's patch grid)."""

    model_type = "vit"
    config_class = ViTConfig

    def __init__(self, config: ViTConfig) -> None:
        super().__init__()
        self.config = c = config
        D = c.embed_dim
        if c.backbone_layers:
            from .hybrid import HybridEmbed  # the CNN stem is only built for hybrids

            self.patch_embed = HybridEmbed(
                img_size=c.img_size, patch_size=c.patch_size, in_chans=c.in_chans, embed_dim=D,
                layers=c.backbone_layers,
            )
        else:
            self.patch_embed = PatchEmbed(
                img_size=c.img_size, patch_size=c.patch_size, in_chans=c.in_chans, embed_dim=D, bias=not c.pre_norm
            )
        self.num_prefix_tokens = 1 if c.class_token else 0
        self.cls_token = nn.Parameter(torch.zeros(1, 1, D)) if c.class_token else None
        pos_len = self.patch_embed.num_patches + (0 if c.no_embed_class else self.num_prefix_tokens)
        if c.pos_embed == "learn":
            self.pos_embed = nn.Parameter(torch.zeros(1, pos_len, D))
        elif c.pos_embed == "sincos":
            # Fixed: recomputed exactly for any grid, never stored in checkpoints.
            self.register_buffer("pos_embed", self._sincos(self.patch_embed.grid_size), persistent=False)
        else:
            self.pos_embed = None
        self.pos_drop = nn.Dropout(c.pos_drop_rate)
        self.norm_pre = nn.LayerNorm(D, eps=c.norm_eps) if c.pre_norm else nn.Identity()
        dpr = [c.drop_path_rate * i / max(c.depth - 1, 1) for i in range(c.depth)]  # stochastic depth grows linearly
        self.blocks = nn.ModuleList(
            Block(
                D, num_heads=c.num_heads, mlp_hidden=c.mlp_hidden, qkv_bias=c.qkv_bias, act=c.act,
                norm_eps=c.norm_eps, proj_drop=c.proj_drop_rate, attn_drop=c.attn_drop_rate, drop_path=dpr[i],
                init_values=c.init_values,
            )
            for i in range(c.depth)
        )
        use_fc_norm = c.global_pool == "avg" if c.fc_norm is None else c.fc_norm
        self.norm = nn.Identity() if use_fc_norm else nn.LayerNorm(D, eps=c.norm_eps)
        self.fc_norm = nn.LayerNorm(D, eps=c.norm_eps) if use_fc_norm else nn.Identity()
        self.head_drop = nn.Dropout(c.drop_rate)
        if c.representation_size:
            self.pre_logits = nn.Sequential()
            self.pre_logits.add_module("fc", nn.Linear(D, c.representation_size))
            self.pre_logits.add_module("act", nn.Tanh())
            self.num_features = c.representation_size
        else:
            self.pre_logits = nn.Identity()
            self.num_features = D
        self.head = (nn.Linear(self.num_features, c.num_classes, bias=c.head_bias) if c.num_classes > 0
                     else nn.Identity())
        self.grad_checkpointing = False
        self.initialize_weights()

    # ----------------------------------------------------------------------------------------------- init
    def initialize_weights(self) -> None:
        """timm's default ViT init: truncated-normal(0.02) linears and position embeddings, tiny [CLS]."""
        if isinstance(self.pos_embed, nn.Parameter):
            nn.init.trunc_normal_(self.pos_embed, std=0.02)
        if self.cls_token is not None:
            nn.init.normal_(self.cls_token, std=1e-6)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def no_weight_decay(self) -> set[str]:
        return {"pos_embed", "cls_token"}

    # ------------------------------------------------------------------------------------------- embedding
    def _sincos(self, grid: tuple[int, int]) -> torch.Tensor:
        pe = sincos_2d_pos_embed(grid, self.config.embed_dim)  # [gh*gw, D]
        if not self.config.no_embed_class and self.config.class_token:
            pe = torch.cat([torch.zeros(1, pe.shape[1]), pe])  # the [CLS] slot gets no position
        return pe[None]

    def _pos_embed_for(self, grid: tuple[int, int]) -> torch.Tensor:
        """The position embedding for a patch grid, resampled (bicubic, as timm) when it differs from init's."""
        if self.config.pos_embed == "sincos":
            if grid == self.patch_embed.grid_size:
                return self.pos_embed
            return self._sincos(grid).to(self.pos_embed)
        num_prefix = 0 if self.config.no_embed_class else self.num_prefix_tokens
        return resample_pos_embed(self.pos_embed, grid, self.patch_embed.grid_size, num_prefix=num_prefix)

    def embed(self, x: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
        """pixels [B, C, H, W] -> (tokens [B, prefix + N, D] with position embeddings added, patch grid)."""
        x, grid = self.patch_embed(x)  # [B, N, D]
        prefix = [self.cls_token.expand(x.shape[0], -1, -1)] if self.cls_token is not None else []
        if self.pos_embed is None:
            x = torch.cat([*prefix, x], dim=1)
        elif self.config.no_embed_class:
            x = torch.cat([*prefix, x + self._pos_embed_for(grid)], dim=1)
        else:
            x = torch.cat([*prefix, x], dim=1) + self._pos_embed_for(grid)
        return self.norm_pre(self.pos_drop(x)), grid

    # --------------------------------------------------------------------------------------------- forward
    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """pixels [B, C, H, W] -> tokens [B, prefix + N, D] after the final norm."""
        x, _ = self.embed(x)
        for blk in self.blocks:
            x = run_block(blk, x, checkpointing=self.grad_checkpointing)
        return self.norm(x)

    def pool(self, x: torch.Tensor) -> torch.Tensor:
        """tokens [B, prefix + N, D] -> [B, D]"""
        if self.config.global_pool == "avg":
            return x[:, self.num_prefix_tokens :].mean(dim=1)
        return x[:, 0]

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """tokens [B, prefix + N, D] -> logits [B, num_classes] (or the features the head sees)."""
        x = self.pre_logits(self.head_drop(self.fc_norm(self.pool(x))))
        return x if pre_logits else self.head(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.config.global_pool == "token" and len(self.blocks) > 0:
            return self.forward_head(self._cls_features(x))
        return self.forward_head(self.forward_features(x))

    def _cls_features(self, x: torch.Tensor) -> torch.Tensor:
        """forward_features for a [CLS]-pooled head: [B, 1, D]. Nothing after the last block's attention reads
        the other tokens, so that block computes the [CLS] row only (its keys and values still come from every
        token): the same logits, ~1/depth of the encoder's work less, in training and inference alike."""
        x, _ = self.embed(x)
        for blk in self.blocks[:-1]:
            x = run_block(blk, x, checkpointing=self.grad_checkpointing)
        x = run_block(self.blocks[-1], x, Dense(num_queries=1), checkpointing=self.grad_checkpointing)
        return self.norm(x)

    @torch.no_grad()
    def predict_proba(self, x: torch.Tensor) -> torch.Tensor:
        """Softmax class probabilities [B, num_classes]."""
        return self.forward(x).float().softmax(dim=-1)

    def forward_intermediates(
        self,
        x: torch.Tensor,
        indices: int | list[int] | None = None,
        return_prefix_tokens: bool = False,
        norm: bool = False,
        stop_early: bool = False,
        output_fmt: str = "NCHW",
        intermediates_only: bool = False,
        output_dict: bool = False,
        *,
        layers: list[int] | None = None,
        return_attention: bool = False,
    ) -> Any:
        """Block outputs, with timm's signature and return shape.

        Args:
            x: pixels [B, C, H, W].
            indices: which blocks: None = all, an int n = the last n, a list = those (negative from the end).
            return_prefix_tokens: each intermediate becomes (spatial, prefix tokens [B, prefix, D]).
            norm: apply the final norm to each intermediate.
            stop_early: stop after the last block asked for (the returned features are then that block's, normed).
            output_fmt: "NCHW" (patch tokens as a [B, D, gh, gw] map) or "NLC" ([B, N, D]); prefix tokens are
                removed from the intermediates either way.
            intermediates_only: return the list alone.
            output_dict: return {"image_intermediates": [...], "image_features": ..., and with prefix tokens
                "image_intermediates_prefix": [...]}.
            layers / return_attention: vitkit's earlier form (a dict of `hidden_states`, `attentions`,
                `features`, `logits`, `grid`); deprecated, use `forward_with_attention`.

        Returns:
            (features after the final norm [B, prefix + N, D], intermediates), or the intermediates alone, or the
            dict.
        """
        if layers is not None or return_attention:
            warnings.warn("forward_intermediates(layers=..., return_attention=...) is vitkit's old form; use "
                          "forward_intermediates(x, indices=...) (timm's) or forward_with_attention(x)",
                          FutureWarning, stacklevel=2)
            return self.forward_with_attention(x, layers=layers, record=return_attention)
        if output_fmt not in ("NCHW", "NLC"):
            raise ConfigError(f"output_fmt must be 'NCHW' or 'NLC', got {output_fmt!r}")
        take = _take_indices(len(self.blocks), indices)
        B = x.shape[0]
        x, (gh, gw) = self.embed(x)
        blocks = self.blocks[: max(take) + 1] if stop_early and take else self.blocks
        inter = []
        for i, blk in enumerate(blocks):
            x = run_block(blk, x, checkpointing=self.grad_checkpointing)
            if i in take:
                inter.append(self.norm(x) if norm else x)
        p = self.num_prefix_tokens
        prefix = [y[:, :p] for y in inter] if p else None
        inter = [y[:, p:] for y in inter]
        if output_fmt == "NCHW":
            inter = [y.reshape(B, gh, gw, -1).permute(0, 3, 1, 2).contiguous() for y in inter]  # [B, D, gh, gw]
        if output_dict:
            out: dict[str, Any] = {"image_intermediates": inter}
            if return_prefix_tokens and prefix is not None:
                out["image_intermediates_prefix"] = prefix
            if not intermediates_only:
                out["image_features"] = self.norm(x)
            return out
        if return_prefix_tokens and prefix is not None:
            inter = list(zip(inter, prefix))
        return inter if intermediates_only else (self.norm(x), inter)

    def forward_with_attention(self, x: torch.Tensor, *, layers: list[int] | None = None,
                               record: bool = True) -> dict[str, Any]:
        """Named intermediates: `hidden_states` (block outputs [B, prefix+N, D], for `layers` or all),
        `attentions` (per block [B, heads, prefix+N, prefix+N], materialised explicitly: slower than the fused
        kernel), `features` (after the final norm), `logits`, and `grid` (the patch grid)."""
        depth = len(self.blocks)
        wanted = set(range(depth)) if layers is None else {i % depth for i in layers}
        x, grid = self.embed(x)
        lay = Dense(probs=[] if record else None)
        hidden = []
        for i, blk in enumerate(self.blocks):
            x = blk(x, lay)
            if i in wanted:
                hidden.append(x)
        feats = self.norm(x)
        return {"hidden_states": hidden, "attentions": lay.probs or [], "features": feats,
                "logits": self.forward_head(feats), "grid": grid}

    # ----------------------------------------------------------------------------------------- timm's names
    def get_classifier(self) -> nn.Module:
        return self.head

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Recompute each block's activations in the backward instead of keeping them (less memory, ~1/3 more
        compute): activation checkpointing per block, under timm's name."""
        self.grad_checkpointing = enable

    @property
    def pretrained_cfg(self) -> dict[str, Any]:
        """The preprocessing these weights expect, in timm's `pretrained_cfg` keys."""
        c = self.config
        size = c.img_size if isinstance(c.img_size, tuple) else (c.img_size, c.img_size)
        return {"input_size": (c.in_chans, *size), "interpolation": c.interpolation, "mean": tuple(c.mean),
                "std": tuple(c.std), "crop_pct": c.crop_pct, "crop_mode": "center", "num_classes": c.num_classes,
                "first_conv": "patch_embed.proj", "classifier": "head", "label_names": c.labels}

    def reset_classifier(self, num_classes: int, global_pool: str | None = None) -> None:
        """Replace the head (e.g. for fine-tuning on another label set); the config follows."""
        changes: dict[str, object] = {"num_classes": num_classes}
        if self.config.labels is not None and len(self.config.labels) != num_classes:
            changes["labels"] = None  # the old class names do not describe the new head
        if global_pool is not None:
            changes["global_pool"] = global_pool
            # fc_norm=None derives the norm layout from global_pool; pin the layout this model was built with,
            # so the config still rebuilds these modules (save_pretrained -> from_pretrained).
            changes["fc_norm"] = isinstance(self.fc_norm, nn.LayerNorm)
        self.config = type(self.config)(**{**self.config.__dict__, **changes})
        self.head = (nn.Linear(self.num_features, num_classes, bias=self.config.head_bias) if num_classes > 0
                     else nn.Identity())
        if num_classes > 0:
            nn.init.trunc_normal_(self.head.weight, std=0.02)
            if self.head.bias is not None:
                nn.init.zeros_(self.head.bias)


def _take_indices(depth: int, indices: int | list[int] | None) -> list[int]:
    """timm's rule: None = every block, an int n = the last n, a list = those (negative counts from the end)."""
    if indices is None:
        indices = depth
    if isinstance(indices, int):
        if not 0 < indices <= depth:
            raise ConfigError(f"indices={indices}: ask for 1..{depth} of the last blocks")
        return list(range(depth - indices, depth))
    take = [depth + i if i < 0 else i for i in indices]
    bad = [i for i, j in zip(indices, take) if not 0 <= j < depth]
    if bad:
        raise ConfigError(f"block indices {bad} out of range for depth {depth}")
    return take


__all__ = ["ViTConfig", "VisionTransformer"]
