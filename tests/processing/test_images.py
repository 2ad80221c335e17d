"""vitkit.images: every PIL mode to 8-bit RGB / L, alpha compositing, 16-bit scaling, EXIF orientation, and
errors that name the file."""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image, features

from vitkit.errors import ConfigError, VitkitError
from vitkit.processing.images import (
    DatasetError,
    ImageLoadError,
    channels_to_mode,
    image_size,
    load_image,
    pil_resampling,
    rgb_to_luma,
    to_mode,
)


def save(img: Image.Image, path: Path, **kwargs) -> Path:
    img.save(path, **kwargs)
    return path


def arr(img: Image.Image) -> np.ndarray:
    return np.asarray(img).astype(np.int64)


# ------------------------------------------------------------------------------------------ plain modes
def test_rgb_png_roundtrip_is_exact(tmp_path):
    a = np.random.default_rng(0).integers(0, 256, (7, 9, 3), dtype=np.uint8)
    img = load_image(save(Image.fromarray(a), tmp_path / "x.png"))
    assert img.mode == "RGB" and img.size == (9, 7)
    np.testing.assert_array_equal(np.asarray(img), a)


def test_grey_to_rgb_replicates_and_rgb_to_grey_is_pil_luma(tmp_path):
    g = np.random.default_rng(1).integers(0, 256, (5, 6), dtype=np.uint8)
    rgb = load_image(save(Image.fromarray(g), tmp_path / "g.png"))
    np.testing.assert_array_equal(np.asarray(rgb), np.repeat(g[:, :, None], 3, axis=2))
    c = np.random.default_rng(2).integers(0, 256, (5, 6, 3), dtype=np.uint8)
    grey = load_image(save(Image.fromarray(c), tmp_path / "c.png"), "L")
    assert grey.mode == "L"
    np.testing.assert_array_equal(np.asarray(grey), np.asarray(Image.fromarray(c).convert("L")))


def test_rgb_to_luma_is_bit_exact_with_pil():
    a = np.random.default_rng(3).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    a[0, :8] = [[0, 0, 0], [255, 255, 255], [255, 0, 0], [0, 255, 0], [0, 0, 255], [1, 2, 3], [254, 1, 128], [7, 7, 7]]
    np.testing.assert_array_equal(rgb_to_luma(a), np.asarray(Image.fromarray(a).convert("L")))


def test_bilevel_becomes_0_and_255(tmp_path):
    img = Image.new("1", (4, 2), 0)
    img.putpixel((1, 0), 1)
    out = load_image(save(img, tmp_path / "b.png"), "L")
    assert out.mode == "L"
    assert set(np.unique(np.asarray(out)).tolist()) == {0, 255}
    assert out.getpixel((1, 0)) == 255 and out.getpixel((0, 0)) == 0


def test_palette_without_transparency_expands_the_palette(tmp_path):
    img = Image.new("P", (3, 1))
    img.putpalette([10, 20, 30, 200, 100, 50] + [0] * 762)
    img.putdata([0, 1, 0])
    out = load_image(save(img, tmp_path / "p.png"))
    assert np.asarray(out).tolist() == [[[10, 20, 30], [200, 100, 50], [10, 20, 30]]]


@pytest.mark.parametrize("background, expected", [("white", (255, 255, 255)), ("black", (0, 0, 0)),
                                                  ((1, 2, 3), (1, 2, 3))])
def test_palette_transparency_is_composited(tmp_path, background, expected):
    img = Image.new("P", (2, 1))
    img.putpalette([10, 20, 30, 200, 100, 50] + [0] * 762)
    img.putdata([0, 1])
    path = save(img, tmp_path / "pt.png", transparency=0)
    out = load_image(path, background=background)
    assert out.getpixel((0, 0)) == expected
    assert out.getpixel((1, 0)) == (200, 100, 50)


def test_gif_transparency_and_first_frame(tmp_path):
    frames = [Image.new("P", (4, 4), i) for i in range(2)]
    for f in frames:
        f.putpalette([255, 0, 0, 0, 0, 255] + [0] * 762)
    path = tmp_path / "anim.gif"
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=50, loop=0)
    assert load_image(path).getpixel((0, 0)) == (255, 0, 0)  # the first frame, not the second (blue)
    path2 = tmp_path / "t.gif"
    frames[0].save(path2, transparency=0)
    assert load_image(path2).getpixel((0, 0)) == (255, 255, 255)


def test_grey_and_rgb_trns_transparency(tmp_path):
    Image.fromarray(np.array([[0, 100]], np.uint8)).save(tmp_path / "l.png", transparency=0)
    assert np.asarray(load_image(tmp_path / "l.png", "L")).tolist() == [[255, 100]]
    rgb = Image.new("RGB", (2, 1), (5, 6, 7))
    rgb.putpixel((1, 0), (9, 9, 9))
    rgb.save(tmp_path / "rgb.png", transparency=(5, 6, 7))
    assert np.asarray(load_image(tmp_path / "rgb.png", background="black")).tolist() == [[[0, 0, 0], [9, 9, 9]]]


@pytest.mark.parametrize("alpha", [0, 64, 128, 255])
def test_rgba_is_alpha_composited_on_white_by_default(tmp_path, alpha):
    rgba = Image.new("RGBA", (2, 2), (200, 40, 0, alpha))
    white = np.asarray(load_image(save(rgba, tmp_path / "a.png")))[0, 0]
    black = np.asarray(load_image(tmp_path / "a.png", background="black"))[0, 0]
    a = alpha / 255
    np.testing.assert_allclose(white, [200 * a + 255 * (1 - a), 40 * a + 255 * (1 - a), 255 * (1 - a)], atol=1)
    np.testing.assert_allclose(black, [200 * a, 40 * a, 0], atol=1)


def test_fully_transparent_pixels_do_not_leak_their_hidden_colour(tmp_path):
    # Plain convert("RGB") would show the (0, 255, 0) stored under alpha 0.
    rgba = Image.new("RGBA", (2, 2), (0, 255, 0, 0))
    assert load_image(save(rgba, tmp_path / "hidden.png")).getpixel((0, 0)) == (255, 255, 255)
    assert load_image(tmp_path / "hidden.png", "L").getpixel((0, 0)) == 255


def test_la_grey_alpha(tmp_path):
    la = Image.merge("LA", [Image.new("L", (2, 2), 100), Image.new("L", (2, 2), 128)])
    out = load_image(save(la, tmp_path / "la.png"), "L")
    assert abs(out.getpixel((0, 0)) - (100 * 128 / 255 + 255 * 127 / 255)) <= 1


@pytest.mark.parametrize("mode", ["RGBa", "La", "PA", "RGBX", "YCbCr", "HSV", "LAB", "CMYK"])
def test_every_other_mode_converts(mode):
    img = Image.new(mode, (3, 2))
    for target in ("RGB", "L"):
        out = to_mode(img, target)
        assert out.mode == target and out.size == (3, 2)


def test_cmyk_jpeg(tmp_path):
    cmyk = Image.new("CMYK", (8, 8), (255, 0, 0, 0))  # pure cyan ink
    out = load_image(save(cmyk, tmp_path / "c.jpg", quality=95))
    r, g, b = out.getpixel((4, 4))
    assert r < 30 and g > 225 and b > 225


# ------------------------------------------------------------------------------------------- high bit depth
def test_16bit_png_scales_by_16_bits_never_clips_to_white(tmp_path):
    a = np.array([[0, 1000, 32768, 65535]], dtype=np.uint16)
    img = Image.fromarray(a)
    assert img.mode == "I;16"
    out = load_image(save(img, tmp_path / "d.png"), "L")
    assert np.asarray(out).tolist() == [[0, 4, 128, 255]]  # PIL's convert("L") gives [0, 255, 255, 255]
    rgb = load_image(tmp_path / "d.png")
    assert rgb.getpixel((2, 0)) == (128, 128, 128)


def test_16bit_tiff(tmp_path):
    a = (np.arange(16, dtype=np.uint16).reshape(4, 4) * 4369)  # 0 .. 65535
    out = load_image(save(Image.fromarray(a), tmp_path / "d.tif"), "L")
    np.testing.assert_array_equal(np.asarray(out), np.arange(16).reshape(4, 4) * 17)


@pytest.mark.parametrize("mode", ["I;16B", "I;16L"])
def test_16bit_byte_orders(mode):
    raw = np.array([0, 65535, 25700], dtype=">u2" if mode == "I;16B" else "<u2").tobytes()
    img = Image.frombytes(mode, (3, 1), raw)
    assert np.asarray(to_mode(img, "L")).tolist() == [[0, 255, 100]]


def test_32bit_int_without_declared_depth_uses_the_smallest_depth_holding_the_values():
    sixteen = Image.fromarray(np.array([[0, 65535, 32768]], dtype=np.int32))
    assert sixteen.mode == "I"
    assert np.asarray(to_mode(sixteen, "L")).tolist() == [[0, 255, 128]]
    eight = Image.fromarray(np.array([[0, 255, 128]], dtype=np.int32))
    assert np.asarray(to_mode(eight, "L")).tolist() == [[0, 255, 128]]
    signed = Image.fromarray(np.array([[-100, 0, 100]], dtype=np.int32))
    assert np.asarray(to_mode(signed, "L")).tolist() == [[0, 127, 255]]


def test_bit_depth_override_for_12_bit_data(tmp_path):
    img = Image.fromarray(np.array([[0, 4095, 2048]], dtype=np.uint16))
    path = save(img, tmp_path / "twelve.png")
    assert np.asarray(load_image(path, "L")).tolist() == [[0, 16, 8]]  # dark, as a 16-bit file
    assert np.asarray(load_image(path, "L", bit_depth=12)).tolist() == [[0, 255, 128]]


def test_float_images():
    unit = Image.fromarray(np.array([[0.0, 0.5, 1.0]], dtype=np.float32))
    assert np.asarray(to_mode(unit, "L")).tolist() == [[0, 128, 255]]
    wide = Image.fromarray(np.array([[-2.0, 0.0, 2.0, np.nan]], dtype=np.float32))
    assert np.asarray(to_mode(wide, "L")).tolist() == [[0, 128, 255, 128]]


def test_float_image_with_a_signalling_nan_converts_without_a_warning():
    a = np.array([[0.0, 0.5, 1.0]], dtype=np.float32)
    a.view(np.uint32)[0, 0] = 0x7F800001  # a signalling NaN: casting it raises numpy's "invalid" flag
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert np.asarray(to_mode(Image.fromarray(a), "L")).tolist() == [[0, 128, 255]]


# --------------------------------------------------------------------------------------------- orientation
@pytest.mark.parametrize("ext", ["jpg", "png", "webp"])
def test_exif_orientation_is_applied(tmp_path, ext):
    if ext == "webp" and not features.check("webp"):
        pytest.skip("Pillow built without WebP")
    a = np.zeros((20, 40, 3), dtype=np.uint8)
    a[:, :20] = (255, 0, 0)  # left half red, right half blue
    a[:, 20:] = (0, 0, 255)
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    path = save(Image.fromarray(a), tmp_path / f"o.{ext}", exif=exif.tobytes())
    img = load_image(path)
    assert img.size == (20, 40)  # width and height swapped
    top, bottom = np.asarray(img)[5, 10].astype(int), np.asarray(img)[35, 10].astype(int)
    assert top[0] > 200 and top[2] < 60  # the left (red) half is now on top
    assert bottom[2] > 200 and bottom[0] < 60


def test_corrupt_exif_does_not_stop_loading(tmp_path):
    path = tmp_path / "badexif.jpg"
    Image.new("RGB", (8, 4), (9, 9, 9)).save(path, exif=b"Exif\x00\x00II*\x00\x08\x00\x00\x00\xff\xff")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Pillow's own "Corrupt EXIF data" warning
        assert load_image(path).size == (8, 4)


# ----------------------------------------------------------------------------------------------- formats
@pytest.mark.parametrize("ext", ["bmp", "webp", "gif", "jpeg", "JPG", "tiff"])
def test_formats_load(tmp_path, ext):
    if ext == "webp" and not features.check("webp"):
        pytest.skip("Pillow built without WebP")
    a = np.full((6, 5, 3), (30, 120, 220), dtype=np.uint8)
    img = load_image(save(Image.fromarray(a), tmp_path / f"f.{ext}"))
    assert img.mode == "RGB" and img.size == (5, 6)
    assert np.abs(np.asarray(img).astype(int) - a).max() <= 40  # lossy formats and GIF's palette


def test_bytes_and_file_objects():
    buf = io.BytesIO()
    Image.new("RGB", (3, 3), (1, 2, 3)).save(buf, format="PNG")
    assert load_image(buf.getvalue()).getpixel((0, 0)) == (1, 2, 3)
    buf.seek(0)
    assert load_image(buf).getpixel((0, 0)) == (1, 2, 3)


# ------------------------------------------------------------------------------------------------- errors
def _png_bytes() -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def _jpg_bytes() -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(buf, format="JPEG")
    return buf.getvalue()


@pytest.mark.parametrize(
    "name, content",
    [
        ("truncated.png", _png_bytes()[:-200]),
        ("truncated.jpg", _jpg_bytes()[: len(_jpg_bytes()) // 2]),
        ("header_only.png", _png_bytes()[:40]),
        ("text.jpg", b"<html>404 Not Found</html>"),
        ("empty.png", b""),
    ],
)
def test_bad_files_raise_a_vitkit_error_naming_the_file(tmp_path, name, content):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(ImageLoadError) as info:
        load_image(path)
    assert name in str(info.value)
    assert isinstance(info.value, VitkitError) and isinstance(info.value, DatasetError)
    assert Path(info.value.path).name == name


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(ImageLoadError, match=r"not found.*nope\.png"):
        load_image(tmp_path / "nope.png")
    with pytest.raises(ImageLoadError, match="directory"):
        load_image(tmp_path)
    with pytest.raises(ImageLoadError, match=r"nope\.png"):
        image_size(tmp_path / "nope.png")


def test_image_size_reads_the_header_only(tmp_path):
    path = save(Image.new("RGB", (13, 7)), tmp_path / "s.png")
    assert image_size(path) == (13, 7)


def test_bad_arguments():
    img = Image.new("RGB", (2, 2))
    with pytest.raises(ConfigError, match="mode"):
        to_mode(img, "RGBA")
    with pytest.raises(ConfigError, match="background"):
        to_mode(Image.new("RGBA", (2, 2)), "RGB", background="grey")
    with pytest.raises(ConfigError, match="background"):
        load_image(b"not even an image", background=(1, 2))
    assert channels_to_mode(1) == "L" and channels_to_mode(3) == "RGB"
    with pytest.raises(ConfigError, match="in_chans=4"):
        channels_to_mode(4)


def test_pil_resampling_names_the_field_and_the_choices():
    assert pil_resampling("bicubic") == Image.Resampling.BICUBIC
    with pytest.raises(ConfigError, match=r"unknown resample 'cubic'; choose one of nearest, bilinear, bicubic"):
        pil_resampling("cubic", field="resample")
    with pytest.raises(ConfigError, match="interpolation"):
        pil_resampling(["bicubic"])  # an unhashable value read from a config file


# -------------------------------------------------------------------------------------------- properties
MODES = ["1", "L", "P", "RGB", "RGBA", "LA", "I;16", "I", "F", "CMYK"]


@settings(max_examples=60, deadline=None)
@given(mode=st.sampled_from(MODES), w=st.integers(1, 9), h=st.integers(1, 9), seed=st.integers(0, 2**16),
       target=st.sampled_from(["RGB", "L"]))
def test_any_mode_gives_target_mode_and_size(mode, w, h, seed, target):
    rng = np.random.default_rng(seed)
    if mode in ("I;16",):
        img = Image.fromarray(rng.integers(0, 65536, (h, w), dtype=np.uint16))
    elif mode == "I":
        img = Image.fromarray(rng.integers(0, 65536, (h, w)).astype(np.int32))
    elif mode == "F":
        img = Image.fromarray(rng.random((h, w), dtype=np.float32))
    else:  # random bytes in the mode's own layout (4 bytes per pixel is enough for every mode listed)
        img = Image.frombytes(mode, (w, h), rng.integers(0, 256, 4 * w * h, dtype=np.uint8).tobytes())
    out = to_mode(img, target)
    assert out.mode == target and out.size == (w, h)


@settings(max_examples=40, deadline=None)
@given(value=st.integers(0, 65535))
def test_16bit_scaling_is_monotone_and_rounds(value):
    out = to_mode(Image.fromarray(np.array([[value]], dtype=np.uint16)), "L").getpixel((0, 0))
    assert out == round(value * 255 / 65535)
