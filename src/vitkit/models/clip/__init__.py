"""CLIP (Radford et al. 2021, https://arxiv.org/abs/2103.00020) on vitkit's core: the model (`model`), its text
tower (`text`) and config (`config`)."""

from .config import CLIPConfig, CLIPTextConfig
from .model import CLIP, CLIPOutput, contrastive_loss
from .text import TextTransformer

__all__ = ["CLIP", "CLIPConfig", "CLIPOutput", "CLIPTextConfig", "TextTransformer", "contrastive_loss"]
