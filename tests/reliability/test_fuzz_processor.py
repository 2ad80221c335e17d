"""Property-based fuzzing of the text and image preprocessing with arbitrary input.

`BertTokenizer` / `ViLTProcessor` get any unicode text (lone surrogates, control characters, 10k-character
strings, text pairs) and any image: numpy arrays of every dtype and shape (empty, 1 pixel, 1 x 3000 strips, NaN
and inf), PIL images in every mode, torch tensors. The result is either well-formed model input (ids within the
vocabulary, at most max_length tokens, [CLS] first and [SEP] last; finite pixel values whose sides are multiples
of the size divisor) or a `VitkitError`; never another exception. The classification transforms get images
smaller than one patch and get them resized to the model's size.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from PIL import Image

import vitkit
from vitkit.data import DataConfig, EvalTransform, TrainTransform
from vitkit.errors import VitkitError
from vitkit.processing.bert import BertTokenizer
from vitkit.processing.vilt import ViLTProcessor, ViLTProcessorConfig, preprocess_images, preprocess_tensors

FUZZ = settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")

TOKENIZER = BertTokenizer()
# small sizes keep the fuzzing fast; the geometry rules are the same at 384
PROCESSOR = ViLTProcessor(ViLTProcessorConfig(shorter_edge=32, size_divisor=8, max_text_len=24), TOKENIZER)

ANY_TEXT = st.text(alphabet=st.characters(codec=None, exclude_categories=()), max_size=60)  # surrogates included
TEXT = ANY_TEXT | st.text(max_size=300) | st.sampled_from(["", " ", "[MASK]", "[CLS] [SEP] [PAD]", "a" * 10_000,
                                                           "\x00\ufeff\u200b", "é" * 500, "北" * 100,
                                                           "a\ud800b", "\udfff", "\ud83d\ude00 split pair"])


def check_encoding(out: dict, batch: int, max_length: int, pair: bool) -> None:
    ids, mask, types = out["input_ids"], out["attention_mask"], out["token_type_ids"]
    assert ids.dtype == torch.long and ids.shape == mask.shape == types.shape and ids.shape[0] == batch
    assert ids.shape[1] <= max_length
    assert ((ids >= 0) & (ids < TOKENIZER.vocab_size)).all()
    for row, m in zip(ids.tolist(), mask.tolist()):
        n = sum(m)
        assert m == [1] * n + [0] * (len(m) - n)  # real tokens first, then padding
        assert row[0] == TOKENIZER.cls_token_id and row[n - 1] == TOKENIZER.sep_token_id
        assert row.count(TOKENIZER.sep_token_id) >= (2 if pair else 1)


# -------------------------------------------------------------------------------------------------- text
@FUZZ
@given(texts=st.lists(TEXT, min_size=1, max_size=4), max_length=st.integers(3, 64),
       padding=st.sampled_from(["longest", "max_length"]))
def test_tokenizer_accepts_any_unicode(texts, max_length, padding):
    try:
        out = TOKENIZER.encode(texts, max_length=max_length, padding=padding)
    except VitkitError as e:
        event(f"refused: {str(e)[:40]}")
        assert str(e)
        return
    event("accepted")
    check_encoding(out, len(texts), max_length, pair=False)
    for row in out["input_ids"]:
        TOKENIZER.decode(row)  # any ids the tokenizer produced decode again


@FUZZ
@given(a=TEXT, b=TEXT, max_length=st.integers(4, 40))
def test_tokenizer_pairs(a, b, max_length):
    try:
        out = TOKENIZER.encode([a], [b], max_length=max_length)
    except VitkitError:
        return
    check_encoding(out, 1, max_length, pair=True)


def test_text_longer_than_the_model_limit_is_truncated_with_a_warning():
    tok = BertTokenizer(max_length=12)
    with pytest.warns(UserWarning, match="truncated"):
        out = tok.encode(["word " * 500])
    check_encoding(out, 1, 12, pair=False)
    assert out["input_ids"].shape[1] == 12


# ------------------------------------------------------------------------------------------------ images
ARRAY_DTYPES = ["u1", "u2", "i1", "i2", "i4", "i8", "u4", "u8", "f2", "f4", "f8", "?", "c8", "O", "S1", "M8[s]"]
SIDE = st.integers(0, 6) | st.sampled_from([1, 2, 31, 600])


@st.composite
def image_arrays(draw) -> np.ndarray:
    dtype = np.dtype(draw(st.sampled_from(ARRAY_DTYPES)))
    h, w = draw(SIDE), draw(SIDE)
    if h * w > 5000:
        h = 1  # a long strip rather than a large image
    shape = draw(st.sampled_from([(h, w), (h, w, 1), (h, w, 2), (h, w, 3), (h, w, 4), (h, w, 5), (3, h, w), (h,),
                                  (1, h, w, 3), ()]))
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    if dtype.kind in "fc":
        with np.errstate(over="ignore"):  # 1e30 does not fit float16: inf, which is part of the point
            a = rng.normal(0, draw(st.sampled_from([0.5, 1e3, 1e30])), shape).astype(dtype)
        if a.size and draw(st.booleans()):
            a.flat[draw(st.integers(0, a.size - 1))] = draw(st.sampled_from([np.nan, np.inf, -np.inf]))
        return a
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        return rng.integers(info.min, info.max, shape, dtype=dtype, endpoint=True)
    if dtype.kind == "b":
        return rng.integers(0, 2, shape).astype(bool)
    return np.zeros(shape, dtype=dtype)


PIL_MODES = ["1", "L", "P", "RGB", "RGBA", "LA", "PA", "I", "I;16", "I;16B", "F", "CMYK", "YCbCr", "LAB", "HSV",
             "RGBX", "RGBa", "La"]


@st.composite
def pil_images(draw) -> Image.Image:
    mode = draw(st.sampled_from(PIL_MODES))
    w, h = draw(SIDE), draw(SIDE)
    if w * h > 5000:
        w = 1
    img = Image.new(mode, (w, h))
    if w * h:
        raw = np.random.default_rng(draw(st.integers(0, 2**16))).integers(0, 256, len(img.tobytes()), dtype=np.uint8)
        img.frombytes(raw.tobytes())
    if draw(st.booleans()):
        img.info["transparency"] = 0 if mode in ("L", "P", "1", "I") else (0, 0, 0)
    if draw(st.booleans()):
        img.getexif()[0x0112] = draw(st.integers(0, 9))  # orientation, also out of range
    return img


def check_pixels(out: dict, batch: int, cfg: ViLTProcessorConfig) -> None:
    pv, pm = out["pixel_values"], out["pixel_mask"]
    assert pv.dtype == torch.float32 and pv.ndim == 4 and pv.shape[:2] == (batch, 3) and torch.isfinite(pv).all()
    assert pm.shape == (batch, *pv.shape[2:]) and pm.dtype == torch.long
    assert pv.shape[2] % cfg.size_divisor == 0 and pv.shape[3] % cfg.size_divisor == 0
    assert pv.shape[2] <= cfg.longer_side and pv.shape[3] <= cfg.longer_side
    lo, hi = (0 - max(cfg.mean)) / min(cfg.std), (1 - min(cfg.mean)) / min(cfg.std)
    assert pv.min() >= lo - 1e-5 and pv.max() <= hi + 1e-5


@FUZZ
@given(images=st.lists(image_arrays() | pil_images(), min_size=1, max_size=3), text=TEXT)
def test_processor_accepts_any_array_or_pil_image_or_refuses_it_clearly(images, text):
    try:
        out = PROCESSOR(images=images, text=[text] * len(images))
    except VitkitError as e:
        event(f"refused: {str(e)[:40]}")
        assert str(e)
        return
    event("accepted")
    check_pixels(out, len(images), PROCESSOR.config)
    check_encoding(out, len(images), PROCESSOR.config.max_text_len, pair=False)


@FUZZ
@given(image=image_arrays() | pil_images())
def test_single_image_preprocessing(image):
    cfg = PROCESSOR.config
    try:
        out = preprocess_images(image, cfg)
    except VitkitError as e:
        event(f"refused: {str(e)[:40]}")
        return
    event("accepted")
    check_pixels(out, 1, cfg)


TENSOR_DTYPES = [torch.uint8, torch.int8, torch.int32, torch.int64, torch.float16, torch.bfloat16, torch.float32,
                 torch.float64, torch.bool, torch.complex64]


CHW = st.tuples(st.sampled_from([1, 3, 1, 3, 2, 4]), SIDE, SIDE).filter(lambda s: s[1] * s[2] <= 5000)
TENSOR_SHAPES = CHW | CHW.flatmap(lambda chw: st.tuples(st.integers(0, 3), st.just(chw))).map(
    lambda b_chw: (b_chw[0], *b_chw[1])) | st.lists(st.integers(0, 9), max_size=5).map(tuple)


@FUZZ
@given(dtype=st.sampled_from(TENSOR_DTYPES), shape=TENSOR_SHAPES, seed=st.integers(0, 99),
       as_list=st.booleans(), special=st.sampled_from([None, float("nan"), float("inf")]))
def test_tensor_path_accepts_any_tensor_or_refuses_it_clearly(dtype, shape, seed, as_list, special):
    g = torch.Generator().manual_seed(seed)
    x = (torch.rand(shape, generator=g) * 300).to(dtype) if dtype.is_complex or dtype.is_floating_point \
        else torch.randint(0, 2 if dtype == torch.bool else 100, shape, generator=g).to(dtype)
    if special is not None and dtype.is_floating_point and x.numel():
        x.view(-1)[0] = special
    images = list(x) if as_list and x.ndim == 4 else x
    cfg = ViLTProcessorConfig(shorter_edge=32, size_divisor=8, resample="bilinear")
    try:
        out = preprocess_tensors(images, cfg)
    except VitkitError as e:
        event(f"refused: {str(e)[:40]}")
        assert str(e)
        return
    event("accepted")
    check_pixels(out, 1 if isinstance(images, torch.Tensor) and images.ndim == 3 else len(images), cfg)


# -------------------------------------------------------------------------- classification transforms
@settings(max_examples=60, deadline=None)
@given(w=st.integers(1, 40), h=st.integers(1, 40), mode=st.sampled_from(["L", "RGB", "RGBA", "P", "I;16", "1"]),
       in_chans=st.sampled_from([1, 3]), img_size=st.sampled_from([8, 16, (12, 20)]),
       crop_pct=st.sampled_from([0.875, 1.0]), seed=st.integers(0, 99))
def test_transforms_resize_any_image_to_the_model_size(w, h, mode, in_chans, img_size, crop_pct, seed):
    """Tiny images (1 x 1, smaller than one patch) and odd modes come out at exactly the model's size."""
    cfg = DataConfig(img_size=img_size, in_chans=in_chans, mean=(0.5,) * in_chans, std=(0.5,) * in_chans,
                     crop_pct=crop_pct)
    img = Image.new(mode, (w, h))
    size = cfg.size_hw
    assert EvalTransform(cfg)(img).shape == (in_chans, *size)
    train = TrainTransform(cfg, generator=torch.Generator().manual_seed(seed), randaugment="rand-m9-mstd0.5-inc1")
    assert train(img).shape == (in_chans, *size)
    shift = TrainTransform(cfg, generator=torch.Generator().manual_seed(seed), randaugment=None, shift=2)
    assert shift(img).shape == (in_chans, *size)


def test_image_without_pixels_is_a_vitkit_error():
    cfg = DataConfig(img_size=8)
    for transform in (EvalTransform(cfg), TrainTransform(cfg)):
        with pytest.raises(VitkitError, match="0x3 pixels"):
            transform(Image.new("RGB", (0, 3)))


def test_predict_on_a_one_pixel_image(tmp_path):
    """A 1 x 1 image (far smaller than one 2 x 2 patch grid of 16 x 16) is resized and classified."""
    model = vitkit.create_model("vit_pico_patch2_16", num_classes=3, labels=("a", "b", "c"))
    path = tmp_path / "dot.png"
    Image.new("RGBA", (1, 1), (255, 0, 0, 128)).save(path)
    from vitkit.inference.classify import predict

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        (preds,) = predict(model, [path], top_k=2)
    assert [p["label"] for p in preds] != [] and abs(sum(p["score"] for p in preds) - 1) < 1 + 1e-6


def test_lone_surrogates_are_replaced_not_a_type_error():
    """Text decoded from JSON with an escaped half of a surrogate pair ("\\ud800") used to raise the Rust
    tokenizer's TypeError; a split pair is joined, a lone half becomes U+FFFD, which BERT's normaliser drops."""
    out = TOKENIZER.encode(["a\ud800 b"], return_tensors=False)
    assert out == TOKENIZER.encode(["a\ufffd b"], return_tensors=False)
    assert TOKENIZER.tokenize("\ud83d\ude00") == TOKENIZER.tokenize("\U0001f600")
