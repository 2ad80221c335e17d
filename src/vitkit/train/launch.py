"""`vitkit train`: turn command-line choices into a model, data, a task and a Trainer — and back again for
`--resume RUN_DIR`, which rebuilds all of it from the checkpoint alone."""

from __future__ import annotations

import logging
from dataclasses import asdict, fields, replace
from pathlib import Path
from typing import Any

import torch

from ..config import config_from_dict
from ..errors import ConfigError, VitkitError
from ..registry import MODEL_TYPES, create_model, from_pretrained, list_models
from .config import TASKS, TrainConfig, resolve_recipe
from .engine import Trainer
from .run_dir import (  # noqa: F401  (RUN_FILES, prepare_run_dir: re-exported, they used to live here)
    RUN_FILES,
    RunDirectory,
    data_fingerprint,
    env_rank,
    prepare_run_dir,
    reconcile_resume,
    refuse_file_in_the_way,
)
from .state import STATE_FILE, load_state

log = logging.getLogger("vitkit")

DEFAULT_MODELS = {"classification": "vit_nano_patch4_32", "vqa": "vilt_nano_patch8_64",
                  "pretrain": "vilt_nano_patch8_64", "retrieval": "vilt_nano_patch8_64", "nlvr2": "vilt_nano_patch8_64",
                  "diffusion": "dit_nano_patch4_32"}


def build_model(spec: str | None, *, task: str, num_classes: int, labels: list[str], in_chans: int,
                img_size: int | None, pretrained: str | None, drop_path: float) -> torch.nn.Module:
    """A registered name (random init, or `pretrained` weights), or any from_pretrained source."""
    overrides: dict[str, Any] = {"num_classes": num_classes, "labels": tuple(labels), "drop_path_rate": drop_path}
    if img_size:
        overrides["img_size"] = img_size
    name = spec or DEFAULT_MODELS[task]
    registered = name in list_models()
    if pretrained:
        model = from_pretrained(pretrained, model=name if registered else None, **overrides)
    elif registered:  # from scratch: take the data's channels (grey data trains a 1-channel stem)
        overrides.update(in_chans=in_chans, mean=(0.5,) * in_chans, std=(0.5,) * in_chans)
        model = create_model(name, **overrides)
    else:
        model = from_pretrained(name, **overrides)
    return model.train()


def run_train(
    *, task: str | None, data: Path | None, out: Path, model: str | None = None, pretrained: str | None = None,
    img_size: int | None = None, resume: bool = False, overwrite: bool = False, skip_bad_images: bool = False,
    init_from: str | None = None, cfg: TrainConfig | None = None, changes: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Train (or with `resume`, continue the run in `out`); returns the best validation metrics.

    With `resume`, the run's own task, data and recipe are used; `changes` holds the options given alongside
    (name -> value, e.g. {"epochs": 50}), checked by `vitkit.train.run_dir.reconcile_resume`: the ones that may
    change are applied and logged, others refused. The run directory is locked for the whole run
    (`RunDirectory`); under torchrun only rank 0 prepares it."""
    out = Path(out)
    if resume and overwrite:
        raise ConfigError("--resume continues a run and --overwrite deletes it: pass one of them")
    refuse_file_in_the_way(out)
    if resume and not (out / STATE_FILE).is_file():
        raise VitkitError(f"{out} holds no {STATE_FILE} to resume from")
    saved = load_state(out) if resume else None
    run_args: dict[str, Any] = {}
    if saved is not None:
        resumed = reconcile_resume(saved, changes or {}, out)
        task, data, skip_bad_images, cfg, run_args = (resumed.task, resumed.data, resumed.skip_bad_images,
                                                      resumed.cfg, resumed.run_args)
    cfg = cfg or TrainConfig()
    task = task or "classification"
    if task not in TASKS:
        raise ConfigError(f"unknown task {task!r}; available: {', '.join(TASKS)}")
    if data is None:
        raise ConfigError("--data is required")
    data = Path(data)
    if not data.exists():
        raise VitkitError(f"data directory not found: {data}")
    if saved is None:  # what the run starts with, so that --resume can check it later
        run_args = {"task": task, "data": str(data.resolve()), "skip_bad_images": skip_bad_images, "model": model,
                    "pretrained": pretrained, "img_size": img_size, "init_from": init_from,
                    "data_fingerprint": data_fingerprint(data)}
    with RunDirectory(out, resume=saved is not None, overwrite=overwrite, is_main=env_rank() == 0):
        torch.manual_seed(cfg.seed)  # the initial weights are part of the run's seed
        setup = _setup_classification if task == "classification" else _setup_task_module
        net, train_set, val_set, task_obj, resolved = setup(
            task=task, data=data, out=out, model=model, pretrained=pretrained, init_from=init_from,
            img_size=img_size, cfg=cfg, saved=saved, skip_bad_images=skip_bad_images)
        trainer = Trainer(task_obj, net, train_set, val_set, resolved, out, run_args=run_args,
                          resume=saved is not None, saved_config=asdict(cfg))
        return trainer.fit()


def _rebuild(saved: dict[str, Any]) -> torch.nn.Module:
    mtype = saved["model_type"]
    return MODEL_TYPES[mtype](config_from_dict(MODEL_TYPES[mtype].config_class, saved["model_config"]))


def _setup_classification(*, task: str, data: Path, out: Path, model: str | None, pretrained: str | None,
                          init_from: str | None, img_size: int | None, cfg: TrainConfig, saved: dict | None,
                          skip_bad_images: bool) -> tuple:
    from ..data.classification import load_classification_data, peek_dataset
    from ..data.mixup import Mixup
    from ..data.transforms import DataConfig
    from ..utils.random import Rng
    from .tasks.classification import ClassificationTask

    if init_from:
        raise ConfigError("--init-from initialises a ViLT's encoder; for classification use --pretrained")
    classes, num_train, data_chans = peek_dataset(data)
    if saved is not None:
        net = _rebuild(saved)
    else:
        in_chans = 3 if pretrained or (model and model not in list_models()) else data_chans
        net = build_model(model, task=task, num_classes=len(classes), labels=classes, in_chans=in_chans,
                          img_size=img_size, pretrained=pretrained, drop_path=cfg.drop_path)
    data_cfg = DataConfig.from_model(net)
    augment_rng = Rng(torch.Generator().manual_seed(cfg.seed))
    cfg = resolve_recipe(cfg, num_train=num_train, in_chans=data_cfg.in_chans, img_size=max(data_cfg.size_hw))
    ds = load_classification_data(
        data, data_cfg, scale=(cfg.crop_scale, 1.0) if cfg.crop_scale else None,
        ratio=(1.0, 1.0) if cfg.crop_scale == 1.0 else (3 / 4, 4 / 3), hflip=cfg.hflip,
        randaugment=None if cfg.randaugment == "none" else cfg.randaugment, re_prob=cfg.random_erasing,
        generator=augment_rng, skip_bad_images=skip_bad_images,
        shift=max(1, round(max(data_cfg.size_hw) / 8)) if cfg.crop == "shift" else (0 if cfg.crop == "none" else None),
    )
    if list(ds.classes) != list(net.config.labels or ds.classes):
        raise VitkitError(f"the model's classes {list(net.config.labels)[:5]}... differ from the data's "
                          f"{ds.classes[:5]}...")
    for w in ds.warnings:
        log.warning("%s", w)
    log.info("%s", ds.summary())
    mixup = None
    if cfg.mixup > 0 or cfg.cutmix > 0:
        mixup = Mixup(num_classes=len(ds.classes), mixup_alpha=cfg.mixup, cutmix_alpha=cfg.cutmix,
                      prob=cfg.mixup_prob, label_smoothing=cfg.label_smoothing,
                      generator=torch.Generator().manual_seed(cfg.seed + 1))
    task_obj = ClassificationTask(classes=ds.classes, label_smoothing=cfg.label_smoothing, mixup=mixup,
                                  augment_rng=augment_rng, run_dir=out)
    return net, ds.train, ds.val, task_obj, cfg


def _setup_task_module(*, task: str, data: Path, out: Path, model: str | None, pretrained: str | None,
                       init_from: str | None, img_size: int | None, cfg: TrainConfig, saved: dict | None,
                       skip_bad_images: bool) -> tuple:
    """The vision-language and diffusion tasks: each module's `setup` reads its data and builds (model, train
    set, val set, task, resolved recipe); a resumed run rebuilds the model from the checkpoint's config."""
    from .tasks import diffusion, nlvr2, pretrain, vqa

    module = {"vqa": vqa, "pretrain": pretrain, "retrieval": pretrain, "nlvr2": nlvr2, "diffusion": diffusion}[task]
    return module.setup(task=task, data=data, model=model or DEFAULT_MODELS[task], pretrained=pretrained,
                        init_from=init_from, img_size=img_size, cfg=cfg,
                        net=_rebuild(saved) if saved is not None else None, skip_bad_images=skip_bad_images)


def train_config_from_args(ns: Any) -> TrainConfig:
    values = {f.name: getattr(ns, f.name) for f in fields(TrainConfig) if getattr(ns, f.name, None) is not None}
    return replace(TrainConfig(), **values)
