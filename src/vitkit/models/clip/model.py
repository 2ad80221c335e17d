"""CLIP: contrastive language-image pre-training (Radford et al. 2021, https://arxiv.org/abs/2103.00020), the
late-fusion counterpart of ViLT on the same transformer core.

An image tower (a ViT: patches, [CLS], learned positions, CLIP's LayerNorm before the blocks, [CLS] -> LayerNorm
-> projection) and a text tower (`text.TextTransformer`: a causal transformer read at the end-of-text token,
projected) map images and texts into one space; a learnable temperature scales their cosine similarities. Each
side is encoded once, independently of the other, so a gallery's embeddings can be cached and searched.

Parameter names are vitkit's (the image tower is a `VisionTransformer` under `visual.`, with timm's names; the
text tower under `text.`); `vitkit.checkpoint.converters.open_clip` and `hf_clip` map OpenAI / open_clip and
Hugging Face names onto them.

    model = vitkit.from_pretrained("path/to/hf-clip-vit-base-patch32")      # or an open_clip file + model=
    img = model.encode_image(pixel_values)                                  # [B, 512], not normalised
    txt = model.encode_text(input_ids)                                      # [T, 512]
    out = model(pixel_values=pixel_values, input_ids=input_ids)             # out.logits_per_image [B, T]
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ...errors import ConfigError
from ..base import PretrainedModel
from ..vit import VisionTransformer
from .config import CLIPConfig
from .text import TextTransformer

MAX_LOGIT_SCALE = 100.0  # CLIP clamps the temperature so that logits are scaled by at most 100


@dataclass
class CLIPOutput:
    """What `CLIP.forward` returns (names as transformers' CLIPOutput): logits_per_image [B, T] =
    scale * cos(image, text), logits_per_text = its transpose, the L2-normalised embeddings, and with
    `return_loss=True` the symmetric contrastive loss (pairs on the diagonal)."""

    logits_per_image: torch.Tensor | None
    logits_per_text: torch.Tensor | None
    image_embeds: torch.Tensor | None  # [B, E], normalised
    text_embeds: torch.Tensor | None  # [T, E], normalised
    loss: torch.Tensor | None = None


def contrastive_loss(logits_per_image: torch.Tensor, logits_per_text: torch.Tensor | None = None,
                     labels: torch.Tensor | None = None) -> torch.Tensor:
    """Symmetric InfoNCE: the mean of the image->text and text->image cross-entropies. logits_per_image [B, T];
    logits_per_text [T', B'] (default: the transpose); labels [B]: the column of each row's match (default: the
    diagonal; one rank's rows against a gathered global batch pass their offset into it)."""
    if labels is None:
        labels = torch.arange(logits_per_image.shape[0], device=logits_per_image.device)
    text = logits_per_image.t() if logits_per_text is None else logits_per_text
    return (F.cross_entropy(logits_per_image.float(), labels) + F.cross_entropy(text.float(), labels)) / 2


class CLIP(PretrainedModel):
    """CLIP's two towers and temperature. `encode_image(pixel_values)` / `encode_text(input_ids)` give projected,
    not normalised, embeddings (as open_clip); `forward(pixel_values=..., input_ids=...)` the scaled similarities."""

    model_type = "clip"
    config_class = CLIPConfig

    def __init__(self, config: CLIPConfig) -> None:
        super().__init__()
        self.config = config
        self.visual = VisionTransformer(config.vision_config())
        self.text = TextTransformer(config)
        self.logit_scale = nn.Parameter(torch.tensor(float(config.logit_scale_init)))

    def no_weight_decay(self) -> set[str]:
        return {"logit_scale", "visual.pos_embed", "visual.cls_token", "text.pos_embed", "text.token_embedding.weight"}

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Activation checkpointing per block in both towers (timm's name)."""
        self.visual.set_grad_checkpointing(enable)
        self.text.set_grad_checkpointing(enable)

    def encode_image(self, pixel_values: torch.Tensor, normalize: bool = False) -> torch.Tensor:
        """pixels [B, 3, H, W] (CLIP's preprocessing: `vitkit.processing.CLIPProcessor`) -> [B, embed_dim]."""
        x = self.visual(pixel_values)
        return F.normalize(x, dim=-1) if normalize else x

    def encode_text(self, input_ids: torch.Tensor, normalize: bool = False) -> torch.Tensor:
        """token ids [T, L] (CLIP's BPE, `vitkit.processing.CLIPTokenizer`) -> [T, embed_dim]."""
        x = self.text(input_ids)
        return F.normalize(x, dim=-1) if normalize else x

    def scale(self) -> torch.Tensor:
        """exp(logit_scale), at most 100 as CLIP."""
        return self.logit_scale.exp().clamp(max=MAX_LOGIT_SCALE)

    def forward(self, pixel_values: torch.Tensor | None = None, input_ids: torch.Tensor | None = None,
                attention_mask: torch.Tensor | None = None, *, return_loss: bool = False) -> CLIPOutput:
        """Images [B, 3, H, W] and/or texts [T, L] -> `CLIPOutput`. attention_mask is accepted for transformers'
        call signature; CLIP reads each text at its end-of-text token, which never sees the padding after it."""
        if pixel_values is None and input_ids is None:
            raise ConfigError("CLIP needs pixel_values, input_ids or both")
        image = None if pixel_values is None else self.encode_image(pixel_values, normalize=True)
        text = None if input_ids is None else self.encode_text(input_ids, normalize=True)
        if image is None or text is None:
            return CLIPOutput(None, None, image, text)
        logits = self.scale() * image @ text.t()  # [B, T]
        loss = contrastive_loss(logits) if return_loss else None
        return CLIPOutput(logits, logits.t(), image, text, loss)


__all__ = ["CLIP", "MAX_LOGIT_SCALE", "CLIPOutput", "contrastive_loss"]
