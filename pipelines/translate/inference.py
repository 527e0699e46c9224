"""Translating with a trained (or logged) seq2seq model: greedy or beam search over its decoder."""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from models.decoding import beam_search, greedy_decode
from pipelines.core.errors import DataError
from pipelines.translate.subwords import tokenize
from pipelines.translate.vocab import Vocabularies

VOCABULARY = "vocabulary"  # logged by the task as results/vocabulary.json


def encoder_of(model: keras.Model) -> keras.Model:
    """Source ids -> (encoder outputs, source mask, decoder's initial states), shared weights."""
    states = sorted(
        (layer for layer in model.layers if layer.name.startswith("encoder_state_")),
        key=lambda layer: layer.name,
    )
    return keras.Model(
        model.get_layer("source").output,
        [
            model.get_layer("encoder").output[0],
            model.get_layer("source_mask").output,
            *[layer.output for layer in states],
        ],
    )


def translate_ids(
    model: keras.Model,
    source_ids: np.ndarray,
    vocab: Vocabularies,
    beam_width: int = 1,
    batch_size: int = 256,
) -> tuple[np.ndarray, np.ndarray]:
    """Output ids ``[N, L]`` and alignments ``[N, L, S]``; ``L`` allows a little more than the
    longest training target."""
    encoder, decoder = encoder_of(model), model.get_layer("decoder")
    max_length = vocab.max_target + 2

    # A dynamic batch dimension: one trace serves every batch, the smaller last one included.
    @tf.function(input_signature=[tf.TensorSpec([None, None], tf.int32)])
    def decode(batch):
        encoded, mask, *state = encoder(batch, training=False)
        if beam_width == 1:
            return greedy_decode(
                decoder, encoded, vocab.start_id, vocab.end_id, max_length,
                encoder_mask=mask, initial_state=state,
            )  # fmt: skip
        tokens, _, attention = beam_search(
            decoder, encoded, vocab.start_id, vocab.end_id, max_length, beam_width,
            encoder_mask=mask, initial_state=state,
        )  # fmt: skip
        return tokens, attention

    outputs = [
        decode(tf.constant(source_ids[i : i + batch_size], tf.int32))
        for i in range(0, len(source_ids), batch_size)
    ]
    return (
        np.concatenate([o[0].numpy() for o in outputs]),
        np.concatenate([o[1].numpy() for o in outputs]),
    )


def translate(
    model: keras.Model, vocab: Vocabularies, sentences: list[str], beam_width: int = 1
) -> list[str]:
    tokens, _ = translate_ids(model, vocab.encode_source(sentences), vocab, beam_width)
    return [vocab.decode(row) for row in tokens]


def translate_known(
    model: keras.Model, vocab: Vocabularies, sentences: list[str], beam_width: int = 1
) -> tuple[list[str], list[str]]:
    """Translations of English sentences and the words the model never saw (kept as
    ``[UNK]``). A sentence with no known word at all is a DataError: its translation would be
    the model's guess from nothing."""
    unknown: dict[str, None] = {}
    for sentence in sentences:
        words = [w for w in tokenize(sentence) if w[0].isalnum()]
        missing = vocab.unknown_words(sentence)
        if not words or set(words) <= set(missing):
            raise DataError(
                f"none of the words of {sentence!r} were seen in training, so there is nothing "
                "to translate from; try a sentence closer to the training messages"
            )
        unknown.update(dict.fromkeys(missing))
    return translate(model, vocab, sentences, beam_width), list(unknown)
