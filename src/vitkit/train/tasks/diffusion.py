"""`vitkit train --task diffusion`: a class-conditional DiT (Peebles & Xie 2022) on an ImageFolder, on the one
training engine.

Each step draws a timestep per image uniformly from the 1,000 training steps and minimises DiT's loss: the MSE
of the predicted noise plus the variational bound that trains the learned variance (`diffusion.training_losses`).
Class labels come from the folder names; the model drops them with its `class_dropout_prob` (0.1) so that it
also learns the unconditional model classifier-free guidance needs. Validation computes the same loss at fixed,
seeded timesteps and noise, so epochs compare like with like and the lower loss selects the exported weights
(the EMA weights, as DiT samples from, win as soon as they are better). After the last epoch the run directory
gets `samples.png`, one row of guided samples per class, drawn from the exported model.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, default_collate

from ...errors import ConfigError
from ...inference.dit import image_data_config, vae_factor
from ...utils.random import Rng
from ..engine import StepContext, all_reduce_metrics

log = logging.getLogger("vitkit")

DEFAULT_MODEL = "dit_nano_patch4_32"
GRID_PER_CLASS = 8  # samples per class in the run's samples.png
GRID_MAX_CLASSES = 10
GRID_STEPS = 50  # DDIM steps for samples.png (the sample command defaults to DiT's 250 DDPM steps)
GRID_CFG_SCALE = 4.0


class WithIndex(Dataset):
    """(x, y) items as (x, y, index): the validation loss draws each image's timestep and noise from its index."""

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i: int) -> tuple[Any, Any, int]:
        x, y = self.dataset[i]
        return x, y, i


class DiffusionTask:
    name = "diffusion"
    primary_metric = "val_loss"
    lower_is_better = True
    head_prefixes: tuple[str, ...] = ()

    def __init__(self, *, classes: list[str], diffusion: Any, augment_rng: Rng | None = None,
                 eval_seed: int = 1234, vae: nn.Module | None = None, latent_scale: float | None = None) -> None:
        self.classes = list(classes)
        self.diffusion = diffusion
        self.augment_rng = augment_rng
        self.eval_seed = eval_seed
        self.vae, self.latent_scale = vae, latent_scale
        if vae is not None:
            vae.requires_grad_(False).eval()

    @torch.no_grad()
    def to_model_space(self, x: torch.Tensor, *, sample: bool) -> torch.Tensor:
        """Pixels (normalised to [-1, 1]) -> what the DiT diffuses: the pixels themselves, or VAE latents times
        latent_scale (a draw from the encoder's posterior in training, as DiT's train.py; its mean in eval)."""
        if self.vae is None:
            return x
        self.vae.to(x.device)
        dist = self.vae.encode(x).latent_dist
        z = dist.sample() if sample else dist.mean
        return z * self.latent_scale

    def collate(self, items: list[Any]) -> Any:
        return default_collate(items)

    def reseed_data(self, seed: int) -> None:
        if self.augment_rng is not None:
            self.augment_rng.reseed(seed)

    def train_step(self, model: nn.Module, batch: Any, ctx: StepContext) -> tuple[torch.Tensor, dict]:
        x, y = batch
        x, y = x.to(ctx.device, non_blocking=True), y.to(ctx.device, non_blocking=True)
        x = self.to_model_space(x, sample=True)
        t = torch.randint(0, self.diffusion.num_timesteps, (x.shape[0],), device=ctx.device)
        terms = self.diffusion.training_losses(model, x, t, model_kwargs={"y": y})
        return terms["loss"].float().mean(), {"mse": terms["mse"].detach().float().mean(),
                                              "vb": terms["vb"].detach().float().mean()}

    def eval_draws(self, index: torch.Tensor, shape: tuple[int, ...]) -> tuple[torch.Tensor, torch.Tensor]:
        """The timestep and noise of validation image `index`: a function of the image alone, so the validation
        loss does not depend on batch size, order or the number of processes."""
        ts, noises = [], []
        for i in index.tolist():
            g = torch.Generator().manual_seed(self.eval_seed * 1_000_003 + i)
            ts.append(torch.randint(0, self.diffusion.num_timesteps, (1,), generator=g))
            noises.append(torch.randn(shape, generator=g))
        return torch.cat(ts), torch.stack(noises)

    @torch.no_grad()
    def evaluate(self, model: nn.Module, loader: DataLoader, ctx: StepContext) -> dict[str, Any]:
        """The training loss on the validation images, each at its own fixed timestep and noise (`eval_draws`),
        so that two epochs or two weight sets are compared on the same draws. The loader yields (x, y, index)."""
        sums = {"loss": 0.0, "mse": 0.0, "vb": 0.0, "count": 0.0}
        for x, y, index in loader:
            x, y = self.to_model_space(x.to(ctx.device), sample=False), y.to(ctx.device)
            t, noise = self.eval_draws(index, tuple(x.shape[1:]))
            with ctx.autocast():
                terms = self.diffusion.training_losses(model, x, t.to(ctx.device), model_kwargs={"y": y},
                                                       noise=noise.to(ctx.device))
            for k in ("loss", "mse", "vb"):
                sums[k] += terms[k].double().sum().item()
            sums["count"] += x.shape[0]
        sums = all_reduce_metrics(sums, ctx)
        n = max(sums.pop("count"), 1)
        return {"val_loss": sums["loss"] / n, "val_mse": sums["mse"] / n, "val_vb": sums["vb"] / n}

    def export(self, model: nn.Module, out_dir: Path, metrics: dict[str, Any]) -> None:
        model.save_pretrained(out_dir)

    def finish(self, run_dir: Path) -> None:
        """`samples.png`: GRID_PER_CLASS guided samples for each of the first GRID_MAX_CLASSES classes."""
        from ...diffusion.sampling import draw_images
        from ...registry import from_pretrained
        from ...utils.viz import save_sample_grid

        try:
            model = from_pretrained(run_dir / "model")
            n = min(len(self.classes), GRID_MAX_CLASSES)
            labels = [c for c in range(n) for _ in range(GRID_PER_CLASS)]
            images = draw_images(model, labels, batch_size=len(labels), cfg_scale=GRID_CFG_SCALE, steps=GRID_STEPS,
                                 method="ddim", vae=self.vae)  # the VAE this run trained with
            save_sample_grid(images, run_dir / "samples.png", ncol=GRID_PER_CLASS, row_labels=self.classes[:n])
        except (OSError, ValueError) as e:  # a picture must never fail a finished run
            log.warning("could not draw samples.png: %s", e)


def setup(*, task: str, data: Path, model: str, pretrained: str | None, init_from: str | None,
          img_size: int | None, cfg: Any, net: nn.Module | None, skip_bad_images: bool) -> tuple:
    """(model, train set, val set, task, resolved recipe) for `--task diffusion` on an ImageFolder (or the CIFAR /
    MNIST folders classification reads). `net` is the model rebuilt from a checkpoint when resuming."""
    from ...data.classification import load_classification_data, peek_dataset
    from ...data.transforms import EvalTransform, TrainTransform
    from ...diffusion.gaussian import create_diffusion
    from ...diffusion.sampling import config_vae
    from ...models.dit import DiT
    from ..config import resolve_diffusion_recipe

    if init_from:
        raise ConfigError("--init-from initialises a ViLT's encoder; to fine-tune a DiT pass it as --model or "
                          "--pretrained")
    classes, num_train, data_chans = peek_dataset(data)
    if net is None:
        net = build_dit(model, pretrained=pretrained, classes=classes, in_chans=data_chans, img_size=img_size,
                        vae=cfg.vae)
    if not isinstance(net, DiT):
        raise ConfigError(f"--task diffusion trains a DiT; {model!r} is a {type(net).__name__}")
    c = net.config
    if list(c.labels or []) != list(classes) and len(classes) != c.num_classes:
        raise ConfigError(f"the model has {c.num_classes} classes, the data {len(classes)}")
    vae = config_vae(c, trust_vae=cfg.trust_vae or c.vae == cfg.vae)  # the user's own --vae is trusted
    cfg = resolve_diffusion_recipe(cfg, num_train=num_train, in_chans=3 if vae is not None else c.in_channels,
                                   pretrained=bool(pretrained) or model not in _registered())
    data_cfg = image_data_config(c, vae)
    augment_rng = Rng(torch.Generator().manual_seed(cfg.seed))
    shift = {"none": 0, "shift": max(1, round(c.input_size / 8)), "rrc": None}[cfg.crop]
    train_tf = TrainTransform(data_cfg, hflip=cfg.hflip, randaugment=None if cfg.randaugment == "none" else
                              cfg.randaugment, re_prob=cfg.random_erasing, generator=augment_rng, shift=shift)
    ds = load_classification_data(data, data_cfg, train_transform=train_tf, eval_transform=EvalTransform(data_cfg),
                                  skip_bad_images=skip_bad_images)
    for w in ds.warnings:
        log.warning("%s", w)
    log.info("%s", ds.summary())
    diffusion = create_diffusion(timestep_respacing=None, learn_sigma=c.learn_sigma)
    task_obj = DiffusionTask(classes=list(ds.classes), diffusion=diffusion, augment_rng=augment_rng, vae=vae,
                             latent_scale=c.latent_scale)
    return net, ds.train, WithIndex(ds.val), task_obj, cfg


def _registered() -> list[str]:
    from ...registry import list_models

    return list_models()


def build_dit(spec: str, *, pretrained: str | None, classes: list[str], in_chans: int,
              img_size: int | None, vae: str | None = None) -> nn.Module:
    """A registered DiT name (random init, or `pretrained` weights) or any from_pretrained source. From scratch
    the model takes the data's channels and classes; a pretrained DiT keeps its trunk and gets a fresh label
    table when the number of classes differs from its own."""
    from ...models.dit import DiTConfig
    from ...registry import create_model, from_pretrained, get_config, model_entry

    labels = tuple(classes)
    if spec in _registered() and not isinstance(model_entry(spec).config, DiTConfig):
        raise ConfigError(f"--task diffusion trains a DiT; {spec!r} is not one (see `vitkit models 'dit*'` and "
                          "`vitkit models 'DiT*'`)")
    if spec in _registered() and not pretrained:
        overrides: dict[str, Any] = {"num_classes": len(classes), "labels": labels, "in_channels": in_chans,
                                     "mean": (0.5,) * in_chans, "std": (0.5,) * in_chans}
        if img_size:
            overrides["input_size"] = img_size
        if vae:  # latent space: the VAE's channels and scale, a grid `factor` times smaller than the images
            from ...diffusion.sampling import load_vae

            autoencoder = load_vae(vae)
            factor, channels = vae_factor(autoencoder), autoencoder.config.latent_channels
            size = img_size or get_config(spec).input_size * factor
            if size % factor:
                raise ConfigError(f"--img-size {size} is not a multiple of the VAE's downsampling factor {factor}")
            overrides.update(in_channels=channels, input_size=size // factor, mean=(0.0,) * channels,
                             std=(1.0,) * channels, vae=vae,
                             latent_scale=float(getattr(autoencoder.config, "scaling_factor", 0.18215)))
        return create_model(spec, **overrides).train()
    if vae:
        raise ConfigError("--vae applies to a DiT trained from scratch; a pretrained DiT keeps its own "
                          "(config.vae)")
    source, name = (pretrained, spec) if pretrained else (spec, None)
    overrides = {"num_classes": len(classes), "labels": labels}  # a label table of another size starts fresh
    net = from_pretrained(source, model=name, **overrides)
    if img_size and img_size != net.config.input_size:
        raise ConfigError(f"--img-size {img_size} differs from the pretrained DiT's input size "
                          f"{net.config.input_size}")
    return net.train()
