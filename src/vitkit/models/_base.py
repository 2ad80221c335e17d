"""What every vitkit model shares: its config, and saving in vitkit's own format."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

from torch import nn


class PretrainedModel(nn.Module):
    model_type: ClassVar[str]
    config_class: ClassVar[type]
    config: Any

    def save_pretrained(self, directory: str | Path, *, extra_files: dict[str, Any] | None = None) -> Path:
        """Write `config.json` + `model.safetensors` (and any JSON-ready `extra_files`) to `directory`.

        `vitkit.from_pretrained(directory)` reads it back to identical outputs.
        """
        from ..checkpoint.io import save_pretrained  # checkpoint imports models

        return save_pretrained(self, directory, extra_files=extra_files)

    @property
    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())
