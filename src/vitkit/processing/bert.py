"""BERT uncased WordPiece tokenizer for ViLT's text side (Kim et al. 2021, https://arxiv.org/abs/2102.03334).

ViLT reuses bert-base-uncased's tokenizer unchanged: BERT normalization (clean control characters, put spaces
around CJK characters, lowercase, strip accents), split on whitespace and punctuation, greedy longest-match
WordPiece with `##` continuation pieces, then `[CLS] A [SEP]` (or `[CLS] A [SEP] B [SEP]` with token type 1 on
the second segment). The heavy lifting runs in the Rust `tokenizers` library; ids match Hugging Face
transformers' `BertTokenizer` built from the same vocabulary (tests/test_text.py checks this).

    tok = BertTokenizer()                         # the bert-base-uncased vocabulary shipped with vitkit
    batch = tok.encode(["How many dogs?", "Is it raining?"])  # input_ids / attention_mask / token_type_ids [B, L]
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import torch
from tokenizers import AddedToken, Encoding, Tokenizer, decoders, normalizers, pre_tokenizers, processors
from tokenizers.models import WordPiece

from ..errors import ConfigError, VitkitError
from ..utils.files import atomic_write_text
from ..utils.limits import check_text, parse_json

# bert-base-uncased's vocabulary ships inside the package, so tokenizing needs no download.
DEFAULT_VOCAB = "bert-base-uncased-vocab.txt"
SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
# Spaces WordPiece decoding leaves before punctuation and English contractions, removed as BERT's decode does.
_CLEANUP = (
    (" .", "."),
    (" ?", "?"),
    (" !", "!"),
    (" ,", ","),
    (" ' ", "'"),
    (" n't", "n't"),
    (" 'm", "'m"),
    (" 's", "'s"),
    (" 've", "'ve"),
    (" 're", "'re"),
)


def load_vocab(vocab_file: str | os.PathLike | None = None) -> dict[str, int]:
    """token -> id from a one-token-per-line vocab.txt (line number = id), or from the WordPiece model of a
    `tokenizers` tokenizer.json; None loads the bert-base-uncased vocabulary shipped with vitkit."""
    if vocab_file is None:
        text = resources.files("vitkit").joinpath("assets", DEFAULT_VOCAB).read_text(encoding="utf-8")
    else:
        try:
            text = Path(vocab_file).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
            raise VitkitError(f"cannot read vocabulary file {vocab_file}: {e}") from e
    if vocab_file is not None and Path(vocab_file).suffix == ".json":
        try:
            vocab = {str(t): int(i) for t, i in parse_json(text)["model"]["vocab"].items()}
        except (ValueError, KeyError, TypeError, AttributeError) as e:
            raise VitkitError(f"{vocab_file} is not a tokenizer.json with a WordPiece vocabulary: {e}") from e
    else:
        # Only the newline is stripped (as BERT does): a token may itself be whitespace-like.
        lines = text.split("\n")
        if lines and lines[-1] == "":
            lines.pop()
        vocab = {token: i for i, token in enumerate(lines)}
    missing = [t for t in SPECIAL_TOKENS if t not in vocab]
    if missing:
        raise VitkitError(f"vocabulary {vocab_file or DEFAULT_VOCAB} lacks the special token(s) {missing}")
    return vocab


def _valid_unicode(text: str) -> str:
    """`text` as the Rust tokenizer can take it: a surrogate pair left split (e.g. by a JSON decoder fed
    escaped UTF-16) is joined, a lone surrogate becomes U+FFFD (then [UNK]), instead of a TypeError."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
    return text


class BertTokenizer:
    """BERT WordPiece tokenizer: text -> `input_ids`, `attention_mask`, `token_type_ids` (and word ids).

    Args:
        vocab_file: vocab.txt (one token per line) or a tokenizer.json; None uses the bert-base-uncased
            vocabulary shipped with vitkit.
        lowercase: lowercase and strip accents (uncased BERT); False keeps case and accents (cased BERT).
        max_length: default length limit in tokens, [CLS]/[SEP] included (ViLT uses 40).
    """

    def __init__(self, vocab_file: str | os.PathLike | None = None, *, lowercase: bool = True, max_length: int = 40):
        self.vocab_file = None if vocab_file is None else str(vocab_file)
        self.lowercase = lowercase
        self.max_length = max_length
        self._vocab = load_vocab(vocab_file)
        self._id_to_token = {i: t for t, i in self._vocab.items()}
        tok = Tokenizer(WordPiece(self._vocab, unk_token="[UNK]", max_input_chars_per_word=100))
        # strip_accents=None follows `lowercase`, as the original BERT does.
        tok.normalizer = normalizers.BertNormalizer(
            clean_text=True, handle_chinese_chars=True, strip_accents=None, lowercase=lowercase
        )
        tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
        # Clean-up of spaces before punctuation happens on the joined string in decode(), as BERT's own decode does;
        # the decoder's per-token clean-up would miss "it ' s" -> "it's".
        tok.decoder = decoders.WordPiece(prefix="##", cleanup=False)
        # Special tokens typed in the text ("what is [MASK]?") stay whole and are matched before lowercasing.
        tok.add_special_tokens([AddedToken(t, normalized=False, special=True) for t in SPECIAL_TOKENS])
        self.pad_token_id = self._vocab["[PAD]"]
        self.unk_token_id = self._vocab["[UNK]"]
        self.cls_token_id = self._vocab["[CLS]"]
        self.sep_token_id = self._vocab["[SEP]"]
        self.mask_token_id = self._vocab["[MASK]"]
        tok.post_processor = processors.TemplateProcessing(
            single="[CLS]:0 $A:0 [SEP]:0",
            pair="[CLS]:0 $A:0 [SEP]:0 $B:1 [SEP]:1",
            special_tokens=[("[CLS]", self.cls_token_id), ("[SEP]", self.sep_token_id)],
        )
        self._tok = tok
        self._warned_truncation = False

    # ---- vocabulary -------------------------------------------------------------------------------------------

    @property
    def vocab_size(self) -> int:
        """Number of tokens in the vocabulary."""
        return len(self._vocab)

    def __len__(self) -> int:
        return self.vocab_size

    @property
    def special_token_ids(self) -> list[int]:
        """Ids of [PAD], [UNK], [CLS], [SEP] and [MASK]."""
        return [self._vocab[t] for t in SPECIAL_TOKENS]

    def get_vocab(self) -> dict[str, int]:
        """A copy of the vocabulary, token -> id."""
        return dict(self._vocab)

    def convert_tokens_to_ids(self, tokens: str | Sequence[str]) -> int | list[int]:
        """Token(s) -> id(s); tokens not in the vocabulary map to [UNK]."""
        if isinstance(tokens, str):
            return self._vocab.get(tokens, self.unk_token_id)
        return [self._vocab.get(t, self.unk_token_id) for t in tokens]

    def convert_ids_to_tokens(self, ids: int | Sequence[int] | torch.Tensor) -> str | list[str]:
        """Id(s) -> WordPiece token(s), "##" continuation marks kept."""
        if isinstance(ids, torch.Tensor):
            ids = ids.tolist()
        if isinstance(ids, int):
            return self._id_to_token[ids]
        return [self._id_to_token[int(i)] for i in ids]

    def save_vocabulary(self, directory: str | os.PathLike) -> Path:
        """Write `directory/vocab.txt` (same format `BertTokenizer(vocab_file=...)` reads); returns its path."""
        path = Path(directory) / "vocab.txt"
        path.parent.mkdir(parents=True, exist_ok=True)
        tokens = sorted(self._vocab, key=self._vocab.__getitem__)
        atomic_write_text(path, "".join(t + "\n" for t in tokens))
        return path

    # ---- encoding ---------------------------------------------------------------------------------------------

    def tokenize(self, text: str) -> list[str]:
        """WordPiece tokens of one text, without [CLS]/[SEP] and without truncation."""
        check_text(text)
        return self._tok.encode(_valid_unicode(text), add_special_tokens=False).tokens

    def encode(
        self,
        texts: str | Sequence[str],
        text_pair: str | Sequence[str] | None = None,
        *,
        max_length: int | None = None,
        padding: Literal["longest", "max_length"] = "longest",
        truncation: bool = True,
        return_tensors: bool = True,
        return_word_ids: bool = False,
    ) -> dict[str, Any]:
        """Tokenize a text or a batch of texts (optionally paired with `text_pair`).

        Returns a dict with `input_ids`, `attention_mask` (1 = real token) and `token_type_ids` (1 on the second
        segment of a pair), each `[B, L]` long tensors (lists of lists with `return_tensors=False`); a single
        string is a batch of one. `padding="longest"` pads to the longest text in the batch, `"max_length"` to
        `max_length`. With `truncation` (default), sequences longer than `max_length` (default: the tokenizer's,
        40) are cut to it, longest segment first, and still end with [SEP]; a warning is issued once per tokenizer.
        `return_word_ids` adds `word_ids` `[B, L]`: the index of the source word of each token within its segment,
        -1 for [CLS]/[SEP]/[PAD] (what whole-word masking needs).

        Args:
            texts: a text or a list of texts.
            text_pair: the second segment of each text (a text, or one per text), or None.
            max_length: tokens per sequence, [CLS]/[SEP] included (None: the tokenizer's `max_length`).
            padding: "longest" (to the batch's longest sequence) or "max_length".
            truncation: cut sequences longer than `max_length` (else they are kept whole).
            return_tensors: long tensors (True) or lists of lists (False).
            return_word_ids: add `word_ids`.
        """
        max_length = self.max_length if max_length is None else max_length
        if padding not in ("longest", "max_length"):
            raise ConfigError(f"padding must be 'longest' or 'max_length', got {padding!r}")
        if truncation and max_length < (4 if text_pair is not None else 3):
            raise ConfigError(f"max_length={max_length} leaves no room for text between [CLS] and [SEP]")
        single = isinstance(texts, str)
        batch = [texts] if single else list(texts)
        if not all(isinstance(t, str) for t in batch):
            raise VitkitError(f"texts must be strings, got {sorted({type(t).__name__ for t in batch})}")
        for t in batch:
            check_text(t)  # before tokenizing: the work grows with the text even when only max_length is kept
        batch = [_valid_unicode(t) for t in batch]
        if text_pair is not None:
            pairs = [text_pair] if isinstance(text_pair, str) else list(text_pair)
            if len(pairs) != len(batch):
                raise VitkitError(f"got {len(batch)} texts but {len(pairs)} text pairs")
            if not all(isinstance(t, str) for t in pairs):
                raise VitkitError(f"text pairs must be strings, got {sorted({type(t).__name__ for t in pairs})}")
            for t in pairs:
                check_text(t)
            inputs: list[Any] = list(zip(batch, [_valid_unicode(t) for t in pairs]))
        else:
            inputs = batch
        self._set_truncation(max_length if truncation else None)
        # One text at a time, not encode_batch: batch encoding starts the Rust thread pool, after which a forked
        # DataLoader worker gets tokenizers' "process just got forked" warning and loses parallelism anyway. A
        # question is a few dozen characters, so the loop costs nothing next to the model (docs/benchmarks.md).
        encodings: list[Encoding] = [
            self._tok.encode(*x) if isinstance(x, tuple) else self._tok.encode(x) for x in inputs
        ]
        if truncation and not self._warned_truncation and any(e.overflowing for e in encodings):
            self._warned_truncation = True
            warnings.warn(
                f"text longer than max_length={max_length} tokens was truncated (warned once per tokenizer)",
                stacklevel=2,
            )
        length = max(len(e.ids) for e in encodings) if encodings else 0
        if padding == "max_length":
            length = max(length, max_length)
        out: dict[str, Any] = {"input_ids": [], "attention_mask": [], "token_type_ids": []}
        if return_word_ids:
            out["word_ids"] = []
        for e in encodings:
            n_pad = length - len(e.ids)
            out["input_ids"].append(e.ids + [self.pad_token_id] * n_pad)
            out["attention_mask"].append(e.attention_mask + [0] * n_pad)
            out["token_type_ids"].append(e.type_ids + [0] * n_pad)
            if return_word_ids:
                out["word_ids"].append([-1 if w is None else w for w in e.word_ids] + [-1] * n_pad)
        if return_tensors:
            out = {k: torch.tensor(v, dtype=torch.long).reshape(len(encodings), length) for k, v in out.items()}
        return out

    __call__ = encode

    def _set_truncation(self, max_length: int | None) -> None:
        current = self._tok.truncation
        if max_length is None:
            if current is not None:
                self._tok.no_truncation()
        elif current is None or current["max_length"] != max_length:
            self._tok.enable_truncation(max_length, strategy="longest_first")

    # ---- decoding ---------------------------------------------------------------------------------------------

    def decode(self, ids: Sequence[int] | torch.Tensor, skip_special_tokens: bool = True) -> str:
        """Ids of one sequence -> text (## pieces joined, spaces before punctuation removed)."""
        if isinstance(ids, torch.Tensor):
            ids = ids.tolist()
        text = self._tok.decode([int(i) for i in ids], skip_special_tokens=skip_special_tokens)
        for spaced, joined in _CLEANUP:
            text = text.replace(spaced, joined)
        return text

    def batch_decode(self, ids: Sequence[Sequence[int]] | torch.Tensor, skip_special_tokens: bool = True) -> list[str]:
        """`decode` of each row of `ids`."""
        if isinstance(ids, torch.Tensor):
            ids = ids.tolist()
        return [self.decode(row, skip_special_tokens=skip_special_tokens) for row in ids]

    # ---- config -----------------------------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """Plain-types settings; `vocab_file` None means the shipped bert-base-uncased vocabulary."""
        return {"vocab_file": self.vocab_file, "lowercase": self.lowercase, "max_length": self.max_length}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> BertTokenizer:
        """Inverse of `to_dict`; unknown keys raise ConfigError naming the valid ones."""
        valid = ("vocab_file", "lowercase", "max_length")
        unknown = [k for k in data if k not in valid]
        if unknown:
            raise ConfigError(f"unknown tokenizer field(s) {unknown}; valid fields: {', '.join(valid)}")
        return cls(**data)

    def __repr__(self) -> str:
        vocab = self.vocab_file or DEFAULT_VOCAB
        return (
            f"BertTokenizer(vocab={vocab!r}, vocab_size={self.vocab_size}, lowercase={self.lowercase}, "
            f"max_length={self.max_length})"
        )
