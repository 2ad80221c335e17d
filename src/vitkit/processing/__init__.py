"""Turning raw inputs into model inputs: image files of any mode (`images`), BERT's WordPiece (`bert`), and the
ViLT processor (`vilt`). Nothing here depends on a model class."""

from .bert import BertTokenizer
from .images import DatasetError, ImageLoadError, load_image
from .vilt import ViLTProcessor, ViltProcessor, ViLTProcessorConfig, ViltProcessorConfig

__all__ = [
    "BertTokenizer",
    "DatasetError",
    "ImageLoadError",
    "ViLTProcessor",
    "ViLTProcessorConfig",
    "ViltProcessor",
    "ViltProcessorConfig",
    "load_image",
]
