"""The transformer feed-forward block: Linear -> activation -> dropout -> Linear -> dropout."""

from __future__ import annotations

import torch
from torch import nn

from ..errors import ConfigError


class QuickGELU(nn.Module):
    """x * sigmoid(1.702 x), the approximation used by CLIP."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(1.702 * x)


_ACTIVATIONS = {
    "gelu": lambda: nn.GELU(),
    "gelu_tanh": lambda: nn.GELU(approximate="tanh"),
    "quick_gelu": QuickGELU,
    "relu": nn.ReLU,
    "silu": nn.SiLU,
}
# Names other libraries use for the same functions (Hugging Face `hidden_act`).
ACTIVATION_ALIASES = {"gelu_new": "gelu_tanh", "gelu_pytorch_tanh": "gelu_tanh", "swish": "silu"}


def get_activation(name: str) -> nn.Module:
    name = ACTIVATION_ALIASES.get(name, name)
    if name not in _ACTIVATIONS:
        raise ConfigError(f"unknown activation {name!r}; known: {', '.join(_ACTIVATIONS)}")
    return _ACTIVATIONS[name]()


class Mlp(nn.Module):
    def __init__(
        self,
        in_features: int,
        *,
        hidden_features: int,
        out_features: int | None = None,
        act: str = "gelu",
        drop: float = 0.0,
        bias: bool = True,
    ) -> None:
        super().__init__()
        self.fc1 = nn.Linear(in_features, hidden_features, bias=bias)
        self.act = get_activation(act)
        self.drop1 = nn.Dropout(drop)
        self.fc2 = nn.Linear(hidden_features, out_features or in_features, bias=bias)
        self.drop2 = nn.Dropout(drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.fc1(x)
        if type(self.act) is nn.GELU and not (torch.is_grad_enabled() and h.requires_grad):
            # Inference: GELU in place on fc1's output, the block's largest tensor (4x the width); the same
            # kernel and values, one allocation fewer (fresh pages are costly on CPU).
            h = torch._C._nn.gelu_(h, approximate=self.act.approximate)
        else:
            h = self.act(h)
        return self.drop2(self.fc2(self.drop1(h)))
