"""What a ViLT forward returns: the same fields with the same values whatever the autograd state; names as
Hugging Face transformers' (`last_hidden_state`, `pooler_output`, `hidden_states`, `attentions`, `logits`,
`loss`), plus vitkit's split of the tokens into their text and image parts."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, fields

import torch


@dataclass
class ViLTOutput:
    """A ViLT forward's outputs. With num_images > 1 (NLVR2) every backbone field gets an image axis after the
    batch axis (pooler_output [B, n, D], last_hidden_state [B, n, L, D], ...).

    With `pooled_only=True` (what the sentence-level heads need, and the padding-free inference path) only the
    pooled output and the logits are computed: `last_hidden_state`, `text_feats` and `image_feats` are None.
    With several texts per image (`image_index`, one-way fusion) text and image tokens have different batch sizes:
    `text_feats` [N, Lt, D] and `image_feats` [B, 1 + Li, D] are given and `last_hidden_state` is None."""

    logits: torch.Tensor | None  # the task head's: VQA [B, answers], ITM [B, 2], MLM [B, Lt, V], ...; backbone None
    pooler_output: torch.Tensor  # [B, D] tanh(Linear(first token)): what sentence-level heads read
    last_hidden_state: torch.Tensor | None  # [B, Lt + 1 + Li, D] after the final norm: [text | image CLS | patches]
    text_feats: torch.Tensor | None  # [B, Lt, D]: the text part of last_hidden_state
    image_feats: torch.Tensor | None  # [B, 1 + Li, D]: the image part, image [CLS] first
    text_masks: torch.Tensor  # [B, Lt] bool
    image_masks: torch.Tensor  # [B, 1 + Li] bool, False on padding patches
    patch_index: torch.Tensor  # [B, Li, 2] (row, col) of each image token in its patch grid
    extra_logits: dict[str, torch.Tensor] = field(default_factory=dict)  # config.extra_heads, by name
    hidden_states: tuple[torch.Tensor, ...] | None = None  # embeddings, then each block's output, when asked
    attentions: list[torch.Tensor] | None = None  # per block [B, heads, L, L], when asked
    loss: torch.Tensor | None = None  # when labels are given: the task head's loss, as the paper trains it

    @property
    def pooled(self) -> torch.Tensor:
        """`pooler_output` under vitkit's earlier name."""
        return self.pooler_output

    def map_tensors(self, fn: Callable[[torch.Tensor], torch.Tensor]) -> None:
        """Apply fn to every backbone tensor field (not logits / loss), in place: e.g. [B*n, ...] -> [B, n, ...]."""
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name in ("logits", "loss", "extra_logits") or value is None:
                continue
            if isinstance(value, torch.Tensor):
                setattr(self, f.name, fn(value))
            else:  # hidden_states / attentions: a sequence of tensors
                setattr(self, f.name, type(value)(fn(t) for t in value))
