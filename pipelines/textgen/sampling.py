"""Choosing the next token from a language model's logits: temperature, top-k, top-p.

Temperature sharpens (< 1) or flattens (> 1) the distribution; 0 means argmax. Top-k keeps
the k likeliest tokens; top-p (nucleus, Holtzman et al. 2020) keeps the smallest set whose
probability reaches p. Both cut the long tail of unlikely tokens that makes samples derail.
"""

from __future__ import annotations

import numpy as np


def next_token_distribution(
    logits: np.ndarray, temperature: float = 1.0, top_k: int = 0, top_p: float = 1.0
) -> np.ndarray:
    """Probabilities over the vocabulary after temperature, top-k and top-p (0 / 1 disable)."""
    logits = np.asarray(logits, np.float64)
    if temperature <= 0:
        probs = np.zeros_like(logits)
        probs[np.argmax(logits)] = 1.0
        return probs
    scaled = logits / temperature
    probs = np.exp(scaled - scaled.max())
    probs /= probs.sum()
    order = np.argsort(-probs, kind="stable")
    keep = np.ones(len(probs), bool)
    if top_k > 0:
        keep[order[top_k:]] = False
    if top_p < 1.0:
        cumulative = np.cumsum(probs[order])
        cutoff = int(np.searchsorted(cumulative, top_p)) + 1  # smallest set reaching top_p
        keep[order[cutoff:]] = False
    probs = np.where(keep, probs, 0.0)
    return probs / probs.sum()


def sample(
    logits: np.ndarray,
    rng: np.random.Generator,
    temperature: float = 1.0,
    top_k: int = 0,
    top_p: float = 1.0,
) -> int:
    """One token id drawn from `next_token_distribution`."""
    probs = next_token_distribution(logits, temperature, top_k, top_p)
    return int(rng.choice(len(probs), p=probs))
