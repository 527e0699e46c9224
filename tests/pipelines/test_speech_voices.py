"""The conditions ``python -m pipelines.speech.voices`` builds from audio we have."""

from __future__ import annotations

import numpy as np
import pytest

from pipelines.speech import voices
from pipelines.speech.corpora import load_corpus
from pipelines.speech.task import SpeechConfig

RATE = 8000


def _tone(hz: float, seconds: float = 0.5) -> np.ndarray:
    return (0.5 * np.sin(2 * np.pi * hz * np.arange(int(RATE * seconds)) / RATE)).astype("f4")


def _peak_hz(wave: np.ndarray) -> float:
    spectrum = np.abs(np.fft.rfft(wave * np.hanning(len(wave))))
    return float(np.fft.rfftfreq(len(wave), 1 / RATE)[spectrum.argmax()])


@pytest.mark.parametrize("factor", [0.87, 1.15, 1.3])
def test_a_scaled_voice_moves_every_frequency_by_the_factor(factor):
    scaled = voices.scaled_voice(_tone(500.0), factor)
    assert len(scaled) == pytest.approx(RATE * 0.5 / factor, abs=2)
    assert _peak_hz(scaled) == pytest.approx(500.0 * factor, rel=0.02)


def test_telephone_keeps_the_voice_band_and_cuts_below_it():
    def gain_db(hz: float) -> float:
        tone = _tone(hz)
        return 10 * np.log10(np.mean(voices.telephone(tone)[800:] ** 2) / np.mean(tone**2))

    assert abs(gain_db(1000.0)) < 1.0 and gain_db(100.0) < -20.0


def test_dev_microphones_lift_the_presence_band_or_muffle_the_top():
    def gain_db(filtered, hz: float) -> float:
        tone = _tone(hz)
        return 10 * np.log10(np.mean(filtered(tone)[800:] ** 2) / np.mean(tone[800:] ** 2))

    assert gain_db(voices.presence_microphone, 2800.0) == pytest.approx(8.0, abs=0.5)
    assert gain_db(voices.presence_microphone, 100.0) < -10.0
    assert gain_db(voices.muffled_microphone, 3600.0) < -8.0
    assert abs(gain_db(voices.muffled_microphone, 500.0)) < 1.0


def test_mu_law_codes_decode_as_g711():
    codes = np.array([0xFF, 0x7F, 0x80, 0x00, 0xEF, 0x6A], np.uint8)
    expected = [0, 0, 32124, -32124, 132, -212]  # Python's audioop.ulaw2lin (16-bit)
    np.testing.assert_array_equal(voices.mu_law_decoded(codes) * 32768, expected)


def test_noise_has_the_signal_to_noise_ratio_asked_for():
    tone = _tone(700.0, 2.0)
    noise = voices.noisy(tone, 10.0, np.random.default_rng(0)) - tone
    assert 10 * np.log10(np.mean(tone**2) / np.mean(noise**2)) == pytest.approx(10.0, abs=0.2)


def test_joined_digits_say_the_chosen_recordings_in_order():
    waves = [np.full(100 + 10 * d, d + 1, np.float32) for d in range(4)]
    strings, labels = voices.joined(waves, list("0123"), 5, np.random.default_rng(0))
    for string, label in zip(strings, labels):
        assert 3 <= len(label) <= 5
        loud = np.abs(string) > 0.5  # gaps are faint noise
        starts = np.flatnonzero(loud & ~np.concatenate([[False], loud[:-1]]))
        assert "".join(str(int(round(string[i])) - 1) for i in starts) == label


def test_the_sample_recordings_are_the_test_part_and_nothing_else():
    waves, digits, _ = voices.sample_recordings()
    task = voices.SampleHeldOut(voices.shipped_rows(waves, digits))
    corpus = load_corpus("fsdd")
    parts = task.split(corpus, SpeechConfig(), np.random.default_rng(0))
    assert len(parts["test"]) == 60
    assert sorted(np.concatenate(list(parts.values()))) == list(range(len(corpus)))
    assert sorted(corpus.labels[i] for i in parts["test"]) == sorted(digits)
