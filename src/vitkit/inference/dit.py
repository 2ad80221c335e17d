"""How good a DiT's samples are, and how its images are read (`image_data_config`).

- `judge_samples`: draw `per_class` guided samples of every class and let an independent classifier (e.g. the
  digits ViT that `vitkit train --task classification` makes) say how often it recognises the requested class;
  plus the Frechet distance between real and generated images in that classifier's feature space (its
  pre-logits: the [CLS] output after the final norm), the FID recipe (Heusel et al. 2017) with a domain
  classifier in place of Inception. For scale, the distance between the real train and val images is reported
  beside it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..errors import VitkitError
from ..utils.device import resolve_device


def check_dit(model: nn.Module) -> None:
    """Raise VitkitError unless `model` is a DiT (the diffusion helpers take nothing else)."""
    from ..models.dit import DiT

    if not isinstance(model, DiT):
        raise VitkitError(f"expected a DiT, got a {type(model).__name__}")


@torch.no_grad()
def classify_images(classifier: nn.Module, images: np.ndarray, *, batch_size: int = 256,
                    device: str | torch.device = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """(logits [N, K], pre-logit features [N, D]) of a vitkit ViT for uint8 images [N, H, W, C], preprocessed as
    the classifier expects (its own size, channels, mean and std)."""
    from PIL import Image

    from ..data.transforms import DataConfig, EvalTransform

    classifier = classifier.to(device).eval()
    tf = EvalTransform(DataConfig.from_model(classifier))
    logits, feats = [], []
    for i in range(0, len(images), batch_size):
        chunk = images[i:i + batch_size]
        pils = [Image.fromarray(im[..., 0] if im.shape[-1] == 1 else im) for im in chunk]
        x = torch.stack([tf(p) for p in pils]).to(device)
        f = classifier.forward_head(classifier.forward_features(x), pre_logits=True)
        feats.append(f.float().cpu())
        logits.append(classifier.head(f).float().cpu())
    return torch.cat(logits), torch.cat(feats)


def frechet_distance(a: torch.Tensor, b: torch.Tensor) -> float:
    """||mu_a - mu_b||^2 + tr(S_a + S_b - 2 (S_a S_b)^(1/2)) between Gaussians fitted to features a [N, D] and
    b [M, D], in float64; the trace of the matrix square root comes from the eigenvalues of
    S_a^(1/2) S_b S_a^(1/2) (symmetric, so no complex parts to discard)."""
    a, b = a.double(), b.double()
    if a.shape[0] < 2 or b.shape[0] < 2:
        raise VitkitError("the Frechet distance needs at least 2 samples on each side")
    mu_a, mu_b = a.mean(0), b.mean(0)
    cov_a, cov_b = torch.cov(a.T), torch.cov(b.T)
    w, v = torch.linalg.eigh(cov_a)
    root_a = (v * w.clamp_min(0).sqrt()) @ v.T
    middle = torch.linalg.eigvalsh(root_a @ cov_b @ root_a).clamp_min(0).sqrt().sum()
    return float((mu_a - mu_b).square().sum() + cov_a.trace() + cov_b.trace() - 2 * middle)


def _real_images(data_dir: Path, split: str, model: nn.Module, vae: nn.Module | None) -> tuple[np.ndarray, list[str]]:
    """Every image of an ImageFolder split as the DiT's training saw it (size, channels), uint8 [N, H, W, C],
    with labels."""
    from PIL import Image

    from ..data.imagefolder import scan_image_folder
    from ..data.transforms import EvalTransform

    scan = scan_image_folder(data_dir)
    tf = EvalTransform(image_data_config(model.config, vae))
    items = scan.train if split == "train" else scan.val
    arrays, labels = [], []
    for path, label in items:
        with Image.open(path) as im:
            arr = np.asarray(tf.crop(im))
        arrays.append(arr[..., None] if arr.ndim == 2 else arr)
        labels.append(scan.classes[label])
    return np.stack(arrays), labels


def judge_samples(model: nn.Module, classifier: nn.Module, *, per_class: int = 100, cfg_scale: float = 4.0,
                  steps: int = 50, method: str = "ddim", seed: int = 0, data_dir: str | Path | None = None,
                  batch_size: int = 500, device: str = "auto", guidance_channels: int | None = None,
                  progress: Callable[[int, int], None] | None = None,
                  classes: Sequence[str] | None = None, vae: Any = None, trust_vae: bool = False) -> dict[str, Any]:
    """Draw samples of each class from a DiT and ask a classifier what they show (`vitkit eval --classifier`).

    Args:
        model: the DiT.
        classifier: a vitkit ViT trained on the same class names (`config.labels`).
        per_class: samples drawn per class.
        cfg_scale: classifier-free guidance scale (1: the conditional model alone).
        steps: sampling steps (respaced from the training process).
        method: "ddim" or "ddpm".
        seed: seeds the sampler's noise, so a judgement is reproducible.
        data_dir: an ImageFolder with the real images; given, the Frechet distances are computed too.
        batch_size: images drawn per sampling call.
        device: "auto", "cpu", "cuda", ...
        guidance_channels: the noise channels guidance applies to (None: all; 3 as the official DiT code).
        progress: called as progress(done, total) while drawing.
        classes: the class names to draw (None: all the DiT's classes).
        vae: the VAE of a latent DiT (default: the one its config names, see `diffusion.config_vae`).
        trust_vae: load a VAE the config names even when it is not one of the official DiT VAEs.

    Returns:
        `sample_accuracy` (the fraction the classifier labels as the requested class),
        `sample_accuracy_per_class`, with `data_dir` `frechet_distance` (generated vs the real val images) and
        `frechet_distance_train_val` (real train vs real val, the floor to read it against), plus the images
        (`samples`, uint8) and their `sample_labels`.
    """
    from ..diffusion.sampling import config_vae, draw_images

    check_dit(model)
    c = model.config
    names = list(c.labels) if c.labels else [str(i) for i in range(c.num_classes)]
    known = list(classifier.config.labels or [])
    chosen = list(classes) if classes else names
    missing = [n for n in chosen if n not in known]
    if missing:
        raise VitkitError(f"the classifier has no class {missing[0]!r} (its classes: {known[:10]}); judge a DiT "
                          "with a classifier trained on the same class names")
    unknown = [n for n in chosen if n not in names]
    if unknown:
        raise VitkitError(f"the DiT has no class {unknown[0]!r}; its classes: {names[:10]}")
    dev = resolve_device(device)
    model = model.to(dev).eval()
    if vae is None:  # loaded once: decodes samples, sizes the real images
        vae = config_vae(c, device=dev, trust_vae=trust_vae)
    wanted = [names.index(n) for n in chosen for _ in range(per_class)]
    images = draw_images(model, wanted, batch_size=batch_size, seed=seed, vae=vae, device=dev, progress=progress,
                         cfg_scale=cfg_scale, steps=steps, method=method, guidance_channels=guidance_channels)
    logits, feats = classify_images(classifier, images, device=dev)
    predicted = [known[j] for j in logits.argmax(-1).tolist()]
    requested = [names[j] for j in wanted]
    hits = np.array([p == r for p, r in zip(predicted, requested)])
    per = {n: float(hits[[r == n for r in requested]].mean()) for n in chosen}
    out: dict[str, Any] = {"sample_accuracy": float(hits.mean()), "sample_accuracy_per_class": per,
                           "num_generated": len(wanted), "cfg_scale": cfg_scale, "steps": steps, "method": method,
                           "samples": images, "sample_labels": requested}
    if data_dir is not None:
        real_val, _ = _real_images(Path(data_dir), "val", model, vae)
        real_train, _ = _real_images(Path(data_dir), "train", model, vae)
        _, f_val = classify_images(classifier, real_val, device=dev)
        _, f_train = classify_images(classifier, real_train, device=dev)
        out["frechet_distance"] = frechet_distance(feats, f_val)
        out["frechet_distance_train_val"] = frechet_distance(f_train, f_val)
        out["num_real_val"] = len(real_val)
    return out


def image_data_config(config: Any, vae: nn.Module | None = None) -> Any:
    """How a DiT's training images are read: its own size, channels, mean and std in pixel space; with a VAE,
    the images the VAE encodes (its channels, [-1, 1], the latent grid times its downsampling factor)."""
    from ..data.transforms import DataConfig

    if vae is None:
        return DataConfig(img_size=config.input_size, in_chans=config.in_channels, mean=config.mean, std=config.std,
                          crop_pct=1.0, interpolation="bicubic")
    chans = vae.config.in_channels
    return DataConfig(img_size=config.input_size * vae_factor(vae), in_chans=chans, mean=(0.5,) * chans,
                      std=(0.5,) * chans, crop_pct=1.0, interpolation="bicubic")


def vae_factor(vae: nn.Module) -> int:
    """How many pixels one latent cell covers per side: 2 per down block after the first (8 for SD's VAE)."""
    return 2 ** (len(vae.config.block_out_channels) - 1)
