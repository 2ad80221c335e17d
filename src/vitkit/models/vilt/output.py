"""What a ViLT forward returns, and token features that inference computes only when they are read.

In inference a pooled head (VQA, ITM, retrieval, NLVR2) reads one row of the last block's output, the text
[CLS]; the other rows of that block are about 1/depth of the forward's work, spent on `text_feats` and
`image_feats` that most callers never look at. So the inference path (`ViLT.forward` in eval mode with
gradients off) leaves those two fields as a `Deferred`: the first read runs the last block over every token and
keeps the result, so a caller who reads them gets exactly what an eager forward would have returned, and one
who does not pays nothing for them (as transformers' models return hidden states only when asked).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn


class Deferred:
    """A field value computed on its first read (see `ViLTOutput`): `fn()` -> tensor."""

    def __init__(self, fn: Callable[[], torch.Tensor]) -> None:
        self.fn = fn

    def then(self, g: Callable[[torch.Tensor], torch.Tensor]) -> Deferred:
        """Another deferred value: g of this one, still computed only when read."""
        return Deferred(lambda: g(self.fn()))


def _key(name: str) -> str:
    """Where an instance keeps a deferrable field's value (a tensor or a `Deferred`)."""
    return "_deferred_" + name


class _OnRead:
    """A data descriptor for a dataclass field that may hold a `Deferred`: evaluated on the first read, then
    stored in its place."""

    def __init__(self, name: str) -> None:
        self.key = _key(name)

    def __get__(self, obj: Any, owner: Any = None) -> Any:
        if obj is None:
            return self
        value = obj.__dict__[self.key]
        if isinstance(value, Deferred):
            value = obj.__dict__[self.key] = value.fn()
        return value

    def __set__(self, obj: Any, value: Any) -> None:
        obj.__dict__[self.key] = value


@dataclass
class ViLTOutput:
    """What a ViLT forward returns. With num_images > 1 (NLVR2) every backbone field gets an image axis after
    the batch axis (pooled [B, n, D], text_feats [B, n, Lt, D], ...).

    In inference (eval mode, gradients off) `text_feats` and `image_feats` are computed when first read (see the
    module's docstring) and hold zeros at padding positions (text padding, padding patches), which the per-token
    layers skip; with gradients on (training, or saliency in eval) every position is computed as in the
    original, padding included. Either way the real positions, the pooled output and the logits are the same."""

    logits: torch.Tensor | None  # the task head's: VQA [B, answers], ITM [B, 2], MLM [B, Lt, V], ...; backbone None
    pooled: torch.Tensor  # [B, D] tanh(Linear(first token)): what sentence-level heads read
    text_feats: torch.Tensor  # [B, Lt, D] after the final norm
    image_feats: torch.Tensor  # [B, 1 + Li, D] image [CLS] first
    text_masks: torch.Tensor  # [B, Lt] bool
    image_masks: torch.Tensor  # [B, 1 + Li] bool, False on padding patches
    patch_index: torch.Tensor  # [B, Li, 2] (row, col) of each image token in its patch grid
    extra_logits: dict[str, torch.Tensor] = field(default_factory=dict)  # config.extra_heads, by name
    attentions: list[torch.Tensor] | None = None  # per block [B, heads, N, N], when asked

    def map_field(self, name: str, fn: Callable[[torch.Tensor], torch.Tensor]) -> None:
        """Replace field `name` by fn(its value), leaving a deferred value deferred."""
        value = self.__dict__[_key(name)] if name in DEFERRABLE else getattr(self, name)
        setattr(self, name, value.then(fn) if isinstance(value, Deferred) else fn(value))


DEFERRABLE = ("text_feats", "image_feats")
for _name in DEFERRABLE:  # after @dataclass: its __init__ assigns through the descriptors
    setattr(ViLTOutput, _name, _OnRead(_name))


def deferred_features(compute: Callable[[], torch.Tensor], split: int, modules: list[nn.Module],
                      inference: bool) -> tuple[Deferred, Deferred]:
    """(text_feats, image_feats) as deferred values: `compute()` -> [B, L, D] (computed once, on the first read
    of either) split at column `split`. `modules` are those `compute` runs: the read refuses to run them if
    their weights changed in place since the forward, or they left eval mode, as the result would not be the
    forward's. inference: the forward ran under torch.inference_mode (so does the read)."""
    params = [p for m in modules for p in m.parameters()]
    versions = [p._version for p in params]

    @functools.cache
    def full() -> torch.Tensor:
        if [p._version for p in params] != versions or any(m.training for m in modules):
            raise RuntimeError("ViLTOutput.text_feats / image_feats are computed when first read, and the model "
                               "changed since its forward (weights updated in place, or train mode); read them "
                               "before changing the model")
        with torch.inference_mode() if inference else torch.no_grad():
            return compute()

    return Deferred(lambda: full()[:, :split]), Deferred(lambda: full()[:, split:])
