"""vitkit.diffusion: the linear schedule, q(x_t | x_0), the posterior against its Gaussian-conditioning closed form,
respacing, the vb term against a direct float64 KL, the hybrid loss, DDPM / DDIM sampling (determinism, an
oracle model recovering x_0). The DiT conveniences are tested in test_sampling.py."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from vitkit.diffusion.gaussian import (
    GaussianDiffusion,
    create_diffusion,
    discretized_gaussian_log_likelihood,
    space_timesteps,
)
from vitkit.errors import ConfigError, VitkitError


def _abar(num_steps: int = 1000) -> np.ndarray:
    """alphas_cumprod of Ho et al.'s linear schedule, computed here independently."""
    betas = np.array([1e-4 + (0.02 - 1e-4) * i / (num_steps - 1) for i in range(num_steps)]) * (1000 / num_steps)
    return np.cumprod(1 - betas)


# ------------------------------------------------------------------------------------------- schedule
def test_linear_betas():
    d = create_diffusion()
    assert d.num_timesteps == 1000 and d.betas.dtype == np.float64
    assert d.betas[0] == 1e-4 and d.betas[-1] == pytest.approx(0.02, abs=1e-15)
    assert np.all(np.diff(d.betas) > 0)
    np.testing.assert_allclose(d.alphas_cumprod, _abar(), rtol=1e-12)
    half = create_diffusion(num_train_steps=500)  # scaled so the process ends at a similar noise level
    assert half.betas[0] == pytest.approx(2e-4) and half.betas[-1] == pytest.approx(0.04)


def test_q_sample_mean_and_variance():
    d = create_diffusion()
    t = torch.tensor([0, 100, 999])
    x0 = torch.tensor([0.5, -1.0, 0.25]).view(3, 1, 1, 1).expand(3, 1, 200, 200)
    noise = torch.randn(x0.shape)
    xt = d.q_sample(x0, t, noise)
    ab = torch.from_numpy(_abar()[t.numpy()]).view(3, 1, 1, 1)
    torch.testing.assert_close(xt.double(), ab.sqrt() * x0.double() + (1 - ab).sqrt() * noise.double(),
                               atol=1e-6, rtol=0)
    flat = xt.reshape(3, -1).double()
    torch.testing.assert_close(flat.mean(1), ab.sqrt().view(3) * x0[:, 0, 0, 0].double(), atol=0.01, rtol=0)
    torch.testing.assert_close(flat.var(1), (1 - ab).view(3), atol=0.01, rtol=0.01)
    mean, var, log_var = d.q_mean_variance(x0, t)
    torch.testing.assert_close(mean, xt - (1 - ab).sqrt().float() * noise, atol=1e-5, rtol=0)
    torch.testing.assert_close(var.view(3).double(), (1 - ab).view(3), atol=1e-6, rtol=0)
    torch.testing.assert_close(log_var.exp(), var, atol=1e-6, rtol=1e-5)


def test_posterior_against_gaussian_conditioning():
    """q(x_{t-1} | x_t, x_0) from conditioning the joint Gaussian of (x_{t-1}, x_t) given x_0:
    x_{t-1} ~ N(sqrt(ab_{t-1}) x0, 1 - ab_{t-1}), x_t = sqrt(a_t) x_{t-1} + sqrt(b_t) e."""
    d = create_diffusion()
    ab = _abar()
    t = np.arange(1, 1000)
    ab_prev, ab_t = ab[t - 1], ab[t]
    a_t = ab_t / ab_prev
    v1, v2 = 1 - ab_prev, 1 - ab_t
    cov = np.sqrt(a_t) * v1
    coef_xt = cov / v2
    coef_x0 = np.sqrt(ab_prev) - coef_xt * np.sqrt(ab_t)
    var = v1 - cov**2 / v2
    np.testing.assert_allclose(d.posterior_mean_coef2[t], coef_xt, rtol=1e-9)
    np.testing.assert_allclose(d.posterior_mean_coef1[t], coef_x0, rtol=1e-9)
    np.testing.assert_allclose(d.posterior_variance[t], var, rtol=1e-9)
    assert d.posterior_variance[0] == 0
    assert d.posterior_log_variance_clipped[0] == pytest.approx(np.log(var[0]), rel=1e-12)  # clipped to t=1
    # at t = 0 the posterior is x_0 itself
    assert d.posterior_mean_coef1[0] == pytest.approx(1.0) and d.posterior_mean_coef2[0] == 0


# ------------------------------------------------------------------------------------------ respacing
def test_respaced_alphas_cumprod_match_the_original_at_kept_steps():
    base = create_diffusion()
    for spec, n in [("250", 250), (250, 250), ("ddim50", 50), ("10,15,20", 45), ("1000", 1000)]:
        d = create_diffusion(spec)
        kept = d.timestep_map.numpy()
        assert d.num_timesteps == n == len(kept) and np.all(np.diff(kept) > 0)
        np.testing.assert_allclose(d.alphas_cumprod, base.alphas_cumprod[kept], rtol=1e-12)
    assert create_diffusion("250").timestep_map[[0, -1]].tolist() == [0, 999]
    assert sorted(space_timesteps(1000, "ddim50")) == list(range(0, 1000, 20))
    assert sorted(space_timesteps(10, "4")) == [0, 3, 6, 9]
    for bad in ("abc", "2000", "ddim999", "0"):
        with pytest.raises(ConfigError):
            create_diffusion(bad)


def test_the_model_sees_the_original_timesteps():
    d = create_diffusion("5")
    seen = []

    def model_fn(x, t):
        seen.append(t.tolist())
        return torch.zeros(x.shape[0], 2 * x.shape[1], *x.shape[2:])

    d.p_sample_loop(model_fn, (2, 1, 4, 4), generator=torch.Generator().manual_seed(0))
    kept = d.timestep_map.tolist()
    assert kept == [0, 250, 500, 749, 999]
    assert seen == [[k, k] for k in reversed(kept)]


# -------------------------------------------------------------------------------------------- losses
def test_vb_term_equals_a_direct_float64_kl():
    d = create_diffusion()
    ab = _abar()
    betas = 1 - ab / np.append(1.0, ab[:-1])
    B, C = 3, 2
    t = torch.tensor([1, 400, 999])
    x0 = torch.rand(B, C, 4, 4) * 2 - 1
    xt = d.q_sample(x0, t, torch.randn_like(x0))
    eps, v = torch.randn(B, C, 4, 4), torch.rand(B, C, 4, 4) * 2 - 1
    got = d.vb_terms_bpd(x0, xt, t, model_output=torch.cat([eps, v], 1))

    # float64, from the definitions
    x0_, xt_, eps_, v_ = (a.double().numpy() for a in (x0, xt, eps, v))
    tt = t.numpy()[:, None, None, None]
    a_t, abt, abp = 1 - betas[tt], ab[tt], np.append(1.0, ab[:-1])[tt]
    pvar = betas * (1 - np.append(1.0, ab[:-1])) / (1 - ab)
    log_pvar_clipped = np.log(np.append(pvar[1], pvar[1:]))[tt]

    def posterior_mean(x_start):
        return (np.sqrt(abp) * betas[tt] * x_start + np.sqrt(a_t) * (1 - abp) * xt_) / (1 - abt)

    pred_x0 = (xt_ - np.sqrt(1 - abt) * eps_) / np.sqrt(abt)
    frac = (v_ + 1) / 2
    lv_model = frac * np.log(betas[tt]) + (1 - frac) * log_pvar_clipped
    m1, lv1, m2 = posterior_mean(x0_), np.log(pvar[tt]), posterior_mean(pred_x0)
    kl = 0.5 * (-1 + lv_model - lv1 + np.exp(lv1 - lv_model) + (m1 - m2) ** 2 * np.exp(-lv_model))
    want = kl.mean(axis=(1, 2, 3)) / np.log(2)
    np.testing.assert_allclose(got.double().numpy(), want, rtol=1e-4)
    assert want.min() > 1e-3  # a real comparison, not two zeros


def test_vb_at_t0_is_the_decoder_nll():
    d = create_diffusion()
    x0 = torch.rand(2, 1, 4, 4) * 2 - 1
    t = torch.zeros(2, dtype=torch.long)
    xt = d.q_sample(x0, t, torch.randn_like(x0))
    out = torch.cat([torch.randn_like(x0), torch.zeros_like(x0)], 1)
    got = d.vb_terms_bpd(x0, xt, t, model_output=out)
    pm = d.p_mean_variance(None, xt, t, clip_denoised=False, model_output=out)
    ll = discretized_gaussian_log_likelihood(x0, means=pm["mean"], log_scales=0.5 * pm["log_variance"].expand_as(x0))
    torch.testing.assert_close(got, -ll.mean(dim=(1, 2, 3)) / np.log(2))
    # the discretised likelihood is close to an exact normal bin probability (the CDF is tanh-approximated)
    scale = (0.5 * pm["log_variance"]).exp().double()
    normal = torch.distributions.Normal(pm["mean"].double(), scale)
    exact = (normal.cdf(x0.double() + 1 / 255) - normal.cdf(x0.double() - 1 / 255)).log()
    inner = x0.abs() < 0.999
    torch.testing.assert_close(ll.double()[inner], exact[inner], atol=0.05, rtol=0.05)


def test_training_losses_finite_and_vb_trains_only_the_variance(tiny_dit):
    d = create_diffusion()
    x0 = torch.rand(4, 2, 4, 4) * 2 - 1
    out = torch.randn(4, 4, 4, 4, requires_grad=True)
    t = torch.tensor([0, 10, 500, 999])
    terms = d.training_losses(lambda x, ts: out, x0, t)
    assert set(terms) == {"loss", "mse", "vb"}
    for v in terms.values():
        assert v.shape == (4,) and torch.isfinite(v).all()
    torch.testing.assert_close(terms["loss"], terms["mse"] + terms["vb"])
    (grad,) = torch.autograd.grad(terms["vb"].sum(), out)
    assert torch.equal(grad[:, :2], torch.zeros_like(grad[:, :2]))  # mean prediction detached
    assert grad[:, 2:].abs().sum() > 0
    # with a real model and a fixed variance
    model = tiny_dit(learn_sigma=False)
    fixed = create_diffusion(learn_sigma=False)
    terms = fixed.training_losses(model, x0[:, :1], t, {"y": torch.tensor([0, 1, 2, 0])})
    assert torch.equal(terms["vb"], torch.zeros(4)) and torch.isfinite(terms["loss"]).all()
    with pytest.raises(VitkitError, match="learn_sigma"):
        d.training_losses(model, x0[:, :1], t, {"y": torch.zeros(4, dtype=torch.long)})


# ------------------------------------------------------------------------------------------ sampling
def _oracle(d_base: GaussianDiffusion, x0: torch.Tensor):
    """An eps-model that knows x_0: eps = (x_t - sqrt(ab_t) x_0) / sqrt(1 - ab_t), at the original timestep."""
    ab = torch.from_numpy(d_base.alphas_cumprod).float()

    def model_fn(x, t):
        a = ab[t].view(-1, 1, 1, 1)
        eps = (x - a.sqrt() * x0) / (1 - a).sqrt()
        return torch.cat([eps, torch.zeros_like(eps)], 1)

    return model_fn


def test_ddim_is_deterministic_and_an_oracle_recovers_x0():
    base = create_diffusion()
    d = create_diffusion("20")
    x0 = torch.rand(2, 1, 8, 8) * 1.8 - 0.9
    oracle = _oracle(base, x0)
    noise = torch.randn(2, 1, 8, 8)
    a = d.ddim_sample_loop(oracle, noise.shape, noise=noise, generator=torch.Generator().manual_seed(1))
    b = d.ddim_sample_loop(oracle, noise.shape, noise=noise, generator=torch.Generator().manual_seed(2))
    assert torch.equal(a, b)  # eta = 0: the generator is never used for the result
    torch.testing.assert_close(a, x0, atol=1e-4, rtol=0)
    # DDPM with the oracle also ends at x_0 (the last step is noiseless and its mean is the x_0 prediction)
    c = d.p_sample_loop(oracle, noise.shape, noise=noise, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(c, x0, atol=1e-4, rtol=0)
    # with eta > 0 the noise matters
    e = d.ddim_sample_loop(oracle, noise.shape, generator=torch.Generator().manual_seed(1), eta=1.0)
    assert e.shape == noise.shape
