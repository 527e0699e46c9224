"""Transcribe WAV files with a logged speech model (``--model-uri URI --predict FILE_OR_DIR``).

The logged model takes raw 8 kHz audio (its front-end is inside, see
:func:`pipelines.speech.task.listening_model`); files are only read and, if need be, resampled
to 8 kHz here, by the same :func:`pipelines.speech.features.read_wav` that reads WAV folders
for training. A model trained on speaker-normalised frames normalises each batch as one
voice, so the recordings of each speaker (the first folder under ``--predict``, as in a
training folder) form one batch: a few seconds of a voice make its statistics.
"""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np
import pandas as pd

from pipelines.core.errors import DataError
from pipelines.speech.features import FRAME_STEP, audio_batch, read_wav
from pipelines.speech.utterances import DIGITS


def wav_files(source: str) -> tuple[Path, list[Path]]:
    """The folder names are relative to, and the WAV files of ``source`` (a file or a
    folder, searched recursively), sorted."""
    path = Path(source)
    if path.is_file():
        return path.parent, [path]
    if not path.is_dir():
        raise DataError(f"--predict: no such file or folder: {source}")
    files = sorted(p for p in path.rglob("*") if p.suffix.lower() == ".wav" and p.is_file())
    if not files:
        raise DataError(f"--predict: no .wav files in {source}")
    return path, files


def speaker_of(relative: Path) -> str:
    """The first folder of a file's path under ``--predict``, else ``unknown``."""
    return relative.parts[0] if len(relative.parts) > 1 else "unknown"


def batches(speakers: list[str], one_voice: bool, batch_size: int) -> list[np.ndarray]:
    """Indices of each batch: every speaker's recordings together when the model normalises a
    batch as one voice, else consecutive chunks of ``batch_size``."""
    if one_voice:
        names = sorted(set(speakers))
        return [np.flatnonzero(np.array(speakers) == name) for name in names]
    return [
        np.arange(i, min(i + batch_size, len(speakers)))
        for i in range(0, len(speakers), batch_size)
    ]


def transcribe(
    model: keras.Model,
    source: str,
    mode: str,
    classes: list[str],
    conv_stride: int,
    beam_width: int,
    batch_size: int,
) -> pd.DataFrame:
    """One row per WAV file of ``source``: file, speaker and the model's answer (a digit
    string for CTC models, a class and its probability for isolated ones)."""
    root, files = wav_files(source)
    waves = [read_wav(f) for f in files]
    relative = [f.relative_to(root) for f in files]
    speakers = [speaker_of(r) for r in relative]
    one_voice = any(layer.name == "speaker_normalization" for layer in model.layers)
    answers: list[str] = [""] * len(files)
    confidence = np.full(len(files), np.nan)
    for index in batches(speakers, one_voice, batch_size):
        outputs = np.asarray(model.predict_on_batch(audio_batch([waves[i] for i in index])))
        if mode == "ctc":
            steps = [-(-(1 + len(waves[i]) // FRAME_STEP) // conv_stride) for i in index]
            found = ctc_transcripts(list(outputs), steps, "beam_search", beam_width)
        else:
            found = [classes[k] for k in outputs.argmax(axis=1)]
            confidence[index] = outputs.max(axis=1)
        for i, answer in zip(index, found):
            answers[i] = answer
    table = pd.DataFrame(
        {"file": [str(r) for r in relative], "speaker": speakers, "prediction": answers}
    )
    if mode != "ctc":
        table["confidence"] = confidence
    return table


def ctc_transcripts(
    logits: list[np.ndarray], lengths: list[int], strategy: str, beam_width: int = 1
) -> list[str]:
    """Digit strings decoded by ``keras.ops.ctc_decode`` (greedy or beam search)."""
    padded = keras.utils.pad_sequences(logits, dtype="float32", padding="post")
    decoded, _ = keras.ops.ctc_decode(
        padded, np.array(lengths, np.int32), strategy=strategy, beam_width=beam_width
    )
    best = np.asarray(decoded)[0]
    return ["".join(DIGITS[t - 1] for t in row if t > 0) for row in best]


def lines(table: pd.DataFrame) -> list[str]:
    """One printed line per file: its path and the answer (with the isolated confidence)."""
    if "confidence" in table:
        return [
            f"{f}\t{p}\t{c:.3f}" for f, p, c in table[["file", "prediction", "confidence"]].values
        ]
    return [f"{f}\t{p}" for f, p in table[["file", "prediction"]].values]
