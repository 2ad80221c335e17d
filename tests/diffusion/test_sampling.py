"""vitkit.diffusion.sampling, the DiT conveniences: seeded sample(), guidance doubling the batch with the null
label, to_pixels() in pixel space and through a VAE."""

from __future__ import annotations

import sys

import pytest
import torch

from vitkit.diffusion.gaussian import create_diffusion
from vitkit.diffusion.sampling import sample, to_pixels
from vitkit.errors import ConfigError, VitkitError


def test_ddpm_sampling_is_reproducible_with_a_seed(tiny_dit):
    model = tiny_dit()
    a = sample(model, [0, 2], steps=5, cfg_scale=2.0, seed=0)
    b = sample(model, [0, 2], steps=5, cfg_scale=2.0, seed=0)
    c = sample(model, [0, 2], steps=5, cfg_scale=2.0, seed=1)
    assert a.shape == (2, 1, 8, 8) and torch.equal(a, b) and not torch.equal(a, c)
    d = create_diffusion("4")
    kw = {"model_kwargs": {"y": torch.tensor([1, 2])}}
    runs = [d.p_sample_loop(model, (2, 1, 8, 8), generator=torch.Generator().manual_seed(3), **kw) for _ in "ab"]
    assert torch.equal(*runs)


def test_sample_doubles_the_batch_with_the_null_label_only_when_guided(tiny_dit):
    model = tiny_dit()
    calls = []
    forward = model.forward

    def recording(x, t, y, force_drop_ids=None):
        calls.append(y.tolist())
        return forward(x, t, y, force_drop_ids)

    model.forward = recording
    ticks = []
    sample(model, [2, 1], steps=3, cfg_scale=4.0, progress=lambda i, n: ticks.append((i, n)))
    assert calls == [[2, 1, 3, 3]] * 3 and ticks == [(1, 3), (2, 3), (3, 3)]
    calls.clear()
    out = sample(model, [2, 1], steps=3, cfg_scale=1.0, method="ddim")
    assert calls == [[2, 1]] * 3 and out.shape == (2, 1, 8, 8)
    with pytest.raises(VitkitError, match="class ids"):
        sample(model, [3], steps=2)
    with pytest.raises(VitkitError, match="null label"):
        sample(tiny_dit(class_dropout_prob=0.0), [0], steps=2)


def test_to_pixels_pixel_space_and_vae(tiny_dit, monkeypatch):
    model = tiny_dit()
    s = torch.tensor([-1.0, 0.0, 1.0, 3.0]).view(1, 1, 2, 2)
    px = to_pixels(model, s)
    assert px.dtype == torch.uint8 and px.shape == (1, 2, 2, 1)
    assert px.flatten().tolist() == [0, 128, 255, 255]

    class FakeVAE(torch.nn.Module):
        def decode(self, z):
            return type("Out", (), {"sample": z.repeat(1, 3, 1, 1)})()

    latent = tiny_dit(latent_scale=0.5)
    px = to_pixels(latent, s * 0.25, vae=FakeVAE())  # decoded from s * 0.25 / 0.5 = s / 2
    assert px.shape == (1, 2, 2, 3) and px[0, :, :, 0].flatten().tolist() == [64, 128, 191, 255]
    with pytest.raises(ConfigError, match="names no vae"):
        to_pixels(latent, s)
    for name in [m for m in sys.modules if m == "diffusers" or m.startswith("diffusers.")] + ["diffusers"]:
        monkeypatch.setitem(sys.modules, name, None)  # as if diffusers were not installed
    with pytest.raises(VitkitError, match="needs the diffusers package"):
        to_pixels(tiny_dit(latent_scale=0.18215, vae="stabilityai/sd-vae-ft-mse"), s)
