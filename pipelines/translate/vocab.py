"""Source and target vocabularies of a translator, and the JSON that travels with its model.

Both sides are tokenised by the shared tokenizer (`pipelines.core.tokenizer`), optionally split
into BPE pieces, and indexed as its `Vocabulary` (0 padding, 1 ``[UNK]``). The target side also
has ``[start]`` and ``[end]`` markers for teacher forcing and decoding. The JSON keeps both token
lists as they are, so a logged model's ids never change.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

from pipelines.core.text import pad
from pipelines.core.tokenizer import Vocabulary, detokenize, tokenize
from pipelines.translate.subwords import BytePairEncoding, join_pieces

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
        self._source = Vocabulary(self.source)
        self._target = Vocabulary(self.target)
        self.start_id, self.end_id = self._target.start_id, self._target.end_id

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
        return cls(
            level,
            Vocabulary.fit(sources, min_count).tokens,
            Vocabulary.fit(targets, min_count, markers=True).tokens,
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
        return pad(
            [
                self._target.encode(self.target_pieces(tokenize(t)), self.max_target - 1)
                for t in texts
            ]
        )

    def _source_ids(self, text: str) -> list[int]:
        pieces = self.source_pieces(tokenize(text)) or [""]  # "" is padding: an empty source
        return self._source.ids(pieces)

    def unknown_words(self, text: str) -> list[str]:
        """Words of ``text`` with at least one piece outside the source vocabulary."""
        return [
            word
            for word in tokenize(text)
            if any(p not in self._source.index for p in self.source_pieces([word]))
        ]

    # ---- decoding -------------------------------------------------------------------------
    def pieces(self, ids: Iterable[int]) -> list[str]:
        """Target pieces up to ``[end]``; padding, ``[start]`` and ``[UNK]`` dropped."""
        return self._target.decode(ids)

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
