"""Time-series plumbing shared by the anomaly and forecasting tasks: reading, validating,
splitting, scaling and windowing a series."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd
import tensorflow as tf

from pipelines.core.errors import DataError


@dataclass
class TimeSeries:
    """A (multivariate) series: ``values`` [N, F] float32, optional 0/1 ``labels`` [N].

    ``test_start`` marks where a data set's own held-out part begins (e.g. UCR's TEST file);
    None means the task splits chronologically.
    """

    timestamps: np.ndarray
    values: np.ndarray
    columns: list[str]
    labels: np.ndarray | None = None
    test_start: int | None = None
    name: str = ""

    def __len__(self) -> int:
        return len(self.values)

    def slice(self, start: int, stop: int) -> TimeSeries:
        labels = None if self.labels is None else self.labels[start:stop]
        return replace(
            self,
            timestamps=self.timestamps[start:stop],
            values=self.values[start:stop],
            labels=labels,
            test_start=None,
        )


def read_series_csv(
    path: str | Path,
    time_column: str = "",
    value_columns: list[str] | None = None,
    label_column: str = "",
    fill_missing: bool = False,
) -> TimeSeries:
    """Read and validate a CSV series; every problem becomes one clear DataError.

    Without ``value_columns`` every numeric column but the time and label columns is a value.
    ``fill_missing`` interpolates NaN/inf in time instead of refusing them.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"data file not found: {path}")
    try:
        frame = pd.read_csv(path)
    except pd.errors.EmptyDataError:
        raise DataError(f"data file is empty: {path}") from None
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise DataError(f"cannot parse {path} as CSV: {exc}") from None
    if frame.empty:
        raise DataError(f"data file has no rows: {path}")
    wanted = [c for c in [time_column, label_column, *(value_columns or [])] if c]
    unknown = [c for c in wanted if c not in frame.columns]
    if unknown:
        raise DataError(
            f"{path.name} has no column(s) {', '.join(unknown)}; "
            f"columns are {', '.join(map(str, frame.columns))}"
        )
    if value_columns:
        columns = list(value_columns)
    else:
        excluded = {time_column, label_column}
        columns = [
            c
            for c in frame.columns
            if c not in excluded and pd.api.types.is_numeric_dtype(frame[c])
        ]
    if not columns:
        raise DataError(f"{path.name} has no numeric value column")
    try:
        values = frame[columns].apply(pd.to_numeric, errors="raise").to_numpy(np.float64)
    except (ValueError, TypeError):
        raise DataError(
            f"value column(s) {', '.join(columns)} of {path.name} are not numeric"
        ) from None
    values = _check_finite(values, path.name, fill_missing)
    timestamps = _timestamps(frame, time_column, path.name)
    labels = None
    if label_column:
        labels = frame[label_column].to_numpy()
        if not np.isin(labels, (0, 1)).all():
            raise DataError(f"label column {label_column!r} of {path.name} must hold only 0 and 1")
        labels = labels.astype(np.int32)
    return TimeSeries(timestamps, values.astype(np.float32), columns, labels, name=path.stem)


def _check_finite(values: np.ndarray, name: str, fill_missing: bool) -> np.ndarray:
    bad = ~np.isfinite(values)
    if not bad.any():
        return values
    if not fill_missing:
        first = int(np.argwhere(bad)[0, 0])
        raise DataError(
            f"{name} has {int(bad.sum())} NaN/inf value(s) (first at row {first});"
            " pass --fill-missing to interpolate them"
        )
    frame = pd.DataFrame(np.where(bad, np.nan, values))
    filled = frame.interpolate(limit_direction="both").to_numpy()
    if not np.isfinite(filled).all():
        raise DataError(f"{name}: a value column has no finite value to interpolate from")
    return filled


def _timestamps(frame: pd.DataFrame, time_column: str, name: str) -> np.ndarray:
    if not time_column:
        return np.arange(len(frame))
    column = frame[time_column]
    if pd.api.types.is_numeric_dtype(column):
        return column.to_numpy()
    parsed = pd.to_datetime(column, errors="coerce")
    if parsed.isna().any():
        raise DataError(f"time column {time_column!r} of {name} has unparseable timestamps")
    return parsed.to_numpy()


def check_time_order(timestamps: np.ndarray, name: str) -> None:
    """Refuse duplicated or non-increasing timestamps: windows would mix unrelated points."""
    steps = np.diff(timestamps)
    zero = (
        steps.astype("timedelta64[ns]") == np.timedelta64(0)
        if steps.dtype.kind == "m"
        else steps == 0
    )
    if zero.any():
        raise DataError(
            f"{name} has duplicated timestamps (first at row {int(np.argmax(zero)) + 1})"
        )
    negative = steps < np.timedelta64(0) if steps.dtype.kind == "m" else steps < 0
    if negative.any():
        raise DataError(
            f"{name} timestamps are not increasing (row {int(np.argmax(negative)) + 1})"
        )


def split_points(n: int, validation_fraction: float, test_fraction: float) -> tuple[int, int]:
    """Chronological split indices (train_end, validation_end): the future is never trained on."""
    train_end = int(round(n * (1 - validation_fraction - test_fraction)))
    validation_end = int(round(n * (1 - test_fraction)))
    return train_end, validation_end


@dataclass
class Standardizer:
    """Per-feature z-scaling fitted on the training part only (no peeking at the future)."""

    mean: np.ndarray
    std: np.ndarray

    @classmethod
    def fit(cls, values: np.ndarray) -> Standardizer:
        std = values.std(axis=0)
        return cls(values.mean(axis=0), np.where(std > 0, std, 1.0))

    def transform(self, values: np.ndarray) -> np.ndarray:
        return ((values - self.mean) / self.std).astype(np.float32)

    def to_dict(self) -> dict[str, list[float]]:
        return {"mean": np.ravel(self.mean).tolist(), "std": np.ravel(self.std).tolist()}


def windows(
    inputs: np.ndarray,
    targets: np.ndarray | None,
    length: int,
    stride: int,
    batch_size: int,
    shuffle_seed: int | None = None,
) -> tf.data.Dataset:
    """Batched sliding windows ``inputs[i:i+length]`` (paired with the same slice of ``targets``).

    Shuffling (training only) mixes windows, never the steps inside one.
    """
    if len(inputs) < length:
        raise DataError(
            f"series part of {len(inputs)} points is shorter than one window ({length})"
        )
    starts = np.arange(0, len(inputs) - length + 1, stride)
    idx = starts[:, None] + np.arange(length)[None, :]
    data = (inputs[idx],) if targets is None else (inputs[idx], targets[idx])
    dataset = tf.data.Dataset.from_tensor_slices(data if len(data) > 1 else data[0])
    if shuffle_seed is not None:
        dataset = dataset.shuffle(len(starts), seed=shuffle_seed, reshuffle_each_iteration=True)
    return dataset.batch(batch_size).prefetch(tf.data.AUTOTUNE)


def origin_windows(
    inputs: np.ndarray, targets: np.ndarray, origins: np.ndarray, window: int, horizon: int
) -> tuple[np.ndarray, np.ndarray]:
    """History ``inputs[t-window:t]`` and future ``targets[t:t+horizon]`` of each origin ``t``.

    An origin is the first forecast step, so a sample never sees the values it must predict.
    """
    origins = np.asarray(origins)
    if origins.min() < window or origins.max() + horizon > len(targets):
        raise DataError(
            f"forecast origins need {window} steps of history and {horizon} steps ahead"
        )
    past = origins[:, None] + np.arange(-window, 0)[None, :]
    future = origins[:, None] + np.arange(horizon)[None, :]
    return inputs[past], targets[future]
