"""Source and target vocabularies of a translator, and the JSON that travels with its model.

Both sides are tokenised (`subwords.tokenize`), optionally split into BPE pieces, and indexed
with the shared text layer's vocabulary convention (0 padding, 1 ``[UNK]``). The target side
also has ``[start]`` and ``[end]`` markers for teacher forcing and decoding.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

from pipelines.core.text import OOV_ID, PAD_ID, pad, vocabulary, word_vectorizer
from pipelines.translate.subwords import BytePairEncoding, detokenize, join_pieces, tokenize

START, END = "[start]", "[end]"
LEVELS = ("subword", "word")


def normalize(text: str) -> str:
    """The form every hypothesis and reference is scored in: lower case, our tokenisation."""
    return detokenize(tokenize(text))


@dataclass
class Vocabularies:
    """Token lists of both languages, the BPE merges that made them, and the sequence limits."""

    level: str
    source: list[str]
    target: list[str]
    source_merges: list[list[str]] = field(default_factory=list)
    target_merges: list[list[str]] = field(default_factory=list)
    max_source: int = 0  # longest training source in tokens
    max_target: int = 0  # longest training target in tokens, [end] included

    def __post_init__(self) -> None:
        self._source_bpe = BytePairEncoding(self.source_merges)
        self._target_bpe = BytePairEncoding(self.target_merges)
        self._source_index = {t: i for i, t in enumerate(self.source)}
        self._target_index = {t: i for i, t in enumerate(self.target)}
        self.start_id, self.end_id = self._target_index[START], self._target_index[END]

    @classmethod
    def fit(
        cls,
        pairs: Sequence[tuple[str, str]],
        level: str = "subword",
        merges: int = 2000,
        min_count: int = 1,
    ) -> Vocabularies:
        """Learn merges and vocabularies on the training pairs only."""
        sources = [tokenize(s) for s, _ in pairs]
        targets = [tokenize(t) for _, t in pairs]
        merges_of = {"source": [], "target": []}
        if level == "subword":
            for side, sentences in (("source", sources), ("target", targets)):
                learned = BytePairEncoding.learn((w for s in sentences for w in s), merges)
                merges_of[side] = [list(m) for m in learned.merges]
                sentences[:] = [learned.encode(s) for s in sentences]
        source_vocab = _index(sources, min_count)
        target_vocab = _index([[START, *t, END] for t in targets], min_count)
        return cls(
            level,
            source_vocab,
            target_vocab,
            source_merges=merges_of["source"],
            target_merges=merges_of["target"],
            max_source=max(map(len, sources)),
            max_target=max(map(len, targets)) + 1,
        )

    # ---- encoding -------------------------------------------------------------------------
    def source_pieces(self, words: list[str]) -> list[str]:
        return self._source_bpe.encode(words) if self.level == "subword" else words

    def target_pieces(self, words: list[str]) -> list[str]:
        return self._target_bpe.encode(words) if self.level == "subword" else words

    def encode_source(self, texts: Iterable[str]) -> np.ndarray:
        """``[N, S]`` ids padded to the longest (and at most ``max_source``) with 0."""
        ids = [self._source_ids(text) for text in texts]
        return pad(ids, min(max(map(len, ids)), self.max_source))

    def encode_target(self, texts: Iterable[str]) -> np.ndarray:
        """``[N, T + 2]``: ``[start]`` ids ``[end]`` (cut to ``max_target`` pieces), padded."""
        index = self._target_index
        ids = [
            [self.start_id, *(index.get(p, OOV_ID) for p in pieces[: self.max_target - 1])]
            + [self.end_id]
            for pieces in (self.target_pieces(tokenize(t)) for t in texts)
        ]
        return pad(ids)

    def _source_ids(self, text: str) -> list[int]:
        pieces = self.source_pieces(tokenize(text)) or [""]  # "" is padding: an empty source
        return [self._source_index.get(p, OOV_ID) for p in pieces]

    def unknown_words(self, text: str) -> list[str]:
        """Words of ``text`` with at least one piece outside the source vocabulary."""
        return [
            word
            for word in tokenize(text)
            if any(p not in self._source_index for p in self.source_pieces([word]))
        ]

    # ---- decoding -------------------------------------------------------------------------
    def pieces(self, ids: Iterable[int]) -> list[str]:
        """Target pieces up to ``[end]``; padding, ``[start]`` and ``[UNK]`` dropped."""
        out = []
        for i in ids:
            if i == self.end_id:
                break
            if i not in (PAD_ID, OOV_ID, self.start_id):
                out.append(self.target[i])
        return out

    def decode(self, ids: Iterable[int]) -> str:
        pieces = self.pieces(ids)
        return detokenize(join_pieces(pieces) if self.level == "subword" else pieces)

    def source_labels(self, text: str) -> list[str]:
        """The source pieces the encoder sees, for plot labels."""
        return self.source_pieces(tokenize(text))[: self.max_source]

    # ---- persistence ----------------------------------------------------------------------
    def to_json(self) -> dict:
        return {
            "level": self.level,
            "source": self.source,
            "target": self.target,
            "source_merges": self.source_merges,
            "target_merges": self.target_merges,
            "max_source": self.max_source,
            "max_target": self.max_target,
        }

    @classmethod
    def from_json(cls, obj: dict) -> Vocabularies:
        return cls(**obj)


def _index(sentences: list[list[str]], min_count: int) -> list[str]:
    """Vocabulary (``""``, ``[UNK]``, then by frequency) of pre-tokenised sentences."""
    layer = word_vectorizer(
        [" ".join(s) for s in sentences], max_tokens=None, standardize=None, min_count=min_count
    )
    return vocabulary(layer)
