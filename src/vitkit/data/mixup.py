"""Batch-level Mixup and CutMix with label smoothing, producing soft targets (DeiT's recipe, via timm).

Mixup (Zhang et al. 2017, https://arxiv.org/abs/1710.09412) blends two images, x = lam * x_i + (1 - lam) * x_j;
CutMix (Yun et al. 2019, https://arxiv.org/abs/1905.04899) pastes a box of x_j into x_i. Either way the target
is lam * y_i + (1 - lam) * y_j, with y the label-smoothed one-hot. As in timm's `Mixup(mode="batch")`, one lam
and one choice serve the whole batch, and each image is paired with its mirror in the batch (x_j = x.flip(0)),
which is a random pairing because the loader shuffles. DeiT's defaults: mixup alpha 0.8, cutmix alpha 1.0,
switch to CutMix with probability 0.5, label smoothing 0.1.

    mix = Mixup(num_classes=10, generator=torch.Generator().manual_seed(0))
    x, soft = mix(x, y)                      # x [B, C, H, W], y [B] int -> x mixed, soft [B, 10]
    loss = soft_target_cross_entropy(model(x), soft)
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ..errors import ConfigError
from ..utils.random import GeneratorLike, Rng, as_rng


def smooth_one_hot(target: torch.Tensor, num_classes: int, smoothing: float = 0.0) -> torch.Tensor:
    """int labels [B] -> [B, num_classes]: 1 - smoothing + smoothing / K on the label, smoothing / K elsewhere
    (timm's convention, equal to `F.cross_entropy(label_smoothing=smoothing)`)."""
    off = smoothing / num_classes
    out = torch.full((target.shape[0], num_classes), off, dtype=torch.float32, device=target.device)
    return out.scatter_(1, target.long().view(-1, 1), 1.0 - smoothing + off)


def soft_target_cross_entropy(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean over the batch of -sum_k target_k * log_softmax(logits)_k; logits and target [B, K]."""
    if logits.shape != target.shape:
        raise ConfigError(f"logits {tuple(logits.shape)} and soft targets {tuple(target.shape)} differ in shape")
    return torch.sum(-target * F.log_softmax(logits, dim=-1), dim=-1).mean()


def cutmix_box(
    height: int, width: int, lam: float, rng: Rng
) -> tuple[tuple[int, int, int, int], float]:
    """A box of area ~ (1 - lam) * H * W at a uniform random centre, clipped to the image (timm's `rand_bbox`),
    and lam corrected to the area actually kept: ((top, bottom, left, right), 1 - box_area / (H * W))."""
    cut = math.sqrt(1.0 - lam)
    cut_h, cut_w = int(height * cut), int(width * cut)
    cy, cx = rng.randint(0, height), rng.randint(0, width)
    top, bottom = max(cy - cut_h // 2, 0), min(cy + (cut_h + 1) // 2, height)
    left, right = max(cx - cut_w // 2, 0), min(cx + (cut_w + 1) // 2, width)
    return (top, bottom, left, right), 1.0 - (bottom - top) * (right - left) / float(height * width)


class Mixup:
    """Batch-level Mixup / CutMix with label smoothing: `(x [B,C,H,W], y [B]) -> (x_mixed, soft [B, K])`.

    The input tensors are not modified. `last_lam` and `last_method` ("mixup", "cutmix" or None) record the
    latest draw.

    Args:
        num_classes: the width of the soft targets.
        mixup_alpha: Beta(alpha, alpha) of Mixup's mixing weight; 0 disables Mixup.
        cutmix_alpha: Beta(alpha, alpha) of CutMix's area; 0 disables CutMix.
        prob: probability that a batch is mixed at all.
        switch_prob: probability of CutMix rather than Mixup when both alphas are > 0.
        label_smoothing: smoothing of the one-hot targets before they are mixed.
        generator: one torch / numpy / random generator for every draw (None: torch's global RNG).
    """

    def __init__(
        self,
        *,
        num_classes: int,
        mixup_alpha: float = 0.8,
        cutmix_alpha: float = 1.0,
        prob: float = 1.0,
        switch_prob: float = 0.5,
        label_smoothing: float = 0.1,
        generator: GeneratorLike | Rng = None,
    ) -> None:
        if num_classes < 2:
            raise ConfigError(f"mixup needs num_classes >= 2, got {num_classes}")
        if mixup_alpha < 0 or cutmix_alpha < 0:
            raise ConfigError(f"mixup/cutmix alphas must be >= 0, got {mixup_alpha}, {cutmix_alpha}")
        for name, p in (("prob", prob), ("switch_prob", switch_prob), ("label_smoothing", label_smoothing)):
            if not 0.0 <= p <= 1.0:
                raise ConfigError(f"{name} must be in [0, 1], got {p}")
        self.num_classes = num_classes
        self.mixup_alpha, self.cutmix_alpha = mixup_alpha, cutmix_alpha
        self.prob, self.switch_prob, self.label_smoothing = prob, switch_prob, label_smoothing
        self.rng = as_rng(generator)
        self.last_lam: float = 1.0
        self.last_method: str | None = None

    def _draw(self) -> tuple[float, str | None]:
        if (self.mixup_alpha == 0 and self.cutmix_alpha == 0) or self.rng.random() >= self.prob:
            return 1.0, None
        if self.mixup_alpha > 0 and self.cutmix_alpha > 0:
            method = "cutmix" if self.rng.random() < self.switch_prob else "mixup"
        else:
            method = "cutmix" if self.cutmix_alpha > 0 else "mixup"
        alpha = self.cutmix_alpha if method == "cutmix" else self.mixup_alpha
        return self.rng.beta(alpha, alpha), method

    def __call__(self, x: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(images x [B, C, H, W], class indices [B]) -> (mixed images, soft targets [B, num_classes])."""
        if x.ndim != 4 or target.ndim != 1 or x.shape[0] != target.shape[0]:
            raise ConfigError(
                f"Mixup expects x [B, C, H, W] and labels [B], got {tuple(x.shape)} and {tuple(target.shape)}"
            )
        lam, method = self._draw()
        if method == "cutmix":
            (top, bottom, left, right), lam = cutmix_box(x.shape[-2], x.shape[-1], lam, self.rng)
            x = x.clone()
            x[:, :, top:bottom, left:right] = x.flip(0)[:, :, top:bottom, left:right]
        elif method == "mixup":
            x = x * lam + x.flip(0) * (1.0 - lam)
        self.last_lam, self.last_method = lam, method
        y = smooth_one_hot(target, self.num_classes, self.label_smoothing).to(x.dtype)
        return x, y * lam + y.flip(0) * (1.0 - lam)

    def __repr__(self) -> str:
        return (
            f"Mixup(mixup_alpha={self.mixup_alpha}, cutmix_alpha={self.cutmix_alpha}, prob={self.prob}, "
            f"switch_prob={self.switch_prob}, label_smoothing={self.label_smoothing}, num_classes={self.num_classes})"
        )
