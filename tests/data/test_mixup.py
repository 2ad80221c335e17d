"""Mixup / CutMix: soft targets and label smoothing (parity with timm), exact pixel mixing, the CutMix lam
correction, switching and lam statistics, seeding, and the soft-target cross-entropy."""

from __future__ import annotations

from unittest import mock

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from vitkit.data.mixup import Mixup, cutmix_box, smooth_one_hot, soft_target_cross_entropy
from vitkit.errors import ConfigError

K = 5


def batch(b: int = 6, size: int = 16) -> tuple[torch.Tensor, torch.Tensor]:
    """Image i is the constant i + 1 (so every pixel tells which image it came from); labels i % K."""
    x = (torch.arange(b, dtype=torch.float32) + 1).view(b, 1, 1, 1).expand(b, 3, size, size).clone()
    return x, torch.arange(b) % K


def test_smooth_one_hot_and_soft_ce_match_torch_label_smoothing():
    y = torch.tensor([0, 3, 4, 1])
    t = smooth_one_hot(y, K, 0.1)
    assert t[0].tolist() == pytest.approx([0.92, 0.02, 0.02, 0.02, 0.02])
    torch.testing.assert_close(t.sum(1), torch.ones(4))
    logits = torch.randn(4, K, requires_grad=True)
    loss = soft_target_cross_entropy(logits, t)
    torch.testing.assert_close(loss, F.cross_entropy(logits, y, label_smoothing=0.1))
    loss.backward()
    assert logits.grad is not None and logits.grad.abs().sum() > 0
    torch.testing.assert_close(soft_target_cross_entropy(logits, smooth_one_hot(y, K)), F.cross_entropy(logits, y))
    with pytest.raises(ConfigError, match="shape"):
        soft_target_cross_entropy(logits, t[:, :3])


@pytest.mark.parametrize("lam", [1.0, 0.7, 0.3])
def test_targets_match_timm(lam):
    timm_mixup = pytest.importorskip("timm.data.mixup")
    y = torch.tensor([0, 3, 4, 1, 2])
    y1 = smooth_one_hot(y, K, 0.1)
    ours = y1 * lam + y1.flip(0) * (1 - lam)
    torch.testing.assert_close(ours, timm_mixup.mixup_target(y, K, lam=lam, smoothing=0.1))


def test_cutmix_box_matches_timm():
    timm_mixup = pytest.importorskip("timm.data.mixup")

    class FixedRng:
        def __init__(self, values):
            self.values = list(values)

        def randint(self, low, high):
            v = self.values.pop(0)
            assert low <= v < high
            return v

    for lam, (cy, cx) in [(0.5, (3, 12)), (0.8, (0, 0)), (0.1, (15, 7)), (0.99, (8, 8))]:
        with mock.patch("numpy.random.randint", side_effect=[cy, cx]):
            box, lam_t = timm_mixup.cutmix_bbox_and_lam((3, 16, 20), lam, correct_lam=True)
        ours, lam_o = cutmix_box(16, 20, lam, FixedRng([cy, cx]))
        assert ours == tuple(int(v) for v in box)
        assert lam_o == pytest.approx(lam_t)


def test_no_mixing_when_prob_zero():
    x, y = batch()
    xm, t = Mixup(num_classes=K, prob=0.0)(x, y)
    assert torch.equal(xm, x)
    torch.testing.assert_close(t, smooth_one_hot(y, K, 0.1))


def test_mixup_blends_exactly():
    x, y = batch()
    orig = x.clone()
    mix = Mixup(num_classes=K, cutmix_alpha=0.0, label_smoothing=0.0, generator=torch.Generator().manual_seed(0))
    xm, t = mix(x, y)
    lam = mix.last_lam
    assert mix.last_method == "mixup" and 0.0 < lam < 1.0
    torch.testing.assert_close(xm, lam * orig + (1 - lam) * orig.flip(0))
    torch.testing.assert_close(t, lam * F.one_hot(y, K).float() + (1 - lam) * F.one_hot(y.flip(0), K).float())
    assert torch.equal(x, orig)  # inputs untouched


def test_cutmix_pastes_a_box_and_corrects_lam():
    x, y = batch(b=7)  # odd batch: the middle image pairs with itself
    mix = Mixup(num_classes=K, mixup_alpha=0.0, label_smoothing=0.1, generator=torch.Generator().manual_seed(3))
    for _ in range(10):
        xm, t = mix(x, y)
        assert mix.last_method == "cutmix"
        from_partner = (xm != x)[0, 0]  # image 0 (value 1) receives pixels of image 6 (value 7)
        assert set(xm[0].unique().tolist()) <= {1.0, 7.0}
        rows, cols = from_partner.any(1).nonzero(), from_partner.any(0).nonzero()
        if len(rows):
            assert from_partner[rows.min():rows.max() + 1, cols.min():cols.max() + 1].all()  # a rectangle
        assert 1 - from_partner.float().mean().item() == pytest.approx(mix.last_lam)  # lam = area kept
        torch.testing.assert_close(t.sum(1), torch.ones(7))
        expected = mix.last_lam * smooth_one_hot(y, K, 0.1) + (1 - mix.last_lam) * smooth_one_hot(y.flip(0), K, 0.1)
        torch.testing.assert_close(t, expected)


def test_switch_probability_and_lam_statistics():
    x, y = batch(b=4, size=8)
    mix = Mixup(num_classes=K, generator=np.random.default_rng(0))  # DeiT defaults
    methods, lams = [], []
    for _ in range(600):
        mix(x, y)
        methods.append(mix.last_method)
        if mix.last_method == "mixup":
            lams.append(mix.last_lam)
    share = methods.count("cutmix") / len(methods)
    assert 0.43 < share < 0.57
    lams = np.array(lams)
    assert 0.43 < lams.mean() < 0.57  # Beta(0.8, 0.8) is symmetric around 0.5 ...
    assert (lams < 0.1).mean() > 0.08 and (lams > 0.9).mean() > 0.08  # ... with more mass at the ends than U(0,1)


def test_batch_prob():
    x, y = batch(b=4, size=8)
    mix = Mixup(num_classes=K, prob=0.3, generator=torch.Generator().manual_seed(0))
    mixed = 0
    for _ in range(400):
        mix(x, y)
        mixed += mix.last_method is not None
    assert 80 < mixed < 160


@pytest.mark.parametrize("make", [lambda: torch.Generator().manual_seed(1), lambda: np.random.default_rng(1)])
def test_seeded_mixup_is_reproducible(make):
    x, y = batch()
    a, b = Mixup(num_classes=K, generator=make()), Mixup(num_classes=K, generator=make())
    for _ in range(5):
        (xa, ta), (xb, tb) = a(x, y), b(x, y)
        assert torch.equal(xa, xb) and torch.equal(ta, tb)


def test_rejects_bad_arguments():
    with pytest.raises(ConfigError):
        Mixup(num_classes=1)
    with pytest.raises(ConfigError):
        Mixup(num_classes=K, switch_prob=1.5)
    with pytest.raises(ConfigError):
        Mixup(num_classes=K, mixup_alpha=-1.0)
    x, y = batch()
    with pytest.raises(ConfigError, match="labels"):
        Mixup(num_classes=K)(x, y[:3])
