"""Behavioural tests for the fused LSTM layers, cells, factories and gate read-outs."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

from models.recurrent import (
    CELL_NAMES,
    LSTM,
    LayerNormLSTM,
    LayerNormLSTMCell,
    LSTMCell,
    PeepholeLSTM,
    PeepholeLSTMCell,
    _plain_recurrence,
    _recurrence_with_bptt,
    gate_activations,
    make_cell,
    make_recurrent_layer,
)

B, T, D, H = 4, 6, 3, 5
FUSED = (LSTM, PeepholeLSTM, LayerNormLSTM)


def _inputs(seed: int = 0, shape: tuple = (B, T, D)) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=shape).astype("float32")


def _mask(kind: str | None) -> np.ndarray | None:
    if kind is None:
        return None
    lengths = np.array([T, T - 2, 1, T - 1])
    mask = np.arange(T)[None, :] < lengths[:, None]
    return mask if kind == "right" else mask[:, ::-1].copy()


def _as_list(outputs) -> list[np.ndarray]:
    outputs = outputs if isinstance(outputs, (list, tuple)) else [outputs]
    return [np.asarray(o) for o in outputs]


def _randomise(layer: keras.layers.Layer, seed: int = 1) -> None:
    """Non-trivial weights (incl. peepholes and norm gains) so every term matters."""
    rng = np.random.default_rng(seed)
    layer.set_weights([rng.normal(scale=0.5, size=w.shape) for w in layer.get_weights()])


def _keras_pair(**kwargs) -> tuple[keras.layers.Layer, keras.layers.Layer]:
    x = _inputs()
    reference, ours = keras.layers.LSTM(H, **kwargs), LSTM(H, **kwargs)
    reference(x)
    ours(x)
    _randomise(reference)
    ours.set_weights(reference.get_weights())
    return reference, ours


# --- equivalence with keras.layers.LSTM --------------------------------------------------


@pytest.mark.parametrize("mask_kind", [None, "right", "left"])
@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"return_sequences": True},
        {"go_backwards": True, "return_sequences": True},
        {"return_state": True},
        {"return_state": True, "return_sequences": True, "go_backwards": True},
    ],
    ids=["last", "sequences", "backwards", "state", "all"],
)
def test_lstm_matches_keras(kwargs: dict, mask_kind: str | None) -> None:
    reference, ours = _keras_pair(**kwargs)
    x, mask = _inputs(2), _mask(mask_kind)
    for want, got in zip(_as_list(reference(x, mask=mask)), _as_list(ours(x, mask=mask))):
        np.testing.assert_allclose(got, want, atol=1e-5)


def test_lstm_matches_keras_with_initial_state() -> None:
    reference, ours = _keras_pair(return_sequences=True, return_state=True)
    x, mask = _inputs(3), _mask("left")
    state = [_inputs(4, (B, H)), _inputs(5, (B, H))]
    want = reference(x, initial_state=state, mask=mask)
    got = ours(x, initial_state=state, mask=mask)
    for w, g in zip(_as_list(want), _as_list(got)):
        np.testing.assert_allclose(g, w, atol=1e-5)


def test_stateful_matches_keras_across_batches() -> None:
    models = []
    for cls in (keras.layers.LSTM, LSTM):
        inputs = keras.Input(batch_shape=(B, T, D))
        models.append(keras.Model(inputs, cls(H, stateful=True, return_sequences=True)(inputs)))
    _randomise(models[0])
    models[1].set_weights(models[0].get_weights())
    batches = [_inputs(6), _inputs(7)]
    outputs = [[m.predict_on_batch(x) for x in batches] for m in models]
    np.testing.assert_allclose(outputs[1], outputs[0], atol=1e-5)
    models[1].layers[-1].reset_state()
    fresh = models[1].predict_on_batch(batches[1])
    assert not np.allclose(fresh, outputs[1][1], atol=1e-4)  # the state really was carried


def test_bidirectional_matches_keras() -> None:
    x, mask = _inputs(8), _mask("right")
    reference = keras.layers.Bidirectional(keras.layers.LSTM(H, return_sequences=True))
    ours = keras.layers.Bidirectional(LSTM(H, return_sequences=True))
    reference(x)
    ours(x)
    _randomise(reference)
    ours.set_weights(reference.get_weights())
    np.testing.assert_allclose(ours(x, mask=mask), reference(x, mask=mask), atol=1e-5)


def test_weights_copy_both_directions() -> None:
    reference, ours = _keras_pair(return_sequences=True)
    assert [w.path.split("/")[-1] for w in ours.weights] == ["kernel", "recurrent_kernel", "bias"]
    _randomise(ours, seed=9)
    reference.set_weights(ours.get_weights())
    x = _inputs(10)
    np.testing.assert_allclose(reference(x), ours(x), atol=1e-5)
    assert ours.cell.kernel.shape == (D, 4 * H)
    assert ours.cell.recurrent_kernel.shape == (H, 4 * H)


# --- peephole / layer-norm cells against NumPy --------------------------------------------


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-z))


def _norm(z: np.ndarray, gamma: np.ndarray, beta: np.ndarray, eps: float) -> np.ndarray:
    mean = z.mean(-1, keepdims=True)
    return (z - mean) / np.sqrt(z.var(-1, keepdims=True) + eps) * gamma + beta


def _numpy_peephole(x, weights):
    kernel, recurrent, bias, w_i, w_f, w_o = weights
    h, c, hs = np.zeros((x.shape[0], H)), np.zeros((x.shape[0], H)), []
    for t in range(x.shape[1]):
        z_i, z_f, z_c, z_o = np.split(x[:, t] @ kernel + h @ recurrent + bias, 4, axis=-1)
        i, f = _sigmoid(z_i + w_i * c), _sigmoid(z_f + w_f * c)
        c = f * c + i * np.tanh(z_c)
        h = _sigmoid(z_o + w_o * c) * np.tanh(c)
        hs.append(h)
    return np.stack(hs, 1), h, c


def _numpy_layernorm(x, weights, eps=1e-3):
    kernel, recurrent, bias, kg, kb, rg, rb, sg, sb = weights
    h, c, hs = np.zeros((x.shape[0], H)), np.zeros((x.shape[0], H)), []
    for t in range(x.shape[1]):
        z = _norm(x[:, t] @ kernel, kg, kb, eps) + _norm(h @ recurrent, rg, rb, eps) + bias
        z_i, z_f, z_c, z_o = np.split(z, 4, axis=-1)
        c = _sigmoid(z_f) * c + _sigmoid(z_i) * np.tanh(z_c)
        c = _norm(c, sg, sb, eps)
        h = _sigmoid(z_o) * np.tanh(c)
        hs.append(h)
    return np.stack(hs, 1), h, c


@pytest.mark.parametrize(
    "cls, reference, names",
    [
        (
            PeepholeLSTM,
            _numpy_peephole,
            ["input_gate_peephole_weights", "forget_gate_peephole_weights"],
        ),
        (LayerNormLSTM, _numpy_layernorm, ["kernel_norm_gamma", "state_norm_beta"]),
    ],
)
def test_variant_matches_numpy(cls, reference, names) -> None:
    x = _inputs(11)
    layer = cls(H, return_sequences=True, return_state=True)
    layer(x)
    _randomise(layer)
    weight_names = [w.path.split("/")[-1] for w in layer.weights]
    assert weight_names[:3] == ["kernel", "recurrent_kernel", "bias"]
    assert set(names) <= set(weight_names)
    want = reference(x.astype("float64"), [w.astype("float64") for w in layer.get_weights()])
    for w, g in zip(want, _as_list(layer(x))):
        np.testing.assert_allclose(g, w, atol=1e-5)


@pytest.mark.parametrize("cls", FUSED)
def test_cell_in_keras_rnn_matches_fused_layer(cls) -> None:
    x, mask = _inputs(12), _mask("right")
    fused = cls(H, return_sequences=True)
    fused(x)
    _randomise(fused)
    rnn = keras.layers.RNN(fused.cell, return_sequences=True)  # shares the weights
    np.testing.assert_allclose(rnn(x, mask=mask), fused(x, mask=mask), atol=1e-5)


# --- gradients, serialisation, XLA, mixed precision ---------------------------------------


@pytest.mark.parametrize("training", [False, True], ids=["autodiff", "bptt"])
@pytest.mark.parametrize("cls", FUSED)
def test_gradients_match_finite_differences(cls, training: bool) -> None:
    # training=True takes the hand-written backward pass, training=False TF's autodiff.
    x = tf.constant(_inputs(13, (2, 4, 2)).astype("float64"))
    layer = cls(3, return_sequences=True, dtype="float64")
    layer(x)
    _randomise(layer, seed=14)
    probe = tf.constant(np.random.default_rng(15).normal(size=(2, 4, 3)))

    def loss() -> tf.Tensor:
        return tf.reduce_sum(layer(x, training=training) * probe)

    variables = [layer.cell.kernel, layer.cell.recurrent_kernel, layer.cell.weights[-1]]
    with tf.GradientTape() as tape:
        value = loss()
    grads = tape.gradient(value, variables)
    eps = 1e-6
    for variable, grad in zip(variables, grads):
        base = variable.numpy()
        numeric = np.zeros_like(base)
        for index in np.ndindex(base.shape):
            shifted = base.copy()
            shifted[index] += eps
            variable.assign(shifted)
            up = loss().numpy()
            shifted[index] -= 2 * eps
            variable.assign(shifted)
            numeric[index] = (up - loss().numpy()) / (2 * eps)
        variable.assign(base)
        np.testing.assert_allclose(grad.numpy(), numeric, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize(
    "activation, return_sequences", [("tanh", True), ("tanh", False), ("softsign", True)]
)
@pytest.mark.parametrize("cls", FUSED)
def test_bptt_matches_autodiff_with_masks_and_dropout(
    cls, activation: str, return_sequences: bool
) -> None:
    """The custom backward pass against TF autodiff of the same loop, in the hard cases."""
    x, mask = _inputs(22), tf.constant(_mask("left") & _mask("right")[::-1])
    layer = cls(H, activation=activation)
    layer(x)
    _randomise(layer)
    cell = layer.cell
    z_x = tf.transpose(cell.project_inputs(tf.constant(x)), [1, 0, 2])
    mask = tf.transpose(mask)[:, :, None]
    rec_mask = tf.constant(np.random.default_rng(23).integers(0, 2, (B, H)) * 2.0, tf.float32)
    state = [tf.constant(_inputs(24, (B, H))), tf.constant(_inputs(25, (B, H)))]
    weights = cell.step_weights("float32")
    probe = tf.constant(_inputs(26, (T, B, H)))

    def grads(fused: bool) -> list:
        with tf.GradientTape() as tape:
            tape.watch([z_x, *state, *weights])
            if fused:
                hs, h, c = _recurrence_with_bptt(
                    cell, z_x, mask, rec_mask, *state, weights, return_sequences
                )
            else:
                h, c, (hs,) = _plain_recurrence(
                    cell, z_x, mask, rec_mask, *state, weights, True, False, False
                )
            loss = tf.reduce_sum(h * c)
            if return_sequences:
                loss += tf.reduce_sum(hs * probe)
        return tape.gradient(loss, [z_x, *state, *weights])

    for want, got in zip(grads(False), grads(True)):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("cls", FUSED)
def test_keras_file_round_trip(cls, tmp_path) -> None:
    inputs = keras.Input((T, D))
    hidden = keras.layers.Bidirectional(cls(H, return_sequences=True, dropout=0.1))(inputs)
    model = keras.Model(inputs, cls(H, kernel_regularizer="l2", go_backwards=True)(hidden))
    path = tmp_path / "model.keras"
    model.save(path)
    loaded = keras.models.load_model(path)
    x = _inputs(16)
    np.testing.assert_array_equal(loaded.predict_on_batch(x), model.predict_on_batch(x))
    assert loaded.layers[-1].get_config() == model.layers[-1].get_config()


def test_xla_fit_step_on_fixed_length_batches() -> None:
    """What a TPU runs: one jit-compiled train step over fixed shapes, every layer inside."""
    model = keras.Sequential(
        [
            keras.Input((T, D), batch_size=B),
            keras.layers.Masking(),
            LSTM(H, return_sequences=True, dropout=0.2, recurrent_dropout=0.2),
            PeepholeLSTM(H, return_sequences=True, go_backwards=True, dropout=0.2),
            LayerNormLSTM(H, recurrent_dropout=0.2),
            keras.layers.Dense(1),
        ]
    )
    model.compile(optimizer="adam", loss="mse", jit_compile=True)
    before = [w.copy() for w in model.get_weights()]
    loss = model.train_on_batch(_inputs(17), np.ones((B, 1)))
    assert np.isfinite(loss)
    assert all(not np.allclose(a, b) for a, b in zip(before, model.get_weights()))
    assert [layer.execution_path for layer in model.layers[1:4]] == ["loop"] * 3


@pytest.mark.parametrize("cls", FUSED)
def test_mixed_bfloat16_close_to_float32(cls) -> None:
    x = _inputs(18)
    reference = cls(H, return_sequences=True, return_state=True)
    reference(x)
    _randomise(reference)
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        layer = cls(H, return_sequences=True, return_state=True)
        layer(x)
        layer.set_weights(reference.get_weights())
        outputs = layer(x)
        model = keras.Sequential([keras.Input((T, D)), cls(H), keras.layers.Dense(1)])
        model.compile(optimizer="adam", loss="mse", jit_compile=True)
        assert np.isfinite(model.train_on_batch(x, np.ones((B, 1))))
    finally:
        keras.mixed_precision.set_global_policy("float32")
    assert layer.cell.kernel.dtype == "float32"
    assert all(o.dtype == "bfloat16" for o in outputs)
    for got, want in zip(outputs, reference(x)):
        np.testing.assert_allclose(np.asarray(got, dtype="float32"), want, atol=0.08)


# --- dropout ---------------------------------------------------------------------------------


@pytest.mark.parametrize("rates", [{"dropout": 0.5}, {"recurrent_dropout": 0.5}])
def test_dropout_only_in_training(rates: dict) -> None:
    x = _inputs(19)
    plain = LSTM(H, return_sequences=True)
    dropped = LSTM(H, return_sequences=True, seed=0, **rates)
    plain(x)
    dropped(x)
    dropped.set_weights(plain.get_weights())
    np.testing.assert_allclose(dropped(x, training=False), plain(x), atol=1e-6)
    first, second = dropped(x, training=True), dropped(x, training=True)
    assert not np.allclose(first, plain(x), atol=1e-3)
    assert not np.allclose(first, second, atol=1e-3)


# --- factories, gate read-outs, argument checks ------------------------------------------


def test_factories_build_each_name() -> None:
    layers = {
        "lstm": LSTM,
        "peephole": PeepholeLSTM,
        "layernorm": LayerNormLSTM,
        "gru": keras.layers.GRU,
        "keras": keras.layers.LSTM,
    }
    cells = {
        "lstm": LSTMCell,
        "peephole": PeepholeLSTMCell,
        "layernorm": LayerNormLSTMCell,
        "gru": keras.layers.GRUCell,
        "keras": keras.layers.LSTMCell,
    }
    assert set(CELL_NAMES) == set(layers)
    x = _inputs(20)
    for name in CELL_NAMES:
        layer = make_recurrent_layer(name, H, return_sequences=True, dropout=0.1, name=f"l_{name}")
        assert type(layer) is layers[name] and layer.name == f"l_{name}"
        assert layer(x).shape == (B, T, H)
        cell = make_cell(name, H, dropout=0.1)
        assert type(cell) is cells[name]
        assert keras.layers.RNN(cell)(x).shape == (B, H)


@pytest.mark.parametrize("factory", [make_recurrent_layer, make_cell])
def test_factories_reject_unknown_name(factory) -> None:
    with pytest.raises(ValueError, match="lstm, peephole, layernorm, gru, keras"):
        factory("transformer", H)


@pytest.mark.parametrize("cls", FUSED)
def test_gate_activations(cls) -> None:
    x = _inputs(21)
    layer = cls(H, return_state=True)
    layer(x)
    _randomise(layer)
    gates = gate_activations(keras.layers.Bidirectional(layer), x)  # rebuilt: fresh weights
    assert set(gates) == {"input", "forget", "output", "cell"}
    gates = gate_activations(layer, x)
    for name in ("input", "forget", "output"):
        assert gates[name].shape == (B, T, H)
        assert np.all((gates[name] > 0) & (gates[name] < 1))
    _, _, c = layer(x)
    np.testing.assert_allclose(gates["cell"][:, -1], c, atol=1e-5)


def test_gate_activations_rejects_other_layers() -> None:
    with pytest.raises(ValueError, match="LSTM, PeepholeLSTM or LayerNormLSTM"):
        gate_activations(keras.layers.GRU(H), _inputs())


@pytest.mark.parametrize("cls", FUSED)
def test_bad_arguments(cls) -> None:
    for units in (0, -3):
        with pytest.raises(ValueError, match="`units` must be a positive integer"):
            cls(units)
    for rates in ({"dropout": 1.0}, {"dropout": -0.1}, {"recurrent_dropout": 1.5}):
        with pytest.raises(ValueError, match=r"must be in \[0, 1\)"):
            cls(H, **rates)
    with pytest.raises(ValueError, match="expected ndim=3, found ndim=2"):
        cls(H)(_inputs()[:, 0])


def test_layernorm_trains_with_input_dropout_on_one_feature() -> None:
    """Dropping the only feature zeroes whole sequences. With TFA's zero biases every unit then
    shares one state, the norms sit at zero variance and this fit is NaN from the first epoch
    (``bias_initializer="zeros"``); the default symmetry-breaking biases train normally."""
    keras.utils.set_random_seed(2)
    series = np.sin(2 * np.pi * np.arange(4200, dtype="float32") / 40)[:, None]
    x = np.stack([series[i : i + 64] for i in range(0, 4096, 8)])
    y = np.stack([series[i + 1 : i + 65] for i in range(0, 4096, 8)])
    layer = LayerNormLSTM(16, return_sequences=True, dropout=0.3)
    model = keras.Sequential([keras.Input((None, 1)), layer, keras.layers.Dense(1)])
    model.compile(keras.optimizers.Adam(1e-3, global_clipnorm=1.0), "mse")
    losses = model.fit(x, y, epochs=2, batch_size=32, verbose=0).history["loss"]
    assert np.isfinite(losses).all() and losses[-1] < 0.75 * losses[0]
