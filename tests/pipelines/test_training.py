"""Training pieces shared by the tasks."""

from __future__ import annotations

import keras
import mlflow
import numpy as np
import pytest
import tensorflow as tf

from pipelines.core.config import RunOptions, TaskConfig
from pipelines.core.fitting import fit
from pipelines.core.task import Splits
from pipelines.core.training import WeightAveraging


class _Recorder(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.epochs: list[list[np.ndarray]] = []

    def on_epoch_end(self, epoch, logs=None):
        self.epochs.append([np.array(w) for w in self.model.get_weights()])


def _data() -> tf.data.Dataset:
    x = np.random.default_rng(0).normal(size=(64, 3)).astype("float32")
    return tf.data.Dataset.from_tensor_slices((x, x @ np.array([[1.0], [-2.0], [0.5]], "f4")))


def _model() -> keras.Model:
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(4), keras.layers.Dense(1)])
    model.compile(keras.optimizers.SGD(0.05), "mse")
    return model


def _assert_mean_of(model: keras.Model, epochs: list[list[np.ndarray]]) -> None:
    for i, averaged in enumerate(model.get_weights()):
        expected = np.mean([weights[i] for weights in epochs], axis=0)
        np.testing.assert_allclose(averaged, expected, rtol=1e-5, atol=1e-6)


def _fit(callbacks: list[keras.callbacks.Callback], epochs: int) -> keras.Model:
    model = _model()
    model.fit(_data().batch(16), epochs=epochs, callbacks=callbacks, verbose=0)
    return model


def test_weight_averaging_sets_the_mean_of_the_epochs_from_start_on():
    recorder = _Recorder()
    model = _fit([recorder, WeightAveraging(start=3)], epochs=5)
    _assert_mean_of(model, recorder.epochs[2:])
    assert not np.allclose(model.get_weights()[0], recorder.epochs[-1][0])


def test_weight_averaging_leaves_the_weights_when_training_ends_before_start():
    recorder = _Recorder()
    model = _fit([recorder, WeightAveraging(start=4)], epochs=3)
    for final, last in zip(model.get_weights(), recorder.epochs[-1]):
        np.testing.assert_array_equal(final, last)


@pytest.mark.parametrize(
    ("epochs", "share", "first"), [(25, 0.6, 11), (25, 1.0, 1), (25, 0.01, 25), (1, 0.6, 1)]
)
def test_average_last_counts_epochs_back_from_the_last(epochs, share, first):
    assert TaskConfig(epochs=epochs, average_last=share).first_averaged_epoch == first
    assert TaskConfig(epochs=epochs).first_averaged_epoch is None


class _Task:
    objective, direction = "val_loss", "min"


def test_fit_with_average_last_trains_every_epoch_and_keeps_the_average(tracking_uri):
    """Early stopping (patience 1) would stop a run whose validation loss rises; averaging
    replaces it: all epochs run and the model holds the mean of the last ones."""
    data = _data().batch(16)
    rising = data.map(lambda x, y: (x, y + 1e3 * tf.random.uniform([], seed=1)))
    splits = Splits(data, rising, data)
    cfg = TaskConfig(epochs=6, patience=1, average_last=0.5)
    recorder = _Recorder()
    model = _model()
    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_experiment("training")  # not an experiment id an earlier test left active
    with mlflow.start_run():
        history = fit(_Task(), cfg, model, splits, RunOptions(), [recorder])
    assert len(history["loss"]) == 6
    _assert_mean_of(model, recorder.epochs[3:])
