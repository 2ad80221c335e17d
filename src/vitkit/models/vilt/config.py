"""ViLTConfig: everything that defines a ViLT (Kim et al. 2021), plus the preprocessing its weights expect."""

from __future__ import annotations

from dataclasses import dataclass

from ...errors import ConfigError
from ...layers.mlp import get_activation
from ..vit import IMAGENET_INCEPTION_MEAN, IMAGENET_INCEPTION_STD
from .heads import HEAD_ATTRS

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

    @property
    def id2label(self) -> dict[int, str]:
        """Answer / class index -> name, as transformers' configs have it."""
        return {i: name for i, name in enumerate(self.labels or [str(i) for i in range(self.num_outputs)])}

    @property
    def label2id(self) -> dict[str, int]:
        return {name: i for i, name in self.id2label.items()}


__all__ = ["TASKS", "ViLTConfig"]
