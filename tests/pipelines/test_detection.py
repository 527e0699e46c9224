import json
import math

import numpy as np
import pandas as pd
import pytest

from pipelines.anomaly.detection import (
    EWMA,
    evaluate_detection,
    ewma,
    fit_threshold,
    flags_to_windows,
    labels_to_events,
    max_threshold,
    nab_score,
    nab_windows_to_labels,
    ndt_threshold,
    prune_windows,
    quantile_threshold,
    read_nab_labels,
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


@pytest.fixture
def nab_case():
    stamps = pd.date_range("2015-01-01", periods=200, freq="5min")
    windows = [(stamps[60], stamps[79]), (stamps[140], stamps[159])]
    return stamps, windows


def test_nab_perfect_and_null(nab_case):
    stamps, windows = nab_case
    perfect = np.zeros(200, dtype=bool)
    perfect[[60, 140]] = True
    assert nab_score(stamps, perfect, windows) == pytest.approx(100.0)
    assert nab_score(stamps, np.zeros(200), windows) == pytest.approx(0.0)
    # only the first detection in a window counts
    perfect[61:80] = True
    assert nab_score(stamps, perfect, windows) == pytest.approx(100.0)


def test_nab_early_beats_late_and_false_positive_hurts(nab_case):
    stamps, windows = nab_case

    def score_at(*idx, **kw):
        flags = np.zeros(200, dtype=bool)
        flags[list(idx)] = True
        return nab_score(stamps, flags, windows, **kw)

    early, late = score_at(62, 140), score_at(78, 140)
    assert 0.0 < late < early < 100.0
    assert score_at(60, 140, 110) < 100.0
    assert score_at(60, 140, 40) < 100.0  # before any window: full -fp
    # a false positive right after a window costs less than one far from it
    assert score_at(60, 140, 81) > score_at(60, 140, 120)
    # reward_low_FP_rate penalises the same false positive more
    assert score_at(60, 140, 110, profile="reward_low_FP_rate") < score_at(60, 140, 110)
    # detections in the probationary period (first 15% = 30 rows) are ignored
    assert score_at(10, 60, 140) == pytest.approx(100.0)
    assert score_at(62, 110, profile="reward_low_FN") == score_at(
        62, 110, profile="reward_low_FN_rate"
    )


def test_nab_score_matches_hand_computed_sweeper_value(nab_case):
    stamps, windows = nab_case
    flags = np.zeros(200, dtype=bool)
    flags[[62, 140, 90]] = True

    def sig(x):
        return 2.0 / (1.0 + math.exp(5.0 * x)) - 1.0

    tp = sig(-(79 - 62 + 1) / 20) / sig(-1.0)  # window rows 60..79, detection at row 62
    fp = 0.11 * sig((90 - 79) / (20 - 1))  # 11 rows after the first window ends
    raw = tp + 1.0 + fp
    expected = 100.0 * (raw - (-2.0)) / (2.0 - (-2.0))
    assert nab_score(stamps, flags, windows) == pytest.approx(expected)


def test_nab_labels_and_reader(tmp_path, nab_case):
    stamps, _ = nab_case
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
    windows = read_nab_labels(path, "nyc_taxi.csv")
    assert windows == [(pd.Timestamp("2015-01-01 05:00"), pd.Timestamp("2015-01-01 06:35"))]
    assert read_nab_labels(path, "realKnownCause/nyc_taxi.csv") == windows
    assert read_nab_labels(path, "Twitter_volume_AAPL.csv") == []
    with pytest.raises((KeyError, ValueError), match="missing.csv"):
        read_nab_labels(path, "missing.csv")
    with pytest.raises((KeyError, ValueError)):
        read_nab_labels(path, "taxi.csv")  # must match a whole path component

    labels = nab_windows_to_labels(stamps, windows)
    assert labels.sum() == 20 and labels[60] == 1 and labels[79] == 1 and labels[80] == 0


def test_nab_bad_arguments_raise(nab_case):
    stamps, windows = nab_case
    flags = np.zeros(200)
    with pytest.raises(ValueError):
        nab_score(stamps, flags, windows, profile="lenient")
    with pytest.raises(ValueError):
        nab_score(stamps, flags[:-1], windows)
    with pytest.raises(ValueError):
        nab_score(stamps[::-1], flags, windows)
    with pytest.raises(ValueError):
        nab_score(stamps, flags, [(stamps[10], stamps[5])])
    assert math.isnan(nab_score(stamps, flags, []))
