"""Scoring a series with a trained detector, shared by the task, ``--predict`` and the MLflow
``scorer``: the batch protocol's smoothed error, the online protocol's errors, likelihoods and
alarms. Importing it registers the models' custom layers (a served model needs them)."""

from __future__ import annotations

import keras
import numpy as np

import models  # noqa: F401  (registers the custom layers)
from pipelines.anomaly import detection, online


def predict_sequence(model: keras.Model, sequence: np.ndarray) -> np.ndarray:
    """The model's output for one whole sequence [T, F].

    The sequence is repeated once per replica: under a multi-worker strategy a batch of one
    leaves the other workers an empty batch, which the residual layer cannot broadcast."""
    replicas = model.distribute_strategy.num_replicas_in_sync
    batch = np.repeat(sequence[None], replicas, axis=0)
    return model.predict(batch, batch_size=replicas, verbose=0)[0]


def next_step_errors(model: keras.Model, inputs: np.ndarray, scaled: np.ndarray) -> np.ndarray:
    """Per-row mean absolute error of the causal forecaster's prediction of each row from the
    rows before it (0 on row 0); ``scaled`` is ``inputs`` in the units the model predicts."""
    predicted = predict_sequence(model, inputs)
    errors = np.zeros(len(scaled))
    errors[1:] = np.abs(scaled[1:] - predicted[:-1]).mean(axis=1)
    return errors


def forecast_errors(model: keras.Model, scaled: np.ndarray) -> np.ndarray:
    """Per-row error of the online forecaster over already normalised values."""
    return next_step_errors(model, scaled, scaled)


def online_scores(
    model: keras.Model, values: np.ndarray, detector: dict, fit_reference: bool = False
) -> online.Scored:
    """An online run's errors, likelihoods and alarms over ``values`` from a fresh stream,
    with the run's normaliser start (or one fitted on these values' probation rows)."""
    probation = detector["probation"]
    if fit_reference:
        reference = values[:probation]
        normaliser = online.RollingNormaliser.fit(detector["norm_span"], reference)
    else:
        ref = detector["reference"]
        normaliser = online.RollingNormaliser(detector["norm_span"], ref["mean"], ref["std"])
    scaled = np.array([normaliser.update(row) for row in values], np.float32)
    settings = online.AlarmSettings.of_detector(detector)
    return online.score_errors(forecast_errors(model, scaled), settings, probation, values)


def score_series(
    model: keras.Model, values: np.ndarray, kind: str, window: int, smoothing: int
) -> np.ndarray:
    """Per-step anomaly score of a raw series: EWMA-smoothed mean absolute error."""
    scaled = np.asarray(model.get_layer("normalize")(values[None]))[0]
    if kind == "forecaster":
        errors = next_step_errors(model, values, scaled).astype(np.float32)
    else:
        errors = _reconstruction_errors(model, values, scaled, window)
    return detection.ewma(errors, smoothing).astype(np.float32)


def _reconstruction_errors(model, values, scaled, window: int) -> np.ndarray:
    starts = np.arange(len(values) - window + 1)
    idx = starts[:, None] + np.arange(window)[None, :]
    reconstructed = model.predict(values[idx], batch_size=256, verbose=0)
    step_error = np.abs(reconstructed - scaled[idx]).mean(axis=2)
    total = np.zeros(len(values))
    count = np.zeros(len(values))
    np.add.at(total, idx, step_error)
    np.add.at(count, idx, 1.0)
    return total / count
