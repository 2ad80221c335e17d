"""ViLT: Vision-and-Language Transformer without convolution or region supervision (Kim et al. 2021,
https://arxiv.org/abs/2102.03334).

Text is embedded as in BERT (word + position + segment embeddings, LayerNorm); an image is cut into 32x32
patches as in ViT, with an image [CLS] and a learned position grid resampled per image to that image's
valid patch grid. A modality-type embedding (text 0, image 1, second image 2 for NLVR2) is added, the two
sequences are concatenated, and ONE ViT encoder (vitkit's VisionTransformer, `transformer.*`) runs over
[text | image] with a key-padding mask. A pooler (tanh(Linear) of the first token) feeds the task heads.

Parameter names are the original ViLT's (`transformer.blocks.i.attn.qkv`, `text_embeddings.LayerNorm`,
`token_type_embeddings`, `pooler.dense`, `vqa_classifier.0`, ...), so its checkpoints load as an identity map.

    model = vitkit.from_pretrained("path/to/vilt-b32-finetuned-vqa")  # HF directory, .ckpt or vitkit directory
    out = model(input_ids, attention_mask, pixel_values, pixel_mask)  # inputs as transformers' ViltProcessor
    answer = model.config.labels[out.logits.argmax(-1)[0]]
    pretrain = vitkit.create_model("vilt_b32", init_from="vit_b32_384.pth")  # encoder from ImageNet ViT-B/32
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ...errors import CheckpointError, ConfigError
from ...layers import (
    ConvStem,
    OverlapConvEmbed,
    OverlapPatchEmbed,
    PatchEmbed,
    packed,
    resample_pos_embed,
    sincos_2d_pos_embed,
)
from ...layers.mlp import get_activation
from ...layers.one_way import check_image_index, one_way_block
from ..base import PretrainedModel, load_weights
from ..vit import IMAGENET_INCEPTION_MEAN, IMAGENET_INCEPTION_STD, VisionTransformer, ViTConfig
from .heads import (
    HEAD_ATTRS,
    ITMHead,
    MLMHead,
    Pooler,
    adapt_heads,
    classifier_mlp,
    init_rank_from_itm,
    rank_head,
)
from .output import ViLTOutput, deferred_features

log = logging.getLogger("vitkit")

TASKS = ("backbone", *HEAD_ATTRS)  # backbone, itm, mlm, vqa, nlvr2, retrieval


@dataclass(frozen=True)
class ViLTConfig:
    """Everything that defines a ViLT, plus the preprocessing its weights expect. Defaults: ViLT-B/32."""

    # text: BERT embeddings (bert-base-uncased vocabulary)
    vocab_size: int = 30522
    max_text_len: int = 40  # = the number of text position embeddings
    type_vocab_size: int = 2  # BERT segment ids (always 0 in ViLT)
    text_norm_eps: float = 1e-12  # BERT's LayerNorm eps (text embeddings, MLM transform)
    # image: ViT patches
    img_size: int = 384  # the learned position grid is img_size / patch_size square (12x12)
    patch_size: int = 32
    in_chans: int = 3
    max_image_len: int = -1  # training only: sample this many patches per image (200 in pretraining); -1: all
    pos_embed: str = "learn"  # image positions: "learn" (the original: a learned grid, resampled per image) or
    # "sincos" (fixed 2-D sin-cos of each patch's row and column, as MAE; nothing to learn, never stored)
    patch_stem: str = "patchify"  # "patchify" (the original: one conv, kernel = stride = patch), "overlap" (the
    # same linear map over a 2p x 2p window centred on each patch: kernel 2p, stride p) or "conv" (early
    # convolutions, Xiao et al. 2021: log2(patch) 3x3 stride-2 conv + BatchNorm + ReLU, then 1x1 to the width)
    # or "overlap_conv" (both summed: the overlap window's linear colour path plus the conv stem's shape path,
    # the conv branch starting at zero; layers.OverlapConvEmbed)
    image_embed_norm: bool = False  # LayerNorm on the patch tokens before positions are added (the text side has
    # BERT's embedding LayerNorm; this gives the image tokens the same scale)
    image_attends_text: bool = True  # True: the original's early fusion, every token attends to every token.
    # False: one-way fusion, image tokens attend to image tokens only (text attends to both), so an image's
    # encoding does not depend on the text and several texts can share it: forward(..., image_index=...)
    weight_init: str = "normal"  # from scratch: "normal" (the original: normal / truncated-normal 0.02) or
    # "xavier" (xavier-uniform for the encoder blocks' linear layers, as timm's jax init: on small from-scratch
    # models attention moves off uniform sooner)
    # the one transformer
    embed_dim: int = 768
    depth: int = 12
    num_heads: int = 12
    mlp_ratio: float = 4.0
    qkv_bias: bool = True
    act: str = "gelu"
    norm_eps: float = 1e-6  # timm ViT's LayerNorm eps (blocks, final norm)
    drop_rate: float = 0.0  # embedding / projection dropout (the original trained with 0.1)
    attn_drop_rate: float = 0.0
    drop_path_rate: float = 0.0
    modality_type_vocab_size: int = 2  # text 0, image 1 (+ image 2 for NLVR2: 3)
    num_images: int = 1  # images per example (NLVR2: 2)
    # heads: `task` gives `.logits`; `extra_heads` are built too (pretraining: ITM + MLM) -> `.extra_logits`
    task: str = "backbone"  # backbone | itm | mlm | vqa | nlvr2 | retrieval
    extra_heads: tuple[str, ...] = ()
    num_answers: int = 3129  # VQA answer vocabulary (VQAv2: 3129); NLVR2: 2
    labels: tuple[str, ...] | None = None  # answer / class names, index-aligned with the head's outputs
    # preprocessing the weights expect: resize the shorter side to 384, the longer to at most
    # int(1333 / 800 * 384) = 639, both sides down to a multiple of 32; normalise with mean / std; pad a batch
    # to its largest image and pass pixel_mask (1 = real pixel).
    mean: tuple[float, ...] = IMAGENET_INCEPTION_MEAN
    std: tuple[float, ...] = IMAGENET_INCEPTION_STD
    shorter_edge: int = 384
    longer_edge: int = 639
    size_divisor: int = 32
    interpolation: str = "bicubic"

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise ConfigError(f"task must be one of {', '.join(TASKS)}; got {self.task!r}")
        for h in self.extra_heads:
            if h not in HEAD_ATTRS or h == self.task:
                raise ConfigError(f"extra_heads may hold {', '.join(HEAD_ATTRS)} (not the task itself); got {h!r}")
        if len(set(self.extra_heads)) != len(self.extra_heads):
            raise ConfigError(f"extra_heads has duplicates: {self.extra_heads}")
        if self.num_images < 1:
            raise ConfigError(f"num_images must be >= 1, got {self.num_images}")
        if (self.task == "nlvr2") != (self.num_images > 1) or "nlvr2" in self.extra_heads:
            raise ConfigError("task='nlvr2' goes with num_images >= 2 (and only it)")
        if self.num_images > 1 and self.extra_heads:
            raise ConfigError("extra_heads are single-image heads; they do not combine with num_images > 1")
        if self.modality_type_vocab_size < self.num_images + 1:
            raise ConfigError(f"modality_type_vocab_size {self.modality_type_vocab_size} cannot index text and "
                              f"{self.num_images} image(s); use >= {self.num_images + 1}")
        if self.embed_dim % self.num_heads:
            raise ConfigError(f"embed_dim {self.embed_dim} is not divisible by num_heads {self.num_heads}")
        if self.img_size % self.patch_size:
            raise ConfigError(f"img_size {self.img_size} is not a multiple of patch_size {self.patch_size}")
        if self.pos_embed not in ("learn", "sincos"):
            raise ConfigError(f"pos_embed must be 'learn' or 'sincos', got {self.pos_embed!r}")
        if self.weight_init not in ("normal", "xavier"):
            raise ConfigError(f"weight_init must be 'normal' or 'xavier', got {self.weight_init!r}")
        if self.patch_stem not in ("patchify", "overlap", "conv", "overlap_conv"):
            raise ConfigError("patch_stem must be 'patchify', 'overlap', 'conv' or 'overlap_conv', "
                              f"got {self.patch_stem!r}")
        if self.max_image_len == 0 or self.max_image_len < -1:
            raise ConfigError(f"max_image_len must be -1 (all patches) or positive, got {self.max_image_len}")
        classes = self.num_outputs
        if self.labels is not None and classes and len(self.labels) != classes:
            raise ConfigError(f"{len(self.labels)} labels given for a {self.task} head with {classes} outputs")
        get_activation(self.act)  # raises ConfigError naming the known ones

    @property
    def heads(self) -> tuple[str, ...]:
        """Every head the model builds, the task's first."""
        return ((self.task,) if self.task != "backbone" else ()) + tuple(self.extra_heads)

    @property
    def num_outputs(self) -> int:
        return {"vqa": self.num_answers, "nlvr2": self.num_answers, "itm": 2, "retrieval": 1}.get(self.task, 0)

    @property
    def grid_size(self) -> int:
        return self.img_size // self.patch_size

    def vit_config(self) -> ViTConfig:
        """The encoder: a headless ViT whose blocks run over text and image tokens together."""
        return ViTConfig(
            img_size=self.img_size, patch_size=self.patch_size, in_chans=self.in_chans, num_classes=0,
            embed_dim=self.embed_dim, depth=self.depth, num_heads=self.num_heads, mlp_ratio=self.mlp_ratio,
            qkv_bias=self.qkv_bias, act=self.act, norm_eps=self.norm_eps, pos_drop_rate=self.drop_rate,
            proj_drop_rate=self.drop_rate, attn_drop_rate=self.attn_drop_rate, drop_path_rate=self.drop_path_rate,
            mean=self.mean, std=self.std, crop_pct=1.0, interpolation=self.interpolation, pos_embed=self.pos_embed,
        )


class TextEmbeddings(nn.Module):
    """BERT embeddings: LayerNorm(word + position + segment), then dropout. Positions are 0..L-1 (computed, not
    stored: the original's `position_ids` buffer is checked and dropped by the converters)."""

    def __init__(self, c: ViLTConfig) -> None:
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


class ViLT(PretrainedModel):
    """ViLT with its task head(s). `forward(input_ids, attention_mask, pixel_values, pixel_mask=None,
    token_type_ids=None) -> ViLTOutput`; argument names and input layout as Hugging Face transformers."""

    model_type = "vilt"
    config_class = ViLTConfig

    def __init__(self, config: ViLTConfig) -> None:
        super().__init__()
        self.config = c = config
        D = c.embed_dim
        self.text_embeddings = TextEmbeddings(c)
        self.token_type_embeddings = nn.Embedding(c.modality_type_vocab_size, D)  # modality: text 0, image 1, 2
        self.transformer = VisionTransformer(c.vit_config())
        if c.patch_stem != "patchify":
            stem = {"conv": ConvStem, "overlap": OverlapPatchEmbed, "overlap_conv": OverlapConvEmbed}[c.patch_stem]
            self.transformer.patch_embed = stem(img_size=c.img_size, patch_size=c.patch_size, in_chans=c.in_chans,
                                                embed_dim=D)
        self.image_norm = nn.LayerNorm(D, eps=c.norm_eps) if c.image_embed_norm else None
        self.pooler = Pooler(D)
        for head in c.heads:  # attribute names = the original's state-dict prefixes
            setattr(self, HEAD_ATTRS[head], self._build_head(head))
        self.initialize_weights()

    def _build_head(self, head: str) -> nn.Module:
        c, D = self.config, self.config.embed_dim
        if head == "itm":
            return ITMHead(D)
        if head == "mlm":
            return MLMHead(D, c.vocab_size, act=c.act, norm_eps=c.text_norm_eps)
        if head == "vqa":
            return classifier_mlp(D, 2 * D, c.num_answers)
        if head == "nlvr2":
            return classifier_mlp(c.num_images * D, c.num_images * D, c.num_answers)
        return rank_head(D)

    # ----------------------------------------------------------------------------------------------- init
    def initialize_weights(self) -> None:
        """The original's init outside the encoder (normal(0.02) linears and embeddings, unit LayerNorms); the
        encoder keeps timm's ViT init (weight_init="xavier": xavier-uniform block linears). A retrieval head
        starts from the ITM head's "match" row when both exist."""
        if self.config.weight_init == "xavier":
            for m in self.transformer.blocks.modules():
                if isinstance(m, nn.Linear):
                    nn.init.xavier_uniform_(m.weight)
        for name, m in self.named_modules():
            if name.startswith("transformer"):
                continue
            if isinstance(m, (nn.Linear, nn.Embedding)):
                nn.init.normal_(m.weight, std=0.02)
            if isinstance(m, nn.Linear) and m.bias is not None:
                nn.init.zeros_(m.bias)
            if isinstance(m, nn.LayerNorm):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        if "retrieval" in self.config.heads and "itm" in self.config.heads:
            init_rank_from_itm(self.rank_output, self.itm_score)

    def no_weight_decay(self) -> set[str]:
        return {"transformer.pos_embed", "transformer.cls_token"}

    def init_encoder_from(self, vit: VisionTransformer, where: str = "the given ViT") -> None:
        """Initialise `transformer` from a pretrained ViT (how ViLT starts pretraining: ImageNet ViT-B/32 @ 384).

        The ViT's classifier is dropped, its position grid resampled (bicubic, as timm) if its size differs, and
        every other weight must fit exactly. From a file or directory: `vitkit.create_model(name, init_from=...)`.
        """
        if not isinstance(vit, VisionTransformer):
            raise CheckpointError(f"{where} is a {type(vit).__name__}, not a ViT; init_from needs a ViT encoder")
        if vit.config.act != self.config.act:
            raise CheckpointError(f"{where} uses activation {vit.config.act!r}, this ViLT {self.config.act!r}")
        sd = {k: v for k, v in vit.state_dict().items() if not k.startswith(("head.", "pre_logits.", "fc_norm."))}
        pe, own = sd.get("pos_embed"), self.transformer.pos_embed
        if pe is not None and pe.shape[1] != own.shape[1] and vit.config.class_token and not vit.config.no_embed_class:
            log.info("init_from: resampling the ViT's %dx%d position grid to %dx%d", *vit.patch_embed.grid_size,
                     *self.transformer.patch_embed.grid_size)
            sd["pos_embed"] = resample_pos_embed(pe, self.transformer.patch_embed.grid_size,
                                                 vit.patch_embed.grid_size, num_prefix=1)
        load_weights(self.transformer, sd, source=where)

    # ---------------------------------------------------------------------------------------- embeddings
    def embed_image(
        self, pixel_values: torch.Tensor, pixel_mask: torch.Tensor | None = None, *, valid_only: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """pixels [B, C, H, W] (+ mask [B, H, W], 1 = real pixel) -> (tokens [B, 1+N, D] with position
        embeddings added, masks [B, 1+N] bool, patch_index [B, N, 2]).

        Each image's valid patch grid (h, w) is read from pixel_mask (nearest-sampled to the patch grid, as
        the original); the learned 12x12 grid is resized to (h, w) bilinearly with align_corners=True, all
        images at once with grid_sample, and is zero on the padding patches. Eval keeps every patch (padding
        masked out): no host sync, deterministic. Training with 0 < max_image_len < N keeps max_image_len random
        patches per image, valid ones first (the original's multinomial draw, batched). The original shortens the
        sequence to the batch's largest valid count when that is smaller; here the extra tokens are masked
        padding, which changes no output. valid_only (inference, which drops padding tokens): the patch
        embedding computes the valid patches only, zeros elsewhere.
        """
        vit = self.transformer
        ph, pw = vit.patch_embed.patch_size
        gh, gw = pixel_values.shape[-2] // ph, pixel_values.shape[-1] // pw
        B = pixel_values.shape[0]
        if pixel_mask is None:
            valid = torch.ones(B, gh, gw, dtype=torch.bool, device=pixel_values.device)
        else:  # nearest-sampled to the patch grid, as the original
            valid = F.interpolate(pixel_mask[:, None].float(), size=(gh, gw), mode="nearest")[:, 0] > 0  # [B, gh, gw]
        if valid_only and gh and gw and isinstance(vit.patch_embed, PatchEmbed) and not bool(valid.all()):
            x = vit.patch_embed.forward_selected(pixel_values, valid)  # [B, N, D]
        else:
            x, _ = vit.patch_embed(pixel_values)  # [B, N, D]
        if self.image_norm is not None:
            x = self.image_norm(x)
        N, D = x.shape[1:]
        h = valid[:, :, 0].sum(1)  # [B] valid rows (counted down the first column, as the original)
        w = valid[:, 0, :].sum(1)  # [B] valid columns
        rows = torch.arange(gh, device=x.device)
        cols = torch.arange(gw, device=x.device)
        inside = (rows[None, :, None] < h[:, None, None]) & (cols[None, None, :] < w[:, None, None])  # [B, gh, gw]
        if self.config.pos_embed == "sincos":  # each patch's own (row, column); zero outside (h, w)
            pos = sincos_2d_pos_embed((gh, gw), D).to(x)[None] * inside.flatten(1)[..., None].to(x.dtype)
        else:
            pos = self._resampled_pos_embed(h, w, gh, gw, inside)
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
        cls = (vit.cls_token + vit.pos_embed[:, :1]).expand(B, -1, -1)  # [B, 1, D]
        x = vit.pos_drop(torch.cat([cls, x], dim=1))  # [B, 1+N, D]
        masks = torch.cat([masks.new_ones(B, 1), masks], dim=1)
        return x, masks, patch_index

    def _resampled_pos_embed(self, h: torch.Tensor, w: torch.Tensor, gh: int, gw: int,
                             inside: torch.Tensor) -> torch.Tensor:
        """The learned P x P grid resized to each image's valid (h, w) patch grid, zero outside: [B, gh*gw, D]."""
        vit, B, D = self.transformer, h.shape[0], self.config.embed_dim
        rows = torch.arange(gh, device=h.device)
        cols = torch.arange(gw, device=h.device)
        # align_corners=True: output i of n samples the source at i * (P - 1) / (n - 1), i.e. grid -1 + 2i/(n-1)
        gy = rows[None, :] * (2.0 / (h - 1).clamp_min(1)[:, None]) - 1  # [B, gh]
        gx = cols[None, :] * (2.0 / (w - 1).clamp_min(1)[:, None]) - 1  # [B, gw]
        grid = torch.stack(torch.broadcast_tensors(gx[:, None, :], gy[:, :, None]), dim=-1)  # [B, gh, gw, 2] (x, y)
        P = self.config.grid_size
        pos = vit.pos_embed[:, 1:].reshape(1, P, P, D).permute(0, 3, 1, 2)  # [1, D, P, P]
        pos = F.grid_sample(pos.expand(B, -1, -1, -1), grid.to(pos.dtype), mode="bilinear", align_corners=True)
        return (pos * inside[:, None]).flatten(2).transpose(1, 2)  # [B, N, D]; zero outside (h, w), as the original

    # ------------------------------------------------------------------------------------------ forward
    def forward_features(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None,
        pixel_values: torch.Tensor,
        pixel_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        image_token_type_idx: int | torch.Tensor = 1,
        output_attentions: bool = False,
        image_index: torch.Tensor | None = None,
        pooled_only: bool = False,
    ) -> ViLTOutput:
        """One image per text: the backbone outputs (no heads). image_token_type_idx: an int or [B] tensor.
        image_index [N] (one-way fusion only): text n reads image image_index[n]; then input_ids is [N, Lt],
        pixel_values [B, C, H, W], and image_feats / image_masks / patch_index stay per image ([B, ...])."""
        if image_index is not None:
            check_image_index(self.config, image_index, input_ids.shape[0], pixel_values.shape[0])
        elif pixel_values.shape[0] != input_ids.shape[0]:
            raise ConfigError(f"{input_ids.shape[0]} texts but {pixel_values.shape[0]} images")
        packed_now = self._runs_packed(attention_mask, output_attentions, image_index)  # decided once
        text, text_masks, image, image_masks, patch_index = self._embed_pair(
            input_ids, attention_mask, pixel_values, pixel_mask, token_type_ids, image_token_type_idx,
            valid_only=packed_now)
        if packed_now:
            return self._forward_packed(text, text_masks, image, image_masks, patch_index, pooled_only)
        return self.forward_joint(text, text_masks, image, image_masks, patch_index, output_attentions, image_index,
                                  pooled_only)

    def _embed_pair(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None, pixel_values: torch.Tensor,
                    pixel_mask: torch.Tensor | None, token_type_ids: torch.Tensor | None,
                    image_token_type_idx: int | torch.Tensor = 1, valid_only: bool = False) -> tuple[torch.Tensor, ...]:
        """-> (text [B, Lt, D], text masks, image [B, 1+Li, D], image masks, patch_index), modality types added."""
        text_masks = torch.ones_like(input_ids, dtype=torch.bool) if attention_mask is None else attention_mask.bool()
        text = self.text_embeddings(input_ids, token_type_ids)  # [B, Lt, D]
        image, image_masks, patch_index = self.embed_image(pixel_values, pixel_mask, valid_only=valid_only)
        types = self.token_type_embeddings.weight  # [modalities, D]
        text = text + types[0]
        if isinstance(image_token_type_idx, int):
            image = image + types[image_token_type_idx]
        else:  # [B] (NLVR2: image 1 / image 2 per row)
            image = image + self.token_type_embeddings(image_token_type_idx)[:, None]
        return text, text_masks, image, image_masks, patch_index

    @torch.no_grad()
    def pooled_output(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None, pixel_values: torch.Tensor,
                      pixel_mask: torch.Tensor | None = None, token_type_ids: torch.Tensor | None = None
                      ) -> torch.Tensor:
        """Inference: the pooled output [B, D] alone (what the VQA, ITM and retrieval heads read), equal to
        `forward_features(...).pooled`: the last block on the text [CLS] only; in eval mode on the real tokens
        only (see `forward_joint`)."""
        return self.forward_features(input_ids, attention_mask, pixel_values, pixel_mask, token_type_ids,
                                     pooled_only=True).pooled

    @torch.no_grad()
    def pooled_joint(self, text: torch.Tensor, text_masks: torch.Tensor, image: torch.Tensor,
                     image_masks: torch.Tensor) -> torch.Tensor:
        """Inference: `forward_joint(...).pooled` [B, D] from embedded tokens, the last block on the text [CLS]
        only; in eval mode on the real tokens only (see `forward_joint`)."""
        return self.forward_joint(text, text_masks, image, image_masks,
                                  torch.zeros(0, dtype=torch.long, device=text.device), pooled_only=True).pooled

    def forward_joint(
        self,
        text: torch.Tensor,
        text_masks: torch.Tensor,
        image: torch.Tensor,
        image_masks: torch.Tensor,
        patch_index: torch.Tensor,
        output_attentions: bool = False,
        image_index: torch.Tensor | None = None,
        pooled_only: bool = False,
    ) -> ViLTOutput:
        """The shared encoder over embedded tokens (no heads): text [B, Lt, D] from `text_embeddings` and image
        [B, 1+Li, D] from `embed_image`, each with its modality-type embedding already added, masks bool.
        `forward_features` is the embeddings + this; `vitkit.vilt_inference` calls it directly to run many texts
        against one image embedded once. With one-way fusion (`image_attends_text=False`) the text and image
        streams run side by side (`image_index` [N] maps texts to images; None: text b reads image b).

        Inference (eval mode, gradients off, early fusion) runs packed: each pair's real text and image tokens
        back to back, so the per-token layers skip padding (a batch of mixed text lengths and image sizes costs
        what its real tokens cost), and the last block computes the text [CLS] row first; the other rows'
        features are computed when `text_feats` / `image_feats` are first read, zeros at padding (`ViLTOutput`).
        """
        if self._runs_packed(text_masks, output_attentions, image_index):
            return self._forward_packed(text, text_masks, image, image_masks, patch_index, pooled_only)
        if not self.config.image_attends_text and not output_attentions:
            return self._forward_one_way(text, text_masks, image, image_masks, patch_index, image_index, pooled_only)
        if image_index is not None:  # one-way fusion, attention maps asked for: one joint pass per text
            image, image_masks = image[image_index], image_masks[image_index]
            patch_index = patch_index[image_index]
        x = torch.cat([text, image], dim=1)  # [B, Lt + 1 + Li, D]
        mask = torch.cat([text_masks, image_masks], dim=1)  # one key-padding mask over [text | image]
        if not self.config.image_attends_text:  # image rows see image columns only: [B, L, L]
            Lt = text.shape[1]
            rows = torch.arange(mask.shape[1], device=mask.device)
            may = (rows[:, None] < Lt) | (rows[None, :] >= Lt)  # [L, L]: text row, or image column
            mask = mask[:, None, :] & may
        attentions = [] if output_attentions else None
        last = len(self.transformer.blocks) - 1 if pooled_only and not output_attentions else None
        for i, blk in enumerate(self.transformer.blocks):
            x, attn = blk(x, mask, output_attentions, num_out=1 if i == last else None)  # [CLS] row only at last
            if attentions is not None:
                attentions.append(attn)
        x = self.transformer.norm(x)
        Lt = text.shape[1]
        return ViLTOutput(
            logits=None, pooled=self.pooler(x), text_feats=x[:, :Lt], image_feats=x[:, Lt:],
            text_masks=text_masks, image_masks=image_masks, patch_index=patch_index, attentions=attentions,
        )

    def _runs_packed(self, text_masks: torch.Tensor | None, output_attentions: bool,
                     image_index: torch.Tensor | None) -> bool:
        """Whether `forward_joint` runs packed (see there); text_masks: the attention mask, None = all real."""
        return (self.config.image_attends_text and not output_attentions and image_index is None
                and not self.training and not torch.is_grad_enabled() and not torch.compiler.is_compiling()
                and (text_masks is None or bool(text_masks[:, 0].all())))  # the pooler reads position 0

    def _forward_packed(self, text: torch.Tensor, text_masks: torch.Tensor, image: torch.Tensor,
                        image_masks: torch.Tensor, patch_index: torch.Tensor, pooled_only: bool) -> ViLTOutput:
        """`forward_joint` in inference over the real tokens only (`layers.packed`)."""
        mask = torch.cat([text_masks, image_masks], dim=1)
        x, slots, first = packed.pack(torch.cat([text, image], dim=1), mask)
        lay = packed.layout(slots)
        blocks, norm = self.transformer.blocks, self.transformer.norm
        x = packed.through(blocks[:-1], x, lay)
        cls = norm(packed.block(blocks[-1], x, lay, first))[:, None]  # [B, 1, D]
        out = ViLTOutput(logits=None, pooled=self.pooler(cls), text_feats=cls, image_feats=cls[:, :0],
                         text_masks=text_masks, image_masks=image_masks, patch_index=patch_index)
        if not pooled_only:  # every row's features, when read
            out.text_feats, out.image_feats = deferred_features(
                lambda: packed.unpack(norm(packed.block(blocks[-1], x, lay)), mask), text.shape[1],
                [blocks[-1], norm], torch.is_inference_mode_enabled())
        return out

    def _forward_one_way(self, text: torch.Tensor, text_masks: torch.Tensor, image: torch.Tensor,
                         image_masks: torch.Tensor, patch_index: torch.Tensor,
                         image_index: torch.Tensor | None, pooled_only: bool = False) -> ViLTOutput:
        """One-way fusion as two streams: each block runs the image tokens' self-attention on their own and the
        text tokens' attention over [own text | their image], with the block's one set of weights. Equal to the
        joint pass with image rows masked from text columns, but each image is encoded once however many texts
        read it."""
        last = len(self.transformer.blocks) - 1 if pooled_only else None
        for i, blk in enumerate(self.transformer.blocks):
            text, image = one_way_block(blk, text, text_masks, image, image_masks, image_index, cls_only=i == last)
        text, image = self.transformer.norm(text), self.transformer.norm(image)
        return ViLTOutput(
            logits=None, pooled=self.pooler(text), text_feats=text, image_feats=image,
            text_masks=text_masks, image_masks=image_masks, patch_index=patch_index, attentions=None,
        )

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        pixel_values: torch.Tensor | None = None,
        pixel_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        *,
        image_token_type_idx: int = 1,
        output_attentions: bool = False,
        image_index: torch.Tensor | None = None,
        mlm_mask: torch.Tensor | None = None,
        pooled_only: bool = False,
    ) -> ViLTOutput:
        """input_ids / attention_mask / token_type_ids [B, Lt]; pixel_values [B, 3, H, W] and pixel_mask [B, H, W]
        (num_images > 1: [B, n, 3, H, W] and [B, n, H, W]; each image pairs with the text and gets modality
        type 1..n; all n pairs go through the encoder as one batch). image_index [N] (one-way fusion,
        `image_attends_text=False`): N texts over B images, text n about image image_index[n]; each image is
        encoded once (e.g. all of an image's questions in one step). mlm_mask [B, Lt] bool: the MLM head runs
        only where it is True (its logits [K, V] for the K masked positions, row-major) instead of on every
        text token: the head's 30,522-way projection costs more per token than a small encoder. pooled_only:
        for heads that read the pooled output alone (VQA, ITM, NLVR2, retrieval; training tasks pass it): the
        last block computes the text [CLS] row only, so `text_feats` holds that row ([B, 1, D]), `image_feats`
        is empty and no MLM head runs; logits and gradients are those of the full pass.

        In eval mode with gradients off (`torch.no_grad()` / `torch.inference_mode()`) the encoder skips padding
        and computes `text_feats` / `image_feats` on their first read, zeros at padding positions (see
        `forward_joint`); with gradients on every position is computed, padding included, as in transformers."""
        if pixel_values is None:
            raise ConfigError("ViLT needs pixel_values")
        n = self.config.num_images
        if n == 1 and pixel_values.ndim == 5 and pixel_values.shape[1] == 1:  # [B, 1, C, H, W] is one image
            pixel_values = pixel_values[:, 0]
            pixel_mask = None if pixel_mask is None else pixel_mask[:, 0]
        if pixel_values.ndim != (5 if n > 1 else 4) or (n > 1 and pixel_values.shape[1] != n):
            want = f"[B, {n}, C, H, W]" if n > 1 else "[B, C, H, W]"
            raise ConfigError(f"pixel_values of shape {tuple(pixel_values.shape)}; this model takes {want}")
        if n > 1:
            B = input_ids.shape[0]
            pixel_values = pixel_values.flatten(0, 1)  # [B*n, C, H, W], image-major within each example
            pixel_mask = None if pixel_mask is None else pixel_mask.flatten(0, 1)

            def rep(t: torch.Tensor | None) -> torch.Tensor | None:
                return None if t is None else t.repeat_interleave(n, dim=0)

            input_ids, attention_mask, token_type_ids = rep(input_ids), rep(attention_mask), rep(token_type_ids)
            image_token_type_idx = torch.arange(1, n + 1, device=pixel_values.device).repeat(B)
        out = self.forward_features(input_ids, attention_mask, pixel_values, pixel_mask, token_type_ids,
                                    image_token_type_idx, output_attentions, image_index, pooled_only)
        if n > 1:  # every field [B*n, ...] -> [B, n, ...]; NLVR2 reads the n pooled outputs side by side
            for name in ("pooled", "text_feats", "image_feats", "text_masks", "image_masks", "patch_index"):
                out.map_field(name, lambda t: t.reshape(B, n, *t.shape[1:]))
            heads = {"nlvr2": self.nlvr2_classifier(out.pooled.flatten(1))}  # [B, n*D] -> [B, answers]
        else:
            heads = {h: self._run_head(h, out, mlm_mask) for h in self.config.heads
                     if not (pooled_only and h == "mlm")}
        if self.config.task != "backbone":
            out.logits = heads.pop(self.config.task)
        out.extra_logits = heads
        return out

    def _run_head(self, head: str, out: ViLTOutput, mlm_mask: torch.Tensor | None = None) -> torch.Tensor:
        if head == "mlm":  # [B, Lt, V], or [K, V] at the K positions of mlm_mask
            return self.mlm_score(out.text_feats if mlm_mask is None else out.text_feats[mlm_mask])
        return getattr(self, HEAD_ATTRS[head])(out.pooled)  # itm [B, 2], vqa [B, answers], retrieval [B, 1]

    # ------------------------------------------------------------------------------------ loading helpers
    def adapt_state_dict(self, state_dict: dict[str, torch.Tensor], old_config: Any) -> dict[str, torch.Tensor]:
        """Fit a checkpoint saved for `old_config` to this model when `from_pretrained` overrides changed the
        heads (e.g. a pretrained ITM+MLM checkpoint loaded with task="vqa"): see `vilt_heads.adapt_heads`."""
        if not isinstance(old_config, ViLTConfig) or old_config == self.config:
            return state_dict
        return adapt_heads(state_dict, self.state_dict(), self.config.heads, self.config.task)


__all__ = ["TASKS", "TextEmbeddings", "ViLT", "ViLTConfig", "ViLTOutput"]
