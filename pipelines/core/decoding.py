"""Decoding whole data sets in batches with an attention decoder (translation, captioning)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from models.decoding import beam_search, greedy_decode

# inputs -> (encoder outputs, encoder mask or None, the decoder's initial states)
Encoder = Callable[[Any], tuple[Any, Any, list[Any]]]


def decode_batches(
    encode: Encoder,
    decoder: keras.layers.Layer,
    inputs: np.ndarray,
    start_id: int,
    end_id: int,
    max_length: int,
    beam_width: int = 1,
    batch_size: int = 256,
    dtype: Any = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Output ids ``[N, max_length]`` and attention ``[N, max_length, S]`` of greedy
    (``beam_width`` 1) or beam search over ``inputs`` encoded ``batch_size`` rows at a time,
    each batch cast to ``dtype`` (default: the inputs' own).

    One trace with a dynamic batch dimension serves every batch, the last partial one too.
    """
    spec = tf.TensorSpec((None, *inputs.shape[1:]), tf.as_dtype(dtype or inputs.dtype))

    @tf.function(input_signature=[spec])
    @tf.autograph.experimental.do_not_convert  # the searches are tf.while_loops already
    def decode(batch: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        memory, mask, state = encode(batch)
        if beam_width == 1:
            return greedy_decode(
                decoder, memory, start_id, end_id, max_length,
                encoder_mask=mask, initial_state=state,
            )  # fmt: skip
        tokens, _, attention = beam_search(
            decoder, memory, start_id, end_id, max_length, beam_width,
            encoder_mask=mask, initial_state=state,
        )  # fmt: skip
        return tokens, attention

    outputs = [
        decode(tf.constant(inputs[i : i + batch_size], spec.dtype))
        for i in range(0, len(inputs), batch_size)
    ]
    return (
        np.concatenate([o[0].numpy() for o in outputs]),
        np.concatenate([o[1].numpy() for o in outputs]),
    )
