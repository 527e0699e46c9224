"""Translating with a trained (or logged) seq2seq model: greedy or beam search over its decoder."""

from __future__ import annotations

import keras
import numpy as np

from pipelines.core.decoding import decode_batches
from pipelines.core.errors import DataError
from pipelines.core.tokenizer import tokenize
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
    encoder = encoder_of(model)

    def encode(batch):
        encoded, mask, *state = encoder(batch, training=False)
        return encoded, mask, state

    return decode_batches(
        encode, model.get_layer("decoder"), source_ids, vocab.start_id, vocab.end_id,
        vocab.max_target + 2, beam_width, batch_size,
    )  # fmt: skip


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
