"""Training state on disk: one plain-types dict (tensors, numbers, strings, lists, dicts), written atomically
and read back with `torch.load(weights_only=True)` — a checkpoint never runs code."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import CheckpointError, VitkitError, WriteError
from ..utils.files import atomic_write_with

STATE_FILE = "checkpoint.pt"


def save_state(state: dict[str, Any], run_dir: Path) -> Path:
    """Write RUN_DIR/checkpoint.pt atomically (`vitkit.utils.files`): an interrupted or failed write (full disk,
    file size limit, kill -9) leaves the previous checkpoint intact."""
    path = Path(run_dir) / STATE_FILE
    try:
        atomic_write_with(path, lambda f: torch.save(state, f))
    except WriteError as e:  # disk full, quota, permissions: the previous checkpoint is untouched
        raise VitkitError(f"{e}; the previous checkpoint is kept") from e
    return path


def load_state(run_dir: Path) -> dict[str, Any]:
    path = Path(run_dir) / STATE_FILE
    if not path.is_file():
        raise CheckpointError(f"{run_dir} holds no training checkpoint ({STATE_FILE}); nothing to resume")
    from ..checkpoint.io import load_plain_pickle

    state = load_plain_pickle(path)
    if not isinstance(state, dict) or state.get("format") != "vitkit-train":
        raise CheckpointError(f"{path} is not a vitkit training checkpoint")
    return state


def rng_state() -> dict[str, Any]:
    """Global RNG states (python, numpy's legacy global generator, torch, CUDA) as plain types."""
    np_state = np.random.get_state()  # noqa: NPY002 (third-party code may draw from the global generator)
    state = {
        "python": random.getstate(),
        "numpy": torch.from_numpy(np_state[1].astype(np.int64)),
        "numpy_pos": int(np_state[2]),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    np_state = ("MT19937", state["numpy"].numpy().astype(np.uint32), state["numpy_pos"], 0, 0.0)
    np.random.set_state(np_state)  # noqa: NPY002
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
