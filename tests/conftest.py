"""Shared test set-up: a fixed seed before every test and a sensible thread count for small CI machines."""

from __future__ import annotations

import os

import pytest
import torch

# Two CI cores: more intra-op threads than cores only adds contention; interop threads are never useful here.
torch.set_num_threads(max(1, min(4, os.cpu_count() or 1)))


@pytest.fixture(autouse=True)
def _seed() -> None:
    """Every test starts from the same RNG state, so random inits and inputs are reproducible in isolation."""
    torch.manual_seed(0)
