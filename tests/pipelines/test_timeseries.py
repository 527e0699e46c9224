"""Reading and time-ordering a CSV series (pipelines/core/timeseries.py): no training."""

from __future__ import annotations

import mlflow
import numpy as np
import pandas as pd
import pytest

from pipelines.core import DataError
from pipelines.core.timeseries import ensure_time_order, read_long_csv, read_series_csv


def write(path, **columns) -> str:
    pd.DataFrame(columns).to_csv(path, index=False)
    return str(path)


def test_a_label_column_is_never_a_feature_and_time_is_found_by_name(tmp_path):
    stamps = pd.date_range("2024-01-01", periods=5, freq="h")
    path = write(tmp_path / "s.csv", timestamp=stamps, value=[1, 2, 3, 4, 5], label=[0, 0, 1, 0, 0])
    series = read_series_csv(path)
    assert series.columns == ["value"]
    assert series.timestamps.dtype.kind == "M" and series.timestamps[0] == stamps[0]
    assert read_series_csv(path, label_column="label").labels.tolist() == [0, 0, 1, 0, 0]


def test_a_date_column_with_any_name_is_the_time_axis(tmp_path):
    stamps = pd.date_range("2024-01-01", periods=4, freq="D").strftime("%d %b %Y")
    series = read_series_csv(write(tmp_path / "s.csv", when_seen=stamps, reading=[1.0, 2, 3, 4]))
    assert series.columns == ["reading"] and series.timestamps.dtype.kind == "M"


def test_one_bad_cell_is_an_error_naming_its_row_unless_filled(tmp_path):
    values = ["1.0", "2.0", "oops", "4.0", "5.0", "6.0"]
    path = write(tmp_path / "s.csv", value=values, label=[0, 0, 0, 1, 0, 0])
    with pytest.raises(DataError, match=r"'value' of s.csv has 1 non-numeric cell.*row 2: 'oops'"):
        read_series_csv(path)
    filled = read_series_csv(path, fill_missing=True)
    assert filled.columns == ["value"]
    np.testing.assert_allclose(filled.values[:, 0], [1, 2, 3, 4, 5, 6])


@pytest.mark.parametrize(
    "text",
    [
        "timestamp;value;load\n2024-01-01 00:00;10,5;1\n2024-01-01 01:00;-0,25;2\n",
        "timestamp\tvalue\tload\n2024-01-01 00:00\t10.5\t1\n2024-01-01 01:00\t-0.25\t2\n",
    ],
    ids=["semicolons and decimal commas", "tabs"],
)
def test_a_spreadsheet_export_is_read_with_its_own_separator(tmp_path, text):
    """Read as commas, `10,5` in a `;` file became the value 5 (pandas took `10` as the index)."""
    (tmp_path / "s.csv").write_text(text)
    series = read_series_csv(tmp_path / "s.csv")
    assert series.columns == ["value", "load"] and series.timestamps.dtype.kind == "M"
    np.testing.assert_allclose(series.values, [[10.5, 1], [-0.25, 2]])


def test_ambiguous_numbers_and_rows_wider_than_the_header_are_refused(tmp_path):
    (tmp_path / "a.csv").write_text("timestamp;value\n2024-01-01;1.234,5\n2024-01-02;2.000,0\n")
    with pytest.raises(DataError, match="no numeric value column"):
        read_series_csv(tmp_path / "a.csv")  # thousands dots: never guessed
    (tmp_path / "w.csv").write_text("timestamp,value\n2024-01-01,1,5\n2024-01-02,2,5\n")
    with pytest.raises(DataError, match=r"more fields than its header \(2, split by ','\)"):
        read_series_csv(tmp_path / "w.csv")


@pytest.mark.parametrize(
    "stamps",
    [
        [f"01/{month:02d}/2024" for month in range(1, 13)] + ["01/01/2025"],  # day first
        [f"{month:02d}/01/2024" for month in range(1, 13)] + ["01/01/2025"],  # month first
    ],
    ids=["dd/mm", "mm/dd"],
)
def test_monthly_dates_are_read_in_the_order_that_spaces_them_evenly(tmp_path, stamps):
    """Read month first, 01/02/2024 ... 01/12/2024 were twelve days of January."""
    series = read_series_csv(write(tmp_path / "s.csv", date=stamps, value=range(13)))
    months = pd.DatetimeIndex(series.timestamps)
    assert list(months.month) == [*range(1, 13), 1] and set(months.day) == {1}


def test_dates_that_fit_both_orders_are_read_month_first_and_said(tmp_path, capsys):
    stamps = [f"01/{month:02d}/2024" for month in range(1, 13)]  # 12 months or 12 days
    series = read_series_csv(write(tmp_path / "s.csv", date=stamps, value=range(12)))
    assert list(pd.DatetimeIndex(series.timestamps).day) == list(range(1, 13))
    assert "fit day first and month first alike; read month first" in capsys.readouterr().err


def test_a_german_daily_export_is_read_day_first(tmp_path):
    """`13.01.2024` used to be an unparseable timestamp (the column was read month first)."""
    stamps = [f"{day:02d}.01.2024 10:00" for day in range(1, 20)]
    series = read_series_csv(write(tmp_path / "s.csv", Datum=stamps, Wert=range(19)),
                             time_column="Datum")  # fmt: skip
    assert list(pd.DatetimeIndex(series.timestamps).day) == list(range(1, 20))


def test_text_columns_are_not_values(tmp_path):
    path = write(tmp_path / "s.csv", host=["a", "b", "c"], cpu=[0.1, 0.2, 0.3])
    assert read_series_csv(path).columns == ["cpu"]


def test_a_long_csv_gives_one_checked_series_per_name(tmp_path):
    stamps = list(pd.date_range("2024-01-01", periods=3, freq="D").astype(str))
    path = write(
        tmp_path / "long.csv",
        date=stamps[::-1] + stamps,
        shop=["x", "x", "x", "y", "y", "y"],
        sales=[3.0, 2, 1, 10, 20, 30],
    )
    x, y = read_long_csv(path, "shop")
    assert (x.name, y.name) == ("x", "y") and x.columns == ["sales"]
    assert x.values[:, 0].tolist() == [1, 2, 3]  # time-ordered within its series
    assert y.values[:, 0].tolist() == [10, 20, 30]
    with pytest.raises(DataError, match="has no column 'store'; columns are date, shop, sales"):
        read_long_csv(path, "store")
    bad = write(tmp_path / "bad.csv", date=stamps, shop=["x", "x", "y"], sales=[1, "oops", 2])
    with pytest.raises(DataError, match=r"of bad.csv \(series x\) has 1 non-numeric"):
        read_long_csv(bad, "shop")
    empty = write(tmp_path / "gap.csv", date=stamps, shop=["x", None, "y"], sales=[1, 2, 3])
    with pytest.raises(DataError, match="column 'shop' of gap.csv is empty at row 1"):
        read_long_csv(empty, "shop")


def test_out_of_order_rows_are_sorted_stably_and_said_once(tmp_path, tracking_uri, capsys):
    stamps = pd.to_datetime(["2024-01-01 00:00", "2024-01-01 02:00", "2024-01-01 01:00"])
    path = write(tmp_path / "s.csv", timestamp=stamps, value=[0.0, 2.0, 1.0])
    mlflow.set_tracking_uri(tracking_uri)
    with mlflow.start_run() as run:
        series = read_series_csv(path)
    np.testing.assert_array_equal(series.values[:, 0], [0, 1, 2])
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "2 rows were out of time order" in err[0]
    tags = mlflow.get_run(run.info.run_id).data.tags
    assert "sorted" in tags["time_order"]


def test_repeated_timestamps_are_refused_or_averaged_when_asked(tmp_path, capsys):
    # The repeated hour of a daylight-saving change, written without an offset.
    stamps = ["2024-10-27 01:00", "2024-10-27 02:00", "2024-10-27 02:00", "2024-10-27 03:00"]
    path = write(tmp_path / "dst.csv", timestamp=stamps, value=[1.0, 2.0, 4.0, 5.0])
    with pytest.raises(DataError, match="1 row.*repeating an earlier timestamp.*--duplicates mean"):
        read_series_csv(path)
    series = read_series_csv(path, duplicates="mean")
    np.testing.assert_allclose(series.values[:, 0], [1, 3, 5])
    assert len(series.timestamps) == 3
    assert "averaged" in capsys.readouterr().err


def test_explicit_offsets_keep_the_daylight_saving_hour_apart(tmp_path):
    stamps = ["2024-10-27T02:30:00+02:00", "2024-10-27T02:30:00+01:00"]
    series = read_series_csv(write(tmp_path / "s.csv", timestamp=stamps, value=[1.0, 2.0]))
    assert len(series) == 2 and series.timestamps[1] > series.timestamps[0]


def test_ordered_series_are_returned_untouched(capsys):
    from pipelines.core.timeseries import TimeSeries

    series = TimeSeries(np.arange(4), np.zeros((4, 1), np.float32), ["v"])
    assert ensure_time_order(series) is series
    assert capsys.readouterr().err == ""


def test_synthetic_corpus_is_labelled_as_nab_labels_its_files(tmp_path):
    import json

    from pipelines.anomaly import nab
    from pipelines.datasets.timeseries_builders import (
        nab_like_corpus,
        nab_windows,
        write_nab_like_corpus,
    )

    assert nab_windows(1000, [500]) == [(450, 550)]  # 10 % of the file, centred
    assert nab_windows(1000, [300, 700]) == [(275, 325), (675, 725)]
    assert nab_windows(1000, [10]) == [(0, 60)]
    files = nab_like_corpus(seed=3, size=0.1)
    assert [f.frame.equals(g.frame) for f, g in zip(files, nab_like_corpus(3, 0.1))] == [
        True
    ] * len(files)
    assert len({f.path for f in files}) == len(files) == 32
    assert any(not f.onsets for f in files) and sum(len(f.onsets) for f in files) > 40
    labels = write_nab_like_corpus(tmp_path, seed=3, size=0.1)
    combined = json.loads(labels.read_text())
    first = files[0]
    series = read_series_csv(tmp_path / first.path)
    rows = nab.window_rows(series.timestamps, nab.read_windows(labels, first.path))
    assert rows == first.windows() and set(combined) == {f.path for f in files}
