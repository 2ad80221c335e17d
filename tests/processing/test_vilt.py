"""vitkit.processing against Hugging Face transformers' PIL ViltImageProcessor and ViltProcessor.

transformers 5's `ViltImageProcessor` is the torchvision backend (it differs from the PIL one by up to 2/255);
the reference here is the PIL backend, `ViltImageProcessorPil` (transformers 4's `ViltImageProcessor`), with
`do_convert_rgb=True` so that it accepts non-RGB modes at all (without it, HF raises on L, P, RGBA, ...).
"""

from __future__ import annotations

import json
import shutil
import warnings
from importlib import resources
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image, ImageOps

from vitkit.errors import ConfigError, VitkitError
from vitkit.processing.vilt import (
    ViLTProcessor,
    ViLTProcessorConfig,
    is_single_image,
    load_rgb,
    normalize_pad,
    pad_batch,
    preprocess_images,
    preprocess_tensors,
    resize_output_size,
)

transformers = pytest.importorskip("transformers")
try:  # transformers 5
    from transformers.models.vilt import image_processing_pil_vilt as hf_vilt

    HFImageProcessor = hf_vilt.ViltImageProcessorPil
except ImportError:  # transformers 4: the PIL implementation is ViltImageProcessor itself
    from transformers.models.vilt import image_processing_vilt as hf_vilt

    HFImageProcessor = transformers.ViltImageProcessor

VOCAB = Path(str(resources.files("vitkit").joinpath("assets", "bert-base-uncased-vocab.txt")))
ATOL = 1e-5  # both sides compute (v / 255 - 0.5) / 0.5 of the same uint8 pixels; only float rounding differs
LEVEL = 2 / 255  # one 8-bit level after normalization with std 0.5


def _photos() -> dict[str, Image.Image]:
    try:
        from skimage import data
    except ImportError:  # synthetic stand-ins with edges, gradients and noise
        rng = np.random.default_rng(0)
        yy, xx = np.mgrid[0:300, 0:451]
        base = np.stack([xx * 255 // 450, yy * 255 // 299, (xx // 40 + yy // 40) % 2 * 255], -1).astype(np.uint8)
        noisy = np.clip(base + rng.normal(0, 20, base.shape), 0, 255).astype(np.uint8)
        return {"gradient": Image.fromarray(base), "noisy": Image.fromarray(noisy[:, :400])}
    return {
        "astronaut": Image.fromarray(data.astronaut()),  # 512 x 512
        "chelsea": Image.fromarray(data.chelsea()),  # 451 x 300
        "coffee": Image.fromarray(data.coffee()),  # 600 x 400
    }


PHOTOS = _photos()
PHOTO = next(iter(PHOTOS.values()))


@pytest.fixture(scope="module")
def hf_images():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return HFImageProcessor(do_resize=True, size={"shortest_edge": 384}, size_divisor=32, do_convert_rgb=True)


@pytest.fixture(scope="module")
def hf_processor(hf_images, tmp_path_factory: pytest.TempPathFactory):
    # BertTokenizerFast(vocab_file=...) silently builds a 5-token vocabulary in transformers 5; a local
    # directory with vocab.txt loads the real one.
    directory = tmp_path_factory.mktemp("hf_bert")
    shutil.copy(VOCAB, directory / "vocab.txt")
    (directory / "tokenizer_config.json").write_text(json.dumps({"do_lower_case": True}))
    tokenizer = transformers.BertTokenizerFast.from_pretrained(str(directory))
    assert tokenizer.vocab_size == 30522
    return transformers.ViltProcessor(image_processor=hf_images, tokenizer=tokenizer)


def _hf_pixels(hf_images, images) -> dict[str, torch.Tensor]:
    out = hf_images(images, return_tensors="pt")
    return {"pixel_values": out["pixel_values"], "pixel_mask": out["pixel_mask"]}


def _assert_same(ours: dict, ref: dict, atol: float = ATOL) -> None:
    assert ours["pixel_values"].dtype == torch.float32 and ours["pixel_mask"].dtype == torch.long
    assert ours["pixel_values"].shape == ref["pixel_values"].shape
    torch.testing.assert_close(ours["pixel_values"], ref["pixel_values"].float(), atol=atol, rtol=0)
    assert torch.equal(ours["pixel_mask"], ref["pixel_mask"].long())


def _with_alpha(image: Image.Image) -> Image.Image:
    """RGBA with a horizontal alpha ramp (0 .. 255) and fully transparent black top rows."""
    rgba = image.convert("RGBA")
    alpha = np.tile(np.linspace(0, 255, rgba.width).astype(np.uint8), (rgba.height, 1))
    alpha[:20] = 0
    rgb = np.asarray(rgba)[..., :3].copy()
    rgb[:20] = 0
    return Image.fromarray(np.dstack([rgb, alpha]), mode="RGBA")


def _palette_with_transparency(image: Image.Image) -> Image.Image:
    p = image.convert("P")
    p.info["transparency"] = 0
    return p


MODES = {
    "L": lambda im: im.convert("L"),
    "P": lambda im: im.convert("P"),
    "P+transparency": _palette_with_transparency,
    "RGBA": _with_alpha,
    "LA": lambda im: _with_alpha(im).convert("LA"),
    "CMYK": lambda im: im.convert("CMYK"),
    "1": lambda im: im.convert("1"),
    "I (8-bit values)": lambda im: im.convert("I"),
}


# ---- geometry ----------------------------------------------------------------------------------------------------


def test_resize_output_size_examples() -> None:
    assert ViLTProcessorConfig().longer_side == 639  # int(1333 / 800 * 384)
    assert resize_output_size(480, 640) == (384, 512)
    assert resize_output_size(300, 500) == (352, 608)  # 384 x 640 exceeds 639: capped, then floored
    assert resize_output_size(384, 384) == (384, 384)
    assert resize_output_size(4000, 3000) == (512, 384)
    assert resize_output_size(10, 3000) == (32, 608)  # would be 0 px high in HF: kept at one patch


@settings(max_examples=300, deadline=None)
@given(height=st.integers(1, 6000), width=st.integers(1, 6000), size=st.sampled_from([224, 384, 512]))
def test_resize_output_size_matches_hf(height: int, width: int, size: int) -> None:
    longer = int(hf_vilt.MAX_LONGER_EDGE / hf_vilt.MAX_SHORTER_EDGE * size)
    dummy = np.broadcast_to(np.zeros((), np.uint8), (3, height, width))  # only its shape is read
    ref = hf_vilt.get_resize_output_image_size(
        dummy, shorter=size, longer=longer, size_divisor=32, input_data_format="channels_first"
    )
    ours = resize_output_size(height, width, ViLTProcessorConfig(shorter_edge=size))
    if min(ref) > 0:
        assert ours == tuple(ref)
    else:  # HF would resize to a 0-pixel side; vitkit keeps one patch
        assert ours == tuple(max(32, r) for r in ref)
    assert max(ours) <= max(longer // 32 * 32, 32) and ours[0] % 32 == 0 and ours[1] % 32 == 0


# ---- PIL path vs HF ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(PHOTOS))
def test_photo_matches_hf(hf_images, name: str) -> None:
    image = PHOTOS[name]
    ours = preprocess_images(image)
    _assert_same(ours, _hf_pixels(hf_images, image))
    assert ours["pixel_mask"].all()
    assert ours["pixel_values"].min() >= -1 and ours["pixel_values"].max() <= 1


@pytest.mark.parametrize("mode", list(MODES))
def test_modes_match_hf(hf_images, mode: str) -> None:
    image = MODES[mode](PHOTO)
    _assert_same(preprocess_images(image), _hf_pixels(hf_images, image))


def test_alpha_composited_on_white() -> None:
    rgb = load_rgb(_with_alpha(PHOTO))
    assert rgb.mode == "RGB"
    assert np.asarray(rgb)[:20].min() == 255  # transparent black -> white, as HF's convert_to_rgb


def test_wide_and_tall_images_match_hf(hf_images) -> None:
    photo = np.asarray(PHOTO)
    wide = Image.fromarray(np.ascontiguousarray(photo[100:160]))  # ~60 x 450+: the longer-side cap binds
    tall = Image.fromarray(np.ascontiguousarray(photo[:, 100:140]))
    for image in (wide, tall):
        ours = preprocess_images(image)
        _assert_same(ours, _hf_pixels(hf_images, image))
        assert max(ours["pixel_values"].shape[-2:]) == 608  # 639 floored to a multiple of 32
    assert preprocess_images(Image.new("RGB", (3000, 10)))["pixel_values"].shape == (1, 3, 32, 608)


def test_batch_of_two_sizes_matches_hf(hf_images) -> None:
    images = [PHOTO, Image.fromarray(np.asarray(PHOTO)[50:250, 30:330])]
    ours = preprocess_images(images)
    _assert_same(ours, _hf_pixels(hf_images, images))
    shapes = [preprocess_images(im)["pixel_values"].shape[-2:] for im in images]
    assert ours["pixel_values"].shape[-2:] == tuple(max(s[i] for s in shapes) for i in range(2))
    for i, (h, w) in enumerate(shapes):  # padding is bottom/right, zeros, and unmasked
        assert ours["pixel_mask"][i, :h, :w].all() and ours["pixel_mask"][i].sum() == h * w
        assert ours["pixel_values"][i][:, ~ours["pixel_mask"][i].bool()].abs().sum() == 0


def test_numpy_and_path_inputs(hf_images, tmp_path: Path) -> None:
    expected = preprocess_images(PHOTO)
    array = np.asarray(PHOTO)
    _assert_same(preprocess_images(array), expected, atol=0)
    _assert_same(preprocess_images(array.astype(np.float32) / 255), expected, atol=0)  # floats read as [0, 1]
    _assert_same(preprocess_images(array), _hf_pixels(hf_images, array))
    gray = np.asarray(PHOTO.convert("L"))
    _assert_same(preprocess_images(gray), preprocess_images(PHOTO.convert("L")), atol=0)
    _assert_same(preprocess_images(gray[..., None]), preprocess_images(PHOTO.convert("L")), atol=0)
    path = tmp_path / "photo.png"
    PHOTO.save(path)
    _assert_same(preprocess_images(path), expected, atol=0)
    _assert_same(preprocess_images([str(path), array]), preprocess_images([PHOTO, PHOTO]), atol=0)


# ---- high bit depth: HF clips these to white, vitkit scales ----------------------------------------------------


def _gradient16(height: int = 300, width: int = 451) -> np.ndarray:
    ramp = np.linspace(0, 65535, width)[None, :] * np.linspace(0.2, 1.0, height)[:, None]
    return np.rint(ramp).astype(np.uint16)


def test_16bit_scaled_not_clipped(hf_images, tmp_path: Path) -> None:
    values = _gradient16()
    image16 = Image.fromarray(values)
    assert image16.mode == "I;16"
    as8bit = Image.fromarray(np.rint(values / 257).astype(np.uint8), mode="L")
    ours = preprocess_images(image16)
    # What vitkit does equals HF on the properly scaled 8-bit image (HF itself clips 16-bit values: ~all white).
    _assert_same(ours, _hf_pixels(hf_images, as8bit))
    x = ours["pixel_values"]
    assert -1.0 <= x.min() < -0.9 and 0.9 < x.max() <= 1.0  # full range used, dark and bright ends both there
    assert abs(x.mean().item()) < 0.5  # a mid-grey ramp, not white (white would be +1)
    # The same through a 16-bit PNG file, through mode "I", and through a uint16 array.
    path = tmp_path / "gray16.png"
    image16.save(path)
    assert Image.open(path).mode in ("I;16", "I")
    _assert_same(preprocess_images(path), ours, atol=0)
    _assert_same(preprocess_images(image16.convert("I")), ours, atol=0)
    _assert_same(preprocess_images(values), ours, atol=0)


def test_float_image_mode() -> None:
    values = np.linspace(0, 1, 300 * 451, dtype=np.float32).reshape(300, 451)
    as8bit = Image.fromarray(np.rint(values * 255).astype(np.uint8), mode="L")
    _assert_same(preprocess_images(Image.fromarray(values, mode="F")), preprocess_images(as8bit), atol=0)


# ---- EXIF --------------------------------------------------------------------------------------------------------


def _two_colour(width: int = 64, height: int = 32) -> Image.Image:
    """Left half red, right half blue: rotation is visible in where the colours end up."""
    a = np.zeros((height, width, 3), np.uint8)
    a[:, : width // 2, 0] = 255
    a[:, width // 2 :, 2] = 255
    return Image.fromarray(a)


@pytest.mark.parametrize("orientation", [3, 6, 8])
def test_exif_rotated_jpeg_is_rotated(tmp_path: Path, orientation: int) -> None:
    exif = Image.Exif()
    exif[0x0112] = orientation  # 3: rotate 180, 6: rotate 90 clockwise to display, 8: 90 counter-clockwise
    path = tmp_path / "rotated.jpg"
    _two_colour().save(path, exif=exif.tobytes(), quality=95)
    with Image.open(path) as raw:
        assert raw.size == (64, 32)
    image = np.asarray(load_rgb(path)).astype(int)
    red_top = {3: False, 6: True, 8: False}[orientation]  # where the stored left (red) half lands
    if orientation == 3:
        assert image.shape == (32, 64, 3)
        assert image[16, 5, 2] > 200 and image[16, 58, 0] > 200  # blue now on the left, red on the right
    else:
        assert image.shape == (64, 32, 3)
        top, bottom = image[5, 16], image[58, 16]
        assert (top[0] > 200) == red_top and (bottom[0] > 200) != red_top
    assert np.array_equal(image, np.asarray(ImageOps.exif_transpose(Image.open(path)).convert("RGB")))
    expected_shape = (1, 3, 320, 608) if orientation == 3 else (1, 3, 608, 320)
    assert preprocess_images(path)["pixel_values"].shape == expected_shape


# ---- tensor path -------------------------------------------------------------------------------------------------


def _as_tensor(image: Image.Image) -> torch.Tensor:
    return torch.from_numpy(np.array(image.convert("RGB"))).permute(2, 0, 1)  # [3, H, W] uint8


def _assert_close_to_pil(ours: dict, ref: dict) -> None:
    """The tensor path resizes in float, PIL in fixed point: at most one 8-bit level apart, on few pixels."""
    assert ours["pixel_values"].shape == ref["pixel_values"].shape
    assert torch.equal(ours["pixel_mask"], ref["pixel_mask"])
    diff = (ours["pixel_values"] - ref["pixel_values"]).abs()
    assert diff.max().item() <= LEVEL + ATOL, diff.max().item()
    assert diff.mean().item() < 1e-4, diff.mean().item()


def test_tensor_path_close_to_pil_path() -> None:
    images = list(PHOTOS.values())
    _assert_close_to_pil(preprocess_tensors([_as_tensor(im) for im in images]), preprocess_images(images))
    # floats in [0, 1], a [B, 3, H, W] batch of one size, and grayscale [1, H, W]
    crops = [Image.fromarray(np.asarray(PHOTO)[:250, :300]), Image.fromarray(np.asarray(PHOTO)[40:290, 10:310])]
    batch = torch.stack([_as_tensor(im) for im in crops]).float() / 255
    _assert_close_to_pil(preprocess_tensors(batch), preprocess_images(crops))
    gray = PHOTO.convert("L")
    gray_tensor = torch.from_numpy(np.array(gray))[None]  # [1, H, W]
    _assert_close_to_pil(preprocess_tensors(gray_tensor), preprocess_images(gray))


def test_tensor_path_stays_on_device_and_validates() -> None:
    x = _as_tensor(PHOTO)
    out = ViLTProcessor().preprocess_tensors(x)
    assert out["pixel_values"].dtype == torch.float32 and out["pixel_values"].device == x.device
    assert out["pixel_mask"].dtype == torch.long
    with pytest.raises(ConfigError, match="no torch equivalent"):
        preprocess_tensors(x, ViLTProcessorConfig(resample="lanczos"))
    with pytest.raises(VitkitError, match="C = 1 or 3"):
        preprocess_tensors(torch.zeros(4, 32, 32))
    with pytest.raises(VitkitError, match="preprocess_tensors"):
        preprocess_images(x)  # type: ignore[arg-type]


# ---- ViLTProcessor -----------------------------------------------------------------------------------------------

QUESTIONS = [
    "How many cats are there?",
    "What is the astronaut holding in her hand, and is it café colored?",
    " ".join(["why"] * 100) + "?",  # truncated to 40 tokens
]


@pytest.mark.filterwarnings("ignore:text longer than max_length")
def test_processor_matches_hf(hf_processor) -> None:
    images = list(PHOTOS.values())[:3]
    questions = QUESTIONS[: len(images)]
    ours = ViLTProcessor()(images, questions)
    ref = hf_processor(
        images=images, text=questions, padding="longest", truncation=True, max_length=40, return_tensors="pt"
    )
    assert set(ours) == {"input_ids", "attention_mask", "token_type_ids", "pixel_values", "pixel_mask"}
    for key in ("input_ids", "attention_mask", "token_type_ids"):
        assert ours[key].dtype == torch.long
        assert torch.equal(ours[key], ref[key]), key
    assert ours["input_ids"].shape[1] <= 40
    _assert_same(ours, ref)


def test_processor_single_and_partial_inputs() -> None:
    processor = ViLTProcessor()
    out = processor(PHOTO, "What is this?")
    assert out["input_ids"].shape[0] == 1 and out["pixel_values"].shape[0] == 1
    assert set(processor(text="text only")) == {"input_ids", "attention_mask", "token_type_ids"}
    assert set(processor(images=PHOTO)) == {"pixel_values", "pixel_mask"}
    assert processor(text=["a b"], padding="max_length")["input_ids"].shape == (1, 40)
    assert processor(text="unaffable dog", return_word_ids=True)["word_ids"].tolist() == [[-1, 0, 0, 0, 1, -1]]
    with pytest.raises(VitkitError, match="2 images but 1 texts"):
        processor([PHOTO, PHOTO], ["one question"])
    with pytest.raises(ConfigError, match="return_tensors"):
        processor(PHOTO, "q", return_tensors="np")
    with pytest.raises(VitkitError):
        processor()


def test_pad_batch_pads_bottom_right_and_masks_real_pixels() -> None:
    images = [torch.ones(2, 3, 5), torch.full((2, 4, 2), 2.0)]
    padded, mask = pad_batch(images)
    assert padded.shape == (2, 2, 4, 5) and mask.shape == (2, 4, 5) and mask.dtype == torch.long
    assert torch.equal(padded[0, :, :3, :5], images[0]) and padded[0, :, 3:].abs().sum() == 0
    assert torch.equal(padded[1, :, :4, :2], images[1]) and padded[1, :, :, 2:].abs().sum() == 0
    assert mask[0].sum() == 15 and mask[1].sum() == 8 and mask[0, :3, :].all() and mask[1, :, :2].all()
    with pytest.raises(VitkitError, match="empty"):
        pad_batch([])


def test_normalize_pad_is_the_processors_last_step() -> None:
    """Datasets that decode once and normalize per batch see exactly what the processor gives for inference."""
    config = ViLTProcessorConfig(shorter_edge=64, mean=(0.4, 0.5, 0.6), std=(0.2, 0.3, 0.4))
    images = [PHOTO, PHOTO.resize((90, 200))]
    resized = []
    for im in images:
        h, w = resize_output_size(im.height, im.width, config)
        resized.append(torch.from_numpy(np.asarray(im.convert("RGB").resize((w, h), Image.Resampling.BICUBIC))
                                        .transpose(2, 0, 1).copy()))  # [3, h, w] uint8
    pixels, mask = normalize_pad(resized, config)
    expected = preprocess_images(images, config)
    assert torch.equal(pixels, expected["pixel_values"]) and torch.equal(mask, expected["pixel_mask"])
    with pytest.raises(VitkitError, match="uint8"):
        normalize_pad([torch.zeros(3, 4, 4)], config)


def test_is_single_image() -> None:
    assert is_single_image(PHOTO) and is_single_image("cat.jpg") and is_single_image(Path("cat.jpg"))
    assert is_single_image(np.zeros((4, 4))) and is_single_image(np.zeros((4, 4, 3), np.uint8))
    assert not is_single_image([PHOTO]) and not is_single_image(np.zeros((2, 4, 4, 3)))


def test_config_round_trip_and_overrides(tmp_path: Path) -> None:
    config = ViLTProcessorConfig(shorter_edge=224, longer_edge=400, mean=(0.4, 0.5, 0.6), resample="bilinear",
                                 max_text_len=32)
    assert ViLTProcessorConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config
    processor = ViLTProcessor(shorter_edge=256, max_text_len=24)
    assert processor.config.shorter_edge == 256 and processor.tokenizer.max_length == 24
    h, w = PHOTO.size[1], PHOTO.size[0]
    assert processor(PHOTO, "q")["pixel_values"].shape[-2:] == resize_output_size(h, w, processor.config)
    with pytest.raises(ConfigError, match="valid fields"):
        ViLTProcessor(sise=256)
    with pytest.raises(ConfigError, match="unknown field"):
        ViLTProcessorConfig.from_dict({"shorter_edge": 384, "colour": "red"})
    with pytest.raises(ConfigError, match="resample"):
        ViLTProcessorConfig(resample="cubic")

    processor = ViLTProcessor(config)
    processor.save_pretrained(tmp_path / "saved")
    again = ViLTProcessor.from_pretrained(tmp_path / "saved")
    assert again.config == config
    a, b = processor(PHOTO, QUESTIONS[1]), again(PHOTO, QUESTIONS[1])
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_old_setting_names_still_work() -> None:
    """Earlier versions named the settings size / max_size / max_length; ViLTConfig's names replaced them."""
    new = ViLTProcessorConfig(shorter_edge=224, longer_edge=400, max_text_len=32)
    with pytest.warns(DeprecationWarning) as record:
        old = ViLTProcessorConfig(size=224, max_size=400, max_length=32)
    assert old == new and old.to_dict() == new.to_dict()
    assert sorted(str(w.message).split("'")[1:4:2] for w in record) == [
        ["max_length", "max_text_len"], ["max_size", "longer_edge"], ["size", "shorter_edge"]]
    with pytest.warns(DeprecationWarning) as record:
        processor = ViLTProcessor(size=256, max_length=24)
    assert len(record) == 2
    assert processor.config.shorter_edge == 256 and processor.tokenizer.max_length == 24
    with pytest.warns(DeprecationWarning, match="'max_size' is now 'longer_edge'"):
        assert new.max_size == 400
    with pytest.warns(DeprecationWarning):
        assert (new.size, new.max_length) == (224, 32)
    with pytest.raises(ConfigError, match="give only shorter_edge"):
        ViLTProcessorConfig(shorter_edge=300, size=224)


def test_processor_saved_with_the_old_setting_names_loads(tmp_path: Path) -> None:
    """A vitkit_processor.json as earlier versions wrote it (old keys) loads silently, to the same processor."""
    (tmp_path / "vitkit_processor.json").write_text(json.dumps({
        "size": 224, "max_size": 400, "size_divisor": 32, "mean": [0.4, 0.5, 0.6], "std": [0.5, 0.5, 0.5],
        "resample": "bilinear", "max_length": 32, "lowercase": True,
    }))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        loaded = ViLTProcessor.from_pretrained(tmp_path)
    assert loaded.config == ViLTProcessorConfig(shorter_edge=224, longer_edge=400, mean=(0.4, 0.5, 0.6),
                                                resample="bilinear", max_text_len=32)
    assert loaded.tokenizer.max_length == 32
    loaded.save_pretrained(tmp_path / "again")  # written back with the current names only
    saved = json.loads((tmp_path / "again" / "vitkit_processor.json").read_text())
    assert {"shorter_edge", "longer_edge", "max_text_len"} <= set(saved) and not {"size", "max_size"} & set(saved)


def test_transformers_spelling_of_the_class_names() -> None:
    from vitkit.processing import ViLTProcessor as primary
    from vitkit.processing import ViltProcessor, ViltProcessorConfig

    assert ViltProcessor is primary is ViLTProcessor and ViltProcessorConfig is ViLTProcessorConfig


def test_from_hf_directories(hf_processor, tmp_path: Path) -> None:
    # What transformers writes (5: processor_config.json + tokenizer.json; 4: preprocessor_config.json + vocab.txt)
    hf_processor.save_pretrained(str(tmp_path / "hf"))
    loaded = ViLTProcessor.from_pretrained(tmp_path / "hf")
    assert loaded.config == ViLTProcessorConfig()
    a, b = loaded(PHOTO, QUESTIONS[1]), ViLTProcessor()(PHOTO, QUESTIONS[1])
    assert all(torch.equal(a[k], b[k]) for k in a)
    # A hub checkpoint's preprocessor_config.json (e.g. dandelin/vilt-b32-finetuned-vqa), written out by hand.
    legacy = {
        "do_normalize": True,
        "do_resize": True,
        "feature_extractor_type": "ViltFeatureExtractor",
        "image_mean": [0.5, 0.5, 0.5],
        "image_std": [0.5, 0.5, 0.5],
        "resample": 3,
        "size": 384,
        "size_divisor": 32,
    }
    assert ViLTProcessorConfig.from_hf_dict(legacy) == ViLTProcessorConfig()
    (tmp_path / "hub").mkdir()
    (tmp_path / "hub" / "preprocessor_config.json").write_text(json.dumps(legacy))
    assert ViLTProcessor.from_pretrained(tmp_path / "hub").tokenizer.vocab_size == 30522
    with pytest.raises(ConfigError, match="do_pad"):
        ViLTProcessorConfig.from_hf_dict({**legacy, "do_pad": False})
    with pytest.raises(VitkitError, match=r"no vitkit_processor\.json"):
        ViLTProcessor.from_pretrained(tmp_path)


def test_bad_images(tmp_path: Path) -> None:
    with pytest.raises(VitkitError, match=r"missing\.jpg"):
        load_rgb(tmp_path / "missing.jpg")
    (tmp_path / "broken.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(VitkitError, match=r"broken\.jpg"):
        preprocess_images(str(tmp_path / "broken.jpg"))
    with pytest.raises(VitkitError, match="HWC"):
        load_rgb(np.zeros((3, 32, 32), np.uint8))  # CHW is not accepted: ambiguous with HWC
    with pytest.raises(VitkitError, match="dtype"):
        load_rgb(np.zeros((32, 32, 3), np.int32))
    with pytest.raises(VitkitError, match="expected a PIL image"):
        load_rgb(42)  # type: ignore[arg-type]
    with pytest.raises(VitkitError, match="empty"):
        preprocess_images([])
