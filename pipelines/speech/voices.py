"""How the default models hear voices and channels unlike FSDD's, measured on audio we have.

``python -m pipelines.speech.voices [speech flags]`` trains the isolated-word and the CTC model
with the given flags, leaving out of training and validation the 60 FSDD recordings whose
original WAV files ship in ``tests/data/fsdd_sample`` (their rows of ``digits.npz`` are found by
the front-end, which reproduces them), then scores both logged models, through their audio
input, on those recordings transformed into other conditions:

* a higher or lower voice: the audio resampled so pitch and formants scale together (x1.15 is
  about a man to a woman's formants, x1.3 past most women's; tempo changes with it);
* the telephone: 300-3400 Hz band-pass and 8-bit mu-law; white noise at 10 dB SNR; a room
  (a synthetic impulse response, RT60 0.5 s); a quiet recording (-26 dB); a DC offset of 0.05
  (FSDD's own reach 0.008); half a second of faint noise before and after;
* the dev set, for choosing settings (rows ``dev: ...``; the mean of its rows is printed): voices
  x1.2, x1.35 and x1.5 higher (resampled) heard through a microphone with a presence peak, a
  telephone line and a muffled microphone, filters the training channel never draws;
* saytime's voice (Debian's ``saytime``: its digits, headerless 8 kHz mu-law), when installed;
* Allison, a real female voice from another source (Debian's ``asterisk-core-sounds-en-wav``,
  8 kHz, one take of each digit; ``apt-get install asterisk-core-sounds-en-wav``), when installed:
  the final check, never used to choose a setting.

Isolated words: accuracy, each voice's recordings in one batch (a model trained on speaker
CMVN takes its statistics from them: 10 recordings, about 4 s). Connected digits: WER of the
CTC model on 3-5 digit strings joined in the audio domain (gaps of 0.1-0.3 s), 20 per voice.
The FSDD voices were heard in training (other takes), the transformed and Allison's were not.
"""

from __future__ import annotations

import dataclasses
import sys
from fractions import Fraction
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import signal

from pipelines.core import DataError, RunOptions, run
from pipelines.core.cli import build_parser, split_namespace
from pipelines.datasets.speech_builders import FSDD
from pipelines.speech import features
from pipelines.speech.corpora import load_corpus
from pipelines.speech.features import audio_batch
from pipelines.speech.task import (
    SpeechConfig,
    SpeechTask,
    class_probabilities,
    frames_model,
    predict_frames,
    transcript_errors,
)
from pipelines.speech.transcribe import ctc_transcripts
from pipelines.speech.utterances import DIGITS, Corpus, as_utterances, speaker_normalized

SAMPLE = Path(__file__).resolve().parents[2] / "tests" / "data" / "fsdd_sample"
ALLISON = Path("/usr/share/asterisk/sounds/en_US_f_Allison/digits")
SAYTIME = Path("/usr/share/saytime")
RATE = features.SAMPLE_RATE


# ---- the FSDD sample and its shipped rows ----------------------------------------------------
def sample_recordings(folder: Path = SAMPLE) -> tuple[list[np.ndarray], list[str], list[str]]:
    """Waveforms, digits and speakers of the FSDD sample (``<digit>_<speaker>_<take>.wav``)."""
    paths = sorted(folder.glob("*.wav"))
    return (
        [features.read_wav(p) for p in paths],
        [p.name.split("_")[0] for p in paths],
        [p.name.split("_")[1] for p in paths],
    )


def shipped_rows(waves: list[np.ndarray], digits: list[str]) -> list[np.ndarray]:
    """The ``digits.npz`` recording of the same digit whose frames are closest to each
    waveform's front-end frames (the front-end reproduces them to 0.001)."""
    data = np.load(FSDD.path())
    rows = np.split(data["X"], np.cumsum(data["lengths"])[:-1])
    found = []
    for frames, digit in zip(features.waveform_features(waves), digits):
        same = [r for r, y in zip(rows, data["y"]) if y == int(digit) and r.shape == frames.shape]
        found.append(min(same, key=lambda r: np.abs(r - frames).max()))
    return found


class SampleHeldOut(SpeechTask):
    """The speech task with the FSDD sample's recordings as its test part (fsdd only)."""

    def __init__(self, rows: list[np.ndarray]):
        self.rows = rows
        self.held_out = {r.tobytes() for r in rows}

    def split(self, corpus: Corpus, cfg: SpeechConfig, rng: np.random.Generator) -> dict:
        recorded = load_corpus(cfg.data).frames  # same order; ``corpus`` may be normalised
        test = np.array([f.tobytes() in self.held_out for f in recorded])
        if test.sum() != len(self.held_out):
            raise DataError(f"found {test.sum()} of the {len(self.held_out)} sample recordings")
        rest = rng.permutation(np.flatnonzero(~test))
        n_validation = max(1, round(len(rest) * cfg.validation_fraction))
        return {
            "test": np.flatnonzero(test),
            "validation": np.sort(rest[:n_validation]),
            "train": np.sort(rest[n_validation:]),
        }


# ---- conditions -----------------------------------------------------------------------------
def scaled_voice(wave: np.ndarray, factor: float) -> np.ndarray:
    """Pitch, formants and tempo scaled by ``factor`` (the audio resampled, played at 8 kHz)."""
    ratio = Fraction(factor).limit_denominator(100)
    return signal.resample_poly(wave, ratio.denominator, ratio.numerator).astype(np.float32)


def telephone(wave: np.ndarray) -> np.ndarray:
    """300-3400 Hz band-pass (4th-order Butterworth) and an 8-bit mu-law codec."""
    band = signal.sosfilt(signal.butter(4, [300, 3400], "bandpass", fs=RATE, output="sos"), wave)
    mu = 255.0
    peak = np.abs(band).max() + 1e-9
    coded = np.sign(band) * np.log1p(mu * np.abs(band / peak)) / np.log1p(mu)
    quantised = np.round(coded * 127) / 127
    return (np.sign(quantised) * np.expm1(np.abs(quantised) * np.log1p(mu)) / mu * peak).astype(
        np.float32
    )


def noisy(wave: np.ndarray, snr_db: float, rng: np.random.Generator) -> np.ndarray:
    noise = rng.normal(size=wave.shape) * np.sqrt(np.mean(wave**2) / 10 ** (snr_db / 10))
    return (wave + noise).astype(np.float32)


def room(wave: np.ndarray, rng: np.random.Generator, rt60: float = 0.5) -> np.ndarray:
    """Convolved with exponentially decaying noise (a diffuse room, RT60 ``rt60`` s) after a
    direct path, at the original peak level."""
    t = np.arange(int(rt60 * RATE)) / RATE
    response = rng.normal(size=t.size) * np.exp(-6.9 * t / rt60) * 0.3
    response[0] = 1.0
    wet = signal.fftconvolve(wave, response)[: len(wave) + RATE // 4]
    return (wet * np.abs(wave).max() / np.abs(wet).max()).astype(np.float32)


def padded_with_silence(wave: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Half a second of faint noise (-80 dB re full scale) before and after."""
    pad = rng.normal(scale=1e-4, size=RATE // 2)
    return np.concatenate([pad, wave, pad]).astype(np.float32)


CONDITIONS = {
    "as recorded": lambda w, rng: w,
    "higher voice x1.15": lambda w, rng: scaled_voice(w, 1.15),
    "higher voice x1.3": lambda w, rng: scaled_voice(w, 1.3),
    "lower voice x0.87": lambda w, rng: scaled_voice(w, 0.87),
    "telephone": lambda w, rng: telephone(w),
    "noise 10 dB SNR": lambda w, rng: noisy(w, 10.0, rng),
    "room RT60 0.5 s": room,
    "quiet (-26 dB)": lambda w, rng: 0.05 * w,
    "DC offset 0.05": lambda w, rng: w + 0.05,
    "0.5 s of silence before and after": padded_with_silence,
}


def _peaking(hz: float, gain_db: float, q: float) -> np.ndarray:
    """A peaking-EQ biquad (Bristow-Johnson's audio EQ cookbook) as second-order sections."""
    amplitude, w0 = 10 ** (gain_db / 40), 2 * np.pi * hz / RATE
    alpha = np.sin(w0) / (2 * q)
    b = [1 + alpha * amplitude, -2 * np.cos(w0), 1 - alpha * amplitude]
    a = [1 + alpha / amplitude, -2 * np.cos(w0), 1 - alpha / amplitude]
    return np.concatenate([b, a])[None, :] / a[0]


def presence_microphone(wave: np.ndarray) -> np.ndarray:
    """A small close-talk microphone: low cut at 250 Hz (2nd order) and a +8 dB presence peak
    at 2.8 kHz (Q 1.2): a fixed tilt and resonance the training channel never draws."""
    sos = np.concatenate([signal.butter(2, 250, "highpass", fs=RATE, output="sos"),
                          _peaking(2800.0, 8.0, 1.2)])  # fmt: skip
    return signal.sosfilt(sos, wave).astype(np.float32)


def muffled_microphone(wave: np.ndarray) -> np.ndarray:
    """A muffled microphone: 6 dB per octave roll-off above 1.2 kHz, 2nd-order low cut at
    120 Hz (the training channel cuts at 24 dB per octave, from 2.8 kHz up)."""
    sos = np.concatenate([signal.butter(1, 1200, "lowpass", fs=RATE, output="sos"),
                          signal.butter(2, 120, "highpass", fs=RATE, output="sos")])  # fmt: skip
    return signal.sosfilt(sos, wave).astype(np.float32)


# The dev set for choosing settings: voices higher than FSDD's six men (x1.2-x1.5, resampled,
# so pitch and formants scale together, which training's feature-space warp does not do) heard
# through microphones and a line unlike training's random channel. Allison stays the final check.
DEV_CONDITIONS = {
    "dev: voice x1.2, presence microphone": lambda w, rng: presence_microphone(
        scaled_voice(w, 1.2)
    ),
    "dev: voice x1.35, telephone": lambda w, rng: telephone(scaled_voice(w, 1.35)),
    "dev: voice x1.5, muffled microphone": lambda w, rng: muffled_microphone(scaled_voice(w, 1.5)),
}


def mu_law_decoded(codes: np.ndarray) -> np.ndarray:
    """8-bit G.711 mu-law codes as samples in [-1, 1]."""
    codes = ~codes.astype(np.uint8)
    exponent, mantissa = (codes >> 4) & 7, codes & 15
    magnitude = ((mantissa.astype(np.int32) << 3) + 132 << exponent) - 132
    return (np.where(codes & 128, -magnitude, magnitude) / 32768.0).astype(np.float32)


def saytime() -> tuple[list[np.ndarray], list[str]] | None:
    """The digits 0-9 of Debian's ``saytime`` (a real voice, headerless 8 kHz mu-law), or None
    when the package is not installed."""
    paths = [SAYTIME / f"{d}.au" for d in range(10)]
    if not all(p.is_file() for p in paths):
        return None
    return [mu_law_decoded(np.fromfile(p, np.uint8)) for p in paths], [str(d) for d in range(10)]


def allison() -> tuple[list[np.ndarray], list[str]] | None:
    """Allison's digits 0-9 (8 kHz), or None when the Debian package is not installed."""
    paths = [ALLISON / f"{d}.wav" for d in range(10)]
    if not all(p.is_file() for p in paths):
        return None
    return [features.read_wav(p) for p in paths], [str(d) for d in range(10)]


# ---- scoring --------------------------------------------------------------------------------
def joined(waves: list[np.ndarray], digits: list[str], count: int, rng: np.random.Generator):
    """``count`` strings of 3-5 of one voice's recordings joined with 0.1-0.3 s gaps."""
    strings, labels = [], []
    for _ in range(count):
        chosen = rng.choice(len(waves), size=rng.integers(3, 6))
        parts = []
        for i in chosen:
            parts += [
                rng.normal(scale=1e-4, size=rng.integers(RATE // 10, 3 * RATE // 10)),
                waves[i],
            ]
        parts.append(rng.normal(scale=1e-4, size=RATE // 10))
        strings.append(np.concatenate(parts).astype(np.float32))
        labels.append("".join(digits[i] for i in chosen))
    return strings, labels


def isolated_accuracy(
    model, voices: dict[str, tuple[list, list]], classes: list[str], per_batch: int = 10
) -> float:
    """Accuracy with each voice's recordings in batches of ``per_batch``: a model trained on
    speaker normalisation takes the voice's statistics from the batch it is given."""
    right = total = 0
    for waves, digits in voices.values():
        for start in range(0, len(waves), per_batch):
            chunk = slice(start, start + per_batch)
            probabilities = np.asarray(model.predict_on_batch(audio_batch(waves[chunk])))
            right += sum(classes[k] == d for k, d in zip(probabilities.argmax(1), digits[chunk]))
            total += len(digits[chunk])
    return right / total


def ctc_scores(model, voices: dict[str, tuple[list, list]], cfg: SpeechConfig, seed: int):
    """(single-digit accuracy, WER on joined digits) of a CTC model over the voices."""
    rng = np.random.default_rng(seed)
    singles, references, hypotheses = [], [], []
    for waves, digits in voices.values():
        strings, labels = joined(waves, digits, 20, rng)
        for batch, truth in ((waves, digits), (strings, labels)):
            logits = list(np.asarray(model.predict_on_batch(audio_batch(batch))))
            steps = [-(-(1 + len(w) // features.FRAME_STEP) // cfg.conv_stride) for w in batch]
            decoded = ctc_transcripts(logits, steps, "beam_search", cfg.beam_width)
            if batch is waves:
                singles += [d == t for d, t in zip(decoded, truth)]
            else:
                references += truth
                hypotheses += decoded
    return float(np.mean(singles)), transcript_errors(references, hypotheses)["wer"]


def condition_voices(seed: int) -> dict[str, dict[str, tuple[list, list]]]:
    """Condition -> voice -> (waveforms, digits): the FSDD sample under each condition and the
    dev conditions, saytime's voice, and Allison (the final check) when installed."""
    waves, digits, speakers = sample_recordings()
    rng = np.random.default_rng(seed)
    table = {}
    for name, transform in (CONDITIONS | DEV_CONDITIONS).items():
        voices = {}
        for speaker in sorted(set(speakers)):
            index = [i for i, s in enumerate(speakers) if s == speaker]
            voices[speaker] = (
                [transform(waves[i], rng) for i in index],
                [digits[i] for i in index],
            )
        table[name if name.startswith("dev:") else f"FSDD voices, {name}"] = voices
    said, spoken = saytime(), allison()
    if said:
        table["saytime (Debian saytime), as recorded"] = {"saytime": said}
    if spoken:
        table["Allison (asterisk prompts), as recorded"] = {"allison": spoken}
        table["Allison, telephone"] = {"allison": ([telephone(w) for w in spoken[0]], spoken[1])}
    return table


def measure(cfg: SpeechConfig, opts: RunOptions) -> pd.DataFrame:
    """Train both models with the sample held out, then score every condition."""
    waves, digits, _ = sample_recordings()
    task = SampleHeldOut(shipped_rows(waves, digits))
    isolated = run(task, dataclasses.replace(cfg, mode="isolated", split="random"), opts)
    ctc_cfg = dataclasses.replace(cfg, mode="ctc", split="random")
    ctc = run(task, ctc_cfg, opts)
    table = scores(isolated.model, ctc.model, ctc_cfg, task.rows)
    table.attrs["runs"] = (isolated.run_id, ctc.run_id)
    return table


def shipped_frame_scores(isolated, ctc, cfg: SpeechConfig, rows: list[np.ndarray]) -> dict:
    """The sample recordings' shipped frames through the frames models inside the audio ones,
    normalised as the audio path does (each voice by its 10 recordings): what the WAV path
    must reproduce."""
    _, digits, speakers = sample_recordings()
    right, singles = 0, []
    for speaker in sorted(set(speakers)):
        index = [i for i, s in enumerate(speakers) if s == speaker]
        voice = Corpus(speaker, [rows[i] for i in index], [digits[i] for i in index],
                       np.array([speaker] * len(index)), list(DIGITS))  # fmt: skip
        examples = as_utterances(speaker_normalized(voice))
        found = class_probabilities(frames_model(isolated), examples, 64).argmax(axis=1)
        right += sum(DIGITS[k] == voice.labels[j] for j, k in enumerate(found))
    logits = predict_frames(frames_model(ctc), rows, 64)
    steps = [-(-len(r) // cfg.conv_stride) for r in rows]
    decoded = ctc_transcripts(logits, steps, "beam_search", cfg.beam_width)
    singles = [d == t for d, t in zip(decoded, digits)]
    return {
        "condition": "FSDD voices, their shipped frames (no audio)",
        "isolated_accuracy": right / len(rows),
        "ctc_single_digit_accuracy": float(np.mean(singles)),
    }


def scores(isolated, ctc, cfg: SpeechConfig, shipped: list[np.ndarray]) -> pd.DataFrame:
    """Per condition: isolated accuracy (voice statistics from 10 recordings, about 4 s, and
    from 3), CTC single-digit accuracy and WER on joined digits."""
    rows = [shipped_frame_scores(isolated, ctc, cfg, shipped)]
    for condition, voices in condition_voices(cfg.seed).items():
        single, wer = ctc_scores(ctc, voices, cfg, cfg.seed)
        rows.append(
            {
                "condition": condition,
                "isolated_accuracy": isolated_accuracy(isolated, voices, list("0123456789")),
                "isolated_accuracy_3": isolated_accuracy(isolated, voices, list("0123456789"), 3),
                "ctc_single_digit_accuracy": single,
                "ctc_joined_wer": wer,
            }
        )
    return pd.DataFrame(rows)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser("python -m pipelines.speech.voices", __doc__.strip(), SpeechConfig)
    cfg, opts = split_namespace(parser.parse_args(argv), SpeechConfig)
    if cfg.data != "fsdd":
        print("error: the voices test holds out FSDD's sample recordings: use --data fsdd",
              file=sys.stderr)  # fmt: skip
        return 2
    table = measure(cfg, opts)
    print(table.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    dev = table[table.condition.str.startswith("dev:")].drop(columns="condition").mean()
    print("dev mean:", ", ".join(f"{k} {v:.3f}" for k, v in dev.items()))
    print("runs (isolated, ctc):", *table.attrs["runs"])
    if opts.output:
        Path(opts.output).mkdir(parents=True, exist_ok=True)
        table.to_csv(Path(opts.output) / "voices.csv", index=False)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
