"""Unsupervised adaptation to a new voice by self-training on its unlabelled recordings.

The speaker-independent model labels the new speaker's recordings; those it labels with
confidence >= ``--adapt-confidence`` join the training data and a copy of the model is
fine-tuned on them, and the round repeats with the sharper copy (pseudo-labelling, Lee 2013;
Yarowsky-style self-training). The new voice's reference labels never reach training: they
only count, for the report, how many pseudo-labels were right.

The score stays honest by cross-fitting: the new voice's recordings are split in two halves,
and each half is scored by a copy adapted on the OTHER half, so no copy has seen (even
unlabelled) the recordings it scores. Self-training alone cannot undo a confident, systematic
confusion (a voice whose "two" sounds like the training voices' "four"): it reinforces it. When
the new voice says every word about equally often (a read word list), ``balanced`` posteriors
undo it: they give each word an equal share of the recordings, so the "two"s that the model
finds least unlike a "two" are called "two" again.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import Any

import keras
import numpy as np

from pipelines.speech.utterances import Utterances


@dataclass
class Adapted:
    """Class probabilities of every new-voice recording (each from the copy adapted on the other
    half), and the pseudo-labels of the last round of both copies: how many, which were right."""

    probabilities: np.ndarray
    pseudo_labels: int
    pseudo_label_accuracy: float | None  # None: no prediction was confident enough


def cross_fitted(
    copy_model: Callable[[], keras.Model],
    new_voice: Utterances,
    train: Utterances,
    classes: list[str],
    rounds: int,
    confidence: float,
    fine_tune: Callable[[keras.Model, Utterances, str], Any],
    predict: Callable[[keras.Model, Utterances], np.ndarray],
    rng: np.random.Generator,
) -> Generator[Any, None, Adapted]:
    """Score each half of ``new_voice`` with a copy of the model self-trained on the other half.

    A generator (a runner stage's plan): it yields ``fine_tune(copy, labelled utterances,
    name)`` (a :class:`pipelines.core.Fit` the runner trains) and returns the :class:`Adapted`
    scores. ``copy_model`` returns a fresh compiled copy of the speaker-independent model;
    ``predict`` returns class probabilities. It is always
    given all of the new voice's recordings, so posteriors balanced over the voice see every one
    of them; a copy's scores are then read from the rows of the half it never trained on.
    """
    order = rng.permutation(len(new_voice))
    halves = np.sort(order[: len(order) // 2]), np.sort(order[len(order) // 2 :])
    probabilities = np.zeros((len(new_voice), len(classes)), np.float32)
    truth = np.array([classes.index(label) for label in new_voice.labels])
    chosen, right = 0, 0
    for copy, (unlabelled, scored) in enumerate((halves, halves[::-1]), start=1):
        adapted = copy_model()
        pool = new_voice.subset(unlabelled)
        confident, labels = np.array([], int), np.array([], int)  # unless a round runs
        for round_ in range(1, rounds + 1):
            confident, labels = pseudo_labelled(predict(adapted, new_voice)[unlabelled], confidence)
            data = joined(train, pool.subset(confident), [classes[i] for i in labels])
            yield fine_tune(adapted, data, f"copy{copy}-round{round_}")
        chosen += len(confident)
        right += int((labels == truth[unlabelled][confident]).sum())
        probabilities[scored] = predict(adapted, new_voice)[scored]
    return Adapted(probabilities, chosen, right / chosen if chosen else None)


def balanced(probabilities: np.ndarray, iterations: int = 100) -> np.ndarray:
    """Posteriors rescaled so every class gets an equal share of the recordings.

    Sinkhorn-Knopp scaling (as in Asano et al. 2020's self-labelling): each class's column is
    multiplied by a factor and each row renormalised, alternately, until the columns sum to the
    same total. Whole classes are rescaled: every recording's odds of one class against another
    change by the same factor, so the recordings that move are the least unlike their new class.
    """
    scaled = probabilities.astype(np.float64) + 1e-12
    for _ in range(iterations):
        scaled /= scaled.sum(axis=0, keepdims=True)
        scaled /= scaled.sum(axis=1, keepdims=True)
    return scaled.astype(np.float32)


def pseudo_labelled(probabilities: np.ndarray, confidence: float) -> tuple[np.ndarray, np.ndarray]:
    """Indices whose top class probability reaches ``confidence``, and that class."""
    confident = np.flatnonzero(probabilities.max(axis=1) >= confidence)
    return confident, probabilities[confident].argmax(axis=1)


def joined(train: Utterances, pseudo: Utterances, labels: list[str]) -> Utterances:
    """The training utterances followed by the pseudo-labelled ones (their labels replaced)."""
    return Utterances(
        train.frames + pseudo.frames,
        train.labels + labels,
        np.concatenate([train.speakers, pseudo.speakers]),
    )
