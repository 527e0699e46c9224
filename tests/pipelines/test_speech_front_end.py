"""The audio front-end against the frames FSDD ships: the 60 original recordings of
``tests/data/fsdd_sample`` must give the MFCCs of their own rows of ``digits.npz``."""

from __future__ import annotations

import numpy as np

from pipelines.speech import features
from tests.pipelines import fsdd_sample


def test_every_sample_recording_gives_the_shipped_frames_of_one_recording_of_its_digit():
    best, error, runner_up = fsdd_sample.matches()
    assert len(best) == 60 and len(set(best.tolist())) == 60  # one row each, none shared
    assert error.max() < 2e-3  # float32 against the shipped float32 frames, per coefficient
    assert runner_up.min() > 1.0  # and no other recording of the digit comes anywhere near


def test_batched_front_end_gives_each_recording_its_own_frames():
    _, waves, _ = fsdd_sample.recordings()
    alone = features.waveform_features(waves[:6])
    lengths = [len(w) for w in waves[:6]]
    padded = np.zeros((6, max(lengths)), np.float32)
    for row, wave in enumerate(waves[:6]):
        padded[row, : len(wave)] = wave
    batch = features.mfcc_batch(padded, lengths).numpy()
    for frames, row in zip(alone, batch):
        np.testing.assert_allclose(row[: len(frames)], frames, atol=1e-3)
        assert not row[len(frames) :].any()
