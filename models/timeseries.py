"""Time-series architectures: the causal next-step predictor and sequence autoencoder
(anomaly detection) and the multi-step forecaster with its seasonal layers and pinball loss.

Inputs are raw feature values: a ``Normalization`` layer with training-part statistics comes
first, so a logged model needs no separate scaler (its outputs are in normalised units).
"""

from __future__ import annotations

from typing import Any

import keras
import numpy as np

from models.cells import PACKAGE
from models.stacks import normalizer, recurrent_stack


def next_step_predictor(
    n_features: int,
    mean: np.ndarray,
    variance: np.ndarray,
    cell: str = "lstm",
    units: int = 64,
    layers: int = 1,
    dropout: float = 0.0,
    recurrent_dropout: float = 0.0,
    residual: bool = False,
) -> keras.Model:
    """Causal per-step forecaster (telemanom style): output[t] predicts normalised x[t+1].

    Because it is causal and runs on sequences of any length, the same weights score a whole
    series in one pass or one point at a time from carried state (streaming). ``residual``
    predicts the change from x[t] instead (output = normalised x[t] + correction): untrained it
    is the persistence forecast, so a few hundred rows of training already help.
    """
    inputs = keras.Input((None, n_features), name="values")
    scaled = normalizer(mean, variance)(inputs)
    x = recurrent_stack(scaled, cell, units, layers, dropout, recurrent_dropout)
    outputs = keras.layers.Dense(n_features, name="next_value", dtype="float32")(x)
    if residual:
        outputs = keras.layers.Add(name="residual", dtype="float32")([scaled, outputs])
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


@keras.saving.register_keras_serializable(package=PACKAGE)
class SeasonalReference(keras.layers.Layer):
    """The seasonal-naive forecast of feature 0, read from the input window: [batch, horizon].

    Step ``s`` takes the value one season before it (``season`` 1: the last value). Added to a
    network's output it makes the network learn a correction to that forecast, like LSTNet's
    autoregressive highway (Lai et al. 2018): training starts from a strong forecast.
    """

    def __init__(self, horizon: int, season: int = 1, **kwargs: Any):
        super().__init__(**kwargs)
        self.horizon = horizon
        self.season = max(int(season), 1)

    def call(self, inputs: Any) -> Any:
        window = inputs.shape[1]
        steps = np.arange(self.horizon)
        index = window + steps - self.season * (steps // self.season + 1)
        if index.min() < 0:
            raise ValueError(f"a window of {window} steps holds no value one season back")
        return keras.ops.take(inputs[..., 0], index, axis=1)

    def get_config(self) -> dict:
        return super().get_config() | {"horizon": self.horizon, "season": self.season}


@keras.saving.register_keras_serializable(package=PACKAGE)
class SeasonalDifference(keras.layers.Layer):
    """Each step beyond the first season, with its change from one season before:
    [batch, window - season, 2 * features].

    The change is what a residual forecaster must extrapolate (how far this week runs above
    last week), so the encoder reads it directly, over a sequence one season shorter.
    """

    def __init__(self, season: int, **kwargs: Any):
        super().__init__(**kwargs)
        self.season = max(int(season), 1)

    def call(self, inputs: Any) -> Any:
        recent = inputs[:, self.season :, :]
        return keras.ops.concatenate([recent, recent - inputs[:, : -self.season, :]], axis=-1)

    def get_config(self) -> dict:
        return super().get_config() | {"season": self.season}


@keras.saving.register_keras_serializable(package=PACKAGE)
class SortedQuantiles(keras.layers.Layer):
    """Sorts quantile outputs so they never cross (rearrangement, Chernozhukov et al. 2010)."""

    def call(self, inputs: Any) -> Any:
        return keras.ops.sort(inputs, axis=-1)


@keras.saving.register_keras_serializable(package=PACKAGE)
class PinballLoss(keras.losses.Loss):
    """Mean quantile (pinball) loss of [batch, horizon, quantiles] forecasts."""

    def __init__(self, quantiles: list[float], name: str = "pinball", **kwargs: Any):
        super().__init__(name=name, **kwargs)
        self.quantiles = [float(q) for q in quantiles]

    def call(self, y_true: Any, y_pred: Any) -> Any:
        quantiles = keras.ops.convert_to_tensor(self.quantiles, dtype=y_pred.dtype)
        error = keras.ops.cast(y_true, y_pred.dtype) - y_pred
        return keras.ops.mean(
            keras.ops.maximum(quantiles * error, (quantiles - 1.0) * error), axis=-1
        )

    def get_config(self) -> dict:
        return super().get_config() | {"quantiles": self.quantiles}


def multi_step_forecaster(
    window: int,
    n_features: int,
    horizon: int,
    mean: np.ndarray,
    variance: np.ndarray,
    cell: str = "lstm",
    units: int = 64,
    layers: int = 1,
    dropout: float = 0.0,
    recurrent_dropout: float = 0.0,
    decoder: str = "direct",
    n_outputs: int = 1,
    season: int = 1,
    residual: bool = True,
) -> keras.Model:
    """Encode a window of history, forecast feature 0 for ``horizon`` steps: [batch, horizon,
    n_outputs] in normalised units (``n_outputs`` > 1: sorted quantiles).

    ``decoder="direct"`` maps the encoding to all steps with one Dense layer (no error
    feedback across steps); ``"seq2seq"`` runs a recurrent decoder over the horizon, fed the
    encoding and each step's seasonal-naive value. ``residual`` adds that seasonal-naive value
    to the output, so the network forecasts the correction, and the encoder then reads the
    last ``window - season`` steps with their seasonal differences (``window > season``).
    """
    if decoder not in ("direct", "seq2seq"):
        raise ValueError(f"decoder must be 'direct' or 'seq2seq', got {decoder!r}")
    if residual and window <= season:
        raise ValueError(f"a residual forecaster needs window > season, got {window} <= {season}")
    inputs = keras.Input((window, n_features), name="history")
    x = normalizer(mean, variance)(inputs)
    encoded = SeasonalDifference(season, name="seasonal_difference")(x) if residual else x
    code = recurrent_stack(
        encoded, cell, units, layers, dropout, recurrent_dropout, False, name="encoder"
    )
    reference = SeasonalReference(horizon, season, name="seasonal_reference")(x)
    reference = keras.layers.Reshape((horizon, 1), name="reference_steps")(reference)
    if decoder == "direct":
        y = keras.layers.Dense(horizon * n_outputs, name="direct_head", dtype="float32")(code)
        y = keras.layers.Reshape((horizon, n_outputs), name="steps")(y)
    else:
        steps = keras.layers.RepeatVector(horizon, name="repeat")(code)
        steps = keras.layers.Concatenate(name="decoder_inputs")([steps, reference])
        y = recurrent_stack(steps, cell, units, 1, dropout, recurrent_dropout, name="decoder")
        y = keras.layers.Dense(n_outputs, name="step_head", dtype="float32")(y)
    if residual:
        y = keras.layers.Add(name="plus_reference")([y, reference])
    if n_outputs > 1:
        y = SortedQuantiles(name="sorted_quantiles")(y)
    return keras.Model(inputs, y, name="multi_step_forecaster")
