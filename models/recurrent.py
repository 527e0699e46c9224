"""Fused LSTM sequence layers, cell factories and gate read-outs (public import point).

Design: unlike `keras.layers.RNN(cell)`, which multiplies the inputs by the kernel inside
the loop, these layers project all time steps with one matmul (`[T, B, D] @ [D, 4H]`)
before a `tf.while_loop` that keeps one fused `[H, 4H]` matmul per step. In training the
loop has a hand-written backward pass (`_recurrence_with_bptt`). They subclass
`keras.layers.RNN`, so stateful mode, `initial_state`, masking, `Bidirectional` and
serialisation behave exactly as in Keras. On a CPU the per-step `[B, H] @ [H, 4H]` matmul
decides the time and one while loop keeps one core busy, so large calls run one compiled
loop per batch shard, one shard per core (`select_path`); `benchmarks/recurrent.py` measures
the result against `keras.layers.LSTM` (docs/layers.md).
TensorFlow's fused `BlockLSTMV2` kernel (same i, f, c, o layout) is not used: on that CPU
it was ~1.5x slower than this loop, and TF 2.21 registers the i, c, f, o (V1) gradient op
for it, so its built-in gradients are wrong.
"""

from __future__ import annotations

import functools
import logging
import os
from typing import Any

import keras
import numpy as np
import tensorflow as tf
from keras import activations, ops
from keras.src import backend as keras_backend
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
    "MIN_CPU_COMPILE_WORK",
    "PATHS",
    "LSTM",
    "LSTMCell",
    "LayerNormLSTM",
    "LayerNormLSTMCell",
    "PeepholeLSTM",
    "PeepholeLSTMCell",
    "gate_activations",
    "make_cell",
    "make_recurrent_layer",
    "select_path",
]

CELL_NAMES = ("lstm", "peephole", "layernorm", "gru", "keras")

_LOG = logging.getLogger(__name__)


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
    project: Any = None,
) -> tuple:
    """Time loop differentiated by TensorFlow; returns `(h, c, [hs?, i?, f?, o?, c?])`.

    With `project`, `z_x` holds the `[T, B, D]` inputs and each step projects its own row
    (see `_run_lstm`).
    """

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
    if project is None:
        z_tas = _gate_arrays(z_x)
        read = functools.partial(_read, z_tas)
    else:
        x_ta = tf.TensorArray(z_x.dtype, size=steps).unstack(z_x)

        def read(t: Any) -> Any:
            return project(x_ta.read(t))

    m_ta = None if mask is None else tf.TensorArray(tf.bool, size=steps).unstack(mask)
    out_tas = tuple(tf.TensorArray(h0.dtype, size=steps) for _ in range(n_tracked))

    def body(t: Any, h: Any, c: Any, tas: tuple) -> tuple:
        m_t = None if m_ta is None else m_ta.read(t)
        h, c, values = step(read(t), m_t, h, c)
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
        residuals = (z_tas, m_ta, c_prev_ta, saved_tas)
        if _in_xla_context():
            # An XLA-compiled forward hands the backward pass dense tensors (TensorArrays
            # cannot leave a compiled function); stacking is free there.
            residuals = (c_prev_ta.stack(), tuple(ta.stack() for ta in saved_tas))

        def grad(*d_outputs: Any) -> tuple:
            if len(residuals) == 4:
                z_tas, m_ta, c_prev_ta, saved_tas = residuals
            else:
                z_tas, m_ta = _gate_arrays(z_x), None
                if mask is not None:
                    m_ta = tf.TensorArray(tf.bool, size=steps).unstack(mask)
                c_prev_ta = tf.TensorArray(dtype, size=steps).unstack(residuals[0])
                saved_tas = tuple(
                    tf.TensorArray(dtype, size=steps).unstack(v) for v in residuals[1]
                )
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


def _dropout_masks(cell: LSTMCell, sequences: Any, h0: Any, training: bool) -> tuple:
    """`(input mask [B, D] or None, recurrent mask [B, H] or None)`: one per sequence, as in Keras.

    Keras' `RNN.call` draws them before `inner_loop`; they are read here and passed on as
    tensors, so an XLA-compiled loop gets them as inputs, not as captures.
    """
    dp_mask = cell.get_dropout_mask(sequences[:, 0, :]) if training and cell.dropout > 0 else None
    rec_mask = None
    if training and cell.recurrent_dropout > 0:
        rec_mask = cell.get_recurrent_dropout_mask(h0)
    return dp_mask, rec_mask


def _run_lstm(
    cell: LSTMCell,
    sequences: Any,
    h0: Any,
    c0: Any,
    mask: Any = None,
    dp_mask: Any = None,
    rec_mask: Any = None,
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
    if dp_mask is not None:
        # One mask per sequence, as keras.layers.LSTM does; applied before projecting.
        sequences = sequences * ops.expand_dims(dp_mask, 1)
    if rec_mask is not None:
        rec_mask = ops.cast(rec_mask, dtype)

    # Go time-major before projecting: transposing [T, B, D] is far cheaper than [T, B, 4H].
    sequences = tf.transpose(sequences, [1, 0, 2])
    if mask is not None:
        mask = tf.transpose(tf.cast(mask, tf.bool))[:, :, None]  # [T, B, 1]
    if go_backwards:
        sequences = tf.reverse(sequences, [0])
        if mask is not None:
            mask = tf.reverse(mask, [0])
    weights = cell.step_weights(dtype)
    h0, c0 = tf.cast(h0, dtype), tf.cast(c0, dtype)
    keep = return_sequences or collect_gates

    def project(x: Any) -> Any:
        return ops.cast(cell.project_inputs(x), dtype)

    if training and not (unroll or collect_gates):
        # Training: hand-written BPTT (one matmul per step backwards, weight grads batched).
        hs, h, c = _recurrence_with_bptt(
            cell, project(sequences), mask, rec_mask, h0, c0, weights, return_sequences
        )
        stacked = [hs]
    elif _in_xla_context() and not unroll:
        # Inference under XLA: each step projects its own [B, D] row. Measured on 2 CPU
        # cores, this beats reading a hoisted [T, B, 4H] buffer by ~12 % per call: that
        # buffer is written and read once more than the inputs, and the step matmul is
        # compute-bound anyway. Same maths row by row.
        def project_row(row: Any) -> Any:
            # As a one-step sequence, projected as the whole would be (XLA hoists what the
            # layer-norm cell derives from its weights for a sequence out of the loop).
            return project(row[None])[0]

        h, c, stacked = _plain_recurrence(
            cell, sequences, mask, rec_mask, h0, c0, weights, keep, False, False, project_row
        )
    else:
        h, c, stacked = _plain_recurrence(
            cell, project(sequences), mask, rec_mask, h0, c0, weights, keep, collect_gates, unroll
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


# --- choosing how a call runs its time loop --------------------------------------------------

PATHS = ("cudnn", "xla", "loop")
# batch x steps x units^2 from which "auto" compiles a CPU loop: the compile (once per
# shape) then costs less than the time it saves over a few hundred calls.
MIN_CPU_COMPILE_WORK = 2**25


def _gpu_available() -> bool:
    """The test `keras.layers.LSTM` uses (`keras.src.backend.tensorflow.rnn`)."""
    return bool(tf.config.list_logical_devices("GPU"))


def select_path(
    *,
    cudnn_args: bool,
    use_cudnn: bool | str,
    recurrent_dropout: float,
    jit_compile: bool | str,
    gpu: bool,
    in_xla: bool,
    work: int | None = None,
) -> str:
    """The time-loop implementation of one call, one of `PATHS`.

    * `"cudnn"`: one cuDNN kernel for the whole sequence, under the conditions of
      `keras.layers.LSTM`: `use_cudnn` "auto" or True, tanh/sigmoid activations, a bias,
      `unroll=False` (`cudnn_args`), no recurrent dropout, a GPU, and not inside a function
      XLA is compiling (cuDNN is no XLA op). Masks must be right-padded, checked at run
      time: other masks take the loop (where Keras stops with an assertion).
    * `"xla"`: the fused loop compiled on its own with XLA, when the caller is not compiled
      already: with `jit_compile=True`, or "auto" on a GPU (one while loop of fused
      element-wise kernels instead of dozens of tiny kernel launches per step) and on a
      CPU when a call's `work` (batch x steps x units^2, batch 32 when unknown) reaches
      `MIN_CPU_COMPILE_WORK`. On a CPU the batch is cut into one shard per inter-op
      thread, each its own compiled call, so the cores work in parallel without meeting
      at every step. Each new input shape compiles once (about a second), which is why
      small calls on a CPU keep the loop.
    * `"loop"`: the fused `tf.while_loop`, part of the caller's graph (compiled with it when
      the model is, which is how TPUs run it).

    `use_cudnn=True` where cuDNN cannot run raises, as in Keras.
    """
    cudnn_call = cudnn_args and not recurrent_dropout and gpu and not in_xla
    if use_cudnn in ("auto", True) and cudnn_call:
        return "cudnn"
    if use_cudnn is True:
        raise ValueError(
            "use_cudnn=True was specified, but cuDNN cannot run this call (it needs a GPU, "
            "tanh/sigmoid activations, use_bias=True, unroll=False, no recurrent dropout "
            "and no enclosing XLA compilation). Pass use_cudnn='auto' to fall back to the "
            "fused loop."
        )
    if in_xla or jit_compile is False:
        return "loop"
    large = work is not None and work >= MIN_CPU_COMPILE_WORK
    return "xla" if jit_compile is True or gpu or large else "loop"


def _shard_count(batch: int | None) -> int:
    """Batch shards for the compiled CPU loop: one per inter-op thread, >= 8 rows each."""
    if _gpu_available():
        return 1
    threads = tf.config.threading.get_inter_op_parallelism_threads()
    threads = threads or len(os.sched_getaffinity(0))
    if batch is not None:
        threads = min(threads, batch // 8)
    return max(1, threads)


def _split_batch(tensors: tuple, shards: int) -> list[tuple]:
    """`tensors` (batch-major, None allowed) cut into `shards` near-equal row blocks."""
    batch = tf.shape(tensors[0])[0]
    sizes = [(batch + shards - 1 - i) // shards for i in range(shards)]
    cut = [None if t is None else tf.split(t, sizes, axis=0) for t in tensors]
    return [tuple(None if c is None else c[i] for c in cut) for i in range(shards)]


def _join(parts: list) -> Any:
    return None if parts[0] is None else tf.concat(parts, axis=0)


class _Compiled:
    """Holds the XLA-compiled loop out of sight of tf.Module tracking (SavedModel export
    would otherwise trace and save it as one of the layer's functions)."""

    def __init__(self, fn: Any) -> None:
        self.fn = tf.function(fn, jit_compile=True)


def _cell_property(name: str) -> property:
    """Forwards a hyper-parameter to the cell, as `keras.layers.LSTM` does."""
    return property(lambda self: getattr(self.cell, name), doc=f"The cell's `{name}`.")


class _FusedLSTM(keras.layers.RNN):
    """Base of the fused sequence layers; subclasses pick the cell class and its extra args.

    `jit_compile` ("auto", True, False) compiles the time loop with XLA on its own when the
    model around it is not compiled: "auto" does so on a GPU. `execution_path` says which
    implementation the next call takes (see `select_path`); each trace logs it at DEBUG
    level on the `models.recurrent` logger.
    """

    cell_class: type[LSTMCell] = LSTMCell
    extra_cell_args: tuple[str, ...] = ()
    use_cudnn: bool | str = False  # only `LSTM` has a cuDNN kernel

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
        implementation: int = 2,
        jit_compile: bool | str = "auto",
        **kwargs: Any,
    ) -> None:
        if jit_compile not in ("auto", True, False):
            raise ValueError(f"`jit_compile` must be 'auto', True or False, got {jit_compile!r}.")
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
            implementation=implementation,
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
        self.jit_compile = jit_compile
        self._compiled = None
        self._last_path = None

    def _cudnn_args_ok(self) -> bool:
        return False

    def _select_path(self, in_xla: bool, shape: tuple | None = None) -> str:
        work = None
        if shape is not None and shape[1] is not None:
            work = (shape[0] or 32) * shape[1] * self.units**2
        return select_path(
            cudnn_args=self._cudnn_args_ok(),
            use_cudnn=self.use_cudnn,
            recurrent_dropout=self.recurrent_dropout,
            jit_compile=self.jit_compile,
            gpu=_gpu_available(),
            in_xla=in_xla,
            work=work,
        )

    @property
    def execution_path(self) -> str:
        """`"cudnn"`, `"xla"` or `"loop"` (see `select_path`): the path the last traced call
        took, or before any call the one a call of unknown size outside XLA would take."""
        return self._last_path or self._select_path(in_xla=False)

    def inner_loop(self, sequences: Any, initial_state: list, mask: Any, training: bool = False):
        if isinstance(mask, (list, tuple)):
            mask = mask[0]
        path = self._select_path(_in_xla_context(), tuple(sequences.shape))
        self._last_path = path
        _LOG.debug("%s (%s): %s path", self.name, type(self).__name__, path)
        if path == "cudnn":
            return self._cudnn_or_loop(sequences, initial_state, mask, training)
        return self._loop(sequences, initial_state, mask, training, compiled=path == "xla")

    def _loop(self, sequences, initial_state, mask, training, compiled=False) -> tuple:
        h0, c0 = initial_state
        dp_mask, rec_mask = _dropout_masks(self.cell, sequences, h0, training)
        run = functools.partial(_run_lstm, self.cell)
        shards = 1
        if compiled:
            if self._compiled is None:
                self._compiled = _Compiled(run)
            run = self._compiled.fn
            shards = _shard_count(sequences.shape[0])
        run = functools.partial(
            run,
            training=bool(training),
            go_backwards=self.go_backwards,
            return_sequences=self.return_sequences,
            zero_output_for_mask=self.zero_output_for_mask,
            unroll=self.unroll,
        )
        inputs = (sequences, h0, c0, mask, dp_mask, rec_mask)
        if shards == 1:
            last_output, outputs, (h, c), _ = run(*inputs)
        else:
            # Independent batch shards: each compiled call runs on its own inter-op thread,
            # so the cores share the work without meeting at every time step.
            parts = [run(*shard) for shard in _split_batch(inputs, shards)]
            last_output, outputs, h, c = (
                _join([get(p) for p in parts])
                for get in (
                    lambda p: p[0],
                    lambda p: p[1],
                    lambda p: p[2][0],
                    lambda p: p[2][1],
                )
            )
        return last_output, last_output if outputs is None else outputs, [h, c]

    def _cudnn_or_loop(self, sequences, initial_state, mask, training) -> tuple:
        raise NotImplementedError

    def call(self, sequences: Any, initial_state: Any = None, mask: Any = None, training=False):
        return super().call(sequences, mask=mask, training=training, initial_state=initial_state)

    units = _cell_property("units")
    activation = _cell_property("activation")
    recurrent_activation = _cell_property("recurrent_activation")
    use_bias = _cell_property("use_bias")
    unit_forget_bias = _cell_property("unit_forget_bias")
    kernel_initializer = _cell_property("kernel_initializer")
    recurrent_initializer = _cell_property("recurrent_initializer")
    bias_initializer = _cell_property("bias_initializer")
    kernel_regularizer = _cell_property("kernel_regularizer")
    recurrent_regularizer = _cell_property("recurrent_regularizer")
    bias_regularizer = _cell_property("bias_regularizer")
    kernel_constraint = _cell_property("kernel_constraint")
    recurrent_constraint = _cell_property("recurrent_constraint")
    bias_constraint = _cell_property("bias_constraint")
    dropout = _cell_property("dropout")
    recurrent_dropout = _cell_property("recurrent_dropout")
    implementation = _cell_property("implementation")

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
            "jit_compile": self.jit_compile,
        }

    @classmethod
    def from_config(cls, config: dict, custom_objects: Any = None) -> _FusedLSTM:
        return cls(**config)


@keras.saving.register_keras_serializable(package=PACKAGE)
class LSTM(_FusedLSTM):
    """Drop-in replacement for `keras.layers.LSTM` (same arguments, weights and outputs).

    On a GPU it runs the cuDNN kernel wherever `keras.layers.LSTM` would (`use_cudnn`
    "auto", True or False, as in Keras; see `select_path`), with the same weights; elsewhere
    the fused loop, with the input projection hoisted out of it (see the module docstring).
    `unroll=True` unrolls the loop in Python (static, short sequences only).
    """

    cell_class = LSTMCell

    def __init__(self, units: int, use_cudnn: bool | str = "auto", **kwargs: Any) -> None:
        if use_cudnn not in ("auto", True, False):
            raise ValueError(
                f"`use_cudnn` must be one of 'auto', True or False, got {use_cudnn!r}."
            )
        super().__init__(units, **kwargs)
        self.use_cudnn = use_cudnn
        if use_cudnn in ("auto", True) and self._cudnn_args_ok() and _gpu_available():
            # As keras.layers.LSTM: cuDNN is no XLA op, so the model must not be compiled.
            self.supports_jit = False

    def _cudnn_args_ok(self) -> bool:
        return (
            self.activation is activations.tanh
            and self.recurrent_activation is activations.sigmoid
            and not self.unroll
            and self.use_bias
        )

    def _cudnn_or_loop(self, sequences, initial_state, mask, training) -> tuple:
        """Keras' own cuDNN call where the mask allows it (right-padded, no empty row)."""

        def cudnn() -> tuple:
            inputs = sequences
            if training and self.dropout > 0:
                inputs = inputs * ops.expand_dims(self.cell.get_dropout_mask(inputs[:, 0]), 1)
            last, outputs, states = keras_backend.lstm(
                inputs,
                initial_state[0],
                initial_state[1],
                mask,
                kernel=self.cell.kernel,
                recurrent_kernel=self.cell.recurrent_kernel,
                bias=self.cell.bias,
                activation=self.activation,
                recurrent_activation=self.recurrent_activation,
                return_sequences=self.return_sequences,
                go_backwards=self.go_backwards,
                unroll=self.unroll,
            )
            return _same_layout(self, last, outputs, states)

        def loop() -> tuple:
            return _same_layout(self, *self._loop(sequences, initial_state, mask, training))

        try:
            if mask is None:
                return cudnn()
            return tf.cond(_cudnn_mask_ok(mask), cudnn, loop)
        except NotImplementedError as error:  # no cuDNN kernel after all (as in Keras)
            if self.use_cudnn is True:
                raise ValueError(
                    "use_cudnn=True was specified, but cuDNN is unavailable."
                ) from error
            return self._loop(sequences, initial_state, mask, training)

    def get_config(self) -> dict:
        return {**super().get_config(), "use_cudnn": self.use_cudnn}


def _cudnn_mask_ok(mask: Any) -> Any:
    """Scalar bool tensor: cuDNN can run `mask` (right-padded, every row has a step)."""
    mask = tf.cast(mask, tf.bool)
    right_padded = tf.sequence_mask(
        tf.reduce_sum(tf.cast(mask, tf.int32), axis=1), maxlen=tf.shape(mask)[1]
    )
    return tf.reduce_all(tf.equal(mask, right_padded)) & tf.reduce_all(tf.reduce_any(mask, axis=1))


def _same_layout(layer: _FusedLSTM, last: Any, outputs: Any, states: list) -> tuple:
    """Both branches of `_cudnn_or_loop` in one layout and dtype, as `tf.cond` needs."""
    dtype = layer.compute_dtype
    if not layer.return_sequences:
        outputs = last
    return (
        ops.cast(last, dtype),
        ops.cast(outputs, dtype),
        [ops.cast(s, dtype) for s in states],
    )


@keras.saving.register_keras_serializable(package=PACKAGE)
class PeepholeLSTM(_FusedLSTM):
    """Sequence layer over `PeepholeLSTMCell`; arguments of `LSTM` plus `peephole_initializer`
    (default: `kernel_initializer`, as in TensorFlow Addons)."""

    cell_class = PeepholeLSTMCell
    extra_cell_args = ("peephole_initializer",)

    def __init__(self, units: int, peephole_initializer: Any = None, **kwargs: Any) -> None:
        super().__init__(units, peephole_initializer=peephole_initializer, **kwargs)

    peephole_initializer = _cell_property("peephole_initializer")


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

    norm_gamma_initializer = _cell_property("norm_gamma_initializer")
    norm_beta_initializer = _cell_property("norm_beta_initializer")
    norm_epsilon = _cell_property("norm_epsilon")


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
    h0, c0 = (ops.convert_to_tensor(s) for s in state)
    _, _, _, gates = _run_lstm(
        layer.cell,
        inputs,
        h0,
        c0,
        mask=mask,
        go_backwards=layer.go_backwards,
        collect_gates=True,
    )
    return {k: np.asarray(ops.convert_to_numpy(v), dtype=np.float32) for k, v in gates.items()}
