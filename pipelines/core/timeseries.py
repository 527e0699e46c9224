"""Time-series plumbing shared by the anomaly and forecasting tasks: reading, validating,
ordering, splitting, scaling and windowing a series."""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
import tensorflow as tf

from pipelines.core.config import option
from pipelines.core.errors import DataError
from pipelines.core.tables import check_row_width, sniff_delimiter

DUPLICATE_RULES = ("refuse", "mean")
# A column named like one of these is the time axis unless --time-column says otherwise.
TIME_NAMES = re.compile(r"^(timestamps?|time|times|date|dates|datetime|ds|dt|time_?stamp)$", re.I)
# A column named like one of these holds labels: read only when --label-column names it, and
# never a feature (a model that sees the answer learns nothing).
LABEL_NAMES = re.compile(r"^(labels?|is_?anomal(y|ies)|anomal(y|ies)|is_?outlier|outliers?)$", re.I)
# A column is a value column with bad cells (refused or repaired), not text, when at least this
# share of its non-empty cells parse as numbers.
MOSTLY_NUMERIC = 0.5
# A date written with numbers only, day and month in either order (`01/02/2024`, `1.2.24`).
NUMERIC_DATE = re.compile(r"^\s*(\d{1,2})[/.\-](\d{1,2})[/.\-]\d{2,4}(?:\s|T|$)")
# Above this coefficient of variation of their steps, times are not evenly spaced.
UNEVEN = 0.5
# A number written with a decimal comma (`10,5`, `-0,25`) or a plain integer.
DECIMAL_COMMA = re.compile(r"^\s*[+-]?(\d+,\d+|,\d+|\d+)\s*$")


def duplicates_option() -> Any:
    """The ``--duplicates`` config field every series task shares."""
    return option(
        "refuse",
        "rows sharing a timestamp: refuse the file, or average them into one row (mean)",
        choices=DUPLICATE_RULES,
    )


def csv_folder_folds(cfg: Any) -> list[tuple[str, Any]]:
    """``--data DIR``: one fold per CSV under the folder, subfolders included (NAB's
    ``data/<category>/<file>.csv`` layout), named by its path relative to the folder without
    ``.csv``; no folds when ``--data`` is not a folder."""
    folder = Path(cfg.data)
    if not folder.is_dir():
        return []
    files = sorted(p for p in folder.rglob("*.csv") if p.is_file())
    if not files:
        raise DataError(f"the folder {cfg.data} holds no .csv file")
    return [
        (path.relative_to(folder).with_suffix("").as_posix(), replace(cfg, data=str(path)))
        for path in files
    ]


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

    def reorder(self, order: np.ndarray) -> TimeSeries:
        labels = None if self.labels is None else self.labels[order]
        return replace(
            self, timestamps=self.timestamps[order], values=self.values[order], labels=labels
        )

    def merge_repeated(self) -> TimeSeries:
        """One row per timestamp of a sorted series: values averaged, labels OR-ed."""
        stamps, starts = np.unique(self.timestamps, return_index=True)
        counts = np.diff(np.append(starts, len(self)))
        values = np.add.reduceat(self.values.astype(np.float64), starts, axis=0) / counts[:, None]
        labels = None
        if self.labels is not None:
            labels = np.maximum.reduceat(self.labels, starts).astype(self.labels.dtype)
        return replace(self, timestamps=stamps, values=values.astype(np.float32), labels=labels)


def read_series_csv(
    path: str | Path,
    time_column: str = "",
    value_columns: list[str] | None = None,
    label_column: str = "",
    fill_missing: bool = False,
    duplicates: str = "refuse",
) -> TimeSeries:
    """Read, validate and time-order a CSV series; every problem becomes one clear DataError.

    Without ``time_column`` a column named like one (``timestamp``, ``time``, ``date``...) or
    whose text all parses as dates is the time axis (else the row number). Without
    ``value_columns`` every mostly-numeric column but the time and label columns is a value; a
    column named like a label (``label``, ``is_anomaly``...) is never one. A non-numeric cell in a
    value column is refused, naming its row, or with ``fill_missing`` interpolated in time like
    NaN/inf. Rows out of time order are sorted (see :func:`ensure_time_order`).
    """
    path = Path(path)
    return series_from_frame(
        _read_frame(path),
        path.name,
        path.stem,
        time_column,
        value_columns,
        label_column,
        fill_missing,
        duplicates,
    )


def read_long_csv(
    path: str | Path,
    series_column: str,
    time_column: str = "",
    value_columns: list[str] | None = None,
    fill_missing: bool = False,
    duplicates: str = "refuse",
) -> list[TimeSeries]:
    """A long-format CSV (one row per series and time step, ``series_column`` naming the
    series) as one series per name, in order of first appearance, each read and checked like
    a CSV of its own (:func:`read_series_csv`)."""
    path = Path(path)
    frame = _read_frame(path)
    if series_column not in frame.columns:
        raise DataError(
            f"{path.name} has no column {series_column!r}; "
            f"columns are {', '.join(map(str, frame.columns))}"
        )
    names = frame[series_column]
    if names.isna().any():
        row = int(np.flatnonzero(names.isna().to_numpy())[0])
        raise DataError(f"column {series_column!r} of {path.name} is empty at row {row}")
    return [
        series_from_frame(
            rows.drop(columns=series_column).reset_index(drop=True),
            f"{path.name} (series {name})",
            str(name),
            time_column,
            value_columns,
            "",
            fill_missing,
            duplicates,
        )
        for name, rows in frame.groupby(series_column, sort=False)
    ]


def series_from_frame(
    frame: pd.DataFrame,
    source: str,
    name: str,
    time_column: str = "",
    value_columns: list[str] | None = None,
    label_column: str = "",
    fill_missing: bool = False,
    duplicates: str = "refuse",
) -> TimeSeries:
    """A table read as a series (see :func:`read_series_csv`); errors name ``source``."""
    wanted = [c for c in [time_column, label_column, *(value_columns or [])] if c]
    unknown = [c for c in wanted if c not in frame.columns]
    if unknown:
        raise DataError(
            f"{source} has no column(s) {', '.join(unknown)}; "
            f"columns are {', '.join(map(str, frame.columns))}"
        )
    time_column = time_column or _find_time_column(frame)
    columns = list(value_columns) if value_columns else _value_columns(frame, time_column)
    if not columns:
        raise DataError(f"{source} has no numeric value column")
    values = np.column_stack([_numeric(frame[c], c, source, fill_missing) for c in columns])
    values = _check_finite(values, source, fill_missing)
    _check_float32_range(values, source)
    timestamps = _timestamps(frame, time_column, source)
    labels = None
    if label_column:
        labels = pd.to_numeric(frame[label_column], errors="coerce").to_numpy()
        if not np.isin(labels, (0, 1)).all():
            raise DataError(f"label column {label_column!r} of {source} must hold only 0 and 1")
        labels = labels.astype(np.int32)
    series = TimeSeries(timestamps, values.astype(np.float32), columns, labels, name=name)
    return ensure_time_order(series, duplicates, source) if time_column else series


def _read_frame(path: Path) -> pd.DataFrame:
    if not path.is_file():
        raise DataError(f"data file not found: {path}")
    try:
        delimiter = _delimiter(path)
        frame = pd.read_csv(path, sep=delimiter)
    except pd.errors.EmptyDataError:
        raise DataError(f"data file is empty: {path}") from None
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise DataError(f"cannot parse {path} as CSV: {str(exc).strip()}") from None
    check_row_width(frame, str(path), delimiter, ": fix the header or the separator")
    if frame.empty:
        raise DataError(f"data file has no rows: {path}")
    return frame if delimiter == "," else _decimal_commas(frame)


def _delimiter(path: Path) -> str:
    with path.open(encoding="utf-8", errors="replace", newline="") as file:
        return sniff_delimiter("".join(file.readline() for _ in range(20)))


def _decimal_commas(frame: pd.DataFrame) -> pd.DataFrame:
    """Text columns of a `;`/tab-separated file whose cells are all numbers written with
    decimal commas, as numbers. Anything else (e.g. `1.234,5`) stays text, to be refused
    or repaired like any non-numeric cell, never guessed."""
    for column in frame.columns:
        cells = frame[column].dropna()
        if pd.api.types.is_numeric_dtype(cells) or not len(cells):
            continue
        text = cells.astype(str)
        if text.str.contains(",").any() and text.str.match(DECIMAL_COMMA).all():
            frame[column] = pd.to_numeric(frame[column].str.replace(",", ".", regex=False))
    return frame


def _find_time_column(frame: pd.DataFrame) -> str:
    """The column named like a time axis, else the first text column that is all dates."""
    for column in frame.columns:
        if TIME_NAMES.match(str(column)):
            return str(column)
    for column in frame.columns:
        cells = frame[column]
        if pd.api.types.is_numeric_dtype(cells) or cells.isna().all():
            continue
        if _parse_dates(cells).notna().all():
            return str(column)
    return ""


def _value_columns(frame: pd.DataFrame, time_column: str) -> list[str]:
    """Mostly-numeric columns that are neither the time axis nor named like labels."""
    columns = []
    for column in frame.columns:
        if column == time_column or LABEL_NAMES.match(str(column)):
            continue
        cells = frame[column].dropna()
        if len(cells) and pd.to_numeric(cells, errors="coerce").notna().mean() >= MOSTLY_NUMERIC:
            columns.append(str(column))
    return columns


def _numeric(cells: pd.Series, column: str, name: str, fill_missing: bool) -> np.ndarray:
    """A value column as float64; a non-numeric cell is refused, or NaN with ``fill_missing``."""
    parsed = pd.to_numeric(cells, errors="coerce")
    bad = parsed.isna() & cells.notna()
    if bad.any() and not fill_missing:
        row = int(np.flatnonzero(bad.to_numpy())[0])
        raise DataError(
            f"column {column!r} of {name} has {int(bad.sum())} non-numeric cell(s) (first at "
            f"row {row}: {cells.iloc[row]!r}); fix them or pass --fill-missing to interpolate them"
        )
    return parsed.to_numpy(np.float64, na_value=np.nan)


def _check_float32_range(values: np.ndarray, name: str) -> None:
    """Models scale the values in float32 by their variance: a value whose square exceeds
    float32's range (|v| > 1.8e19) would make it inf and the training meaningless."""
    limit = float(np.sqrt(np.finfo(np.float32).max))
    beyond = np.abs(values) > limit
    if beyond.any():
        first = int(np.argwhere(beyond)[0, 0])
        raise DataError(
            f"{name} has {int(beyond.sum())} value(s) beyond ±{limit:.1e}, whose variance "
            f"overflows float32 (first at row {first}): rescale the column"
        )


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


def _parse_dates(cells: pd.Series, dayfirst: bool | None = None) -> pd.Series:
    """Dates as naive UTC (explicit offsets, e.g. around a DST change, are honoured); numeric
    day/month dates in the order :func:`date_order` reads from the column unless given."""
    import warnings

    if dayfirst is None:
        dayfirst = date_order(cells)[0]
    with warnings.catch_warnings():  # "could not infer format" for mixed or odd text
        warnings.simplefilter("ignore")
        parsed = pd.to_datetime(cells, errors="coerce", utc=True, dayfirst=dayfirst)
    return parsed.dt.tz_localize(None)


def date_order(cells: pd.Series) -> tuple[bool, bool]:
    """`(day first, undecided)` for a column of numeric dates (`01/02/2024`, `13.01.2024`).

    A first field above 12 means day first, a second one month first. When every field fits
    both, a reading whose times are evenly spaced beats one that is not (a European monthly
    series read month first is twelve days of January, then a year's gap); when both are even
    (twelve months or twelve days) the column cannot say, and it is month first, as pandas
    reads it, and undecided."""
    fields = cells.astype(str).str.extract(NUMERIC_DATE)
    if fields.isna().any(axis=None):
        return False, False  # not all numeric day/month dates: pandas' own reading
    first, second = fields[0].astype(int), fields[1].astype(int)
    if (first > 12).any() or (second > 12).any():
        return bool((first > 12).any()), False
    month_first, day_first = (_spacing_spread(_parse_dates(cells, d)) for d in (False, True))
    if max(month_first, day_first) > UNEVEN > min(month_first, day_first):
        return day_first < month_first, False
    return False, bool((first != second).any())


def _spacing_spread(times: pd.Series) -> float:
    """Coefficient of variation of the steps between sorted distinct times (0 if < 2 steps)."""
    steps = np.diff(np.unique(times.dropna().to_numpy().astype("int64")))
    return float(np.std(steps) / np.mean(steps)) if len(steps) > 1 else 0.0


def _timestamps(frame: pd.DataFrame, time_column: str, name: str) -> np.ndarray:
    if not time_column:
        return np.arange(len(frame))
    column = frame[time_column]
    if pd.api.types.is_numeric_dtype(column):
        if column.isna().any():
            raise DataError(f"time column {time_column!r} of {name} has empty cells")
        return column.to_numpy()
    dayfirst, undecided = date_order(column)
    if undecided:
        announce(
            f"{name}: dates of column {time_column!r} such as {column.iloc[0]!r} fit day "
            "first and month first alike; read month first (write YYYY-MM-DD to be sure)",
            "date_order",
        )
    parsed = _parse_dates(column, dayfirst)
    if parsed.isna().any():
        row = int(np.flatnonzero(parsed.isna().to_numpy())[0])
        raise DataError(
            f"time column {time_column!r} of {name} has an unparseable timestamp at row {row}: "
            f"{column.iloc[row]!r}"
        )
    return parsed.to_numpy()


def ensure_time_order(series: TimeSeries, duplicates: str = "refuse", name: str = "") -> TimeSeries:
    """The series in time order: the one check every time-series task shares.

    Rows out of order are stable-sorted by timestamp. Rows sharing a timestamp (the repeated
    hour of a daylight-saving change, a double export) are refused unless ``duplicates`` is
    ``"mean"``, which averages them into one row (a label is 1 if any of them is). What was
    changed is said once on stderr and as the active MLflow run's ``time_order`` tag.
    """
    if duplicates not in DUPLICATE_RULES:
        raise DataError(f"--duplicates must be one of {', '.join(DUPLICATE_RULES)}")
    name = name or series.name or "the series"
    stamps = series.timestamps
    order = np.argsort(stamps, kind="stable")
    moved = int(np.count_nonzero(order != np.arange(len(order))))
    ordered = stamps[order]
    repeated = np.flatnonzero(ordered[1:] == ordered[:-1]) + 1
    if repeated.size and duplicates == "refuse":
        first = ordered[repeated[0]]
        raise DataError(
            f"{name} has {repeated.size} row(s) repeating an earlier timestamp (first "
            f"{pd.Timestamp(first) if ordered.dtype.kind == 'M' else first}); pass "
            "--duplicates mean to average them"
        )
    if not (moved or repeated.size):
        return series
    notes = []
    if moved:
        series = series.reorder(order)
        notes.append(f"{moved} rows were out of time order and were sorted (stable)")
    if repeated.size:
        series = series.merge_repeated()
        notes.append(f"{repeated.size} rows repeating a timestamp were averaged into the earlier")
    announce(f"{name}: {'; '.join(notes)}", "time_order")
    return series


def announce(message: str, tag: str) -> None:
    """Say once, on stderr and as the active run's ``tag``, how the data was read."""
    print(f"note: {message}", file=sys.stderr)
    if mlflow.active_run() is not None:
        mlflow.set_tag(tag, message[:5000])


def announce_settings(message: str, params: dict[str, Any]) -> None:
    """Say once on stderr which settings were chosen from the data, and log them as params of
    the active run (under their own names: the config's own params keep what was given)."""
    print(f"note: {message}", file=sys.stderr)
    if mlflow.active_run() is not None:
        mlflow.log_params(params)


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
        values = np.asarray(values, np.float64)  # float32 sums of values near 1e38 overflow
        std = values.std(axis=0)
        if values.size and not (std > 0).any():
            raise DataError(
                "every value column of --data is constant over the training part: there is "
                "nothing to learn"
            )
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
