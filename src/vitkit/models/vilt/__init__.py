"""ViLT (Kim et al. 2021, https://arxiv.org/abs/2102.03334): the model (`model`), its task heads (`heads`), what a
forward returns (`output`) and word-patch alignment by optimal transport (`ot`)."""

from .model import TASKS, TextEmbeddings, ViLT, ViLTConfig
from .output import ViLTOutput

__all__ = ["TASKS", "TextEmbeddings", "ViLT", "ViLTConfig", "ViLTOutput"]
