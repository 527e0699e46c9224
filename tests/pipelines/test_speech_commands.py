"""``tfds:speech_commands`` without its 2.4 GB download: tfds' own mock serves the catalogue's
real feature spec (12 labelled classes, 16 kHz int16 audio) with synthetic recordings, so the
loader, the 16 kHz front-end and an isolated-word run are exercised as a user would run them."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from pipelines.core import RunOptions, run
from pipelines.speech import features
from pipelines.speech.corpora import load_corpus
from pipelines.speech.task import SpeechConfig, SpeechTask
from tests.conftest import runs_of

SPLIT_SIZES = {"train": 24, "validation": 8, "test": 8}


def tone_recordings(builder, split, **kwargs):
    """One second at 16 kHz per example: a tone whose pitch encodes the label, plus noise."""
    rng = np.random.default_rng(len(split))
    labels = rng.permutation(np.arange(SPLIT_SIZES[split]) % 12)  # training sees every class
    t = np.arange(16000) / 16000
    audio = [
        (8000 * np.sin(2 * np.pi * (200 + 60 * label) * t) + rng.normal(0, 300, t.size))
        for label in labels
    ]
    return tf.data.Dataset.from_tensor_slices(
        {"audio": np.asarray(audio, np.int16), "label": labels.astype(np.int64)}
    )


@pytest.fixture
def speech_commands(monkeypatch):
    monkeypatch.setattr(tfds.core.DatasetBuilder, "is_prepared", lambda self: True)
    with tfds.testing.mock_data(as_dataset_fn=tone_recordings):
        yield


def test_speech_commands_loads_every_split_with_fsdd_features(speech_commands):
    corpus = load_corpus("tfds:speech_commands")
    names = tfds.builder("speech_commands").info.features["label"].names
    assert len(corpus) == sum(SPLIT_SIZES.values()) and set(corpus.labels) <= set(names)
    assert int(corpus.own_test.sum()) == SPLIT_SIZES["test"]
    one_second_at_8k = features.mfcc(tf.zeros(8000)).shape[0]
    assert all(f.shape == (one_second_at_8k, 13) for f in corpus.frames)


def test_an_isolated_model_trains_on_speech_commands(speech_commands, workdir, tracking_uri):
    cfg = SpeechConfig(
        data="tfds:speech_commands", mode="isolated", epochs=1, units=8, layers=1, batch_size=8
    )
    result = run(SpeechTask(), cfg, RunOptions(tracking_uri=tracking_uri, log_model=False))
    (logged,) = runs_of(tracking_uri, "speech")
    assert logged.info.status == "FINISHED"
    assert 0.0 <= logged.data.metrics["test_accuracy"] <= 1.0
    assert result.model.output_shape[-1] == 12
