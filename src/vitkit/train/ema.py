"""Exponential moving average of model weights (Polyak averaging), kept on the model's device."""

from __future__ import annotations

import copy

import torch
from torch import nn


class ModelEMA:
    def __init__(self, model: nn.Module, decay: float) -> None:
        self.module = copy.deepcopy(model).eval().requires_grad_(False)
        self.decay = decay
        self.updates = 0

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        self.updates += 1
        # warm-up: early on the average follows the weights closely (short runs still benefit)
        d = min(self.decay, (1 + self.updates) / (10 + self.updates))
        ema_sd, sd = self.module.state_dict(), model.state_dict()
        floats = [(ema_sd[k], sd[k]) for k in ema_sd if ema_sd[k].dtype.is_floating_point]
        if floats:
            e, m = zip(*floats)
            torch._foreach_lerp_(list(e), [t.detach() for t in m], 1.0 - d)
        for k, v in ema_sd.items():
            if not v.dtype.is_floating_point:
                v.copy_(sd[k])

    def state_dict(self) -> dict:
        return {"module": self.module.state_dict(), "updates": self.updates}

    def load_state_dict(self, state: dict) -> None:
        self.module.load_state_dict(state["module"])
        self.updates = int(state["updates"])
