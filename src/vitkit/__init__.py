"""vitkit: vision transformers (ViT, hybrid ViT, ViLT) in PyTorch, with checkpoint parity against timm,
Hugging Face transformers and the original JAX releases."""

from .errors import CheckpointError, ConfigError, VitkitError
from .inference.vilt import fill_mask, itm_score, rank_images, rank_texts, retrieval_scores, vqa
from .registry import create_model, from_pretrained, get_config, list_models

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
