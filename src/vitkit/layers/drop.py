"""Stochastic depth (Huang et al. 2016, https://arxiv.org/abs/1603.09382): drop a residual branch per sample."""

from __future__ import annotations

import torch
from torch import nn


class DropPath(nn.Module):
    def __init__(self, drop_prob: float = 0.0) -> None:
        super().__init__()
        self.drop_prob = drop_prob

    def forward(self, x: torch.Tensor, groups: tuple[torch.Tensor, int] | None = None) -> torch.Tensor:
        """x [B, ...]: one draw per sample (dim 0), broadcast over its tokens. `groups` = (sample [T], count) for
        rows of several samples packed into one [T, D] tensor: one draw per sample, shared by its rows."""
        if self.drop_prob == 0.0 or not self.training:
            return x
        keep = 1.0 - self.drop_prob
        if groups is not None:
            sample, count = groups
            return x * x.new_empty(count).bernoulli_(keep).div_(keep)[sample].unsqueeze(-1)
        shape = (x.shape[0],) + (1,) * (x.ndim - 1)
        return x * x.new_empty(shape).bernoulli_(keep).div_(keep)

    def extra_repr(self) -> str:
        return f"drop_prob={self.drop_prob}"
