"""Hugging Face transformers ViLT directories -> vitkit's ViLT.

A directory holds `config.json` (model_type "vilt"), weights (`model.safetensors` / `pytorch_model.bin`, or
sharded) and optionally `preprocessor_config.json`. Every head class with a published checkpoint is read:

| transformers class                   | keys                  | vitkit task |
| ------------------------------------ | --------------------- | ----------- |
| ViltModel                            | backbone, no prefix   | backbone    |
| ViltForMaskedLM                      | `vilt.` + mlm_score   | mlm         |
| ViltForQuestionAnswering             | `vilt.` + classifier  | vqa         |
| ViltForImagesAndTextClassification   | `vilt.` + classifier  | nlvr2       |
| ViltForImageAndTextRetrieval         | `vilt.` + rank_output | retrieval   |

The tables below invert transformers' published conversion from the original ViLT
(convert_vilt_original_to_pytorch.py): HF splits the original's fused `qkv` into query/key/value, which are
concatenated back in that order. Two HF quirks are undone explicitly:
- transformers 5 forces `tie_word_embeddings` for ViLT and does not save the tied MLM decoder; when
  `mlm_score.decoder.weight` is absent it is the word-embedding matrix (copied: vitkit never ties). When present
  (checkpoints converted with tie_word_embeddings=False, like the original), it is used as saved.
- HF uses one `layer_norm_eps` for every LayerNorm; vitkit's two eps fields (`norm_eps` for the ViT,
  `text_norm_eps` for BERT's) both take it, so outputs match HF exactly.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from ...errors import CheckpointError, ConfigError
from ...models.vilt.model import ViLTConfig
from ..io import read_json
from .hf import HF_RESAMPLE_NAMES, HUB_BLOCK, PREPROCESSOR_FILE, hf_activation, hf_labels, read_hf_weights, square_size
from .keys import fuse_qkv, key_problems

# HF backbone keys (below `vilt.` in the head classes) -> vitkit.
EMBED_TABLE = {
    "embeddings.text_embeddings.word_embeddings.weight": "text_embeddings.word_embeddings.weight",
    "embeddings.text_embeddings.position_embeddings.weight": "text_embeddings.position_embeddings.weight",
    "embeddings.text_embeddings.token_type_embeddings.weight": "text_embeddings.token_type_embeddings.weight",
    "embeddings.text_embeddings.LayerNorm.weight": "text_embeddings.LayerNorm.weight",
    "embeddings.text_embeddings.LayerNorm.bias": "text_embeddings.LayerNorm.bias",
    "embeddings.cls_token": "transformer.cls_token",
    "embeddings.position_embeddings": "transformer.pos_embed",
    "embeddings.patch_embeddings.projection.weight": "transformer.patch_embed.proj.weight",
    "embeddings.patch_embeddings.projection.bias": "transformer.patch_embed.proj.bias",
    "embeddings.token_type_embeddings.weight": "token_type_embeddings.weight",
    "layernorm.weight": "transformer.norm.weight",
    "layernorm.bias": "transformer.norm.bias",
    "pooler.dense.weight": "pooler.dense.weight",
    "pooler.dense.bias": "pooler.dense.bias",
}
# BERT's index buffers, saved by older transformers: checked to be the defaults, then dropped.
BUFFERS = ("embeddings.text_embeddings.position_ids", "embeddings.text_embeddings.token_type_ids")
# The encoder layers are spelled as in transformers' ViT: hf.HUB_BLOCK (encoder.layer.{i}.<key>, below which
# its table maps to transformer.blocks.{i}.<value>, and its query/key/value Linears are fused into attn.qkv).
# Root-level head keys of each class -> vitkit (the classifier's target depends on the class).
CLASSIFIER_KEYS = [f"classifier.{i}.{p}" for i in (0, 1, 3) for p in ("weight", "bias")]
MLM_TABLE = {
    "mlm_score.transform.dense.weight": "mlm_score.transform.dense.weight",
    "mlm_score.transform.dense.bias": "mlm_score.transform.dense.bias",
    "mlm_score.transform.LayerNorm.weight": "mlm_score.transform.LayerNorm.weight",
    "mlm_score.transform.LayerNorm.bias": "mlm_score.transform.LayerNorm.bias",
}
RANK_TABLE = {"rank_output.weight": "rank_output.weight", "rank_output.bias": "rank_output.bias"}
ARCHITECTURE_TASKS = {
    "ViltModel": "backbone",
    "ViltForMaskedLM": "mlm",
    "ViltForQuestionAnswering": "vqa",
    "ViltForImagesAndTextClassification": "nlvr2",
    "ViltForImageAndTextRetrieval": "retrieval",
}


def hf_vilt_task(state_dict: Mapping[str, torch.Tensor], architectures: list[str] | None = None) -> str:
    """Which head class a state dict comes from: the config's `architectures`, else the keys present."""
    for arch in architectures or []:
        if arch in ARCHITECTURE_TASKS:
            return ARCHITECTURE_TASKS[arch]
        if arch.startswith("Vilt"):
            raise CheckpointError(f"transformers class {arch} has no vitkit equivalent; "
                                  f"supported: {', '.join(ARCHITECTURE_TASKS)}")
    if any(k.startswith("mlm_score.") for k in state_dict):
        return "mlm"
    if "rank_output.weight" in state_dict:
        return "retrieval"
    if "classifier.0.weight" in state_dict:
        fc0 = state_dict["classifier.0.weight"]
        return "nlvr2" if fc0.shape[1] != fc0.shape[0] // 2 else "vqa"  # NLVR2: [nD, nD]; VQA: [2D, D]
    if not any(k.startswith("vilt.") for k in state_dict):
        return "backbone"
    raise CheckpointError("a transformers ViLT head class vitkit does not read (e.g. ViltForTokenClassification)")


def convert_hf_vilt(state_dict: Mapping[str, torch.Tensor], task: str) -> dict[str, torch.Tensor]:
    """A transformers Vilt* state dict in vitkit's (= the original ViLT's) names. Strict: every key must be used
    and every expected key present, else CheckpointError names them."""
    prefix = "" if task == "backbone" else "vilt."
    used: set[str] = set()
    missing: list[str] = []
    out: dict[str, torch.Tensor] = {}

    def take(src: str, dst: str) -> None:
        if src in state_dict:
            out[dst] = state_dict[src]
            used.add(src)
        else:
            missing.append(src)

    for src, dst in EMBED_TABLE.items():
        take(prefix + src, dst)
    for buf in BUFFERS:
        key = prefix + buf
        if key in state_dict:
            _check_index_buffer(key, state_dict[key])
            used.add(key)
    layer_re = re.compile("^" + re.escape(prefix) + r"encoder\.layer\.(\d+)\.")
    depth = 1 + max((int(m.group(1)) for k in state_dict if (m := layer_re.match(k))), default=-1)
    for i in range(depth):
        lp, bp = prefix + HUB_BLOCK.prefix.format(i=i), f"transformer.blocks.{i}."
        for src, dst in HUB_BLOCK.table.items():
            take(lp + src, bp + dst)
        for param, fused in fuse_qkv(state_dict, lp, HUB_BLOCK.qkv, used=used, missing=missing).items():
            out[f"{bp}attn.qkv.{param}"] = fused
    if task in ("vqa", "nlvr2"):
        head = "vqa_classifier" if task == "vqa" else "nlvr2_classifier"
        for k in CLASSIFIER_KEYS:
            take(k, head + k[len("classifier"):])
    elif task == "retrieval":
        for src, dst in RANK_TABLE.items():
            take(src, dst)
    elif task == "mlm":
        for src, dst in MLM_TABLE.items():
            take(src, dst)
        if "mlm_score.decoder.weight" in state_dict:
            take("mlm_score.decoder.weight", "mlm_score.decoder.weight")
        elif "text_embeddings.word_embeddings.weight" in out:  # tied by transformers 5, not saved
            out["mlm_score.decoder.weight"] = out["text_embeddings.word_embeddings.weight"].clone()
        # transformers < 5 kept the bias twice (mlm_score.bias shared with decoder.bias); 5 has decoder.bias only
        bias_keys = [k for k in ("mlm_score.decoder.bias", "mlm_score.bias") if k in state_dict]
        if bias_keys:
            out["mlm_score.bias"] = state_dict[bias_keys[0]]
            used.update(bias_keys)
        else:
            missing.append("mlm_score.decoder.bias")
    unexpected = sorted(k for k in state_dict if k not in used)
    problems = key_problems(missing, unexpected)
    if problems:
        raise CheckpointError(f"not a transformers ViLT ({task}) state dict; " + "; ".join(problems))
    return out


def _check_index_buffer(key: str, value: torch.Tensor) -> None:
    """BERT's `position_ids` must be 0..L-1 and `token_type_ids` zeros: vitkit computes them, never stores them."""
    flat = value.reshape(-1)
    expected = torch.arange(flat.numel()) if key.endswith("position_ids") else torch.zeros(flat.numel())
    if not torch.equal(flat.long(), expected.long()):
        raise CheckpointError(f"{key} holds non-default indices; vitkit computes them and cannot honour it")


# --------------------------------------------------------------------------------------------- config
def hf_vilt_config(meta: Mapping[str, Any], state_dict: Mapping[str, torch.Tensor], task: str,
                   processor: Mapping[str, Any] | None = None) -> ViLTConfig:
    """ViLTConfig for a transformers ViltConfig (+ preprocessor) and the converted weights."""
    def get(key: str, default: Any) -> Any:  # transformers writes null for unset fields
        value = meta.get(key)
        return default if value is None else value

    D = int(get("hidden_size", 768))
    eps = float(get("layer_norm_eps", 1e-12))
    num_images = 1
    num_answers = ViLTConfig.num_answers
    if task == "nlvr2":
        num_images = state_dict["nlvr2_classifier.0.weight"].shape[1] // D
        num_answers = state_dict["nlvr2_classifier.3.weight"].shape[0]
    elif task == "vqa":
        num_answers = state_dict["vqa_classifier.3.weight"].shape[0]
    kwargs: dict[str, Any] = dict(
        vocab_size=int(get("vocab_size", 30522)), max_text_len=int(get("max_position_embeddings", 40)),
        type_vocab_size=int(get("type_vocab_size", 2)), text_norm_eps=eps,
        img_size=square_size(get("image_size", 384), "image_size"),
        patch_size=square_size(get("patch_size", 32), "patch_size"),
        in_chans=int(get("num_channels", 3)), max_image_len=int(get("max_image_length", -1)),
        embed_dim=D, depth=int(get("num_hidden_layers", 12)), num_heads=int(get("num_attention_heads", 12)),
        mlp_ratio=int(get("intermediate_size", 4 * D)) / D, qkv_bias=bool(get("qkv_bias", True)),
        act=hf_activation(str(get("hidden_act", "gelu"))), norm_eps=eps,
        drop_rate=float(get("hidden_dropout_prob", 0.0)),
        attn_drop_rate=float(get("attention_probs_dropout_prob", 0.0)),
        modality_type_vocab_size=int(get("modality_type_vocab_size", 2)), num_images=num_images, task=task,
        num_answers=num_answers,
    )
    if kwargs["max_image_len"] <= 0:
        kwargs["max_image_len"] = -1
    if task in ("vqa", "nlvr2"):
        kwargs["labels"] = hf_labels(meta, num_answers)
    kwargs.update(_preprocessing(processor or {}))
    try:
        return ViLTConfig(**kwargs)
    except ConfigError as e:
        raise CheckpointError(f"config.json does not describe a ViLT vitkit can build ({e})") from None


def _preprocessing(p: Mapping[str, Any]) -> dict[str, Any]:
    """preprocessor_config.json (ViltImageProcessor) -> ViLTConfig preprocessing fields."""
    out: dict[str, Any] = {}
    if isinstance(p.get("image_mean"), (list, tuple)):
        out["mean"] = tuple(float(v) for v in p["image_mean"])
    if isinstance(p.get("image_std"), (list, tuple)):
        out["std"] = tuple(float(v) for v in p["image_std"])
    size = p.get("size")
    if isinstance(size, Mapping) and size.get("shortest_edge"):
        out["shorter_edge"] = int(size["shortest_edge"])
        out["longer_edge"] = int(1333 / 800 * size["shortest_edge"])  # ViltImageProcessor's rule: 384 -> 639
    if p.get("size_divisor"):
        out["size_divisor"] = int(p["size_divisor"])
    if p.get("resample") in HF_RESAMPLE_NAMES:
        out["interpolation"] = HF_RESAMPLE_NAMES[p["resample"]]
    return out


def read_hf_vilt_directory(path: Path, meta: dict[str, Any]) -> tuple[ViLTConfig, dict[str, torch.Tensor]]:
    """Config and vitkit state dict of a transformers ViLT directory; `meta` is its parsed config.json."""
    processor = read_json(path / PREPROCESSOR_FILE) if (path / PREPROCESSOR_FILE).is_file() else None
    try:
        raw = read_hf_weights(path)
        task = hf_vilt_task(raw, meta.get("architectures"))
        state_dict = convert_hf_vilt(raw, task)
        config = hf_vilt_config(meta, state_dict, task, processor)
    except CheckpointError as e:
        msg = str(e)
        raise CheckpointError(msg if msg.startswith(str(path)) else f"{path}: {msg}") from None
    return config, state_dict


__all__ = ["convert_hf_vilt", "hf_vilt_config", "hf_vilt_task", "read_hf_vilt_directory"]
