"""A tiny DiT with weights large enough that its outputs vary, for the diffusion tests."""

from __future__ import annotations

import pytest
import torch

from vitkit.models import DiT, DiTConfig


@pytest.fixture
def tiny_dit():
    """A factory: tiny_dit(**config overrides) -> an 8x8, 1-channel, 3-class DiT in eval mode."""

    def tiny_dit(**kw) -> DiT:
        cfg = {"input_size": 8, "patch_size": 4, "in_channels": 1, "hidden_size": 16, "depth": 1, "num_heads": 2,
               "num_classes": 3, **kw}
        model = DiT(DiTConfig(**cfg)).eval()
        with torch.no_grad():
            for p in model.parameters():
                p.normal_(0, 0.1)
        return model

    return tiny_dit
