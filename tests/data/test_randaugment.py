"""RandAugment: op-by-op and magnitude-map parity with timm, the timm-style string parser, seeding, and the
policy's sampling (uniform op choice, per-op probability, magnitude clipping)."""

from __future__ import annotations

import random
from unittest import mock

import numpy as np
import pytest
import torch
from PIL import Image

from vitkit.data.randaugment import (
    RAND_INCREASING_TRANSFORMS,
    RAND_TRANSFORMS,
    SIGNED_OPS,
    RandAugment,
    RandAugmentSpec,
    apply_op,
    level_to_arg,
    parse_randaugment,
)
from vitkit.errors import ConfigError
from vitkit.utils.random import Rng

ALL_OPS = sorted(set(RAND_TRANSFORMS) | set(RAND_INCREASING_TRANSFORMS))


def rgb(seed: int = 0, size: int = 24) -> Image.Image:
    a = np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)
    a[: size // 2, : size // 2] = (250, 30, 10)  # some structure, so geometric ops move something visible
    return Image.fromarray(a)


# ------------------------------------------------------------------------------------------------ parser
def test_parse_deit_string():
    assert parse_randaugment("rand-m9-mstd0.5-inc1") == RandAugmentSpec(
        num_ops=2, magnitude=9, magnitude_std=0.5, magnitude_max=10, prob=0.5, increasing=True
    )
    assert parse_randaugment("rand-m9-mstd0.5-inc1-n2") == parse_randaugment("rand-n2-inc1-mstd0.5-m9")


def test_parse_other_sections_and_defaults():
    assert parse_randaugment("rand") == RandAugmentSpec()  # timm's defaults: m10, n2, p0.5, no inc
    s = parse_randaugment("rand-n3-m7-p0.3-mmax12-inc0")
    assert (s.num_ops, s.magnitude, s.prob, s.magnitude_max, s.increasing) == (3, 7, 0.3, 12, False)
    assert parse_randaugment("rand-mstd101").magnitude_std == float("inf")  # timm: > 100 means uniform


@pytest.mark.parametrize("bad", ["auto-m9", "rand-x3", "rand-m", "rand-p2", "rand-m9--n2", "m9-rand"])
def test_parse_rejects_bad_strings(bad):
    with pytest.raises(ConfigError):
        parse_randaugment(bad)


def test_from_string_builds_the_increasing_op_list():
    assert RandAugment.from_string("rand-m9-mstd0.5-inc1").ops == RAND_INCREASING_TRANSFORMS
    assert RandAugment.from_string("rand-m9").ops == RAND_TRANSFORMS
    assert len(RAND_TRANSFORMS) == len(RAND_INCREASING_TRANSFORMS) == 15


# ------------------------------------------------------------------------------------- parity with timm
@pytest.mark.parametrize("name", ALL_OPS)
@pytest.mark.parametrize("magnitude", [0.0, 3.0, 5.5, 9.0, 10.0])
def test_level_to_arg_matches_timm(name, magnitude):
    aa = pytest.importorskip("timm.data.auto_augment")
    hparams = dict(aa._HPARAMS_DEFAULT)
    timm_fn = aa.LEVEL_TO_ARG[name]
    for negate, draw in ((False, 0.1), (True, 0.9)):  # timm negates when random.random() > 0.5
        with mock.patch("random.random", return_value=draw):
            expected = timm_fn(magnitude, hparams)[0] if timm_fn is not None else None
        got = level_to_arg(name, magnitude, negate=negate)
        assert got == pytest.approx(expected), (name, magnitude, negate)
        assert type(got) is type(expected)


@pytest.mark.parametrize("name", ALL_OPS)
@pytest.mark.parametrize("negate", [False, True])
def test_ops_match_timm_pixel_for_pixel(name, negate):
    aa = pytest.importorskip("timm.data.auto_augment")
    img = rgb(1)
    magnitude = 7.0
    arg = level_to_arg(name, magnitude, negate=negate)
    timm_args = () if arg is None else (arg,)
    expected = aa.NAME_TO_OP[name](img, *timm_args, fillcolor=(128, 128, 128), resample=Image.Resampling.BICUBIC)
    got = apply_op(img, name, arg, fill=(128, 128, 128), interpolation="bicubic")
    np.testing.assert_array_equal(np.asarray(got), np.asarray(expected), err_msg=name)
    if name not in ("Equalize", "AutoContrast") and name not in SIGNED_OPS and magnitude:
        assert not np.array_equal(np.asarray(got), np.asarray(img)), f"{name} did nothing"


@pytest.mark.parametrize("name", ["AutoContrast", "Equalize", "Invert", "Solarize", "SolarizeAdd", "Posterize"])
def test_lut_ops_match_pil_on_varied_histograms(name):
    # the numpy re-implementations of the histogram / table ops against Pillow's ImageOps (what timm calls)
    from PIL import ImageOps

    rng = np.random.default_rng(0)
    arg = {"Solarize": 100, "SolarizeAdd": 60, "Posterize": 2}.get(name)
    cases = [
        rng.integers(0, 256, (5, 7, 3), dtype=np.uint8),  # few pixels: small equalize steps
        rng.integers(90, 140, (24, 24, 3), dtype=np.uint8),  # narrow range: autocontrast stretches
        np.full((6, 6, 3), 77, dtype=np.uint8),  # one value: identity tables
        np.stack([np.full((4, 4), 3), rng.integers(0, 256, (4, 4)), np.full((4, 4), 250)], -1).astype(np.uint8),
        rng.integers(0, 256, (9, 11), dtype=np.uint8),  # grey
        (rng.random((16, 16, 3)) ** 4 * 255).astype(np.uint8),  # skewed
    ]
    ref = {
        "AutoContrast": ImageOps.autocontrast, "Equalize": ImageOps.equalize, "Invert": ImageOps.invert,
        "Solarize": lambda im: ImageOps.solarize(im, 100), "Posterize": lambda im: ImageOps.posterize(im, 2),
        "SolarizeAdd": lambda im: im.point([min(255, i + 60) if i < 128 else i for i in range(256)] * len(im.mode)),
    }[name]
    for a in cases:
        img = Image.fromarray(a)
        np.testing.assert_array_equal(np.asarray(apply_op(img, name, arg)), np.asarray(ref(img)), err_msg=str(a.shape))


def test_posterize_to_zero_bits_gives_black_like_old_pillow():
    img = rgb(2)
    assert level_to_arg("PosterizeIncreasing", 10.0) == 0
    out = apply_op(img, "PosterizeIncreasing", 0)
    assert np.asarray(out).max() == 0
    one_bit = np.asarray(apply_op(img, "PosterizeIncreasing", 1))
    assert set(np.unique(one_bit).tolist()) <= {0, 128}


@pytest.mark.parametrize("name", ALL_OPS)
def test_ops_work_on_grey_images(name):
    img = rgb(3).convert("L")
    out = apply_op(img, name, level_to_arg(name, 9.0), fill=(128, 128, 128))
    assert out.mode == "L" and out.size == img.size


def test_geometric_ops_fill_with_the_given_colour():
    img = Image.new("RGB", (20, 20), (0, 0, 0))
    out = apply_op(img, "TranslateXRel", 0.45, fill=(10, 200, 30), interpolation="nearest")
    assert out.getpixel((19, 10)) == (10, 200, 30)
    grey = apply_op(img.convert("L"), "Rotate", 30.0, fill=(100, 100, 100), interpolation="nearest")
    assert grey.getpixel((0, 0)) == 100


# ------------------------------------------------------------------------------------------------ seeding
@pytest.mark.parametrize(
    "make", [lambda: torch.Generator().manual_seed(5), lambda: np.random.default_rng(5), lambda: random.Random(5)]
)
def test_same_seed_same_augmentations(make):
    imgs = [rgb(s) for s in range(6)]
    a = RandAugment.from_string("rand-m9-mstd0.5-inc1", generator=make())
    b = RandAugment.from_string("rand-m9-mstd0.5-inc1", generator=make())
    outs_a = [np.asarray(a(i)) for i in imgs]
    outs_b = [np.asarray(b(i)) for i in imgs]
    for x, y in zip(outs_a, outs_b):
        np.testing.assert_array_equal(x, y)
    assert any(not np.array_equal(o, np.asarray(i)) for o, i in zip(outs_a, imgs))


def test_different_seeds_differ_and_global_rng_follows_manual_seed():
    img = rgb(0)
    runs = [[np.asarray(RandAugment(generator=torch.Generator().manual_seed(s))(img)) for _ in range(1)]
            for s in range(8)]
    assert len({r[0].tobytes() for r in runs}) > 3
    torch.manual_seed(123)
    first = [np.asarray(RandAugment()(img)) for _ in range(5)]
    torch.manual_seed(123)
    second = [np.asarray(RandAugment()(img)) for _ in range(5)]
    for x, y in zip(first, second):
        np.testing.assert_array_equal(x, y)


def test_rng_rejects_other_objects():
    with pytest.raises(ConfigError, match="generator"):
        Rng(42)


# ------------------------------------------------------------------------------------------------ policy
def _record_calls(monkeypatch) -> list[tuple[str, object]]:
    import vitkit.data.randaugment as ra

    calls: list[tuple[str, object]] = []
    for name in list(ra._OPS):
        monkeypatch.setitem(ra._OPS, name, lambda img, arg, f, r, _n=name: (calls.append((_n, arg)), img)[1])
    return calls


def test_ops_are_chosen_uniformly_and_fire_with_prob(monkeypatch):
    calls = _record_calls(monkeypatch)
    ra = RandAugment.from_string("rand-m9-mstd0.5-inc1", generator=torch.Generator().manual_seed(0))
    img = rgb(0, size=8)
    for _ in range(1500):
        ra(img)
    # 1500 images x 2 ops x p=0.5 -> ~1500 applications, ~100 per op (binomial sd ~10)
    assert 1350 < len(calls) < 1650
    counts = {n: sum(1 for c, _ in calls if c == n) for n in RAND_INCREASING_TRANSFORMS}
    assert min(counts.values()) > 60 and max(counts.values()) < 140, counts


def test_magnitude_is_noisy_and_clipped(monkeypatch):
    calls = _record_calls(monkeypatch)
    ra = RandAugment(2, 9.0, magnitude_std=3.0, prob=1.0, generator=torch.Generator().manual_seed(1))
    img = rgb(0, size=8)
    for _ in range(400):
        ra(img)
    rot = [abs(a) for n, a in calls if n == "Rotate"]
    assert rot and max(rot) == pytest.approx(30.0)  # magnitude clipped at 10 -> 30 degrees, often reached
    assert len({round(r, 3) for r in rot}) > 10  # and varies from image to image
    signs = [a > 0 for n, a in calls if n == "ShearX"]
    assert 0.25 < sum(signs) / len(signs) < 0.75  # random sign


def test_uniform_magnitude_and_zero_ops(monkeypatch):
    calls = _record_calls(monkeypatch)
    ra = RandAugment.from_string("rand-m10-mstd101-p1", generator=np.random.default_rng(0))
    img = rgb(0, size=8)
    for _ in range(300):
        ra(img)
    rot = [abs(a) for n, a in calls if n == "Rotate"]
    assert min(rot) < 5 and max(rot) > 25  # uniform in [0, 10] -> degrees spread over [0, 30]
    calls.clear()
    RandAugment(0)(img)
    RandAugment(2, prob=0.0)(img)
    assert calls == []


def test_rejects_other_modes():
    with pytest.raises(ConfigError, match="RGBA"):
        RandAugment()(Image.new("RGBA", (4, 4)))
