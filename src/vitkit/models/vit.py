"""Vision Transformer (Dosovitskiy et al. 2020, "An Image is Worth 16x16 Words", https://arxiv.org/abs/2010.11929).

An image is cut into patches, each linearly embedded; a learnable [CLS] token is prepended, position
embeddings are added, a pre-norm transformer encoder follows, and the [CLS] output (or the mean of the patch
tokens) goes through a linear head. Parameter names follow timm (`patch_embed.proj`, `cls_token`, `pos_embed`,
`blocks.i.attn.qkv`, ...), so timm checkpoints load as an identity map.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..errors import ConfigError
from ..layers import Block, PatchEmbed, resample_pos_embed, sincos_2d_pos_embed
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
                img_size=c.img_size, patch_size=c.patch_size, in_chans=c.in_chans, embed_dim=D
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
        self.head = nn.Linear(self.num_features, c.num_classes) if c.num_classes > 0 else nn.Identity()
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
        return self.pos_drop(x), grid

    # --------------------------------------------------------------------------------------------- forward
    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """pixels [B, C, H, W] -> tokens [B, prefix + N, D] after the final norm."""
        x, _ = self.embed(x)
        for blk in self.blocks:
            x, _ = blk(x)
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
            x, _ = blk(x)
        x, _ = self.blocks[-1](x, num_out=1)
        return self.norm(x)

    @torch.no_grad()
    def predict_proba(self, x: torch.Tensor) -> torch.Tensor:
        """Softmax class probabilities [B, num_classes]."""
        return self.forward(x).float().softmax(dim=-1)

    def forward_intermediates(
        self, x: torch.Tensor, *, layers: list[int] | None = None, return_attention: bool = False
    ) -> dict[str, object]:
        """Named intermediates: `hidden_states` (block outputs [B, prefix+N, D], for `layers` or all),
        `attentions` (per block [B, heads, prefix+N, prefix+N], only when asked: it costs the fast path),
        `features` (after the final norm), `logits`, and `grid` (the patch grid)."""
        depth = len(self.blocks)
        wanted = set(range(depth)) if layers is None else {i % depth for i in layers}
        x, grid = self.embed(x)
        hidden, attentions = [], []
        for i, blk in enumerate(self.blocks):
            x, attn = blk(x, return_attention=return_attention)
            if i in wanted:
                hidden.append(x)
            if return_attention:
                attentions.append(attn)
        feats = self.norm(x)
        return {"hidden_states": hidden, "attentions": attentions, "features": feats,
                "logits": self.forward_head(feats), "grid": grid}

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
        self.head = nn.Linear(self.num_features, num_classes) if num_classes > 0 else nn.Identity()
        if num_classes > 0:
            nn.init.trunc_normal_(self.head.weight, std=0.02)
            nn.init.zeros_(self.head.bias)


__all__ = ["ViTConfig", "VisionTransformer"]
