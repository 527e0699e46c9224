"""The sentiment network and the deployed model around it.

The network reads token ids: a frozen GloVe embedding plus a trainable per-word correction
(zero at start, decayed towards zero), word dropout, bidirectional recurrent layers,
``AttentionPooling`` and one sigmoid unit. Its vocabulary is the training words *and* the most
frequent GloVe words, so a word never seen in training still gets its pretrained vector instead
of the one ``[UNK]`` id: the correction only moves words training saw, and every other word
stays where GloVe put it, in the same space the encoder learned to read.

The deployed model takes raw strings: the normalising vectorizer (``normalise.py``) feeds the
network, fixed linear experts read the same text through their own featurisation, and a fixed
weighted average of the parts' probabilities is the output (weights chosen after training, on
held-out data, see ``task.py``). :func:`parts` rebuilds a view returning every part's
probability from the layers of a deployed model, also a reloaded one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import keras
import numpy as np

from models.attention import AttentionPooling
from models.recurrent import make_recurrent_layer
from pipelines.core.text import OOV_ID, PAD_ID
from pipelines.sentiment.normalise import normalise

PACKAGE = "sentiment"
WORDS = "words"
NETWORK = "network"
ENSEMBLE = "ensemble"


def _normalised_batch(texts: Any, negation: bool) -> Any:
    """``normalise`` over a string tensor, inside TensorFlow (a ``py_function``)."""
    import tensorflow as tf

    def run(batch: tf.Tensor) -> np.ndarray:
        values = batch.numpy()
        flat = [normalise(v.decode("utf-8", "replace"), negation) for v in values.ravel()]
        return np.array(flat, dtype=object).reshape(values.shape)

    out = tf.py_function(run, [texts], tf.string)
    out.set_shape(texts.shape)
    return out


@keras.saving.register_keras_serializable(package=PACKAGE)
def normalised(texts: Any) -> Any:
    """``TextVectorization`` standardize: :func:`normalise` (the network's tokens)."""
    return _normalised_batch(texts, negation=False)


@keras.saving.register_keras_serializable(package=PACKAGE)
def normalised_with_negation(texts: Any) -> Any:
    """``TextVectorization`` standardize: :func:`normalise` with negation scope marked
    (``neg_``), for the bag-of-words experts."""
    return _normalised_batch(texts, negation=True)


@keras.saving.register_keras_serializable(package=PACKAGE)
class WordDropout(keras.layers.Layer):
    """In training, each word id becomes ``[UNK]`` with probability ``rate`` (padding kept):
    the classifier cannot lean on one memorised word and learns what ``[UNK]`` should mean."""

    def __init__(self, rate: float, seed: int | None = None, **kwargs: Any):
        super().__init__(**kwargs)
        self.rate = rate
        self.seed = seed
        self.generator = keras.random.SeedGenerator(seed)

    def call(self, ids: Any, training: bool | None = None) -> Any:
        if not training or self.rate <= 0:
            return ids
        drop = keras.random.uniform(keras.ops.shape(ids), seed=self.generator) < self.rate
        keep = keras.ops.logical_or(keras.ops.logical_not(drop), keras.ops.equal(ids, PAD_ID))
        return keras.ops.where(keep, ids, keras.ops.cast(OOV_ID, ids.dtype))

    def get_config(self) -> dict:
        return super().get_config() | {"rate": self.rate, "seed": self.seed}


@dataclass
class NetworkShape:
    """What the network is made of (the task's config, resolved)."""

    cell: str = "lstm"
    units: int = 64
    layers: int = 1
    dropout: float = 0.5
    head_dropout: float = 0.5
    attention_units: int = 64
    word_dropout: float = 0.1
    embedding_noise: float = 0.0
    embedding_dropout: float = 0.0
    trainable_embedding: str = "correction"  # correction | full | frozen


def network(vectors: np.ndarray, shape: NetworkShape, seed: int | None = None) -> keras.Model:
    """Token ids ``[B, T]`` -> p(positive) ``[B, 1]``; ``vectors`` is the ``[V, d]`` initial
    embedding (pretrained rows where known)."""
    ids = keras.Input((None,), dtype="int64", name="ids")
    mask = keras.ops.not_equal(ids, PAD_ID)
    dropped = WordDropout(shape.word_dropout, seed, name="word_dropout")(ids)
    frozen = shape.trainable_embedding != "full"
    embedding = keras.layers.Embedding(
        *vectors.shape, trainable=not frozen, name="embedding",
        embeddings_initializer=keras.initializers.Constant(vectors),
    )  # fmt: skip
    x = embedding(dropped)
    if shape.trainable_embedding == "correction":
        correction = keras.layers.Embedding(
            *vectors.shape, embeddings_initializer="zeros", name="embedding_correction"
        )
        x = keras.layers.Add(name="corrected_embedding")([x, correction(dropped)])
    x = keras.layers.GaussianNoise(shape.embedding_noise, seed=seed, name="embedding_noise")(x)
    x = keras.layers.SpatialDropout1D(shape.embedding_dropout, name="embedding_dropout")(x)
    for i in range(shape.layers):
        x = keras.layers.Bidirectional(
            make_recurrent_layer(
                shape.cell, shape.units, return_sequences=True, dropout=shape.dropout
            ),
            name=f"birnn_{i}",
        )(x, mask=mask)
    pooled, _ = AttentionPooling(shape.attention_units, name="attention_pooling")(x, mask=mask)
    pooled = keras.layers.Dropout(shape.head_dropout, name="head_dropout")(pooled)
    head = keras.layers.Dense(1, activation="sigmoid", name="probability", dtype="float32")
    return keras.Model(ids, head(pooled), name=NETWORK)


@dataclass
class LinearExpert:
    """A fixed sigmoid unit over a vectorizer's features of the raw text."""

    name: str
    vectorizer: keras.layers.TextVectorization
    weights: np.ndarray
    bias: float


def deployed(
    vectorizer: keras.layers.TextVectorization,
    trained: keras.Model,
    experts: Sequence[LinearExpert],
    weights: Sequence[float],
) -> keras.Model:
    """Raw text -> ``sum_i weights[i] * p_i`` over the network and each expert (in that
    order); every part is fixed, the weights too."""
    text = keras.Input(shape=(), dtype="string", name="text")
    probabilities = [trained(vectorizer(text))]
    for expert in experts:
        unit = keras.layers.Dense(
            1, activation="sigmoid", trainable=False, name=f"expert_{expert.name}",
            dtype="float32",
        )  # fmt: skip
        probabilities.append(unit(expert.vectorizer(text)))
        unit.set_weights(
            [np.asarray(expert.weights, np.float32).reshape(-1, 1),
             np.asarray([expert.bias], np.float32)]
        )  # fmt: skip
    if not experts:
        return keras.Model(text, probabilities[0], name="sentiment")
    stacked = keras.layers.Concatenate(name="parts")(probabilities)
    mix = keras.layers.Dense(1, use_bias=False, trainable=False, name=ENSEMBLE, dtype="float32")
    output = mix(stacked)
    mix.set_weights([np.asarray(weights, np.float32).reshape(-1, 1)])
    return keras.Model(text, output, name="sentiment")


def part_names(model: keras.Model) -> list[str]:
    """``network`` then the experts' names, in the ensemble's order."""
    experts = [
        layer.name.removeprefix("expert_")
        for layer in model.layers
        if layer.name.startswith("expert_") and not layer.name.endswith("_features")
    ]
    return [NETWORK, *experts]


def parts(model: keras.Model) -> keras.Model:
    """Raw text -> ``[B, parts]`` probabilities of the network and each expert, rewired from
    the layers of a deployed model (so it works on a reloaded one)."""
    text = keras.Input(shape=(), dtype="string", name="text")
    outputs = [model.get_layer(NETWORK)(model.get_layer(WORDS)(text))]
    for name in part_names(model)[1:]:
        features = model.get_layer(f"expert_{name}_features")(text)
        outputs.append(model.get_layer(f"expert_{name}")(features))
    return keras.Model(
        text, keras.layers.Concatenate()(outputs) if len(outputs) > 1 else outputs[0]
    )


def mixing_weights(model: keras.Model) -> np.ndarray:
    """The ensemble's weight per part (``[1.0]`` for the network alone)."""
    if ENSEMBLE not in [layer.name for layer in model.layers]:
        return np.ones(1)
    return model.get_layer(ENSEMBLE).get_weights()[0].ravel()
