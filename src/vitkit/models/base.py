"""What every vitkit model shares: its config, saving in vitkit's own format, and strict loading of weights.

vitkit's format: a directory with `config.json` ({"format": "vitkit", "model_type": ..., "config": {...}}) and
`model.safetensors`, both written atomically. Reading it back (and every foreign format) is `vitkit.from_pretrained`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

from torch import nn

from ..config import config_to_dict
from ..errors import CheckpointError
from ..utils.files import atomic_write_bytes, atomic_write_text

FORMAT = "vitkit"
FORMAT_VERSION = 1
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"


class PretrainedModel(nn.Module):
    model_type: ClassVar[str]
    config_class: ClassVar[type]
    config: Any

    def save_pretrained(self, directory: str | Path, *, extra_files: dict[str, Any] | None = None) -> Path:
        """Write `config.json` + `model.safetensors` (and any JSON-ready `extra_files`) to `directory`.

        `vitkit.from_pretrained(directory)` reads it back to identical outputs.
        """
        return save_pretrained(self, directory, extra_files=extra_files)

    @property
    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())


def save_pretrained(model: PretrainedModel, directory: str | Path, *,
                    extra_files: dict[str, Any] | None = None) -> Path:
    """Write config.json + model.safetensors (+ extra JSON files) atomically; returns the directory."""
    from safetensors.torch import save

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    # safetensors refuses shared or non-contiguous storage: give each tensor its own contiguous copy.
    tensors = {k: v.detach().cpu().contiguous().clone() for k, v in model.state_dict().items()}
    atomic_write_bytes(directory / WEIGHTS_FILE, save(tensors, metadata={"format": "pt"}))
    meta = {"format": FORMAT, "format_version": FORMAT_VERSION, "model_type": model.model_type,
            "config": config_to_dict(model.config)}
    atomic_write_text(directory / CONFIG_FILE, json.dumps(meta, indent=2) + "\n")
    for name, content in (extra_files or {}).items():
        atomic_write_text(directory / name, json.dumps(content, indent=2) + "\n")
    return directory


def key_listing(keys: list[str], limit: int = 5) -> str:
    """The first `limit` keys, comma-separated, with the total when there are more."""
    shown = ", ".join(keys[:limit])
    return shown + (f", ... ({len(keys)} in all)" if len(keys) > limit else "")


def check_state_dict(model: nn.Module, state_dict: Mapping[str, Any], source: str = "checkpoint") -> None:
    """Raise CheckpointError naming the first missing / unexpected / mis-shaped keys, if any."""
    expected = model.state_dict()
    missing = [k for k in expected if k not in state_dict]
    unexpected = [k for k in state_dict if k not in expected]
    misshaped = [
        f"{k} {tuple(state_dict[k].shape)} vs model {tuple(v.shape)}"
        for k, v in expected.items()
        if k in state_dict and tuple(state_dict[k].shape) != tuple(v.shape)
    ]
    problems = []
    if missing:
        problems.append(f"missing keys: {key_listing(missing)}")
    if unexpected:
        problems.append(f"unexpected keys: {key_listing(unexpected)}")
    if misshaped:
        problems.append(f"mis-shaped: {key_listing(misshaped, 3)}")
    if problems:
        name = getattr(model, "model_type", type(model).__name__)
        raise CheckpointError(f"{source} does not fit this {name} model; " + "; ".join(problems))


def load_weights(model: nn.Module, state_dict: Mapping[str, Any], source: str = "checkpoint") -> nn.Module:
    """Strict load: every key present, nothing extra, every shape equal. Dtypes follow the model."""
    check_state_dict(model, state_dict, source)
    try:
        model.load_state_dict(state_dict, strict=True)
    except RuntimeError as e:  # right shapes, unusable tensors (sparse, quantized, complex into real, ...)
        raise CheckpointError(f"{source}: the weights have the right shapes but cannot be loaded ({e})") from e
    return model
