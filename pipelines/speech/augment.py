"""Training-only augmentation of MFCC frames for robustness to new voices.

With five training speakers a model learns their voices as much as the words. Each training
utterance is therefore changed at random, every epoch anew, in ways a new speaker would change
it (never the validation or test data):

* **VTLP** (vocal tract length perturbation, Jaitly & Hinton 2013) in feature space: a longer or
  shorter vocal tract scales the formant frequencies. The 13 MFCCs are turned back into a
  smoothed log-mel spectrum (inverse orthonormal DCT over the 128 bands), its frequency axis is
  warped by a factor ``alpha`` (piecewise linear, so 0 Hz and the 4 kHz band edge of 8 kHz audio
  stay put), and the DCT is applied again.
  All three steps are linear, so one ``13 x 13`` matrix per utterance does it; ``alpha = 1``
  gives the identity.
* **Speed perturbation** (Ko et al. 2015) of the frame sequence: linear interpolation in time
  to ``1 / factor`` times as many frames, a faster or slower talker.
* **A random channel** (``channel``: the share of utterances it meets): the smoothed log-mel
  envelope (as for VTLP) is band-limited like a telephone line (half of them: edges drawn from
  150-450 Hz and 2.8-3.8 kHz, 24 dB per octave beyond) and/or gets a noise floor 15-45 dB below
  its loudest band, added as power; the change of the envelope is added to the cepstra, so
  what the 13 coefficients hold beyond the envelope stays.
* **SpecAugment-style masks** (Park et al. 2019): a few runs of frames and of cepstral
  coefficients are replaced by the utterance mean, which per-utterance normalisation maps to 0.

Randomness is stateless, seeded from ``--seed`` and a stream of per-utterance seeds that changes
every epoch, so a run is repeatable.
"""

from __future__ import annotations

from dataclasses import dataclass

import keras
import numpy as np
import tensorflow as tf

from pipelines.speech import features

SIGNAL_HZ = features.SAMPLE_RATE / 2  # 8 kHz audio: the 128 mel bands span 0-4 kHz
_KNEE = 0.8  # VTLP warps linearly up to this share of SIGNAL_HZ, then bends back to it


@dataclass(frozen=True)
class Augmentation:
    """How strongly each training utterance is perturbed; zeros switch a technique off."""

    vtlp: float = 0.25
    speed: float = 0.1
    time_masks: int = 2
    time_mask_width: int = 3
    coefficient_masks: int = 1
    coefficient_mask_width: int = 2
    channel: float = 0.5

    @property
    def active(self) -> bool:
        return bool(
            self.vtlp or self.speed or self.time_masks or self.coefficient_masks or self.channel
        )


NO_AUGMENTATION = Augmentation(0.0, 0.0, 0, 0, 0, 0, 0.0)
_MEL_STEP = float(features.hz_to_mel(SIGNAL_HZ)) / (features.N_MELS + 1)


def _band_centres_hz() -> np.ndarray:
    """Centre frequencies of the front-end's 128 HTK mel bands (equal mel steps to 4 kHz)."""
    return features.mel_to_hz(_MEL_STEP * np.arange(1, features.N_MELS + 1))


_CENTRES = tf.constant(_band_centres_hz(), tf.float32)
_DCT = tf.constant(features.dct_matrix().T)  # rows: the 13 orthonormal DCT-II basis vectors


def _through_knee(hz: tf.Tensor, knee: tf.Tensor, knee_to: tf.Tensor) -> tf.Tensor:
    """Piecewise-linear map through (0, 0), (knee, knee_to) and (4 kHz, 4 kHz); identity above."""
    upper = knee_to + (SIGNAL_HZ - knee_to) * (hz - knee) / (SIGNAL_HZ - knee)
    return tf.where(hz <= knee, hz * knee_to / knee, tf.where(hz <= SIGNAL_HZ, upper, hz))


def _knee(alpha: tf.Tensor) -> tf.Tensor:
    return _KNEE * SIGNAL_HZ * tf.minimum(1.0, 1.0 / alpha)


def warp_frequencies(hz: tf.Tensor, alpha: tf.Tensor) -> tf.Tensor:
    """VTLP's warp: a formant at ``f`` moves to ``alpha * f`` up to a knee, then the warp bends
    back to the 4 kHz band edge; frequencies above the edge are unchanged."""
    knee = _knee(alpha)
    return _through_knee(hz, knee, alpha * knee)


def _band_index(hz: tf.Tensor) -> tf.Tensor:
    """Fractional mel-band index of a frequency (band centres are equally spaced in mel)."""
    mel = 2595.0 * tf.math.log(1.0 + tf.maximum(hz, 0.0) / 700.0) / np.log(10.0)
    return mel / _MEL_STEP - 1.0


def vtlp_matrix(alpha: tf.Tensor) -> tf.Tensor:
    """``[13, 13]`` map of MFCCs to the MFCCs of the spectrum warped by ``alpha``.

    The warped log-mel spectrum at band centre ``f`` is the original one at the inverse warp of
    ``f``, interpolated linearly between neighbouring bands.
    """
    alpha = tf.cast(alpha, tf.float32)
    knee = _knee(alpha)
    source = _through_knee(_CENTRES, alpha * knee, knee)
    position = tf.clip_by_value(_band_index(source), 0.0, features.N_MELS - 1.0)
    lower = tf.minimum(tf.floor(position), features.N_MELS - 2)
    fraction = (position - lower)[:, None]
    lower = tf.cast(lower, tf.int32)
    interpolation = (1.0 - fraction) * tf.one_hot(lower, features.N_MELS) + fraction * tf.one_hot(
        lower + 1, features.N_MELS
    )
    return _DCT @ interpolation @ tf.transpose(_DCT)


_OCTAVE_SLOPE_DB = 24.0
_DEEPEST_DB = 60.0


def random_channel(frames: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
    """One utterance's ``[T, 13]`` MFCCs heard through a random band limit and noise floor."""
    seeds = tf.random.experimental.stateless_split(seed, 5)
    draws = [tf.random.stateless_uniform([], s) for s in tf.unstack(seeds)]
    envelope = frames @ _DCT  # [T, 128] dB
    low, high = 150.0 + 300.0 * draws[0], 2800.0 + 1000.0 * draws[1]
    octaves_out = tf.maximum(0.0, tf.math.log(low / _CENTRES) / np.log(2.0))
    octaves_out += tf.maximum(0.0, tf.math.log(_CENTRES / high) / np.log(2.0))
    band_limit = tf.maximum(-_OCTAVE_SLOPE_DB * octaves_out, -_DEEPEST_DB)
    limited = envelope + tf.where(draws[2] < 0.5, band_limit, tf.zeros_like(band_limit))
    floor = tf.reduce_max(envelope) - (15.0 + 30.0 * draws[3])
    power = tf.pow(10.0, limited / 10.0) + tf.pow(10.0, floor / 10.0)
    heard = tf.where(draws[4] < 0.5, 10.0 * tf.math.log(power) / np.log(10.0), limited)
    return frames + (heard - envelope) @ tf.transpose(_DCT)


def change_speed(frames: tf.Tensor, factor: tf.Tensor) -> tf.Tensor:
    """Frames resampled in time by linear interpolation to ``round(T / factor)`` frames."""
    count = tf.shape(frames)[0]
    length = tf.maximum(1, tf.cast(tf.round(tf.cast(count, tf.float32) / factor), tf.int32))
    position = tf.linspace(0.0, tf.cast(count - 1, tf.float32), length)
    lower = tf.minimum(tf.cast(tf.floor(position), tf.int32), tf.maximum(count - 2, 0))
    upper = tf.minimum(lower + 1, count - 1)
    fraction = (position - tf.cast(lower, tf.float32))[:, None]
    return (1.0 - fraction) * tf.gather(frames, lower) + fraction * tf.gather(frames, upper)


def mask_runs(
    frames: tf.Tensor, axis: int, count: int, max_width: int, seed: tf.Tensor
) -> tf.Tensor:
    """``count`` runs of 0..``max_width`` frames (axis 0) or coefficients (axis 1) set to the
    utterance mean; a run never starts past the end."""
    size = tf.shape(frames)[axis]
    seeds = tf.random.experimental.stateless_split(seed, 2)
    widths = tf.random.stateless_uniform([count], seeds[0], 0, max_width + 1, tf.int32)
    starts = tf.random.stateless_uniform([count], seeds[1], 0, 2**30, tf.int32) % size
    index = tf.range(size)[:, None]
    masked = tf.reduce_any((index >= starts) & (index < starts + widths), axis=1)
    masked = masked[:, None] if axis == 0 else masked[None, :]
    mean = tf.reduce_mean(frames, axis=0, keepdims=True)
    return tf.where(masked, mean, frames)


def augment(frames: tf.Tensor, seed: tf.Tensor, settings: Augmentation) -> tf.Tensor:
    """One random perturbation of one utterance's ``[T, 13]`` MFCC frames."""
    seeds = tf.random.experimental.stateless_split(seed, 4)
    if settings.channel:  # its own stream: the others draw what they drew before it existed
        own = tf.random.experimental.stateless_split(tf.random.experimental.stateless_fold_in(
            seed, 1), 2)  # fmt: skip
        met = tf.random.stateless_uniform([], own[0]) < settings.channel
        frames = tf.cond(met, lambda: random_channel(frames, own[1]), lambda: frames)
    if settings.vtlp:
        alpha = tf.random.stateless_uniform([], seeds[0], 1 - settings.vtlp, 1 + settings.vtlp)
        frames = frames @ tf.transpose(vtlp_matrix(alpha))
    if settings.speed:
        factor = tf.random.stateless_uniform([], seeds[1], 1 - settings.speed, 1 + settings.speed)
        frames = change_speed(frames, factor)
    if settings.time_masks:
        frames = mask_runs(frames, 0, settings.time_masks, settings.time_mask_width, seeds[2])
    if settings.coefficient_masks:
        frames = mask_runs(
            frames, 1, settings.coefficient_masks, settings.coefficient_mask_width, seeds[3]
        )
    return frames


def augmented(dataset: tf.data.Dataset, settings: Augmentation, seed: int) -> tf.data.Dataset:
    """``(frames, targets)`` elements with augmented frames, fresh random draws each epoch."""
    if not settings.active:
        return dataset
    seeds = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).batch(2)
    return tf.data.Dataset.zip(dataset, seeds).map(
        lambda element, s: (augment(element[0], s, settings), *element[1:]),
        num_parallel_calls=tf.data.AUTOTUNE,
        deterministic=True,
    )


# ---- test-time warping ----------------------------------------------------------------------
_PACKAGE = "pipelines.speech"


@keras.saving.register_keras_serializable(package=_PACKAGE)
class VocalTractWarp(keras.layers.Layer):
    """MFCC frames ``[B, T, 13]`` as a vocal tract ``alpha`` times as long would give them
    (:func:`vtlp_matrix`, the training warp); zero padding frames stay zero."""

    def __init__(self, alpha: float = 1.0, **kwargs):
        super().__init__(**kwargs)
        self.alpha = float(alpha)
        self.matrix = tf.transpose(vtlp_matrix(tf.constant(self.alpha)))

    def call(self, frames: tf.Tensor) -> tf.Tensor:
        return tf.einsum("btc,cd->btd", frames, tf.cast(self.matrix, frames.dtype))

    def get_config(self) -> dict:
        return super().get_config() | {"alpha": self.alpha}


@keras.saving.register_keras_serializable(package=_PACKAGE)
class PosteriorMean(keras.layers.Layer):
    """The mean of several heads' posteriors: class probabilities as they are, CTC logits as
    log-probabilities (their mean is again a valid input to the CTC decoder)."""

    def __init__(self, logits: bool = False, **kwargs):
        super().__init__(**kwargs)
        self.logits = bool(logits)

    def call(self, outputs: list) -> tf.Tensor:
        if self.logits:
            outputs = [tf.nn.log_softmax(o, axis=-1) for o in outputs]
        return tf.add_n(outputs) / len(outputs)

    def get_config(self) -> dict:
        return super().get_config() | {"logits": self.logits}


def warp_averaged(acoustic: keras.Model, warps: tuple[float, ...], logits: bool) -> keras.Model:
    """``acoustic`` heard at each vocal-tract warp of ``warps``, posteriors averaged
    (test-time augmentation: a voice between the training voices and a new one)."""
    if tuple(warps) == (1.0,):
        return acoustic
    frames = keras.Input(acoustic.inputs[0].shape[1:], name="frames")
    heads = [acoustic(VocalTractWarp(a, name=f"warp_{a:g}")(frames)) for a in warps]
    outputs = PosteriorMean(logits, name="posterior_mean", dtype="float32")(heads)
    return keras.Model(frames, outputs, name="warp_averaged")
