"""Recurrent stacks and input normalisation the task architectures are built from."""

from __future__ import annotations

from typing import Any

import keras
import numpy as np

from models.recurrent import make_recurrent_layer


def recurrent_stack(
    x: Any,
    cell: str,
    units: int,
    layers: int,
    dropout: float = 0.0,
    recurrent_dropout: float = 0.0,
    return_sequences: bool = True,
    name: str = "recurrent",
) -> Any:
    """``layers`` stacked recurrent layers; only the last may drop the time axis."""
    if layers <= 0:
        raise ValueError(f"layers must be positive, got {layers}")
    for i in range(layers):
        x = make_recurrent_layer(
            cell,
            units,
            return_sequences=return_sequences or i < layers - 1,
            dropout=dropout,
            recurrent_dropout=recurrent_dropout,
            name=f"{name}_{i}",
        )(x)
    return x


def normalizer(mean: np.ndarray, variance: np.ndarray) -> keras.layers.Normalization:
    """A fixed per-feature z-score layer (statistics from the training part only)."""
    return keras.layers.Normalization(
        mean=np.asarray(mean, np.float32),
        variance=np.asarray(variance, np.float32),
        name="normalize",
    )


def bidirectional_stack(
    x: Any, mask: Any, cell: str, units: int, layers: int, dropout: float, recurrent: float
) -> Any:
    """``layers`` masked bidirectional recurrent layers (``birnn_<i>``), all returning sequences."""
    for i in range(layers):
        rnn = make_recurrent_layer(
            cell, units, return_sequences=True, dropout=dropout, recurrent_dropout=recurrent
        )
        x = keras.layers.Bidirectional(rnn, name=f"birnn_{i}")(x, mask=mask)
    return x
