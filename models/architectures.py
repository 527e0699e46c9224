"""Small architectures the pipelines share, built from the recurrent layers by cell name.

Inputs are raw feature values: a ``Normalization`` layer adapted on the training part comes
first, so a logged model needs no separate scaler (its outputs are in normalised units).
"""

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


def next_step_predictor(
    n_features: int,
    mean: np.ndarray,
    variance: np.ndarray,
    cell: str = "lstm",
    units: int = 64,
    layers: int = 1,
    dropout: float = 0.0,
    recurrent_dropout: float = 0.0,
) -> keras.Model:
    """Causal per-step forecaster (telemanom style): output[t] predicts normalised x[t+1].

    Because it is causal and runs on sequences of any length, the same weights score a whole
    series in one pass or one point at a time from carried state (streaming).
    """
    inputs = keras.Input((None, n_features), name="values")
    x = normalizer(mean, variance)(inputs)
    x = recurrent_stack(x, cell, units, layers, dropout, recurrent_dropout)
    outputs = keras.layers.Dense(n_features, name="next_value", dtype="float32")(x)
    return keras.Model(inputs, outputs, name="next_step_predictor")


def sequence_autoencoder(
    window: int,
    n_features: int,
    mean: np.ndarray,
    variance: np.ndarray,
    cell: str = "lstm",
    units: int = 64,
    layers: int = 1,
    dropout: float = 0.0,
    recurrent_dropout: float = 0.0,
) -> keras.Model:
    """EncDec-AD (Malhotra et al. 2016): encode a window to a vector, reconstruct it.

    Output is the normalised reconstruction of the window; a large error marks an anomaly.
    """
    inputs = keras.Input((window, n_features), name="values")
    x = normalizer(mean, variance)(inputs)
    code = recurrent_stack(
        x, cell, units, layers, dropout, recurrent_dropout, return_sequences=False, name="encoder"
    )
    x = keras.layers.RepeatVector(window, name="repeat")(code)
    x = recurrent_stack(x, cell, units, layers, dropout, recurrent_dropout, name="decoder")
    outputs = keras.layers.Dense(n_features, name="reconstruction", dtype="float32")(x)
    return keras.Model(inputs, outputs, name="sequence_autoencoder")
