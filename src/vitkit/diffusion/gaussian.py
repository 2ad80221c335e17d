"""Gaussian diffusion as DiT trains and samples it: Ho et al. 2020 (DDPM, https://arxiv.org/abs/2006.11239) with
Nichol & Dhariwal 2021's learned-range variance and hybrid loss (https://arxiv.org/abs/2102.09672), DDIM
sampling (Song et al. 2020, https://arxiv.org/abs/2010.02502), and timestep respacing.

- Linear beta schedule 1e-4..0.02 over 1000 steps (scaled by 1000 / num_steps for other step counts).
- The model predicts epsilon; with learn_sigma its second half of channels v in [-1, 1] interpolates the log
  variance between the clipped posterior variance (v = -1) and beta_t (v = 1).
- Loss = MSE(eps) + vb, vb the variational-bound term in bits (KL(q(x_{t-1}|x_t,x_0) || p(x_{t-1}|x_t)) for
  t > 0, the discretised-Gaussian decoder NLL at t = 0) computed with the mean prediction detached, so it
  trains only the variance (DiT's default loss, not rescaled). Without learn_sigma the variance is fixed
  ("fixed large": beta_t) and vb is 0.
- Respacing keeps a subset of the original timesteps (`"250"`, `"ddim50"`, `"10,15,20"`) with betas
  re-derived from alphas_cumprod; the model always sees the original timestep ids (the timestep map).

Coefficient tables are computed in float64 with numpy exactly as the official code does, indexed by timestep
and cast to float32. The samplers draw their noise in the official order from a `torch.Generator`, so a seeded
run is reproducible.

`sample(model, labels)` and `to_pixels(model, samples)` are the one-call conveniences for a DiT.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from ..errors import ConfigError, VitkitError

ModelFn = Callable[..., torch.Tensor]
Progress = Callable[[int, int], Any]  # progress(steps_done, steps_total)


# -------------------------------------------------------------------------------------------- schedules
def linear_beta_schedule(num_steps: int) -> np.ndarray:
    """Ho et al.'s linear schedule, 1e-4..0.02 at 1000 steps, scaled by 1000 / num_steps (float64)."""
    if not isinstance(num_steps, int) or num_steps < 1:
        raise ConfigError(f"the number of diffusion steps must be a positive integer, got {num_steps!r}")
    scale = 1000 / num_steps
    return np.linspace(scale * 0.0001, scale * 0.02, num_steps, dtype=np.float64)


def space_timesteps(num_timesteps: int, section_counts: str | int | Sequence[int]) -> set[int]:
    """The original timesteps kept by respacing. `section_counts`: a step count ("250" or 250: evenly spaced,
    both ends kept), comma-separated counts for equal sections of the process ("10,15,20"), or "ddimN" (the DDIM
    paper's fixed integer stride, exactly N steps)."""
    if isinstance(section_counts, int):
        section_counts = [section_counts]
    elif isinstance(section_counts, str):
        if section_counts.startswith("ddim"):
            desired = _parse_int(section_counts[len("ddim"):], section_counts)
            for stride in range(1, num_timesteps):
                if len(range(0, num_timesteps, stride)) == desired:
                    return set(range(0, num_timesteps, stride))
            raise ConfigError(f"cannot take exactly {desired} of {num_timesteps} steps with an integer stride")
        section_counts = [_parse_int(s, section_counts) for s in section_counts.split(",")]
    counts = list(section_counts)
    if not counts or any(not isinstance(n, int) or n < 1 for n in counts):
        raise ConfigError(f"timestep respacing needs positive step counts, got {section_counts!r}")
    size_per, extra = divmod(num_timesteps, len(counts))
    start, steps = 0, []
    for i, count in enumerate(counts):
        size = size_per + (1 if i < extra else 0)
        if size < count:
            raise ConfigError(f"cannot take {count} steps from a section of {size} of {num_timesteps} steps")
        stride = 1 if count <= 1 else (size - 1) / (count - 1)
        cur = 0.0
        for _ in range(count):
            steps.append(start + round(cur))
            cur += stride
        start += size
    return set(steps)


def _parse_int(text: str, whole: Any) -> int:
    try:
        return int(text)
    except ValueError:
        raise ConfigError(f"cannot read timestep respacing {whole!r}; expected e.g. '250', 'ddim50', '10,15,20'"
                          ) from None


# ----------------------------------------------------------------------------------- Gaussian helpers
def mean_flat(x: torch.Tensor) -> torch.Tensor:
    """Mean over all but the batch dimension: [B, ...] -> [B]."""
    return x.mean(dim=list(range(1, x.ndim)))


def normal_kl(mean1: torch.Tensor, logvar1: torch.Tensor, mean2: torch.Tensor, logvar2: torch.Tensor) -> torch.Tensor:
    """KL(N(mean1, exp(logvar1)) || N(mean2, exp(logvar2))), elementwise, in nats."""
    return 0.5 * (-1.0 + logvar2 - logvar1 + torch.exp(logvar1 - logvar2)
                  + (mean1 - mean2) ** 2 * torch.exp(-logvar2))


def approx_standard_normal_cdf(x: torch.Tensor) -> torch.Tensor:
    """The tanh approximation of the standard normal CDF that improved-diffusion uses."""
    return 0.5 * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * torch.pow(x, 3))))


def discretized_gaussian_log_likelihood(x: torch.Tensor, *, means: torch.Tensor, log_scales: torch.Tensor
                                        ) -> torch.Tensor:
    """Log-likelihood (nats, elementwise) of data x in [-1, 1] quantised to 256 levels (bins of width 2/255,
    the outermost extending to infinity) under N(means, exp(log_scales)^2)."""
    centered = x - means
    inv_stdv = torch.exp(-log_scales)
    cdf_plus = approx_standard_normal_cdf(inv_stdv * (centered + 1.0 / 255.0))
    cdf_min = approx_standard_normal_cdf(inv_stdv * (centered - 1.0 / 255.0))
    log_cdf_plus = torch.log(cdf_plus.clamp(min=1e-12))
    log_one_minus_cdf_min = torch.log((1.0 - cdf_min).clamp(min=1e-12))
    log_cdf_delta = torch.log((cdf_plus - cdf_min).clamp(min=1e-12))
    return torch.where(x < -0.999, log_cdf_plus, torch.where(x > 0.999, log_one_minus_cdf_min, log_cdf_delta))


# ------------------------------------------------------------------------------------------- diffusion
class GaussianDiffusion:
    """A discrete Gaussian diffusion process over `betas` (float64, one per step; step 0 is the least noisy).

    `timestep_map[i]` is the timestep id the model is given at step i (the original process's id after
    respacing; the identity otherwise). Every `model_fn(x, t, **model_kwargs)` here receives mapped ids.
    """

    _TABLES = ("betas", "log_betas", "alphas_cumprod", "alphas_cumprod_prev", "sqrt_alphas_cumprod",
               "sqrt_one_minus_alphas_cumprod", "log_one_minus_alphas_cumprod", "sqrt_recip_alphas_cumprod",
               "sqrt_recipm1_alphas_cumprod", "posterior_variance", "posterior_log_variance_clipped",
               "posterior_mean_coef1", "posterior_mean_coef2", "fixed_large_variance", "fixed_large_log_variance")

    def __init__(self, betas: Sequence[float] | np.ndarray | torch.Tensor, *, learn_sigma: bool = True,
                 timestep_map: Sequence[int] | None = None) -> None:
        if isinstance(betas, torch.Tensor):
            betas = betas.detach().cpu().numpy()
        betas = np.array(betas, dtype=np.float64)
        if betas.ndim != 1 or len(betas) == 0 or not ((betas > 0).all() and (betas <= 1).all()):
            raise ConfigError("betas must be a non-empty 1-D sequence of values in (0, 1]")
        self.learn_sigma = bool(learn_sigma)
        self.num_timesteps = T = len(betas)
        self.timestep_map = torch.tensor(list(range(T)) if timestep_map is None else list(timestep_map),
                                         dtype=torch.long)
        if self.timestep_map.shape != (T,):
            raise ConfigError(f"timestep_map has {len(self.timestep_map)} entries for {T} steps")

        # float64 tables, term for term as improved-diffusion / DiT compute them
        alphas = 1.0 - betas
        ac = np.cumprod(alphas, axis=0)
        ac_prev = np.append(1.0, ac[:-1])
        self.betas = betas
        self.log_betas = np.log(betas)
        self.alphas_cumprod = ac
        self.alphas_cumprod_prev = ac_prev
        self.alphas_cumprod_next = np.append(ac[1:], 0.0)
        self.sqrt_alphas_cumprod = np.sqrt(ac)
        self.sqrt_one_minus_alphas_cumprod = np.sqrt(1.0 - ac)
        self.log_one_minus_alphas_cumprod = np.log(1.0 - ac)
        self.sqrt_recip_alphas_cumprod = np.sqrt(1.0 / ac)
        self.sqrt_recipm1_alphas_cumprod = np.sqrt(1.0 / ac - 1)
        self.posterior_variance = betas * (1.0 - ac_prev) / (1.0 - ac)
        # the posterior variance is 0 at step 0: its log is clipped to step 1's (a 1-step process has none;
        # it uses beta_0, only ever multiplied by zero noise)
        self.posterior_log_variance_clipped = (
            np.log(np.append(self.posterior_variance[1], self.posterior_variance[1:])) if T > 1 else np.log(betas)
        )
        self.posterior_mean_coef1 = betas * np.sqrt(ac_prev) / (1.0 - ac)
        self.posterior_mean_coef2 = (1.0 - ac_prev) * np.sqrt(alphas) / (1.0 - ac)
        large = np.append(self.posterior_variance[1], betas[1:]) if T > 1 else betas
        self.fixed_large_variance = large
        self.fixed_large_log_variance = np.log(large)
        self._cache: dict[tuple[str, torch.device], torch.Tensor] = {}

    # ---------------------------------------------------------------------------------------- indexing
    def _extract(self, name: str, t: torch.Tensor, ndim: int) -> torch.Tensor:
        """Table `name` at timesteps t [B] as float32 [B, 1, ...] (ndim dims): float64 values cast once, the
        same numbers as the official index-then-cast."""
        key = (name, t.device)
        table = self._cache.get(key)
        if table is None:
            table = self._cache[key] = torch.from_numpy(getattr(self, name)).float().to(t.device)
        return table[t].reshape(-1, *([1] * (ndim - 1)))

    def _call_model(self, model_fn: ModelFn, x: torch.Tensor, t: torch.Tensor, model_kwargs: dict | None
                    ) -> torch.Tensor:
        ts = self.timestep_map.to(t.device)[t]
        return model_fn(x, ts, **(model_kwargs or {}))

    # ----------------------------------------------------------------------------------- forward process
    def q_mean_variance(self, x_start: torch.Tensor, t: torch.Tensor
                        ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """q(x_t | x_0): (mean, variance, log variance), broadcastable to x_start."""
        n = x_start.ndim
        return (self._extract("sqrt_alphas_cumprod", t, n) * x_start,
                1.0 - self._extract("alphas_cumprod", t, n),
                self._extract("log_one_minus_alphas_cumprod", t, n))

    def q_sample(self, x_start: torch.Tensor, t: torch.Tensor, noise: torch.Tensor | None = None, *,
                 generator: torch.Generator | None = None) -> torch.Tensor:
        """x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) noise."""
        if noise is None:
            noise = torch.randn(x_start.shape, generator=generator, device=x_start.device, dtype=x_start.dtype)
        if noise.shape != x_start.shape:
            raise VitkitError(f"noise {tuple(noise.shape)} does not match x_start {tuple(x_start.shape)}")
        n = x_start.ndim
        return (self._extract("sqrt_alphas_cumprod", t, n) * x_start
                + self._extract("sqrt_one_minus_alphas_cumprod", t, n) * noise)

    def q_posterior_mean_variance(self, x_start: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor
                                  ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """q(x_{t-1} | x_t, x_0): (mean, variance, clipped log variance)."""
        n = x_t.ndim
        mean = (self._extract("posterior_mean_coef1", t, n) * x_start
                + self._extract("posterior_mean_coef2", t, n) * x_t)
        return (mean, self._extract("posterior_variance", t, n),
                self._extract("posterior_log_variance_clipped", t, n))

    def predict_xstart_from_eps(self, x_t: torch.Tensor, t: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        n = x_t.ndim
        return (self._extract("sqrt_recip_alphas_cumprod", t, n) * x_t
                - self._extract("sqrt_recipm1_alphas_cumprod", t, n) * eps)

    def predict_eps_from_xstart(self, x_t: torch.Tensor, t: torch.Tensor, pred_xstart: torch.Tensor
                                ) -> torch.Tensor:
        n = x_t.ndim
        return ((self._extract("sqrt_recip_alphas_cumprod", t, n) * x_t - pred_xstart)
                / self._extract("sqrt_recipm1_alphas_cumprod", t, n))

    # ----------------------------------------------------------------------------------- reverse process
    def p_mean_variance(self, model_fn: ModelFn | None, x: torch.Tensor, t: torch.Tensor, *,
                        clip_denoised: bool = True, model_kwargs: dict | None = None,
                        model_output: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """p(x_{t-1} | x_t): {"mean", "variance", "log_variance", "pred_xstart", "eps"} from the model's output
        (or a given `model_output`). clip_denoised clamps the x_0 prediction to [-1, 1]."""
        if model_output is None:
            model_output = self._call_model(model_fn, x, t, model_kwargs)
        B, C = x.shape[:2]
        n = x.ndim
        if self.learn_sigma:
            if model_output.shape != (B, 2 * C, *x.shape[2:]):
                raise VitkitError(f"a learn_sigma diffusion needs model output {(B, 2 * C, *x.shape[2:])}, "
                                  f"got {tuple(model_output.shape)}")
            eps, var_values = torch.split(model_output, C, dim=1)
            min_log = self._extract("posterior_log_variance_clipped", t, n)
            max_log = self._extract("log_betas", t, n)
            frac = (var_values + 1) / 2  # v in [-1, 1] -> [min_var, max_var] in log space
            log_variance = frac * max_log + (1 - frac) * min_log
            variance = torch.exp(log_variance)
        else:
            if model_output.shape != x.shape:
                raise VitkitError(f"model output {tuple(model_output.shape)} does not match x {tuple(x.shape)}")
            eps = model_output
            variance = self._extract("fixed_large_variance", t, n)
            log_variance = self._extract("fixed_large_log_variance", t, n)
        pred_xstart = self.predict_xstart_from_eps(x, t, eps)
        if clip_denoised:
            pred_xstart = pred_xstart.clamp(-1, 1)
        mean, _, _ = self.q_posterior_mean_variance(pred_xstart, x, t)
        return {"mean": mean, "variance": variance, "log_variance": log_variance, "pred_xstart": pred_xstart,
                "eps": eps}

    # ------------------------------------------------------------------------------------------ training
    def vb_terms_bpd(self, x_start: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor, *,
                     model_fn: ModelFn | None = None, model_output: torch.Tensor | None = None,
                     clip_denoised: bool = False, model_kwargs: dict | None = None) -> torch.Tensor:
        """One term of the variational bound, in bits per dimension, [B]: the decoder NLL at t = 0,
        KL(q(x_{t-1} | x_t, x_0) || p(x_{t-1} | x_t)) otherwise."""
        true_mean, _, true_log_var = self.q_posterior_mean_variance(x_start, x_t, t)
        out = self.p_mean_variance(model_fn, x_t, t, clip_denoised=clip_denoised, model_kwargs=model_kwargs,
                                   model_output=model_output)
        kl = mean_flat(normal_kl(true_mean, true_log_var, out["mean"], out["log_variance"])) / math.log(2.0)
        nll = -discretized_gaussian_log_likelihood(x_start, means=out["mean"],
                                                   log_scales=0.5 * out["log_variance"].expand_as(x_start))
        nll = mean_flat(nll) / math.log(2.0)
        return torch.where(t == 0, nll, kl)

    def training_losses(self, model_fn: ModelFn, x_start: torch.Tensor, t: torch.Tensor,
                        model_kwargs: dict | None = None, noise: torch.Tensor | None = None, *,
                        generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        """DiT's loss at timesteps t [B] (ids of this process): {"loss", "mse", "vb"}, each [B].
        loss = mse (of the predicted noise) + vb (the bound term, training only the variance channels; 0
        without learn_sigma)."""
        if noise is None:
            noise = torch.randn(x_start.shape, generator=generator, device=x_start.device, dtype=x_start.dtype)
        x_t = self.q_sample(x_start, t, noise)
        model_output = self._call_model(model_fn, x_t, t, model_kwargs)
        C = x_t.shape[1]
        if self.learn_sigma:
            if model_output.shape != (x_t.shape[0], 2 * C, *x_t.shape[2:]):
                raise VitkitError(f"a learn_sigma diffusion needs model output with {2 * C} channels, "
                                  f"got {tuple(model_output.shape)}")
            eps, var_values = torch.split(model_output, C, dim=1)
            frozen = torch.cat([eps.detach(), var_values], dim=1)  # the bound trains the variance only
            vb = self.vb_terms_bpd(x_start, x_t, t, model_output=frozen, clip_denoised=False)
        else:
            eps = model_output
            vb = torch.zeros(x_start.shape[0], device=x_start.device, dtype=model_output.dtype)
        if eps.shape != noise.shape:
            raise VitkitError(f"model output {tuple(eps.shape)} does not match the input {tuple(noise.shape)}")
        mse = mean_flat((noise - eps) ** 2)
        return {"loss": mse + vb, "mse": mse, "vb": vb}

    # ------------------------------------------------------------------------------------------ sampling
    def p_sample(self, model_fn: ModelFn, x: torch.Tensor, t: torch.Tensor, *, clip_denoised: bool = True,
                 model_kwargs: dict | None = None, generator: torch.Generator | None = None
                 ) -> dict[str, torch.Tensor]:
        """One ancestral (DDPM) step x_t -> x_{t-1}: {"sample", "pred_xstart"}. No noise at t = 0."""
        out = self.p_mean_variance(model_fn, x, t, clip_denoised=clip_denoised, model_kwargs=model_kwargs)
        noise = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
        nonzero = (t != 0).to(x.dtype).reshape(-1, *([1] * (x.ndim - 1)))
        sample = out["mean"] + nonzero * torch.exp(0.5 * out["log_variance"]) * noise
        return {"sample": sample, "pred_xstart": out["pred_xstart"]}

    def ddim_sample(self, model_fn: ModelFn, x: torch.Tensor, t: torch.Tensor, *, clip_denoised: bool = True,
                    model_kwargs: dict | None = None, generator: torch.Generator | None = None, eta: float = 0.0
                    ) -> dict[str, torch.Tensor]:
        """One DDIM step (Song et al. eq. 12); eta = 0 is deterministic, eta = 1 matches DDPM's variance."""
        out = self.p_mean_variance(model_fn, x, t, clip_denoised=clip_denoised, model_kwargs=model_kwargs)
        eps = self.predict_eps_from_xstart(x, t, out["pred_xstart"])  # re-derived after clipping
        n = x.ndim
        ab = self._extract("alphas_cumprod", t, n)
        ab_prev = self._extract("alphas_cumprod_prev", t, n)
        sigma = eta * torch.sqrt((1 - ab_prev) / (1 - ab)) * torch.sqrt(1 - ab / ab_prev)
        noise = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
        mean_pred = out["pred_xstart"] * torch.sqrt(ab_prev) + torch.sqrt(1 - ab_prev - sigma**2) * eps
        nonzero = (t != 0).to(x.dtype).reshape(-1, *([1] * (n - 1)))
        return {"sample": mean_pred + nonzero * sigma * noise, "pred_xstart": out["pred_xstart"]}

    def p_sample_loop(self, model_fn: ModelFn, shape: Sequence[int], *, noise: torch.Tensor | None = None,
                      clip_denoised: bool = True, model_kwargs: dict | None = None,
                      device: torch.device | str | None = None, generator: torch.Generator | None = None,
                      progress: Progress | None = None) -> torch.Tensor:
        """DDPM ancestral sampling from x_T = `noise` (or N(0, I) drawn from `generator`) to x_0 [shape]."""
        return self._loop(self.p_sample, model_fn, shape, noise=noise, clip_denoised=clip_denoised,
                          model_kwargs=model_kwargs, device=device, generator=generator, progress=progress)

    def ddim_sample_loop(self, model_fn: ModelFn, shape: Sequence[int], *, noise: torch.Tensor | None = None,
                         clip_denoised: bool = True, model_kwargs: dict | None = None,
                         device: torch.device | str | None = None, generator: torch.Generator | None = None,
                         progress: Progress | None = None, eta: float = 0.0) -> torch.Tensor:
        """DDIM sampling over this process's steps (respace it for fewer); eta = 0: deterministic given x_T."""
        return self._loop(self.ddim_sample, model_fn, shape, noise=noise, clip_denoised=clip_denoised,
                          model_kwargs=model_kwargs, device=device, generator=generator, progress=progress,
                          eta=eta)

    def _loop(self, step: Callable[..., dict[str, torch.Tensor]], model_fn: ModelFn, shape: Sequence[int], *,
              noise: torch.Tensor | None, device: torch.device | str | None, generator: torch.Generator | None,
              progress: Progress | None, **step_kwargs: Any) -> torch.Tensor:
        shape = tuple(int(s) for s in shape)
        if noise is not None:
            if tuple(noise.shape) != shape:
                raise VitkitError(f"noise {tuple(noise.shape)} does not match shape {shape}")
            img = noise
        else:
            if device is None:
                device = _module_device(model_fn) or (generator.device if generator is not None else "cpu")
            img = torch.randn(shape, generator=generator, device=device)
        total = self.num_timesteps
        with torch.no_grad():
            for done, i in enumerate(reversed(range(total)), start=1):
                t = torch.full((shape[0],), i, device=img.device, dtype=torch.long)
                img = step(model_fn, img, t, generator=generator, **step_kwargs)["sample"]
                if progress is not None:
                    progress(done, total)
        return img


def _module_device(model_fn: Any) -> torch.device | None:
    owner = getattr(model_fn, "__self__", model_fn)
    owner = getattr(owner, "func", owner)  # functools.partial of a bound method
    owner = getattr(owner, "__self__", owner)
    if isinstance(owner, torch.nn.Module):
        p = next(owner.parameters(), None)
        return p.device if p is not None else None
    return None


def create_diffusion(timestep_respacing: str | int | None = None, num_train_steps: int = 1000,
                     learn_sigma: bool = True) -> GaussianDiffusion:
    """DiT's diffusion: linear schedule over `num_train_steps`, epsilon prediction, learned-range variance
    (fixed large without learn_sigma), MSE + vb loss. `timestep_respacing`: None or "" for all steps (training),
    else the steps to keep ("250", 250, "ddim50", "10,15,20"; see space_timesteps)."""
    betas = linear_beta_schedule(num_train_steps)
    if timestep_respacing is None or timestep_respacing == "":
        return GaussianDiffusion(betas, learn_sigma=learn_sigma)
    if isinstance(timestep_respacing, bool) or not isinstance(timestep_respacing, (str, int)):
        raise ConfigError(f"timestep_respacing must be a string or an integer, got {timestep_respacing!r}")
    use = space_timesteps(num_train_steps, timestep_respacing)
    base_ac = np.cumprod(1.0 - betas, axis=0)
    last, new_betas, timestep_map = 1.0, [], []
    for i, ac in enumerate(base_ac):
        if i in use:
            new_betas.append(1 - ac / last)
            last = ac
            timestep_map.append(i)
    return GaussianDiffusion(np.array(new_betas), learn_sigma=learn_sigma, timestep_map=timestep_map)


# ------------------------------------------------------------------------------------- DiT conveniences
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
    with `to_pixels`; a latent model's VAE is loaded once from config.vae (`config_vae`, with `trust_vae`) unless
    `vae` is given. `sample_kwargs` go to `sample` (cfg_scale, steps, method, guidance_channels, ...);
    `progress(done, total)` after each chunk."""
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
