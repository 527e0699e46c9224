"""TFDS builders for the real anomaly-labelled series shipped in sktime and aeon.

Each builder yields whole series (one example per part) so tasks window them in tf.data.
``tfds.load("mitdb")`` works after ``import pipelines.datasets``; files are prepared once into
the TFDS data directory (``$TFDS_DATA_DIR`` or ~/tensorflow_datasets) with no network.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import tensorflow_datasets as tfds

from pipelines.core.errors import DataError
from pipelines.core.packaged import PackagedFile, prepared_builder
from pipelines.core.timeseries import TimeSeries

MITDB = PackagedFile(
    "sktime",
    "1.2.0",
    "datasets/data/mitdb/mitdb.csv",
    "d4f2539a5e85e1ac1e7f8bba152b5e60a02356282463a8a1c97848ad3e1bb386",
    "MIT-BIH Arrhythmia Database excerpt (PhysioNet, ODC-By 1.0) via sktime (BSD-3)",
)
UCR135_DIR = "datasets/data/KDD-TSAD_135/135_UCR_Anomaly_InternalBleeding16_{}.csv"
UCR135_TRAIN = PackagedFile(
    "aeon",
    "1.6.0",
    UCR135_DIR.format("TRAIN"),
    "a531b6f4f556b17c0321d144c3f6b4a7bdf5e8464b2218566181702e77962c2b",
    "UCR Time Series Anomaly Archive (Wu & Keogh 2021) via aeon (BSD-3)",
)
UCR135_TEST = PackagedFile(
    "aeon",
    "1.6.0",
    UCR135_DIR.format("TEST"),
    "fe26577b94896943e8205d04d56bf2511fe05c008df535a1ec3826adff3597e2",
    UCR135_TRAIN.license,
)

_SERIES_FEATURES = tfds.features.FeaturesDict(
    {
        "timestamp": tfds.features.Tensor(shape=(None,), dtype=np.float64),
        "value": tfds.features.Tensor(shape=(None, 1), dtype=np.float32),
        "label": tfds.features.Tensor(shape=(None,), dtype=np.int32),
    }
)


def _series_example(timestamps, values, labels) -> dict[str, np.ndarray]:
    return {
        "timestamp": np.asarray(timestamps, np.float64),
        "value": np.asarray(values, np.float32).reshape(-1, 1),
        "label": np.asarray(labels, np.int32),
    }


class Mitdb(tfds.core.GeneratorBasedBuilder):
    """MIT-BIH ECG excerpt: 7,500 samples with one labelled anomalous beat sequence (352 points)."""

    VERSION = tfds.core.Version("1.0.0")

    def _info(self) -> tfds.core.DatasetInfo:
        return self.dataset_info_from_configs(
            features=_SERIES_FEATURES,
            homepage="https://physionet.org/content/mitdb/",
            description=MITDB.license,
        )

    def _split_generators(self, dl_manager):
        return {"full": self._generate_examples()}

    def _generate_examples(self):
        frame = pd.read_csv(MITDB.path())
        yield "mitdb", _series_example(np.arange(len(frame)), frame["data"], frame["label"])


class Ucr135(tfds.core.GeneratorBasedBuilder):
    """UCR anomaly archive #135 (InternalBleeding16): a normal train part, a labelled test part."""

    VERSION = tfds.core.Version("1.0.0")

    def _info(self) -> tfds.core.DatasetInfo:
        return self.dataset_info_from_configs(
            features=_SERIES_FEATURES,
            homepage="https://www.cs.ucr.edu/~eamonn/time_series_data_2018/",
            description=UCR135_TRAIN.license,
        )

    def _split_generators(self, dl_manager):
        return {
            "train": self._generate_examples(UCR135_TRAIN),
            "test": self._generate_examples(UCR135_TEST),
        }

    def _generate_examples(self, source: PackagedFile):
        frame = pd.read_csv(source.path())
        yield "series", _series_example(frame["timestamp"], frame["value"], frame["is_anomaly"])


def load_series(name: str, data_dir: str | None = None) -> TimeSeries:
    """A registered or ``tfds:NAME`` series builder as one TimeSeries (a ``test`` split, when
    the builder has one, is appended and marked by ``test_start``)."""
    builder_name = name.removeprefix("tfds:")
    try:
        tfds.builder_cls(builder_name)
    except tfds.core.registered.DatasetNotFoundError:
        raise DataError(f"unknown data set {name!r}; known series: {', '.join(SERIES)}") from None
    builder = prepared_builder(builder_name, data_dir)  # never a download
    splits = list(builder.info.splits)
    parts = [s for s in ("full", "train") if s in splits] or splits[:1]
    if "test" in splits and "test" not in parts:
        parts.append("test")
    arrays = [next(iter(tfds.as_numpy(builder.as_dataset(split=p)))) for p in parts]
    missing = {"value"} - set(arrays[0])
    if missing:
        raise DataError(f"{name} is not a series data set (needs a 'value' feature)")
    values = np.concatenate([a["value"] for a in arrays]).astype(np.float32)
    labels = np.concatenate([a["label"] for a in arrays]) if "label" in arrays[0] else None
    return TimeSeries(
        timestamps=np.arange(len(values)),
        values=values.reshape(len(values), -1),
        columns=["value"],
        labels=labels,
        test_start=len(arrays[0]["value"]) if parts[-1] == "test" else None,
        name=builder_name,
    )


SERIES = {"mitdb": Mitdb, "ucr135": Ucr135}


# ---- a synthetic corpus of labelled streaming series (NAB-like) ----------------------------------
# Development data with known answers for the online detector: series that look like server
# metrics, sensor readings, traffic, tweet and ad-click counts (spiky noise that is NORMAL, daily
# and weekly seasonality, trends, irregular sampling), with anomalies of known kinds placed
# anywhere, labelled as NAB labels them: one window per anomaly, 10 % of the file length split
# over the file's anomalies, centred on the anomaly's onset.

NAB_WINDOW_SHARE = 0.10


@dataclass
class LabelledSeries:
    """One synthetic file: its relative path (``category/name.csv``), rows and anomaly onsets."""

    path: str
    frame: pd.DataFrame  # timestamp, value
    onsets: list[int]
    kinds: list[str]

    def windows(self) -> list[tuple[int, int]]:
        """NAB's windows as inclusive row ranges (overlapping ones merged, as NAB does)."""
        return nab_windows(len(self.frame), self.onsets)


def nab_windows(n: int, onsets: list[int]) -> list[tuple[int, int]]:
    """Windows of ``0.1 * n / len(onsets)`` rows centred on each onset (NAB's labeller)."""
    if not onsets:
        return []
    half = int(NAB_WINDOW_SHARE * n / len(onsets)) // 2
    merged: list[tuple[int, int]] = []
    for onset in sorted(onsets):
        start, end = max(onset - half, 0), min(onset + half, n - 1)
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], end)
        else:
            merged.append((start, end))
    return merged


def _ar1(rng: np.random.Generator, n: int, phi: float, sigma: float) -> np.ndarray:
    shocks = rng.normal(0.0, sigma * np.sqrt(1 - phi**2), n)
    out = np.empty(n)
    out[0] = rng.normal(0.0, sigma)
    for t in range(1, n):
        out[t] = phi * out[t - 1] + shocks[t]
    return out


def _daily(n: int, period: int, phase: float, sharpness: float = 1.0) -> np.ndarray:
    """A daily profile in [0, 1]: low at night, a broad peak in the day."""
    wave = 0.5 * (1 - np.cos(2 * np.pi * (np.arange(n) / period + phase)))
    return wave**sharpness


def _normal_spikes(rng, n: int, rate: float, size: float) -> np.ndarray:
    """Heavy-tailed spikes that are part of normal behaviour (never labelled)."""
    spikes = np.zeros(n)
    at = rng.random(n) < rate
    spikes[at] = size * rng.lognormal(0.0, 0.6, at.sum())
    return spikes


def _server_metric(rng, n):
    level = rng.uniform(5, 60)
    noise = _ar1(rng, n, rng.uniform(0.5, 0.95), level * rng.uniform(0.02, 0.1))
    values = level + noise + _normal_spikes(rng, n, rng.uniform(0.002, 0.01), level * 0.5)
    return np.clip(values, 0, None).round(3), 288, level * 0.06


def _request_latency(rng, n):
    base = rng.uniform(20, 60)
    values = base + rng.gamma(2.0, base * 0.03, n) + _normal_spikes(rng, n, 0.004, base)
    return values.round(2), 288, base * 0.06


def _seasonal_counts(rng, n, period):
    base = rng.uniform(20, 200)
    week = 1 + 0.25 * (((np.arange(n) // period) % 7) >= 5)
    rate = base * (0.3 + _daily(n, period, rng.random(), rng.uniform(1, 3))) / week
    values = rng.poisson(rate) + _normal_spikes(rng, n, 0.003, base).round()
    return values.astype(float), period, np.sqrt(base)


def _temperature(rng, n, period):
    level = rng.uniform(60, 90)
    drift = np.cumsum(rng.normal(0, 0.02, n))
    daily = rng.uniform(1, 4) * np.sin(2 * np.pi * np.arange(n) / period + rng.random() * 6)
    values = level + drift + daily + _ar1(rng, n, 0.9, 0.6)
    return values.round(3), period, 0.6


def _traffic(rng, n, period):
    speed = rng.uniform(50, 75)
    rush = 1 - 0.35 * _daily(n, period, rng.random(), 4.0)
    values = speed * rush + rng.normal(0, 2.5, n)
    return np.clip(values, 0, None).round(), period, 2.5


def _ad_clicks(rng, n, period):
    base = rng.uniform(0.1, 1.0)
    values = base * (0.7 + 0.6 * _daily(n, period, rng.random())) * rng.lognormal(0, 0.25, n)
    return values.round(4), period, base * 0.25


def _artificial(rng, n, period):
    low, high = rng.uniform(10, 30), rng.uniform(60, 90)
    square = (np.arange(n) % period) < period * rng.uniform(0.3, 0.6)
    values = np.where(square, high, low) + rng.normal(0, rng.uniform(0.5, 3), n)
    return values.round(3), period, 2.0


def _inject(rng, values: np.ndarray, onset: int, kind: str, sigma: float, period: int) -> None:
    """Put one anomaly of ``kind`` at ``onset`` (in place); ``sigma``: the normal noise level."""
    n = len(values)
    nonnegative = values.min() >= 0
    length = int(rng.integers(max(20, period // 4), max(40, 2 * period)))
    stop = min(n, onset + length)
    sign = rng.choice([-1.0, 1.0])
    if kind == "spike":
        width = int(rng.integers(1, 4))
        values[onset : onset + width] += sign * rng.uniform(8, 20) * sigma
    elif kind == "level_shift":
        values[onset:] += sign * rng.uniform(4, 10) * sigma
    elif kind == "temporary_drop":  # a failure: the value collapses, then recovers
        values[onset:stop] = values[onset:stop].min() * 0.2 + rng.normal(
            0, 0.3 * sigma, stop - onset
        )
    elif kind == "flatline":  # a stuck sensor
        values[onset:stop] = values[onset]
    elif kind == "variance_change":
        centre = values[onset:stop].mean()
        values[onset:stop] = centre + (values[onset:stop] - centre) * rng.uniform(3, 6)
    elif kind == "frequency_change":
        span = np.arange(stop - onset)
        values[onset:stop] += (
            rng.uniform(4, 8) * sigma * np.sin(2 * np.pi * span / max(6, period / 8))
        )
    elif kind == "drift":
        ramp = np.minimum(np.arange(n - onset) / (2 * length), 1.0)
        values[onset:] += sign * rng.uniform(6, 12) * sigma * ramp
    elif kind == "spike_density":
        bursts = rng.random(stop - onset) < 0.08
        values[onset:stop] += bursts * rng.uniform(5, 10) * sigma
    else:
        raise ValueError(f"unknown anomaly kind {kind!r}")
    if nonnegative:  # a count or a utilisation never goes below zero
        np.maximum(values, 0.0, out=values)


ANOMALY_KINDS = (
    "spike",
    "level_shift",
    "temporary_drop",
    "flatline",
    "variance_change",
    "frequency_change",
    "drift",
    "spike_density",
)
# (category, generator, rows, sampling minutes, files, anomalies per file, kinds it gets)
_CORPUS_PLAN = (
    ("artificialWithAnomaly", _artificial, 4032, 5, 5, (1, 2), ANOMALY_KINDS),
    ("artificialNoAnomaly", _artificial, 4032, 5, 2, (0, 0), ()),
    ("serverMetrics", _server_metric, 4032, 5, 9, (1, 3), ANOMALY_KINDS),
    (
        "serverMetrics",
        _request_latency,
        4032,
        5,
        3,
        (1, 2),
        ("spike", "level_shift", "spike_density"),
    ),
    ("knownCause", _temperature, 22695, 5, 1, (2, 4), ("temporary_drop", "drift", "flatline")),
    (
        "knownCause",
        _seasonal_counts,
        10320,
        30,
        1,
        (3, 5),
        ("spike", "temporary_drop", "frequency_change"),
    ),
    ("knownCause", _temperature, 7267, 60, 1, (2, 2), ("level_shift", "variance_change")),
    (
        "traffic",
        _traffic,
        2500,
        15,
        4,
        (1, 3),
        ("spike", "level_shift", "temporary_drop", "flatline"),
    ),
    ("tweets", _seasonal_counts, 15800, 5, 3, (2, 4), ("spike", "level_shift", "variance_change")),
    ("adClicks", _ad_clicks, 1600, 60, 3, (1, 2), ("spike", "level_shift", "variance_change")),
)


def nab_like_corpus(seed: int = 0, size: float = 1.0) -> list[LabelledSeries]:
    """The synthetic corpus: 32 files (~250k rows at ``size`` 1; fewer rows for a smaller size)."""
    rng = np.random.default_rng(seed)
    files = []
    names: dict[str, int] = {}
    for category, make, rows, minutes, count, (low, high), kinds in _CORPUS_PLAN:
        for _ in range(count):
            n = max(400, int(rows * size))
            period = max(8, int(24 * 60 / minutes)) if minutes < 60 * 24 else 7
            args = (rng, n) if make in (_server_metric, _request_latency) else (rng, n, period)
            values, period, sigma = make(*args)
            chosen = (
                [str(k) for k in rng.choice(kinds, int(rng.integers(low, high + 1)))]
                if kinds
                else []
            )
            onsets = _spread_onsets(rng, n, len(chosen))
            for onset, kind in zip(onsets, chosen):
                _inject(rng, values, onset, kind, sigma, period)
            stamps = _timestamps(rng, n, minutes, irregular=category == "traffic")
            stem = f"{category}/{make.__name__.strip('_')}"
            names[stem] = names.get(stem, -1) + 1
            name = f"{stem}_{names[stem]}.csv"
            frame = pd.DataFrame({"timestamp": stamps, "value": values})
            files.append(LabelledSeries(name, frame, onsets, chosen))
    return files


def _spread_onsets(rng, n: int, count: int) -> list[int]:
    """Onsets anywhere from 8 % of the file (some inside the probationary period) to near its
    end, at least a tenth of the file apart."""
    onsets: list[int] = []
    while len(onsets) < count:
        candidate = int(rng.integers(int(0.08 * n), int(0.95 * n)))
        if all(abs(candidate - o) > n // 10 for o in onsets):
            onsets.append(candidate)
    return sorted(onsets)


def _timestamps(rng, n: int, minutes: int, irregular: bool) -> pd.DatetimeIndex:
    steps = np.full(n, float(minutes))
    if irregular:  # traffic sensors report late or skip readings
        steps *= rng.choice([1, 1, 1, 1, 2, 3], n) * rng.uniform(0.9, 1.1, n)
    offsets = pd.to_timedelta(np.cumsum(steps).round(), unit="min")
    return pd.Timestamp("2025-03-01") + offsets


def write_nab_like_corpus(directory: str | Path, seed: int = 0, size: float = 1.0) -> Path:
    """Write the corpus as NAB lays it out: ``<dir>/<category>/<name>.csv`` plus
    ``<dir>/combined_windows.json``; returns the labels file."""
    directory = Path(directory)
    windows = {}
    for item in nab_like_corpus(seed, size):
        path = directory / item.path
        path.parent.mkdir(parents=True, exist_ok=True)
        frame = item.frame.assign(
            timestamp=item.frame["timestamp"].dt.strftime("%Y-%m-%d %H:%M:%S")
        )
        frame.to_csv(path, index=False)
        stamps = frame["timestamp"].to_numpy()
        windows[item.path] = [[stamps[s], stamps[e]] for s, e in item.windows()]
    labels = directory / "combined_windows.json"
    labels.write_text(json.dumps(windows, indent=1) + "\n")
    return labels
