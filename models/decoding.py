"""Greedy and beam-search inference for `models.attention.AttentionDecoder`.

Decoding a trained encoder-decoder ``keras.Model``: build an encoder sub-model
from the same graph that returns the encoder outputs (and the final states the
decoder was seeded with), then pass the decoder layer to a search function::

    encoder = keras.Model(model.inputs[0], [model.get_layer("encoder").output[0],
                                            model.get_layer("encoder_h").output,
                                            model.get_layer("encoder_c").output])
    enc_out, h, c = encoder(source_tokens)
    tokens, attention = greedy_decode(
        model.get_layer("decoder"), enc_out, start_token=1, end_token=2,
        max_length=50, encoder_mask=source_tokens != 0, initial_state=[h, c])

Both functions are ``tf.while_loop``s with static output shapes, so they run
eagerly or inside a ``tf.function`` (or ``jit_compile=True``) wrapped around
them; they stop early once every sequence has emitted ``end_token``. Outputs
always have ``max_length`` steps: the end token is kept and every later step is
padding (token 0, zero attention). Any decoder exposing ``initial_decoder_state``,
``precompute_keys`` and ``step`` like `AttentionDecoder` works, with any cell.
"""

from __future__ import annotations

from typing import Any

import tensorflow as tf

# Log-probability for impossible candidates; finite so arithmetic never makes NaNs.
_NEG_INF = -1e9


def _check_length(max_length: int) -> int:
    if isinstance(max_length, bool) or not isinstance(max_length, int) or max_length <= 0:
        raise ValueError(f"`max_length` must be a positive integer, got {max_length!r}.")
    return max_length


def _write(buffer: tf.Tensor, t: tf.Tensor, value: tf.Tensor, axis: int) -> tf.Tensor:
    """Returns ``buffer`` with ``value`` at index ``t`` of ``axis`` (XLA-friendly, no scatter)."""
    shape = [1] * len(buffer.shape)
    shape[axis] = -1
    at_t = tf.reshape(tf.equal(tf.range(tf.shape(buffer)[axis]), t), shape)
    return tf.where(at_t, tf.expand_dims(value, axis), buffer)


def greedy_decode(
    decoder: Any,
    encoder_outputs: Any,
    start_token: int,
    end_token: int,
    max_length: int,
    encoder_mask: Any = None,
    initial_state: Any = None,
) -> tuple[tf.Tensor, tf.Tensor]:
    """Argmax decoding.

    Returns:
        ``tokens [B, max_length]`` int32 and ``attention [B, max_length, S]`` float32.
    """
    max_length = _check_length(max_length)
    encoder_outputs = tf.convert_to_tensor(encoder_outputs)
    batch, source_len = tf.shape(encoder_outputs)[0], tf.shape(encoder_outputs)[1]
    keys = decoder.precompute_keys(encoder_outputs)
    state = decoder.initial_decoder_state(encoder_outputs, initial_state)

    def body(t, token, state, finished, tokens, attention):
        logits, state, weights = decoder.step(token, state, encoder_outputs, encoder_mask, keys)
        token = tf.where(finished, 0, tf.argmax(logits, axis=-1, output_type=tf.int32))
        weights = tf.where(finished[:, None], 0.0, tf.cast(weights, tf.float32))
        tokens = _write(tokens, t, token, axis=1)
        attention = _write(attention, t, weights, axis=1)
        return t + 1, token, state, finished | tf.equal(token, end_token), tokens, attention

    _, _, _, _, tokens, attention = tf.while_loop(
        lambda t, _token, _state, finished, *_: (
            (t < max_length) & tf.logical_not(tf.reduce_all(finished))
        ),
        body,
        (
            tf.constant(0),
            tf.fill([batch], tf.constant(start_token, tf.int32)),
            state,
            tf.zeros([batch], tf.bool),
            tf.zeros([batch, max_length], tf.int32),
            tf.zeros([batch, max_length, source_len], tf.float32),
        ),
        maximum_iterations=max_length,
    )
    return tokens, attention


def gnmt_length_penalty(length: tf.Tensor, alpha: float) -> tf.Tensor:
    """``((5 + length) / 6) ** alpha`` (Wu et al., 2016); divides summed log-probs."""
    return tf.pow((5.0 + tf.cast(length, tf.float32)) / 6.0, alpha)


def beam_search(
    decoder: Any,
    encoder_outputs: Any,
    start_token: int,
    end_token: int,
    max_length: int,
    beam_width: int,
    length_penalty: float = 0.6,
    encoder_mask: Any = None,
    initial_state: Any = None,
    return_all_beams: bool = False,
) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """Batched beam search ranked by GNMT length-normalised log-probability.

    Batch and beams are flattened to ``B * K`` rows for the decoder. A beam that
    emits ``end_token`` is finished: it keeps its log-probability and is only
    extended with padding, so it competes with live beams on its final score.
    Scores are ``sum(log p) / gnmt_length_penalty(length, length_penalty)`` with
    the length counting the end token.

    Returns:
        ``tokens [B, L]`` int32, ``scores [B]``, ``attention [B, L, S]`` for the best
        beam; with ``return_all_beams`` ``[B, K, L]``, ``[B, K]``, ``[B, K, L, S]``
        sorted best first.
    """
    max_length = _check_length(max_length)
    if isinstance(beam_width, bool) or not isinstance(beam_width, int) or beam_width <= 0:
        raise ValueError(f"`beam_width` must be a positive integer, got {beam_width!r}.")
    if length_penalty < 0:
        raise ValueError(f"`length_penalty` must be >= 0, got {length_penalty}.")
    k = beam_width
    encoder_outputs = tf.convert_to_tensor(encoder_outputs)
    # Static sizes where known: loop variables must keep the shapes they entered with.
    batch, source_len = (
        dim if dim is not None else tf.shape(encoder_outputs)[i]
        for i, dim in enumerate(encoder_outputs.shape[:2])
    )

    def tile(x):  # [B, ...] -> [B * K, ...], row b * K + j is beam j of item b.
        return tf.repeat(x, k, axis=0)

    keys = tf.nest.map_structure(tile, decoder.precompute_keys(encoder_outputs))
    state = tf.nest.map_structure(
        tile, decoder.initial_decoder_state(encoder_outputs, initial_state)
    )
    encoder_outputs = tile(encoder_outputs)
    if encoder_mask is not None:
        encoder_mask = tile(tf.convert_to_tensor(encoder_mask))

    def regather(x, parent):  # Reorder flat beam rows by parent beam index [B, K].
        shape = tf.shape(x)
        beams = tf.reshape(x, tf.concat([[batch, k], shape[1:]], axis=0))
        out = tf.reshape(tf.gather(beams, parent, batch_dims=1), shape)
        out.set_shape(x.shape)
        return out

    def body(t, token, state, log_probs, finished, lengths, tokens, attention):
        logits, state, weights = decoder.step(token, state, encoder_outputs, encoder_mask, keys)
        step_log_probs = tf.nn.log_softmax(tf.cast(logits, tf.float32), axis=-1)
        vocab = tf.shape(step_log_probs)[-1]
        step_log_probs = tf.reshape(step_log_probs, [batch, k, vocab])
        pad_only = tf.where(tf.equal(tf.range(vocab), 0), 0.0, _NEG_INF)
        step_log_probs = tf.where(finished[..., None], pad_only, step_log_probs)
        total = tf.reshape(log_probs[..., None] + step_log_probs, [batch, k * vocab])
        new_lengths = lengths + tf.cast(tf.logical_not(finished), tf.int32)
        penalty = tf.repeat(gnmt_length_penalty(new_lengths, length_penalty), vocab, axis=1)
        _, flat_index = tf.math.top_k(total / penalty, k=k)
        parent, token = flat_index // vocab, flat_index % vocab
        parent_finished = tf.gather(finished, parent, batch_dims=1)
        weights = tf.gather(
            tf.reshape(tf.cast(weights, tf.float32), [batch, k, -1]), parent, batch_dims=1
        )
        weights = tf.where(parent_finished[..., None], 0.0, weights)
        return (
            t + 1,
            tf.reshape(token, [-1]),
            tf.nest.map_structure(lambda s: regather(s, parent), state),
            tf.gather(total, flat_index, batch_dims=1),
            parent_finished | tf.equal(token, end_token),
            tf.gather(new_lengths, parent, batch_dims=1),
            _write(tf.gather(tokens, parent, batch_dims=1), t, token, axis=2),
            _write(tf.gather(attention, parent, batch_dims=1), t, weights, axis=2),
        )

    # Only beam 0 is live at the start, so the first step expands K distinct tokens.
    first_beam = tf.concat([[0.0], tf.fill([k - 1], _NEG_INF)], axis=0)
    _, _, _, log_probs, _, lengths, tokens, attention = tf.while_loop(
        lambda t, _token, _state, _lp, finished, *_: (
            (t < max_length) & tf.logical_not(tf.reduce_all(finished))
        ),
        body,
        (
            tf.constant(0),
            tf.fill([batch * k], tf.constant(start_token, tf.int32)),
            state,
            tf.tile(first_beam[None], [batch, 1]),
            tf.zeros([batch, k], tf.bool),
            tf.zeros([batch, k], tf.int32),
            tf.zeros([batch, k, max_length], tf.int32),
            tf.zeros([batch, k, max_length, source_len], tf.float32),
        ),
        maximum_iterations=max_length,
    )
    scores, order = tf.math.top_k(
        log_probs / gnmt_length_penalty(tf.maximum(lengths, 1), length_penalty), k=k
    )
    tokens = tf.gather(tokens, order, batch_dims=1)
    attention = tf.gather(attention, order, batch_dims=1)
    if return_all_beams:
        return tokens, scores, attention
    return tokens[:, 0], scores[:, 0], attention[:, 0]
