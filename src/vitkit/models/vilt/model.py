"""ViLT: Vision-and-Language Transformer without convolution or region supervision (Kim et al. 2021,
https://arxiv.org/abs/2102.03334).

Text is embedded as in BERT (word + position + segment embeddings, LayerNorm); an image is cut into 32x32
patches as in ViT, with an image [CLS] and a learned position grid resampled per image to that image's
valid patch grid. A modality-type embedding (text 0, image 1, second image 2 for NLVR2) is added, the two
sequences are concatenated, and ONE encoder of vitkit's pre-norm blocks (`transformer.*`) runs over
[text | image] with a key-padding mask. A pooler (tanh(Linear) of the first token) feeds the task heads.

Parameter names are the original ViLT's (`transformer.blocks.i.attn.qkv`, `text_embeddings.LayerNorm`,
`token_type_embeddings`, `pooler.dense`, `vqa_classifier.0`, ...), so its checkpoints load as an identity map.

How the encoder lays out the tokens (`layers.layout`): a padded batch with a key-padding mask (the default, and
everything with gradients: the same values as transformers, padding positions included); one-way fusion as two
streams (`image_attends_text=False`); and, when the caller asks for the pooled output alone in eval mode
(`pooled_only=True`: the VQA / ITM / retrieval / NLVR2 heads, `vitkit.vqa`, evaluation), the real tokens of each
pair packed back to back so that padding costs nothing.

    model = vitkit.from_pretrained("path/to/vilt-b32-finetuned-vqa")  # HF directory, .ckpt or vitkit directory
    out = model(input_ids, attention_mask, pixel_values, pixel_mask)  # inputs as transformers' ViltProcessor
    answer = model.config.labels[out.logits.argmax(-1)[0]]
    pretrain = vitkit.create_model("vilt_b32", init_from="vit_b32_384.pth")  # encoder from ImageNet ViT-B/32
"""

from __future__ import annotations

import logging
from typing import Any

import torch
from torch import nn

from ...errors import CheckpointError, ConfigError
from ...layers import Dense, OneWay, Packed, resample_pos_embed, run_block
from ...layers.one_way import check_image_index
from ...layers.packed import pack
from ..base import PretrainedModel, load_weights
from ..vit import VisionTransformer
from .config import TASKS, ViLTConfig
from .embeddings import TextEmbeddings, ViLTTransformer
from .heads import (
    HEAD_ATTRS,
    ITMHead,
    MLMHead,
    Pooler,
    adapt_heads,
    classifier_mlp,
    head_loss,
    init_rank_from_itm,
    rank_head,
)
from .output import ViLTOutput

log = logging.getLogger("vitkit")

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
        self.transformer = ViLTTransformer(c)
        self.image_norm = nn.LayerNorm(D, eps=c.norm_eps) if c.image_embed_norm else None
        self.pooler = Pooler(D)
        for head in c.heads:  # attribute names = the original's state-dict prefixes
            setattr(self, HEAD_ATTRS[head], self._build_head(head))
        self.grad_checkpointing = False
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
        self.transformer.initialize_weights(self.config.weight_init)
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

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Recompute each block's activations in the backward instead of keeping them (timm's name)."""
        self.grad_checkpointing = enable

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
    def embed_image(self, pixel_values: torch.Tensor, pixel_mask: torch.Tensor | None = None, *,
                    valid_only: bool = False) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """pixels [B, C, H, W] (+ mask [B, H, W]) -> (tokens [B, 1+N, D], masks [B, 1+N], patch_index [B, N, 2]);
        see `ViLTTransformer.embed_image`."""
        return self.transformer.embed_image(pixel_values, pixel_mask, image_norm=self.image_norm,
                                            valid_only=valid_only)

    def embed_pair(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None, pixel_values: torch.Tensor,
                   pixel_mask: torch.Tensor | None = None, token_type_ids: torch.Tensor | None = None,
                   image_token_type_idx: int | torch.Tensor = 1, valid_only: bool = False
                   ) -> tuple[torch.Tensor, ...]:
        """-> (text [B, Lt, D], text masks, image [B, 1+Li, D], image masks, patch_index), modality types added.
        image_token_type_idx: an int or [B] (NLVR2: image 1 / image 2 per row)."""
        text_masks = torch.ones_like(input_ids, dtype=torch.bool) if attention_mask is None else attention_mask.bool()
        text = self.text_embeddings(input_ids, token_type_ids)  # [B, Lt, D]
        image, image_masks, patch_index = self.embed_image(pixel_values, pixel_mask, valid_only=valid_only)
        types = self.token_type_embeddings.weight  # [modalities, D]
        text = text + types[0]
        if isinstance(image_token_type_idx, int):
            image = image + types[image_token_type_idx]
        else:
            image = image + self.token_type_embeddings(image_token_type_idx)[:, None]
        return text, text_masks, image, image_masks, patch_index

    # ------------------------------------------------------------------------------------------ forward
    def forward_features(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None,
        pixel_values: torch.Tensor,
        pixel_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        image_token_type_idx: int | torch.Tensor = 1,
        *,
        output_attentions: bool = False,
        output_hidden_states: bool = False,
        image_index: torch.Tensor | None = None,
        pooled_only: bool = False,
    ) -> ViLTOutput:
        """The backbone outputs (no heads), one image per text. image_index [N] (one-way fusion only): text n reads
        image image_index[n]; then input_ids is [N, Lt], pixel_values [B, C, H, W], and image_feats / image_masks /
        patch_index stay per image ([B, ...]). Other arguments: see `forward` and `forward_joint`."""
        if image_index is not None:
            check_image_index(self.config, image_index, input_ids.shape[0], pixel_values.shape[0])
        elif pixel_values.shape[0] != input_ids.shape[0]:
            raise ConfigError(f"{input_ids.shape[0]} texts but {pixel_values.shape[0]} images")
        packs = self._packs(attention_mask, pooled_only, output_attentions or output_hidden_states, image_index)
        embedded = self.embed_pair(input_ids, attention_mask, pixel_values, pixel_mask, token_type_ids,
                                   image_token_type_idx, valid_only=packs)
        return self._encode(*embedded, output_attentions=output_attentions,
                            output_hidden_states=output_hidden_states, image_index=image_index,
                            pooled_only=pooled_only, packs=packs)

    def forward_joint(
        self,
        text: torch.Tensor,
        text_masks: torch.Tensor,
        image: torch.Tensor,
        image_masks: torch.Tensor,
        patch_index: torch.Tensor,
        *,
        output_attentions: bool = False,
        output_hidden_states: bool = False,
        image_index: torch.Tensor | None = None,
        pooled_only: bool = False,
    ) -> ViLTOutput:
        """The shared encoder over embedded tokens (no heads).

        Args:
            text: [N, Lt, D] from `text_embeddings` with the text modality embedding added; text_masks [N, Lt].
            image: [B, 1+Li, D] from `embed_image` with its modality embedding added; image_masks [B, 1+Li].
            patch_index: [B, Li, 2], passed through to the output.
            output_attentions / output_hidden_states: also return each block's attention probabilities (computed
                explicitly, slower) / the embeddings and each block's output.
            image_index: [N], one-way fusion only: text n reads image image_index[n] (None: text n reads image n).
            pooled_only: compute the pooled output alone (what the VQA, ITM, retrieval and NLVR2 heads read): the
                last block computes the text [CLS] row only, and in eval mode with early fusion the real tokens of
                each pair are packed back to back so padding costs nothing. Token features are then None.
        """
        packs = self._packs(text_masks, pooled_only, output_attentions or output_hidden_states, image_index)
        return self._encode(text, text_masks, image, image_masks, patch_index, output_attentions=output_attentions,
                            output_hidden_states=output_hidden_states, image_index=image_index,
                            pooled_only=pooled_only, packs=packs)

    def _packs(self, text_masks: torch.Tensor | None, pooled_only: bool, outputs_per_block: bool,
               image_index: torch.Tensor | None) -> bool:
        """Whether the encoder runs packed (see `forward_joint`); text_masks: the attention mask, None = all real."""
        return (pooled_only and self.config.image_attends_text and not outputs_per_block and image_index is None
                and not self.training and not torch.compiler.is_compiling()
                and (text_masks is None or bool(text_masks[:, 0].all())))  # the pooler reads position 0

    def _encode(self, text: torch.Tensor, text_masks: torch.Tensor, image: torch.Tensor, image_masks: torch.Tensor,
                patch_index: torch.Tensor, *, output_attentions: bool, output_hidden_states: bool,
                image_index: torch.Tensor | None, pooled_only: bool, packs: bool) -> ViLTOutput:
        blocks, norm = self.transformer.blocks, self.transformer.norm
        masks = {"text_masks": text_masks, "image_masks": image_masks, "patch_index": patch_index}
        if packs:  # real tokens only; the last block on each pair's text [CLS] row
            x, slots, first = pack(torch.cat([text, image], dim=1), torch.cat([text_masks, image_masks], dim=1))
            lay = Packed.of(slots)
            for blk in blocks[:-1]:
                x = blk(x, lay)
            cls = norm(blocks[-1](x, lay.rows(first)))[:, None]  # [B, 1, D]
            return ViLTOutput(logits=None, pooler_output=self.pooler(cls), last_hidden_state=None, text_feats=None,
                              image_feats=None, **masks)
        if not self.config.image_attends_text and not (output_attentions or output_hidden_states):
            return self._encode_one_way(text, image, masks, image_index, pooled_only)
        if image_index is not None:  # one-way fusion, per-block outputs asked for: one joint pass per text
            image, image_masks = image[image_index], image_masks[image_index]
            masks.update(image_masks=image_masks, patch_index=patch_index[image_index])
        Lt = text.shape[1]
        x = torch.cat([text, image], dim=1)  # [B, Lt + 1 + Li, D]
        mask = torch.cat([text_masks, image_masks], dim=1)  # one key-padding mask over [text | image]
        if not self.config.image_attends_text:  # image rows see image columns only: [B, L, L]
            rows = torch.arange(mask.shape[1], device=mask.device)
            mask = mask[:, None, :] & ((rows[:, None] < Lt) | (rows[None, :] >= Lt))
        lay = Dense(mask, probs=[] if output_attentions else None)
        hidden = [x] if output_hidden_states else None
        last = len(blocks) - 1 if pooled_only else None
        for i, blk in enumerate(blocks):
            x = run_block(blk, x, Dense(mask, num_queries=1) if i == last else lay,
                          checkpointing=self.grad_checkpointing)
            if hidden is not None:
                hidden.append(x)
        x = norm(x)
        if pooled_only:
            return ViLTOutput(logits=None, pooler_output=self.pooler(x), last_hidden_state=None, text_feats=None,
                              image_feats=None, attentions=lay.probs, **masks)
        return ViLTOutput(logits=None, pooler_output=self.pooler(x), last_hidden_state=x, text_feats=x[:, :Lt],
                          image_feats=x[:, Lt:], attentions=lay.probs,
                          hidden_states=None if hidden is None else tuple(hidden), **masks)

    def _encode_one_way(self, text: torch.Tensor, image: torch.Tensor, masks: dict[str, torch.Tensor],
                        image_index: torch.Tensor | None, pooled_only: bool) -> ViLTOutput:
        """One-way fusion as two streams in one [N*Lt + B*Li, D] residual stream (`layers.OneWay`): each image is
        encoded once however many texts read it."""
        lay = OneWay(masks["text_masks"], masks["image_masks"], image_index)
        blocks, norm = self.transformer.blocks, self.transformer.norm
        x = torch.cat([text.flatten(0, 1), image.flatten(0, 1)])
        for blk in blocks[:-1]:
            x = run_block(blk, x, lay, checkpointing=self.grad_checkpointing)
        if pooled_only:
            cls = norm(run_block(blocks[-1], x, lay.cls_only(), checkpointing=self.grad_checkpointing))
            return ViLTOutput(logits=None, pooler_output=self.pooler(cls[:, None]), last_hidden_state=None,
                              text_feats=None, image_feats=None, **masks)
        text, image = lay.split(norm(run_block(blocks[-1], x, lay, checkpointing=self.grad_checkpointing)))
        joint = torch.cat([text, image], dim=1) if image_index is None else None
        if joint is not None:  # the same tensor as the dense path returns: [B, Lt + 1 + Li, D]
            text, image = joint[:, : text.shape[1]], joint[:, text.shape[1]:]
        return ViLTOutput(logits=None, pooler_output=self.pooler(text), last_hidden_state=joint, text_feats=text,
                          image_feats=image, **masks)

    @torch.no_grad()
    def pooled_output(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None, pixel_values: torch.Tensor,
                      pixel_mask: torch.Tensor | None = None, token_type_ids: torch.Tensor | None = None
                      ) -> torch.Tensor:
        """Inference: the pooled output [B, D] alone (what the VQA, ITM and retrieval heads read):
        `forward_features(..., pooled_only=True).pooler_output`."""
        return self.forward_features(input_ids, attention_mask, pixel_values, pixel_mask, token_type_ids,
                                     pooled_only=True).pooler_output

    @torch.no_grad()
    def pooled_joint(self, text: torch.Tensor, text_masks: torch.Tensor, image: torch.Tensor,
                     image_masks: torch.Tensor) -> torch.Tensor:
        """Inference: `forward_joint(..., pooled_only=True).pooler_output` [B, D] from embedded tokens."""
        return self.forward_joint(text, text_masks, image, image_masks,
                                  torch.zeros(0, dtype=torch.long, device=text.device), pooled_only=True).pooler_output

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        pixel_values: torch.Tensor | None = None,
        pixel_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        *,
        labels: torch.Tensor | None = None,
        image_token_type_idx: int = 1,
        output_attentions: bool = False,
        output_hidden_states: bool = False,
        image_index: torch.Tensor | None = None,
        mlm_mask: torch.Tensor | None = None,
        pooled_only: bool = False,
    ) -> ViLTOutput:
        """Encoder + heads, with transformers' argument names.

        Args:
            input_ids / attention_mask / token_type_ids: [B, Lt].
            pixel_values: [B, 3, H, W] and pixel_mask [B, H, W] (num_images > 1: [B, n, 3, H, W] and [B, n, H, W];
                each image pairs with the text and gets modality type 1..n; the n pairs run as one batch).
            labels: the task head's targets -> `.loss` as the paper trains it: VQA soft scores [B, answers]
                (binary cross-entropy times the number of answers), ITM / NLVR2 class ids [B], MLM token ids
                [B, Lt] with -100 where not masked.
            output_attentions / output_hidden_states: per-block attention probabilities / hidden states.
            image_index: [N], one-way fusion (`image_attends_text=False`): N texts over B images, text n about
                image image_index[n]; each image is encoded once (e.g. all of an image's questions in one step).
            mlm_mask: [B, Lt] bool: the MLM head runs only where it is True (its logits [K, V] for the K masked
                positions, row-major) instead of on every text token.
            pooled_only: the sentence-level heads (VQA, ITM, NLVR2, retrieval) read the pooled output alone: the
                last block computes the text [CLS] row only, in eval mode on the real tokens only; token features
                are None and no MLM head runs. Logits and gradients are those of the full pass.

        The outputs do not depend on the autograd state: with or without gradients every field is computed the
        same way (padding positions included, as transformers).
        """
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
                                    image_token_type_idx, output_attentions=output_attentions,
                                    output_hidden_states=output_hidden_states, image_index=image_index,
                                    pooled_only=pooled_only)
        if n > 1:  # every field [B*n, ...] -> [B, n, ...]; NLVR2 reads the n pooled outputs side by side
            out.map_tensors(lambda t: t.reshape(B, n, *t.shape[1:]))
            heads = {"nlvr2": self.nlvr2_classifier(out.pooler_output.flatten(1))}  # [B, n*D] -> [B, answers]
        else:
            heads = {h: self._run_head(h, out, mlm_mask) for h in self.config.heads
                     if not (pooled_only and h == "mlm")}
        if self.config.task != "backbone":
            out.logits = heads.pop(self.config.task)
        out.extra_logits = heads
        if labels is not None:
            if out.logits is None:
                raise ConfigError("labels= needs a task head; this ViLT is a backbone")
            out.loss = head_loss(self.config.task, out.logits, labels if mlm_mask is None or self.config.task != "mlm"
                                 else labels[mlm_mask])
        return out

    def _run_head(self, head: str, out: ViLTOutput, mlm_mask: torch.Tensor | None = None) -> torch.Tensor:
        if head == "mlm":  # [B, Lt, V], or [K, V] at the K positions of mlm_mask
            return self.mlm_score(out.text_feats if mlm_mask is None else out.text_feats[mlm_mask])
        return getattr(self, HEAD_ATTRS[head])(out.pooler_output)  # itm [B, 2], vqa [B, answers], retrieval [B, 1]

    # ------------------------------------------------------------------------------------ loading helpers
    def adapt_state_dict(self, state_dict: dict[str, torch.Tensor], old_config: Any) -> dict[str, torch.Tensor]:
        """Fit a checkpoint saved for `old_config` to this model when `from_pretrained` overrides changed the
        heads (e.g. a pretrained ITM+MLM checkpoint loaded with task="vqa"): see `vilt.heads.adapt_heads`."""
        if not isinstance(old_config, ViLTConfig) or old_config == self.config:
            return state_dict
        return adapt_heads(state_dict, self.state_dict(), self.config.heads, self.config.task)


__all__ = ["TASKS", "TextEmbeddings", "ViLT", "ViLTConfig", "ViLTOutput"]
