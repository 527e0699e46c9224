"""Preparing a packaged data set: once, even when several runs start together."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np

from pipelines.datasets import load_forecast_series


def test_runs_starting_together_prepare_a_data_set_once_and_all_read_it(tmp_path):
    """Unlocked, simultaneous first runs raced on TFDS's temporary files and failed with
    'Failed to finalize writing of split'."""
    with ThreadPoolExecutor(3) as pool:
        loaded = list(pool.map(lambda _: load_forecast_series("taylor", str(tmp_path)), range(3)))
    (first, season), *others = loaded
    assert season == 336 and len(first) > 1000
    for series, _ in others:
        np.testing.assert_array_equal(series.values, first.values)
    assert len(list(tmp_path.rglob("dataset_info.json"))) == 1
