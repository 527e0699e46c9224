"""Fused LSTM sequence layers, cell factories and gate read-outs (public import point).

Design: unlike `keras.layers.RNN(cell)`, which multiplies the inputs by the kernel inside
the loop, these layers project all time steps with one matmul (`[T, B, D] @ [D, 4H]`)
before a `tf.while_loop` that keeps one fused `[H, 4H]` matmul per step. In training the
loop has a hand-written backward pass (`_recurrence_with_bptt`). They subclass
`keras.layers.RNN`, so stateful mode, `initial_state`, masking, `Bidirectional` and
serialisation behave exactly as in Keras. See `benchmarks/recurrent.py` for the measured
speed: on a 2-core CPU with D=32 the per-step `[B, H] @ [H, 4H]` matmuls already dominate
`keras.layers.LSTM`'s time and the hoisted `[T, B, 4H]` buffer's memory traffic costs
about what hoisting saves, so these layers run at 1.1-1.3x its time there, not faster.
TensorFlow's fused `BlockLSTMV2` kernel (same i, f, c, o layout) is not used: on that CPU
it was ~1.5x slower than this loop, and TF 2.21 registers the i, c, f, o (V1) gradient op
for it, so its built-in gradients are wrong.
"""

from __future__ import annotations

from typing import Any

import keras
import numpy as np
import tensorflow as tf
from keras import ops
from tensorflow.python.ops.control_flow_util import GraphOrParentsInXlaContext

from models.cells import (
    PACKAGE,
    LayerNormLSTMCell,
    LSTMCell,
    PeepholeLSTMCell,
    state_dtype,
)

__all__ = [
    "CELL_NAMES",
    "LSTM",
    "LSTMCell",
    "LayerNormLSTM",
    "LayerNormLSTMCell",
    "PeepholeLSTM",
    "PeepholeLSTMCell",
    "gate_activations",
    "make_cell",
    "make_recurrent_layer",
]

CELL_NAMES = ("lstm", "peephole", "layernorm", "gru", "keras")


def _in_xla_context() -> bool:
    """True while tracing for XLA (`jit_compile=True`), where the loop prefers other layouts."""
    return GraphOrParentsInXlaContext(tf.compat.v1.get_default_graph())


def _steps(z_x: Any) -> Any:
    return z_x.shape[0] if z_x.shape[0] is not None else tf.shape(z_x)[0]


def _gate_arrays(z_x: Any) -> list:
    """`z_x` as TensorArrays over time; per gate under XLA (contiguous reads, see cells)."""
    parts = tf.split(z_x, 4, axis=-1) if _in_xla_context() else [z_x]
    return [
        tf.TensorArray(z_x.dtype, size=_steps(z_x), clear_after_read=False).unstack(part)
        for part in parts
    ]


def _read(arrays: list, t: Any) -> Any:
    values = tuple(ta.read(t) for ta in arrays)
    return values if len(values) == 4 else values[0]


def _plain_recurrence(
    cell: LSTMCell,
    z_x: Any,
    mask: Any,
    rec_mask: Any,
    h0: Any,
    c0: Any,
    weights: tuple,
    keep: bool,
    collect_gates: bool,
    unroll: bool,
) -> tuple:
    """Time loop differentiated by TensorFlow; returns `(h, c, [hs?, i?, f?, o?, c?])`."""

    def step(z_t: Any, m_t: Any, h: Any, c: Any) -> tuple:
        h_rec = h if rec_mask is None else h * rec_mask
        h_new, c_new, (i, f, _, o) = cell.step(z_t, h_rec, c, weights)
        if m_t is not None:
            h_new = tf.where(m_t, h_new, h)
            c_new = tf.where(m_t, c_new, c)
        values = ((h_new,) if keep else ()) + ((i, f, o, c_new) if collect_gates else ())
        return h_new, c_new, values

    n_tracked = (1 if keep else 0) + (4 if collect_gates else 0)
    if unroll:
        h, c = h0, c0
        tracked = [[] for _ in range(n_tracked)]
        for t in range(z_x.shape[0]):
            h, c, values = step(z_x[t], None if mask is None else mask[t], h, c)
            for store, value in zip(tracked, values):
                store.append(value)
        return h, c, [tf.stack(store) for store in tracked]

    steps = _steps(z_x)
    z_tas = _gate_arrays(z_x)
    m_ta = None if mask is None else tf.TensorArray(tf.bool, size=steps).unstack(mask)
    out_tas = tuple(tf.TensorArray(z_x.dtype, size=steps) for _ in range(n_tracked))

    def body(t: Any, h: Any, c: Any, tas: tuple) -> tuple:
        m_t = None if m_ta is None else m_ta.read(t)
        h, c, values = step(_read(z_tas, t), m_t, h, c)
        return t + 1, h, c, tuple(ta.write(t, v) for ta, v in zip(tas, values))

    _, h, c, out_tas = tf.while_loop(
        lambda t, *_: t < steps,
        body,
        (tf.constant(0), h0, c0, out_tas),
        maximum_iterations=steps,
        parallel_iterations=32,
    )
    return h, c, [ta.stack() for ta in out_tas]


def _recurrence_with_bptt(
    cell: LSTMCell,
    z_x: Any,
    mask: Any,
    rec_mask: Any,
    h0: Any,
    c0: Any,
    weights: tuple,
    return_sequences: bool = True,
) -> tuple:
    """Time loop with a hand-written backward pass; returns `(hs [T, B, H] or None, h, c)`.

    Autodiff of a while loop accumulates `d recurrent_kernel` with one matmul per step
    and pushes every intermediate on a stack. Here the forward pass stores only h, c and
    what `cell.update_for_grad` returns per step (e.g. the activated gates); the
    backward loop runs `cell.update_grad` on it, does one `[B, 4H] @ [4H, H]` matmul per
    step, and the recurrent-kernel gradient is one `[H, T*B] @ [T*B, 4H]` matmul after.
    """
    steps = _steps(z_x)
    dtype = z_x.dtype
    units = h0.shape[-1]

    def masked(m_t: Any, new: Any, old: Any) -> Any:
        return new if m_t is None else tf.where(m_t, new, old)

    def arrays(n: int) -> tuple:
        return tuple(tf.TensorArray(dtype, size=steps, clear_after_read=False) for _ in range(n))

    @tf.custom_gradient
    def recurrence(z_x: Any, h0: Any, c0: Any, recurrent_kernel: Any, *extra: Any):
        z_tas = _gate_arrays(z_x)
        m_ta = None
        if mask is not None:
            m_ta = tf.TensorArray(tf.bool, size=steps, clear_after_read=False).unstack(mask)

        def body(t: Any, h: Any, c: Any, hs: Any, cs: Any, saved: tuple) -> tuple:
            m_t = None if m_ta is None else m_ta.read(t)
            z_h = tf.matmul(h if rec_mask is None else h * rec_mask, recurrent_kernel)
            h_new, c_new, values = cell.update_for_grad(_read(z_tas, t), z_h, c, extra)
            saved = tuple(ta.write(t, v) for ta, v in zip(saved, values))
            h_new, c_new = masked(m_t, h_new, h), masked(m_t, c_new, c)
            # cs holds c[t-1] at t, so the backward step reads its input state directly.
            return t + 1, h_new, c_new, hs.write(t, h_new), cs.write(t, c), saved

        _, h, c, hs_ta, c_prev_ta, saved_tas = tf.while_loop(
            lambda t, *_: t < steps,
            body,
            (tf.constant(0), h0, c0, *arrays(2), arrays(cell.saved_count)),
            maximum_iterations=steps,
            parallel_iterations=32,
        )
        hs = hs_ta.stack()

        def grad(*d_outputs: Any) -> tuple:
            d_hs_ta = None
            if return_sequences:
                d_hs, d_h, d_c = d_outputs
                d_hs_ta = tf.TensorArray(dtype, size=steps).unstack(d_hs)
            else:
                d_h, d_c = d_outputs

            def back(s: Any, c_t: Any, dh: Any, dc: Any, dz_tas: tuple, d_extra: tuple) -> tuple:
                if d_hs_ta is not None:
                    dh = dh + d_hs_ta.read(s)
                # On masked steps c_t is the carried state; the zero gradients ignore it.
                c_tm1 = c_prev_ta.read(s)
                m_t = None if m_ta is None else m_ta.read(s)
                dh_new, dc_new = dh, dc
                if m_t is not None:
                    dh_new, dc_new = (tf.where(m_t, d, tf.zeros_like(d)) for d in (dh, dc))
                dz_x, dz_h, dc_tm1, d_step = cell.update_grad(
                    _read(z_tas, s),
                    tuple(ta.read(s) for ta in saved_tas),
                    c_tm1,
                    c_t,
                    extra,
                    dh_new,
                    dc_new,
                )
                dh_tm1 = tf.matmul(dz_h, recurrent_kernel, transpose_b=True)
                if rec_mask is not None:
                    dh_tm1 = dh_tm1 * rec_mask
                if m_t is not None:  # masked steps pass the state gradient straight through
                    dh_tm1, dc_tm1 = dh_tm1 + (dh - dh_new), dc_tm1 + (dc - dc_new)
                # Additive cells have dz_x == dz_h: store it once.
                values = dz_x if isinstance(dz_x, tuple) else (dz_x,)
                values += () if cell.additive_recurrence else (dz_h,)
                return (
                    s - 1,
                    c_tm1,
                    dh_tm1,
                    dc_tm1,
                    tuple(ta.write(s, v) for ta, v in zip(dz_tas, values)),
                    tuple(a + g for a, g in zip(d_extra, d_step)),
                )

            n_stored = len(z_tas) + (0 if cell.additive_recurrence else 1)
            _, _, dh0, dc0, dz_tas, d_extra = tf.while_loop(
                lambda s, *_: s >= 0,
                back,
                (
                    steps - 1,
                    c,
                    d_h,
                    d_c,
                    arrays(n_stored),
                    tuple(tf.zeros_like(w) for w in extra),
                ),
                maximum_iterations=steps,
                parallel_iterations=32,
            )
            d_z_x = tf.concat([ta.stack() for ta in dz_tas[: len(z_tas)]], axis=-1)
            d_z_h = d_z_x if cell.additive_recurrence else dz_tas[-1].stack()
            h_prev = tf.concat([h0[None], hs[:-1]], axis=0)
            if rec_mask is not None:
                h_prev = h_prev * rec_mask
            d_kernel = tf.matmul(
                tf.reshape(h_prev, [-1, units]),
                tf.reshape(d_z_h, [-1, 4 * units]),
                transpose_a=True,
            )
            return (d_z_x, dh0, dc0, d_kernel, *d_extra)

        return ((hs, h, c) if return_sequences else (h, c)), grad

    outputs = recurrence(z_x, h0, c0, *weights)
    return tuple(outputs) if return_sequences else (None, *outputs)


def _run_lstm(
    cell: LSTMCell,
    sequences: Any,
    initial_state: list,
    mask: Any = None,
    training: bool = False,
    go_backwards: bool = False,
    return_sequences: bool = False,
    zero_output_for_mask: bool = False,
    unroll: bool = False,
    collect_gates: bool = False,
) -> tuple:
    """Runs `cell` over `[B, T, D]` inputs with the input projection hoisted out of the loop.

    Follows `keras.src.backend.tensorflow.rnn` semantics: with `go_backwards` the outputs
    stay in processing (reversed) order; masked steps carry the state, and output the
    previous output (zeros before the first valid step, or always with
    `zero_output_for_mask`). Returns `(last_output, outputs, [h, c], gates)` in the state
    dtype; `gates` maps input/forget/output/cell to `[B, T, H]` when `collect_gates`.
    """
    dtype = state_dtype(cell.compute_dtype)
    if training and cell.dropout > 0:
        # One mask per sequence, as keras.layers.LSTM does; applied before projecting.
        dp_mask = cell.get_dropout_mask(sequences[:, 0, :])
        sequences = sequences * ops.expand_dims(dp_mask, 1)
    rec_mask = None
    if training and cell.recurrent_dropout > 0:
        rec_mask = ops.cast(cell.get_recurrent_dropout_mask(initial_state[0]), dtype)

    # Go time-major before projecting: transposing [T, B, D] is far cheaper than [T, B, 4H].
    sequences = tf.transpose(sequences, [1, 0, 2])
    if mask is not None:
        mask = tf.transpose(tf.cast(mask, tf.bool))[:, :, None]  # [T, B, 1]
    if go_backwards:
        sequences = tf.reverse(sequences, [0])
        if mask is not None:
            mask = tf.reverse(mask, [0])
    z_x = ops.cast(cell.project_inputs(sequences), dtype)  # [T, B, 4H], one matmul
    weights = cell.step_weights(dtype)
    h0, c0 = (tf.cast(s, dtype) for s in initial_state)
    keep = return_sequences or collect_gates
    if training and not (unroll or collect_gates):
        # Training: hand-written BPTT (one matmul per step backwards, weight grads batched).
        hs, h, c = _recurrence_with_bptt(
            cell, z_x, mask, rec_mask, h0, c0, weights, return_sequences
        )
        stacked = [hs]
    else:
        h, c, stacked = _plain_recurrence(
            cell, z_x, mask, rec_mask, h0, c0, weights, keep, collect_gates, unroll
        )

    outputs = stacked[0] if keep else None
    last_output = h
    if mask is not None:
        if zero_output_for_mask:
            valid = mask
            last_output = tf.where(mask[-1], h, tf.zeros_like(h))
        else:
            # Keras carries the previous *output*, which is zero until the first valid step.
            valid = tf.cumsum(tf.cast(mask, tf.int32), axis=0) > 0
            last_output = tf.where(valid[-1], h, tf.zeros_like(h))
        if outputs is not None:
            outputs = tf.where(valid, outputs, tf.zeros_like(outputs))
    if outputs is not None:
        outputs = tf.transpose(outputs, [1, 0, 2])
    gates = {}
    if collect_gates:
        names = ("input", "forget", "output", "cell")
        gates = {k: tf.transpose(v, [1, 0, 2]) for k, v in zip(names, stacked[-4:])}
    return last_output, outputs, [h, c], gates


def _cell_property(name: str) -> property:
    """Forwards a hyper-parameter to the cell, as `keras.layers.LSTM` does."""
    return property(lambda self: getattr(self.cell, name), doc=f"The cell's `{name}`.")


class _FusedLSTM(keras.layers.RNN):
    """Base of the fused sequence layers; subclasses pick the cell class and its extra args."""

    cell_class: type[LSTMCell] = LSTMCell
    extra_cell_args: tuple[str, ...] = ()

    def __init__(
        self,
        units: int,
        activation: Any = "tanh",
        recurrent_activation: Any = "sigmoid",
        use_bias: bool = True,
        kernel_initializer: Any = "glorot_uniform",
        recurrent_initializer: Any = "orthogonal",
        bias_initializer: Any = "zeros",
        unit_forget_bias: bool = True,
        kernel_regularizer: Any = None,
        recurrent_regularizer: Any = None,
        bias_regularizer: Any = None,
        activity_regularizer: Any = None,
        kernel_constraint: Any = None,
        recurrent_constraint: Any = None,
        bias_constraint: Any = None,
        dropout: float = 0.0,
        recurrent_dropout: float = 0.0,
        seed: int | None = None,
        return_sequences: bool = False,
        return_state: bool = False,
        go_backwards: bool = False,
        stateful: bool = False,
        unroll: bool = False,
        **kwargs: Any,
    ) -> None:
        extra = {k: kwargs.pop(k) for k in self.extra_cell_args if k in kwargs}
        cell = self.cell_class(
            units,
            activation=activation,
            recurrent_activation=recurrent_activation,
            use_bias=use_bias,
            kernel_initializer=kernel_initializer,
            recurrent_initializer=recurrent_initializer,
            bias_initializer=bias_initializer,
            unit_forget_bias=unit_forget_bias,
            kernel_regularizer=kernel_regularizer,
            recurrent_regularizer=recurrent_regularizer,
            bias_regularizer=bias_regularizer,
            kernel_constraint=kernel_constraint,
            recurrent_constraint=recurrent_constraint,
            bias_constraint=bias_constraint,
            dropout=dropout,
            recurrent_dropout=recurrent_dropout,
            seed=seed,
            dtype=kwargs.get("dtype"),
            trainable=kwargs.get("trainable", True),
            name="cell",
            **extra,
        )
        super().__init__(
            cell,
            return_sequences=return_sequences,
            return_state=return_state,
            go_backwards=go_backwards,
            stateful=stateful,
            unroll=unroll,
            activity_regularizer=activity_regularizer,
            **kwargs,
        )
        self.input_spec = keras.layers.InputSpec(ndim=3)

    def inner_loop(self, sequences: Any, initial_state: list, mask: Any, training: bool = False):
        if isinstance(mask, (list, tuple)):
            mask = mask[0]
        last_output, outputs, states, _ = _run_lstm(
            self.cell,
            sequences,
            initial_state,
            mask=mask,
            training=training,
            go_backwards=self.go_backwards,
            return_sequences=self.return_sequences,
            zero_output_for_mask=self.zero_output_for_mask,
            unroll=self.unroll,
        )
        return last_output, last_output if outputs is None else outputs, states

    def call(self, sequences: Any, initial_state: Any = None, mask: Any = None, training=False):
        return super().call(sequences, mask=mask, training=training, initial_state=initial_state)

    units = _cell_property("units")
    activation = _cell_property("activation")
    recurrent_activation = _cell_property("recurrent_activation")
    use_bias = _cell_property("use_bias")
    dropout = _cell_property("dropout")
    recurrent_dropout = _cell_property("recurrent_dropout")

    def get_config(self) -> dict:
        cell_config = self.cell.get_config()
        for key in ("name", "trainable", "dtype"):
            cell_config.pop(key, None)
        base_config = super().get_config()
        del base_config["cell"]
        return {
            **base_config,
            **cell_config,
            "activity_regularizer": keras.regularizers.serialize(self.activity_regularizer),
        }

    @classmethod
    def from_config(cls, config: dict, custom_objects: Any = None) -> _FusedLSTM:
        return cls(**config)


@keras.saving.register_keras_serializable(package=PACKAGE)
class LSTM(_FusedLSTM):
    """Drop-in replacement for `keras.layers.LSTM` (same arguments, weights and outputs).

    The input projection is hoisted out of the time loop (see the module docstring).
    `unroll=True` unrolls the loop in Python (static, short sequences only).
    """

    cell_class = LSTMCell


@keras.saving.register_keras_serializable(package=PACKAGE)
class PeepholeLSTM(_FusedLSTM):
    """Sequence layer over `PeepholeLSTMCell`; arguments of `LSTM` plus `peephole_initializer`."""

    cell_class = PeepholeLSTMCell
    extra_cell_args = ("peephole_initializer",)

    def __init__(
        self, units: int, peephole_initializer: Any = "glorot_uniform", **kwargs: Any
    ) -> None:
        super().__init__(units, peephole_initializer=peephole_initializer, **kwargs)


@keras.saving.register_keras_serializable(package=PACKAGE)
class LayerNormLSTM(_FusedLSTM):
    """Sequence layer over `LayerNormLSTMCell` (TFA semantics, small random initial biases);
    `LSTM` args plus norm args."""

    cell_class = LayerNormLSTMCell
    extra_cell_args = ("norm_gamma_initializer", "norm_beta_initializer", "norm_epsilon")

    def __init__(
        self,
        units: int,
        norm_gamma_initializer: Any = "ones",
        norm_beta_initializer: Any = "zeros",
        norm_epsilon: float = 1e-3,
        bias_initializer: Any = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            units,
            norm_gamma_initializer=norm_gamma_initializer,
            norm_beta_initializer=norm_beta_initializer,
            norm_epsilon=norm_epsilon,
            bias_initializer=bias_initializer,  # None: the cell's symmetry-breaking default
            **kwargs,
        )


_LAYERS: dict[str, Any] = {
    "lstm": LSTM,
    "peephole": PeepholeLSTM,
    "layernorm": LayerNormLSTM,
    "gru": keras.layers.GRU,
    "keras": keras.layers.LSTM,
}
_CELLS: dict[str, Any] = {
    "lstm": LSTMCell,
    "peephole": PeepholeLSTMCell,
    "layernorm": LayerNormLSTMCell,
    "gru": keras.layers.GRUCell,
    "keras": keras.layers.LSTMCell,
}


def _lookup(table: dict[str, Any], cell: str) -> Any:
    if cell not in table:
        raise ValueError(f"Unknown cell {cell!r}; expected one of {', '.join(CELL_NAMES)}.")
    return table[cell]


def make_recurrent_layer(cell: str, units: int, **kwargs: Any) -> keras.layers.Layer:
    """Sequence layer for a cell name in `CELL_NAMES`, so pipelines can compare cells by config.

    `kwargs` are the usual Keras RNN arguments (return_sequences, dropout, stateful, name...).
    """
    return _lookup(_LAYERS, cell)(units, **kwargs)


def make_cell(cell: str, units: int, **kwargs: Any) -> keras.layers.Layer:
    """Single-step cell for a name in `CELL_NAMES` (for decoders that step one token at a time)."""
    return _lookup(_CELLS, cell)(units, **kwargs)


def gate_activations(
    layer: keras.layers.Layer, inputs: Any, mask: Any = None
) -> dict[str, np.ndarray]:
    """Per-step gate values of a fused LSTM layer, for plotting what the model attends to.

    Returns `[B, T, H]` arrays: `input`, `forget`, `output` (after the recurrent activation)
    and `cell` (c[t]), in processing order (reversed for `go_backwards` layers). Masked
    steps repeat the carried cell state. For `keras.layers.Bidirectional`, the forward layer
    is used. Runs in inference mode from the layer's initial (or stateful) state.
    """
    if isinstance(layer, keras.layers.Bidirectional):
        layer = layer.forward_layer
    if not isinstance(layer, _FusedLSTM):
        raise ValueError(
            "gate_activations needs an LSTM, PeepholeLSTM or LayerNormLSTM layer "
            f"(optionally inside Bidirectional), got {type(layer).__name__}."
        )
    inputs = ops.convert_to_tensor(inputs, dtype=layer.compute_dtype)
    if not layer.built:
        layer.build(tuple(inputs.shape))
    batch = ops.shape(inputs)[0]
    state = list(layer.states) if layer.stateful else layer.get_initial_state(batch)
    _, _, _, gates = _run_lstm(
        layer.cell,
        inputs,
        [ops.convert_to_tensor(s) for s in state],
        mask=mask,
        go_backwards=layer.go_backwards,
        collect_gates=True,
    )
    return {k: np.asarray(ops.convert_to_numpy(v), dtype=np.float32) for k, v in gates.items()}
