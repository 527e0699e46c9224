"""A word vocabulary for caption-like text: tokenise, encode with start/end markers, decode.

Self-contained on purpose (no Keras layer, no task imports) so it can move to a shared text
module once other text pipelines need it.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable

import numpy as np

PAD, START, END, UNK = "<pad>", "<start>", "<end>", "<unk>"
_TOKEN = re.compile(r"[\w'-]+|[^\w\s]")
_SPACE_BEFORE_PUNCT = re.compile(r" ([,.:;!?])")


def tokenize(text: str) -> list[str]:
    """Lower-cased words and punctuation marks ("a 7, a 3." -> a 7 , a 3 .)."""
    return _TOKEN.findall(text.lower())


def detokenize(tokens: Iterable[str]) -> str:
    """Inverse of `tokenize` up to case and spacing."""
    return _SPACE_BEFORE_PUNCT.sub(r"\1", " ".join(tokens))


class Vocabulary:
    """Token ids: 0 padding (masked by the loss), 1 start, 2 end, 3 unknown, then words."""

    pad_id, start_id, end_id, unk_id = 0, 1, 2, 3

    def __init__(self, words: Iterable[str]):
        self.words = [PAD, START, END, UNK, *words]
        self.index = {word: i for i, word in enumerate(self.words)}

    @classmethod
    def fit(cls, texts: Iterable[str], min_count: int = 1) -> Vocabulary:
        """Words seen at least ``min_count`` times, most frequent first (ties alphabetical)."""
        counts = Counter(token for text in texts for token in tokenize(text))
        kept = sorted(
            (w for w, c in counts.items() if c >= min_count), key=lambda w: (-counts[w], w)
        )
        return cls(kept)

    def __len__(self) -> int:
        return len(self.words)

    def encode(self, text: str, max_tokens: int) -> list[int]:
        """``start, w_1 .. w_n, end`` with at most ``max_tokens`` words (longer text is cut)."""
        ids = [self.index.get(t, self.unk_id) for t in tokenize(text)[:max_tokens]]
        return [self.start_id, *ids, self.end_id]

    def encode_batch(self, texts: list[str], max_tokens: int) -> np.ndarray:
        """``[N, max_tokens + 2]`` int32, zero-padded."""
        out = np.zeros((len(texts), max_tokens + 2), np.int32)
        for row, text in enumerate(texts):
            ids = self.encode(text, max_tokens)
            out[row, : len(ids)] = ids
        return out

    def decode(self, ids: Iterable[int]) -> list[str]:
        """Words up to the first end marker; padding and start markers are dropped."""
        words = []
        for i in ids:
            if i == self.end_id:
                break
            if i not in (self.pad_id, self.start_id):
                words.append(self.words[i])
        return words

    def to_json(self) -> dict:
        return {"words": self.words[4:]}

    @classmethod
    def from_json(cls, obj: dict) -> Vocabulary:
        return cls(obj["words"])
