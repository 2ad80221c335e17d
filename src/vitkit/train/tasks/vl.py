"""What the ViLT training tasks (vqa, pretrain, retrieval, nlvr2) share: building the model with the task's head,
the recipe and processor settings that follow from it, ViLT's RandAugment, batches counted in texts when a step
takes whole images, and the rank-0 helpers their evaluations use."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import torch
from torch import nn

from ...data.randaugment import RandAugment
from ...errors import ConfigError
from ...inference.vilt import processor_config_for
from ...models.vilt.model import ViLT
from ...processing.vilt_config import ViLTProcessorConfig
from ...registry import create_model, from_pretrained, list_models
from ...utils.distributed import all_reduce_sum
from ...utils.random import Rng
from ..config import resolve_vl_recipe
from ..engine import StepContext

log = logging.getLogger("vitkit")


def build_vilt(spec: str, *, overrides: dict[str, Any], pretrained: str | None, init_from: str | None) -> nn.Module:
    """A ViLT for a training task: a registered name (random init, `init_from` a ViT for the encoder, or
    `pretrained` weights), or any from_pretrained ViLT source. `overrides` set the task head."""
    registered = spec in list_models()
    if pretrained:
        model = from_pretrained(pretrained, model=spec if registered else None, **overrides)
    elif registered:
        model = create_model(spec, init_from=init_from, **overrides)
    else:
        model = from_pretrained(spec, **overrides)
    if not isinstance(model, ViLT):
        raise ConfigError(f"{spec}: this task trains a ViLT, got a {type(model).__name__}")
    if init_from and not registered:
        model.init_encoder_from(init_from)
    return model.train()


def vilt_overrides(cfg: Any, img_size: int | None, **head: Any) -> dict[str, Any]:
    """Config overrides for a ViLT trained on a task: its head fields, stochastic depth and the image size."""
    overrides = {**head, "drop_path_rate": cfg.drop_path}
    if img_size:
        overrides.update(shorter_edge=img_size, longer_edge=int(1333 / 800 * img_size))
    return overrides


def vl_recipe(net: nn.Module, *, task: str, model: str, pretrained: str | None, cfg: Any) -> tuple[Any, Any]:
    """(processor config, resolved recipe) for a ViLT task."""
    pcfg = processor_config_for(net)
    from_weights = bool(pretrained) or model not in list_models()
    return pcfg, resolve_vl_recipe(cfg, task=task, pretrained=from_weights, img_size=pcfg.shorter_edge)


def vl_randaugment(spec: str, pcfg: ViLTProcessorConfig, rng: Rng) -> RandAugment | None:
    """RandAugment as ViLT uses it: every op but colour inversion (questions and captions name colours); timm's
    op list has no cutout, the other op ViLT drops."""
    if spec == "none":
        return None
    ra = RandAugment.from_string(spec, fill=(128, 128, 128), interpolation=pcfg.resample, generator=rng)
    ra.ops = tuple(op for op in ra.ops if op != "Invert")
    return ra


def images_per_batch(cfg: Any, groups: Any, what: str = "questions") -> Any:
    """--batch-size counts texts (questions, captions); with texts grouped by image (`groups`: ImageGroups,
    CaptionGroups) a step takes whole images: the batch becomes the number of images holding about that many
    texts (a multiple of processes x accumulation)."""
    per_step = int(os.environ.get("WORLD_SIZE", "1")) * cfg.accum_steps
    per_image = groups.num_texts / max(1, len(groups))
    images = max(per_step, round(cfg.batch_size / per_image / per_step) * per_step)
    log.info("%s grouped by image (one-way fusion encodes each image once): batch %d %s -> %d images x %.1f %s",
             what, cfg.batch_size, what, images, per_image, what)
    return replace(cfg, batch_size=images)


def unwrap_model(model: nn.Module) -> ViLT:
    """The ViLT inside a DDP and / or torch.compile wrapper (the model itself when unwrapped)."""
    m = getattr(model, "module", model)  # DDP
    m = getattr(m, "_orig_mod", m)  # torch.compile
    return m


def on_rank0(fn: Callable[[], dict[str, float]], ctx: StepContext) -> dict[str, float]:
    """Run `fn` (a dict of floats) on rank 0 only and give every rank its result (zeros elsewhere + a sum)."""
    if not ctx.dist.enabled:
        return fn()
    result = fn() if ctx.dist.is_main else None
    keys = sorted(result) if result is not None else None
    box = [keys]
    torch.distributed.broadcast_object_list(box, src=0)
    keys = box[0]
    t = torch.tensor([result[k] for k in keys] if result is not None else [0.0] * len(keys), dtype=torch.float64,
                     device=ctx.device)
    t = all_reduce_sum(t, ctx.dist)
    return dict(zip(keys, t.tolist()))


__all__ = ["build_vilt", "images_per_batch", "on_rank0", "unwrap_model", "vilt_overrides", "vl_randaugment",
           "vl_recipe"]
