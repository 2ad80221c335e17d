"""vitkit's CLIPProcessor against open_clip's evaluation transform and transformers' CLIPImageProcessor on the
scikit-image sample photos.

Measured (and asserted below): open_clip - identical (max |diff| 0.0); transformers' PIL backend - identical
where the centre crop's excess is even, else shifted by one pixel (its crop floors the offset, torchvision rounds
half to even); transformers 5's default torchvision backend - at most one 8-bit level (1 / 255 / std = 0.0150)
on ~0.4% of values, mean |diff| < 1e-4, plus the same one-pixel crop shift.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from vitkit.errors import ConfigError, VitkitError
from vitkit.processing import BatchFeature, CLIPProcessor, CLIPProcessorConfig, CLIPTokenizer
from vitkit.processing.clip import CLIP_MEAN, CLIP_STD, center_crop_box, preprocess_images, resize_shorter_side

skdata = pytest.importorskip("skimage.data")
open_clip = pytest.importorskip("open_clip")
transformers = pytest.importorskip("transformers")

ONE_LEVEL = 1 / 255 / min(CLIP_STD)  # one 8-bit step after normalization: 0.0150
# Photos whose centre-crop excess is even (or zero) after the resize, and two where it is odd with a half that
# torchvision rounds up: rocket 427x640 -> 224x335 (excess 111), coins 303x384 -> 224x283 (excess 59).
EVEN = ["astronaut", "chelsea", "coffee", "camera"]
ODD = ["rocket", "coins"]


@pytest.fixture(scope="module")
def photos() -> dict[str, Image.Image]:
    """The sample photos as PIL images (camera and coins are greyscale), plus a portrait (chelsea rotated)."""
    images = {name: Image.fromarray(getattr(skdata, name)()) for name in EVEN + ODD}
    images["chelsea_portrait"] = images["chelsea"].transpose(Image.Transpose.TRANSPOSE)
    return images


@pytest.fixture(scope="module")
def processor() -> CLIPProcessor:
    return CLIPProcessor()


def hf_processor(cls_name: str):
    """transformers' CLIP image processor, every setting spelled out as CLIP's."""
    cls = getattr(transformers, cls_name, None)
    if cls is None:
        pytest.skip(f"transformers {transformers.__version__} has no {cls_name}")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return cls(
            do_resize=True,
            size={"shortest_edge": 224},
            resample=Image.Resampling.BICUBIC,
            do_center_crop=True,
            crop_size={"height": 224, "width": 224},
            do_rescale=True,
            rescale_factor=1 / 255,
            do_normalize=True,
            image_mean=list(CLIP_MEAN),
            image_std=list(CLIP_STD),
            do_convert_rgb=True,
        )


def hf_pixels(proc, image: Image.Image) -> torch.Tensor:
    return torch.as_tensor(np.asarray(proc(images=image, return_tensors="np")["pixel_values"][0]))


# ---- parity -----------------------------------------------------------------------------------------------------


def test_pixel_values_equal_open_clip(photos: dict[str, Image.Image], processor: CLIPProcessor) -> None:
    transform = open_clip.image_transform(224, is_train=False)
    ours = processor(images=list(photos.values()))["pixel_values"]
    assert ours.shape == (len(photos), 3, 224, 224) and ours.dtype == torch.float32
    for i, (name, image) in enumerate(photos.items()):
        assert torch.equal(ours[i], transform(image)), name  # max |diff| 0.0, not merely float rounding


def test_pixel_values_vs_transformers_pil(photos: dict[str, Image.Image]) -> None:
    """transformers' PIL backend (`CLIPImageProcessorPil` in 5, `CLIPImageProcessor` in 4): equal, except the
    crop offset when the excess is odd - then vitkit's crop is one pixel further right / down."""
    name = "CLIPImageProcessorPil" if int(transformers.__version__.split(".")[0]) >= 5 else "CLIPImageProcessor"
    ref = hf_processor(name)
    for photo in EVEN:
        assert torch.equal(preprocess_images(photos[photo])[0], hf_pixels(ref, photos[photo])), photo
    for photo in ODD:
        ours, theirs = preprocess_images(photos[photo])[0], hf_pixels(ref, photos[photo])
        assert (ours - theirs).abs().max() > 1.0, photo  # a one-pixel shift on a photo is not small
        portrait = photos[photo].height > photos[photo].width
        shifted = (ours[:, :-1], theirs[:, 1:]) if portrait else (ours[:, :, :-1], theirs[:, :, 1:])
        assert torch.equal(*shifted), photo


def test_pixel_values_vs_transformers_default(photos: dict[str, Image.Image]) -> None:
    """transformers 5's default CLIPImageProcessor resizes tensors with torchvision's antialiased bicubic: within
    one 8-bit level of PIL's filter."""
    if int(transformers.__version__.split(".")[0]) < 5:
        pytest.skip("transformers 4's CLIPImageProcessor is the PIL one (tested above)")
    ref = hf_processor("CLIPImageProcessor")
    for photo in EVEN:
        diff = (preprocess_images(photos[photo])[0] - hf_pixels(ref, photos[photo])).abs()
        assert 0 < diff.max() <= ONE_LEVEL + 1e-6 and diff.mean() < 1e-4, photo


def test_geometry_matches_torchvision() -> None:
    from torchvision.transforms import CenterCrop, Resize

    for height, width in [(427, 640), (640, 427), (303, 384), (300, 451), (370, 371), (224, 224), (100, 1000)]:
        image = Image.new("RGB", (width, height))
        resized = Resize(224)(image)
        assert resize_shorter_side(height, width, 224) == (resized.height, resized.width)
        marked = np.zeros((resized.height, resized.width), np.uint8)
        left, top, right, bottom = center_crop_box(resized.height, resized.width, 224)
        marked[top:bottom, left:right] = 255
        assert np.asarray(CenterCrop(224)(Image.fromarray(marked))).min() == 255


# ---- inputs -----------------------------------------------------------------------------------------------------


def test_inputs_paths_arrays_and_modes(photos: dict[str, Image.Image], processor: CLIPProcessor, tmp_path) -> None:
    astronaut = photos["astronaut"]
    expected = processor(images=astronaut)["pixel_values"]
    astronaut.save(tmp_path / "a.png")
    as_path = processor(images=[tmp_path / "a.png", str(tmp_path / "a.png")])["pixel_values"]
    as_array = processor(images=np.asarray(astronaut))["pixel_values"]
    assert torch.equal(as_path, expected.expand(2, -1, -1, -1)) and torch.equal(as_array, expected)
    # Greyscale, palette and 16-bit inputs come out as 3 equal channels.
    grey = photos["camera"]
    for image in (grey, grey.convert("P"), Image.fromarray(np.asarray(grey).astype(np.uint16) * 257)):
        out = processor(images=image)["pixel_values"][0]
        levels = (out * torch.tensor(CLIP_STD)[:, None, None] + torch.tensor(CLIP_MEAN)[:, None, None]) * 255
        torch.testing.assert_close(levels[0], levels[1], atol=1e-3, rtol=0)
        torch.testing.assert_close(levels[1], levels[2], atol=1e-3, rtol=0)
    # Transparent pixels are composited onto white (as transformers' convert_to_rgb), not read as black.
    clear = Image.new("RGBA", (50, 40), (0, 0, 0, 0))
    white = processor(images=Image.new("RGB", (50, 40), "white"))["pixel_values"]
    assert torch.equal(processor(images=clear)["pixel_values"], white)


def test_exif_orientation(photos: dict[str, Image.Image], processor: CLIPProcessor, tmp_path) -> None:
    chelsea = photos["chelsea"]
    exif = Image.Exif()
    exif[0x0112] = 6  # stored sideways: rotate 90 degrees clockwise to display
    chelsea.save(tmp_path / "rotated.png", exif=exif)
    upright = chelsea.transpose(Image.Transpose.ROTATE_270)
    assert torch.equal(
        processor(images=tmp_path / "rotated.png")["pixel_values"], processor(images=upright)["pixel_values"]
    )


def test_processor_output(processor: CLIPProcessor, photos: dict[str, Image.Image]) -> None:
    out = processor(images=photos["coffee"], text=["a cup of coffee", "a cat", "a rocket"])
    assert isinstance(out, BatchFeature) and set(out) == {"pixel_values", "input_ids", "attention_mask"}
    assert out.pixel_values.shape == (1, 3, 224, 224)  # images and texts are embedded separately: counts differ
    assert out.input_ids.shape == out.attention_mask.shape == (3, 77) and out.input_ids.dtype == torch.int64
    assert torch.equal(out.input_ids, open_clip.tokenize(["a cup of coffee", "a cat", "a rocket"]))
    assert set(processor(text="a dog")) == {"input_ids", "attention_mask"}
    assert set(processor(images=photos["coffee"])) == {"pixel_values"}
    assert processor.batch_decode(out.input_ids)[1] == processor.decode(out.input_ids[1]) == "a cat"
    with pytest.raises(ConfigError, match="context_length=77"):
        processor(text=" ".join(["dog"] * 80), truncate=False)
    with pytest.raises(VitkitError, match="images, text or both"):
        processor()
    with pytest.raises(VitkitError, match="empty batch"):
        processor(images=[])
    with pytest.raises(VitkitError, match="file not found"):
        processor(images="missing.jpg")


# ---- config -----------------------------------------------------------------------------------------------------


def test_config(photos: dict[str, Image.Image]) -> None:
    cfg = CLIPProcessorConfig()
    assert (cfg.image_size, cfg.mean, cfg.std, cfg.interpolation, cfg.context_length) == (
        224,
        CLIP_MEAN,
        CLIP_STD,
        "bicubic",
        77,
    )
    with pytest.raises(AttributeError):
        cfg.image_size = 336  # type: ignore[misc]
    small = CLIPProcessor(image_size=64, context_length=16)
    out = small(images=photos["astronaut"], text="an astronaut")
    assert out.pixel_values.shape == (1, 3, 64, 64) and out.input_ids.shape == (1, 16)
    assert torch.equal(out.pixel_values[0], open_clip.image_transform(64, is_train=False)(photos["astronaut"]))
    assert CLIPProcessor.from_dict(small.to_dict()).config == small.config
    with pytest.raises(ConfigError, match="valid fields"):
        CLIPProcessor(image_sise=64)
    for bad in ({"image_size": 0}, {"interpolation": "cubic"}, {"std": (1.0, 0.0, 1.0)}, {"context_length": 1}):
        with pytest.raises(ConfigError):
            CLIPProcessorConfig(**bad)


def test_config_from_transformers(tmp_path) -> None:
    ref = hf_processor("CLIPImageProcessor").to_dict()
    assert CLIPProcessorConfig.from_hf_dict(ref) == CLIPProcessorConfig()
    large = {**ref, "size": {"shortest_edge": 336}, "crop_size": {"height": 336, "width": 336}}
    assert CLIPProcessorConfig.from_hf_dict(large).image_size == 336
    with pytest.raises(ConfigError, match="crop_size"):
        CLIPProcessorConfig.from_hf_dict({**ref, "size": {"shortest_edge": 256}})
    with pytest.raises(ConfigError, match="do_center_crop"):
        CLIPProcessorConfig.from_hf_dict({**ref, "do_center_crop": False})


def test_custom_tokenizer_is_used() -> None:
    tokenizer = CLIPTokenizer(context_length=77)
    processor = CLIPProcessor(tokenizer=tokenizer, context_length=10)
    assert processor.tokenizer is tokenizer and processor(text="a b")["input_ids"].shape == (1, 10)


def test_missing_file_is_named(processor: CLIPProcessor, tmp_path: Path) -> None:
    (tmp_path / "broken.jpg").write_bytes(b"not an image")
    with pytest.raises(VitkitError, match=r"broken\.jpg"):
        processor(images=[tmp_path / "broken.jpg"])
