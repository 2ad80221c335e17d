"""Train / eval transforms: eval parity with timm's eval transform, the train pipeline's pieces (random resized
crop bounds, flip, random erasing, normalisation), DataConfig validation, and seeding (including distinct
streams in DataLoader workers).

Throughput is measured by hand, not tested (see the vitkit.data.transforms docstring for the numbers).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from vitkit.data.transforms import (
    DataConfig,
    EvalTransform,
    RandomErasing,
    ToNormalizedTensor,
    TrainTransform,
    build_transforms,
    default_crop_scale,
    random_resized_crop_params,
)
from vitkit.errors import ConfigError
from vitkit.models import ViTConfig
from vitkit.utils.random import Rng

CFG32 = DataConfig(img_size=32, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5), crop_pct=0.9, interpolation="bicubic")


def photo(w: int, h: int, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    a = np.stack([xx * 255 // max(1, w - 1), yy * 255 // max(1, h - 1), rng.integers(0, 256, (h, w))], -1)
    return Image.fromarray(a.astype(np.uint8))


# ------------------------------------------------------------------------------------------------ config
def test_data_config_from_vit_config_and_model():
    cfg = ViTConfig(img_size=384, mean=(0.1, 0.2, 0.3), std=(0.4, 0.5, 0.6), crop_pct=1.0, interpolation="bilinear")
    dc = DataConfig.from_model(cfg)
    assert (dc.img_size, dc.mean, dc.std, dc.crop_pct, dc.interpolation, dc.in_chans) == (
        384, (0.1, 0.2, 0.3), (0.4, 0.5, 0.6), 1.0, "bilinear", 3)

    class M:
        config = ViTConfig(in_chans=1, img_size=16)

    grey = DataConfig.from_model(M())
    assert grey.mode == "L" and grey.mean == (0.5,) and grey.std == (0.5,)  # uniform RGB stats collapse to one
    with pytest.raises(ConfigError, match="crop_pct"):
        DataConfig.from_model(object())


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(in_chans=1, mean=(0.1, 0.2, 0.3)), "one value per channel"),
        (dict(mean=(0.5,)), "one value per channel"),
        (dict(std=(0.5, 0.0, 0.5)), "std"),
        (dict(crop_pct=0.0), "crop_pct"),
        (dict(crop_pct=1.5), "crop_pct"),
        (dict(interpolation="cubic"), "interpolation"),
        (dict(img_size=(32, 0)), "img_size"),
        (dict(in_chans=4, mean=(0.5,) * 4, std=(0.5,) * 4), "in_chans=4"),
    ],
)
def test_data_config_rejects(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        DataConfig(**kwargs)


def test_default_crop_scale():
    assert default_crop_scale(224) == (0.08, 1.0)
    assert default_crop_scale(128) == (0.08, 1.0)
    assert default_crop_scale(32) == (0.35, 1.0)
    assert default_crop_scale((64, 256)) == (0.35, 1.0)
    assert TrainTransform(CFG32).scale == (0.35, 1.0)
    assert TrainTransform(CFG32, scale=(0.5, 0.9)).scale == (0.5, 0.9)


# -------------------------------------------------------------------------------------------------- eval
@pytest.mark.parametrize("size_wh", [(64, 48), (48, 64), (32, 32), (37, 100), (10, 7), (3, 3)])
@pytest.mark.parametrize("img_size, crop_pct, interp", [(32, 0.9, "bicubic"), (24, 1.0, "bilinear")])
def test_eval_matches_timm(size_wh, img_size, crop_pct, interp):
    timm_data = pytest.importorskip("timm.data")
    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    cfg = DataConfig(img_size=img_size, mean=mean, std=std, crop_pct=crop_pct, interpolation=interp)
    ref = timm_data.create_transform(img_size, is_training=False, interpolation=interp, mean=mean, std=std,
                                     crop_pct=crop_pct)
    img = photo(*size_wh)
    got = EvalTransform(cfg)(img)
    assert got.shape == (3, img_size, img_size) and got.dtype == torch.float32
    torch.testing.assert_close(got, ref(img), atol=1e-5, rtol=0)


def test_eval_non_square_target_and_grey():
    cfg = DataConfig(img_size=(16, 24), in_chans=1, mean=(0.5,), std=(0.25,))
    out = EvalTransform(cfg)(photo(50, 40))
    assert out.shape == (1, 16, 24)
    flat = EvalTransform(DataConfig(img_size=8, in_chans=1, mean=(0.5,), std=(0.5,), crop_pct=1.0))(
        Image.new("L", (8, 8), 255))
    torch.testing.assert_close(flat, torch.ones(1, 8, 8))


def test_normalisation_values():
    t = ToNormalizedTensor((0.5, 0.25, 0.0), (0.5, 0.25, 1.0))
    img = Image.fromarray(np.array([[[0, 255, 51]]], dtype=np.uint8))
    torch.testing.assert_close(t(img).flatten(), torch.tensor([-1.0, 3.0, 0.2]))
    with pytest.raises(ConfigError, match="channel"):
        t(Image.new("L", (2, 2)))


def test_eval_accepts_any_mode():
    rgba = Image.new("RGBA", (40, 40), (255, 0, 0, 0))  # fully transparent -> white
    out = EvalTransform(CFG32)(rgba)
    torch.testing.assert_close(out, torch.ones(3, 32, 32))


# ------------------------------------------------------------------------------------------------- train
def test_random_resized_crop_respects_scale_and_ratio():
    rng = Rng(torch.Generator().manual_seed(0))
    for _ in range(300):
        top, left, h, w = random_resized_crop_params(64, 48, (0.35, 1.0), (3 / 4, 4 / 3), rng)
        assert 0 <= top and top + h <= 48 and 0 <= left and left + w <= 64
        area = h * w / (64 * 48)
        assert 0.3 < area <= 1.0
        assert 3 / 4 - 0.1 < w / h < 4 / 3 + 0.1  # rounding to whole pixels
    # an extreme aspect ratio forces the fallback: the largest centred crop within the ratio range
    top, left, h, w = random_resized_crop_params(200, 10, (0.9, 1.0), (3 / 4, 4 / 3), rng)
    assert (h, w) == (10, 13) and left == (200 - 13) // 2


def test_train_without_randomness_is_a_resize_and_flip_is_exact():
    img = photo(40, 40, seed=3)
    plain = TrainTransform(CFG32, scale=(1.0, 1.0), ratio=(1.0, 1.0), hflip=0.0, randaugment=None, re_prob=0.0)
    flipped = TrainTransform(CFG32, scale=(1.0, 1.0), ratio=(1.0, 1.0), hflip=1.0, randaugment=None, re_prob=0.0)
    expected = ToNormalizedTensor(CFG32.mean, CFG32.std)(img.resize((32, 32), Image.Resampling.BICUBIC))
    torch.testing.assert_close(plain(img), expected)
    torch.testing.assert_close(flipped(img), expected.flip(-1))


def test_hflip_probability():
    img = photo(20, 20, seed=4)
    tf = TrainTransform(CFG32, scale=(1.0, 1.0), ratio=(1.0, 1.0), hflip=0.5, randaugment=None, re_prob=0.0,
                        generator=torch.Generator().manual_seed(0))
    base = TrainTransform(CFG32, scale=(1.0, 1.0), ratio=(1.0, 1.0), hflip=0.0, randaugment=None, re_prob=0.0)(img)
    flips = sum(not torch.equal(tf(img), base) for _ in range(200))
    assert 70 < flips < 130


def test_train_output_and_grey_model():
    out = TrainTransform(CFG32)(photo(50, 30))
    assert out.shape == (3, 32, 32) and out.dtype == torch.float32 and torch.isfinite(out).all()
    grey = DataConfig(img_size=28, in_chans=1, mean=(0.1307,), std=(0.3081,))
    train, evaluate = build_transforms(grey, hflip=0.0)
    for tf in (train, evaluate):
        assert tf(Image.new("RGB", (28, 28), (10, 200, 30))).shape == (1, 28, 28)
    assert train.hflip == 0.0 and "scale" in repr(train)


def test_random_erasing():
    x = torch.zeros(3, 40, 40)
    out = RandomErasing(1.0, generator=torch.Generator().manual_seed(0))(x.clone())
    erased = (out != 0).any(0)
    frac = erased.float().mean().item()
    assert 0.02 * 0.8 <= frac <= 1 / 3 + 0.05
    rows, cols = erased.any(1).nonzero(), erased.any(0).nonzero()
    assert erased[rows.min():rows.max() + 1, cols.min():cols.max() + 1].all()  # one solid rectangle
    assert out[:, erased].std() > 0.5  # per-pixel normal noise, not a constant
    assert torch.equal(RandomErasing(0.0)(x.clone()), x)
    hits = sum(bool(RandomErasing(0.25, generator=torch.Generator().manual_seed(s))(x.clone()).any())
               for s in range(200))
    assert 25 < hits < 75
    with pytest.raises(ConfigError):
        RandomErasing(1.5)


def test_bad_train_options():
    for kwargs in (dict(scale=(0.0, 1.0)), dict(scale=(0.9, 0.5)), dict(ratio=(2.0, 1.0)), dict(hflip=2.0)):
        with pytest.raises(ConfigError):
            TrainTransform(CFG32, **kwargs)
    with pytest.raises(ConfigError):
        TrainTransform(CFG32, randaugment="rand-q3")


def test_seeded_train_transform_is_reproducible():
    imgs = [photo(48, 40, seed=s) for s in range(5)]
    a = TrainTransform(CFG32, generator=torch.Generator().manual_seed(7))
    b = TrainTransform(CFG32, generator=torch.Generator().manual_seed(7))
    outs = [a(i) for i in imgs]
    for o, i in zip(outs, imgs):
        torch.testing.assert_close(o, b(i), atol=0, rtol=0)
    assert not torch.equal(a(imgs[0]), outs[0])  # the stream moves on


# -------------------------------------------------------------------------------------------- workers
class _Same(Dataset):
    """The same image N times, through the transform."""

    def __init__(self, transform, n: int = 4) -> None:
        self.img, self.transform, self.n = photo(48, 48), transform, n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> torch.Tensor:
        return self.transform(self.img)


def _epoch(loader: DataLoader) -> list[torch.Tensor]:
    return [b[0] for b in loader]


def test_explicit_generator_gives_distinct_reproducible_streams_in_workers():
    tf = TrainTransform(CFG32, generator=torch.Generator().manual_seed(0))
    loader = DataLoader(_Same(tf), batch_size=1, num_workers=2)
    torch.manual_seed(0)
    e1, e2 = _epoch(loader), _epoch(loader)
    assert not torch.equal(e1[0], e1[1])  # items 0 and 1 come from different workers
    assert not torch.equal(e1[0], e2[0])  # and the next epoch is not a replay
    torch.manual_seed(0)
    again = _epoch(loader)
    for x, y in zip(e1, again):
        torch.testing.assert_close(x, y, atol=0, rtol=0)


def test_pipeline_is_a_reasonable_augmentation():
    # Averaged over many draws, a train view stays centred on the source image (no systematic shift/flip bias).
    img = photo(32, 32, seed=9)
    tf = TrainTransform(CFG32, randaugment=None, re_prob=0.0, hflip=0.0, generator=torch.Generator().manual_seed(0))
    mean_view = torch.stack([tf(img) for _ in range(200)]).mean(0)
    ref = EvalTransform(DataConfig(img_size=32, crop_pct=1.0))(img)
    # The red channel is a left-to-right ramp: crops keep it increasing on average.
    assert mean_view[0, 16, 28] > mean_view[0, 16, 4]
    assert math.isclose(mean_view[0].mean().item(), ref[0].mean().item(), abs_tol=0.15)
