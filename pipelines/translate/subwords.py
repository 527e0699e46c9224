"""Byte-pair-encoded subwords (Sennrich et al., 2016) of the shared tokenizer's words.

Software messages are full of rare technical words; with whole words most of them would be
``[UNK]`` in a small vocabulary. BPE splits a rare word into frequent pieces (``imprim@@ ante``)
so the model can still copy or translate it, while frequent words stay whole.
"""

from __future__ import annotations

import heapq
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence

CONTINUES = "@@"  # marks a piece followed by more of the same word (subword-nmt convention)


def join_pieces(pieces: Iterable[str]) -> list[str]:
    """Words from BPE pieces: a piece ending in ``@@`` is glued to the next one."""
    text = " ".join(pieces).replace(CONTINUES + " ", "")
    return text.removesuffix(CONTINUES).split()


class BytePairEncoding:
    """Merge operations learned on a word list; ``encode`` applies them in learned order."""

    def __init__(self, merges: Sequence[Sequence[str]]):
        self.merges = [tuple(pair) for pair in merges]
        self.ranks = {pair: rank for rank, pair in enumerate(self.merges)}
        self._cache: dict[str, list[str]] = {}

    @classmethod
    def learn(cls, words: Iterable[str], merges: int, min_frequency: int = 2) -> BytePairEncoding:
        """Up to ``merges`` merges of the most frequent adjacent symbol pair (ties broken by
        the pair itself, so learning is deterministic); stops when no pair occurs
        ``min_frequency`` times. Pair counts are updated only for the words a merge touches."""
        types = Counter(words)
        spelled = [_symbols(word) for word in types]
        freq = list(types.values())
        counts: Counter = Counter()
        where: dict[tuple[str, str], set[int]] = defaultdict(set)
        for i, symbols in enumerate(spelled):
            for pair in zip(symbols, symbols[1:]):
                counts[pair] += freq[i]
                where[pair].add(i)
        heap = [(-c, pair) for pair, c in counts.items()]
        heapq.heapify(heap)
        learned = []
        while heap and len(learned) < merges:
            negative, pair = heapq.heappop(heap)
            if counts.get(pair, 0) != -negative:
                continue  # stale entry; the current count was pushed again
            if -negative < min_frequency:
                break
            learned.append(pair)
            changed: Counter = Counter()
            for i in where.pop(pair):
                old = spelled[i]
                new = _merge(old, pair)
                for p in zip(old, old[1:]):
                    changed[p] -= freq[i]
                for p in zip(new, new[1:]):
                    changed[p] += freq[i]
                    where[p].add(i)
                spelled[i] = new
            for p, delta in changed.items():
                if delta:
                    counts[p] += delta
                    if p != pair and counts[p] > 0:
                        heapq.heappush(heap, (-counts[p], p))
            counts.pop(pair, None)
        return cls(learned)

    def encode_word(self, word: str) -> list[str]:
        """Pieces of one word; all but the last carry the ``@@`` continuation mark."""
        if word not in self._cache:
            symbols = _symbols(word)
            while len(symbols) > 1:
                ranked = [
                    (self.ranks.get(p, len(self.ranks)), p) for p in zip(symbols, symbols[1:])
                ]
                rank, best = min(ranked)
                if rank == len(self.ranks):
                    break
                symbols = _merge(symbols, best)
            pieces = [s + CONTINUES for s in symbols[:-1]] + [symbols[-1].removesuffix("</w>")]
            self._cache[word] = pieces
        return self._cache[word]

    def encode(self, tokens: Iterable[str]) -> list[str]:
        return [piece for token in tokens for piece in self.encode_word(token)]


def _symbols(word: str) -> tuple[str, ...]:
    """Characters of a word; the last one marked as word-final (``</w>``)."""
    return (*word[:-1], word[-1] + "</w>")


def _merge(symbols: tuple[str, ...], pair: tuple[str, str]) -> tuple[str, ...]:
    out, i = [], 0
    while i < len(symbols):
        if i + 1 < len(symbols) and (symbols[i], symbols[i + 1]) == pair:
            out.append(symbols[i] + symbols[i + 1])
            i += 2
        else:
            out.append(symbols[i])
            i += 1
    return tuple(out)
