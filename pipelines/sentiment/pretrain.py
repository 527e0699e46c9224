"""Language-model pretraining of a text classifier's encoder (Dai & Le 2015).

A classifier trained on 9k labelled snippets learns its embedding and recurrent weights from
the labels alone. Training the same layers first to predict words of unlabelled text (the
package's plot synopses and the training snippets, never test texts) gives them word meaning
and syntax that labels cannot teach; fine-tuning then starts from there.

The encoder is bidirectional, so it is pretrained as two language models at once (as in ELMo,
Peters et al. 2018): the forward half of the state at step ``t`` predicts word ``t+1`` and the
backward half predicts word ``t-1``. The language model *shares* the classifier's embedding and
first bidirectional layer, so pretraining changes the classifier's own weights. Only the
``output_words`` most frequent words are predicted (rarer ones as ``[UNK]``): the softmax over
the whole vocabulary would cost most of the time and teach little about rare words.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import keras
import numpy as np
import pandas as pd
import tensorflow as tf

from pipelines.core.text import OOV_ID, PAD_ID
from pipelines.core.training import make_optimizer
from pipelines.datasets.text_builders import ROTTEN_TOMATOES


def plot_synopses(max_words: int) -> list[str]:
    """The unlabelled ``plot`` rows of the Rotten Tomatoes file, cut into texts of at most
    ``max_words`` words (the vectorizer keeps only that many)."""
    frame = pd.read_csv(ROTTEN_TOMATOES.path(), dtype=str, keep_default_na=False)
    plots = frame.loc[frame["category"] == "plot", "text"]
    return [chunk for text in plots for chunk in word_chunks(text, max_words)]


def word_chunks(text: str, max_words: int) -> list[str]:
    """Consecutive pieces of ``text`` with at most ``max_words`` whitespace-separated words."""
    words = re.split(r"\s+", text.strip())
    return [" ".join(words[i : i + max_words]) for i in range(0, len(words), max_words) if words[i]]


def language_model(classifier: keras.Model, output_words: int) -> keras.Model:
    """Token ids -> next-word logits (forward half) and previous-word logits (backward half),
    concatenated along time: ``[B, 2(T-1), output_words]``. Shares the classifier's layers."""
    encoder = classifier.get_layer("birnn_0")
    ids = keras.Input((None,), dtype="int64", name="ids")
    vectors = classifier.get_layer("embedding")(ids)
    if "embedding_correction" in [layer.name for layer in classifier.layers]:
        vectors = vectors + classifier.get_layer("embedding_correction")(ids)
    states = encoder(vectors, mask=keras.ops.not_equal(ids, PAD_ID))
    half = states.shape[-1] // 2
    forward, backward = states[:, :-1, :half], states[:, 1:, half:]
    logits = keras.layers.Dense(output_words, name="lm_logits", dtype="float32")
    return keras.Model(ids, keras.ops.concatenate([logits(forward), logits(backward)], axis=1))


def lm_dataset(
    texts: Sequence[str],
    vectorizer: keras.layers.Layer,
    output_words: int,
    batch_size: int,
    seed: int,
) -> tf.data.Dataset:
    """``(ids, targets)`` batches: targets are the next words then the previous words, those
    outside the ``output_words`` most frequent as ``[UNK]``."""

    def pair(batch: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        ids = tf.cast(vectorizer(batch), tf.int64)
        words = tf.where(ids < output_words, ids, tf.constant(OOV_ID, tf.int64))
        return ids, tf.concat([words[:, 1:], words[:, :-1]], axis=1)

    ds = tf.data.Dataset.from_tensor_slices(tf.constant(list(texts), tf.string))
    ds = ds.shuffle(len(texts), seed=seed, reshuffle_each_iteration=True).batch(batch_size)
    return ds.map(pair, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)


def pretrain(
    classifier: keras.Model,
    vectorizer: keras.layers.TextVectorization,
    texts: Sequence[str],
    epochs: int,
    batch_size: int,
    seed: int,
    learning_rate: float = 3e-3,
    output_words: int = 2000,
) -> list[float]:
    """Train the classifier's trainable embedding and first encoder layer (the network
    reads ``vectorizer``'s ids) as a bidirectional language model on ``texts``; returns the
    loss per epoch (padding is not predicted). The optimizer is the language model's own:
    fine-tuning starts with fresh Adam moments."""
    output_words = min(output_words, vectorizer.vocabulary_size())
    model = language_model(classifier, output_words)
    model.compile(
        optimizer=make_optimizer(learning_rate),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True, ignore_class=PAD_ID),
    )
    data = lm_dataset(texts, vectorizer, output_words, batch_size, seed)
    history = model.fit(data, epochs=epochs, verbose=0)
    return [float(v) for v in np.asarray(history.history["loss"])]
