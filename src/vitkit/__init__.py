"""vitkit: vision transformers (ViT, hybrid ViT, ViLT) in PyTorch, with checkpoint parity against timm,
Hugging Face transformers and the original JAX releases."""

from .checkpoint.load import from_pretrained
from .errors import CheckpointError, ConfigError, VitkitError
from .registry import create_model, get_config, list_models

__version__ = "0.1.0"

__all__ = [
    "CheckpointError",
    "ConfigError",
    "VitkitError",
    "__version__",
    "create_model",
    "from_pretrained",
    "get_config",
    "list_models",
]
