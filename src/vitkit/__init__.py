"""vitkit: vision transformers (ViT, hybrid ViT, ViLT) in PyTorch, with checkpoint parity against timm,
Hugging Face transformers and the original JAX releases."""

from .utils.torch_floor import require_torch

require_torch()  # before anything reads a checkpoint: see vitkit/utils/torch_floor.py

from .errors import CheckpointError, ConfigError, VitkitError  # noqa: E402
from .inference.vilt import fill_mask, itm_score, rank_images, rank_texts, retrieval_scores, vqa  # noqa: E402
from .registry import create_model, from_pretrained, get_config, list_models  # noqa: E402

__version__ = "0.1.0"

__all__ = [
    "CheckpointError",
    "ConfigError",
    "VitkitError",
    "__version__",
    "create_model",
    "fill_mask",
    "from_pretrained",
    "get_config",
    "itm_score",
    "list_models",
    "rank_images",
    "rank_texts",
    "retrieval_scores",
    "vqa",
]
