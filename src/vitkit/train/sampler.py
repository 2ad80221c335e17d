"""Index order for training and evaluation: a function of (seed, epoch) only, split over ranks, and able to
start mid-epoch — so a resumed run sees exactly the samples an uninterrupted one would."""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch.utils.data import Sampler


class EpochSampler(Sampler[int]):
    """Train: a fresh permutation per epoch, trimmed to whole global batches, rank r takes every world-th
    index of each global batch (so r's micro-batches are slices of the same global batch a 1-process run uses).
    Eval: all indices in order, rank r takes r::world (no padding, so metrics count every sample once)."""

    def __init__(
        self, n: int, *, shuffle: bool, seed: int = 0, rank: int = 0, world_size: int = 1,
        global_batch: int | None = None,
    ) -> None:
        self.n, self.shuffle, self.seed = n, shuffle, seed
        self.rank, self.world = rank, world_size
        self.global_batch = global_batch
        self.epoch, self.start = 0, 0

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        """`start`: how many of this rank's indices to skip (resuming mid-epoch)."""
        self.epoch, self.start = epoch, start

    def _indices(self) -> list[int]:
        if self.shuffle:
            g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
            order = torch.randperm(self.n, generator=g).tolist()
        else:
            order = list(range(self.n))
        if self.global_batch:
            order = order[: len(order) // self.global_batch * self.global_batch]
            per_rank = self.global_batch // self.world
            mine = []
            for b in range(0, len(order), self.global_batch):
                chunk = order[b : b + self.global_batch]
                mine.extend(chunk[self.rank * per_rank : (self.rank + 1) * per_rank])
            return mine
        return order[self.rank :: self.world]

    def __iter__(self) -> Iterator[int]:
        return iter(self._indices()[self.start :])

    def __len__(self) -> int:
        return len(self._indices()) - self.start
