"""Corpora of recordings, honest splits, and connected-digit utterances built from real digits.

FSDD has only isolated digits, so connected speech is synthesised IN FEATURE SPACE: 1-7 real
recordings of one speaker are concatenated frame-wise with short gaps in between and at the
ends, each gap made of that speaker's own quietest frames (their recording background), and
light Gaussian noise is added to every frame. It is not a real connected utterance (no
coarticulation, and the per-recording 80 dB floor of the MFCCs is kept), but every frame is a
real frame of that speaker, which keeps the speaker split meaningful.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from pipelines.core.errors import DataError
from pipelines.speech.normalization import normalized

DIGITS = "0123456789"


@dataclass
class Corpus:
    """Recordings as frame matrices with labels (digit strings or class indices) and speakers.

    ``classes`` name the isolated-mode classes; ``own_test`` marks a data set's own test part;
    ``audio`` says the frames are the audio front-end's MFCCs (so a model of them can be served
    with the front-end inside), not other features such as LPC cepstra.
    """

    name: str
    frames: list[np.ndarray]
    labels: list[str]
    speakers: np.ndarray
    classes: list[str]
    own_test: np.ndarray | None = None
    audio: bool = True

    def __len__(self) -> int:
        return len(self.frames)

    @property
    def single_digits(self) -> bool:
        """True when every label is one digit: connected utterances can be built from them."""
        return all(len(label) == 1 and label in DIGITS for label in self.labels)

    def subset(self, index: np.ndarray) -> Corpus:
        return Corpus(
            self.name,
            [self.frames[i] for i in index],
            [self.labels[i] for i in index],
            self.speakers[index],
            self.classes,
            audio=self.audio,
        )


@dataclass
class Utterances:
    """Model-ready examples: frames, label string (digits, or class name), speaker."""

    frames: list[np.ndarray]
    labels: list[str]
    speakers: np.ndarray

    def __len__(self) -> int:
        return len(self.frames)

    def subset(self, index: np.ndarray) -> Utterances:
        return Utterances(
            [self.frames[i] for i in index], [self.labels[i] for i in index], self.speakers[index]
        )


def split_random(
    n: int, validation: float, test: float, rng: np.random.Generator
) -> dict[str, np.ndarray]:
    """Recordings held out at random (each recording in exactly one part)."""
    order = rng.permutation(n)
    n_test, n_validation = max(1, round(n * test)), max(1, round(n * validation))
    if n - n_test - n_validation < 1:
        raise DataError(f"only {n} recordings: too few to train, validate and test")
    return {
        "test": np.sort(order[:n_test]),
        "validation": np.sort(order[n_test : n_test + n_validation]),
        "train": np.sort(order[n_test + n_validation :]),
    }


def split_speaker(
    speakers: np.ndarray, held_out: str, validation: float, rng: np.random.Generator
) -> dict[str, np.ndarray]:
    """Leave one speaker out: all of ``held_out``'s recordings are the test part."""
    names = sorted(set(speakers.tolist()))
    if len(names) < 2:
        raise DataError("--split speaker needs recordings of at least two speakers")
    if held_out not in names:
        raise DataError(f"--held-out-speaker {held_out!r} is not one of: {', '.join(names)}")
    test = np.flatnonzero(speakers == held_out)
    rest = rng.permutation(np.flatnonzero(speakers != held_out))
    n_validation = max(1, round(len(rest) * validation))
    return {
        "test": test,
        "validation": np.sort(rest[:n_validation]),
        "train": np.sort(rest[n_validation:]),
    }


def quiet_frames(corpus: Corpus, quantile: float = 0.05) -> dict[str, np.ndarray]:
    """Per speaker, the frames with the lowest energy (MFCC 0): their background."""
    pools = {}
    for speaker in np.unique(corpus.speakers):
        stacked = np.concatenate(
            [f for f, s in zip(corpus.frames, corpus.speakers) if s == speaker]
        )
        pools[speaker] = stacked[stacked[:, 0] <= np.quantile(stacked[:, 0], quantile)]
    return pools


def connected_utterances(
    corpus: Corpus,
    count: int,
    rng: np.random.Generator,
    max_digits: int = 7,
    max_gap: int = 6,
    noise: float = 0.05,
) -> Utterances:
    """``count`` utterances of 1..``max_digits`` digits, each spoken by a single speaker.

    Gaps of 0..``max_gap`` frames go before, between and after the digits; ``noise`` is the
    noise standard deviation relative to each coefficient's standard deviation.
    """
    if not corpus.single_digits:
        raise DataError("connected utterances need recordings of single digits")
    pools = quiet_frames(corpus)
    scale = noise * np.concatenate(corpus.frames).std(axis=0)
    by_speaker = {s: np.flatnonzero(corpus.speakers == s) for s in pools}
    names = sorted(by_speaker)
    frames, labels, speakers = [], [], []
    for _ in range(count):
        speaker = names[rng.integers(len(names))]
        chosen = rng.choice(by_speaker[speaker], size=rng.integers(1, max_digits + 1))
        parts = [_gap(pools[speaker], max_gap, rng)]
        for i in chosen:
            parts += [corpus.frames[i], _gap(pools[speaker], max_gap, rng)]
        joined = np.concatenate(parts)
        frames.append((joined + rng.normal(size=joined.shape) * scale).astype(np.float32))
        labels.append("".join(corpus.labels[i] for i in chosen))
        speakers.append(speaker)
    return Utterances(frames, labels, np.array(speakers))


def _gap(pool: np.ndarray, max_gap: int, rng: np.random.Generator) -> np.ndarray:
    return pool[rng.integers(len(pool), size=rng.integers(0, max_gap + 1))]


def speaker_normalized(corpus: Corpus, method: str = "cmvn") -> Corpus:
    """Every recording mapped by its speaker's own frame statistics (``cmvn`` or
    ``histogram``, see :mod:`pipelines.speech.normalization`, the code a logged model runs).

    It reads no labels, so a held-out speaker's recordings may supply their statistics: the
    model needs recordings of a new voice, as any speaker adaptation does."""
    frames = list(corpus.frames)
    for speaker in np.unique(corpus.speakers):
        index = np.flatnonzero(corpus.speakers == speaker)
        lengths = [len(corpus.frames[i]) for i in index]
        padded = np.zeros((len(index), max(lengths), corpus.frames[index[0]].shape[1]), np.float32)
        valid = np.zeros(padded.shape[:2], bool)
        for row, (i, n) in enumerate(zip(index, lengths)):
            padded[row, :n], valid[row, :n] = corpus.frames[i], True
        mapped = normalized(padded, valid, method).numpy()
        for row, (i, n) in enumerate(zip(index, lengths)):
            frames[i] = mapped[row, :n]
    return replace(corpus, frames=frames)


def as_utterances(corpus: Corpus) -> Utterances:
    """Recordings used as they are (isolated mode, or corpora with their own transcripts)."""
    return Utterances(list(corpus.frames), list(corpus.labels), corpus.speakers)
