"""timm ViT checkpoints -> vitkit. vitkit's ViT parameter names are timm's, so the key table is the identity;
what remains is unwrapping training wrappers (DDP `module.`, torch.compile `_orig_mod.`)."""

from __future__ import annotations

from collections.abc import Mapping

import torch

from ..io import strip_prefixes

WRAPPER_PREFIXES = ("module.", "_orig_mod.")


def convert_timm_vit(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A timm VisionTransformer (or hybrid) state dict in vitkit's names."""
    return strip_prefixes(state_dict, WRAPPER_PREFIXES)
