"""Safe readers for weight files: safetensors, and pickles only ever through `torch.load(weights_only=True)`.

vitkit's own format and strict loading live with the models (`vitkit.models.base`); their names are re-exported
here for the converters and older imports.
"""

from __future__ import annotations

import pickle
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from ..errors import CheckpointError
from ..models.base import (  # noqa: F401  (re-exported)
    CONFIG_FILE,
    FORMAT,
    FORMAT_VERSION,
    WEIGHTS_FILE,
    check_state_dict,
    key_listing,
    load_weights,
    save_pretrained,
)
from ..utils.limits import parse_json
from .hub import first_line


def read_json(path: Path) -> dict[str, Any]:
    try:
        data = parse_json(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:  # unreadable, not UTF-8, not JSON, nested too deep
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
            raise CheckpointError(f"{path} is not a readable safetensors file ({first_line(e)})") from None
    return unwrap_state_dict(load_plain_pickle(path), str(path))


def load_plain_pickle(path: Path, *, refused_hint: str = "", safe_globals: list[Any] | None = None) -> Any:
    """`torch.load(path, weights_only=True)` on the CPU: tensors and plain containers only, never code. A pickle
    that asks for anything else, and a truncated or corrupt file (whatever torch's reader raises on it: EOFError,
    RuntimeError, but also IndexError or KeyError from its unpickler), is a CheckpointError naming the file."""
    try:
        # torch warns about some legacy pickles (e.g. "Detected pickle protocol 4"); the user gets the result or
        # one error line, not torch's notes about its own unpickler.
        with torch.serialization.safe_globals(safe_globals or []), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        raise CheckpointError(
            f"{path} is not a plain-tensor checkpoint and was not loaded: vitkit reads pickles only with "
            f"torch.load(weights_only=True), which refuses code and arbitrary objects{refused_hint} "
            f"({_weights_only_reason(e)})"
        ) from None
    except Exception as e:  # nothing ran (weights_only): any other failure is a damaged file
        raise CheckpointError(f"cannot read {path} as a PyTorch checkpoint ({type(e).__name__}: {first_line(e)})"
                              ) from None


def _weights_only_reason(e: BaseException) -> str:
    """The one informative sentence of torch's weights_only refusal (e.g. "Trying to load unsupported GLOBAL
    posix.system whose module posix is blocked."), without its advice to retry with the unsafe loader."""
    boilerplate = ("Weights only load failed", "Please file an issue", "Check the documentation")
    lines = [line.strip() for line in str(e).splitlines()]
    kept = [line for line in lines if line and not line.startswith(boilerplate)]
    reason = " ".join(kept).replace("WeightsUnpickler error:", "").strip()
    return reason or type(e).__name__


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
