"""Speaker normalisation of MFCC frames: one TensorFlow implementation for training and serving.

A voice and a microphone shift and scale every cepstral coefficient; normalising each by the
statistics of all the frames of one speaker removes that and keeps the shape of each word
(per-utterance CMVN over a 0.4 s word removes part of it). ``cmvn`` standardises each
coefficient (as Kaldi's per-speaker CMVN), ``histogram`` maps its whole distribution to a
standard normal (HEQ, de la Torre et al. 2005: mid-ranks among the speaker's frames, then the
inverse normal CDF), which also removes the skew a mean and a variance leave.

Training applies it per speaker (:func:`pipelines.speech.utterances.speaker_normalized`); a
logged model that takes audio applies it with :class:`SpeakerNormalization` to the whole batch
it is given, so a batch must hold the recordings of ONE voice (``--predict`` batches each
speaker folder on its own). The statistics need no labels: a few seconds of the voice give a
usable estimate (docs/speech.md measures how many).
"""

from __future__ import annotations

import keras
import tensorflow as tf

METHODS = ("cmvn", "histogram")
_PACKAGE = "pipelines.speech"


def normalized(frames: tf.Tensor, valid: tf.Tensor, method: str) -> tf.Tensor:
    """``frames [B, T, C]`` mapped by the statistics of all their ``valid [B, T]`` frames
    (one voice); invalid (padding) frames come back as zeros."""
    if method not in METHODS:
        raise ValueError(f"unknown speaker normalisation {method!r}")
    x = tf.cast(frames, tf.float64)
    pool = tf.boolean_mask(x, valid)  # [M, C], the speaker's frames
    if method == "cmvn":
        mean, std = tf.reduce_mean(pool, axis=0), tf.math.reduce_std(pool, axis=0) + 1e-6
        mapped = (x - mean) / std
    else:
        mapped = _equalized(x, pool)
    mapped = tf.where(valid[..., None], mapped, tf.zeros_like(mapped))
    return tf.cast(mapped, frames.dtype)


def _equalized(x: tf.Tensor, pool: tf.Tensor) -> tf.Tensor:
    """Each coefficient of ``x`` through the empirical CDF of ``pool`` (mid-rank, so ties and
    values outside the pool stay finite), then the inverse normal CDF."""
    reference = tf.sort(tf.transpose(pool), axis=1)  # [C, M]
    count = tf.cast(tf.shape(pool)[0], tf.float64)
    shape = tf.shape(x)
    values = tf.transpose(tf.reshape(x, [-1, shape[-1]]))  # [C, B*T]
    ranks = tf.searchsorted(reference, values, "left") + tf.searchsorted(reference, values, "right")
    scores = tf.math.ndtri((tf.cast(ranks, tf.float64) / 2 + 0.5) / (count + 1))
    return tf.reshape(tf.transpose(scores), shape)


@keras.saving.register_keras_serializable(package=_PACKAGE)
class SpeakerNormalization(keras.layers.Layer):
    """:func:`normalized` over the whole batch inside a model: the batch is one voice.
    Padding frames (all zero) are left out of the statistics and stay zero."""

    def __init__(self, method: str = "cmvn", **kwargs):
        super().__init__(**kwargs)
        self.method = method

    def call(self, frames: tf.Tensor) -> tf.Tensor:
        return normalized(frames, tf.reduce_any(tf.not_equal(frames, 0), axis=-1), self.method)

    def get_config(self) -> dict:
        return super().get_config() | {"method": self.method}
