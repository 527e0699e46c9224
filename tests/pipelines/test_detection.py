import json
import math

import numpy as np
import pandas as pd
import pytest

from pipelines.anomaly import nab
from pipelines.anomaly.detection import (
    EWMA,
    evaluate_detection,
    ewma,
    fit_threshold,
    flags_to_windows,
    labels_to_events,
    max_threshold,
    ndt_threshold,
    prune_windows,
    quantile_threshold,
    windows_table,
    windows_to_flags,
)

# ------------------------------------------------------------------------------ smoothing


def test_ewma_streaming_equals_batch_and_pandas():
    x = np.random.default_rng(0).normal(size=300)
    batch = ewma(x, span=10)
    smoother = EWMA(span=10)
    streamed = np.array([smoother.update(v) for v in x])
    np.testing.assert_array_equal(streamed, batch)
    np.testing.assert_allclose(batch, pd.Series(x).ewm(span=10, adjust=False).mean(), rtol=1e-12)
    assert batch[0] == x[0]


def test_ewma_span_one_is_identity():
    x = np.array([3.0, -1.0, 2.0])
    np.testing.assert_array_equal(ewma(x, span=1), x)


# ----------------------------------------------------------------------------- thresholds


@pytest.fixture
def spiky_errors():
    rng = np.random.default_rng(1)
    noise = np.abs(rng.normal(0.0, 1.0, size=2000))
    errors = noise.copy()
    for start in (400, 1200):
        errors[start : start + 5] = 25.0
    return noise, errors


def test_ndt_threshold_sits_between_noise_and_spikes(spiky_errors):
    noise, errors = spiky_errors
    eps = ndt_threshold(errors)
    assert noise.max() < eps < 25.0
    assert 0 < ndt_threshold(errors, error_buffer=3) < 25.0


def test_ndt_threshold_degenerate_cases():
    assert ndt_threshold(np.full(50, 0.7)) == pytest.approx(0.7)
    # nothing ever lies 10 sigma above the mean of two-valued data -> conservative default
    x = np.array([0.0, 1.0] * 50)
    assert ndt_threshold(x, z_range=(10.0, 10.0)) == pytest.approx(x.mean() + 10 * x.std())


def test_quantile_and_max_thresholds(spiky_errors):
    _, errors = spiky_errors
    assert quantile_threshold(errors, q=0.95) == pytest.approx(np.quantile(errors, 0.95))
    assert fit_threshold("quantile", errors, q=0.9) == pytest.approx(np.quantile(errors, 0.9))
    assert max_threshold(errors) == errors.max()
    assert fit_threshold("max-train", errors) == errors.max()
    assert fit_threshold("ndt", errors) == ndt_threshold(errors)


@pytest.mark.parametrize(
    "call",
    [
        lambda: fit_threshold("mad", [1.0, 2.0]),
        lambda: quantile_threshold([1.0, 2.0], q=1.5),
        lambda: max_threshold([]),
        lambda: ndt_threshold([1.0, np.nan]),
        lambda: ndt_threshold([1.0, 2.0], z_step=0),
        lambda: ndt_threshold([1.0, 2.0], z_range=(5.0, 2.0)),
        lambda: ewma([1.0, 2.0], span=0.5),
        lambda: ewma([[1.0, 2.0]], span=3),
        lambda: EWMA(3).update(float("nan")),
    ],
)
def test_threshold_bad_arguments_raise(call):
    with pytest.raises(ValueError):
        call()


# ------------------------------------------------------------------------------- pruning


def test_prune_windows_drops_weak_keeps_strong():
    scores = np.full(100, 1.0)
    scores[10:13] = 10.0  # strong: far above background
    scores[50:52] = 1.05  # weak: barely above background
    windows = [(10, 12), (50, 51)]
    assert prune_windows(windows, scores, threshold=1.02) == [(10, 12)]


def test_prune_windows_keeps_all_when_clearly_separated_and_handles_edge_cases():
    scores = np.full(30, 1.0)
    scores[5] = 4.0
    scores[20] = 2.0
    assert prune_windows([(5, 5), (20, 20)], scores, threshold=1.5) == [(5, 5), (20, 20)]
    assert prune_windows([], scores, threshold=1.5) == []
    # every point detected: background falls back to the threshold
    assert prune_windows([(0, 29)], scores, threshold=1.0) == [(0, 29)]
    assert prune_windows([(0, 29)], scores, threshold=3.9) == []
    with pytest.raises(ValueError):
        prune_windows([(0, 40)], scores, threshold=1.0)


# ------------------------------------------------------------------------------- windows


@pytest.mark.parametrize(
    ("flags", "kw", "expected"),
    [
        ([], {}, []),
        ([0, 0, 0], {}, []),
        ([1, 1, 1], {}, [(0, 2)]),
        ([0, 1, 1, 0, 1], {}, [(1, 2), (4, 4)]),
        ([0, 1, 1, 0, 1], {"merge_gap": 1}, [(1, 4)]),
        ([1, 0, 0, 1], {"merge_gap": 1}, [(0, 0), (3, 3)]),
        ([1, 0, 0, 1], {"merge_gap": 2}, [(0, 3)]),
        ([1, 0, 1, 1, 0, 0, 0, 1], {"min_length": 2}, [(2, 3)]),
        ([1, 0, 1, 0, 0, 0, 1], {"merge_gap": 1, "min_length": 3}, [(0, 2)]),
        ([False, True, True], {}, [(1, 2)]),
    ],
)
def test_flags_to_windows(flags, kw, expected):
    assert flags_to_windows(flags, **kw) == expected


def test_windows_round_trip_events_and_table():
    flags = np.array([0, 1, 1, 0, 0, 1], dtype=bool)
    windows = flags_to_windows(flags)
    np.testing.assert_array_equal(windows_to_flags(windows, len(flags)), flags)
    assert labels_to_events([1, 1, 0, 1]) == [(0, 1), (3, 3)]

    stamps = pd.date_range("2024-01-01", periods=6, freq="h")
    scores = np.array([0.1, 0.5, 0.9, 0.2, 0.1, 0.7])
    table = windows_table(windows, scores, stamps)
    assert list(table.columns) == ["start", "end", "peak_score"]
    assert table["start"].tolist() == [stamps[1], stamps[5]]
    assert table["end"].tolist() == [stamps[2], stamps[5]]
    assert table["peak_score"].tolist() == [0.9, 0.7]
    assert windows_table([], scores, stamps).empty


def test_window_bad_arguments_raise():
    with pytest.raises(ValueError):
        flags_to_windows([0, 2])
    with pytest.raises(ValueError):
        flags_to_windows([1], merge_gap=-1)
    with pytest.raises(ValueError):
        flags_to_windows([1], min_length=0)
    with pytest.raises(ValueError):
        windows_to_flags([(3, 1)], 5)


# ---------------------------------------------------------------------------- evaluation


def test_evaluate_detection_hand_computed():
    labels = np.array([0, 1, 1, 1, 0, 0, 0, 1, 0, 0])
    flags = np.array([0, 0, 1, 1, 1, 0, 0, 0, 0, 1])
    scores = np.array([0.1, 0.6, 0.8, 0.9, 0.7, 0.2, 0.1, 0.3, 0.2, 0.65])
    m = evaluate_detection(labels, scores, flags)
    # points: tp=2 (idx 2,3), 4 flagged, 4 positive
    assert m["point_precision"] == pytest.approx(0.5)
    assert m["point_recall"] == pytest.approx(0.5)
    assert m["point_f1"] == pytest.approx(0.5)
    # events: detected (2,4) hits (1,3); (9,9) hits nothing; event (7,7) missed
    assert m["event_precision"] == pytest.approx(0.5)
    assert m["event_recall"] == pytest.approx(0.5)
    assert m["event_f1"] == pytest.approx(0.5)
    assert 0.0 <= m["roc_auc"] <= 1.0 and 0.0 <= m["pr_auc"] <= 1.0


def test_evaluate_detection_perfect_scores_auc_one():
    labels = np.array([0, 0, 1, 1, 0])
    scores = np.array([0.1, 0.2, 0.9, 0.8, 0.3])
    m = evaluate_detection(labels, scores, labels)
    assert m["roc_auc"] == 1.0 and m["pr_auc"] == 1.0
    assert m["point_f1"] == 1.0 and m["event_f1"] == 1.0


def test_evaluate_detection_undefined_metrics_are_nan():
    m = evaluate_detection([0, 0, 0, 0], [0.1, 0.9, 0.2, 0.3], [0, 1, 0, 0])
    assert m["point_precision"] == 0.0 and m["event_precision"] == 0.0
    assert m["point_f1"] == 0.0 and m["event_f1"] == 0.0  # a false alarm: 2TP/(2TP+FP+FN)
    for key in ("point_recall", "event_recall", "roc_auc", "pr_auc"):
        assert math.isnan(m[key]), key
    m = evaluate_detection([0, 1, 0], [0.1, 0.2, 0.3], [0, 0, 0])
    assert math.isnan(m["point_precision"]) and math.isnan(m["event_precision"])
    assert m["point_recall"] == 0.0 and m["event_recall"] == 0.0
    assert m["point_f1"] == 0.0 and m["event_f1"] == 0.0  # silent on a real anomaly
    m = evaluate_detection([0, 0, 0], [0.1, 0.2, 0.3], [0, 0, 0])
    assert math.isnan(m["point_f1"]) and math.isnan(m["event_f1"])
    with pytest.raises(ValueError):
        evaluate_detection([0, 1], [0.1, 0.2, 0.3], [0, 1])


# ----------------------------------------------------------------------------------- NAB
# Hand-computed cases of NAB's scorer (nab/sweeper.py): 200 rows, probation = 30 rows,
# windows at rows 60..79 and 140..159 (width 20).

WINDOWS = [(60, 79), (140, 159)]


def _sig(x: float) -> float:
    return 2.0 / (1.0 + math.exp(5.0 * x)) - 1.0


def _alarms(*rows: int, n: int = 200) -> np.ndarray:
    flags = np.zeros(n, dtype=bool)
    flags[list(rows)] = True
    return flags


def test_nab_perfect_null_and_only_the_first_alarm_of_a_window():
    assert nab.score_file(_alarms(60, 140), WINDOWS).normalised() == pytest.approx(100.0)
    assert nab.score_file(_alarms(), WINDOWS).normalised() == pytest.approx(0.0)
    every = _alarms(*range(60, 80), *range(140, 160))
    assert nab.score_file(every, WINDOWS).normalised() == pytest.approx(100.0)


def test_nab_score_matches_hand_computed_sweeper_values():
    score = nab.score_file(_alarms(62, 140, 90, 40, 10), WINDOWS)
    tp = _sig(-(79 - 62 + 1) / 20) / _sig(-1.0)  # window 60..79, first alarm at row 62
    fp = _sig((90 - 79) / (20 - 1))  # 11 rows after the first window's right edge
    # row 40 is before any window (full -fp), row 10 is probationary (ignored)
    assert score.raw["standard"] == pytest.approx(tp + 1.0 + 0.11 * fp - 0.11)
    assert score.raw["reward_low_FP_rate"] == pytest.approx(tp + 1.0 + 0.22 * fp - 0.22)
    assert score.null == {"standard": -2.0, "reward_low_FP_rate": -2.0, "reward_low_FN_rate": -4.0}
    expected = 100.0 * (tp + 1.0 + 0.11 * fp - 0.11 + 2.0) / 4.0
    assert score.normalised("standard") == pytest.approx(expected)
    missed = nab.score_file(_alarms(62), WINDOWS)
    assert missed.raw["reward_low_FN_rate"] == pytest.approx(tp - 2.0)
    assert (missed.windows, missed.detected, missed.false_alarms, missed.delays) == (2, 1, 0, [2])
    assert (score.alarms, score.false_alarms) == (4, 2)


def test_nab_false_alarm_cost_grows_with_distance_from_the_last_window():
    near, far = (
        nab.score_file(_alarms(60, 140, 81), WINDOWS),
        nab.score_file(_alarms(60, 140, 120), WINDOWS),
    )
    assert 100.0 > near.normalised() > far.normalised()
    assert far.raw["standard"] == pytest.approx(2.0 - 0.11, abs=1e-4)  # 41 rows = 2.2 widths
    # 3 widths past the window's edge and beyond: exactly -fp
    assert nab.score_file(_alarms(60, 140, 79 + 57), WINDOWS).raw["standard"] == pytest.approx(1.89)


def test_nab_probation_windows_and_the_cap_at_5000_rows():
    assert nab.probation_length(200) == 30
    assert nab.probation_length(4032) == 604  # floor(604.8)
    assert nab.probation_length(22695) == 750  # 0.15 * 5000
    # a window wholly inside probation is not scored; one straddling it is, from row 30 on
    inside = nab.score_file(_alarms(), [(5, 25), (140, 159)])
    assert inside.windows == 1 and inside.null["standard"] == -1.0
    straddling = nab.score_file(_alarms(30), [(20, 39)])
    assert straddling.windows == 1
    # the perfect detector alarms at the first scored row (30), not the window's start
    perfect = _sig(-(39 - 30 + 1) / 20) / _sig(-1.0)
    assert straddling.perfect["standard"] == pytest.approx(perfect)
    assert straddling.normalised() == pytest.approx(100.0)


def test_nab_corpus_score_normalises_the_summed_raw_scores():
    files = {
        "a.csv": nab.score_file(_alarms(60, 140), WINDOWS),  # raw 2, null -2, perfect 2
        "b.csv": nab.score_file(_alarms(100), []),  # no windows: raw -0.11, null 0
        "c.csv": nab.score_file(_alarms(), [(100, 119)]),  # raw -1, null -1, perfect 1
    }
    corpus = nab.corpus_scores(files)
    assert corpus["nab_standard"] == pytest.approx(100.0 * (2.0 - 0.11 - 1.0 + 3.0) / 6.0)
    assert corpus["event_recall"] == pytest.approx(2 / 3)
    assert corpus["event_precision"] == pytest.approx(2 / 3)
    assert corpus["false_alarms"] == 1.0 and corpus["mean_time_to_detect"] == 0.0
    assert math.isnan(files["b.csv"].normalised())


def test_nab_label_file_reading_and_window_rows(tmp_path):
    stamps = pd.date_range("2015-01-01", periods=200, freq="5min")
    path = tmp_path / "combined_windows.json"
    path.write_text(
        json.dumps(
            {
                "realKnownCause/nyc_taxi.csv": [
                    ["2015-01-01 05:00:00.000000", "2015-01-01 06:35:00.000000"]
                ],
                "realTweets/Twitter_volume_AAPL.csv": [],
            }
        )
    )
    windows = nab.read_windows(path, "nyc_taxi.csv")
    assert windows == [(pd.Timestamp("2015-01-01 05:00"), pd.Timestamp("2015-01-01 06:35"))]
    assert nab.read_windows(path, "realKnownCause/nyc_taxi.csv") == windows
    assert nab.read_windows(path, "Twitter_volume_AAPL.csv") == []
    with pytest.raises(ValueError, match="missing.csv"):
        nab.read_windows(path, "missing.csv")
    with pytest.raises(ValueError):
        nab.read_windows(path, "taxi.csv")  # must match a whole path component
    same_name = {"a/x.csv": [["2015-01-01", "2015-01-02"]], "b/x.csv": []}
    path.write_text(json.dumps(same_name))
    assert nab.read_windows(path, "/data/corpus/b/x.csv") == []  # its folder decides
    assert len(nab.read_windows(path, "/data/corpus/a/x.csv")) == 1
    with pytest.raises(ValueError, match="ambiguous"):
        nab.read_windows(path, "/elsewhere/x.csv")
    assert nab.window_rows(stamps, windows) == [(60, 79)]
    path.write_text(json.dumps([["2015-01-01", "2015-01-02"]]))
    with pytest.raises(ValueError, match="must map each data file"):
        nab.read_windows(path, "nyc_taxi.csv")


def test_nab_bad_arguments_raise():
    with pytest.raises(ValueError):
        nab.score_file(_alarms(), [(150, 210)])
    with pytest.raises(ValueError):
        nab.score_file(_alarms(), [(10, 30), (20, 40)])
    stamps = pd.date_range("2015-01-01", periods=10, freq="h")
    with pytest.raises(ValueError):
        nab.window_rows(stamps[::-1], [])
    with pytest.raises(ValueError):
        nab.window_rows(stamps, [(stamps[5], stamps[1])])
