"""Keras' and TensorFlow Addons' own test cases, ported to our layers with their numbers.

`keras/src/layers/rnn/lstm_test.py` (Keras 3.15) runs against our `LSTM` with every
expected value copied unchanged, for `implementation` 1 and 2 and `use_cudnn` "auto" and
False; `test_basics` goes through Keras' own `run_layer_test` (serialisation, masking,
training and mixed-precision checks). The TFA cases are its peephole and layer-norm cell
tests. Also here: the drop-in surface (arguments and properties of `keras.layers.LSTM`)
and the choice of execution path, asserted on CPU.
"""

from __future__ import annotations

import logging

import keras
import numpy as np
import pytest
import tensorflow as tf
from keras import initializers
from keras.src import testing

from models.recurrent import (
    LSTM,
    MIN_CPU_COMPILE_WORK,
    LayerNormLSTM,
    LayerNormLSTMCell,
    PeepholeLSTM,
    PeepholeLSTMCell,
    _split_batch,
    select_path,
)

VARIANTS = [
    {"implementation": 1},
    {"implementation": 2},
    {"implementation": 2, "use_cudnn": False},
]
VARIANT_IDS = ["impl1", "impl2", "no-cudnn"]


def _constant_lstm(units: int, **kwargs) -> LSTM:
    return LSTM(
        units,
        kernel_initializer=initializers.Constant(0.01),
        recurrent_initializer=initializers.Constant(0.02),
        bias_initializer=initializers.Constant(0.03),
        **kwargs,
    )


def _close(got, want) -> None:
    np.testing.assert_allclose(np.asarray(got), np.asarray(want), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize(
    "init_kwargs, call_kwargs, output_shape, losses",
    [
        ({"units": 3, "dropout": 0.5}, {"training": True}, (3, 3), None),
        ({"units": 3, "dropout": 0.5, "recurrent_dropout": 0.5}, {"training": True}, (3, 3), None),
        (
            {
                "units": 3,
                "return_sequences": True,
                "bias_regularizer": "l1",
                "kernel_regularizer": "l2",
                "recurrent_regularizer": "l2",
            },
            None,
            (3, 2, 3),
            3,
        ),
    ],
    ids=["dropout", "recurrent-dropout", "regularizers"],
)
def test_basics(init_kwargs, call_kwargs, output_shape, losses) -> None:
    testing.TestCase().run_layer_test(
        LSTM,
        init_kwargs=init_kwargs,
        input_shape=(3, 2, 4),
        call_kwargs=call_kwargs,
        expected_output_shape=output_shape,
        expected_num_losses=losses,
        expected_num_trainable_weights=3,
        expected_num_non_trainable_weights=0,
        supports_masking=True,
    )


@pytest.mark.parametrize("variant", VARIANTS, ids=VARIANT_IDS)
def test_correctness(variant: dict) -> None:
    sequence = np.arange(72).reshape((3, 6, 4)).astype("float32")
    forward = [0.6288687, 0.86899155, 0.9460773]
    cases = [
        ({}, forward),
        ({"go_backwards": True}, [0.35622165, 0.74789524, 0.8872726]),
        ({"unroll": True}, forward),
        ({"unit_forget_bias": False}, [0.57019705, 0.8661914, 0.9459622]),
        ({"use_bias": False}, [0.54986924, 0.86226785, 0.9443936]),
    ]
    for kwargs, rows in cases:
        output = _constant_lstm(3, **kwargs, **variant)(sequence)
        _close(output, np.repeat(np.array(rows)[:, None], 3, axis=1))


@pytest.mark.parametrize("variant", VARIANTS, ids=VARIANT_IDS)
def test_statefulness(variant: dict) -> None:
    sequence = np.arange(24).reshape((2, 3, 4)).astype("float32")
    layer = _constant_lstm(4, stateful=True, **variant)
    expected = np.repeat(np.array([0.3124785, 0.6863672])[:, None], 4, axis=1)
    layer(sequence)
    _close(layer(sequence), expected)
    layer.reset_state()
    layer(sequence)
    _close(layer(sequence), expected)


@pytest.mark.parametrize("variant", VARIANTS, ids=VARIANT_IDS)
def test_pass_initial_state(variant: dict) -> None:
    sequence = np.arange(24).reshape((2, 4, 3)).astype("float32")
    initial_state = [np.arange(4).reshape((2, 2)).astype("float32")] * 2
    output = _constant_lstm(2, **variant)(sequence, initial_state=initial_state)
    _close(output, [[0.20574439, 0.3558822], [0.64930826, 0.66276]])
    output = _constant_lstm(2, go_backwards=True, **variant)(sequence, initial_state=initial_state)
    _close(output, [[0.13281618, 0.2790356], [0.5839337, 0.5992567]])


@pytest.mark.parametrize("variant", VARIANTS, ids=VARIANT_IDS)
def test_masking(variant: dict) -> None:
    sequence = np.arange(24).reshape((2, 4, 3)).astype("float32")
    mask = np.array([[True, True, True, False], [True, True, False, False]])
    output = _constant_lstm(2, unroll=True, **variant)(sequence, mask=mask)
    _close(output, [[0.11755939, 0.11755939], [0.28556206, 0.28556206]])

    first = [0.01588910, 0.05552048, 0.11755939, 0.11755939]
    second = [0.14185596, 0.28556206, 0.28556206, 0.28556206]
    output = _constant_lstm(2, return_sequences=True, **variant)(sequence, mask=mask)
    _close(output, np.repeat(np.array([first, second])[..., None], 2, axis=-1))

    layer = _constant_lstm(2, return_sequences=True, zero_output_for_mask=True, **variant)
    first[3], second[2], second[3] = 0.0, 0.0, 0.0
    _close(layer(sequence, mask=mask), np.repeat(np.array([first, second])[..., None], 2, axis=-1))

    backwards_mask = np.array([[False, True, True, True], [False, False, True, True]])
    output = _constant_lstm(2, go_backwards=True, **variant)(sequence, mask=backwards_mask)
    _close(output, [[0.15341201, 0.15341201], [0.3844719, 0.3844719]])


# --- TensorFlow Addons' cell tests ---------------------------------------------------------


def test_tfa_peephole_cell_numbers() -> None:
    """TFA's `peephole_lstm_cell_test`: peepholes initialised from `kernel_initializer`."""
    inputs = tf.one_hot([1, 2, 3, 4], 4)
    outputs = []
    for implementation in (1, 2):
        cell = PeepholeLSTMCell(5, kernel_initializer="ones", implementation=implementation)
        cell.build(inputs.shape)
        output, _ = cell(inputs, cell.get_initial_state(batch_size=4))
        outputs.append(np.asarray(output))
    _close(outputs[0], outputs[1])
    expected = np.repeat(np.array([0.417551, 0.417551, 0.417551, 0.0])[:, None], 5, axis=1)
    np.testing.assert_allclose(outputs[0], expected, rtol=1e-6, atol=1e-6)
    # With its own initializer the peepholes no longer follow the kernel's.
    layer = PeepholeLSTM(5, kernel_initializer="ones", peephole_initializer="zeros")
    layer(np.ones((1, 2, 4), "float32"))
    assert not np.any(np.asarray(layer.cell.output_gate_peephole_weights))
    assert layer.peephole_initializer.__class__.__name__ == "Zeros"


def test_tfa_layer_norm_cell_numbers() -> None:
    """TFA's `LayerNormLSTMCellTest.testCellOutput`, single and stacked cells."""
    constant = initializers.Constant(0.5)

    def cell() -> LayerNormLSTMCell:
        return LayerNormLSTMCell(
            2,
            kernel_initializer=constant,
            recurrent_initializer=constant,
            bias_initializer=constant,
            norm_epsilon=1e-12,
        )

    expected_h, expected_c = [[-0.47406167, 0.47406143]], [[-1.0, 1.0]]
    state0 = [0.1 * np.array([[2.0, 3.0]], "float32"), 0.1 * np.array([[0.0, 1.0]], "float32")]
    state1 = [0.1 * np.array([[6.0, 7.0]], "float32"), 0.1 * np.array([[4.0, 5.0]], "float32")]
    stacked = keras.layers.StackedRNNCells([cell(), cell()])
    output, (s0, s1) = stacked(np.ones((1, 2), "float32"), [state0, state1])
    for got, want in [(output, expected_h), (s0[0], expected_h), (s0[1], expected_c)]:
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    for got, want in [(s1[0], expected_h), (s1[1], expected_c)]:
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    output, (h, c) = cell()(np.ones((1, 3), "float32"), state0)
    for got, want in [(output, expected_h), (h, expected_h), (c, expected_c)]:
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


# --- drop-in surface -----------------------------------------------------------------------

HYPER_PARAMETERS = [
    "units",
    "activation",
    "recurrent_activation",
    "use_bias",
    "unit_forget_bias",
    "kernel_initializer",
    "recurrent_initializer",
    "bias_initializer",
    "kernel_regularizer",
    "recurrent_regularizer",
    "bias_regularizer",
    "kernel_constraint",
    "recurrent_constraint",
    "bias_constraint",
    "dropout",
    "recurrent_dropout",
]


def test_properties_and_config_like_keras() -> None:
    kwargs = {
        "kernel_regularizer": "l2",
        "bias_constraint": "non_neg",
        "recurrent_initializer": "zeros",
        "unit_forget_bias": False,
        "implementation": 1,
        "use_cudnn": False,
        "dropout": 0.1,
    }
    reference, ours = keras.layers.LSTM(4, **kwargs), LSTM(4, **kwargs)
    for name in HYPER_PARAMETERS:
        want, got = getattr(reference, name), getattr(ours, name)
        assert type(got) is type(want), name
        if not callable(want):
            assert got == want, name
    assert ours.use_cudnn is False and ours.implementation == 1
    config = ours.get_config()
    assert config["use_cudnn"] is False and config["implementation"] == 1
    assert LSTM.from_config(config).get_config() == config
    # A Keras config (which omits `implementation`/`use_cudnn`) builds our layer too.
    assert LSTM.from_config(reference.get_config()).units == 4


@pytest.mark.parametrize("cls", [LSTM, PeepholeLSTM, LayerNormLSTM])
def test_rejects_bad_drop_in_arguments(cls) -> None:
    with pytest.raises(ValueError, match="`implementation` must be 1 or 2"):
        cls(3, implementation=3)
    with pytest.raises(ValueError, match="`jit_compile` must be"):
        cls(3, jit_compile="yes")
    if cls is LSTM:
        with pytest.raises(ValueError, match="`use_cudnn` must be one of"):
            cls(3, use_cudnn="always")
        with pytest.raises(ValueError, match="use_cudnn=True"):  # no GPU here, as in Keras
            cls(3, use_cudnn=True)(np.ones((1, 2, 3), "float32"))


# --- execution path --------------------------------------------------------------------------


def _path(**overrides) -> str:
    args = {
        "cudnn_args": True,
        "use_cudnn": "auto",
        "recurrent_dropout": 0.0,
        "jit_compile": "auto",
        "gpu": True,
        "in_xla": False,
    }
    return select_path(**{**args, **overrides})


def test_select_path_follows_keras_cudnn_conditions() -> None:
    assert _path() == "cudnn"
    assert _path(use_cudnn=True) == "cudnn"
    # Wherever Keras would not call cuDNN, the fused loop runs, compiled with XLA on a GPU.
    for blocker in ({"cudnn_args": False}, {"recurrent_dropout": 0.2}, {"use_cudnn": False}):
        assert _path(**blocker) == "xla"
        assert _path(**blocker, jit_compile=False) == "loop"
    # Inside a function XLA compiles (TPU, jit_compile=True models): the plain loop.
    assert _path(in_xla=True) == "loop"
    assert _path(in_xla=True, jit_compile=True) == "loop"
    for impossible in ({"gpu": False}, {"cudnn_args": False}, {"in_xla": True}):
        with pytest.raises(ValueError, match="use_cudnn=True"):
            _path(use_cudnn=True, **impossible)


def test_select_path_on_cpu_compiles_large_calls_only() -> None:
    large = MIN_CPU_COMPILE_WORK
    assert _path(gpu=False) == "loop"  # size unknown
    assert _path(gpu=False, work=large - 1) == "loop"
    assert _path(gpu=False, work=large) == "xla"
    assert _path(gpu=False, work=large, jit_compile=False) == "loop"
    assert _path(gpu=False, work=large, in_xla=True) == "loop"
    assert _path(gpu=False, jit_compile=True) == "xla"


def test_layer_path_property_and_cudnn_arguments(monkeypatch, caplog) -> None:
    import models.recurrent as recurrent

    monkeypatch.setattr(recurrent, "_gpu_available", lambda: True)
    assert LSTM(3).execution_path == "cudnn"
    assert LSTM(3).supports_jit is False  # as keras.layers.LSTM on a GPU
    for kwargs in (
        {"activation": "relu"},
        {"recurrent_activation": "hard_sigmoid"},
        {"use_bias": False},
        {"unroll": True},
        {"recurrent_dropout": 0.1},
        {"use_cudnn": False},
    ):
        assert LSTM(3, **kwargs).execution_path == "xla", kwargs
    assert PeepholeLSTM(3).execution_path == "xla"
    assert LayerNormLSTM(3, jit_compile=False).execution_path == "loop"
    monkeypatch.setattr(recurrent, "_gpu_available", lambda: False)
    monkeypatch.setattr(recurrent, "MIN_CPU_COMPILE_WORK", 2 * 8 * 3**2)
    small, large = PeepholeLSTM(3), PeepholeLSTM(3)
    assert LSTM(3).execution_path == "loop" and small.execution_path == "loop"
    small(np.ones((1, 8, 3), "float32"))
    with caplog.at_level(logging.DEBUG, logger="models.recurrent"):
        large(np.ones((2, 8, 3), "float32"))
    assert small.execution_path == "loop" and large.execution_path == "xla"
    assert "xla path" in caplog.text


def _stack(jit_compile: bool) -> keras.Sequential:
    return keras.Sequential(
        [
            keras.Input((5, 3), batch_size=16),
            LSTM(4, return_sequences=True, jit_compile=jit_compile),
            PeepholeLSTM(4, return_sequences=True, go_backwards=True, jit_compile=jit_compile),
            LayerNormLSTM(4, jit_compile=jit_compile),
        ]
    )


def test_compiled_loop_matches_plain_loop() -> None:
    """The "xla" path (each layer's loop compiled on its own, in two batch shards on this
    CPU) gives the outputs and gradients of the plain loop, masks and all; in inference too,
    where the compiled loop projects each step's inputs inside the loop."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(16, 5, 3)).astype("float32")
    mask = np.arange(5)[None] < rng.integers(1, 6, size=(16, 1))
    plain, compiled = _stack(False), _stack(True)
    compiled.set_weights(plain.get_weights())

    def run(model) -> tuple:
        with tf.GradientTape() as tape:
            hidden = x
            for layer in model.layers[:-1]:
                hidden = layer(hidden, mask=mask, training=True)
            loss = tf.reduce_sum(model.layers[-1](hidden, mask=mask, training=True) ** 2)
        return loss, tape.gradient(loss, model.trainable_weights)

    (want, want_grads), (got, got_grads) = run(plain), run(compiled)
    assert [layer.execution_path for layer in compiled.layers] == ["xla"] * 3
    np.testing.assert_allclose(got, want, rtol=1e-5)
    np.testing.assert_allclose(compiled(x, mask=mask), plain(x, mask=mask), rtol=1e-5, atol=1e-6)
    for g, w in zip(got_grads, want_grads):
        np.testing.assert_allclose(g, w, rtol=1e-4, atol=2e-5)


def test_batch_shards_cover_every_row_once() -> None:
    rows = tf.reshape(tf.range(17 * 2), (17, 2))
    shards = _split_batch((rows, None, rows[:, 0]), 2)
    assert [tuple(s[0].shape) for s in shards] == [(9, 2), (8, 2)] and shards[0][1] is None
    np.testing.assert_array_equal(tf.concat([s[2] for s in shards], 0), rows[:, 0])
