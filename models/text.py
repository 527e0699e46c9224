"""Text architectures over token ids or raw strings: the attention translator, the text
classifier with its linear expert and attention view, and the language model with its
stateful twin for generation."""

from __future__ import annotations

from typing import Any

import keras
import numpy as np

from models.attention import AttentionDecoder, AttentionPooling
from models.cells import PACKAGE
from models.recurrent import make_recurrent_layer
from models.stacks import bidirectional_stack


@keras.saving.register_keras_serializable(package=PACKAGE)
class NonPadding(keras.layers.Layer):
    """``[B, T]`` bool, True on real tokens: id 0 is padding. Feeds attention masks."""

    def call(self, tokens: Any) -> Any:
        return keras.ops.not_equal(tokens, 0)


def seq2seq_translator(
    source_vocab: int,
    target_vocab: int,
    cell: str = "lstm",
    units: int = 128,
    embedding_dim: int = 64,
    attention: str = "bahdanau",
    dropout: float = 0.0,
) -> keras.Model:
    """Bidirectional recurrent encoder + attention decoder (Bahdanau et al., 2015).

    Inputs ``{"source": [B, S] ids, "target": [B, T] teacher-forced ids}`` (0 = padding);
    output logits ``[B, T, target_vocab]``. The decoder has ``2 * units`` so its query matches
    the concatenated forward/backward encoder outputs (Luong dot needs that) and the joined
    final states (layers ``encoder_state_<i>``) seed it. Inference builds an encoder sub-model
    from layers ``source``, ``encoder``, ``source_mask`` and ``encoder_state_<i>`` and runs
    `models.decoding` on the layer ``decoder``.
    """
    source = keras.Input((None,), dtype="int32", name="source")
    target = keras.Input((None,), dtype="int32", name="target")
    mask = NonPadding(name="source_mask")(source)
    x = keras.layers.Embedding(source_vocab, embedding_dim, name="source_embedding")(source)
    x = keras.layers.Dropout(dropout, name="source_dropout")(x)
    rnn = make_recurrent_layer(cell, units, return_sequences=True, return_state=True)
    encoded, *finals = keras.layers.Bidirectional(rnn, name="encoder")(x, mask=mask)
    half = len(finals) // 2  # forward states, then backward states
    states = [
        keras.layers.Concatenate(name=f"encoder_state_{i}")([finals[i], finals[half + i]])
        for i in range(half)
    ]
    decoder = AttentionDecoder(
        target_vocab, embedding_dim, 2 * units, cell=cell, attention=attention, dropout=dropout,
        name="decoder",
    )  # fmt: skip
    logits = decoder((target, encoded), encoder_mask=mask, initial_state=states)
    return keras.Model({"source": source, "target": target}, logits, name="seq2seq_translator")


def text_classifier(
    vectorizer: keras.layers.Layer,
    cell: str = "lstm",
    units: int = 64,
    layers: int = 1,
    embedding_dim: int = 128,
    dropout: float = 0.0,
    recurrent_dropout: float = 0.0,
    head_dropout: float = 0.0,
    attention_units: int = 64,
    embedding_dropout: float = 0.0,
) -> keras.Model:
    """Binary text classifier on raw strings: the adapted ``vectorizer`` (so a logged model
    takes text), masked embedding, bidirectional recurrent layers, ``AttentionPooling``, one
    sigmoid unit. The pooling weights are read back by `attention_explainer`.

    ``embedding_dropout`` drops whole embedding channels (SpatialDropout1D): on small corpora
    the embedding table is where a classifier overfits first."""
    text = keras.Input(shape=(), dtype="string", name="text")
    ids = vectorizer(text)
    mask = keras.ops.not_equal(ids, 0)
    x = keras.layers.Embedding(
        vectorizer.vocabulary_size(), embedding_dim, mask_zero=True, name="embedding"
    )(ids)
    x = keras.layers.SpatialDropout1D(embedding_dropout, name="embedding_dropout")(x)
    x = bidirectional_stack(x, mask, cell, units, layers, dropout, recurrent_dropout)
    pooled, _ = AttentionPooling(attention_units, name="attention_pooling")(x, mask=mask)
    pooled = keras.layers.Dropout(head_dropout, name="head_dropout")(pooled)
    head = keras.layers.Dense(1, activation="sigmoid", name="probability", dtype="float32")
    return keras.Model(text, head(pooled), name="text_classifier")


# keras.layers.TextVectorization's "strip_punctuation" characters (keras 3.15)
PUNCTUATION = r'[!"#$%&()\*\+,-\./:;<=>?@\[\\\]^_`{|}~\']'


@keras.saving.register_keras_serializable(package=PACKAGE)
def lower_and_space_punctuation(texts: Any) -> Any:
    """A ``TextVectorization`` standardize: lowercase, and punctuation becomes a space instead
    of vanishing, so "it's" is the words "it" and "s" and "well-made" is "well" and "made"."""
    import tensorflow as tf  # TextVectorization's string ops are TensorFlow's on any backend

    return tf.strings.regex_replace(tf.strings.lower(texts), PUNCTUATION, " ")


def with_linear_expert(
    classifier: keras.Model,
    vectorizer: keras.layers.TextVectorization,
    weights: np.ndarray,
    bias: float,
) -> keras.Model:
    """A trained `text_classifier` averaged with a fixed linear expert on the same raw text:
    ``(p_classifier + sigmoid(features(text) @ weights + bias)) / 2``.

    ``vectorizer`` turns text into the expert's features (e.g. multi-hot n-grams, adapted
    beforehand); the ``expert`` unit is not trainable. The classifier's layers are reused, not
    nested, so ``get_layer("attention_pooling")`` and the parts (``probability``, ``expert``)
    stay reachable, also in a reloaded model."""
    text = classifier.inputs[0]
    expert = keras.layers.Dense(
        1, activation="sigmoid", trainable=False, name="expert", dtype="float32"
    )
    expert_probability = expert(vectorizer(text))
    expert.set_weights(
        [np.asarray(weights, np.float32).reshape(-1, 1), np.asarray([bias], np.float32)]
    )
    average = keras.layers.Average(name="ensemble", dtype="float32")
    return keras.Model(
        text, average([classifier.outputs[0], expert_probability]), name="text_ensemble"
    )


def attention_explainer(model: keras.Model, vectorizer_name: str) -> keras.Model:
    """A view of a trained `text_classifier` or `with_linear_expert` model (also one reloaded
    from disk) that returns ``(probability [B, 1], attention weights [B, T], token ids [B, T])``;
    the probability is the model's output (the ensemble's, when there is an expert)."""
    return keras.Model(
        model.inputs,
        [
            model.outputs[0],
            model.get_layer("attention_pooling").output[1],
            model.get_layer(vectorizer_name).output,
        ],
        name="attention_explainer",
    )


def language_model(
    vocab_size: int,
    cell: str = "lstm",
    units: int = 256,
    layers: int = 2,
    embedding_dim: int = 64,
    dropout: float = 0.0,
    recurrent_dropout: float = 0.0,
    output_dropout: float = 0.0,
    stateful: bool = False,
) -> keras.Model:
    """Next-token model over ids: embedding, stacked recurrent layers, logits per step.

    ``dropout`` drops the inputs of every recurrent layer, ``output_dropout`` the last layer's
    outputs before the logits: on a small corpus both are needed to stop memorising.

    Built with ``stateful=True`` it takes one sequence (batch 1) and carries its state from
    call to call, so generation feeds one token per step after copying a trained model's
    weights (same layer shapes) with ``set_weights``.
    """
    ids = keras.Input(batch_shape=(1 if stateful else None, None), dtype="int32", name="ids")
    x = keras.layers.Embedding(vocab_size, embedding_dim, name="embedding")(ids)
    for i in range(layers):
        x = make_recurrent_layer(
            cell,
            units,
            return_sequences=True,
            stateful=stateful,
            dropout=dropout,
            recurrent_dropout=recurrent_dropout,
            name=f"recurrent_{i}",
        )(x)
    x = keras.layers.Dropout(output_dropout, name="output_dropout")(x)
    logits = keras.layers.Dense(vocab_size, name="logits", dtype="float32")(x)
    return keras.Model(ids, logits, name="language_model")


def stateful_twin(model: keras.Model, batch_size: int = 1) -> keras.Model:
    """A copy of a functional recurrent model whose recurrent layers are stateful with a fixed
    ``batch_size``, sharing no variables but holding the same weights: feeding it one step at
    a time carries the state between calls (generation, streaming). Works for any
    hyperparameters the model was built (or tuned, or reloaded) with."""
    config = model.get_config()
    for layer in config["layers"]:
        layer_config = layer["config"]
        if layer["class_name"] == "InputLayer":
            layer_config["batch_shape"] = (batch_size, *layer_config["batch_shape"][1:])
        elif "stateful" in layer_config:
            layer_config["stateful"] = True
            shape = layer.get("build_config", {}).get("input_shape")
            if shape:  # a stateful layer builds its state variables for a static batch
                layer["build_config"]["input_shape"] = [batch_size, *shape[1:]]
    twin = model.__class__.from_config(config)
    twin.set_weights(model.get_weights())
    return twin
