"""The one word tokenizer and token vocabulary of the text pipelines.

`tokenize` splits lower-cased text into words and punctuation marks, with elisions split after
the apostrophe ("l'aide" -> l' aide, "don't" -> don' t) and dotted or hyphenated words kept
whole ("e.g", "well-made"); `detokenize` inverts it up to case and spacing. A `Vocabulary`
indexes tokens with the convention of Keras' ``TextVectorization`` (and of `pipelines.core.text`):
``""`` (padding) is id 0 and ``[UNK]`` id 1; sequences a decoder writes add ``[start]`` and
``[end]`` markers. Pure Python and NumPy: importing it loads no TensorFlow.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Sequence

import numpy as np

PAD, UNK, START, END = "", "[UNK]", "[start]", "[end]"
SPECIAL = (PAD, UNK, START, END)

_TOKEN = re.compile(r"\w+'|\w+(?:[-.]\w+)*|[^\w\s]")
_NO_SPACE_BEFORE = re.compile(r" ([,.:;!?)\]])")
_NO_SPACE_AFTER = re.compile(r"([(\[/]|\w') ")


def tokenize(text: str) -> list[str]:
    """Lower-cased words and punctuation marks ("A 7, a 3." -> a 7 , a 3 .)."""
    return _TOKEN.findall(text.lower().replace("’", "'"))


def detokenize(tokens: Iterable[str]) -> str:
    """Readable text from tokens (inverse of `tokenize` up to case and spacing)."""
    text = " ".join(tokens)
    return _NO_SPACE_AFTER.sub(r"\1", _NO_SPACE_BEFORE.sub(r"\1", text))


class Vocabulary:
    """Token <-> id over a token list whose first entry is padding and which holds ``[UNK]``
    (and, for decoder targets, ``[start]`` and ``[end]``), wherever those sit in the list: the
    list is what a logged model's artifact stores, so its ids never change on reload."""

    def __init__(self, tokens: Sequence[str]):
        self.tokens = [str(t) for t in tokens]
        self.index = {token: i for i, token in enumerate(self.tokens)}
        if not self.tokens or self.tokens[0] != PAD or UNK not in self.index:
            raise ValueError(f"a vocabulary starts with padding {PAD!r} and holds {UNK!r}")
        self.pad_id, self.unk_id = 0, self.index[UNK]
        self.start_id, self.end_id = self.index.get(START), self.index.get(END)

    @classmethod
    def fit(
        cls, sentences: Iterable[Sequence[str]], min_count: int = 1, markers: bool = False
    ) -> Vocabulary:
        """Tokens seen at least ``min_count`` times, most frequent first (ties alphabetical),
        after padding, ``[UNK]`` and, with ``markers``, ``[start]`` and ``[end]``."""
        counts = Counter(token for sentence in sentences for token in sentence)
        kept = sorted(
            (t for t, c in counts.items() if c >= min_count and t not in SPECIAL),
            key=lambda t: (-counts[t], t),
        )
        return cls([PAD, UNK, *((START, END) if markers else ()), *kept])

    def __len__(self) -> int:
        return len(self.tokens)

    @property
    def words(self) -> list[str]:
        """The tokens that are not special markers."""
        return [t for t in self.tokens if t not in SPECIAL]

    def ids(self, tokens: Iterable[str]) -> list[int]:
        return [self.index.get(t, self.unk_id) for t in tokens]

    def encode(self, tokens: Sequence[str], max_tokens: int | None = None) -> list[int]:
        """``[start] t_1 .. t_n [end]`` ids, at most ``max_tokens`` tokens kept (longer text is
        cut, the markers stay)."""
        if self.start_id is None or self.end_id is None:
            raise ValueError("this vocabulary has no [start]/[end] markers")
        return [self.start_id, *self.ids(list(tokens)[:max_tokens]), self.end_id]

    def encode_batch(self, sentences: Sequence[Sequence[str]], max_tokens: int) -> np.ndarray:
        """``[N, max_tokens + 2]`` int32 of `encode`, padded."""
        out = np.full((len(sentences), max_tokens + 2), self.pad_id, np.int32)
        for row, tokens in enumerate(sentences):
            ids = self.encode(tokens, max_tokens)
            out[row, : len(ids)] = ids
        return out

    def decode(self, ids: Iterable[int]) -> list[str]:
        """Tokens up to the first ``[end]``; padding, ``[start]`` and ``[UNK]`` dropped."""
        out = []
        for i in ids:
            i = int(i)
            if i == self.end_id:
                break
            if i not in (self.pad_id, self.unk_id, self.start_id):
                out.append(self.tokens[i])
        return out
