"""Original ViLT checkpoints (dandelin/ViLT, PyTorch Lightning `.ckpt`) -> vitkit's ViLT.

vitkit's ViLT uses the original's parameter names, so the key table is the identity; what remains:
- BERT's index buffers (`text_embeddings.position_ids`, saved by the transformers of the time; and
  `token_type_ids` should one appear) are checked to be the defaults and dropped: vitkit computes them.
- The original builds a head only when its loss weight is set, so the heads present decide the model:
  vqa_classifier -> task "vqa"; nlvr2_classifier -> "nlvr2" (3 modality types, two images);
  rank_output -> "retrieval" (+ the frozen itm_score as an extra head); itm_score (+ mlm_score) -> "itm" with
  extra head "mlm", like the released ITM+MLM pretraining checkpoint; mlm_score alone -> "mlm".
- Two parameters of objectives the released models did not use are dropped, with a log line: the
  masked-patch-prediction head `mpp_score.*` and its `transformer.mask_token`. Any other unknown key fails.
- Sizes are read from the weight shapes; the number of heads (not visible in weights) and max_image_len /
  drop_rate come from the checkpoint's `hyper_parameters["config"]` when present, else from `model=` (a
  registered ViLT name) or ViLT-B/32's defaults. LayerNorm eps are the original's: 1e-6 in the ViT, 1e-12 in
  BERT's embeddings and MLM transform (ViLTConfig's defaults). VQA answer names are not in the checkpoint:
  pass labels=(...) to from_pretrained.

Checkpoints are read with torch.load(weights_only=True): no code runs. Lightning and sacred objects that only
describe the training run (hyper-parameter containers, callback keys) are read as inert stand-ins.
"""

from __future__ import annotations

import collections
import dataclasses
import logging
import math
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from ...errors import CheckpointError, ConfigError
from ...models.vilt.model import ViLTConfig
from ..io import load_plain_pickle, strip_prefixes, unwrap_state_dict

log = logging.getLogger("vitkit")

# original head attribute -> vitkit head name, in the order that picks the task when several are present
HEAD_TASKS = {
    "vqa_classifier": "vqa",
    "nlvr2_classifier": "nlvr2",
    "rank_output": "retrieval",
    "itm_score": "itm",
    "mlm_score": "mlm",
}
INDEX_BUFFERS = ("text_embeddings.position_ids", "text_embeddings.token_type_ids")
UNUSED = {"mpp_score.": "masked patch prediction head", "transformer.mask_token": "masked patch prediction token"}
WRAPPER_PREFIXES = ("module.", "_orig_mod.")


def convert_vilt_original(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """An original ViLT state dict in vitkit's names (identity, minus the index buffers and the unused MPP
    parameters). Strictness is left to the load: any other stray key is reported there."""
    sd = strip_prefixes(state_dict, WRAPPER_PREFIXES)
    out: dict[str, torch.Tensor] = {}
    for k, v in sd.items():
        if k in INDEX_BUFFERS:
            flat = v.reshape(-1).long()
            expected = torch.arange(flat.numel()) if k.endswith("position_ids") else torch.zeros_like(flat)
            if not torch.equal(flat, expected):
                raise CheckpointError(f"{k} holds non-default indices; vitkit computes them and cannot honour it")
            continue
        unused = next((why for prefix, why in UNUSED.items() if k.startswith(prefix)), None)
        if unused:
            log.info("dropping %s (%s): not part of the released ViLT models", k, unused)
            continue
        out[k] = v
    return out


def vilt_config_from_original(
    state_dict: Mapping[str, torch.Tensor], base: ViLTConfig | None = None, hparams: Mapping[str, Any] | None = None
) -> ViLTConfig:
    """The ViLTConfig of a converted original state dict (see the module docstring for what comes from where)."""
    base = base or ViLTConfig()
    hp = dict(hparams or {})
    sd = state_dict
    try:
        words = sd["text_embeddings.word_embeddings.weight"]
        pos = sd["transformer.pos_embed"]
        proj = sd["transformer.patch_embed.proj.weight"]
    except KeyError as e:
        raise CheckpointError(f"not an original ViLT state dict: no {e.args[0]}") from None
    D = words.shape[1]
    grid = math.isqrt(pos.shape[1] - 1)
    block_re = re.compile(r"^transformer\.blocks\.(\d+)\.")
    depth = 1 + max((int(m.group(1)) for k in sd if (m := block_re.match(k))), default=-1)
    heads = [task for attr, task in HEAD_TASKS.items() if any(k.startswith(attr + ".") for k in sd)]
    task = heads[0] if heads else "backbone"
    extra = tuple(heads[1:])  # e.g. retrieval + the frozen ITM head; ITM + MLM for pretraining
    fields: dict[str, Any] = dict(
        vocab_size=words.shape[0], max_text_len=sd["text_embeddings.position_embeddings.weight"].shape[0],
        type_vocab_size=sd["text_embeddings.token_type_embeddings.weight"].shape[0],
        img_size=grid * proj.shape[-1], patch_size=proj.shape[-1], in_chans=proj.shape[1], embed_dim=D, depth=depth,
        num_heads=int(hp.get("num_heads", base.num_heads if base.embed_dim == D else max(D // 64, 1))),
        mlp_ratio=sd["transformer.blocks.0.mlp.fc1.weight"].shape[0] / D if depth else base.mlp_ratio,
        qkv_bias="transformer.blocks.0.attn.qkv.bias" in sd,
        modality_type_vocab_size=sd["token_type_embeddings.weight"].shape[0],
        task=task, extra_heads=extra, num_images=1, labels=base.labels,
    )
    if isinstance(hp.get("max_image_len"), int):
        fields["max_image_len"] = hp["max_image_len"] if hp["max_image_len"] > 0 else -1
    if isinstance(hp.get("drop_rate"), (int, float)):
        fields["drop_rate"] = float(hp["drop_rate"])
    if task == "vqa":
        fields["num_answers"] = sd["vqa_classifier.3.weight"].shape[0]
    elif task == "nlvr2":
        fields["num_images"] = sd["nlvr2_classifier.0.weight"].shape[1] // D
        fields["num_answers"] = sd["nlvr2_classifier.3.weight"].shape[0]
        if fields["num_answers"] == 2:
            fields["labels"] = ("False", "True")  # as transformers' conversion names the NLVR2 classes
    if fields["labels"] is not None and len(fields["labels"]) != fields.get("num_answers", base.num_answers):
        fields["labels"] = None
    try:
        return dataclasses.replace(base, **fields)
    except ConfigError as e:
        raise CheckpointError(f"the checkpoint does not describe a ViLT vitkit can build ({e})") from None


# --------------------------------------------------------------------------------------- safe reading
class _InertDict:
    """Stands in for a dict subclass of a training-only package (sacred's ReadOnlyDict, Lightning's
    AttributeDict): built as an OrderedDict (which torch's weights_only reader fills and lets carry attributes),
    so the items are kept and none of the original class's code exists to run."""

    def __new__(cls, *args: Any, **kwargs: Any) -> Any:
        return collections.OrderedDict(*args, **kwargs)


class _InertList(list):
    def __setstate__(self, state: Any) -> None:
        pass


class _InertObject:
    """Stands in for a class that only names something (a Lightning callback type used as a dict key)."""

    def __setstate__(self, state: Any) -> None:
        pass


_STAND_INS = [
    (_InertDict, "sacred.config.custom_containers.ReadOnlyDict"),
    (_InertList, "sacred.config.custom_containers.ReadOnlyList"),
    (_InertDict, "pytorch_lightning.utilities.parsing.AttributeDict"),
    (_InertDict, "lightning_fabric.utilities.data.AttributeDict"),
    (_InertObject, "pytorch_lightning.callbacks.model_checkpoint.ModelCheckpoint"),
    (_InertObject, "pytorch_lightning.callbacks.lr_monitor.LearningRateMonitor"),
]


def read_lightning_checkpoint(path: str | Path) -> dict[str, Any]:
    """The top-level dict of a Lightning .ckpt, read with torch.load(weights_only=True)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint file not found: {path}")
    obj = load_plain_pickle(path, safe_globals=_STAND_INS,
                            refused_hint="; re-save its `state_dict` alone with torch.save")
    return obj if isinstance(obj, dict) else {"state_dict": obj}


def read_vilt_checkpoint(path: str | Path, base: Any = None) -> tuple[ViLTConfig, dict[str, torch.Tensor]]:
    """Config and vitkit state dict of an original ViLT .ckpt. `base`: the config of a registered ViLT name
    (model=) that fills what the weights do not say (e.g. "vilt_b32_vqa" with answer labels of your own)."""
    obj = read_lightning_checkpoint(path)
    if base is not None and not isinstance(base, ViLTConfig):
        raise CheckpointError(f"{path} is a ViLT checkpoint; the model= name is not a ViLT")
    hp = obj.get("hyper_parameters")
    hp = hp.get("config", hp) if isinstance(hp, Mapping) else None
    try:
        state_dict = convert_vilt_original(unwrap_state_dict(obj, str(path)))
        config = vilt_config_from_original(state_dict, base, hp if isinstance(hp, Mapping) else None)
    except CheckpointError as e:
        raise CheckpointError(f"{path}: {e}") from None
    return config, state_dict


__all__ = ["convert_vilt_original", "read_lightning_checkpoint", "read_vilt_checkpoint", "vilt_config_from_original"]
