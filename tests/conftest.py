"""Shared test set-up: a fixed seed before every test and a sensible thread count for small CI machines."""

from __future__ import annotations

import os

import pytest
import torch

# Two CI cores: more intra-op threads than cores only adds contention; interop threads are never useful here.
# OMP_NUM_THREADS, when set, wins (e.g. 1 on a machine shared with other jobs, where 2 threads thrash).
_threads = os.environ.get("OMP_NUM_THREADS", "")
_default = max(1, min(4, os.cpu_count() or 1))
torch.set_num_threads(int(_threads) if _threads.isdigit() and int(_threads) > 0 else _default)


@pytest.fixture(autouse=True)
def _seed() -> None:
    """Every test starts from the same RNG state, so random inits and inputs are reproducible in isolation."""
    torch.manual_seed(0)
