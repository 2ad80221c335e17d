"""Drawing images from a DiT with `vitkit.diffusion.gaussian`: `sample(model, labels)` as the official sample.py
draws them (classifier-free guidance, DDPM or DDIM, respaced steps, seeded), `to_pixels` to uint8 images
(through Stable Diffusion's VAE for latent models), `draw_images` for many labels in seeded chunks, and
`load_vae` (diffusers imported only there)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from ..errors import ConfigError, VitkitError
from .gaussian import Progress, create_diffusion


def sample(model: torch.nn.Module, labels: Sequence[int] | torch.Tensor, *, cfg_scale: float = 4.0,
           steps: int | str = 250, method: str = "ddpm", seed: int = 0, device: torch.device | str | None = None,
           guidance_channels: int | None = None, progress: Progress | None = None, eta: float = 0.0,
           clip_denoised: bool | None = None, num_train_steps: int = 1000) -> torch.Tensor:
    """Class-conditional samples [N, C, H, W] from a DiT, in model space (latents for a VAE model; see
    to_pixels), as the official sample.py draws them.

    cfg_scale > 1 (or any value but 1) doubles the batch with the null label and guides with
    `model.forward_with_cfg` (guidance_channels as there: None guides every noise channel, 3 reproduces the
    official code); cfg_scale == 1 runs the conditional model alone. `steps`: respaced sampling steps of the
    `num_train_steps` process. method "ddpm" (ancestral) or "ddim" (with `eta`). `seed` seeds a torch.Generator
    on `device` (default: the model's; the model is moved there) that draws all the noise. clip_denoised
    (default: True for pixel-space models normalised to [-1, 1], i.e. mean = std = 0.5, else False as the
    official latent sampler) clamps the x_0 prediction. The model is put in eval mode for the run and restored.
    """
    cfg = model.config
    if method not in ("ddpm", "ddim"):
        raise ConfigError(f"method must be 'ddpm' or 'ddim', got {method!r}")
    device = torch.device(device) if device is not None else next(model.parameters()).device
    model.to(device)
    y = torch.as_tensor(labels, dtype=torch.long, device=device).reshape(-1)
    n = len(y)
    if n == 0:
        raise VitkitError("sample() needs at least one label")
    if int(y.min()) < 0 or int(y.max()) >= cfg.num_classes:
        raise VitkitError(f"labels must be class ids in 0..{cfg.num_classes - 1}, got {y.tolist()}")
    guided = cfg_scale != 1
    if guided and not cfg.has_null_class:
        raise VitkitError(f"cfg_scale={cfg_scale} needs the null label, and this DiT has none "
                          "(class_dropout_prob=0); sample with cfg_scale=1")
    if clip_denoised is None:
        clip_denoised = not cfg.latent_space and all(m == 0.5 for m in cfg.mean) and all(s == 0.5 for s in cfg.std)
    diffusion = create_diffusion(steps, num_train_steps=num_train_steps, learn_sigma=cfg.learn_sigma)
    generator = torch.Generator(device=device).manual_seed(seed)
    side = cfg.input_size
    z = torch.randn((n, cfg.in_channels, side, side), generator=generator, device=device)
    if guided:
        z = torch.cat([z, z], dim=0)
        y = torch.cat([y, torch.full_like(y, cfg.num_classes)], dim=0)

        def model_fn(x: torch.Tensor, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
            return model.forward_with_cfg(x, t, y, cfg_scale, guidance_channels=guidance_channels)
    else:
        model_fn = model
    loop = diffusion.p_sample_loop if method == "ddpm" else diffusion.ddim_sample_loop
    extra = {"eta": eta} if method == "ddim" else {}
    was_training = model.training
    model.eval()
    try:
        out = loop(model_fn, z.shape, noise=z, clip_denoised=clip_denoised, model_kwargs={"y": y},
                   generator=generator, progress=progress, **extra)
    finally:
        model.train(was_training)
    return out[:n]


def to_pixels(model: torch.nn.Module, samples: torch.Tensor, *, vae: Any = None,
              trust_vae: bool = False) -> torch.Tensor:
    """Model-space samples -> uint8 images [N, H, W, C].

    Pixel-space models: x * std + mean (the config's), clamped to [0, 1]. Latent models (config.vae set, or a
    `vae` given: a diffusers AutoencoderKL, loaded from config.vae when not given, see `config_vae`): decoded
    from samples / latent_scale to [-1, 1], then mapped to [0, 1]. Rounding as torchvision's save_image."""
    cfg = model.config
    with torch.no_grad():
        if vae is not None or cfg.vae is not None:
            if cfg.latent_scale is None:
                raise ConfigError("decoding with a VAE needs the model's latent_scale (e.g. 0.18215)")
            if vae is None:
                vae = config_vae(cfg, device=samples.device, trust_vae=trust_vae)
            param = next(vae.parameters(), None)
            z = samples / cfg.latent_scale
            if param is not None:
                z = z.to(device=param.device, dtype=param.dtype)
            decoded = vae.decode(z)
            x = getattr(decoded, "sample", decoded).float()
            x = (x.clamp(-1, 1) + 1) / 2
        else:
            if cfg.latent_scale is not None:
                raise ConfigError("this DiT works on VAE latents but names no vae: pass vae=<AutoencoderKL>")
            mean = torch.tensor(cfg.mean, dtype=torch.float32, device=samples.device).view(1, -1, 1, 1)
            std = torch.tensor(cfg.std, dtype=torch.float32, device=samples.device).view(1, -1, 1, 1)
            x = samples.float() * std + mean
        x = x.clamp(0, 1).mul(255).add_(0.5).clamp_(0, 255).to(torch.uint8)
    return x.permute(0, 2, 3, 1).cpu()


def draw_images(model: torch.nn.Module, labels: Sequence[int], *, batch_size: int = 64, seed: int = 0,
                vae: Any = None, device: torch.device | str | None = None,
                progress: Callable[[int, int], None] | None = None, trust_vae: bool = False,
                **sample_kwargs: Any) -> np.ndarray:
    """uint8 images [N, H, W, C] of the class ids `labels`, drawn `batch_size` at a time (chunk i starting at
    label i seeded with `seed + i`, so a result does not depend on what else was drawn before it) and decoded
    with `to_pixels`; a latent model's VAE is loaded once from config.vae unless `vae` is given.
    `sample_kwargs` go to `sample` (cfg_scale, steps, method, guidance_channels, ...); `progress(done, total)`
    after each chunk."""
    if vae is None and model.config.vae is not None:
        vae = config_vae(model.config, device=device, trust_vae=trust_vae)
    labels = list(labels)
    chunks = []
    for i in range(0, len(labels), batch_size):
        x = sample(model, labels[i:i + batch_size], seed=seed + i, device=device, **sample_kwargs)
        chunks.append(to_pixels(model, x, vae=vae).numpy())
        if progress is not None:
            progress(min(i + batch_size, len(labels)), len(labels))
    return np.concatenate(chunks)


#: The VAEs a DiT's config.json may name and have loaded without the user's say-so: the two the official DiT
#: checkpoints were trained with (Peebles & Xie 2022, sample.py's --vae mse / ema).
KNOWN_VAES = ("stabilityai/sd-vae-ft-mse", "stabilityai/sd-vae-ft-ema")


def config_vae(config: Any, *, device: torch.device | str | None = None, trust_vae: bool = False) -> Any:
    """The VAE a latent DiT's config names (`config.vae`), or None for a pixel-space model.

    A checkpoint is data: its config.json must not choose what gets downloaded and run. So config.vae is loaded
    only when it is one of KNOWN_VAES, or when the user vouches for it with `trust_vae=True` (`--trust-vae`);
    otherwise a VitkitError says how to go on. A VAE the user names (`--vae`, `vae=`) is theirs and needs no
    check: pass it to `load_vae` directly."""
    source = config.vae
    if source is None:
        return None
    if not trust_vae and source not in KNOWN_VAES:
        raise VitkitError(
            f"the model's config names the VAE {source!r}, which is not one vitkit loads on a checkpoint's word "
            f"({', '.join(KNOWN_VAES)}); pass the VAE yourself with --vae HUB_ID_OR_DIR, or --trust-vae if you "
            "trust this checkpoint (Python: vae=load_vae(...) or trust_vae=True)")
    return load_vae(source, device=device)


def load_vae(source: str, device: torch.device | str | None = None) -> Any:
    """A diffusers AutoencoderKL from a hub id or directory, in eval mode (diffusers imported only here)."""
    try:
        from diffusers.models import AutoencoderKL
    except ImportError:
        raise VitkitError(f"decoding latents with the VAE {source!r} needs the diffusers package "
                          "(pip install diffusers)") from None
    try:
        vae = AutoencoderKL.from_pretrained(source)
    except Exception as e:  # hub errors, missing files, offline: many types, all mean "no VAE"
        raise VitkitError(f"could not load the VAE {source!r} ({type(e).__name__}: {e})") from None
    return vae.to(device or "cpu").eval()


__all__ = ["KNOWN_VAES", "config_vae", "draw_images", "load_vae", "sample", "to_pixels"]
