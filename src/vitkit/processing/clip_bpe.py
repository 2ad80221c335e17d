"""CLIP's byte-level BPE tokenizer (Radford et al. 2021, https://arxiv.org/abs/2103.00020).

CLIP's text vocabulary has 49,408 tokens: the 256 byte symbols (ids 0-255), the same symbols ending a word
(`</w>`, 256-511), 48,894 merges (512-49405), `<|startoftext|>` (49406) and `<|endoftext|>` (49407). A text
becomes `[SOT] tokens [EOT]`, cut to the 77-token context with the end-of-text token kept last, and padded.

    tok = CLIPTokenizer()                         # the merges shipped with vitkit (assets/bpe_simple_vocab_16e6)
    batch = tok(["a photo of a cat", "a dog"])    # input_ids, attention_mask: [2, 77] int64
    tok.decode(batch["input_ids"][0])             # 'a photo of a cat'

The steps, and where each runs:
1. clean (Python, as OpenAI's and open_clip's tokenizers): `ftfy.fix_text`, `html.unescape` twice, runs of
   whitespace (`str.split`) -> one space, `str.lower()`. Plain ASCII without `&` or control characters skips
   ftfy and html (both leave such text unchanged; tests/processing/test_clip_bpe.py checks it).
2. split (Rust, a `tokenizers` Split pre-tokenizer): the contractions 's 't 're 've 'm 'll 'd, runs of letters,
   single digits, runs of other non-space characters - with the letter / digit classes of the Python `regex`
   module that open_clip uses, written out as code-point ranges (see `split_pattern`).
3. bytes -> symbols, BPE merges with `</w>` ending each word (Rust: ByteLevel pre-tokenizer, `tokenizers` BPE).
4. `[SOT] ... [EOT]` (a TemplateProcessing post-processor); truncation and padding in `__call__`.

The ids equal open_clip's (`open_clip.tokenize`) on any text, and transformers' `CLIPTokenizer` /
`CLIPTokenizerFast` (transformers 5: one `tokenizers`-backed class) on any text that none of the following
touches. transformers normalizes with NFC, `\\s+` -> space and a per-character lowercase only, so it differs on:

- HTML entities (`&amp;`, `&#39;`, `&lt;`; also `&reg` without `;`, so a URL's `&region=` reads `®ion=`):
  unescaped twice by open_clip and vitkit, kept as written by transformers;
- what ftfy fixes: curly quotes (`don’t` -> `don't`, whose `'t` is then a contraction), ligatures (`ﬁ`),
  full-width forms (`ＡＢＣ` -> `abc`), mojibake (`cafÃ©` -> `café`), C1 controls (U+0085 -> `…`), other
  control characters (removed; transformers makes U+001C-U+001F tokens);
- a Greek word ending in `Σ`: `str.lower()` gives the final `ς`, transformers' per-character lowercase `σ`;
- letters newer than the Unicode tables of the Oniguruma inside `tokenizers` (16.0 in tokenizers 0.23; e.g.
  U+10940, a letter since 17.0): letters to the `regex` module, punctuation to transformers, which splits the
  word around them;
- `'ſ` (long s after an apostrophe): one piece (open_clip's pattern ignores case, so it is the `'s`
  contraction), two pieces in transformers;
- `<|startoftext|>` / `<|endoftext|>` typed in a text: plain text to vitkit, special tokens to transformers;
- padding: 0 (see below) vs 49407 (transformers' `pad_token` is `<|endoftext|>`).
Each case is asserted in tests/processing/test_clip_bpe.py, so a change in either reference shows there.

vitkit also differs from open_clip 3.x in one place: open_clip names its special tokens `<start_of_text>` /
`<end_of_text>` and turns those strings typed in a text into 49406 / 49407; vitkit reads every typed string as
text, so a caption can never inject an end-of-text token (which would move CLIP's pooling position).

Padding: `pad_token_id` is 0 (the token `!`), as open_clip pads; `attention_mask` marks the real tokens. CLIP
pools the text at the end-of-text token, found as the argmax of the ids (OpenAI, open_clip) or as the first
position equal to `eot_token_id` (transformers). The tokenizer guarantees every row holds exactly one 49407, at
`attention_mask.sum() - 1`, and nothing larger, so both rules find the same position; ids padded with 49407 (as
transformers' tokenizer does) also work with either rule, since argmax returns the first maximum.
"""

from __future__ import annotations

import gzip
import html
import os
import re
from collections.abc import Sequence
from functools import lru_cache
from importlib import resources
from pathlib import Path

import numpy as np
import torch
from tokenizers import Encoding, Regex, Tokenizer, decoders, pre_tokenizers, processors
from tokenizers.models import BPE

from ..errors import ConfigError, VitkitError
from .batch import BatchFeature

DEFAULT_MERGES = "bpe_simple_vocab_16e6.txt.gz"
#: CLIP's merge count: 49,408 tokens - 512 byte symbols - 2 special tokens. The shipped file holds 262,145
#: merges; CLIP uses the first 48,894.
NUM_MERGES = 48_894
SOT_TOKEN = "<|startoftext|>"
EOT_TOKEN = "<|endoftext|>"
END_OF_WORD = "</w>"
CONTEXT_LENGTH = 77

# Text that ftfy.fix_text and html.unescape return unchanged: printable ASCII, tab and newline, without "&"
# (entities) - no mojibake, curly quotes, control characters or line-break variants to fix.
_PLAIN_TEXT = re.compile(r"[\t\n\x20-\x25\x27-\x7e]*")


def byte_symbols() -> dict[int, str]:
    """The byte -> symbol table of byte-level BPE (GPT-2's, which CLIP reuses): the 188 printable Latin-1
    bytes stand for themselves, the other 68 (controls, space, U+00A0, soft hyphen) for U+0100.. in byte order,
    so every symbol is a visible character. CLIP's ids 0-255 are these symbols in code-point order."""
    printable = [*range(0x21, 0x7F), *range(0xA1, 0xAD), *range(0xAE, 0x100)]
    table = {b: chr(b) for b in printable}
    for offset, b in enumerate(b for b in range(256) if b not in table):
        table[b] = chr(0x100 + offset)
    return dict(sorted(table.items()))


def clean_text(text: str) -> str:
    """CLIP's text cleaning, exactly as OpenAI's and open_clip's tokenizers: ftfy's fixes (mojibake, curly
    quotes, ligatures, width, control characters, NFC), HTML entities unescaped twice, whitespace runs -> one
    space, stripped, lower-cased with `str.lower` (Unicode's rules, Greek final sigma included)."""
    if not _PLAIN_TEXT.fullmatch(text):
        import ftfy  # imported on first use: plain-ASCII captions, the common case, never need it

        text = html.unescape(html.unescape(ftfy.fix_text(text)))
    return " ".join(text.split()).lower()


# ---- the pre-tokenizer's pattern ----------------------------------------------------------------------------------


def _onig_class(char_pattern: str, code_points: str) -> str:
    """An Oniguruma character class of every code point the `regex` module matches with `char_pattern` (one
    character, case-insensitively as open_clip compiles its pattern), as `\\x{first}-\\x{last}` ranges."""
    import regex  # open_clip's regex engine; its Unicode tables define what a letter and a digit are

    matcher = regex.compile(f"(?:{char_pattern})+", regex.IGNORECASE)
    ranges = []
    # `code_points` lists every code point in order, so a match is a run of consecutive ones (a run across the
    # surrogate gap also spans the surrogates, which no text contains).
    for m in matcher.finditer(code_points):
        first, last = ord(m.group()[0]), ord(m.group()[-1])
        ranges.append(f"\\x{{{first:X}}}" + (f"-\\x{{{last:X}}}" if last > first else ""))
    return "[" + "".join(ranges) + "]"


@lru_cache(maxsize=1)
def split_pattern() -> str:
    """The pre-tokenizer pattern for `tokenizers` (Oniguruma syntax): CLIP's
    `'s|'t|'re|'ve|'m|'ll|'d|[\\p{L}]+|[\\p{N}]|[^\\s\\p{L}\\p{N}]+` (matched case-insensitively), with each class
    written as the explicit code points the `regex` module assigns to it.

    Why not Oniguruma's own `\\p{L}`: its Unicode tables can be older than the `regex` module's (thousands of
    letters from Unicode 17 on are not letters to the one in tokenizers 0.23), and a letter read as punctuation
    splits a word differently. Why case-insensitive: open_clip compiles the pattern with IGNORECASE, so `'ſ`
    (long s) is a contraction. Built once per process (a scan of every code point per class)."""
    code_points = np.concatenate([np.arange(0xD800), np.arange(0xE000, 0x110000)]).astype("<u4")
    every = code_points.tobytes().decode("utf-32-le")  # all 1,112,064 scalar values, in order
    contractions = ["s", "t", "re", "ve", "m", "ll", "d"]
    alternatives = ["'" + "".join(_onig_class(re.escape(c), every) for c in word) for word in contractions]
    alternatives += [
        _onig_class(r"[\p{L}]", every) + "+",
        _onig_class(r"[\p{N}]", every),
        _onig_class(r"[^\s\p{L}\p{N}]", every) + "+",
    ]
    return "|".join(alternatives)


# ---- vocabulary and the Rust pipeline -----------------------------------------------------------------------------


def _read_merges(merges_file: str | os.PathLike | None, num_merges: int) -> list[tuple[str, str]]:
    """The first `num_merges` merges of a gzipped or plain merges file; a first line holding `#version` (open_clip's
    `bpe_simple_vocab_16e6.txt#version: 0.2`, transformers' `#version: 0.2`) is a header."""
    name = str(merges_file or DEFAULT_MERGES)
    try:
        if merges_file is None:
            data = resources.files("vitkit").joinpath("assets", DEFAULT_MERGES).read_bytes()
        else:
            data = Path(merges_file).read_bytes()
        if data[:2] == b"\x1f\x8b":
            data = gzip.decompress(data)
        lines = data.decode("utf-8").split("\n")
    except (OSError, EOFError, UnicodeDecodeError) as e:
        raise ConfigError(f"cannot read the BPE merges file {name}: {e}") from e
    if lines and "#version" in lines[0]:
        lines = lines[1:]
    lines = lines[:num_merges]
    if len(lines) < num_merges or not lines[-1].strip():
        held = sum(1 for line in lines if line.strip())
        raise ConfigError(f"{name} holds {held} merges, fewer than num_merges={num_merges}")
    merges = []
    for number, line in enumerate(lines, start=1):
        pair = line.split()
        if len(pair) != 2:
            raise ConfigError(f"{name}: merge {number} is {line!r}, not two symbols separated by a space")
        merges.append((pair[0], pair[1]))
    return merges


@lru_cache(maxsize=4)
def _build(merges_file: str | None, num_merges: int) -> tuple[Tokenizer, tuple[str, ...]]:
    """The `tokenizers` pipeline and the id -> token table, built once per (merges file, merge count)."""
    merges = _read_merges(merges_file, num_merges)
    symbols = sorted(byte_symbols().values())
    tokens = [*symbols, *(s + END_OF_WORD for s in symbols), *(a + b for a, b in merges), SOT_TOKEN, EOT_TOKEN]
    vocab = {token: i for i, token in enumerate(tokens)}
    if len(vocab) != len(tokens):
        raise ConfigError(f"{merges_file or DEFAULT_MERGES}: merges repeat a token, so ids would be ambiguous")
    tok = Tokenizer(BPE(vocab, merges, end_of_word_suffix=END_OF_WORD, fuse_unk=False))
    # No normalizer: clean_text() does ftfy's fixes (no Rust equivalent) and lower-cases with str.lower, whose
    # final-sigma rule the Rust Lowercase normalizer lacks. The special tokens are deliberately not "added
    # tokens": those would be matched inside the text.
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(split_pattern()), behavior="removed", invert=True),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tok.post_processor = processors.TemplateProcessing(
        single=f"{SOT_TOKEN} $A {EOT_TOKEN}",
        special_tokens=[(SOT_TOKEN, vocab[SOT_TOKEN]), (EOT_TOKEN, vocab[EOT_TOKEN])],
    )
    tok.decoder = decoders.ByteLevel()
    return tok, tuple(tokens)


class CLIPTokenizer:
    """CLIP's byte-level BPE: texts -> `input_ids` and `attention_mask` [B, context_length] (see the module docs).

    Args:
        merges_file: a BPE merges file, gzipped or plain (open_clip's `bpe_simple_vocab_16e6.txt.gz`,
            transformers' `merges.txt`); None uses the copy shipped with vitkit.
        context_length: the default sequence length, start and end tokens included (CLIP: 77).
        num_merges: how many merges of the file make the vocabulary (CLIP: 48,894 -> 49,408 tokens).
    """

    def __init__(
        self,
        merges_file: str | os.PathLike | None = None,
        *,
        context_length: int = CONTEXT_LENGTH,
        num_merges: int = NUM_MERGES,
    ):
        if context_length < 2:
            raise ConfigError(f"context_length={context_length} leaves no room for the start and end tokens")
        self.merges_file = None if merges_file is None else str(merges_file)
        self.context_length = context_length
        self._tok, self._tokens = _build(self.merges_file, num_merges)
        self.sot_token_id = len(self._tokens) - 2
        self.eot_token_id = len(self._tokens) - 1
        # open_clip's padding; any id below eot_token_id keeps argmax pooling on the end-of-text token.
        self.pad_token_id = 0

    @property
    def vocab_size(self) -> int:
        return len(self._tokens)

    def __len__(self) -> int:
        return self.vocab_size

    def get_vocab(self) -> dict[str, int]:
        """token -> id, the table transformers keeps in vocab.json."""
        return {token: i for i, token in enumerate(self._tokens)}

    # ---- encoding ---------------------------------------------------------------------------------------------

    def _encode_cleaned(self, texts: Sequence[str]) -> list[Encoding]:
        for t in texts:
            if not isinstance(t, str):
                raise VitkitError(f"texts must be strings, got {type(t).__name__}")
        # One text at a time rather than encode_batch: the batch call starts the Rust thread pool, after which
        # forked DataLoader workers lose it (with a warning), and on a 2-core machine it was no faster.
        return [self._tok.encode(clean_text(t)) for t in texts]

    def encode(self, text: str) -> list[int]:
        """Token ids of one text, without the start/end tokens and without truncation."""
        return self._encode_cleaned([text])[0].ids[1:-1]

    def tokenize(self, text: str) -> list[str]:
        """BPE tokens of one text (byte symbols, `</w>` ending each word), without start/end tokens."""
        return self._encode_cleaned([text])[0].tokens[1:-1]

    def __call__(
        self,
        texts: str | Sequence[str],
        context_length: int | None = None,
        truncate: bool = True,
        return_attention_mask: bool = True,
    ) -> BatchFeature:
        """Tokenize a text or a batch of texts -> `input_ids` (and `attention_mask`, 1 on real tokens), each
        [B, context_length] int64; a single string is a batch of one.

        Every row is `[SOT] tokens [EOT]` padded with `pad_token_id`. A longer text is cut to
        `context_length` tokens with `eot_token_id` as the last (as open_clip truncates); with `truncate=False`
        it raises ConfigError naming its length instead.
        """
        length = self.context_length if context_length is None else context_length
        if length < 2:
            raise ConfigError(f"context_length={length} leaves no room for the start and end tokens")
        batch = [texts] if isinstance(texts, str) else list(texts)
        input_ids = np.full((len(batch), length), self.pad_token_id, dtype=np.int64)  # [B, L]
        attention_mask = np.zeros((len(batch), length), dtype=np.int64)  # [B, L]
        for i, encoding in enumerate(self._encode_cleaned(batch)):
            ids = encoding.ids
            if len(ids) > length:
                if not truncate:
                    raise ConfigError(
                        f"text {i} is {len(ids)} tokens long with its start and end tokens, more than "
                        f"context_length={length}; shorten it or pass truncate=True"
                    )
                ids = [*ids[: length - 1], self.eot_token_id]
            input_ids[i, : len(ids)] = ids
            attention_mask[i, : len(ids)] = 1
        out = BatchFeature(input_ids=torch.from_numpy(input_ids))
        if return_attention_mask:
            out["attention_mask"] = torch.from_numpy(attention_mask)
        return out

    # ---- decoding ---------------------------------------------------------------------------------------------

    def decode(self, ids: Sequence[int] | torch.Tensor, skip_special_tokens: bool = True) -> str:
        """Ids of one sequence -> text: each `</w>` becomes a space (so punctuation and digits come back
        space-separated: "a dog ." for "A dog."), surrounding spaces stripped. With `skip_special_tokens`, the
        start token is dropped and decoding stops at the first end-of-text token (what follows is padding);
        without it, every id is rendered, padding included."""
        if isinstance(ids, torch.Tensor):
            if ids.ndim != 1:
                raise VitkitError(f"decode takes one sequence of ids, got shape {list(ids.shape)}; use batch_decode")
            ids = ids.tolist()
        ids = [int(i) for i in ids]
        bad = [i for i in ids if not 0 <= i < self.vocab_size]
        if bad:
            raise VitkitError(f"token id(s) {bad[:5]} outside the vocabulary of {self.vocab_size}")
        if skip_special_tokens:
            if self.eot_token_id in ids:
                ids = ids[: ids.index(self.eot_token_id)]
            ids = [i for i in ids if i != self.sot_token_id]
        # The ByteLevel decoder turns symbols back into bytes (invalid UTF-8, e.g. an emoji cut by truncation,
        # becomes U+FFFD); the end-of-word marker survives it as the literal "</w>".
        text = self._tok.decode(ids, skip_special_tokens=False)
        return text.replace(END_OF_WORD, " ").strip()

    def batch_decode(self, ids: Sequence[Sequence[int]] | torch.Tensor, skip_special_tokens: bool = True) -> list[str]:
        if isinstance(ids, torch.Tensor):
            ids = ids.tolist()
        return [self.decode(row, skip_special_tokens=skip_special_tokens) for row in ids]

    def __repr__(self) -> str:
        return (
            f"CLIPTokenizer(merges={self.merges_file or DEFAULT_MERGES!r}, vocab_size={self.vocab_size}, "
            f"context_length={self.context_length})"
        )
