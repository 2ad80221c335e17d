"""Gaussian diffusion (Ho et al. 2020; the learned variance and respacing of Nichol & Dhariwal 2021, as DiT
uses them): schedules, losses, DDPM / DDIM sampling and classifier-free guidance. Independent of any model class."""

from .gaussian import (
    KNOWN_VAES,
    GaussianDiffusion,
    approx_standard_normal_cdf,
    config_vae,
    create_diffusion,
    discretized_gaussian_log_likelihood,
    draw_images,
    linear_beta_schedule,
    load_vae,
    mean_flat,
    normal_kl,
    sample,
    space_timesteps,
    to_pixels,
)

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
