"""AdamW with the usual ViT exclusions, and a warmup + cosine schedule per optimizer step."""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch
from torch import nn


def param_groups(
    model: nn.Module, *, weight_decay: float, head_lr_mult: float = 1.0, head_prefixes: Iterable[str] = ("head.",)
) -> list[dict]:
    """Four groups: {decay, no decay} x {body, head}. No decay for 1-D params (norms, biases, LayerScale) and
    the names in model.no_weight_decay() (tokens, position embeddings)."""
    skip = set(getattr(model, "no_weight_decay", lambda: set())())
    heads = tuple(head_prefixes)
    groups: dict[tuple[bool, bool], list[nn.Parameter]] = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        decay = p.ndim > 1 and name not in skip
        groups.setdefault((decay, name.startswith(heads)), []).append(p)
    return [
        {"params": ps, "weight_decay": weight_decay if decay else 0.0, "lr_mult": head_lr_mult if is_head else 1.0}
        for (decay, is_head), ps in sorted(groups.items())
    ]


def build_optimizer(model: nn.Module, *, lr: float, weight_decay: float, head_lr_mult: float = 1.0,
                    head_prefixes: Iterable[str] = ("head.",),
                    betas: tuple[float, float] = (0.9, 0.999)) -> torch.optim.Optimizer:
    groups = param_groups(model, weight_decay=weight_decay, head_lr_mult=head_lr_mult, head_prefixes=head_prefixes)
    for g in groups:
        g["lr"] = lr * g["lr_mult"]
    params = [p for g in groups for p in g["params"]]
    # fused: one kernel for all parameters (CPU and CUDA) instead of a Python loop over tensors, which dominates
    # a small model's step (docs/benchmarks.md, last section)
    fused = bool(params) and all(p.is_floating_point() and p.device.type in ("cpu", "cuda") for p in params)
    return torch.optim.AdamW(groups, lr=lr, betas=betas, fused=fused or None)


def warmup_cosine(step: int, *, total: int, warmup: int, base_lr: float, min_lr: float) -> float:
    """Linear warmup from ~0 to base_lr, then cosine decay to min_lr at `total` steps."""
    if step < warmup:
        return base_lr * (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return min_lr + (base_lr - min_lr) * 0.5 * (1.0 + math.cos(math.pi * progress))


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for g in optimizer.param_groups:
        g["lr"] = lr * g.get("lr_mult", 1.0)
