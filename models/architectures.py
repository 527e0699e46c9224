"""Small architectures the pipelines share, built from the recurrent layers by cell name.

Inputs are raw feature values: a ``Normalization`` layer adapted on the training part comes
first, so a logged model needs no separate scaler (its outputs are in normalised units).
"""

from __future__ import annotations

from typing import Any

import keras
import numpy as np

from models.attention import AttentionDecoder, AttentionPooling
from models.recurrent import make_recurrent_layer


def recurrent_stack(
    x: Any,
    cell: str,
    units: int,
    layers: int,
    dropout: float = 0.0,
    recurrent_dropout: float = 0.0,
    return_sequences: bool = True,
    name: str = "recurrent",
) -> Any:
    """``layers`` stacked recurrent layers; only the last may drop the time axis."""
    if layers <= 0:
        raise ValueError(f"layers must be positive, got {layers}")
    for i in range(layers):
        x = make_recurrent_layer(
            cell,
            units,
            return_sequences=return_sequences or i < layers - 1,
            dropout=dropout,
            recurrent_dropout=recurrent_dropout,
            name=f"{name}_{i}",
        )(x)
    return x


def normalizer(mean: np.ndarray, variance: np.ndarray) -> keras.layers.Normalization:
    """A fixed per-feature z-score layer (statistics from the training part only)."""
    return keras.layers.Normalization(
        mean=np.asarray(mean, np.float32),
        variance=np.asarray(variance, np.float32),
        name="normalize",
    )


def next_step_predictor(
    n_features: int,
    mean: np.ndarray,
    variance: np.ndarray,
    cell: str = "lstm",
    units: int = 64,
    layers: int = 1,
    dropout: float = 0.0,
    recurrent_dropout: float = 0.0,
) -> keras.Model:
    """Causal per-step forecaster (telemanom style): output[t] predicts normalised x[t+1].

    Because it is causal and runs on sequences of any length, the same weights score a whole
    series in one pass or one point at a time from carried state (streaming).
    """
    inputs = keras.Input((None, n_features), name="values")
    x = normalizer(mean, variance)(inputs)
    x = recurrent_stack(x, cell, units, layers, dropout, recurrent_dropout)
    outputs = keras.layers.Dense(n_features, name="next_value", dtype="float32")(x)
    return keras.Model(inputs, outputs, name="next_step_predictor")


def sequence_autoencoder(
    window: int,
    n_features: int,
    mean: np.ndarray,
    variance: np.ndarray,
    cell: str = "lstm",
    units: int = 64,
    layers: int = 1,
    dropout: float = 0.0,
    recurrent_dropout: float = 0.0,
) -> keras.Model:
    """EncDec-AD (Malhotra et al. 2016): encode a window to a vector, reconstruct it.

    Output is the normalised reconstruction of the window; a large error marks an anomaly.
    """
    inputs = keras.Input((window, n_features), name="values")
    x = normalizer(mean, variance)(inputs)
    code = recurrent_stack(
        x, cell, units, layers, dropout, recurrent_dropout, return_sequences=False, name="encoder"
    )
    x = keras.layers.RepeatVector(window, name="repeat")(code)
    x = recurrent_stack(x, cell, units, layers, dropout, recurrent_dropout, name="decoder")
    outputs = keras.layers.Dense(n_features, name="reconstruction", dtype="float32")(x)
    return keras.Model(inputs, outputs, name="sequence_autoencoder")


_PACKAGE = "lstm_pipelines"


@keras.saving.register_keras_serializable(package=_PACKAGE)
class SeasonalReference(keras.layers.Layer):
    """The seasonal-naive forecast of feature 0, read from the input window: [batch, horizon].

    Step ``s`` takes the value one season before it (``season`` 1: the last value). Added to a
    network's output it makes the network learn a correction to that forecast, like LSTNet's
    autoregressive highway (Lai et al. 2018): training starts from a strong forecast.
    """

    def __init__(self, horizon: int, season: int = 1, **kwargs: Any):
        super().__init__(**kwargs)
        self.horizon = horizon
        self.season = max(int(season), 1)

    def call(self, inputs: Any) -> Any:
        window = inputs.shape[1]
        steps = np.arange(self.horizon)
        index = window + steps - self.season * (steps // self.season + 1)
        if index.min() < 0:
            raise ValueError(f"a window of {window} steps holds no value one season back")
        return keras.ops.take(inputs[..., 0], index, axis=1)

    def get_config(self) -> dict:
        return super().get_config() | {"horizon": self.horizon, "season": self.season}


@keras.saving.register_keras_serializable(package=_PACKAGE)
class SeasonalDifference(keras.layers.Layer):
    """Each step beyond the first season, with its change from one season before:
    [batch, window - season, 2 * features].

    The change is what a residual forecaster must extrapolate (how far this week runs above
    last week), so the encoder reads it directly, over a sequence one season shorter.
    """

    def __init__(self, season: int, **kwargs: Any):
        super().__init__(**kwargs)
        self.season = max(int(season), 1)

    def call(self, inputs: Any) -> Any:
        recent = inputs[:, self.season :, :]
        return keras.ops.concatenate([recent, recent - inputs[:, : -self.season, :]], axis=-1)

    def get_config(self) -> dict:
        return super().get_config() | {"season": self.season}


@keras.saving.register_keras_serializable(package=_PACKAGE)
class SortedQuantiles(keras.layers.Layer):
    """Sorts quantile outputs so they never cross (rearrangement, Chernozhukov et al. 2010)."""

    def call(self, inputs: Any) -> Any:
        return keras.ops.sort(inputs, axis=-1)


@keras.saving.register_keras_serializable(package=_PACKAGE)
class PinballLoss(keras.losses.Loss):
    """Mean quantile (pinball) loss of [batch, horizon, quantiles] forecasts."""

    def __init__(self, quantiles: list[float], name: str = "pinball", **kwargs: Any):
        super().__init__(name=name, **kwargs)
        self.quantiles = [float(q) for q in quantiles]

    def call(self, y_true: Any, y_pred: Any) -> Any:
        quantiles = keras.ops.convert_to_tensor(self.quantiles, dtype=y_pred.dtype)
        error = keras.ops.cast(y_true, y_pred.dtype) - y_pred
        return keras.ops.mean(
            keras.ops.maximum(quantiles * error, (quantiles - 1.0) * error), axis=-1
        )

    def get_config(self) -> dict:
        return super().get_config() | {"quantiles": self.quantiles}


def multi_step_forecaster(
    window: int,
    n_features: int,
    horizon: int,
    mean: np.ndarray,
    variance: np.ndarray,
    cell: str = "lstm",
    units: int = 64,
    layers: int = 1,
    dropout: float = 0.0,
    recurrent_dropout: float = 0.0,
    decoder: str = "direct",
    n_outputs: int = 1,
    season: int = 1,
    residual: bool = True,
) -> keras.Model:
    """Encode a window of history, forecast feature 0 for ``horizon`` steps: [batch, horizon,
    n_outputs] in normalised units (``n_outputs`` > 1: sorted quantiles).

    ``decoder="direct"`` maps the encoding to all steps with one Dense layer (no error
    feedback across steps); ``"seq2seq"`` runs a recurrent decoder over the horizon, fed the
    encoding and each step's seasonal-naive value. ``residual`` adds that seasonal-naive value
    to the output, so the network forecasts the correction, and the encoder then reads the
    last ``window - season`` steps with their seasonal differences (``window > season``).
    """
    if decoder not in ("direct", "seq2seq"):
        raise ValueError(f"decoder must be 'direct' or 'seq2seq', got {decoder!r}")
    if residual and window <= season:
        raise ValueError(f"a residual forecaster needs window > season, got {window} <= {season}")
    inputs = keras.Input((window, n_features), name="history")
    x = normalizer(mean, variance)(inputs)
    encoded = SeasonalDifference(season, name="seasonal_difference")(x) if residual else x
    code = recurrent_stack(
        encoded, cell, units, layers, dropout, recurrent_dropout, False, name="encoder"
    )
    reference = SeasonalReference(horizon, season, name="seasonal_reference")(x)
    reference = keras.layers.Reshape((horizon, 1), name="reference_steps")(reference)
    if decoder == "direct":
        y = keras.layers.Dense(horizon * n_outputs, name="direct_head", dtype="float32")(code)
        y = keras.layers.Reshape((horizon, n_outputs), name="steps")(y)
    else:
        steps = keras.layers.RepeatVector(horizon, name="repeat")(code)
        steps = keras.layers.Concatenate(name="decoder_inputs")([steps, reference])
        y = recurrent_stack(steps, cell, units, 1, dropout, recurrent_dropout, name="decoder")
        y = keras.layers.Dense(n_outputs, name="step_head", dtype="float32")(y)
    if residual:
        y = keras.layers.Add(name="plus_reference")([y, reference])
    if n_outputs > 1:
        y = SortedQuantiles(name="sorted_quantiles")(y)
    return keras.Model(inputs, y, name="multi_step_forecaster")


def conv_grid(image: Any, filters: int = 16, name: str = "cnn") -> Any:
    """Small CNN from raw pixels (0-255) to a feature grid at 1/8 resolution.

    A strided first conv, two conv-pool blocks and one more conv (widths f, 2f, 4f, 4f), so each
    grid cell sees about 40 pixels: enough to recognise a digit-sized object from its own cell.
    BatchNorm momentum 0.9 lets the inference statistics keep up during short trainings.
    """
    x = keras.layers.Rescaling(1.0 / 255.0, name=f"{name}_rescale")(image)
    for i, width in enumerate((filters, 2 * filters, 4 * filters, 4 * filters)):
        x = keras.layers.Conv2D(
            width, 3, strides=2 if i == 0 else 1, padding="same", use_bias=False,
            name=f"{name}_conv{i}",
        )(x)  # fmt: skip
        x = keras.layers.BatchNormalization(momentum=0.9, name=f"{name}_bn{i}")(x)
        x = keras.layers.ReLU(name=f"{name}_relu{i}")(x)
        if i in (1, 2):
            x = keras.layers.MaxPooling2D(name=f"{name}_pool{i}")(x)
    return x


def mobilenet_grid(image: Any, weights: str) -> Any:
    """A frozen ImageNet MobileNetV2 feature grid (1/32 resolution) from a local weights file.

    Grey images are repeated to three channels; pixels are mapped to [-1, 1] as it expects.
    """
    x = image
    if image.shape[-1] == 1:
        x = keras.layers.Concatenate(name="grey_to_rgb")([image, image, image])
    x = keras.layers.Rescaling(1.0 / 127.5, offset=-1.0, name="mobilenet_rescale")(x)
    backbone = keras.applications.MobileNetV2(
        input_shape=tuple(x.shape[1:]), include_top=False, weights=weights
    )
    backbone.trainable = False
    return backbone(x, training=False)


def captioner(
    image_shape: tuple[int, int, int],
    vocab_size: int,
    cell: str = "lstm",
    units: int = 128,
    embedding_dim: int = 32,
    attention: str = "bahdanau",
    dropout: float = 0.0,
    filters: int = 32,
    encoder_weights: str | None = None,
) -> keras.Model:
    """Show, Attend and Tell (Xu et al. 2015): CNN grid encoder + attention LSTM decoder.

    Inputs ``{"image": [B, H, W, C] raw pixels, "tokens": [B, T] teacher-forced ids}``; output
    logits ``[B, T, V]``. The grid ``[B, h*w, units]`` (layer ``grid``) is what the decoder
    attends over; its mean seeds the decoder state (layers ``init_state_<i>``). Inference
    builds an encoder sub-model from these layers and runs `models.decoding` on ``decoder``.
    With ``encoder_weights`` (a local ``.h5`` file) the grid comes from a frozen MobileNetV2.
    """
    image = keras.Input(image_shape, name="image")
    tokens = keras.Input((None,), dtype="int32", name="tokens")
    grid = mobilenet_grid(image, encoder_weights) if encoder_weights else conv_grid(image, filters)
    rows, cols, channels = grid.shape[1:]
    features = keras.layers.Reshape((rows * cols, channels), name="flatten_grid")(grid)
    features = keras.layers.Dense(units, activation="relu", name="grid")(features)
    decoder = AttentionDecoder(
        vocab_size, embedding_dim, units, cell=cell, attention=attention, dropout=dropout,
        name="decoder",
    )  # fmt: skip
    pooled = keras.layers.GlobalAveragePooling1D(name="mean_feature")(features)
    sizes = decoder.cell.state_size
    sizes = list(sizes) if isinstance(sizes, list | tuple) else [sizes]
    state = [
        keras.layers.Dense(int(size), activation="tanh", name=f"init_state_{i}")(pooled)
        for i, size in enumerate(sizes)
    ]
    logits = decoder((tokens, features), initial_state=state)
    return keras.Model({"image": image, "tokens": tokens}, logits, name="captioner")


@keras.saving.register_keras_serializable(package=_PACKAGE)
class FrameMask(keras.layers.Layer):
    """``[batch, ceil(time / stride)]`` bool: frames that are not all-zero padding.

    Speech batches pad variable-length utterances with zero frames (a real MFCC frame is never
    exactly zero); ``stride`` follows a strided convolution front-end.
    """

    def __init__(self, stride: int = 1, **kwargs: Any):
        super().__init__(**kwargs)
        self.stride = int(stride)

    def call(self, frames: Any) -> Any:
        return keras.ops.any(keras.ops.not_equal(frames, 0), axis=-1)[:, :: self.stride]

    def get_config(self) -> dict:
        return super().get_config() | {"stride": self.stride}


@keras.saving.register_keras_serializable(package=_PACKAGE)
class ZeroPadding(keras.layers.Layer):
    """Zero the padded frames again after normalisation, so convolutions see true zeros there
    (as at the edges of a single unpadded utterance) and batching does not change outputs."""

    def call(self, inputs: Any, mask: Any = None) -> Any:
        return keras.ops.where(mask[..., None], inputs, keras.ops.zeros_like(inputs))

    def compute_mask(self, inputs: Any, mask: Any = None) -> Any:
        return None  # later layers take the mask explicitly (Conv1D would drop it anyway)


@keras.saving.register_keras_serializable(package=_PACKAGE)
class BlankPadding(keras.layers.Layer):
    """Force the CTC blank (index 0) at padded frames: the loss over the padded length then
    equals the loss over the true length (blanks cost nothing), and so does decoding."""

    def call(self, logits: Any, mask: Any = None) -> Any:
        blank = keras.ops.one_hot(0, keras.ops.shape(logits)[-1], dtype=logits.dtype) * 1e4
        return keras.ops.where(mask[..., None], logits, blank)

    def compute_mask(self, logits: Any, mask: Any = None) -> Any:
        return None


@keras.saving.register_keras_serializable(package=_PACKAGE)
class UtteranceNormalization(keras.layers.Layer):
    """Cepstral mean and variance normalisation per utterance, over its unpadded frames.

    Subtracting an utterance's mean cepstrum removes a fixed channel/microphone filter and part
    of the speaker's spectral tilt, the classic fix for recognisers that must meet new voices.
    Padded frames stay zero.
    """

    def __init__(self, epsilon: float = 1e-3, **kwargs: Any):
        super().__init__(**kwargs)
        self.epsilon = epsilon

    def call(self, frames: Any, mask: Any = None) -> Any:
        weight = keras.ops.cast(mask, frames.dtype)[..., None]
        count = keras.ops.maximum(keras.ops.sum(weight, axis=1, keepdims=True), 1.0)
        mean = keras.ops.sum(frames * weight, axis=1, keepdims=True) / count
        centred = (frames - mean) * weight
        variance = keras.ops.sum(centred**2, axis=1, keepdims=True) / count
        return centred / keras.ops.sqrt(variance + self.epsilon)

    def compute_mask(self, frames: Any, mask: Any = None) -> Any:
        return None

    def get_config(self) -> dict:
        return super().get_config() | {"epsilon": self.epsilon}


def _masked_front(
    n_features: int, mean: np.ndarray, variance: np.ndarray, name: str, per_utterance: bool
) -> tuple[Any, Any, Any]:
    """Input, normalised frames (zero at padding) and the frame mask."""
    frames = keras.Input((None, n_features), name=name)
    mask = FrameMask(name="frame_mask")(frames)
    if per_utterance:
        return frames, UtteranceNormalization(name="utterance_norm")(frames, mask=mask), mask
    x = ZeroPadding(name="zero_padding")(normalizer(mean, variance)(frames), mask=mask)
    return frames, x, mask


def _bidirectional_stack(
    x: Any, mask: Any, cell: str, units: int, layers: int, dropout: float, recurrent: float
) -> Any:
    for i in range(layers):
        rnn = make_recurrent_layer(
            cell, units, return_sequences=True, dropout=dropout, recurrent_dropout=recurrent
        )
        x = keras.layers.Bidirectional(rnn, name=f"birnn_{i}")(x, mask=mask)
    return x


def ctc_acoustic_model(
    n_features: int,
    n_labels: int,
    mean: np.ndarray,
    variance: np.ndarray,
    cell: str = "lstm",
    units: int = 96,
    layers: int = 2,
    dropout: float = 0.0,
    recurrent_dropout: float = 0.0,
    conv_filters: int = 64,
    conv_kernel: int = 5,
    conv_stride: int = 2,
    per_utterance: bool = True,
) -> keras.Model:
    """Hybrid CTC acoustic model (Deep Speech 2 style, small): Conv1D over frames, then
    bidirectional recurrent layers, then per-frame logits over ``n_labels`` + blank (index 0).

    Outputs are logits (keras.losses.CTC and ctc_decode normalise them). The strided causal
    convolution divides the frame rate the recurrent layers run at; causal padding keeps frame
    alignment independent of how much batch padding follows an utterance. ``per_utterance``
    normalises each utterance by its own statistics (CMVN) instead of the training ones.
    """
    frames, x, _ = _masked_front(n_features, mean, variance, "mfcc", per_utterance)
    mask = FrameMask(conv_stride, name="output_mask")(frames)
    x = keras.layers.Conv1D(
        conv_filters, conv_kernel, strides=conv_stride, padding="causal", activation="relu"
    )(x)
    x = _bidirectional_stack(x, mask, cell, units, layers, dropout, recurrent_dropout)
    logits = keras.layers.Dense(n_labels + 1, name="logits", dtype="float32")(x)
    outputs = BlankPadding(name="blank_padding", dtype="float32")(logits, mask=mask)
    return keras.Model(frames, outputs, name="ctc_acoustic_model")


def recurrent_classifier(
    n_features: int,
    n_classes: int,
    mean: np.ndarray,
    variance: np.ndarray,
    cell: str = "lstm",
    units: int = 64,
    layers: int = 1,
    dropout: float = 0.0,
    recurrent_dropout: float = 0.0,
    per_utterance: bool = True,
) -> keras.Model:
    """Variable-length sequence classifier: masked bidirectional recurrent layers, attention
    pooling over the frames, softmax. ``per_utterance`` as in :func:`ctc_acoustic_model`."""
    frames, x, mask = _masked_front(n_features, mean, variance, "frames", per_utterance)
    x = _bidirectional_stack(x, mask, cell, units, layers, dropout, recurrent_dropout)
    pooled, _ = AttentionPooling(units, name="attention_pooling")(x, mask=mask)
    probabilities = keras.layers.Dense(
        n_classes, activation="softmax", name="probabilities", dtype="float32"
    )(pooled)
    return keras.Model(frames, probabilities, name="recurrent_classifier")


@keras.saving.register_keras_serializable(package=_PACKAGE)
class NonPadding(keras.layers.Layer):
    """``[B, T]`` bool, True on real tokens: id 0 is padding. Feeds attention masks."""

    def call(self, tokens: Any) -> Any:
        return keras.ops.not_equal(tokens, 0)


def seq2seq_translator(
    source_vocab: int,
    target_vocab: int,
    cell: str = "lstm",
    units: int = 128,
    embedding_dim: int = 64,
    attention: str = "bahdanau",
    dropout: float = 0.0,
) -> keras.Model:
    """Bidirectional recurrent encoder + attention decoder (Bahdanau et al., 2015).

    Inputs ``{"source": [B, S] ids, "target": [B, T] teacher-forced ids}`` (0 = padding);
    output logits ``[B, T, target_vocab]``. The decoder has ``2 * units`` so its query matches
    the concatenated forward/backward encoder outputs (Luong dot needs that) and the joined
    final states (layers ``encoder_state_<i>``) seed it. Inference builds an encoder sub-model
    from layers ``source``, ``encoder``, ``source_mask`` and ``encoder_state_<i>`` and runs
    `models.decoding` on the layer ``decoder``.
    """
    source = keras.Input((None,), dtype="int32", name="source")
    target = keras.Input((None,), dtype="int32", name="target")
    mask = NonPadding(name="source_mask")(source)
    x = keras.layers.Embedding(source_vocab, embedding_dim, name="source_embedding")(source)
    x = keras.layers.Dropout(dropout, name="source_dropout")(x)
    rnn = make_recurrent_layer(cell, units, return_sequences=True, return_state=True)
    encoded, *finals = keras.layers.Bidirectional(rnn, name="encoder")(x, mask=mask)
    half = len(finals) // 2  # forward states, then backward states
    states = [
        keras.layers.Concatenate(name=f"encoder_state_{i}")([finals[i], finals[half + i]])
        for i in range(half)
    ]
    decoder = AttentionDecoder(
        target_vocab, embedding_dim, 2 * units, cell=cell, attention=attention, dropout=dropout,
        name="decoder",
    )  # fmt: skip
    logits = decoder((target, encoded), encoder_mask=mask, initial_state=states)
    return keras.Model({"source": source, "target": target}, logits, name="seq2seq_translator")


def text_classifier(
    vectorizer: keras.layers.Layer,
    cell: str = "lstm",
    units: int = 64,
    layers: int = 1,
    embedding_dim: int = 128,
    dropout: float = 0.0,
    recurrent_dropout: float = 0.0,
    head_dropout: float = 0.0,
    attention_units: int = 64,
    embedding_dropout: float = 0.0,
) -> keras.Model:
    """Binary text classifier on raw strings: the adapted ``vectorizer`` (so a logged model
    takes text), masked embedding, bidirectional recurrent layers, ``AttentionPooling``, one
    sigmoid unit. The pooling weights are read back by `attention_explainer`.

    ``embedding_dropout`` drops whole embedding channels (SpatialDropout1D): on small corpora
    the embedding table is where a classifier overfits first."""
    text = keras.Input(shape=(), dtype="string", name="text")
    ids = vectorizer(text)
    mask = keras.ops.not_equal(ids, 0)
    x = keras.layers.Embedding(
        vectorizer.vocabulary_size(), embedding_dim, mask_zero=True, name="embedding"
    )(ids)
    x = keras.layers.SpatialDropout1D(embedding_dropout, name="embedding_dropout")(x)
    x = _bidirectional_stack(x, mask, cell, units, layers, dropout, recurrent_dropout)
    pooled, _ = AttentionPooling(attention_units, name="attention_pooling")(x, mask=mask)
    pooled = keras.layers.Dropout(head_dropout, name="head_dropout")(pooled)
    head = keras.layers.Dense(1, activation="sigmoid", name="probability", dtype="float32")
    return keras.Model(text, head(pooled), name="text_classifier")


# keras.layers.TextVectorization's "strip_punctuation" characters (keras 3.15)
PUNCTUATION = r'[!"#$%&()\*\+,-\./:;<=>?@\[\\\]^_`{|}~\']'


@keras.saving.register_keras_serializable(package=_PACKAGE)
def lower_and_space_punctuation(texts: Any) -> Any:
    """A ``TextVectorization`` standardize: lowercase, and punctuation becomes a space instead
    of vanishing, so "it's" is the words "it" and "s" and "well-made" is "well" and "made"."""
    import tensorflow as tf  # TextVectorization's string ops are TensorFlow's on any backend

    return tf.strings.regex_replace(tf.strings.lower(texts), PUNCTUATION, " ")


def with_linear_expert(
    classifier: keras.Model,
    vectorizer: keras.layers.TextVectorization,
    weights: np.ndarray,
    bias: float,
) -> keras.Model:
    """A trained `text_classifier` averaged with a fixed linear expert on the same raw text:
    ``(p_classifier + sigmoid(features(text) @ weights + bias)) / 2``.

    ``vectorizer`` turns text into the expert's features (e.g. multi-hot n-grams, adapted
    beforehand); the ``expert`` unit is not trainable. The classifier's layers are reused, not
    nested, so ``get_layer("attention_pooling")`` and the parts (``probability``, ``expert``)
    stay reachable, also in a reloaded model."""
    text = classifier.inputs[0]
    expert = keras.layers.Dense(
        1, activation="sigmoid", trainable=False, name="expert", dtype="float32"
    )
    expert_probability = expert(vectorizer(text))
    expert.set_weights(
        [np.asarray(weights, np.float32).reshape(-1, 1), np.asarray([bias], np.float32)]
    )
    average = keras.layers.Average(name="ensemble", dtype="float32")
    return keras.Model(
        text, average([classifier.outputs[0], expert_probability]), name="text_ensemble"
    )


def attention_explainer(model: keras.Model, vectorizer_name: str) -> keras.Model:
    """A view of a trained `text_classifier` or `with_linear_expert` model (also one reloaded
    from disk) that returns ``(probability [B, 1], attention weights [B, T], token ids [B, T])``;
    the probability is the model's output (the ensemble's, when there is an expert)."""
    return keras.Model(
        model.inputs,
        [
            model.outputs[0],
            model.get_layer("attention_pooling").output[1],
            model.get_layer(vectorizer_name).output,
        ],
        name="attention_explainer",
    )


def language_model(
    vocab_size: int,
    cell: str = "lstm",
    units: int = 256,
    layers: int = 2,
    embedding_dim: int = 64,
    dropout: float = 0.0,
    recurrent_dropout: float = 0.0,
    output_dropout: float = 0.0,
    stateful: bool = False,
) -> keras.Model:
    """Next-token model over ids: embedding, stacked recurrent layers, logits per step.

    ``dropout`` drops the inputs of every recurrent layer, ``output_dropout`` the last layer's
    outputs before the logits: on a small corpus both are needed to stop memorising.

    Built with ``stateful=True`` it takes one sequence (batch 1) and carries its state from
    call to call, so generation feeds one token per step after copying a trained model's
    weights (same layer shapes) with ``set_weights``.
    """
    ids = keras.Input(batch_shape=(1 if stateful else None, None), dtype="int32", name="ids")
    x = keras.layers.Embedding(vocab_size, embedding_dim, name="embedding")(ids)
    for i in range(layers):
        x = make_recurrent_layer(
            cell,
            units,
            return_sequences=True,
            stateful=stateful,
            dropout=dropout,
            recurrent_dropout=recurrent_dropout,
            name=f"recurrent_{i}",
        )(x)
    x = keras.layers.Dropout(output_dropout, name="output_dropout")(x)
    logits = keras.layers.Dense(vocab_size, name="logits", dtype="float32")(x)
    return keras.Model(ids, logits, name="language_model")


def stateful_twin(model: keras.Model, batch_size: int = 1) -> keras.Model:
    """A copy of a functional recurrent model whose recurrent layers are stateful with a fixed
    ``batch_size``, sharing no variables but holding the same weights: feeding it one step at
    a time carries the state between calls (generation, streaming). Works for any
    hyperparameters the model was built (or tuned, or reloaded) with."""
    config = model.get_config()
    for layer in config["layers"]:
        layer_config = layer["config"]
        if layer["class_name"] == "InputLayer":
            layer_config["batch_shape"] = (batch_size, *layer_config["batch_shape"][1:])
        elif "stateful" in layer_config:
            layer_config["stateful"] = True
            shape = layer.get("build_config", {}).get("input_shape")
            if shape:  # a stateful layer builds its state variables for a static batch
                layer["build_config"]["input_shape"] = [batch_size, *shape[1:]]
    twin = model.__class__.from_config(config)
    twin.set_weights(model.get_weights())
    return twin
