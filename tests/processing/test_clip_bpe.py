"""vitkit's CLIPTokenizer against open_clip's tokenizer (the one CLIP checkpoints were trained with) and
transformers' CLIPTokenizer / CLIPTokenizerFast built from the same merges.

vitkit equals open_clip on every text (a corpus and a hypothesis property over random unicode). It equals
transformers except where the module docstring's table says why not; `DIFFERENCES` asserts each of those cases,
so a change in either reference fails here.
"""

from __future__ import annotations

import gzip
import json
import warnings
from importlib import resources
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from vitkit.errors import ConfigError, VitkitError
from vitkit.processing import BatchFeature, CLIPTokenizer
from vitkit.processing.clip_bpe import EOT_TOKEN, NUM_MERGES, SOT_TOKEN, clean_text

open_clip = pytest.importorskip("open_clip")
transformers = pytest.importorskip("transformers")
regex = pytest.importorskip("regex")
from open_clip.tokenizer import basic_clean, whitespace_clean  # noqa: E402  (after the importorskip)

SOT, EOT = 49406, 49407
LONG = " ".join(f"word{i % 10} and more" for i in range(200))  # ~800 tokens: truncated

# Texts on which all three tokenizers give the same ids.
CORPUS = [
    "A photo of a cat.",
    'Hello, world! It\'s 3.14 -- (really?) [yes]; {no} "quoted" ... #hash @at 100% $5 ~tilde^ `tick` a_b|c\\d',
    "There are 12345 apples, 3.5 kg, 1e-5 and 1,000,000 people in 2021.",
    "$1,299.99 (20% off!!!) ?!?! --- ***",
    "café naïve résumé Ångström façade Straße ÉCOLE",
    "cafe\u0301 nai\u0308ve combining e\u0301\u0301 and a\u0323\u0302",  # NFC in both references
    "emoji 😀 👍🏽 🇫🇷 👨\u200d👩\u200d👧 ❤️ and symbols ™ © ∑ → ½ ∞",
    "北京欢迎你 日本語のテキスト 한국어 텍스트 中文和English混合",
    "multiple    spaces\t\ttabs\n\nnewlines\r\nand\u00a0nbsp\u3000ideographic  end  ",
    "MiXeD CaSe TeXt WITH CAPS",
    "don't it's we'll they're I've I'm she'd DON'T IT'S We'Ll",
    "it''s 'quoted' rock'n'roll o'clock",
    "https://example.com/path/to/page.html?query=1&b=2#frag and www.test.org",
    "user.name+tag@example.co.uk",
    "zero\u200bwidth joiner\u200d and soft\u00adhyphen",
    "Привет мир Ελληνικά العربية עברית हिन्दी ไทย",
    "",
    "   \t\n ",
    "a" * 300,
    "supercalifragilisticexpialidocious antidisestablishmentarianism",
    LONG,
]

# (text, what vitkit and open_clip read it as, why): transformers reads the text as written instead.
DIFFERENCES = [
    (
        "fish &amp; chips &lt;b&gt;bold&lt;/b&gt; &#39;q&#39; &quot;x&quot;",
        "fish & chips <b>bold</b> 'q' \"x\"",
        "HTML entities: html.unescape",
    ),
    ("AT&amp;amp;T", "at&t", "entities unescaped twice"),
    (
        "https://example.com/search?q=cats&region=us",
        "https://example.com/search?q=cats®ion=us",
        "html.unescape reads legacy entities without ';' (&reg) even inside URLs",
    ),
    ("don’t it’s “curly”", "don't it's \"curly\"", "ftfy straightens curly quotes (then 't is a contraction)"),
    ("ﬁne ﬂour", "fine flour", "ftfy expands Latin ligatures"),
    ("ＦＵＬＬ　ｗｉｄｔｈ ＡＢＣ１２３", "full width abc123", "ftfy folds full-width characters"),
    ("cafÃ© crÃ¨me", "café crème", "ftfy fixes UTF-8 mojibake"),
    ("\x85nel", "…nel", "ftfy decodes C1 controls as Windows-1252"),
    ("ctrl\x1cchar bell\x07", "ctrlchar bell", "ftfy removes control characters"),
    ("ΟΔΟΣ ΣΟΦΙΑΣ", "οδος σοφιας", "str.lower's final sigma"),
]


def _hf_dir(directory: Path, tok: CLIPTokenizer) -> Path:
    """vocab.json and merges.txt (transformers' files) written from the merges vitkit ships."""
    (directory / "vocab.json").write_text(json.dumps(tok.get_vocab(), ensure_ascii=False), encoding="utf-8")
    merges_gz = resources.files("vitkit").joinpath("assets", "bpe_simple_vocab_16e6.txt.gz").read_bytes()
    lines = gzip.decompress(merges_gz).decode("utf-8").split("\n")[1 : NUM_MERGES + 1]
    (directory / "merges.txt").write_text("#version: 0.2\n" + "\n".join(lines) + "\n", encoding="utf-8")
    return directory


@pytest.fixture(scope="module")
def tok() -> CLIPTokenizer:
    return CLIPTokenizer()


@pytest.fixture(scope="module")
def hf_dir(tmp_path_factory: pytest.TempPathFactory, tok: CLIPTokenizer) -> Path:
    return _hf_dir(tmp_path_factory.mktemp("hf_clip"), tok)


@pytest.fixture(scope="module", params=["CLIPTokenizer", "CLIPTokenizerFast"])
def hf(request: pytest.FixtureRequest, hf_dir: Path):
    """transformers' tokenizer from vocab.json + merges.txt (in transformers 5 both names are one class)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = getattr(transformers, request.param).from_pretrained(str(hf_dir))
    assert ref.vocab_size == 49408 and ref.pad_token_id == EOT  # transformers pads with <|endoftext|>
    return ref


def hf_ids(ref, texts: list[str]) -> list[list[int]]:
    enc = ref(texts, truncation=True, max_length=77)
    return [list(ids) for ids in enc["input_ids"]]


def real_ids(batch: BatchFeature) -> list[list[int]]:
    """Each row's ids up to the padding."""
    return [row[: int(n)].tolist() for row, n in zip(batch["input_ids"], batch["attention_mask"].sum(1))]


# ---- parity -----------------------------------------------------------------------------------------------------


def test_vocabulary(tok: CLIPTokenizer, hf) -> None:
    assert tok.vocab_size == len(tok) == 49408
    assert (tok.sot_token_id, tok.eot_token_id, tok.pad_token_id) == (SOT, EOT, 0)
    vocab = tok.get_vocab()
    assert vocab[SOT_TOKEN] == SOT and vocab[EOT_TOKEN] == EOT and vocab["!"] == 0 and vocab["a</w>"] == 320
    assert vocab == hf.get_vocab()
    ours = {t: i for t, i in vocab.items() if i < SOT}
    assert ours == {t: i for t, i in open_clip.tokenizer._tokenizer.encoder.items() if i < SOT}


def test_corpus_equals_open_clip(tok: CLIPTokenizer) -> None:
    ours = tok(CORPUS)
    assert isinstance(ours, BatchFeature)
    assert ours["input_ids"].dtype == torch.int64 and ours["input_ids"].shape == (len(CORPUS), 77)
    torch.testing.assert_close(ours["input_ids"], open_clip.tokenize(CORPUS), rtol=0, atol=0)
    torch.testing.assert_close(ours["input_ids"], open_clip.get_tokenizer("ViT-B-32")(CORPUS), rtol=0, atol=0)
    torch.testing.assert_close(ours["attention_mask"], (ours["input_ids"] != 0).long(), rtol=0, atol=0)


def test_corpus_equals_transformers(tok: CLIPTokenizer, hf) -> None:
    assert real_ids(tok(CORPUS)) == hf_ids(hf, CORPUS)


@pytest.mark.parametrize(("text", "read_as", "why"), DIFFERENCES, ids=[d[2] for d in DIFFERENCES])
def test_differences_from_transformers(tok: CLIPTokenizer, hf, text: str, read_as: str, why: str) -> None:
    """vitkit and open_clip read `text` as `read_as` (the cleaning step); transformers reads it as written."""
    ours, equivalent = tok([text, read_as]), open_clip.tokenize([text, read_as])
    torch.testing.assert_close(ours["input_ids"], equivalent, rtol=0, atol=0)
    assert real_ids(ours)[0] == real_ids(ours)[1] == hf_ids(hf, [read_as])[0]
    assert hf_ids(hf, [text])[0] != real_ids(ours)[0], why


def test_final_sigma_is_per_character_in_transformers(tok: CLIPTokenizer, hf) -> None:
    assert hf_ids(hf, ["ΟΔΟΣ"])[0] == real_ids(tok(["οδοσ"]))[0] != real_ids(tok(["ΟΔΟΣ"]))[0]


def test_split_differences(tok: CLIPTokenizer, hf) -> None:
    """Where the pre-tokenizers split differently: transformers' pieces equal vitkit's with spaces inserted."""
    sidetic = "\U00010940"  # a letter since Unicode 17
    if not regex.fullmatch(r"\p{L}", sidetic):
        pytest.skip(f"regex {regex.__version__} predates Unicode 17")
    for text, hf_reading in ((f"a{sidetic}b", f"a {sidetic} b"), ("x'ſ", "x' ſ")):
        ours = tok([text])
        torch.testing.assert_close(ours["input_ids"], open_clip.tokenize([text]), rtol=0, atol=0)
        assert hf_ids(hf, [text])[0] == real_ids(tok([hf_reading]))[0] != real_ids(ours)[0]


def test_typed_special_tokens_are_text(tok: CLIPTokenizer, hf) -> None:
    """A special token's name typed in a text is text to vitkit; each reference makes its own names special."""
    text = "a <|endoftext|> b <|startoftext|> c"
    ours = real_ids(tok([text]))[0]
    assert ours.count(EOT) == 1 and ours.count(SOT) == 1
    assert ours == open_clip.tokenize([text])[0][: len(ours)].tolist()
    a, b, c = tok.encode("a b c")
    assert hf_ids(hf, [text])[0] == [SOT, a, EOT, b, SOT, c, EOT]
    oc_names = "a <end_of_text> b"  # open_clip 3.x's names for the same ids
    assert real_ids(tok([oc_names]))[0] == hf_ids(hf, [oc_names])[0]
    assert open_clip.tokenize([oc_names])[0][:5].tolist() == [SOT, a, EOT, b, EOT]


_UNICODE = st.text(st.characters(blacklist_categories=("Cs",)), max_size=40)
_MIXED = st.lists(
    st.one_of(
        st.sampled_from(["a", "The", "DOG", "don't", "it's", "&amp;", "&lt;", "&#39;", "&region", "’", "“", "ﬁ", "Σ"]),
        st.sampled_from(["café", "e\u0301", "😀", "🇫🇷", "漢字", "かな", "한국", "123", "3.5", "...", "--", "\u200b"]),
        st.text(st.characters(max_codepoint=0x7F), max_size=6),
        st.text(st.characters(blacklist_categories=("Cs",)), max_size=4),
    ),
    max_size=12,
).map(lambda parts: " ".join(parts))


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=_UNICODE)
def test_random_unicode_equals_open_clip(tok: CLIPTokenizer, text: str) -> None:
    assert clean_text(text) == whitespace_clean(basic_clean(text)).lower()
    torch.testing.assert_close(tok(text)["input_ids"], open_clip.tokenize(text), rtol=0, atol=0)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=_MIXED)
def test_random_mixed_text_equals_open_clip(tok: CLIPTokenizer, text: str) -> None:
    assert clean_text(text) == whitespace_clean(basic_clean(text)).lower()
    torch.testing.assert_close(tok(text)["input_ids"], open_clip.tokenize(text), rtol=0, atol=0)


def test_surrogates_equal_open_clip(tok: CLIPTokenizer) -> None:
    """A lone surrogate (e.g. from a JSON decoder) becomes U+FFFD and a split pair is joined (ftfy), as in open_clip."""
    texts = ["a\ud800b", "pair \ud83d\ude00 split"]
    torch.testing.assert_close(tok(texts)["input_ids"], open_clip.tokenize(texts), rtol=0, atol=0)
    assert tok.encode(texts[1]) == tok.encode("pair 😀 split")


@settings(max_examples=50, deadline=None)
@given(text=st.text(st.sampled_from("\t\n\r\x0b\x0c\x00\x1b\x7f &;#<>amplt1AZz'\"-"), max_size=30))
def test_ascii_cleaning_equals_open_clip(text: str) -> None:
    """Plain ASCII skips ftfy; controls, '&' and '\\r' must take the full path."""
    assert clean_text(text) == whitespace_clean(basic_clean(text)).lower()


# ---- behaviour ----------------------------------------------------------------------------------------------------


def test_truncation_keeps_end_of_text(tok: CLIPTokenizer, hf) -> None:
    ours = tok([LONG, "short"])
    ids, mask = ours["input_ids"], ours["attention_mask"]
    assert ids[0, 0] == SOT and ids[0, -1] == EOT and (ids[0] == EOT).sum() == 1 and mask[0].all()
    assert ids[0, :-1].tolist() == [SOT, *tok.encode(LONG)[:75]]
    assert real_ids(ours) == hf_ids(hf, [LONG, "short"])
    short = tok(LONG, context_length=8)["input_ids"][0].tolist()
    assert short == [SOT, *tok.encode(LONG)[:6], EOT]


def test_too_long_without_truncation_raises(tok: CLIPTokenizer) -> None:
    fits = " ".join(["dog"] * 75)  # 75 tokens + SOT + EOT = 77
    assert tok(fits, truncate=False)["attention_mask"].sum() == 77
    with pytest.raises(ConfigError, match=r"text 1 is 78 tokens .* context_length=77"):
        tok(["dog", fits + " dog"], truncate=False)


def test_empty_and_mixed_batch(tok: CLIPTokenizer) -> None:
    out = tok(["", "a photo of a dog", "a"], context_length=16)
    assert out["input_ids"].shape == out["attention_mask"].shape == (3, 16)
    assert out["input_ids"][0].tolist() == [SOT, EOT] + [0] * 14
    assert out["attention_mask"].sum(1).tolist() == [2, 7, 3]
    # exactly one EOT per row, at the last real position: argmax pooling and first-EOT pooling agree
    eot_at = out["attention_mask"].sum(1) - 1
    assert torch.equal(out["input_ids"].argmax(-1), eot_at)
    assert torch.equal((out["input_ids"] == EOT).int().argmax(-1), eot_at)
    assert tok([])["input_ids"].shape == (0, 77)
    assert "attention_mask" not in tok("a", return_attention_mask=False)


def test_encode_tokenize_decode(tok: CLIPTokenizer, hf) -> None:
    assert tok.encode("") == []
    assert tok.encode("Hello, World!") == [3306, 267, 1002, 256]
    assert tok.tokenize("Hello, World!") == ["hello</w>", ",</w>", "world</w>", "!</w>"]
    ids = tok(CORPUS)["input_ids"]
    for row, hf_row in zip(ids, hf_ids(hf, CORPUS)):
        assert tok.decode(row) == hf.decode(hf_row, skip_special_tokens=True)
        real = [i for i in row.tolist() if i not in (SOT, EOT, 0)]
        assert tok.decode(row) == open_clip.tokenizer._tokenizer.decode(real).strip()
    assert tok.decode(tok("a b")["input_ids"][0], skip_special_tokens=False).startswith("<|startoftext|>a b <|end")
    assert tok.batch_decode(tok(["a dog", "two cats"])["input_ids"]) == ["a dog", "two cats"]
    jellyfish = tok.encode("🪼")  # three tokens for four UTF-8 bytes
    assert tok.decode(jellyfish) == "🪼" and tok.decode(jellyfish[:1]) == "\ufffd"  # cut mid-character
    with pytest.raises(VitkitError, match="outside the vocabulary"):
        tok.decode([49408])
    with pytest.raises(VitkitError, match="batch_decode"):
        tok.decode(ids)


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(words=st.lists(st.text(st.characters(whitelist_categories=("Ll", "Lu", "Lo")), min_size=1), max_size=8))
def test_decode_round_trips_words(tok: CLIPTokenizer, words: list[str]) -> None:
    """Words of letters come back lower-cased and single-spaced (punctuation and digits come back spaced; so do
    combining marks that lower-casing creates: "İ".lower() is "i" + U+0307)."""
    assume(all(regex.fullmatch(r"\p{L}+", clean_text(w)) for w in words))
    text = "\t ".join(words)
    assert tok.decode(tok.encode(text)) == clean_text(text)


def test_bad_input(tok: CLIPTokenizer, tmp_path: Path) -> None:
    with pytest.raises(VitkitError, match="strings"):
        tok(["a", 3])  # type: ignore[list-item]
    with pytest.raises(ConfigError, match="context_length"):
        tok("a", context_length=1)
    with pytest.raises(ConfigError, match="cannot read"):
        CLIPTokenizer(tmp_path / "missing.txt")
    (tmp_path / "short.txt").write_text("#version: 0.2\ni n\nt h\n")
    with pytest.raises(ConfigError, match="holds 2 merges"):
        CLIPTokenizer(tmp_path / "short.txt")
    (tmp_path / "bad.txt").write_text("#version: 0.2\ni n\nt h x\n")
    with pytest.raises(ConfigError, match="merge 2"):
        CLIPTokenizer(tmp_path / "bad.txt", num_merges=2)


def test_merges_file_and_small_vocabulary(tok: CLIPTokenizer, hf_dir: Path) -> None:
    """transformers' merges.txt loads to the same tokenizer; fewer merges make a smaller vocabulary."""
    from_txt = CLIPTokenizer(hf_dir / "merges.txt")
    assert torch.equal(from_txt(CORPUS)["input_ids"], tok(CORPUS)["input_ids"])
    small = CLIPTokenizer(hf_dir / "merges.txt", num_merges=100, context_length=10)
    assert small.vocab_size == 512 + 100 + 2 and (small.sot_token_id, small.eot_token_id) == (612, 613)
    out = small("the cat")["input_ids"][0].tolist()
    assert out[0] == 612 and 613 in out and len(out) == 10 and max(out) == 613
    assert small.decode(out) == "the cat"
