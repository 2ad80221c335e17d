"""The image-classification task for the training engine: cross-entropy (mixup/cutmix soft targets when on),
top-1 / top-5 / per-class accuracy and a confusion matrix, export with class names and preprocessing."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, default_collate

from ...data.mixup import Mixup, soft_target_cross_entropy
from ...utils.distributed import all_reduce_sum
from ...utils.random import Rng
from ..engine import StepContext, all_reduce_metrics


class ClassificationTask:
    name = "classification"
    primary_metric = "val_top1"
    head_prefixes = ("head.",)

    def __init__(
        self, *, classes: list[str], label_smoothing: float = 0.1, mixup: Mixup | None = None,
        augment_rng: Rng | None = None, run_dir: Path | None = None,
    ) -> None:
        self.classes = list(classes)
        self.label_smoothing = label_smoothing
        self.mixup = mixup
        self.augment_rng = augment_rng
        self.run_dir = run_dir

    def collate(self, items: list[Any]) -> Any:
        return default_collate(items)

    def reseed_data(self, seed: int) -> None:
        """Per-step reseeding of the augmentation and mixup streams (deterministic mode)."""
        if self.augment_rng is not None:
            self.augment_rng.reseed(seed)
        if self.mixup is not None:
            self.mixup.rng.reseed(seed + 1)

    def train_step(self, model: nn.Module, batch: Any, ctx: StepContext) -> tuple[torch.Tensor, dict]:
        x, y = batch
        x, y = x.to(ctx.device, non_blocking=True), y.to(ctx.device, non_blocking=True)
        if self.mixup is not None:
            x, target = self.mixup(x, y)  # soft targets, label smoothing included
            return soft_target_cross_entropy(model(x).float(), target), {}
        return F.cross_entropy(model(x).float(), y, label_smoothing=self.label_smoothing), {}

    @torch.no_grad()
    def evaluate(self, model: nn.Module, loader: DataLoader, ctx: StepContext) -> dict[str, Any]:
        n = len(self.classes)
        confusion = torch.zeros(n, n, dtype=torch.float64, device=ctx.device)
        loss_sum = torch.zeros((), dtype=torch.float64, device=ctx.device)
        top5 = torch.zeros((), dtype=torch.float64, device=ctx.device)
        for x, y in loader:
            x, y = x.to(ctx.device, non_blocking=True), y.to(ctx.device, non_blocking=True)
            with ctx.autocast():
                logits = model(x).float()
            loss_sum += F.cross_entropy(logits, y, reduction="sum").double()
            pred = logits.argmax(-1)
            confusion.index_put_((y, pred), torch.ones_like(y, dtype=torch.float64), accumulate=True)
            k = min(5, n)
            top5 += (logits.topk(k, dim=-1).indices == y[:, None]).any(-1).sum().double()
        sums = all_reduce_metrics({"loss": loss_sum.item(), "top5": top5.item()}, ctx)
        confusion = all_reduce_sum(confusion, ctx.dist)
        count = confusion.sum().item()
        per_class = confusion.diag() / confusion.sum(1).clamp_min(1)
        return {
            "val_top1": confusion.diag().sum().item() / max(count, 1),
            "val_top5": sums["top5"] / max(count, 1),
            "val_loss": sums["loss"] / max(count, 1),
            "_per_class": dict(zip(self.classes, per_class.tolist())),
            "_confusion": confusion.cpu().numpy(),
        }

    def export(self, model: nn.Module, out_dir: Path, metrics: dict[str, Any]) -> None:
        model.save_pretrained(out_dir)
        if "_confusion" in metrics and self.run_dir is not None:
            from ...utils.viz import plot_confusion_matrix

            plot_confusion_matrix(metrics["_confusion"], self.classes, self.run_dir / "confusion_matrix.png",
                                  title=f"val confusion (top-1 {metrics['val_top1']:.3f})")

