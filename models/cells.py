"""Single-step LSTM cells: plain, peephole (Gers & Schmidhuber 2000), layer-norm (Ba et al. 2016).

Every cell works on its own inside `keras.layers.RNN` (decoders step them one token at a
time) and also exposes its maths in two halves so the fused sequence layers in
`models.recurrent` can reuse it without duplicating equations:

* `project_inputs(x)`: everything that depends only on the input, so a sequence layer
  can compute it for all time steps with one matmul;
* `step(z_x, h_rec, c_tm1, weights)`: the recurrent part, one fused `[H, 4H]` matmul
  followed by `update(...)`, the element-wise rest of the step;
* `update_for_grad(...)` and `update_grad(...)`: `update` plus what the layers'
  hand-written BPTT stores per step, and the backward pass of `update` from it.

The gate order is i, f, c, o and the weight layout matches `keras.layers.LSTMCell`.
"""

from __future__ import annotations

from typing import Any

import keras
import tensorflow as tf
from keras import activations, constraints, initializers, ops, regularizers
from keras.src.backend import AutocastScope
from keras.src.layers.rnn.dropout_rnn_cell import DropoutRNNCell

PACKAGE = "lstm_pipelines"

_LOW_PRECISION = ("float16", "bfloat16")


def state_dtype(compute_dtype: str) -> str:
    """Dtype for the cell state and gate maths: float32 when the policy is half precision.

    The cell state is a long running sum; accumulating it in bfloat16 drifts quickly.
    """
    return "float32" if compute_dtype in _LOW_PRECISION else compute_dtype


def read_variable(variable: keras.Variable, dtype: str) -> Any:
    """Reads `variable` at full precision (bypassing mixed-precision autocast), then casts."""
    with AutocastScope(None):
        return ops.cast(variable.value, dtype)


def standardise(x: Any, epsilon: float) -> tuple:
    """`(x_hat, rstd)` over the last axis; the layer-norm backward pass reuses both."""
    centred = x - ops.mean(x, axis=-1, keepdims=True)
    rstd = ops.rsqrt(ops.mean(ops.square(centred), axis=-1, keepdims=True) + epsilon)
    return centred * rstd, rstd


def standardise_grad(d_x_hat: Any, x_hat: Any, rstd: Any) -> Any:
    """Back-propagates through `standardise`: the gradient w.r.t. its input `x`."""
    mean_d = ops.mean(d_x_hat, axis=-1, keepdims=True)
    mean_dx = ops.mean(d_x_hat * x_hat, axis=-1, keepdims=True)
    return rstd * (d_x_hat - mean_d - x_hat * mean_dx)


def gate_preactivations(z_x: Any, z_h: Any) -> tuple:
    """Sums input and recurrent contributions, split into the (i, f, c, o) gates.

    `z_x` is either one `[B, 4H]` tensor or a tuple of four `[B, H]` tensors; the fused
    layers pass the tuple under XLA, where slicing gates out of a row read from the
    projected sequence is several times slower than reading four contiguous buffers.
    """
    if isinstance(z_x, (tuple, list)):
        return tuple(a + b for a, b in zip(z_x, ops.split(z_h, 4, axis=-1)))
    return tuple(ops.split(z_x + z_h, 4, axis=-1))


def _additive_grads(z_x: Any, d_z: tuple) -> tuple:
    """`(d_z_x, d_z_h)` from per-gate gradients when `z = z_x + z_h` (plain and peephole)."""
    d_z_h = ops.concatenate(d_z, axis=-1)
    return (d_z if isinstance(z_x, (tuple, list)) else d_z_h), d_z_h


# The hand-written gradients below use the fused SigmoidGrad/TanhGrad kernels on the
# activated gates: the op count is what a CPU time loop pays for.


def _output_grads(o: Any, tanh_c: Any, d_h: Any, d_c: Any) -> tuple:
    """`(d_z_o, d_c)` for `h = o * tanh_c`: `d_c` gains the path through `h`."""
    d_z_o = tf.raw_ops.SigmoidGrad(y=o, dy=d_h * tanh_c)
    return d_z_o, d_c + tf.raw_ops.TanhGrad(y=tanh_c, dy=d_h * o)


def _gates_grad(gates: tuple, c_tm1: Any, d_c: Any, d_z_o: Any) -> tuple:
    """Per-gate pre-activation gradients of `c = f * c_tm1 + i * g` given `d_c` and `d_z_o`."""
    i, f, g, _ = gates
    return (
        tf.raw_ops.SigmoidGrad(y=i, dy=d_c * g),
        tf.raw_ops.SigmoidGrad(y=f, dy=d_c * c_tm1),
        tf.raw_ops.TanhGrad(y=g, dy=d_c * i),
        d_z_o,
    )


def _batch_sums(*grads: Any) -> tuple:
    """Per-example weight gradients summed over the batch axis."""
    return tuple(ops.sum(g, axis=0) for g in grads)


def tape_update_grad(
    cell: Any, z_x: Any, z_h: Any, c_tm1: Any, extra: tuple, d_h: Any, d_c: Any
) -> tuple:
    """Generic `update_grad` by recomputing `cell.update` under a gradient tape."""
    z_list = list(z_x) if isinstance(z_x, (tuple, list)) else [z_x]
    sources = [*z_list, z_h, c_tm1, *extra]
    with tf.GradientTape() as tape:
        tape.watch(sources)
        h, c, _ = cell.update(tuple(z_list) if len(z_list) == 4 else z_list[0], z_h, c_tm1, extra)
    grads = tape.gradient(
        [h, c],
        sources,
        output_gradients=[d_h, d_c],
        unconnected_gradients=tf.UnconnectedGradients.ZERO,
    )
    n = len(z_list)
    d_z_x = tuple(grads[:n]) if n == 4 else grads[0]
    return d_z_x, grads[n], grads[n + 1], tuple(grads[n + 2 :])


def _check_rate(name: str, value: float) -> float:
    if not 0.0 <= value < 1.0:
        raise ValueError(f"`{name}` must be in [0, 1), got {name}={value}.")
    return float(value)


@keras.saving.register_keras_serializable(package=PACKAGE)
class LSTMCell(keras.layers.Layer, DropoutRNNCell):
    """LSTM cell with the weight layout of `keras.layers.LSTMCell` (gates i, f, c, o).

    Args mirror `keras.layers.LSTMCell`; `dropout`/`recurrent_dropout` must be in [0, 1).
    One dropout mask is drawn per sequence for the inputs and one for `h` (Gal & Ghahramani).
    `implementation` (1 or 2) is accepted as Keras does: both modes compute the same
    function, and this cell always runs mode 2's one fused matmul (mode 1's four smaller
    matmuls per step only helped old hardware).
    """

    # z = z_x + z_h feeds the gates directly (the layer-norm cell normalises z_h first).
    additive_recurrence = True

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
        kernel_constraint: Any = None,
        recurrent_constraint: Any = None,
        bias_constraint: Any = None,
        dropout: float = 0.0,
        recurrent_dropout: float = 0.0,
        seed: int | None = None,
        implementation: int = 2,
        **kwargs: Any,
    ) -> None:
        if isinstance(units, bool) or not isinstance(units, int) or units <= 0:
            raise ValueError(f"`units` must be a positive integer, got units={units!r}.")
        if implementation not in (1, 2):
            raise ValueError(f"`implementation` must be 1 or 2, got {implementation!r}.")
        super().__init__(**kwargs)
        self.implementation = implementation
        self.units = units
        self.activation = activations.get(activation)
        self.recurrent_activation = activations.get(recurrent_activation)
        self.use_bias = use_bias
        self.unit_forget_bias = unit_forget_bias
        self.kernel_initializer = initializers.get(kernel_initializer)
        self.recurrent_initializer = initializers.get(recurrent_initializer)
        self.bias_initializer = initializers.get(bias_initializer)
        self.kernel_regularizer = regularizers.get(kernel_regularizer)
        self.recurrent_regularizer = regularizers.get(recurrent_regularizer)
        self.bias_regularizer = regularizers.get(bias_regularizer)
        self.kernel_constraint = constraints.get(kernel_constraint)
        self.recurrent_constraint = constraints.get(recurrent_constraint)
        self.bias_constraint = constraints.get(bias_constraint)
        self.dropout = _check_rate("dropout", dropout)
        self.recurrent_dropout = _check_rate("recurrent_dropout", recurrent_dropout)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed=seed)
        self.state_size = [units, units]
        self.output_size = units

    def build(self, input_shape: tuple) -> None:
        input_dim = input_shape[-1]
        self.kernel = self.add_weight(
            shape=(input_dim, 4 * self.units),
            name="kernel",
            initializer=self.kernel_initializer,
            regularizer=self.kernel_regularizer,
            constraint=self.kernel_constraint,
        )
        self.recurrent_kernel = self.add_weight(
            shape=(self.units, 4 * self.units),
            name="recurrent_kernel",
            initializer=self.recurrent_initializer,
            regularizer=self.recurrent_regularizer,
            constraint=self.recurrent_constraint,
        )
        if self.use_bias:
            self.bias = self.add_weight(
                shape=(4 * self.units,),
                name="bias",
                initializer=self._bias_initializer_fn(),
                regularizer=self.bias_regularizer,
                constraint=self.bias_constraint,
            )
        else:
            self.bias = None
        self._build_extra_weights()

    def _bias_initializer_fn(self) -> Any:
        if not self.unit_forget_bias:
            return self.bias_initializer

        def initializer(_: Any, *args: Any, **kwargs: Any) -> Any:
            units = self.units
            return ops.concatenate(
                [
                    self.bias_initializer((units,), *args, **kwargs),
                    initializers.get("ones")((units,), *args, **kwargs),
                    self.bias_initializer((2 * units,), *args, **kwargs),
                ]
            )

        return initializer

    def _build_extra_weights(self) -> None:
        """Hook for subclasses that add weights after kernel/recurrent_kernel/bias."""

    def project_inputs(self, inputs: Any) -> Any:
        """Input contribution to the gate pre-activations, `[..., D] -> [..., 4H]`."""
        z = ops.matmul(inputs, self.kernel)
        if self.use_bias:
            z = z + self.bias
        return z

    def step_weights(self, dtype: str) -> tuple:
        """Weights used inside the time loop, read once before the loop starts."""
        return (read_variable(self.recurrent_kernel, dtype),)

    def step(self, z_x: Any, h_rec: Any, c_tm1: Any, weights: tuple) -> tuple:
        """One recurrent step. Returns `(h, c, (i, f, g, o))`; `h_rec` is h[t-1] after dropout.

        `z_x` comes from `project_inputs`, whole or split per gate (see `gate_preactivations`).
        """
        recurrent_kernel, *extra = weights
        return self.update(z_x, ops.matmul(h_rec, recurrent_kernel), c_tm1, tuple(extra))

    def update(self, z_x: Any, z_h: Any, c_tm1: Any, extra: tuple) -> tuple:
        """The step after its only matmul (`z_h = h_rec @ recurrent_kernel`).

        Kept separate so the fused layers' backward pass can recompute it cheaply and
        batch the recurrent-kernel gradient into one matmul over all steps. `extra` is
        `step_weights()[1:]`. The gates are the post-activation (i, f, g, o).
        """
        z_i, z_f, z_c, z_o = gate_preactivations(z_x, z_h)
        i = self.recurrent_activation(z_i)
        f = self.recurrent_activation(z_f)
        g = self.activation(z_c)
        c = f * c_tm1 + i * g
        o = self.recurrent_activation(z_o)
        return o * self.activation(c), c, (i, f, g, o)

    def update_for_grad(self, z_x: Any, z_h: Any, c_tm1: Any, extra: tuple) -> tuple:
        """`update`, returning `(h, c, saved)`: what the BPTT loop stores for `update_grad`.

        With tanh/sigmoid the four activated gates (separate buffers: under XLA, slicing
        gates out of one row costs more than reading contiguous ones), so the backward
        step needs no activation but tanh(c); otherwise `z_h`, to recompute `update`.
        """
        h, c, gates = self.update(z_x, z_h, c_tm1, extra)
        return h, c, gates if self._standard_activations() else (z_h,)

    @property
    def saved_count(self) -> int:
        """`len(saved)` of `update_for_grad`, for allocating the stores before the loop."""
        return 4 if self._standard_activations() else 1

    def update_grad(
        self, z_x: Any, saved: Any, c_tm1: Any, c: Any, extra: tuple, d_h: Any, d_c: Any
    ) -> tuple:
        """Back-propagates `d_h`, `d_c` through `update`: `(d_z_x, d_z_h, d_c_tm1, d_extra)`.

        `saved` comes from `update_for_grad`, `c` is the step's new cell state. Hand-derived
        for tanh/sigmoid: a fraction of the ops autodiff would emit, which is what the
        per-step cost of a CPU time loop is made of.
        """
        if not self._standard_activations():
            return tape_update_grad(self, z_x, saved[0], c_tm1, extra, d_h, d_c)
        gates = saved
        d_z_o, d_c = _output_grads(gates[3], ops.tanh(c), d_h, d_c)
        d_z = _gates_grad(gates, c_tm1, d_c, d_z_o)
        return (*_additive_grads(z_x, d_z), d_c * gates[1], ())

    def _standard_activations(self) -> bool:
        return self.activation is activations.tanh and (
            self.recurrent_activation is activations.sigmoid
        )

    def call(self, inputs: Any, states: list, training: bool = False) -> tuple:
        h_tm1, c_tm1 = states
        if training and self.dropout > 0:
            inputs = inputs * self.get_dropout_mask(inputs)
        h_rec = h_tm1
        if training and self.recurrent_dropout > 0:
            h_rec = h_tm1 * self.get_recurrent_dropout_mask(h_tm1)
        dtype = state_dtype(self.compute_dtype)
        z_x = ops.cast(self.project_inputs(inputs), dtype)
        h, c, _ = self.step(
            z_x, ops.cast(h_rec, dtype), ops.cast(c_tm1, dtype), self.step_weights(dtype)
        )
        h = ops.cast(h, self.compute_dtype)
        c = ops.cast(c, self.compute_dtype)
        return h, [h, c]

    def get_initial_state(self, batch_size: int | None = None) -> list:
        return [ops.zeros((batch_size, d), dtype=self.compute_dtype) for d in self.state_size]

    def get_config(self) -> dict:
        config = {
            "units": self.units,
            "activation": activations.serialize(self.activation),
            "recurrent_activation": activations.serialize(self.recurrent_activation),
            "use_bias": self.use_bias,
            "unit_forget_bias": self.unit_forget_bias,
            "kernel_initializer": initializers.serialize(self.kernel_initializer),
            "recurrent_initializer": initializers.serialize(self.recurrent_initializer),
            "bias_initializer": initializers.serialize(self.bias_initializer),
            "kernel_regularizer": regularizers.serialize(self.kernel_regularizer),
            "recurrent_regularizer": regularizers.serialize(self.recurrent_regularizer),
            "bias_regularizer": regularizers.serialize(self.bias_regularizer),
            "kernel_constraint": constraints.serialize(self.kernel_constraint),
            "recurrent_constraint": constraints.serialize(self.recurrent_constraint),
            "bias_constraint": constraints.serialize(self.bias_constraint),
            "dropout": self.dropout,
            "recurrent_dropout": self.recurrent_dropout,
            "seed": self.seed,
            "implementation": self.implementation,
        }
        return {**super().get_config(), **config}


@keras.saving.register_keras_serializable(package=PACKAGE)
class PeepholeLSTMCell(LSTMCell):
    """LSTM cell with diagonal peephole connections (Gers & Schmidhuber 2000).

    Peepholes let the gates see the cell state, which helps with precise timing: the input
    and forget gates see c[t-1], the output gate sees the new c[t].

    Args: those of `LSTMCell`, plus `peephole_initializer` for the three `[units]` vectors;
    by default (None) they are drawn from `kernel_initializer`, as TensorFlow Addons'
    `PeepholeLSTMCell` did, so its numbers carry over.
    """

    def __init__(self, units: int, peephole_initializer: Any = None, **kwargs: Any) -> None:
        super().__init__(units, **kwargs)
        self.peephole_initializer = (
            None if peephole_initializer is None else initializers.get(peephole_initializer)
        )

    def _build_extra_weights(self) -> None:
        for gate in ("input", "forget", "output"):
            weight = self.add_weight(
                shape=(self.units,),
                name=f"{gate}_gate_peephole_weights",
                initializer=(
                    self.kernel_initializer
                    if self.peephole_initializer is None
                    else self.peephole_initializer
                ),
            )
            setattr(self, f"{gate}_gate_peephole_weights", weight)

    def step_weights(self, dtype: str) -> tuple:
        return super().step_weights(dtype) + tuple(
            read_variable(w, dtype)
            for w in (
                self.input_gate_peephole_weights,
                self.forget_gate_peephole_weights,
                self.output_gate_peephole_weights,
            )
        )

    def update(self, z_x: Any, z_h: Any, c_tm1: Any, extra: tuple) -> tuple:
        w_i, w_f, w_o = extra
        z_i, z_f, z_c, z_o = gate_preactivations(z_x, z_h)
        i = self.recurrent_activation(z_i + w_i * c_tm1)
        f = self.recurrent_activation(z_f + w_f * c_tm1)
        g = self.activation(z_c)
        c = f * c_tm1 + i * g
        o = self.recurrent_activation(z_o + w_o * c)
        return o * self.activation(c), c, (i, f, g, o)

    def update_grad(
        self, z_x: Any, saved: Any, c_tm1: Any, c: Any, extra: tuple, d_h: Any, d_c: Any
    ) -> tuple:
        if not self._standard_activations():
            return tape_update_grad(self, z_x, saved[0], c_tm1, extra, d_h, d_c)
        w_i, w_f, w_o = extra
        gates = saved
        d_zo, d_c = _output_grads(gates[3], ops.tanh(c), d_h, d_c)
        d_c = d_c + d_zo * w_o  # the output gate also sees c[t]
        d_z = _gates_grad(gates, c_tm1, d_c, d_zo)
        d_zi, d_zf = d_z[:2]
        d_c_tm1 = d_c * gates[1] + d_zi * w_i + d_zf * w_f
        d_extra = _batch_sums(d_zi * c_tm1, d_zf * c_tm1, d_zo * c)
        return (*_additive_grads(z_x, d_z), d_c_tm1, d_extra)

    def get_config(self) -> dict:
        return {
            **super().get_config(),
            "peephole_initializer": (
                None
                if self.peephole_initializer is None
                else initializers.serialize(self.peephole_initializer)
            ),
        }


@keras.saving.register_keras_serializable(package=PACKAGE)
class LayerNormLSTMCell(LSTMCell):
    """LSTM cell with layer normalisation, matching TensorFlow Addons' `LayerNormLSTMCell`.

    As in TFA, `x @ kernel` and `h @ recurrent_kernel` are each normalised over all 4H gate
    pre-activations (own gamma/beta of shape [4H]), summed, then the bias is added; the new
    cell state is normalised (gamma/beta of shape [H]) and that normalised state is both the
    carried `c` and the input of the output activation. Normalising `x @ kernel` separately
    is what lets the sequence layer hoist it out of the time loop.

    Args: those of `LSTMCell`, plus `norm_gamma_initializer`, `norm_beta_initializer` and
    `norm_epsilon` (1e-3, the TFA default).

    One departure from TFA: biases start at small random values (`bias_initializer` default
    `RandomNormal(stddev=0.1)`, forget bias +1 on top), not zeros. With zero biases, an input
    sequence that is all zeros (a dropped single feature, zero padding) gives every unit the
    same state, the norms sit at zero variance where their Jacobian is 1/sqrt(epsilon) per
    step, and the first updates overflow the gradient to NaN; distinct biases avoid that point.
    """

    _NORMS = (("kernel_norm", 4), ("recurrent_norm", 4), ("state_norm", 1))
    additive_recurrence = False

    def __init__(
        self,
        units: int,
        norm_gamma_initializer: Any = "ones",
        norm_beta_initializer: Any = "zeros",
        norm_epsilon: float = 1e-3,
        bias_initializer: Any = None,
        **kwargs: Any,
    ) -> None:
        if bias_initializer is None:
            bias_initializer = initializers.RandomNormal(stddev=0.1)
        super().__init__(units, bias_initializer=bias_initializer, **kwargs)
        self.norm_gamma_initializer = initializers.get(norm_gamma_initializer)
        self.norm_beta_initializer = initializers.get(norm_beta_initializer)
        self.norm_epsilon = norm_epsilon

    def _build_extra_weights(self) -> None:
        for name, width in self._NORMS:
            for param, initializer in (
                ("gamma", self.norm_gamma_initializer),
                ("beta", self.norm_beta_initializer),
            ):
                weight = self.add_weight(
                    shape=(width * self.units,),
                    name=f"{name}_{param}",
                    initializer=initializer,
                )
                setattr(self, f"{name}_{param}", weight)

    def project_inputs(self, inputs: Any) -> Any:
        """`layer_norm(x @ kernel) + bias`, in float32 (or wider) under any policy.

        For a whole sequence (`[..., T, D]`, what the fused layers project before their loop)
        the `[..., 4H]` product is never normalised as such: centring each kernel row over
        its 4H outputs centres `x @ kernel` for any x, and the mean square of that is the
        quadratic form `x @ gram @ x` with the `[D, D]` matrix `gram = centred @ centred.T
        / 4H`, so the scale comes from the inputs. The product, the largest tensor of the
        layer, is then written and read once each way instead of in five or six passes (a
        train step 1.6x -> 1.4x our `LSTM`'s, see docs/layers.md). One step (`[B, D]`, as
        `keras.layers.RNN` and the decoders call it) normalises directly: `gram` would cost a
        matmul per step there.
        """
        dtype = state_dtype(self.compute_dtype)
        x = ops.cast(inputs, dtype)
        kernel = read_variable(self.kernel, dtype)
        gamma = read_variable(self.kernel_norm_gamma, dtype)
        beta = read_variable(self.kernel_norm_beta, dtype)
        if len(x.shape) < 3:
            z = standardise(ops.matmul(x, kernel), self.norm_epsilon)[0] * gamma + beta
        else:
            centred = kernel - ops.mean(kernel, axis=-1, keepdims=True)
            gram = ops.matmul(centred, ops.transpose(centred)) / centred.shape[-1]
            mean_square = ops.sum(ops.matmul(x, gram) * x, axis=-1, keepdims=True)
            rstd = ops.rsqrt(ops.maximum(mean_square, 0.0) + self.norm_epsilon)
            z = ops.matmul(x, centred * gamma) * rstd + beta
        if self.use_bias:
            z = z + read_variable(self.bias, dtype)
        return z

    def step_weights(self, dtype: str) -> tuple:
        return super().step_weights(dtype) + tuple(
            read_variable(w, dtype)
            for w in (
                self.recurrent_norm_gamma,
                self.recurrent_norm_beta,
                self.state_norm_gamma,
                self.state_norm_beta,
            )
        )

    def update(self, z_x: Any, z_h: Any, c_tm1: Any, extra: tuple) -> tuple:
        h, c, gates, _ = self._update_parts(z_x, z_h, c_tm1, extra)
        return h, c, gates

    def _update_parts(self, z_x: Any, z_h: Any, c_tm1: Any, extra: tuple) -> tuple:
        """`update` plus the standardised tensors and their rstd, for `update_for_grad`."""
        r_gamma, r_beta, s_gamma, s_beta = extra
        zh_hat, zh_rstd = standardise(z_h, self.norm_epsilon)
        z_i, z_f, z_c, z_o = gate_preactivations(z_x, zh_hat * r_gamma + r_beta)
        i = self.recurrent_activation(z_i)
        f = self.recurrent_activation(z_f)
        g = self.activation(z_c)
        c_hat, c_rstd = standardise(f * c_tm1 + i * g, self.norm_epsilon)
        c = c_hat * s_gamma + s_beta
        o = self.recurrent_activation(z_o)
        return o * self.activation(c), c, (i, f, g, o), (zh_hat, zh_rstd, c_hat, c_rstd)

    def update_for_grad(self, z_x: Any, z_h: Any, c_tm1: Any, extra: tuple) -> tuple:
        # Storing the standardised tensors beats recomputing both norms in the backward loop.
        if not self._standard_activations():
            return super().update_for_grad(z_x, z_h, c_tm1, extra)
        h, c, gates, norms = self._update_parts(z_x, z_h, c_tm1, extra)
        return h, c, (*gates, *norms)

    @property
    def saved_count(self) -> int:
        return 8 if self._standard_activations() else 1

    def update_grad(
        self, z_x: Any, saved: Any, c_tm1: Any, c: Any, extra: tuple, d_h: Any, d_c: Any
    ) -> tuple:
        if not self._standard_activations():
            return tape_update_grad(self, z_x, saved[0], c_tm1, extra, d_h, d_c)
        r_gamma, _, s_gamma, _ = extra
        gates, (zh_hat, zh_rstd, c_hat, c_rstd) = saved[:4], saved[4:]
        # d_c is w.r.t. the normalised state; the gate maths sees the state before the norm.
        d_zo, d_c_norm = _output_grads(gates[3], ops.tanh(c), d_h, d_c)
        d_c_raw = standardise_grad(d_c_norm * s_gamma, c_hat, c_rstd)
        d_z_x, d_z = _additive_grads(z_x, _gates_grad(gates, c_tm1, d_c_raw, d_zo))
        d_z_h = standardise_grad(d_z * r_gamma, zh_hat, zh_rstd)
        d_extra = _batch_sums(d_z * zh_hat, d_z, d_c_norm * c_hat, d_c_norm)
        return d_z_x, d_z_h, d_c_raw * gates[1], d_extra

    def get_config(self) -> dict:
        return {
            **super().get_config(),
            "norm_gamma_initializer": initializers.serialize(self.norm_gamma_initializer),
            "norm_beta_initializer": initializers.serialize(self.norm_beta_initializer),
            "norm_epsilon": self.norm_epsilon,
        }
