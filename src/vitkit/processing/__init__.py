"""Turning raw inputs into model inputs: image files of any mode (`images`), BERT's WordPiece (`bert`), the ViLT
processor (`vilt`), CLIP's byte-level BPE (`clip_bpe`) and the CLIP processor (`clip`), whose outputs are
`BatchFeature`s (`batch`). Nothing here depends on a model class."""

from .batch import BatchFeature
from .bert import BertTokenizer
from .clip import CLIPProcessor, CLIPProcessorConfig
from .clip_bpe import CLIPTokenizer
from .images import DatasetError, ImageLoadError, load_image
from .vilt import ViLTProcessor, ViltProcessor, ViLTProcessorConfig, ViltProcessorConfig

__all__ = [
    "BatchFeature",
    "BertTokenizer",
    "CLIPProcessor",
    "CLIPProcessorConfig",
    "CLIPTokenizer",
    "DatasetError",
    "ImageLoadError",
    "ViLTProcessor",
    "ViLTProcessorConfig",
    "ViltProcessor",
    "ViltProcessorConfig",
    "load_image",
]
