"""Interpolated Kneser-Ney n-gram model: the baseline a neural language model must beat.

Chen & Goodman (1998): every order discounts its counts by ``D`` and hands the freed mass to
the next lower order; orders below the top count *continuations* (how many different tokens
precede an n-gram) instead of occurrences, and the unigram level interpolates with a uniform
distribution so every token of the vocabulary keeps some probability. ``D`` per order is Ney's
estimate ``n1 / (n1 + 2 n2)`` from the counts of counts.
"""

from __future__ import annotations

from collections import Counter, defaultdict

import numpy as np


class KneserNey:
    """``order``-gram model over integer token ids ``0 .. vocab_size - 1``."""

    def __init__(self, order: int, vocab_size: int):
        if order < 1 or vocab_size < 1:
            raise ValueError("order and vocab_size must be positive")
        self.order, self.vocab_size = order, vocab_size
        self.counts: list[Counter] = []  # per order k (index k-1): n-gram tuple -> count
        self.totals: list[dict] = []  # per order: context -> sum of counts
        self.types: list[dict] = []  # per order: context -> number of distinct next tokens
        self.discounts: list[float] = []

    def fit(self, ids: np.ndarray) -> KneserNey:
        ids = [int(i) for i in ids]
        top = Counter(tuple(ids[i : i + self.order]) for i in range(len(ids) - self.order + 1))
        levels = [top]
        for _ in range(self.order - 1):  # continuation counts: distinct left neighbours
            levels.append(Counter(gram[1:] for gram in levels[-1]))
        self.counts = levels[::-1]
        for counts in self.counts:
            totals: dict = defaultdict(int)
            types: dict = defaultdict(int)
            for gram, c in counts.items():
                totals[gram[:-1]] += c
                types[gram[:-1]] += 1
            self.totals.append(dict(totals))
            self.types.append(dict(types))
            self.discounts.append(_ney_discount(counts))
        return self

    def prob(self, history: tuple[int, ...], token: int) -> float:
        """P(token | the last order-1 tokens of history), built from the unigram level up."""
        p = 1.0 / self.vocab_size
        for k in range(1, self.order + 1):
            if len(history) < k - 1:
                break
            context = tuple(history[len(history) - k + 1 :]) if k > 1 else ()
            total = self.totals[k - 1].get(context, 0)
            if total == 0:  # unseen context: longer ones are unseen too
                break
            d = self.discounts[k - 1]
            count = self.counts[k - 1].get((*context, token), 0)
            p = max(count - d, 0.0) / total + d * self.types[k - 1][context] / total * p
        return p

    def probabilities(self, ids: np.ndarray, first: int = 0) -> np.ndarray:
        """P of each of ``ids[first:]`` given the tokens before it in ``ids`` (earlier ones are
        context only; the first token sees none, like the neural model's cold start)."""
        ids = [int(i) for i in ids]
        n = self.order - 1
        return np.array(
            [self.prob(tuple(ids[max(0, i - n) : i]), ids[i]) for i in range(first, len(ids))]
        )


def _ney_discount(counts: Counter) -> float:
    of_counts = Counter(counts.values())
    n1, n2 = of_counts.get(1, 0), of_counts.get(2, 0)
    return n1 / (n1 + 2 * n2) if n1 and n2 else 0.5
