"""vitkit's own checkpoint format, safe readers for foreign weight files, and strict loading.

Own format: a directory with `config.json` ({"format": "vitkit", "model_type": ..., "config": {...}}) and
`model.safetensors`. Pickles are only ever read with `torch.load(weights_only=True)`.
"""

from __future__ import annotations

import json
import os
import pickle
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..config import config_to_dict
from ..errors import CheckpointError

FORMAT = "vitkit"
FORMAT_VERSION = 1
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"


def _atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write via a temp file + rename: a failed or interrupted write (full disk, kill -9) leaves the previous
    file intact, and the data is on disk before the rename makes it visible (no empty file after a power cut)."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save_pretrained(model: nn.Module, directory: str | Path, *, extra_files: dict[str, Any] | None = None) -> Path:
    """Write config.json + model.safetensors (+ extra JSON files) atomically; returns the directory."""
    from safetensors.torch import save

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    # safetensors refuses shared or non-contiguous storage: give each tensor its own contiguous copy.
    tensors = {k: v.detach().cpu().contiguous().clone() for k, v in model.state_dict().items()}
    _atomic_write_bytes(directory / WEIGHTS_FILE, save(tensors, metadata={"format": "pt"}))
    meta = {"format": FORMAT, "format_version": FORMAT_VERSION, "model_type": model.model_type,
            "config": config_to_dict(model.config)}
    _atomic_write_bytes(directory / CONFIG_FILE, (json.dumps(meta, indent=2) + "\n").encode())
    for name, content in (extra_files or {}).items():
        _atomic_write_bytes(directory / name, (json.dumps(content, indent=2) + "\n").encode())
    return directory


def read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CheckpointError(f"cannot read {path}: {e}") from None
    if not isinstance(data, dict):
        raise CheckpointError(f"{path} does not hold a JSON object")
    return data


_NESTED_KEYS = ("state_dict", "model", "module", "model_state", "model_state_dict")


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Tensors from a .safetensors file or a plain-tensor pickle (.pth/.bin/.pt/.ckpt), on the CPU.

    Training checkpoints that nest the weights (`{"state_dict": ...}`, `{"model": ...}`) are unwrapped.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint file not found: {path}")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except Exception as e:  # SafetensorError, OSError, ValueError, ...: a bad file either way
            raise CheckpointError(f"{path} is not a readable safetensors file ({_first_line(e)})") from None
    return unwrap_state_dict(load_plain_pickle(path), str(path))


def load_plain_pickle(path: Path, *, refused_hint: str = "", safe_globals: list[Any] | None = None) -> Any:
    """`torch.load(path, weights_only=True)` on the CPU: tensors and plain containers only, never code. A pickle
    that asks for anything else, and a truncated or corrupt file (whatever torch's reader raises on it: EOFError,
    RuntimeError, but also IndexError or KeyError from its unpickler), is a CheckpointError naming the file."""
    try:
        with torch.serialization.safe_globals(safe_globals or []):
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        raise CheckpointError(
            f"{path} is not a plain-tensor checkpoint and was not loaded: vitkit reads pickles only with "
            f"torch.load(weights_only=True), which refuses code and arbitrary objects{refused_hint} "
            f"({_weights_only_reason(e)})"
        ) from None
    except Exception as e:  # nothing ran (weights_only): any other failure is a damaged file
        raise CheckpointError(f"cannot read {path} as a PyTorch checkpoint ({type(e).__name__}: {_first_line(e)})"
                              ) from None


def _weights_only_reason(e: BaseException) -> str:
    """The one informative sentence of torch's weights_only refusal (e.g. "Trying to load unsupported GLOBAL
    posix.system whose module posix is blocked."), without its advice to retry with the unsafe loader."""
    boilerplate = ("Weights only load failed", "Please file an issue", "Check the documentation")
    lines = [line.strip() for line in str(e).splitlines()]
    kept = [line for line in lines if line and not line.startswith(boilerplate)]
    reason = " ".join(kept).replace("WeightsUnpickler error:", "").strip()
    return reason or type(e).__name__


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else ""


def unwrap_state_dict(obj: Any, where: str) -> dict[str, torch.Tensor]:
    while isinstance(obj, Mapping) and not _is_flat_tensor_dict(obj):
        for key in _NESTED_KEYS:
            if isinstance(obj.get(key), Mapping):
                obj = obj[key]
                break
        else:
            break
    if not isinstance(obj, Mapping) or not _is_flat_tensor_dict(obj):
        raise CheckpointError(f"{where} does not hold a state dict of tensors")
    return dict(obj)


def _is_flat_tensor_dict(obj: Mapping) -> bool:
    return bool(obj) and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items())


def strip_prefixes(state_dict: Mapping[str, torch.Tensor], prefixes: tuple[str, ...]) -> dict[str, torch.Tensor]:
    """Remove wrapper prefixes (DDP's `module.`, torch.compile's `_orig_mod.`) wherever every key has them."""
    sd = dict(state_dict)
    changed = True
    while changed:
        changed = False
        for p in prefixes:
            if sd and all(k.startswith(p) for k in sd):
                sd = {k[len(p):]: v for k, v in sd.items()}
                changed = True
    return sd


def _listing(keys: list[str], limit: int = 5) -> str:
    shown = ", ".join(keys[:limit])
    return shown + (f", ... ({len(keys)} in all)" if len(keys) > limit else "")


def check_state_dict(model: nn.Module, state_dict: Mapping[str, torch.Tensor], source: str = "checkpoint") -> None:
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
        problems.append(f"missing keys: {_listing(missing)}")
    if unexpected:
        problems.append(f"unexpected keys: {_listing(unexpected)}")
    if misshaped:
        problems.append(f"mis-shaped: {_listing(misshaped, 3)}")
    if problems:
        name = getattr(model, "model_type", type(model).__name__)
        raise CheckpointError(f"{source} does not fit this {name} model; " + "; ".join(problems))


def load_weights(model: nn.Module, state_dict: Mapping[str, torch.Tensor], source: str = "checkpoint") -> nn.Module:
    """Strict load: every key present, nothing extra, every shape equal. Dtypes follow the model."""
    check_state_dict(model, state_dict, source)
    try:
        model.load_state_dict(state_dict, strict=True)
    except RuntimeError as e:  # right shapes, unusable tensors (sparse, quantized, complex into real, ...)
        raise CheckpointError(f"{source}: the weights have the right shapes but cannot be loaded ({e})") from e
    return model
