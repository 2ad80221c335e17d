"""Gaussian diffusion (Ho et al. 2020; the learned variance and respacing of Nichol & Dhariwal 2021, as DiT
uses them): schedules, losses, DDPM / DDIM sampling and classifier-free guidance (`gaussian`), and drawing
images from a DiT with it (`sampling`). Independent of any model class."""

from .gaussian import (
    GaussianDiffusion,
    approx_standard_normal_cdf,
    create_diffusion,
    discretized_gaussian_log_likelihood,
    linear_beta_schedule,
    mean_flat,
    normal_kl,
    space_timesteps,
)
from .sampling import KNOWN_VAES, config_vae, draw_images, load_vae, sample, to_pixels

__all__ = [
    "KNOWN_VAES",
    "GaussianDiffusion",
    "approx_standard_normal_cdf",
    "config_vae",
    "create_diffusion",
    "discretized_gaussian_log_likelihood",
    "draw_images",
    "linear_beta_schedule",
    "load_vae",
    "mean_flat",
    "normal_kl",
    "sample",
    "space_timesteps",
    "to_pixels",
]
