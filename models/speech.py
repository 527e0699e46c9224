"""Speech architectures over padded MFCC frames: the CTC acoustic model, the recurrent
classifier, and the masking and per-utterance normalisation layers they share."""

from __future__ import annotations

from typing import Any

import keras
import numpy as np

from models.attention import AttentionPooling
from models.cells import PACKAGE
from models.stacks import bidirectional_stack, normalizer


@keras.saving.register_keras_serializable(package=PACKAGE)
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


@keras.saving.register_keras_serializable(package=PACKAGE)
class ZeroPadding(keras.layers.Layer):
    """Zero the padded frames again after normalisation, so convolutions see true zeros there
    (as at the edges of a single unpadded utterance) and batching does not change outputs."""

    def call(self, inputs: Any, mask: Any = None) -> Any:
        return keras.ops.where(mask[..., None], inputs, keras.ops.zeros_like(inputs))

    def compute_mask(self, inputs: Any, mask: Any = None) -> Any:
        return None  # later layers take the mask explicitly (Conv1D would drop it anyway)


@keras.saving.register_keras_serializable(package=PACKAGE)
class BlankPadding(keras.layers.Layer):
    """Force the CTC blank (index 0) at padded frames: the loss over the padded length then
    equals the loss over the true length (blanks cost nothing), and so does decoding."""

    def call(self, logits: Any, mask: Any = None) -> Any:
        blank = keras.ops.one_hot(0, keras.ops.shape(logits)[-1], dtype=logits.dtype) * 1e4
        return keras.ops.where(mask[..., None], logits, blank)

    def compute_mask(self, logits: Any, mask: Any = None) -> Any:
        return None


@keras.saving.register_keras_serializable(package=PACKAGE)
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
    x = bidirectional_stack(x, mask, cell, units, layers, dropout, recurrent_dropout)
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
    x = bidirectional_stack(x, mask, cell, units, layers, dropout, recurrent_dropout)
    pooled, _ = AttentionPooling(units, name="attention_pooling")(x, mask=mask)
    probabilities = keras.layers.Dense(
        n_classes, activation="softmax", name="probabilities", dtype="float32"
    )(pooled)
    return keras.Model(frames, probabilities, name="recurrent_classifier")
