"""Attention layers for recurrent encoder-decoders and sequence classifiers.

`BahdanauAttention` and `LuongAttention` score encoder outputs against a query,
`AttentionPooling` pools a classifier's state sequence, and `AttentionDecoder`
is the teacher-forced/step-wise decoder that `models.decoding` searches with.

The two query attentions share one contract so decoders can swap them by name:

* ``precompute_keys(values) -> keys`` projects the encoder outputs once per
  sequence; a decoder passes the result to every step instead of re-projecting
  ``[B, T, Dv]`` values at each of its ``L`` steps.
* ``call(query, values, mask=None, keys=None) -> (context, weights)`` with
  ``query [B, Dq]``, ``values [B, T, Dv]``, boolean ``mask [B, T]``,
  ``context [B, Dv]`` and ``weights [B, T]`` that sum to 1 over unmasked steps
  and are exactly 0 on masked ones (all-masked rows give all-zero weights).
"""

from __future__ import annotations

from typing import Any

import keras
import tensorflow as tf
from keras import ops

from models.recurrent import make_cell

_PACKAGE = "lstm_pipelines"


def _positive_int(value: int, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"`{name}` must be a positive integer, got {value!r}.")
    return value


def masked_softmax(scores: Any, mask: Any = None) -> Any:
    """Softmax over the last axis that puts exactly zero weight on masked steps.

    Computed in float32 and cast back, so a half-precision policy still gets weights that sum
    to one. Masked scores are replaced by a large finite negative (not ``-inf``) so
    fully-masked rows do not produce NaNs; the final ``where`` makes the zeros exact.
    """
    dtype = scores.dtype
    scores = ops.cast(scores, "float32")
    if mask is None:
        return ops.cast(ops.softmax(scores, axis=-1), dtype)
    mask = ops.cast(mask, "bool")
    weights = ops.softmax(ops.where(mask, scores, -1e9), axis=-1)
    return ops.cast(ops.where(mask, weights, 0.0), dtype)


class _Attention(keras.layers.Layer):
    """Shared plumbing: masking, context vector, build from query/values shapes."""

    def __init__(self, kernel_initializer="glorot_uniform", **kwargs):
        super().__init__(**kwargs)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        # Accept an explicit mask without Keras' "destroys the mask" warning.
        self.supports_masking = True

    def build(self, query_shape, values_shape, keys_shape=None):
        query_dim, values_dim = query_shape[-1], values_shape[-1]
        if query_dim is None or values_dim is None:
            raise ValueError(
                f"{self.__class__.__name__} needs known feature dims; got "
                f"query_shape={query_shape}, values_shape={values_shape}."
            )
        self._create_weights(int(query_dim), int(values_dim))

    def _create_weights(self, query_dim: int, values_dim: int) -> None:
        raise NotImplementedError

    def _kernel(self, name: str, shape: tuple):
        return self.add_weight(name=name, shape=shape, initializer=self.kernel_initializer)

    def _check_built(self) -> None:
        if not self.built:
            raise ValueError(
                f"{self.__class__.__name__} '{self.name}' is not built: call it once or "
                "`build(query_shape, values_shape)` before `precompute_keys`."
            )

    def precompute_keys(self, values: Any) -> Any:
        """Projects ``values [B, T, Dv]`` into the keys used by the score function."""
        raise NotImplementedError

    def _score(self, query, keys):
        raise NotImplementedError

    def call(self, query, values, mask=None, keys=None):
        if keys is None:
            keys = self.precompute_keys(values)
        weights = masked_softmax(self._score(query, keys), mask)
        context = ops.einsum("bt,btd->bd", weights, values)
        return context, weights

    def compute_mask(self, query, values, mask=None, keys=None):
        return None

    def get_config(self) -> dict:
        config = super().get_config()
        config["kernel_initializer"] = keras.initializers.serialize(self.kernel_initializer)
        return config


class _AdditiveScore:
    """``v^T tanh(q W_q + k W_k)`` with ``k W_k`` precomputed once per sequence."""

    def _create_additive(self, query_dim: int, values_dim: int, units: int) -> None:
        self.query_kernel = self._kernel("query_kernel", (query_dim, units))
        self.key_kernel = self._kernel("key_kernel", (values_dim, units))
        self.score_vector = self._kernel("score_vector", (units,))

    def precompute_keys(self, values):
        self._check_built()
        return ops.matmul(values, self.key_kernel)

    def _additive_score(self, query, keys, score_vector, bias=None):
        hidden = keys + ops.expand_dims(ops.matmul(query, self.query_kernel), 1)
        if bias is not None:
            hidden = hidden + bias
        return ops.sum(ops.tanh(hidden) * score_vector, axis=-1)


@keras.saving.register_keras_serializable(package=_PACKAGE)
class BahdanauAttention(_AdditiveScore, _Attention):
    """Additive attention (Bahdanau et al., 2015): ``score = v^T tanh(W1 q + W2 k)``.

    Args:
        units: Size of the hidden scoring layer.
        normalize: Weight-normalise ``v`` (``g * v / ||v||`` plus a bias inside the
            tanh, Salimans & Kingma 2016), as in TF-Addons; it stabilises training
            of large-``units`` scorers.
        kernel_initializer: Initializer for all kernels.
    """

    def __init__(self, units: int, normalize: bool = False, **kwargs):
        super().__init__(**kwargs)
        self.units = _positive_int(units, "units")
        self.normalize = bool(normalize)

    def _create_weights(self, query_dim: int, values_dim: int) -> None:
        self._create_additive(query_dim, values_dim, self.units)
        if self.normalize:
            self.score_scale = self.add_weight(
                name="score_scale",
                shape=(),
                initializer=keras.initializers.Constant((1.0 / self.units) ** 0.5),
            )
            self.score_bias = self.add_weight(
                name="score_bias", shape=(self.units,), initializer="zeros"
            )

    def _score(self, query, keys):
        if not self.normalize:
            return self._additive_score(query, keys, self.score_vector)
        v = self.score_vector
        v = self.score_scale * v * ops.rsqrt(ops.sum(ops.square(v)))
        return self._additive_score(query, keys, v, self.score_bias)

    def get_config(self) -> dict:
        config = super().get_config()
        config.update(units=self.units, normalize=self.normalize)
        return config


_LUONG_SCORES = ("dot", "general", "concat")


@keras.saving.register_keras_serializable(package=_PACKAGE)
class LuongAttention(_AdditiveScore, _Attention):
    """Multiplicative attention (Luong et al., 2015).

    Scores: ``dot`` = ``q . k`` (needs ``Dq == Dv``, no weights); ``general`` =
    ``q^T W k`` with ``W k`` precomputed; ``concat`` = ``v^T tanh(W [q; k])``,
    which splits into per-query and per-key halves so the key half is also
    precomputed.

    Args:
        score: One of ``"dot"``, ``"general"``, ``"concat"``.
        units: Hidden size of the ``concat`` scorer (required there, unused otherwise).
        kernel_initializer: Initializer for all kernels.
    """

    def __init__(self, score: str = "dot", units: int | None = None, **kwargs):
        super().__init__(**kwargs)
        if score not in _LUONG_SCORES:
            raise ValueError(f"Unknown Luong score {score!r}; expected one of {_LUONG_SCORES}.")
        if units is not None:
            _positive_int(units, "units")
        if score == "concat" and units is None:
            raise ValueError("LuongAttention(score='concat') requires a positive `units`.")
        self.score = score
        self.units = units

    def _create_weights(self, query_dim: int, values_dim: int) -> None:
        if self.score == "dot" and query_dim != values_dim:
            raise ValueError(
                "LuongAttention(score='dot') needs query and values of the same size, got "
                f"query dim {query_dim} and values dim {values_dim}; use score='general' "
                "or 'concat' to project between them."
            )
        if self.score == "general":
            self.kernel = self._kernel("kernel", (values_dim, query_dim))
        elif self.score == "concat":
            self._create_additive(query_dim, values_dim, self.units)

    def precompute_keys(self, values):
        if self.score == "dot":
            return values
        if self.score == "concat":
            return super().precompute_keys(values)
        self._check_built()
        return ops.matmul(values, self.kernel)

    def _score(self, query, keys):
        if self.score == "concat":
            return self._additive_score(query, keys, self.score_vector)
        return ops.einsum("bd,btd->bt", query, keys)

    def get_config(self) -> dict:
        config = super().get_config()
        config.update(score=self.score, units=self.units)
        return config


ATTENTION_NAMES = (
    "bahdanau",
    "bahdanau_normalized",
    "luong",
    "luong_dot",
    "luong_general",
    "luong_concat",
)


def make_attention(kind: str, units: int, **kwargs: Any) -> keras.layers.Layer:
    """Builds an attention layer by name (``"luong"`` is an alias of ``"luong_dot"``).

    ``units`` sizes the additive scorers (Bahdanau, Luong concat); dot and
    general scores take their sizes from the query and values.
    """
    if kind not in ATTENTION_NAMES:
        raise ValueError(f"Unknown attention {kind!r}; expected one of {ATTENTION_NAMES}.")
    if kind.startswith("bahdanau"):
        return BahdanauAttention(units, normalize=kind == "bahdanau_normalized", **kwargs)
    score = "dot" if kind == "luong" else kind.split("_", 1)[1]
    return LuongAttention(score, units=units if score == "concat" else None, **kwargs)


@keras.saving.register_keras_serializable(package=_PACKAGE)
class AttentionPooling(keras.layers.Layer):
    """Learned attention pooling of a state sequence into one vector for classifiers.

    ``score_t = v^T tanh(W h_t + b)``; ``pooled = sum_t softmax(score)_t h_t``.
    Unlike last-state or mean pooling it lets the classifier pick the informative
    steps, and the weights double as an explanation. Consumes the Keras mask
    (e.g. from ``Embedding(mask_zero=True)`` through a Bidirectional RNN) and
    stops it, since the output has no time axis.

    Returns ``(pooled [B, D], weights [B, T])``.
    """

    def __init__(self, units: int, kernel_initializer="glorot_uniform", **kwargs):
        super().__init__(**kwargs)
        self.units = _positive_int(units, "units")
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.supports_masking = True

    def build(self, sequence_shape):
        dim = sequence_shape[-1]
        if dim is None:
            raise ValueError(f"AttentionPooling needs a known feature dim, got {sequence_shape}.")
        self.kernel = self.add_weight(
            name="kernel", shape=(int(dim), self.units), initializer=self.kernel_initializer
        )
        self.bias = self.add_weight(name="bias", shape=(self.units,), initializer="zeros")
        self.score_vector = self.add_weight(
            name="score_vector", shape=(self.units,), initializer=self.kernel_initializer
        )

    def call(self, sequence, mask=None):
        hidden = ops.tanh(ops.matmul(sequence, self.kernel) + self.bias)
        weights = masked_softmax(ops.sum(hidden * self.score_vector, axis=-1), mask)
        return ops.einsum("bt,btd->bd", weights, sequence), weights

    def compute_mask(self, sequence, mask=None):
        return None

    def get_config(self) -> dict:
        config = super().get_config()
        config.update(
            units=self.units,
            kernel_initializer=keras.initializers.serialize(self.kernel_initializer),
        )
        return config


def _state_sizes(cell: keras.layers.Layer) -> list[int]:
    size = cell.state_size
    return [int(s) for s in size] if isinstance(size, (list, tuple)) else [int(size)]


@keras.saving.register_keras_serializable(package=_PACKAGE)
class AttentionDecoder(keras.layers.Layer):
    """Recurrent decoder with attention over encoder outputs (Bahdanau et al., 2015).

    Formulation, at target step ``t`` with previous cell state ``s_{t-1}`` (whose
    first tensor, ``h_{t-1}``, is the attention query)::

        a_t, w_t = attention(h_{t-1}, encoder_outputs)       # context, weights
        h_t, s_t = cell([embed(y_{t-1}); a_t], s_{t-1})
        logits_t = W_o [h_t; a_t] + b_o

    The context enters the cell (so alignment informs the recurrence) and the
    output layer. The attention mechanism (additive or multiplicative score) is
    chosen by name; the formulation is the same for all of them. Because the
    context depends only on the previous state, the decoder state is just the
    cell state, so an encoder's final states can seed it directly.

    During teacher forcing the embeddings are looked up, the attention keys
    projected and the output layer applied for all steps outside the loop; only
    attention + cell run inside a ``tf.while_loop`` (XLA-compilable).

    Args:
        vocab_size: Target vocabulary size (logits dimension).
        embedding_dim: Target embedding size.
        units: Cell size; also the attention query size.
        cell: Cell name for `models.recurrent.make_cell` (``lstm``, ``peephole``,
            ``layernorm``, ``gru``, ``keras``).
        attention: Name for `models.attention.make_attention` (``bahdanau``,
            ``bahdanau_normalized``, ``luong``/``luong_dot``, ``luong_general``,
            ``luong_concat``). ``luong_dot`` needs ``units`` == encoder output size.
        attention_units: Hidden size of additive scorers; defaults to ``units``.
        dropout: Rate applied to the embeddings and to ``[h_t; a_t]`` (outside the
            loop; per-step cell dropout is not supported, as its masks cannot be
            carried through the while loop).
        cell_kwargs: Extra keyword arguments for the cell.
    """

    def __init__(
        self,
        vocab_size: int,
        embedding_dim: int,
        units: int,
        cell: str = "lstm",
        attention: str = "bahdanau",
        attention_units: int | None = None,
        dropout: float = 0.0,
        cell_kwargs: dict | None = None,
        **kwargs: Any,
    ):
        super().__init__(**kwargs)
        self.vocab_size = _positive_int(vocab_size, "vocab_size")
        self.embedding_dim = _positive_int(embedding_dim, "embedding_dim")
        self.units = _positive_int(units, "units")
        self.attention_units = _positive_int(attention_units or units, "attention_units")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"`dropout` must be in [0, 1), got {dropout}.")
        self.cell_kwargs = dict(cell_kwargs or {})
        if {"dropout", "recurrent_dropout"} & self.cell_kwargs.keys():
            raise ValueError(
                "Cell dropout is not supported inside the decoder loop; use `dropout`."
            )
        self.cell_name = cell
        self.attention_name = attention
        self.dropout = float(dropout)
        self.embedding = keras.layers.Embedding(vocab_size, embedding_dim, name="embedding")
        self.attention = make_attention(attention, self.attention_units, name="attention")
        self.cell = make_cell(cell, units, name="cell", **self.cell_kwargs)
        self.output_dense = keras.layers.Dense(vocab_size, name="output_dense")
        self.embedding_dropout = keras.layers.Dropout(dropout)
        self.output_dropout = keras.layers.Dropout(dropout)
        self.supports_masking = True

    def build(self, inputs_shape, initial_state_shape=None):
        encoder_dim = inputs_shape[1][-1]
        if encoder_dim is None:
            raise ValueError(f"Encoder outputs need a known feature dim, got {inputs_shape}.")
        encoder_dim = int(encoder_dim)
        self.embedding.build((None, None))
        self.attention.build((None, self.units), (None, None, encoder_dim))
        self.cell.build((None, self.embedding_dim + encoder_dim))
        self.output_dense.build((None, None, self.units + encoder_dim))

    def _ensure_built(self, encoder_outputs) -> None:
        if not self.built:
            self.build(((None, None), tuple(encoder_outputs.shape)))

    def precompute_keys(self, encoder_outputs: Any) -> Any:
        """Attention keys for ``encoder_outputs``; compute once per source sequence."""
        self._ensure_built(encoder_outputs)
        return self.attention.precompute_keys(encoder_outputs)

    def initial_decoder_state(self, encoder_outputs: Any, initial_state: Any = None) -> list:
        """Starting decoder state: ``initial_state`` (e.g. encoder final states) or zeros."""
        sizes = _state_sizes(self.cell)
        if initial_state is None:
            batch = ops.shape(encoder_outputs)[0]
            return [ops.zeros((batch, size), dtype=self.compute_dtype) for size in sizes]
        state = list(initial_state) if isinstance(initial_state, (list, tuple)) else [initial_state]
        if len(state) != len(sizes):
            raise ValueError(
                f"Cell '{self.cell_name}' has {len(sizes)} state tensor(s) of sizes {sizes}, "
                f"got {len(state)} initial state tensor(s)."
            )
        return [ops.cast(s, self.compute_dtype) for s in state]

    def _recur(self, embedded, state, encoder_outputs, encoder_mask, keys, training):
        context, weights = self.attention(state[0], encoder_outputs, mask=encoder_mask, keys=keys)
        cell_input = ops.concatenate([embedded, ops.cast(context, embedded.dtype)], axis=-1)
        output, new_state = self.cell(cell_input, state, training=training)
        new_state = list(new_state) if isinstance(new_state, (list, tuple)) else [new_state]
        return output, context, weights, new_state

    def _logits(self, output, context, training=None):
        features = ops.concatenate([output, ops.cast(context, output.dtype)], axis=-1)
        return self.output_dense(self.output_dropout(features, training=training))

    def step(
        self,
        token: Any,
        state: list,
        encoder_outputs: Any,
        encoder_mask: Any = None,
        keys: Any = None,
    ) -> tuple[Any, list, Any]:
        """One inference step: ``token [B]`` -> ``(logits [B, V], new_state, weights [B, S])``."""
        if keys is None:
            keys = self.precompute_keys(encoder_outputs)
        embedded = self.embedding(token)
        output, context, weights, new_state = self._recur(
            embedded, list(state), encoder_outputs, encoder_mask, keys, training=False
        )
        return self._logits(output, context, training=False), new_state, weights

    def call(
        self,
        inputs,
        encoder_mask=None,
        initial_state=None,
        training=None,
        return_attention=False,
    ):
        """Teacher-forced decoding.

        Args:
            inputs: ``(target_tokens_in [B, T] int, encoder_outputs [B, S, De])``.
            encoder_mask: Optional bool ``[B, S]``, True on real source steps.
            initial_state: Optional list of cell-state tensors (e.g. encoder finals).
            return_attention: Also return alignment weights ``[B, T, S]``.

        Returns:
            ``logits [B, T, V]``, or ``(logits, weights)`` with ``return_attention``.
        """
        tokens, encoder_outputs = inputs
        keys = self.attention.precompute_keys(encoder_outputs)
        state = self.initial_decoder_state(encoder_outputs, initial_state)
        embedded = self.embedding_dropout(self.embedding(tokens), training=training)
        steps = tf.shape(tokens)[1]
        time_major = tf.TensorArray(embedded.dtype, size=steps).unstack(
            tf.transpose(embedded, [1, 0, 2])
        )

        def body(t, state, outputs, contexts, alignments):
            output, context, weights, state = self._recur(
                time_major.read(t), state, encoder_outputs, encoder_mask, keys, training
            )
            return (
                t + 1,
                state,
                outputs.write(t, output),
                contexts.write(t, context),
                alignments.write(t, weights),
            )

        def array():
            return tf.TensorArray(self.compute_dtype, size=steps)

        _, _, outputs, contexts, alignments = tf.while_loop(
            lambda t, *_: t < steps,
            body,
            (tf.constant(0), state, array(), array(), array()),
            maximum_iterations=steps,  # XLA needs the bound to size the gradient accumulators.
        )

        def batch_major(array):
            return tf.transpose(array.stack(), [1, 0, 2])

        logits = self._logits(batch_major(outputs), batch_major(contexts), training=training)
        if return_attention:
            return logits, batch_major(alignments)
        return logits

    def attention_weights(
        self, inputs: tuple, encoder_mask: Any = None, initial_state: Any = None
    ) -> Any:
        """Teacher-forced alignment ``[B, T, S]`` for plotting."""
        _, weights = self(
            inputs, encoder_mask=encoder_mask, initial_state=initial_state, return_attention=True
        )
        return weights

    def compute_mask(self, inputs, mask=None):
        return None

    def get_config(self) -> dict:
        config = super().get_config()
        config.update(
            vocab_size=self.vocab_size,
            embedding_dim=self.embedding_dim,
            units=self.units,
            cell=self.cell_name,
            attention=self.attention_name,
            attention_units=self.attention_units,
            dropout=self.dropout,
            cell_kwargs=self.cell_kwargs,
        )
        return config
