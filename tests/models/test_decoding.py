"""Greedy and beam-search decoding: agreement with stepping, scoring, end handling."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

from models.attention import AttentionDecoder
from models.decoding import beam_search, gnmt_length_penalty, greedy_decode
from tests.models.test_attention import VOCAB, build_seq2seq

START, END, MAX_LEN = 1, 2, 6
MASK = np.array([[1, 1, 1, 0, 0], [0, 1, 1, 1, 1]], dtype=bool)


def _decoder(cell: str = "lstm", attention: str = "bahdanau"):
    rng = np.random.default_rng(0)
    encoder_outputs = rng.normal(size=(2, 5, 6)).astype("float32")
    decoder = AttentionDecoder(VOCAB, 4, 8, cell=cell, attention=attention)
    decoder((np.ones((2, 1), "int32"), encoder_outputs))
    # Larger weights give peaked, input-dependent distributions, so searches differ.
    for weight in decoder.weights:
        weight.assign(rng.normal(size=weight.shape).astype("float32"))
    state_count = 1 if cell == "gru" else 2
    initial_state = [rng.normal(size=(2, 8)).astype("float32") for _ in range(state_count)]
    return decoder, encoder_outputs, initial_state


def _argmax_stepping(decoder, encoder_outputs, initial_state):
    state = decoder.initial_decoder_state(encoder_outputs, initial_state)
    token = np.full(2, START, "int32")
    finished = np.zeros(2, bool)
    tokens = np.zeros((2, MAX_LEN), "int32")
    attention = np.zeros((2, MAX_LEN, 5), "float32")
    for t in range(MAX_LEN):
        logits, state, weights = decoder.step(token, state, encoder_outputs, MASK)
        token = np.where(finished, 0, np.argmax(logits, axis=-1)).astype("int32")
        tokens[:, t] = token
        attention[:, t] = np.where(finished[:, None], 0.0, weights)
        finished |= token == END
    return tokens, attention


def _rescore(decoder, encoder_outputs, initial_state, tokens):
    """Summed log-probs and lengths of token rows [N, L] via teacher forcing."""
    tokens_in = np.concatenate([np.full((len(tokens), 1), START, "int32"), tokens[:, :-1]], 1)
    logits, weights = decoder(
        (tokens_in, encoder_outputs),
        encoder_mask=MASK if len(tokens) == 2 else np.repeat(MASK, len(tokens) // 2, 0),
        initial_state=initial_state,
        return_attention=True,
    )
    log_probs = np.asarray(tf.nn.log_softmax(logits))
    picked = np.take_along_axis(log_probs, tokens[..., None], axis=-1)[..., 0]
    ended = np.cumsum(tokens == END, axis=1) - (tokens == END)  # steps strictly after an end
    valid = ended == 0
    return (picked * valid).sum(1), valid.sum(1), np.asarray(weights) * valid[..., None]


@pytest.mark.parametrize("cell,attention", [("lstm", "bahdanau"), ("gru", "luong_concat")])
def test_greedy_equals_argmax_stepping_and_beam_one(cell, attention):
    decoder, encoder_outputs, initial_state = _decoder(cell, attention)
    tokens, attention_weights = greedy_decode(
        decoder, encoder_outputs, START, END, MAX_LEN, MASK, initial_state
    )
    assert tokens.shape == (2, MAX_LEN) and attention_weights.shape == (2, MAX_LEN, 5)
    expected_tokens, expected_attention = _argmax_stepping(decoder, encoder_outputs, initial_state)
    np.testing.assert_array_equal(tokens, expected_tokens)
    np.testing.assert_allclose(attention_weights, expected_attention, atol=1e-6)

    beam_tokens, scores, beam_attention = beam_search(
        decoder, encoder_outputs, START, END, MAX_LEN, 1, 0.6, MASK, initial_state
    )
    np.testing.assert_array_equal(beam_tokens, tokens)
    np.testing.assert_allclose(beam_attention, attention_weights, atol=1e-6)
    log_prob, length, _ = _rescore(decoder, encoder_outputs, initial_state, expected_tokens)
    np.testing.assert_allclose(scores, log_prob / gnmt_length_penalty(length, 0.6), rtol=1e-4)


def test_beam_search_scores_and_reorders_state_correctly():
    decoder, encoder_outputs, initial_state = _decoder()
    k = 3
    tokens, scores, attention = beam_search(
        decoder, encoder_outputs, START, END, MAX_LEN, k, 0.6, MASK, initial_state, True
    )
    assert tokens.shape == (2, k, MAX_LEN) and scores.shape == (2, k)
    assert attention.shape == (2, k, MAX_LEN, 5)
    assert np.all(np.diff(np.asarray(scores), axis=1) <= 1e-6)
    assert len({tuple(row) for row in np.asarray(tokens[0])}) == k
    # Rescoring every beam from scratch checks the per-step gathers of state and history.
    flat = np.asarray(tokens).reshape(2 * k, MAX_LEN)
    tiled_state = [np.repeat(s, k, axis=0) for s in initial_state]
    log_prob, length, weights = _rescore(
        decoder, np.repeat(encoder_outputs, k, 0), tiled_state, flat
    )
    expected = log_prob / gnmt_length_penalty(length, 0.6)
    np.testing.assert_allclose(np.asarray(scores).ravel(), expected, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(np.asarray(attention).reshape(2 * k, MAX_LEN, 5), weights, atol=1e-5)
    greedy_tokens, _ = greedy_decode(
        decoder, encoder_outputs, START, END, MAX_LEN, MASK, initial_state
    )
    greedy_log_prob, greedy_length, _ = _rescore(
        decoder, encoder_outputs, initial_state, np.asarray(greedy_tokens)
    )
    greedy_scores = greedy_log_prob / gnmt_length_penalty(greedy_length, 0.6)
    assert np.all(np.asarray(scores)[:, 0] >= greedy_scores - 1e-5)


class MarkovDecoder:
    """Stub decoder: next-token log-probs depend on the previous token only.

    ``encoder_outputs [B, S, V]`` doubles as a per-item logit bias (read at source
    step 0), which lets one batch item never emit the end token.
    """

    def __init__(self, table: np.ndarray):
        self.log_table = tf.constant(np.log(table / table.sum(1, keepdims=True)), tf.float32)

    def precompute_keys(self, encoder_outputs):
        return encoder_outputs

    def initial_decoder_state(self, encoder_outputs, initial_state=None):
        return [tf.zeros([tf.shape(encoder_outputs)[0], 1])]

    def step(self, token, state, encoder_outputs, encoder_mask=None, keys=None):
        logits = tf.gather(self.log_table, token) + encoder_outputs[:, 0]
        source_len = tf.shape(encoder_outputs)[1]
        return logits, state, tf.fill([tf.shape(token)[0], source_len], 0.25)

    def log_prob(self, tokens: np.ndarray) -> float:
        previous = np.concatenate([[START], tokens[:-1]])
        return float(sum(self.log_table.numpy()[p, t] for p, t in zip(previous, tokens)))


A, B, V = 3, 4, 10


def _trap_table() -> np.ndarray:
    """Greedy takes A (p=.5) whose best continuation is weak; B (p=.4) then END is .9."""
    table = np.full((V, V), 1e-3)
    table[START, A], table[START, B] = 0.5, 0.4
    table[A, END], table[A, 5:] = 0.2, 0.16
    table[B, END] = 0.9
    table[5:, END], table[5:, 5] = 0.9, 0.05
    table[END, END] = 0.9
    return table


def test_beam_search_beats_greedy_on_trap():
    decoder = MarkovDecoder(_trap_table())
    encoder_outputs = np.zeros((1, 4, V), "float32")
    greedy_tokens, _ = greedy_decode(decoder, encoder_outputs, START, END, 5)
    beam_tokens, score, _ = beam_search(decoder, encoder_outputs, START, END, 5, beam_width=2)
    np.testing.assert_array_equal(greedy_tokens[0], [A, END, 0, 0, 0])
    np.testing.assert_array_equal(beam_tokens[0], [B, END, 0, 0, 0])
    beam_log_prob = decoder.log_prob(np.asarray(beam_tokens[0, :2]))
    assert beam_log_prob > decoder.log_prob(np.asarray(greedy_tokens[0, :2]))
    np.testing.assert_allclose(score[0], beam_log_prob / gnmt_length_penalty(2, 0.6), rtol=1e-5)


def test_end_token_only_padding_after_it():
    decoder = MarkovDecoder(_trap_table())
    encoder_outputs = np.zeros((2, 4, V), "float32")
    encoder_outputs[1, 0, END] = -30.0  # item 1 can never end: decoding runs to max_length
    greedy_tokens, greedy_attention = greedy_decode(decoder, encoder_outputs, START, END, 6)
    beam_tokens, _, beam_attention = beam_search(decoder, encoder_outputs, START, END, 6, 3)
    for tokens, attention in ((greedy_tokens, greedy_attention), (beam_tokens, beam_attention)):
        tokens, attention = np.asarray(tokens), np.asarray(attention)
        end_at = int(np.argmax(tokens[0] == END))
        assert tokens[0, end_at] == END and end_at < 2
        assert np.all(tokens[0, end_at + 1 :] == 0)
        assert np.all(attention[0, end_at + 1 :] == 0.0) and np.all(attention[0, : end_at + 1] > 0)
        assert np.all(tokens[1] != END) and np.all(tokens[1] != 0)
        assert np.all(attention[1] > 0)


def test_decoding_inside_xla_compiled_tf_function():
    decoder, encoder_outputs, initial_state = _decoder("gru")
    eager = greedy_decode(decoder, encoder_outputs, START, END, MAX_LEN, MASK, initial_state)

    @tf.function(jit_compile=True)
    def compiled_greedy(encoder_outputs, mask, state):
        return greedy_decode(decoder, encoder_outputs, START, END, MAX_LEN, mask, state)

    @tf.function(jit_compile=True)
    def compiled_beam(encoder_outputs, mask, state):
        return beam_search(decoder, encoder_outputs, START, END, MAX_LEN, 2, 0.6, mask, state)

    compiled = compiled_greedy(encoder_outputs, MASK, initial_state)
    np.testing.assert_array_equal(compiled[0], eager[0])
    np.testing.assert_allclose(compiled[1], eager[1], atol=1e-5)
    eager_beam = beam_search(
        decoder, encoder_outputs, START, END, MAX_LEN, 2, 0.6, MASK, initial_state
    )
    compiled_b = compiled_beam(encoder_outputs, MASK, initial_state)
    np.testing.assert_array_equal(compiled_b[0], eager_beam[0])
    np.testing.assert_allclose(compiled_b[1], eager_beam[1], rtol=1e-5)


def test_decode_trained_model_through_encoder_submodel():
    """The pipeline recipe: encoder sub-model + ``model.get_layer("decoder")``."""
    model = build_seq2seq()
    encoder = keras.Model(
        model.inputs[0],
        [
            model.get_layer("encoder").output[0],
            model.get_layer("encoder_h").output,
            model.get_layer("encoder_c").output,
        ],
    )
    source = np.array([[5, 6, 7, 0, 0], [8, 9, 10, 11, 12]], "int32")
    encoder_outputs, h, c = encoder(source)
    tokens, _ = greedy_decode(
        model.get_layer("decoder"), encoder_outputs, START, END, MAX_LEN, source != 0, [h, c]
    )
    # Feeding the greedy output back through the full model reproduces it.
    tokens = np.asarray(tokens)
    target_in = np.concatenate([np.full((2, 1), START, "int32"), tokens[:, :-1]], axis=1)
    logits = model.predict([source, target_in], verbose=0)
    ended = (np.cumsum(tokens == END, axis=1) - (tokens == END)) > 0
    np.testing.assert_array_equal(np.where(ended, 0, logits.argmax(-1)), tokens)


def test_bad_decoding_arguments():
    decoder = MarkovDecoder(_trap_table())
    encoder_outputs = np.zeros((1, 4, V), "float32")
    with pytest.raises(ValueError, match="max_length"):
        greedy_decode(decoder, encoder_outputs, START, END, 0)
    with pytest.raises(ValueError, match="beam_width"):
        beam_search(decoder, encoder_outputs, START, END, 4, beam_width=0)
    with pytest.raises(ValueError, match="length_penalty"):
        beam_search(decoder, encoder_outputs, START, END, 4, 2, length_penalty=-1.0)


def test_beam_search_in_a_tf_function_with_a_fixed_batch_size():
    """Loop variables keep their static batch size (a batch of 1 used to fail to trace)."""
    decoder, encoder_outputs, initial_state = _decoder("lstm")
    one = encoder_outputs[:1]
    state = [s[:1] for s in initial_state]
    traced = tf.function(
        lambda e, s: beam_search(decoder, e, START, END, MAX_LEN, 3, 0.6, MASK[:1], s)
    )(one, state)
    eager = beam_search(decoder, one, START, END, MAX_LEN, 3, 0.6, MASK[:1], state)
    np.testing.assert_array_equal(traced[0], eager[0])
    np.testing.assert_allclose(traced[1], eager[1], rtol=1e-5)
