"""One random-number interface for data pipelines: `Rng` over a torch / numpy / `random` generator or torch's global
RNG, reproducible under a seed and distinct in every DataLoader worker."""

from __future__ import annotations

import math
import random

import numpy as np
import torch
from torch.utils.data import get_worker_info

from ..errors import ConfigError

GeneratorLike = torch.Generator | np.random.Generator | random.Random | None


class Rng:
    """One small interface over a `torch.Generator`, a `numpy.random.Generator`, a `random.Random`, or None
    (torch's global RNG, which `torch.manual_seed` seeds and DataLoader re-seeds in every worker).

    Scalar draws come from a buffer refilled 256 uniforms at a time from the generator: one `torch.rand(256)`
    costs about what one `torch.rand(())` does, and a 32x32 train transform makes ~10 scalar draws. The stream
    stays a pure function of the generator's seed. (With None, the buffer is filled from the global RNG when
    it runs dry, so re-seeding torch affects an `Rng` from its next refill; make transforms after seeding.)

    A generator object is copied into every DataLoader worker, and re-created each epoch unless the workers
    persist, so used as is every worker would replay the same augmentations, epoch after epoch. Inside a
    worker, `Rng` therefore re-seeds itself from the worker's seed (distinct per worker and per epoch, and
    itself derived from torch's main-process RNG, hence reproducible under `torch.manual_seed`) mixed with
    a number drawn from the copied generator (so different user seeds still give different streams), and
    drops any buffered values it was copied with.
    """

    _BLOCK = 256

    def __init__(self, generator: GeneratorLike = None) -> None:
        if generator is not None and not isinstance(generator, torch.Generator | np.random.Generator | random.Random):
            raise ConfigError(
                f"generator must be a torch.Generator, numpy.random.Generator or random.Random, not {type(generator)}"
            )
        self.generator = generator
        self._buffer: list[float] = []
        self._worker_seed: int | None = None

    def reseed(self, seed: int) -> None:
        """Restart the stream from `seed` (drops buffered draws): the training engine calls this per step in
        deterministic mode, so augmentations depend only on (seed, step) — and a resumed run replays them."""
        self.generator = torch.Generator().manual_seed(seed)
        self._buffer = []

    def _gen(self) -> torch.Generator | np.random.Generator | random.Random | None:
        info = get_worker_info()
        if info is not None and info.seed != self._worker_seed:
            self._worker_seed, self._buffer = info.seed, []
            g = self.generator
            if g is not None:
                salt = int(self._uniform_block(g, 1)[0] * 2**53)
                seed = (info.seed * 1_000_003 + salt) % 2**63
                if isinstance(g, torch.Generator):
                    self.generator = torch.Generator().manual_seed(seed)
                elif isinstance(g, np.random.Generator):
                    self.generator = np.random.default_rng(seed)
                else:
                    self.generator = random.Random(seed)
        return self.generator

    @staticmethod
    def _uniform_block(g: torch.Generator | np.random.Generator | random.Random | None, n: int) -> list[float]:
        if g is None or isinstance(g, torch.Generator):
            return torch.rand(n, dtype=torch.float64, generator=g).tolist()
        if isinstance(g, np.random.Generator):
            return g.random(n).tolist()
        return [g.random() for _ in range(n)]

    def random(self) -> float:
        """Uniform in [0, 1)."""
        g = self._gen()
        if not self._buffer:
            self._buffer = self._uniform_block(g, self._BLOCK)[::-1]
        return self._buffer.pop()

    def uniform(self, low: float, high: float) -> float:
        return low + (high - low) * self.random()

    def gauss(self, mu: float, sigma: float) -> float:
        """Normal(mu, sigma), by Box-Muller from two uniforms."""
        u1, u2 = self.random(), self.random()
        return mu + sigma * math.sqrt(-2.0 * math.log(1.0 - u1)) * math.cos(2.0 * math.pi * u2)

    def randint(self, low: int, high: int) -> int:
        """Uniform integer in [low, high)."""
        if high <= low:
            raise ValueError(f"empty range [{low}, {high})")
        return min(high - 1, low + int(self.random() * (high - low)))

    def _numpy(self) -> np.random.Generator:
        """A numpy generator seeded from this stream, for the samplers the scalar interface lacks."""
        return np.random.default_rng(int(self.random() * 2**53))

    def beta(self, a: float, b: float) -> float:
        return float(self._numpy().beta(a, b))

    def normal(self, shape: tuple[int, ...], dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """Standard-normal tensor of `shape`."""
        g = self._gen()
        if g is None or isinstance(g, torch.Generator):
            return torch.randn(shape, generator=g, dtype=dtype)
        return torch.from_numpy(self._numpy().standard_normal(shape)).to(dtype)


def as_rng(generator: GeneratorLike | Rng) -> Rng:
    return generator if isinstance(generator, Rng) else Rng(generator)
