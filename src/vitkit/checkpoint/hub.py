"""Fetching checkpoint files from the Hugging Face Hub, through huggingface_hub only (its cache, offline mode and
authentication). Nothing here knows model classes: it returns local paths."""

from __future__ import annotations

import contextlib
from pathlib import Path

from ..errors import CheckpointError
from ..models.base import CONFIG_FILE

HUB_PREFIX = "hf-hub:"
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin", "model.pth", "pytorch_model.pth")
# open_clip's own files, in repositories that hold no transformers / timm config.json
OPEN_CLIP_FILES = ("open_clip_config.json", ("open_clip_model.safetensors", "open_clip_pytorch_model.bin"))


def download_from_hub(repo_id: str) -> Path:
    """Fetch config.json and one weight file of a hub repo -> the local directory holding them; a clear
    CheckpointError when that is impossible."""
    org, _, repo_name = repo_id.partition("/")
    if not org or not repo_name or "/" in repo_name:
        raise CheckpointError(f"hf-hub source must look like 'hf-hub:<org>/<name>', got {HUB_PREFIX}{repo_id}")
    try:
        from huggingface_hub import hf_hub_download
        from huggingface_hub.errors import EntryNotFoundError, LocalEntryNotFoundError
    except ImportError:  # pragma: no cover - a dependency of vitkit
        raise CheckpointError("hf-hub sources need the huggingface_hub package") from None
    try:
        try:
            config = Path(hf_hub_download(repo_id, CONFIG_FILE))
            weight_files: tuple[str, ...] = WEIGHT_FILES
        except EntryNotFoundError as e:
            if isinstance(e, LocalEntryNotFoundError):
                raise
            config = Path(hf_hub_download(repo_id, OPEN_CLIP_FILES[0]))  # an open_clip repository
            weight_files = OPEN_CLIP_FILES[1]
        with contextlib.suppress(EntryNotFoundError):  # Hugging Face image models keep mean/std/resample here
            hf_hub_download(repo_id, "preprocessor_config.json")
        for name in weight_files:
            try:
                hf_hub_download(repo_id, name)
                return config.parent
            except EntryNotFoundError as e:
                if isinstance(e, LocalEntryNotFoundError):  # offline and not cached: not "absent from the repo"
                    raise
                continue
    except Exception as e:  # the hub raises many types (offline, 404, gated, HTTP); all mean "not loaded"
        raise CheckpointError(
            f"could not download {HUB_PREFIX}{repo_id} ({type(e).__name__}: {first_line(e)}). "
            "Without network access, download it elsewhere and pass the local directory instead."
        ) from None
    raise CheckpointError(f"{HUB_PREFIX}{repo_id} has no weight file ({', '.join(WEIGHT_FILES)})")


def first_line(e: BaseException) -> str:
    """The first line of an exception's message ('' when it has none)."""
    text = str(e).strip()
    return text.splitlines()[0] if text else ""
