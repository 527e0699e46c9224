"""Attention layers and AttentionDecoder: maths vs NumPy, masking, shapes, XLA, saving."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from models.attention import (
    AttentionDecoder,
    AttentionPooling,
    BahdanauAttention,
    LuongAttention,
    make_attention,
    masked_softmax,
)

CELLS = ["lstm", "peephole", "layernorm", "gru", "keras"]
RIGHT_PADDED = np.array([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]], dtype=bool)
LEFT_PADDED = np.array([[0, 0, 1, 1, 1], [0, 1, 1, 1, 1]], dtype=bool)
VOCAB = 13


def _rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


def _randomize(layer: keras.layers.Layer, seed: int = 1) -> dict[str, np.ndarray]:
    """Assigns known random values to every weight and returns them by short name."""
    rng = _rng(seed)
    values = {}
    for weight in layer.weights:
        value = rng.normal(size=weight.shape).astype("float32")
        weight.assign(value)
        values[weight.path.split("/")[-1]] = value
    return values


def _np_masked_softmax(scores: np.ndarray, mask: np.ndarray) -> np.ndarray:
    scores = np.where(mask, scores, -np.inf)
    exp = np.exp(scores - scores.max(axis=-1, keepdims=True))
    return exp / exp.sum(axis=-1, keepdims=True)


def _np_additive(query, values, w, bias=0.0, vector=None):
    hidden = np.tanh(values @ w["key_kernel"] + (query @ w["query_kernel"])[:, None] + bias)
    return hidden @ (w["score_vector"] if vector is None else vector)


def _np_scores(layer, query, values, w) -> np.ndarray:
    if isinstance(layer, BahdanauAttention):
        if not layer.normalize:
            return _np_additive(query, values, w)
        v = w["score_vector"]
        v = w["score_scale"] * v / np.linalg.norm(v)
        return _np_additive(query, values, w, bias=w["score_bias"], vector=v)
    if layer.score == "dot":
        return np.einsum("bd,btd->bt", query, values)
    if layer.score == "general":
        return np.einsum("bd,btd->bt", query, values @ w["kernel"])
    return _np_additive(query, values, w)


QUERY_LAYERS = [
    lambda: BahdanauAttention(4),
    lambda: BahdanauAttention(4, normalize=True),
    lambda: LuongAttention("dot"),
    lambda: LuongAttention("general"),
    lambda: LuongAttention("concat", units=4),
]
QUERY_IDS = ["bahdanau", "bahdanau_norm", "luong_dot", "luong_general", "luong_concat"]


@pytest.mark.parametrize("make", QUERY_LAYERS, ids=QUERY_IDS)
@pytest.mark.parametrize("mask", [RIGHT_PADDED, LEFT_PADDED], ids=["right", "left"])
def test_query_attention_matches_numpy_and_masks_exactly(make, mask):
    rng = _rng()
    query = rng.normal(size=(2, 6)).astype("float32")
    values = rng.normal(size=(2, 5, 6)).astype("float32")
    layer = make()
    layer(query, values)
    w = _randomize(layer)

    context, weights = layer(query, values, mask=mask)
    weights = np.asarray(weights)
    expected = _np_masked_softmax(_np_scores(layer, query, values, w), mask)
    np.testing.assert_allclose(weights, expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(context, np.einsum("bt,btd->bd", expected, values), atol=1e-5)
    np.testing.assert_allclose(weights.sum(-1), 1.0, atol=1e-6)
    assert np.all(weights[~mask] == 0.0)

    keys = layer.precompute_keys(values)
    context_k, weights_k = layer(query, values, mask=mask, keys=keys)
    np.testing.assert_allclose(weights_k, weights, atol=1e-6)
    np.testing.assert_allclose(context_k, context, atol=1e-6)


def test_query_attention_config_round_trip():
    for make in QUERY_LAYERS:
        layer = make()
        clone = layer.__class__.from_config(layer.get_config())
        assert clone.get_config() == layer.get_config()


def test_fully_masked_row_gives_zero_weights_not_nan():
    layer = BahdanauAttention(3)
    values = np.ones((1, 4, 2), "float32")
    context, weights = layer(np.ones((1, 2), "float32"), values, mask=np.zeros((1, 4), bool))
    assert np.all(np.asarray(weights) == 0.0) and np.all(np.asarray(context) == 0.0)


def _np_pooling(sequence, w, mask):
    scores = np.tanh(sequence @ w["kernel"] + w["bias"]) @ w["score_vector"]
    weights = _np_masked_softmax(scores, mask)
    return np.einsum("bt,btd->bd", weights, sequence), weights


@pytest.mark.parametrize("mask", [RIGHT_PADDED, LEFT_PADDED], ids=["right", "left"])
def test_attention_pooling_matches_numpy(mask):
    sequence = _rng().normal(size=(2, 5, 6)).astype("float32")
    layer = AttentionPooling(4)
    layer(sequence)
    w = _randomize(layer)
    pooled, weights = layer(sequence, mask=mask)
    expected_pooled, expected_weights = _np_pooling(sequence, w, mask)
    np.testing.assert_allclose(weights, expected_weights, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(pooled, expected_pooled, rtol=1e-5, atol=1e-5)
    assert np.all(np.asarray(weights)[~mask] == 0.0)


def _pooling_classifier() -> keras.Model:
    tokens = keras.Input((None,), dtype="int32")
    x = keras.layers.Embedding(VOCAB, 8, mask_zero=True)(tokens)
    x = keras.layers.Bidirectional(keras.layers.LSTM(6, return_sequences=True))(x)
    pooled, weights = AttentionPooling(5, name="pool")(x)
    probs = keras.layers.Dense(3, activation="softmax")(pooled)
    return keras.Model(tokens, [probs, weights])


def test_attention_pooling_consumes_keras_mask_and_saves(tmp_path):
    model = _pooling_classifier()
    tokens = np.array([[3, 4, 5, 0, 0], [0, 0, 7, 8, 9]], dtype="int32")
    probs, weights = (np.asarray(x) for x in model(tokens))
    assert np.all(weights[tokens == 0] == 0.0)
    np.testing.assert_allclose(weights.sum(-1), 1.0, atol=1e-6)
    np.testing.assert_allclose(probs.sum(-1), 1.0, atol=1e-5)

    path = tmp_path / "pool.keras"
    model.save(path)
    reloaded = keras.saving.load_model(path)
    for a, b in zip(model.predict(tokens, verbose=0), reloaded.predict(tokens, verbose=0)):
        np.testing.assert_array_equal(a, b)


def test_bad_arguments_raise_value_error():
    with pytest.raises(ValueError, match="Unknown attention"):
        make_attention("cosine", 4)
    with pytest.raises(ValueError, match="Unknown attention"):
        AttentionDecoder(VOCAB, 4, 8, attention="cosine")
    with pytest.raises(ValueError, match="Unknown Luong score"):
        LuongAttention("cosine")
    with pytest.raises(ValueError, match="requires a positive `units`"):
        LuongAttention("concat")
    for bad in (0, -3):
        with pytest.raises(ValueError, match="positive integer"):
            BahdanauAttention(bad)
        with pytest.raises(ValueError, match="positive integer"):
            AttentionPooling(bad)
        with pytest.raises(ValueError, match="positive integer"):
            AttentionDecoder(VOCAB, 4, bad)
    with pytest.raises(ValueError, match="same size"):
        LuongAttention("dot")(np.ones((2, 3), "float32"), np.ones((2, 5, 4), "float32"))
    decoder = AttentionDecoder(VOCAB, 4, 8, attention="luong_dot")
    with pytest.raises(ValueError, match="same size"):
        decoder((np.ones((2, 3), "int32"), np.ones((2, 5, 6), "float32")))
    with pytest.raises(ValueError, match="initial state"):
        AttentionDecoder(VOCAB, 4, 8)(
            (np.ones((2, 3), "int32"), np.ones((2, 5, 6), "float32")),
            initial_state=[np.zeros((2, 8), "float32")],
        )
    with pytest.raises(ValueError, match="dropout"):
        AttentionDecoder(VOCAB, 4, 8, dropout=1.0)


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("attention", ["bahdanau", "luong_general"])
def test_decoder_teacher_forcing_equals_stepping(cell, attention):
    rng = _rng(2)
    encoder_outputs = rng.normal(size=(2, 5, 6)).astype("float32")
    tokens = rng.integers(1, VOCAB, size=(2, 4)).astype("int32")
    decoder = AttentionDecoder(VOCAB, 4, 8, cell=cell, attention=attention)
    logits, alignment = decoder(
        (tokens, encoder_outputs), encoder_mask=LEFT_PADDED, return_attention=True
    )
    assert logits.shape == (2, 4, VOCAB) and alignment.shape == (2, 4, 5)
    np.testing.assert_allclose(np.asarray(alignment).sum(-1), 1.0, atol=1e-6)
    assert np.all(np.asarray(alignment)[np.broadcast_to(~LEFT_PADDED[:, None], (2, 4, 5))] == 0)

    state = decoder.initial_decoder_state(encoder_outputs)
    keys = decoder.precompute_keys(encoder_outputs)
    for t in range(tokens.shape[1]):
        step_logits, state, weights = decoder.step(
            tokens[:, t], state, encoder_outputs, LEFT_PADDED, keys
        )
        assert step_logits.shape == (2, VOCAB) and weights.shape == (2, 5)
        np.testing.assert_allclose(step_logits, logits[:, t], atol=1e-5)
        np.testing.assert_allclose(weights, alignment[:, t], atol=1e-6)
    np.testing.assert_allclose(
        decoder.attention_weights((tokens, encoder_outputs), encoder_mask=LEFT_PADDED),
        alignment,
        atol=1e-6,
    )


def test_decoder_uses_initial_state():
    encoder_outputs = _rng().normal(size=(2, 5, 6)).astype("float32")
    tokens = np.ones((2, 3), "int32")
    decoder = AttentionDecoder(VOCAB, 4, 8, cell="gru")
    zeros = decoder((tokens, encoder_outputs))
    seeded = decoder((tokens, encoder_outputs), initial_state=[np.ones((2, 8), "float32")])
    assert not np.allclose(zeros, seeded)
    state = decoder.initial_decoder_state(encoder_outputs)
    assert len(state) == 1 and state[0].shape == (2, 8)


def build_seq2seq(cell: str = "lstm", attention: str = "bahdanau") -> keras.Model:
    """Embedding -> Bidirectional LSTM encoder -> AttentionDecoder seeded with final states."""
    source = keras.Input((None,), dtype="int32", name="source")
    target_in = keras.Input((None,), dtype="int32", name="target_in")
    x = keras.layers.Embedding(VOCAB, 8, mask_zero=True)(source)
    encoded, fh, fc, bh, bc = keras.layers.Bidirectional(
        keras.layers.LSTM(8, return_sequences=True, return_state=True), name="encoder"
    )(x)
    h = keras.layers.Concatenate(name="encoder_h")([fh, bh])
    state = [h] if cell == "gru" else [h, keras.layers.Concatenate(name="encoder_c")([fc, bc])]
    logits = AttentionDecoder(
        VOCAB, 8, 16, cell=cell, attention=attention, dropout=0.1, name="decoder"
    )((target_in, encoded), encoder_mask=keras.ops.not_equal(source, 0), initial_state=state)
    return keras.Model([source, target_in], logits)


def _toy_batch(n: int = 8):
    rng = _rng(3)
    source = rng.integers(3, VOCAB, size=(n, 6)).astype("int32")
    source[::2, 4:] = 0
    target = rng.integers(3, VOCAB, size=(n, 5)).astype("int32")
    target_in = np.concatenate([np.ones((n, 1), "int32"), target[:, :-1]], axis=1)
    return source, target_in, target


def _fit_once(model: keras.Model, jit_compile: bool) -> None:
    source, target_in, target = _toy_batch()
    model.compile(
        optimizer="adam",
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        jit_compile=jit_compile,
    )
    before = [np.array(w) for w in model.get_layer("decoder").weights]
    history = model.fit([source, target_in], target, batch_size=4, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    after = model.get_layer("decoder").weights
    assert any(not np.allclose(a, b) for a, b in zip(before, after))


def test_seq2seq_fit_and_keras_round_trip(tmp_path):
    model = build_seq2seq("gru", "luong")
    _fit_once(model, jit_compile=False)
    path = tmp_path / "seq2seq.keras"
    model.save(path)
    reloaded = keras.saving.load_model(path)
    assert isinstance(reloaded.get_layer("decoder"), AttentionDecoder)
    source, target_in, _ = _toy_batch()
    np.testing.assert_array_equal(
        model.predict([source, target_in], verbose=0),
        reloaded.predict([source, target_in], verbose=0),
    )


def test_seq2seq_fits_under_xla_with_fixed_shapes():
    """What a TPU runs: encoder, attention decoder and loss in one jit-compiled step."""
    _fit_once(build_seq2seq("lstm", "bahdanau"), jit_compile=True)


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_masked_softmax_is_normalised_in_float32_under_half_precision(dtype) -> None:
    """Weights stay a distribution (zero where masked) and keep the policy's dtype."""
    scores = keras.ops.cast(np.linspace(-40.0, 40.0, 64, dtype="float32")[None], dtype)
    mask = np.arange(64)[None] < 48
    weights = masked_softmax(scores, mask)
    scores = keras.ops.convert_to_numpy(keras.ops.cast(scores, "float32"))
    expected = np.where(mask, np.exp(scores - scores[mask].max()), 0.0)
    expected /= expected.sum()
    assert keras.backend.standardize_dtype(weights.dtype) == dtype
    got = keras.ops.convert_to_numpy(keras.ops.cast(weights, "float32"))
    np.testing.assert_allclose(got, expected, atol=4e-3)
    assert np.all(got[~mask] == 0.0)
