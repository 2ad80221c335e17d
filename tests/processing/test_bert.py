"""vitkit.text.BertTokenizer against Hugging Face transformers' BERT tokenizers built from the same vocabulary.

Two references: transformers' fast tokenizer (the `tokenizers`-backed `BertTokenizerFast`, which is what
`BertTokenizer` is in transformers 5) and the independent pure-Python WordPiece (`BertTokenizerLegacy` in
transformers 5, `BertTokenizer` in 4).
"""

from __future__ import annotations

import json
import shutil
import warnings
from importlib import resources
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vitkit.errors import ConfigError, VitkitError
from vitkit.processing.bert import BertTokenizer

transformers = pytest.importorskip("transformers")

VOCAB = Path(str(resources.files("vitkit").joinpath("assets", "bert-base-uncased-vocab.txt")))
BERT_VOCAB_SIZE = 30522

TEXTS = [
    "What color is the cat?",
    "HeLLo WoRLD, MiXeD CaSe",
    "café naïve résumé Ångström façade",
    'Hello, world! It\'s 3.14 -- (really?) [yes]; {no} "quoted" ... #hash @at 100% $5',
    "北京欢迎你 and 日本語 text with 中文",
    "There are 12345 apples, 3.5 kg and 1,000,000 people in 2021.",
    "unaffable antidisestablishmentarianism supercalifragilisticexpialidocious",
    "",
    "   ",
    "tabs\tand\nnewlines\r\nand\u00a0nbsp and zero\u200bwidth",
    "what is [MASK] on the table?",
    "emoji 😀 and symbols ™ © ∑ → ½",
    "a" * 150,  # longer than WordPiece's 100-character limit: one [UNK]
]


@pytest.fixture(scope="module")
def hf_fast(tmp_path_factory: pytest.TempPathFactory):
    """transformers' fast BERT tokenizer, loaded from a local directory holding vocab.txt.

    Trap (transformers 5): `BertTokenizerFast(vocab_file=...)` ignores the file and builds a 5-token vocabulary
    that maps every word to [UNK]; `from_pretrained` on a directory does read vocab.txt.
    """
    directory = tmp_path_factory.mktemp("hf_bert")
    shutil.copy(VOCAB, directory / "vocab.txt")
    (directory / "tokenizer_config.json").write_text(json.dumps({"do_lower_case": True}))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tok = transformers.BertTokenizerFast.from_pretrained(str(directory))
    assert tok.vocab_size == BERT_VOCAB_SIZE
    assert tok.convert_tokens_to_ids("hello") == 7592
    return tok


@pytest.fixture(scope="module")
def hf_slow():
    """transformers' pure-Python WordPiece (a second, independent implementation)."""
    cls = getattr(transformers, "BertTokenizerLegacy", None)
    if cls is None:  # transformers 4: BertTokenizer is the slow one
        cls = transformers.BertTokenizer
    tok = cls(vocab_file=str(VOCAB))
    assert tok.vocab_size == BERT_VOCAB_SIZE
    assert tok.convert_tokens_to_ids("hello") == 7592
    return tok


@pytest.fixture(scope="module")
def tok() -> BertTokenizer:
    return BertTokenizer()


def _hf(tokenizer, texts, **kwargs) -> dict[str, list[list[int]]]:
    kwargs = {"padding": "longest", "truncation": True, "max_length": 40, "return_token_type_ids": True, **kwargs}
    kwargs["return_attention_mask"] = True
    out = tokenizer(texts, **kwargs)
    return {k: out[k] for k in ("input_ids", "attention_mask", "token_type_ids")}


def _ours(tokenizer: BertTokenizer, texts, **kwargs) -> dict[str, list[list[int]]]:
    out = tokenizer.encode(texts, return_tensors=False, **kwargs)
    return {k: out[k] for k in ("input_ids", "attention_mask", "token_type_ids")}


def test_vocabulary(tok: BertTokenizer) -> None:
    assert tok.vocab_size == len(tok) == BERT_VOCAB_SIZE
    assert (tok.pad_token_id, tok.unk_token_id, tok.cls_token_id, tok.sep_token_id, tok.mask_token_id) == (
        0,
        100,
        101,
        102,
        103,
    )
    assert tok.convert_tokens_to_ids(["hello", "world", "not-a-token"]) == [7592, 2088, 100]
    assert tok.convert_tokens_to_ids("[MASK]") == 103
    assert tok.convert_ids_to_tokens([101, 7592, 102]) == ["[CLS]", "hello", "[SEP]"]
    assert tok.convert_ids_to_tokens(torch.tensor([2088])) == ["world"]


@pytest.mark.parametrize("text", TEXTS)
def test_single_text_matches_hf(tok: BertTokenizer, hf_fast, hf_slow, text: str) -> None:
    ours = _ours(tok, text)
    assert ours == _hf(hf_fast, [text])
    assert ours == _hf(hf_slow, [text])
    assert tok.tokenize(text) == hf_fast.tokenize(text)


def test_known_ids(tok: BertTokenizer) -> None:
    """Pinned ids, independent of transformers: accents stripped, CJK split per character, ## pieces."""
    ids = tok.encode("Café naïve unaffable 北京")["input_ids"][0].tolist()
    assert tok.convert_ids_to_tokens(ids) == ["[CLS]", "cafe", "naive", "una", "##ffa", "##ble", "北", "京", "[SEP]"]
    assert tok.encode("")["input_ids"].tolist() == [[101, 102]]


def test_batch_padding_matches_hf(tok: BertTokenizer, hf_fast, hf_slow) -> None:
    out = tok.encode(TEXTS)
    assert set(out) == {"input_ids", "attention_mask", "token_type_ids"}
    for v in out.values():
        assert v.dtype == torch.long and v.shape == out["input_ids"].shape
    longest = max(len(tok.encode(t)["input_ids"][0]) for t in TEXTS)
    assert out["input_ids"].shape == (len(TEXTS), longest)
    ours = {k: v.tolist() for k, v in out.items()}
    assert ours == _hf(hf_fast, TEXTS) == _hf(hf_slow, TEXTS)

    short = ["a dog", "a very small brown dog on the grass"]
    out = tok.encode(short)
    assert out["input_ids"].shape == (2, 10)  # padded to the longest, not to max_length
    assert out["attention_mask"][0].tolist() == [1] * 4 + [0] * 6
    assert out["input_ids"][0, 4:].eq(tok.pad_token_id).all()
    assert _ours(tok, short) == _hf(hf_fast, short)
    padded = _ours(tok, short, padding="max_length", max_length=16)
    assert padded == _hf(hf_fast, short, padding="max_length", max_length=16)
    assert len(padded["input_ids"][0]) == 16


def test_long_question_is_truncated_with_sep(tok: BertTokenizer, hf_fast) -> None:
    question = " ".join(f"word{i}" for i in range(100)) + "?"
    fresh = BertTokenizer()
    with pytest.warns(UserWarning, match="truncated"):
        out = fresh.encode(question)
    assert out["input_ids"].shape == (1, 40)
    assert out["input_ids"][0, 0] == fresh.cls_token_id and out["input_ids"][0, -1] == fresh.sep_token_id
    assert out["attention_mask"].all()
    assert _ours(fresh, question) == _hf(hf_fast, [question])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # warned once per tokenizer: a second long text is silent
        fresh.encode([question, question])
    untruncated = fresh.encode(question, truncation=False)
    assert untruncated["input_ids"].shape[1] > 100
    assert fresh.encode(question, max_length=12)["input_ids"].shape == (1, 12)


@pytest.mark.filterwarnings("ignore:text longer than max_length")
def test_pairs_match_hf(tok: BertTokenizer, hf_fast, hf_slow) -> None:
    a = ["What is on the table?", "short", "a " * 30]
    b = ["A cat and two apples.", "a much longer second segment " * 5, "b " * 30]
    ours = _ours(tok, a, text_pair=b)
    assert ours == _hf(hf_fast, a, text_pair=b)
    # Equal-length segments over the limit: the fast tokenizer (and vitkit) trims the first segment one token
    # more, the slow one the second; transformers' two implementations disagree, vitkit follows the fast one.
    assert _ours(tok, a[:2], text_pair=b[:2]) == _hf(hf_slow, a[:2], text_pair=b[:2])
    assert 1 in ours["token_type_ids"][0]
    with pytest.raises(VitkitError, match="pairs"):
        tok.encode(a, text_pair=b[:2])


def test_word_ids_match_hf(tok: BertTokenizer, hf_fast) -> None:
    texts = ["unaffable cats don't sleep", "北京 is big", ""]
    ours = tok.encode(texts, return_word_ids=True)["word_ids"]
    ref = hf_fast(texts, padding="longest")
    for i in range(len(texts)):
        expected = [-1 if w is None else w for w in ref.word_ids(i)]
        assert ours[i].tolist() == expected
    # The three pieces of "unaffable" share word 0: whole-word masking can mask them together.
    assert ours[0, 1:4].tolist() == [0, 0, 0]


def test_decode_matches_bert(tok: BertTokenizer, hf_slow) -> None:
    for text in ["Hello, world! It's 3.14 and I don't know.", "unaffable café", "what is [MASK]?"]:
        ids = tok.encode(text)["input_ids"][0]
        assert tok.decode(ids) == hf_slow.decode(ids.tolist(), skip_special_tokens=True)
        assert tok.decode(ids, skip_special_tokens=False).startswith("[CLS]")
    batch = tok.encode(["a cat", "two dogs"])["input_ids"]
    assert tok.batch_decode(batch) == ["a cat", "two dogs"]


# Common scripts only: for unassigned or exotic code points the Python and Rust Unicode tables differ
# (transformers' fast and slow tokenizers disagree there too).
ALPHABET = (
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 ,.?!'\"-()[]{}:;/\\@#$%&*+=<>_~"
    "éèàüïçñÉÅøßæœ北京中文日本語한국어кириллицаελληνικά\t\n\r\u00a0\u200b–—…😀👍"
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=st.text(alphabet=ALPHABET, max_size=80))
def test_random_text_matches_hf(tok: BertTokenizer, hf_fast, hf_slow, text: str) -> None:
    ours = _ours(tok, text)
    assert ours == _hf(hf_fast, [text])
    assert ours == _hf(hf_slow, [text])


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=st.text(max_size=40))
def test_any_unicode_matches_hf_fast(tok: BertTokenizer, hf_fast, text: str) -> None:
    assert _ours(tok, text) == _hf(hf_fast, [text])


def test_save_and_reload(tok: BertTokenizer, tmp_path: Path) -> None:
    path = tok.save_vocabulary(tmp_path)
    assert path.read_text(encoding="utf-8") == VOCAB.read_text(encoding="utf-8")
    again = BertTokenizer.from_dict({**tok.to_dict(), "vocab_file": str(path)})
    text = ["Is the café open?", "unaffable"]
    assert _ours(again, text) == _ours(tok, text)
    assert BertTokenizer.from_dict(tok.to_dict()).vocab_size == BERT_VOCAB_SIZE


def test_tokenizer_json_vocabulary(tok: BertTokenizer, hf_fast, tmp_path: Path) -> None:
    """A transformers 5 save has tokenizer.json but no vocab.txt; its WordPiece vocabulary is read directly."""
    hf_fast.save_pretrained(str(tmp_path))
    from_json = BertTokenizer(tmp_path / "tokenizer.json")
    assert from_json.vocab_size == BERT_VOCAB_SIZE
    assert _ours(from_json, TEXTS) == _ours(tok, TEXTS)


def test_bad_input(tok: BertTokenizer, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="padding"):
        tok.encode("hi", padding="sideways")  # type: ignore[arg-type]
    with pytest.raises(VitkitError, match="strings"):
        tok.encode(["fine", 3])  # type: ignore[list-item]
    with pytest.raises(ConfigError, match="max_length"):
        tok.encode("hi", max_length=2)
    with pytest.raises(VitkitError, match="cannot read"):
        BertTokenizer(tmp_path / "missing.txt")
    (tmp_path / "tiny.txt").write_text("a\nb\n")
    with pytest.raises(VitkitError, match="special token"):
        BertTokenizer(tmp_path / "tiny.txt")
    with pytest.raises(ConfigError, match="unknown tokenizer field"):
        BertTokenizer.from_dict({"vocab": None})
