"""Choosing a device from a user's string."""

from __future__ import annotations

import torch

from ..errors import VitkitError


def resolve_device(name: str) -> torch.device:
    """"auto" -> cuda when available, else cpu; any other torch device string as given (cuda must be present)."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(name)
    except RuntimeError as e:
        raise VitkitError(f"--device {name!r} is not a device torch knows ({e})") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise VitkitError(f"--device {name}: CUDA is not available on this machine")
    return dev


def device_of(model: torch.nn.Module) -> torch.device:
    """Where a model's parameters live (cpu for a model without any)."""
    p = next(model.parameters(), None)
    return p.device if p is not None else torch.device("cpu")
