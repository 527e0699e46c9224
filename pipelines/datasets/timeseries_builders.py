"""TFDS builders for the real anomaly-labelled series shipped in sktime and aeon.

Each builder yields whole series (one example per part) so tasks window them in tf.data.
``tfds.load("mitdb")`` works after ``import pipelines.datasets``; files are prepared once into
the TFDS data directory (``$TFDS_DATA_DIR`` or ~/tensorflow_datasets) with no network.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import tensorflow_datasets as tfds

from pipelines.core.errors import DataError
from pipelines.core.packaged import PackagedFile
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
        builder = tfds.builder(builder_name, data_dir=data_dir)
    except tfds.core.registered.DatasetNotFoundError:
        raise DataError(f"unknown data set {name!r}; known series: {', '.join(SERIES)}") from None
    tfds.disable_progress_bar()
    builder.download_and_prepare(
        download_config=tfds.download.DownloadConfig(try_download_gcs=False)
    )
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
