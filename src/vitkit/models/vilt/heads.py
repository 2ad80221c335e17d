"""ViLT's pooler and task heads (Kim et al. 2021, https://arxiv.org/abs/2102.03334).

Module and parameter names are those of the original ViLT (`pooler.dense`, `itm_score.fc`,
`mlm_score.{transform.dense, transform.LayerNorm, decoder, bias}`, `vqa_classifier.{0,1,3}`,
`nlvr2_classifier.{0,1,3}`, `rank_output`), so its checkpoints load as an identity map.
"""

from __future__ import annotations

import logging

import torch
import torch.nn.functional as F
from torch import nn

from ...errors import ConfigError
from ...layers import get_activation

log = logging.getLogger("vitkit")

# The heads each `task` builds, and the attribute each lives under (= the original ViLT's name).
HEAD_ATTRS = {
    "itm": "itm_score",
    "mlm": "mlm_score",
    "vqa": "vqa_classifier",
    "nlvr2": "nlvr2_classifier",
    "retrieval": "rank_output",
}
# nn.LayerNorm's default eps: both the original ViLT and transformers build the classifier MLPs with it.
CLASSIFIER_NORM_EPS = 1e-5


class Pooler(nn.Module):
    """tanh(Linear(x[:, 0])): the [CLS] summary every sentence-level head reads (BERT's pooler)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dense = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """tokens [B, N, D] -> [B, D]"""
        return torch.tanh(self.dense(x[:, 0]))


class ITMHead(nn.Module):
    """Image-text matching: pooled [B, D] -> logits [B, 2] (index 1 = the text matches the image)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.fc = nn.Linear(dim, 2)

    def forward(self, pooled: torch.Tensor) -> torch.Tensor:
        return self.fc(pooled)


class MLMTransform(nn.Module):
    """BERT's prediction-head transform: Linear -> activation -> LayerNorm."""

    def __init__(self, dim: int, *, act: str, norm_eps: float) -> None:
        super().__init__()
        self.dense = nn.Linear(dim, dim)
        self.act = get_activation(act)
        self.LayerNorm = nn.LayerNorm(dim, eps=norm_eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.LayerNorm(self.act(self.dense(x)))


class MLMHead(nn.Module):
    """Masked language modelling: text features [B, L, D] -> vocabulary logits [B, L, V].

    The decoder is its own matrix (not tied to the word embeddings, as in the original ViLT) with a separate
    `bias` vector.
    """

    def __init__(self, dim: int, vocab_size: int, *, act: str, norm_eps: float) -> None:
        super().__init__()
        self.transform = MLMTransform(dim, act=act, norm_eps=norm_eps)
        self.decoder = nn.Linear(dim, vocab_size, bias=False)
        self.bias = nn.Parameter(torch.zeros(vocab_size))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.transform(x)) + self.bias


def classifier_mlp(in_dim: int, hidden: int, out_dim: int) -> nn.Sequential:
    """Linear -> LayerNorm -> GELU -> Linear, indexed 0, 1, (2), 3 as the original's nn.Sequential.

    VQA: (D, 2D, answers); NLVR2: (2D, 2D, 2) on the two images' pooled features concatenated.
    """
    return nn.Sequential(
        nn.Linear(in_dim, hidden),
        nn.LayerNorm(hidden, eps=CLASSIFIER_NORM_EPS),
        nn.GELU(),
        nn.Linear(hidden, out_dim),
    )


def rank_head(dim: int) -> nn.Linear:
    """Image-text retrieval score: pooled [B, D] -> [B, 1]."""
    return nn.Linear(dim, 1)


def head_loss(task: str, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """A head's training loss as ViLT computes it: VQA, binary cross-entropy against the soft answer scores
    [B, answers] times the number of answers; ITM and NLVR2, cross-entropy over class ids [B]; MLM, cross-entropy
    over the vocabulary at positions whose label is not -100."""
    if task == "vqa":
        if labels.shape != logits.shape:
            raise ConfigError(f"VQA labels are soft answer scores of shape {tuple(logits.shape)}, got "
                              f"{tuple(labels.shape)}")
        return F.binary_cross_entropy_with_logits(logits.float(), labels.float()) * labels.shape[1]
    if task in ("itm", "nlvr2", "mlm"):
        return F.cross_entropy(logits.flatten(0, -2).float(), labels.flatten().long(), ignore_index=-100)
    raise ConfigError(f"labels= is not defined for the {task!r} head: retrieval trains over groups of negatives "
                      "(vitkit train --task retrieval)")


@torch.no_grad()
def init_rank_from_itm(rank_output: nn.Linear, itm: ITMHead) -> None:
    """Start the retrieval score from the ITM head's "match" row, as ViLT does before fine-tuning on IR/TR.

    Values are copied (the original shared storage with a frozen ITM head; a copy behaves the same without
    tying two parameters).
    """
    rank_output.weight.copy_(itm.fc.weight[1:2])
    rank_output.bias.copy_(itm.fc.bias[1:2])


__all__ = [
    "CLASSIFIER_NORM_EPS",
    "HEAD_ATTRS",
    "ITMHead",
    "MLMHead",
    "MLMTransform",
    "Pooler",
    "classifier_mlp",
    "head_loss",
    "init_rank_from_itm",
    "rank_head",
]


def adapt_heads(state_dict: dict[str, torch.Tensor], fresh: dict[str, torch.Tensor], heads: tuple[str, ...],
                task: str) -> dict[str, torch.Tensor]:
    """A ViLT checkpoint's state dict fitted to a model whose heads differ (`fresh`: the model's own state dict,
    `heads` / `task`: its config's), each step logged: heads the model no longer has are dropped, new heads keep
    their fresh init (retrieval starts from the checkpoint's ITM row), a classifier whose output count changed
    gets a fresh last layer, and a modality-type table grown for NLVR2 copies the image row into the new rows (as
    the original)."""
    sd = dict(state_dict)
    mine = {HEAD_ATTRS[h] for h in heads}
    for head, attr in HEAD_ATTRS.items():
        keys = [k for k in sd if k.startswith(attr + ".")]
        if keys and attr not in mine:
            log.info("dropping the checkpoint's %s head (%s): not built for task=%r", head, attr, task)
            sd = {k: v for k, v in sd.items() if k not in keys}
        elif attr in mine and not keys:
            sd.update({k: v for k, v in fresh.items() if k.startswith(attr + ".")})
            if head == "retrieval" and "itm_score.fc.weight" in state_dict:
                log.info("retrieval head (rank_output) initialised from the checkpoint's ITM 'match' row")
                sd["rank_output.weight"] = state_dict["itm_score.fc.weight"][1:2].clone()
                sd["rank_output.bias"] = state_dict["itm_score.fc.bias"][1:2].clone()
            else:
                log.info("%s head (%s) is not in the checkpoint: freshly initialised", head, attr)
        elif attr in mine and any(sd[k].shape != fresh[k].shape for k in keys if k in fresh):
            log.info("%s head (%s): output size changed, last layer freshly initialised", head, attr)
            sd.update({k: v for k, v in fresh.items() if k.startswith(attr + ".3.")})
    old_types, new_types = sd.get("token_type_embeddings.weight"), fresh["token_type_embeddings.weight"]
    if old_types is not None and old_types.shape[0] < new_types.shape[0]:
        log.info("modality-type embeddings grown from %d to %d rows (new rows copy the image row)",
                 old_types.shape[0], new_types.shape[0])
        extra = old_types[1:2].expand(new_types.shape[0] - old_types.shape[0], -1)
        sd["token_type_embeddings.weight"] = torch.cat([old_types, extra])
    return sd
