"""Diffusion Transformer (Peebles & Xie 2022, "Scalable Diffusion Models with Transformers",
https://arxiv.org/abs/2212.09748).

A DiT predicts the noise (and, with `learn_sigma`, a variance interpolation) of a noised image or VAE latent:
the input is cut into patches and embedded (`x_embedder`), fixed 2-D sin-cos position embeddings are added,
and a stack of transformer blocks follows whose LayerNorms are modulated by the conditioning c = embed(t) +
embed(y) ("adaLN-Zero": shift, scale and a residual gate per branch, regressed from c by a zero-initialised
Linear, so every block starts as the identity and the model's output starts at exactly zero). A final
modulated LayerNorm and Linear map each token back to a patch of `out_channels` values.

Parameter names are the official ones (facebookresearch/DiT, models.py): `x_embedder.proj`, `pos_embed`,
`t_embedder.mlp.{0,2}`, `y_embedder.embedding_table`, `blocks.i.{attn.qkv, attn.proj, mlp.fc1, mlp.fc2,
adaLN_modulation.1}`, `final_layer.{linear, adaLN_modulation.1}`, so official checkpoints load as an identity
map (see vitkit.checkpoint.dit). The transformer core (Attention, Mlp, PatchEmbed, sin-cos table) is
vitkit.layers'.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import torch
from torch import nn

from ..errors import ConfigError, VitkitError
from ..layers import DENSE, Block, Layout, Modulation, PatchEmbed, modulate, run_block, sincos_2d_pos_embed
from .base import PretrainedModel

log = logging.getLogger("vitkit")

# Stable Diffusion's VAE latents are scaled by this to unit variance (DiT's sample.py / train.py).
SD_VAE_LATENT_SCALE = 0.18215


@dataclass(frozen=True)
class DiTConfig:
    """Everything that defines a DiT, plus what its samples mean (pixels or VAE latents).

    Architecture defaults are DiT-XL/2 on 256px ImageNet latents (official `DiT(...)` defaults). `mean`/`std`
    map pixels in [0, 1] to model space, x = (pixel - mean) / std, for pixel-space models; a single value (or
    equal values) applies to every channel and is stored as one per channel. Latent-space models set
    `latent_scale` (latents are multiplied by it before diffusion) and `vae`, a diffusers AutoencoderKL source
    (a hub id such as "stabilityai/sd-vae-ft-mse" or a local directory) used to decode samples to pixels.
    """

    input_size: int = 32  # side of the (square) training input: pixels, or latent cells (image side / 8)
    patch_size: int = 2
    in_channels: int = 4
    hidden_size: int = 1152
    depth: int = 28
    num_heads: int = 16
    mlp_ratio: float = 4.0
    class_dropout_prob: float = 0.1  # > 0 adds the null label (id num_classes) for classifier-free guidance
    num_classes: int = 1000
    learn_sigma: bool = True  # output 2 * in_channels: epsilon and the learned-range variance values
    labels: tuple[str, ...] | None = None  # class names, index-aligned with the label ids
    mean: tuple[float, ...] = (0.5,)
    std: tuple[float, ...] = (0.5,)
    latent_scale: float | None = None
    vae: str | None = None
    # How the conditioning embeddings start. "dit": the official N(0, 0.02) label table and timestep MLP.
    # "wide": label table N(0, 1) and xavier-uniform timestep MLP, so that class and noise level reach the
    # (still zero-initialised) adaLN modulation at full strength from the first step; with "dit" init a short
    # run barely learns to condition (measured in examples/dit_digits.md).
    cond_init: str = "dit"

    def __post_init__(self) -> None:
        ints = {"input_size": self.input_size, "patch_size": self.patch_size, "in_channels": self.in_channels,
                "hidden_size": self.hidden_size, "depth": self.depth, "num_heads": self.num_heads,
                "num_classes": self.num_classes}
        for name, v in ints.items():
            if not isinstance(v, int) or isinstance(v, bool) or v < (0 if name == "depth" else 1):
                raise ConfigError(f"{name} must be a positive integer, got {v!r}")
        if self.input_size % self.patch_size:
            raise ConfigError(f"input_size {self.input_size} is not a multiple of patch_size {self.patch_size}")
        if self.hidden_size % self.num_heads:
            raise ConfigError(f"hidden_size {self.hidden_size} is not divisible by num_heads {self.num_heads}")
        if self.hidden_size % 4:
            raise ConfigError(f"hidden_size {self.hidden_size} must be divisible by 4 (2-D sin-cos positions)")
        if not self.mlp_ratio > 0:
            raise ConfigError(f"mlp_ratio must be positive, got {self.mlp_ratio!r}")
        if not 0.0 <= self.class_dropout_prob < 1.0:
            raise ConfigError(f"class_dropout_prob must be in [0, 1), got {self.class_dropout_prob!r}")
        if self.labels is not None and len(self.labels) != self.num_classes:
            raise ConfigError(f"{len(self.labels)} labels given for num_classes={self.num_classes}")
        for name in ("mean", "std"):
            values = tuple(float(v) for v in getattr(self, name))
            if len(set(values)) == 1 and len(values) != self.in_channels:
                values = values[:1] * self.in_channels  # one value for every channel
            if len(values) != self.in_channels:
                raise ConfigError(f"{name} has {len(values)} values for in_channels={self.in_channels}")
            object.__setattr__(self, name, values)
        if any(s <= 0 for s in self.std):
            raise ConfigError(f"std must be positive, got {self.std}")
        if self.cond_init not in ("dit", "wide"):
            raise ConfigError(f"cond_init must be 'dit' or 'wide', got {self.cond_init!r}")
        if self.latent_scale is not None and not self.latent_scale > 0:
            raise ConfigError(f"latent_scale must be positive, got {self.latent_scale!r}")
        if self.vae is not None and self.latent_scale is None:
            raise ConfigError("a model with a vae works on VAE latents: set latent_scale (0.18215 for SD's VAE)")

    @property
    def out_channels(self) -> int:
        return 2 * self.in_channels if self.learn_sigma else self.in_channels

    @property
    def mlp_hidden(self) -> int:
        return int(self.hidden_size * self.mlp_ratio)

    @property
    def grid_size(self) -> tuple[int, int]:
        side = self.input_size // self.patch_size
        return side, side

    @property
    def has_null_class(self) -> bool:
        """Whether the label table has the null (unconditional) row that classifier-free guidance needs."""
        return self.class_dropout_prob > 0

    @property
    def latent_space(self) -> bool:
        return self.latent_scale is not None

    # Read-only aliases in ViTConfig's vocabulary, for tooling shared by every family (e.g. `vitkit models`).
    @property
    def img_size(self) -> int:
        return self.input_size

    @property
    def embed_dim(self) -> int:
        return self.hidden_size


class TimestepEmbedder(nn.Module):
    """Scalar timesteps [B] -> [B, D]: sinusoidal frequency features (GLIDE's layout, cos then sin), then an MLP."""

    def __init__(self, hidden_size: int, frequency_embedding_size: int = 256) -> None:
        super().__init__()
        self.mlp = nn.Sequential(
            nn.Linear(frequency_embedding_size, hidden_size), nn.SiLU(), nn.Linear(hidden_size, hidden_size)
        )
        self.frequency_embedding_size = frequency_embedding_size

    @staticmethod
    def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
        """t [B] (integer or fractional) -> [B, dim] = [cos(t * f_i), sin(t * f_i)], f_i = max_period^(-i/half)."""
        half = dim // 2
        freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
        args = t[:, None].float() * freqs[None]
        emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
        if dim % 2:
            emb = torch.cat([emb, torch.zeros_like(emb[:, :1])], dim=-1)
        return emb

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        freq = self.timestep_embedding(t, self.frequency_embedding_size)
        return self.mlp(freq.to(self.mlp[0].weight.dtype))


class LabelEmbedder(nn.Module):
    """Class ids [B] -> [B, D]. With dropout_prob > 0 the table has one more row, the null label `num_classes`,
    which replaces labels at random in training (and wherever `force_drop_ids` says) for classifier-free
    guidance."""

    def __init__(self, num_classes: int, hidden_size: int, dropout_prob: float) -> None:
        super().__init__()
        self.embedding_table = nn.Embedding(num_classes + int(dropout_prob > 0), hidden_size)
        self.num_classes = num_classes
        self.dropout_prob = dropout_prob

    def token_drop(self, labels: torch.Tensor, force_drop_ids: torch.Tensor | None = None,
                   generator: torch.Generator | None = None) -> torch.Tensor:
        """Labels with some replaced by the null id: at random with probability dropout_prob, or exactly where
        `force_drop_ids == 1` when given."""
        if self.embedding_table.num_embeddings == self.num_classes:
            raise VitkitError("this DiT has no null label (class_dropout_prob=0): labels cannot be dropped")
        if force_drop_ids is None:
            drop = torch.rand(labels.shape[0], device=labels.device, generator=generator) < self.dropout_prob
        else:
            drop = force_drop_ids.to(labels.device) == 1
        return torch.where(drop, torch.full_like(labels, self.num_classes), labels)

    def forward(self, labels: torch.Tensor, train: bool, force_drop_ids: torch.Tensor | None = None) -> torch.Tensor:
        if (train and self.dropout_prob > 0) or force_drop_ids is not None:
            labels = self.token_drop(labels, force_drop_ids)
        return self.embedding_table(labels)


class DiTBlock(Block):
    """The core's pre-norm block with adaLN-Zero conditioning: LayerNorms without affine parameters, each followed
    by a shift and scale from the condition, each branch gated by it (`layers.Modulation`)."""

    def __init__(self, hidden_size: int, num_heads: int, mlp_hidden: int) -> None:
        super().__init__(hidden_size, num_heads=num_heads, mlp_hidden=mlp_hidden, qkv_bias=True, act="gelu_tanh",
                         norm_eps=1e-6, norm_affine=False)
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(hidden_size, 6 * hidden_size))

    def forward(self, x: torch.Tensor, layout: Layout = DENSE, *, c: torch.Tensor) -> torch.Tensor:
        """x [B, N, D], c [B, D] (timestep + label embedding) -> [B, N, D]"""
        return super().forward(x, layout, modulation=Modulation.of(self.adaLN_modulation(c)))


class FinalLayer(nn.Module):
    """Modulated LayerNorm, then tokens [B, N, D] -> patches [B, N, p*p*out_channels]."""

    def __init__(self, hidden_size: int, patch_size: int, out_channels: int) -> None:
        super().__init__()
        self.norm_final = nn.LayerNorm(hidden_size, elementwise_affine=False, eps=1e-6)
        self.linear = nn.Linear(hidden_size, patch_size * patch_size * out_channels)
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(hidden_size, 2 * hidden_size))

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        shift, scale = self.adaLN_modulation(c).chunk(2, dim=1)
        return self.linear(modulate(self.norm_final(x), shift, scale))


class DiT(PretrainedModel):
    """Class-conditional diffusion transformer.

    `forward(x [B, C, H, W], t [B], y [B]) -> [B, out_channels, H, W]`: channels [:C] are the predicted noise,
    [C:] (with learn_sigma) the variance interpolation values in [-1, 1] that vitkit.diffusion reads.
    H and W must be multiples of the patch size; other sizes than the config's get sin-cos positions for their
    own grid.
    """

    model_type = "dit"
    config_class = DiTConfig

    def __init__(self, config: DiTConfig) -> None:
        super().__init__()
        self.config = c = config
        D = c.hidden_size
        self.x_embedder = PatchEmbed(img_size=c.input_size, patch_size=c.patch_size, in_chans=c.in_channels,
                                     embed_dim=D)
        self.t_embedder = TimestepEmbedder(D)
        self.y_embedder = LabelEmbedder(c.num_classes, D, c.class_dropout_prob)
        # Fixed, but saved (as in official checkpoints, where it is a frozen Parameter): a persistent buffer.
        self.register_buffer("pos_embed", sincos_2d_pos_embed(c.grid_size, D)[None], persistent=True)
        self.blocks = nn.ModuleList(DiTBlock(D, c.num_heads, c.mlp_hidden) for _ in range(c.depth))
        self.final_layer = FinalLayer(D, c.patch_size, c.out_channels)
        self.grad_checkpointing = False
        self.initialize_weights()

    @property
    def in_channels(self) -> int:
        return self.config.in_channels

    @property
    def out_channels(self) -> int:
        return self.config.out_channels

    @property
    def patch_size(self) -> int:
        return self.config.patch_size

    # ----------------------------------------------------------------------------------------------- init
    def initialize_weights(self) -> None:
        """The official init: xavier-uniform Linears (and the patch conv as a Linear), zero biases, N(0, 0.02)
        label table and timestep MLP (config.cond_init "wide": N(0, 1) and xavier), and zeros for every adaLN
        modulation and the output Linear (adaLN-Zero: each block is the identity and the output is exactly 0)."""
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
        w = self.x_embedder.proj.weight
        nn.init.xavier_uniform_(w.data.view(w.shape[0], -1))
        nn.init.zeros_(self.x_embedder.proj.bias)
        if self.config.cond_init == "wide":  # see DiTConfig.cond_init; the t MLP keeps its xavier init from above
            nn.init.normal_(self.y_embedder.embedding_table.weight, std=1.0)
        else:
            nn.init.normal_(self.y_embedder.embedding_table.weight, std=0.02)
            nn.init.normal_(self.t_embedder.mlp[0].weight, std=0.02)
            nn.init.normal_(self.t_embedder.mlp[2].weight, std=0.02)
        for block in self.blocks:
            nn.init.zeros_(block.adaLN_modulation[-1].weight)
            nn.init.zeros_(block.adaLN_modulation[-1].bias)
        nn.init.zeros_(self.final_layer.adaLN_modulation[-1].weight)
        nn.init.zeros_(self.final_layer.adaLN_modulation[-1].bias)
        nn.init.zeros_(self.final_layer.linear.weight)
        nn.init.zeros_(self.final_layer.linear.bias)

    def no_weight_decay(self) -> set[str]:
        return set()  # DiT trains with AdamW, weight_decay=0; the position table is a buffer

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Recompute each block's activations in the backward instead of keeping them (timm's name)."""
        self.grad_checkpointing = enable

    # --------------------------------------------------------------------------------------- patch layout
    def patchify(self, x: torch.Tensor) -> torch.Tensor:
        """[B, C, H, W] -> [B, (H/p)*(W/p), p*p*C], each patch flattened (row, column, channel): the inverse of
        `unpatchify`. (The patch convolution reads the same pixels in (channel, row, column) order.)"""
        B, C, H, W = x.shape
        p = self.patch_size
        x = x.reshape(B, C, H // p, p, W // p, p)
        return torch.einsum("nchpwq->nhwpqc", x).reshape(B, (H // p) * (W // p), p * p * C)

    def unpatchify(self, x: torch.Tensor, grid: tuple[int, int] | None = None) -> torch.Tensor:
        """[B, h*w, p*p*C] -> [B, C, h*p, w*p] with the official layout ('nhwpqc->nchpwq'); `grid` (h, w)
        defaults to a square grid."""
        B, T, K = x.shape
        p = self.patch_size
        c = K // (p * p)
        if grid is None:
            side = math.isqrt(T)
            grid = (side, side)
        h, w = grid
        if h * w != T or c * p * p != K:
            raise VitkitError(f"cannot unpatchify {tuple(x.shape)} into a {h}x{w} grid of {p}x{p} patches")
        x = torch.einsum("nhwpqc->nchpwq", x.reshape(B, h, w, p, p, c))
        return x.reshape(B, c, h * p, w * p)

    def _pos_embed_for(self, grid: tuple[int, int]) -> torch.Tensor:
        if tuple(grid) == self.config.grid_size:
            return self.pos_embed
        return sincos_2d_pos_embed(grid, self.config.hidden_size)[None].to(self.pos_embed)

    # --------------------------------------------------------------------------------------------- forward
    def forward(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor,
                force_drop_ids: torch.Tensor | None = None) -> torch.Tensor:
        """x [B, C, H, W] (noised input), t [B] timesteps (long or float), y [B] class ids (num_classes is the
        null label); force_drop_ids [B]: 1 where y is replaced by the null label. -> [B, out_channels, H, W]"""
        B, C, H, W = x.shape
        p = self.patch_size
        if C != self.in_channels:
            raise VitkitError(f"input has {C} channels, this DiT expects {self.in_channels}")
        if H % p or W % p:
            raise VitkitError(f"input {H}x{W} is not a multiple of the {p}x{p} patch")
        t = torch.as_tensor(t, device=x.device)
        if t.ndim == 0:
            t = t.expand(B)
        tokens, grid = self.x_embedder(x)
        tokens = tokens + self._pos_embed_for(grid)
        c = self.t_embedder(t) + self.y_embedder(y, self.training, force_drop_ids)
        for block in self.blocks:
            tokens = run_block(block, tokens, checkpointing=self.grad_checkpointing, c=c)
        return self.unpatchify(self.final_layer(tokens, c), grid)

    def forward_with_cfg(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor, cfg_scale: float,
                         guidance_channels: int | None = None) -> torch.Tensor:
        """Classifier-free guidance in one batched pass, as the official sampler calls it: the batch is [cond;
        uncond] with y = [labels; null ids]; only its first half of x is used, run twice. The guided noise
        uncond + cfg_scale * (cond - uncond) is returned for both halves.

        guidance_channels: how many leading output channels are guided; None = all `in_channels` noise channels
        (the standard approach). `guidance_channels=3` reproduces the official code exactly, which guides only
        the first 3 channels of the 4-channel latents (`model_out[:, :3]`, "for exact reproducibility"). The
        channels past it (the rest of the noise, and the learned variance) are passed through unguided: the
        conditional prediction in the first half, the unconditional one in the second, as in the official code.
        """
        if len(x) % 2:
            raise VitkitError(f"forward_with_cfg needs an even batch [cond; uncond], got {len(x)}")
        g = self.in_channels if guidance_channels is None else int(guidance_channels)
        if not 0 < g <= self.in_channels:
            raise VitkitError(f"guidance_channels must be in 1..{self.in_channels}, got {guidance_channels}")
        half = x[: len(x) // 2]
        out = self.forward(torch.cat([half, half], dim=0), t, y)
        eps, rest = out[:, :g], out[:, g:]
        cond_eps, uncond_eps = torch.split(eps, len(eps) // 2, dim=0)
        half_eps = uncond_eps + cfg_scale * (cond_eps - uncond_eps)
        return torch.cat([torch.cat([half_eps, half_eps], dim=0), rest], dim=1)

    # ------------------------------------------------------------------------------------------- loading
    def adapt_state_dict(self, state_dict: dict[str, torch.Tensor], old_config: object) -> dict[str, torch.Tensor]:
        """Called by from_pretrained with overrides: the fixed position table follows this model's grid
        (input_size overridden), and a label table of another size (num_classes overridden) is left freshly
        initialised. Both logged."""
        sd = dict(state_dict)
        own = self.state_dict()
        pe = sd.get("pos_embed")
        if pe is not None and tuple(pe.shape) != tuple(own["pos_embed"].shape):
            log.info("recomputing the fixed sin-cos position table for a %dx%d grid", *self.config.grid_size)
            sd["pos_embed"] = own["pos_embed"]
        key = "y_embedder.embedding_table.weight"
        table = sd.get(key)
        if table is not None and tuple(table.shape) != tuple(own[key].shape) and \
                getattr(old_config, "num_classes", None) != self.config.num_classes:
            log.info("dropping the checkpoint's label table (%d rows): num_classes overridden", table.shape[0])
            sd[key] = own[key]
        return sd


__all__ = ["SD_VAE_LATENT_SCALE", "DiT", "DiTBlock", "DiTConfig", "FinalLayer", "LabelEmbedder",
           "TimestepEmbedder", "modulate"]
