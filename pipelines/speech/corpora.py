"""Where recordings come from: the packaged builders, a folder of WAV files, or tfds catalogues.

A WAV folder holds ``*.wav`` files (PCM, 8 kHz or more: other rates are resampled to 8 kHz)
and a transcript file, ``transcripts.txt`` by default, one line per recording::

    # name                transcript (digits, with or without spaces, or digit words)
    alice/take1.wav       3 1 4
    bob/take7.wav         nine nine two

Names are paths relative to the folder; the first folder of a name is its speaker (files at
the top level belong to speaker ``unknown``). WAV files the transcript does not name are
ignored. Every problem (missing or empty folder, missing file, characters outside 0-9, a rate
below 8 kHz, zero-length audio) is a DataError before any training starts.
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import tensorflow_datasets as tfds

from pipelines.core.errors import DataError
from pipelines.core.packaged import prepare
from pipelines.core.text import decode_utf8
from pipelines.speech.features import read_wav, resampled, waveform_features
from pipelines.speech.utterances import DIGITS, Corpus

BUILTIN = ("fsdd", "japanese_vowels")
_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
DIGIT_WORDS = dict(zip(_WORDS, DIGITS))


def load_corpus(spec: str, transcripts: str = "transcripts.txt") -> Corpus:
    """The recordings named by ``--data``. Packaged corpora are read once per process (runs in
    a notebook or test session reuse them); callers never modify a Corpus in place."""
    name = spec.removeprefix("tfds:")
    if name == "fsdd":
        return _fsdd()
    if name == "japanese_vowels":
        return _japanese_vowels()
    if spec == "tfds:speech_commands":
        return _speech_commands()
    if spec.startswith("tfds:"):
        raise DataError(f"unsupported tfds data set {name!r}; use speech_commands or {BUILTIN}")
    if "/" in spec or Path(spec).exists():
        return read_folder(Path(spec), transcripts)
    raise DataError(
        f"unknown data set {spec!r}; use {', '.join(BUILTIN)}, tfds:speech_commands or a folder"
    )


def _prepared(name: str):
    import pipelines.datasets  # noqa: F401  (registers the builders)

    return prepare(tfds.builder(name))


@functools.cache
def _fsdd() -> Corpus:
    builder = _prepared("fsdd")
    speaker_names = builder.info.features["speaker"].names
    rows = list(tfds.as_numpy(builder.as_dataset(split="train")))
    return Corpus(
        "fsdd",
        [r["mfcc"] for r in rows],
        [DIGITS[r["digit"]] for r in rows],
        np.array([speaker_names[r["speaker"]] for r in rows]),
        list(DIGITS),
    )


@functools.cache
def _japanese_vowels() -> Corpus:
    builder = _prepared("japanese_vowels")
    names = builder.info.features["speaker"].names
    rows = {s: list(tfds.as_numpy(builder.as_dataset(split=s))) for s in ("train", "test")}
    everything = rows["train"] + rows["test"]
    labels = [names[r["speaker"]] for r in everything]
    return Corpus(
        "japanese_vowels",
        [r["lpc"] for r in everything],
        labels,
        np.array(labels),
        names,
        own_test=np.arange(len(everything)) >= len(rows["train"]),
        audio=False,
    )


def _speech_commands() -> Corpus:
    """Speech Commands v0.02 as tfds prepares it: 12 command classes at 16 kHz.

    tfds folds the spoken digits into ``_unknown_``, so this corpus has command words (for
    ``--mode isolated``), not digits; speakers are not among its features.
    """
    builder = tfds.builder("speech_commands")
    if not builder.is_prepared():
        raise DataError(
            f"tfds:speech_commands is not prepared in {builder.data_dir}; it needs a download "
            "(2.4 GB): run `tfds build speech_commands` on a machine with network access"
        )
    names = builder.info.features["label"].names
    waves, labels, test = [], [], []
    for split in ("train", "validation", "test"):
        for row in tfds.as_numpy(builder.as_dataset(split=split)):
            waves.append(resampled(row["audio"].astype(np.float32) / 32768.0, 16000))
            labels.append(names[row["label"]])
            test.append(split == "test")
    frames = waveform_features(waves)
    return Corpus(
        "speech_commands",
        frames,
        labels,
        np.full(len(labels), "unknown"),
        names,
        own_test=np.array(test),
    )


def read_folder(folder: Path, transcripts: str = "transcripts.txt") -> Corpus:
    """Recordings of a WAV folder with their transcripts (format in the module docstring)."""
    if not folder.is_dir():
        raise DataError(f"audio folder not found: {folder}")
    if not any(folder.rglob("*.wav")):
        raise DataError(f"no .wav files in {folder}")
    listing = folder / transcripts
    if not listing.is_file():
        raise DataError(f"{folder} has no {transcripts} (lines: `name.wav 3 1 4`)")
    entries = parse_transcripts(listing)
    missing = [name for name, _ in entries if not (folder / name).is_file()]
    if missing:
        raise DataError(f"{transcripts} names missing file(s): {', '.join(missing[:5])}")
    frames = waveform_features([read_wav(folder / name) for name, _ in entries])
    speakers = [speaker_of(name) for name, _ in entries]
    return Corpus(
        folder.name, frames, [text for _, text in entries], np.array(speakers), list(DIGITS)
    )


def speaker_of(name: str) -> str:
    """The first folder of a recording's relative path, else ``unknown``."""
    parts = Path(name).parts
    return parts[0] if len(parts) > 1 else "unknown"


def parse_transcripts(path: Path) -> list[tuple[str, str]]:
    """``(file name, digit string)`` per line; DataError on text outside the vocabulary."""
    text = decode_utf8(path.read_bytes(), path.name)
    entries = []
    for number, line in enumerate(text.splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        name, *rest = line.split(maxsplit=1)
        text = rest[0] if rest else ""
        digits = normalise_transcript(text, f"{path.name} line {number} ({name})")
        entries.append((name, digits))
    if not entries:
        raise DataError(f"{path.name} lists no recordings")
    return entries


def normalise_transcript(text: str, where: str) -> str:
    """Digit string of a transcript written as digits or English digit words."""
    words = [DIGIT_WORDS.get(w, w) for w in text.lower().split()]
    digits = "".join(words)
    if not digits:
        raise DataError(f"{where}: empty transcript")
    outside = sorted(set(digits) - set(DIGITS))
    if outside:
        raise DataError(f"{where}: characters outside the vocabulary 0-9: {''.join(outside)!r}")
    return digits
