"""`from_pretrained`: one entry point for every checkpoint source.

Sources: vitkit directories, Hugging Face transformers directories, timm files and timm hub directories,
Google JAX .npz files, original ViLT .ckpt and DiT .pt files, and `hf-hub:<org>/<name>`. Each foreign format
goes through a pure state_dict -> state_dict converter, then a strict load. Two adaptations are made on
purpose and logged: a learned position grid of another size is resampled (bicubic, as timm), and a classifier
head is dropped (left freshly initialised) when `num_classes` is overridden.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
from pathlib import Path
from typing import Any

import torch

from ..checkpoint.converters import hf_clip, open_clip
from ..checkpoint.hub import HUB_PREFIX, WEIGHT_FILES, download_from_hub, first_line
from ..checkpoint.io import (
    CONFIG_FILE,
    FORMAT,
    WEIGHTS_FILE,
    check_state_dict,
    load_weights,
    read_json,
    read_state_dict,
)
from ..config import config_from_dict, replace_config
from ..errors import CheckpointError, ConfigError, VitkitError, did_you_mean
from ..layers import resample_pos_embed
from ..models.clip import CLIPConfig
from ..models.dit import DiTConfig
from .presets import MODEL_TYPES, VIT_SIZES, build_model, get_config, list_models, model_entry

log = logging.getLogger("vitkit")



def create_model(name: str, *, init_from: Any = None, **overrides: Any) -> torch.nn.Module:
    """A randomly initialised model by registered name, e.g. `create_model("vit_base_patch16_224", num_classes=10)`.

    Args:
        name: a registered name (`vitkit.list_models()`).
        init_from: a pretrained ViT (anything `from_pretrained` reads, or a VisionTransformer) to initialise the
            vision encoder of models that have one (ViLT: `create_model("vilt_b32", init_from=...)`, as its
            pretraining starts). A bare timm file is read as the registered ViT of the encoder's size.
        overrides: config fields to change; an unknown one raises ConfigError naming the valid fields.
    """
    model = build_model(get_config(name, **overrides))
    if init_from is not None:
        if not hasattr(model, "init_encoder_from"):
            raise ConfigError(f"{name}: init_from applies to models with a pretrained ViT encoder (ViLT)")
        if isinstance(init_from, torch.nn.Module):
            model.init_encoder_from(init_from)
        else:
            src = str(init_from)
            bare_file = Path(src).expanduser().is_file() and not src.startswith(HUB_PREFIX)
            vit = from_pretrained(src, model=_vit_name_for(model.config) if bare_file else None)
            model.init_encoder_from(vit, where=src)
    return model


def _vit_name_for(config: Any) -> str:
    """The registered ViT whose encoder has this (ViLT) config's size, for reading a bare timm file."""
    size = next((s for s, dims in VIT_SIZES.items() if dims == (config.embed_dim, config.depth, config.num_heads)),
                None)
    name = f"vit_{size}_patch{config.patch_size}_{config.img_size}"
    if size is None or name not in list_models():
        raise CheckpointError("no registered ViT matches this ViLT's size; pass a vitkit ViT directory instead")
    return name


def from_pretrained(source: str | Path, model: str | None = None, **overrides: Any) -> torch.nn.Module:
    """Load a model with its weights, strictly, in eval mode.

    Args:
        source: a vitkit or Hugging Face directory, a timm weight file (.safetensors/.pth/.bin), a JAX .npz,
            an official DiT .pt, or `hf-hub:<org>/<name>` (downloaded with huggingface_hub).
        model: the registered architecture name, needed for bare weight files (timm, JAX); optional for DiT
            (sizes are read from the weights; the name supplies the number of heads).
        overrides: config fields to change, e.g. `num_classes=10` (drops the head) or `img_size=384`
            (resamples the position embeddings).
    """
    src = str(source)
    path = download_from_hub(src[len(HUB_PREFIX):]) if src.startswith(HUB_PREFIX) else Path(src).expanduser()
    if not (path.is_dir() or path.is_file()):
        hint = did_you_mean(src, list_models()) if "/" not in src and not Path(src).suffix else ""
        raise CheckpointError(f"checkpoint not found: {src}{hint}")
    with _malformed(f"{src} is malformed"):  # config.json / weights of an unexpected type or shape
        config, state_dict = _read_directory(path, model) if path.is_dir() else _read_file(path, model)
    if "num_classes" in overrides and overrides["num_classes"] != getattr(config, "num_classes", None):
        head_keys = [k for k in state_dict if k.startswith("head.")]
        if head_keys:
            log.info("dropping the checkpoint's classifier head (%s): num_classes overridden", ", ".join(head_keys))
            state_dict = {k: v for k, v in state_dict.items() if k not in head_keys}
        labels = getattr(config, "labels", None)
        if "labels" not in overrides and labels is not None and len(labels) != overrides["num_classes"]:
            overrides = {**overrides, "labels": None}  # the class names belonged to the dropped head
    old_config = config
    config = replace_config(config, **overrides)
    # A dry run on the meta device (no memory, no init) first: a config that cannot be built, or whose model
    # the weights do not fit (a config.json claiming depth 10^7 next to a 100 kB file), is refused before
    # anything is allocated. Past this check the real model is as large as the checkpoint (plus fresh heads).
    _check_plausible(old_config, src)
    _check_plausible(config, src)
    with _malformed(f"{src}: its config does not describe a model vitkit can build"), torch.device("meta"), _quiet():
        shell = build_model(config)
        shell_sd = _adapt(state_dict, shell, old_config, overrides)
    check_state_dict(shell, shell_sd, src)
    _check_allocation(shell, state_dict, src)
    net = build_model(config)
    with _malformed(f"{src} is malformed"):
        state_dict = _adapt(state_dict, net, old_config, overrides)
    load_weights(net, state_dict, source=src)
    return net.eval()


def _adapt(state_dict: dict[str, torch.Tensor], net: torch.nn.Module, old_config: Any,
           overrides: dict[str, Any]) -> dict[str, torch.Tensor]:
    """The checkpoint's weights fitted to `net`: changed heads (model-specific, logged), a resampled position
    grid, and the fresh head kept when num_classes is overridden."""
    if hasattr(net, "adapt_state_dict"):  # model-specific, logged adaptations to changed heads (ViLT)
        state_dict = net.adapt_state_dict(state_dict, old_config)
    state_dict = _fit_position_embedding(state_dict, net, old_config)
    if "num_classes" in overrides and not any(k.startswith("head.") for k in state_dict):
        # the fresh head keeps its init; everything else must match exactly
        state_dict = {**state_dict, **{k: v for k, v in net.state_dict().items() if k.startswith("head.")}}
    return state_dict


# Errors that, raised while reading a checkpoint or building the model its config describes, mean a config or
# weight file of an unexpected type, shape or value (never a reason to show a traceback).
_MALFORMED_ERRORS = (TypeError, ValueError, KeyError, IndexError, AttributeError, ArithmeticError, RuntimeError)
# Fields that multiply modules (not just tensor sizes, which cost nothing on the meta device): bounded so that
# even the dry run stays quick. Far above any published model (ViT-22B: depth 48).
_MAX_DEPTH = 1024
# Values the real model may hold beyond the checkpoint's (fresh heads, fixed tables): 512 MB of float32.
_MAX_FRESH = 1 << 27


@contextlib.contextmanager
def _malformed(what: str) -> Any:
    try:
        yield
    except ConfigError as e:  # a config.json value the model rejects (e.g. an unknown activation)
        raise CheckpointError(f"{what} ({e})") from e
    except VitkitError:
        raise
    except _MALFORMED_ERRORS as e:
        raise CheckpointError(f"{what} ({type(e).__name__}: {first_line(e)})") from e


@contextlib.contextmanager
def _quiet() -> Any:
    """No log lines from the dry run: the real build logs the same adaptations."""
    was = log.disabled
    log.disabled = True
    try:
        yield
    finally:
        log.disabled = was


def _check_allocation(shell: torch.nn.Module, state_dict: dict[str, torch.Tensor], src: str) -> None:
    """What the real model allocates beyond the checkpoint's own tensors (fresh heads, non-persistent buffers such
    as a sin-cos position table) must be modest: a config.json saying img_size 40000 must not take 60 GB."""
    have = sum(v.numel() for v in state_dict.values())
    need = sum(t.numel() for t in itertools.chain(shell.parameters(), shell.buffers()))
    if need - have > max(have, _MAX_FRESH):
        raise CheckpointError(f"{src}: the model its config describes needs {need / 1e6:,.0f}M values, the "
                              f"weights hold {have / 1e6:,.1f}M; is the config's img_size / num_classes right?")


def _check_plausible(config: Any, src: str) -> None:
    """Layer counts (which multiply modules, so even a dry run) must be integers in 0.._MAX_DEPTH."""
    stages = getattr(config, "backbone_layers", None) or ()
    counts = {"depth": getattr(config, "depth", None),
              **{f"backbone_layers[{i}]": n for i, n in enumerate(stages if isinstance(stages, tuple | list)
                                                                  else [stages])}}
    for field, n in counts.items():
        if n is not None and not (isinstance(n, int) and 0 <= n <= _MAX_DEPTH):
            raise CheckpointError(f"{src}: its config asks for {field}={n!r}; expected an integer in "
                                  f"0..{_MAX_DEPTH}")


# ------------------------------------------------------------------------------------------------ sources
def _read_directory(path: Path, model: str | None) -> tuple[Any, dict[str, torch.Tensor]]:
    cfg_path = path / CONFIG_FILE
    if not cfg_path.is_file() and (path / open_clip.CONFIG_FILE).is_file():  # an open_clip hub repository
        return _read_open_clip_directory(path, model)
    if not cfg_path.is_file():
        raise CheckpointError(f"{path} has no {CONFIG_FILE}; is it a vitkit, Hugging Face, open_clip or timm model "
                              "directory?")
    meta = read_json(cfg_path)
    if meta.get("format") == FORMAT:
        model_type = meta.get("model_type")
        if model_type not in MODEL_TYPES:
            raise CheckpointError(f"{cfg_path}: unknown vitkit model_type {model_type!r}")
        fields = meta.get("config", {})
        if not isinstance(fields, dict):
            raise CheckpointError(f"{cfg_path}: 'config' should be a JSON object, got {type(fields).__name__}")
        try:
            config = config_from_dict(MODEL_TYPES[model_type].config_class, fields)
        except ConfigError as e:
            raise CheckpointError(f"{cfg_path}: bad config ({e})") from None
        except _MALFORMED_ERRORS as e:  # a field of the wrong type or value, caught by arithmetic in __post_init__
            raise CheckpointError(f"{cfg_path}: bad config: a field has the wrong type or value "
                                  f"({type(e).__name__}: {e})") from None
        return config, read_state_dict(path / WEIGHTS_FILE)
    if meta.get("model_type") in hf_clip.MODEL_TYPES:  # transformers CLIPModel or one of its towers
        return hf_clip.read_hf_clip_directory(path, meta)
    if meta.get("model_type") == "vilt":  # Hugging Face transformers ViLT (any Vilt* head class)
        from ..checkpoint.converters.hf_vilt import read_hf_vilt_directory

        return read_hf_vilt_directory(path, meta)
    if "model_type" in meta:  # Hugging Face transformers
        from ..checkpoint.converters import hf

        return hf.read_hf_directory(path, meta)
    if "architecture" in meta:  # timm's hub layout: config.json names the architecture
        name = model or meta["architecture"]
        extra = {}
        if "num_classes" in meta:
            extra["num_classes"] = meta["num_classes"]
        pcfg = meta.get("pretrained_cfg", {})
        for key in ("mean", "std", "crop_pct", "interpolation"):
            if key in pcfg:
                extra[key] = tuple(pcfg[key]) if isinstance(pcfg[key], list) else pcfg[key]
        # timm creates the model with these (img_size, global_pool, depth, ...); ignoring them would build
        # another architecture, or silently resample a 384 grid to 224. vitkit models always take any size.
        for key, value in meta.get("model_args", {}).items():
            if key != "dynamic_img_size":
                extra[key] = tuple(value) if isinstance(value, list) else value
        config = _registered_config(name, **extra)
        from ..checkpoint.converters.timm import convert_timm_vit

        state_dict = convert_timm_vit(read_state_dict(_find_weights(path)))
        return _with_head_of(config, state_dict), state_dict
    raise CheckpointError(f"{cfg_path} is neither a vitkit, Hugging Face nor timm config")


def _read_file(path: Path, model: str | None) -> tuple[Any, dict[str, torch.Tensor]]:
    base = None if model is None else _registered_config(model)
    if path.suffix == ".ckpt":  # original ViLT (PyTorch Lightning)
        from ..checkpoint.converters.vilt_original import read_vilt_checkpoint

        return read_vilt_checkpoint(path, base)
    if path.suffix != ".npz":  # an official DiT .pt (recognised by its keys, or named by model=)
        from ..checkpoint.converters.dit import read_dit_file

        found = read_dit_file(path, base, known_heads=_dit_heads())
        if found is not None:
            return found
    if path.suffix != ".npz":  # an OpenAI / open_clip CLIP state dict (recognised by its keys)
        found = _read_open_clip_file(path, base)
        if found is not None:
            return found
    if base is None:
        raise _unnamed_architecture(path)
    config = base
    if path.suffix == ".npz":
        from ..checkpoint.converters.jax import read_jax_checkpoint

        return read_jax_checkpoint(path, config)
    from ..checkpoint.converters.timm import convert_timm_vit

    state_dict = convert_timm_vit(read_state_dict(path))
    return _with_head_of(config, state_dict), state_dict


def _read_open_clip_file(path: Path, base: Any, **fields: Any) -> tuple[Any, dict[str, torch.Tensor]] | None:
    """Config and state dict of an OpenAI / open_clip CLIP weight file, or None when it is not one (and model=
    does not name a CLIP)."""
    if base is not None and not isinstance(base, CLIPConfig):
        return None
    try:
        sd = read_state_dict(path)
    except CheckpointError:
        if base is None:
            return None
        raise
    if not open_clip.is_open_clip_state_dict(sd):
        if base is None:
            return None
        raise CheckpointError(f"{path} is not an OpenAI / open_clip CLIP state dict (no "
                              f"{' / '.join(open_clip.OPEN_CLIP_KEYS)}), but model= names a CLIP")
    state_dict = open_clip.convert_open_clip(sd)
    return open_clip.clip_config_from_state_dict(state_dict, base, **fields), state_dict


def _read_open_clip_directory(path: Path, model: str | None) -> tuple[Any, dict[str, torch.Tensor]]:
    """An open_clip hub repository: open_clip_config.json (heads, activation, preprocessing) + weights."""
    fields = open_clip.open_clip_config_fields(read_json(path / open_clip.CONFIG_FILE))
    weights = next((path / n for n in open_clip.WEIGHT_FILES if (path / n).is_file()), None)
    if weights is None:
        raise CheckpointError(f"{path} holds no open_clip weights ({' or '.join(open_clip.WEIGHT_FILES)})")
    found = _read_open_clip_file(weights, None if model is None else _registered_config(model), **fields)
    if found is None:
        raise CheckpointError(f"{weights} is not an open_clip ViT CLIP state dict")
    return found


# Suffixes of pictures, the most common wrong thing to pass as a model (the image readers live a layer up).
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".gif", ".bmp", ".webp", ".tif", ".tiff")


def _unnamed_architecture(path: Path) -> CheckpointError:
    """The error for a file that does not say what it holds: for a pickle, first whatever reading it reports (a
    refusal of code, a damaged file), since that is the real problem; else what vitkit expected instead."""
    expected = ("vitkit reads a model directory (config.json + weights, as written by save_pretrained, `vitkit "
                "train` or `vitkit convert`), a Hugging Face, timm or open_clip model directory, an official DiT "
                ".pt, an OpenAI / open_clip CLIP state dict, an original ViLT .ckpt, or hf-hub:ORG/NAME")
    if path.suffix.lower() not in (".safetensors", ".pth", ".pt", ".bin", ".ckpt", ".npz"):
        if path.suffix.lower() in IMAGE_SUFFIXES:
            return CheckpointError(f"{path} is an image, not a model; {expected}")
        read_state_dict(path)  # a refused or damaged pickle raises its own, precise error here
        return CheckpointError(f"{path} is not a model file vitkit recognises; {expected}")
    kind = "a JAX .npz" if path.suffix == ".npz" else "a bare weight file"
    if path.suffix != ".npz":
        read_state_dict(path)  # same: a pickle carrying code is reported as refused, not as "bare"
    return CheckpointError(
        f"{path} is {kind}, which does not say which architecture it holds; {expected}. To use it, name the "
        "architecture: `vitkit convert FILE DIR --model NAME` (Python: from_pretrained(FILE, model=NAME)), "
        "see `vitkit models`")


def _dit_heads() -> dict[int, int]:
    """Hidden size -> number of heads of the registered DiTs (official weights do not say)."""
    configs = (model_entry(n).config for n in list_models("DiT-*") + list_models("dit_*"))
    return {c.hidden_size: c.num_heads for c in configs if isinstance(c, DiTConfig)}


def _with_head_of(config: Any, state_dict: dict[str, torch.Tensor]) -> Any:
    """The checkpoint decides the head: its width (e.g. 21843 for in21k weights), or none at all."""
    head = state_dict.get("head.weight")
    num_classes = int(head.shape[0]) if head is not None else 0
    if num_classes == config.num_classes:
        return config
    return replace_config(config, num_classes=num_classes, labels=None)


def _registered_config(name: str, **extra: Any) -> Any:
    try:
        return get_config(name, **extra)
    except ConfigError as e:
        raise CheckpointError(f"{e}") from None


def _find_weights(path: Path) -> Path:
    for name in WEIGHT_FILES:
        if (path / name).is_file():
            return path / name
    raise CheckpointError(f"{path} holds no weights ({' or '.join(WEIGHT_FILES)})")


# ------------------------------------------------------------------------------------------- adaptations
def _fit_position_embedding(state_dict: dict[str, torch.Tensor], net: torch.nn.Module, old_config: Any) -> dict:
    """Resample a learned position grid saved for another image size to the model's grid."""
    key = "pos_embed"
    target = net.state_dict().get(key)
    if key not in state_dict or target is None or state_dict[key].shape == target.shape:
        return state_dict
    pe = state_dict[key]
    num_prefix = 0 if net.config.no_embed_class else net.num_prefix_tokens
    old_n = pe.shape[1] - num_prefix
    old_grid = _grid_of(old_config) if hasattr(old_config, "patch_size") else None
    if old_grid is None or old_grid[0] * old_grid[1] != old_n:
        side = round(old_n**0.5)
        if side * side != old_n:
            return state_dict  # not a square grid we can infer: let the strict check report the shape
        old_grid = (side, side)
    new_grid = net.patch_embed.grid_size
    if target.is_meta:  # the dry run: only the shape matters (and a config's grid may be far too large to fill)
        return {**state_dict, key: torch.empty_like(target)}
    log.info("resampling position embeddings from a %dx%d to a %dx%d grid", *old_grid, *new_grid)
    return {**state_dict, key: resample_pos_embed(pe, new_grid, old_grid, num_prefix=num_prefix)}


def _grid_of(config: Any) -> tuple[int, int] | None:
    """The patch grid a config's model is built for (hybrids round up at each stride-2 step, so ask the model)."""
    with torch.device("meta"):  # no memory, no init
        return tuple(build_model(config).patch_embed.grid_size)


__all__ = ["create_model", "from_pretrained"]
