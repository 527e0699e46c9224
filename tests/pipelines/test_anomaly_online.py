"""The online protocol: likelihood and alarm numerics, a corpus run end to end, and the same
alarms from every way of applying its model (streaming, --predict, MLflow scorer, SavedModel)."""

from __future__ import annotations

import itertools
import json
import math
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest

from pipelines.anomaly import nab, online
from pipelines.anomaly.streaming import OnlineDetector
from pipelines.anomaly.task import AnomalyTask
from pipelines.core import main
from tests.conftest import runs_of

TINY = ["--epochs", "3", "--units", "8", "--window", "32", "--batch-size", "32", "--stride", "4"]


def test_likelihood_matches_a_hand_computation():
    # short window 2, long window 3: short-term means 0, 1, 1, 1, 3
    likelihood = online.AnomalyLikelihood(short_window=2, long_window=3)
    got = [likelihood.update(e) for e in [0.0, 2.0, 0.0, 2.0, 4.0]]
    phi = lambda z: 0.5 * math.erfc(-z / math.sqrt(2))  # noqa: E731
    expected = [
        0.5,  # no history yet
        0.5,  # one mean in the history: fewer than the short window
        phi((1 - 0.5) / 0.5),  # history 0, 1: mean 0.5, std 0.5
        phi((1 - 2 / 3) / math.sqrt(2 / 9)),  # history 0, 1, 1
        1.0,  # history 1, 1, 1 (0 dropped): std floored at MIN_STD, 3 is far out
    ]
    np.testing.assert_allclose(got, expected, rtol=1e-12)
    assert expected[2] == pytest.approx(0.8413447460685429)


def test_alarm_rule_raises_one_alarm_per_event():
    rule = online.AlarmRule(threshold=0.9, gap=2, start=1)
    flags = [rule.update(v) for v in [0.95, 0.95, 0.95, 0.5, 0.95, 0.95, 0.99, 0.95]]
    # row 0 is probation; 2 is inside the gap after 1; 5 and 6 inside the gap after 4
    assert flags == [False, True, False, False, True, False, False, True]


def test_range_check_flags_values_beyond_the_range_seen_so_far_by_the_tolerance():
    check = online.RangeCheck(tolerance=0.1)
    rows = [[5.0, 1.0], [5.0, 3.0], [6.0, 3.1], [5.5, 3.3], [4.8, 2.0], [5.5, 0.7]]
    flags = [check.update(np.array(row)) for row in rows]
    # rows 1-2: column 0 had held one value (no range yet), 3.1 is within 10 % of [1, 3];
    # row 3: 3.3 <= 3.1 + 0.21; row 4: 4.8 < 5 - 0.1; row 5: 0.7 < 1 - 0.23 (column 1)
    assert flags == [False, False, False, False, True, True]
    assert not any(online.RangeCheck(0.0).update(np.array([v])) for v in [1.0, 2.0, 100.0])


def test_a_new_extreme_alarms_whatever_the_error():
    values = np.r_[np.sin(np.arange(400) / 5), 3.0, np.sin(np.arange(401, 600) / 5)][:, None]
    errors = np.full(len(values), 0.1)  # a forecaster that predicted every row equally well
    settings = online.AlarmSettings(0.999, 50, range_tolerance=0.05)
    scored = online.score_errors(errors, settings, 100, values)
    assert np.flatnonzero(scored.alarms).tolist() == [400]
    assert scored.likelihood[400] == 1.0  # a rising start widens the range in probation:
    assert np.flatnonzero(scored.beyond_range[100:]).tolist() == [300]
    off = online.score_errors(errors, online.AlarmSettings(0.999, 50), 100, values)
    assert not off.alarms.any()


def test_a_level_shift_becomes_the_new_normal():
    values = np.r_[np.zeros(300), np.full(700, 10.0)][:, None]
    values += np.random.default_rng(0).normal(0, 1, values.shape)
    z = online.normalise_series(values, 50, values[:200])[:, 0]
    assert abs(z[300]) > 5  # the shift itself stands out
    assert np.abs(z[600:]).mean() < 1.2  # and 300 rows later it is ordinary
    flat = online.normalise_series(np.full((100, 1), 3.0), 50, np.full((20, 1), 3.0))
    assert np.all(flat == 0)


def beat_errors(n: int, period: int, seed: int = 0) -> tuple[np.ndarray, list[int]]:
    """Errors of a forecaster that misses every beat of a signal (a 2-row spike each
    ``period`` rows, drifting by up to 3 rows), small noise between; and the beat rows."""
    rng = np.random.default_rng(seed)
    errors = np.abs(rng.normal(0, 0.05, n))
    beats = list(itertools.accumulate(period + rng.integers(-3, 4, n // period)))
    beats = [b for b in beats if b < n - 2]
    for beat in beats:
        errors[beat : beat + 2] += 4.0
    return errors, beats


def test_error_period_finds_a_recurrence_and_only_one_that_is_strong():
    errors, _ = beat_errors(800, 90)
    assert online.error_period(errors, strength=0.3) in range(87, 94)
    noise = np.abs(np.random.default_rng(1).normal(size=800))
    assert online.error_period(noise, strength=0.3) == 0
    assert online.error_period(errors, strength=0.0) == 0  # off
    assert online.error_period(np.zeros(800), strength=0.3) == 0  # no spread


def test_recurring_errors_are_discounted_and_a_new_one_is_not():
    """A spike at every beat is the forecaster's habit, not an anomaly: after probation the
    likelihood sees it discounted by the same phase's spike one period before, while ordinary
    rows and a spike between beats keep their error. With the discount off, the beats after
    probation raise alarm after alarm (600 probation rows hold under three beats)."""
    errors, beats = beat_errors(4000, 250)
    errors[3130:3132] += 5.0  # between beats
    probation = 600
    periodic = online.PeriodicErrors(probation, strength=0.3)
    seen = np.array([periodic.update(e) for e in errors])
    assert periodic.period in range(247, 254)
    np.testing.assert_array_equal(seen[:probation], errors[:probation])
    later = [b for b in beats if b > probation + periodic.period + periodic.jitter]
    assert errors[later].min() > 4 and seen[later].max() < 0.5
    assert seen[3130:3132].min() > 4.5
    ordinary = np.setdiff1d(np.arange(1000, 4000), [b + k for b in beats for k in range(2)])
    assert np.median(errors[ordinary] - seen[ordinary]) < 0.03
    settings = online.AlarmSettings(0.999, 100, period_strength=0.3)
    scored = online.score_errors(errors, settings, probation, errors[:, None])
    plain = online.score_errors(
        errors, online.AlarmSettings(0.999, 100), probation, errors[:, None]
    )
    assert scored.period == periodic.period and plain.period == 0
    assert scored.alarms[3130:3145].any() and plain.alarms[3130:3145].any()
    assert scored.alarms.sum() <= 3 and plain.alarms.sum() >= 10


def synthetic_csv(path: Path, kind: str, at: int, n: int = 1400, seed: int = 0) -> list[int]:
    """A noisy daily cycle with one anomaly of ``kind`` at row ``at``; returns its row span."""
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    value = 10 + 3 * np.sin(2 * np.pi * t / 96) + rng.normal(0, 0.3, n)
    if kind == "spike":
        value[at : at + 2] += 6
        span = [at - 30, at + 30]
    else:  # level shift: the rest of the series moves up
        value[at:] += 4
        span = [at - 30, at + 30]
    stamps = pd.date_range("2024-03-01", periods=n, freq="5min")
    pd.DataFrame({"timestamp": stamps, "value": value}).to_csv(path, index=False)
    return span


def edge_csvs(folder: Path) -> None:
    """Two series without anomalies: a constant one (no spread at all) and one with a NaN
    stretch (filled by --fill-missing) and an hour of missing timestamps."""
    stamps = pd.date_range("2024-03-01", periods=960, freq="5min").delete(range(300, 360))
    rng = np.random.default_rng(3)
    gappy = 5 + np.sin(np.arange(len(stamps)) / 8) + rng.normal(0, 0.05, len(stamps))
    gappy[500:520] = np.nan
    pd.DataFrame({"timestamp": stamps, "value": 7.0}).to_csv(folder / "constant.csv", index=False)
    pd.DataFrame({"timestamp": stamps, "value": gappy}).to_csv(folder / "gappy.csv", index=False)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """One corpus run: anomalies in the first and in the second half, and two edge cases in a
    subfolder (NAB's data/<category>/ layout)."""
    workdir = tmp_path_factory.mktemp("corpus")
    folder = workdir / "series"
    folder.mkdir()
    spans = {
        "spike.csv": synthetic_csv(folder / "spike.csv", "spike", 500),
        "shift.csv": synthetic_csv(folder / "shift.csv", "level", 1000, seed=1),
    }
    (folder / "edge").mkdir()
    edge_csvs(folder / "edge")
    stamps = pd.date_range("2024-03-01", periods=1400, freq="5min").astype(str)
    labels = {f"demo/{name}": [[stamps[s], stamps[e]]] for name, (s, e) in spans.items()}
    labels |= {"edge/constant.csv": [], "edge/gappy.csv": []}
    (workdir / "windows.json").write_text(json.dumps(labels))
    uri = f"sqlite:///{workdir / 'mlflow.db'}"
    code = main(
        AnomalyTask(),
        [*TINY, "--data", str(folder), "--labels", str(workdir / "windows.json")]
        + ["--fill-missing", "--tracking-uri", uri, "--output", str(workdir / "out")],
    )
    assert code == 0
    return workdir, uri, spans


def children(uri: str) -> dict[str, mlflow.entities.Run]:
    return {
        r.data.tags["fold"]: r
        for r in runs_of(uri, "anomaly")
        if "mlflow.parentRunId" in r.data.tags
    }


def test_corpus_parent_holds_corpus_scores_and_a_per_file_table(corpus):
    workdir, uri, _ = corpus
    runs = runs_of(uri, "anomaly")
    parent = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    files = children(uri).values()
    assert len(parent) == 1 and len(files) == 4
    metrics = parent[0].data.metrics
    for prefix in ("test_", "baseline_zscore_"):
        for profile in nab.PROFILES:
            assert f"{prefix}corpus_nab_{profile}" in metrics
    # the corpus score is NAB's: raw totals of the files normalised once
    raw = sum(c.data.metrics["test_nab_raw_standard"] for c in files)
    null = sum(c.data.metrics["test_nab_null_standard"] for c in files)
    perfect = sum(c.data.metrics["test_nab_perfect_standard"] for c in files)
    expected = nab.normalise(raw, null, perfect)
    assert metrics["test_corpus_nab_standard"] == pytest.approx(expected)
    folds = pd.read_csv(workdir / "out" / "folds.csv")
    assert sorted(folds["fold"]) == ["edge/constant", "edge/gappy", "shift", "spike"]
    assert "baseline_zscore_nab_standard" in folds


def test_online_default_finds_anomalies_in_either_half_with_few_false_alarms(corpus):
    _, uri, _ = corpus
    files = children(uri)
    for name in ("spike", "shift"):
        assert files[name].data.metrics["test_detected"] == 1, name
        assert files[name].data.metrics["test_false_alarms"] <= 2, name


def test_constant_and_gappy_series_are_handled_without_alarms(corpus):
    _, uri, _ = corpus
    files = children(uri)
    assert files["edge/constant"].data.metrics["test_alarms"] == 0
    assert files["edge/gappy"].data.metrics["test_alarms"] <= 1


@pytest.fixture(scope="module")
def shift_run(corpus):
    workdir, uri, _ = corpus
    child = children(uri)["shift"]
    mlflow.set_tracking_uri(uri)
    path = mlflow.artifacts.download_artifacts(
        run_id=child.info.run_id, artifact_path="results/anomalies.csv"
    )
    return child, pd.read_csv(path), workdir


def test_anomalies_csv_flags_alarm_rows_only(shift_run):
    _, table, _ = shift_run
    assert {"score", "likelihood", "is_anomaly", "baseline_likelihood"} <= set(table.columns)
    alarms = np.flatnonzero(table["is_anomaly"].to_numpy())
    assert len(alarms) >= 1 and np.all(np.diff(alarms) > 100)  # events, not stretches
    assert table["is_anomaly"].sum() < (table["likelihood"] >= 0.999).sum()


def test_streaming_predict_and_scorer_give_the_run_alarms(shift_run, capsys):
    child, table, workdir = shift_run
    run_id = child.info.run_id
    expected = table["is_anomaly"].to_numpy().astype(bool)
    values = pd.read_csv(workdir / "series" / "shift.csv")[["value"]].to_numpy(np.float32)
    streamed = OnlineDetector.from_run(run_id).run(values)
    np.testing.assert_array_equal(streamed.alarms, expected)
    np.testing.assert_allclose(streamed.likelihood, table["likelihood"], atol=1e-3)
    scorer = mlflow.pyfunc.load_model(f"runs:/{run_id}/scorer")
    served = scorer.predict(pd.DataFrame({"value": values[:, 0]}))
    np.testing.assert_array_equal(served["is_anomaly"].to_numpy(), expected)
    code = main(
        AnomalyTask(),
        ["--model-uri", f"runs:/{run_id}/model", "--predict", str(workdir / "series/shift.csv")]
        + ["--tracking-uri", mlflow.get_tracking_uri(), "--output", str(workdir / "predicted")],
    )
    assert code == 0, capsys.readouterr().err
    predicted = pd.read_csv(workdir / "predicted" / "anomalies.csv")
    np.testing.assert_array_equal(predicted["is_anomaly"].to_numpy().astype(bool), expected)
    assert f"{expected.sum()} alarm(s)" in capsys.readouterr().out


def test_exported_savedmodel_errors_give_the_run_alarms(shift_run, tmp_path):
    import tensorflow as tf

    from pipelines.export import main as export_main

    child, table, workdir = shift_run
    out = tmp_path / "export"
    assert export_main(["--run-id", child.info.run_id, "--output", str(out)]) == 0
    detector = json.loads((out / "detector.json").read_text())
    step = tf.saved_model.load(str(out)).signatures["serving_default"]
    values = pd.read_csv(workdir / "series" / "shift.csv")[["value"]].to_numpy()
    reference = detector["reference"]
    normaliser = online.RollingNormaliser(detector["norm_span"], **reference)
    carry = {"prediction": tf.zeros((1, 1)), "score": tf.constant(0.0), "state": None}
    carry["state"] = tf.zeros((1, 2 * 8))
    errors = []
    for i, value in enumerate(values):
        z = normaliser.update(value).astype(np.float32).reshape(1, 1)
        out_step = step(x=tf.constant(z), first=tf.constant(float(i == 0)), **carry)
        carry = {k: out_step[k] for k in carry}
        errors.append(float(out_step["score"]))
    settings = online.AlarmSettings.of_detector(detector)
    scored = online.score_errors(errors, settings, detector["probation"], values)
    np.testing.assert_array_equal(scored.alarms, table["is_anomaly"].to_numpy().astype(bool))


def predict_cli(run, source: Path, output: Path) -> int:
    """``--model-uri runs:/<run>/model --predict SOURCE --output OUTPUT`` of the shift run."""
    return main(
        AnomalyTask(),
        ["--model-uri", f"runs:/{run.info.run_id}/model", "--predict", str(source)]
        + ["--tracking-uri", mlflow.get_tracking_uri(), "--output", str(output)],
    )


def test_predict_on_a_new_csv_gives_the_streaming_alarms(shift_run, tmp_path, capsys):
    child, _, _ = shift_run
    csv = tmp_path / "new.csv"
    synthetic_csv(csv, "spike", 900, n=1200, seed=7)  # not a training series
    assert predict_cli(child, csv, tmp_path / "out") == 0, capsys.readouterr().err
    out = capsys.readouterr().out.splitlines()
    predicted = pd.read_csv(tmp_path / "out" / "anomalies.csv")
    columns = ["timestamp", "score", "likelihood", "is_anomaly", "beyond_range"]
    assert list(predicted.columns) == columns
    assert len(predicted) == 1200
    run_id = child.info.run_id
    detector = mlflow.artifacts.load_dict(f"runs:/{run_id}/results/detector.json")
    values = pd.read_csv(csv)[["value"]].to_numpy(np.float32)
    reference = online.RollingNormaliser.fit(
        detector["norm_span"], values[: detector["probation"]]
    ).state()  # --predict starts the normaliser on the file's own probation rows
    model = mlflow.keras.load_model(f"runs:/{run_id}/model")
    streamed = OnlineDetector(model, detector, reference).run(values)
    alarms = np.flatnonzero(predicted["is_anomaly"].to_numpy())
    np.testing.assert_array_equal(alarms, np.flatnonzero(streamed.alarms))
    np.testing.assert_allclose(predicted["likelihood"], streamed.likelihood, atol=1e-3)
    assert any(900 <= row <= 930 for row in alarms), alarms  # the spike is found
    lines = [line.removeprefix("alarm at ").split(" (row ") for line in out[:-1]]
    assert [pd.Timestamp(stamp) for stamp, _ in lines] == list(
        pd.to_datetime(predicted["timestamp"][alarms])
    )
    assert [rest for _, rest in lines] == [
        f"{row}, beyond the range seen)"
        if predicted["beyond_range"][row]
        else f"{row}, likelihood {predicted['likelihood'][row]:.6f})"
        for row in alarms
    ]
    assert out[-1] == f"{len(alarms)} alarm(s) in {1200 - detector['probation']} scored rows"


def test_predict_on_a_folder_scores_every_csv_like_a_single_file(shift_run, tmp_path, capsys):
    child, _, _ = shift_run
    folder = tmp_path / "new"
    (folder / "sub").mkdir(parents=True)
    synthetic_csv(folder / "spike.csv", "spike", 700, n=1000, seed=11)
    synthetic_csv(folder / "sub" / "shift.csv", "level", 800, n=1100, seed=12)
    (folder / "notes.txt").write_text("not a series")
    assert predict_cli(child, folder, tmp_path / "all") == 0, capsys.readouterr().err
    out = capsys.readouterr().out.splitlines()
    table = pd.read_csv(tmp_path / "all" / "anomalies.csv")
    assert list(table.columns) == [
        "file",
        "timestamp",
        "score",
        "likelihood",
        "is_anomaly",
        "beyond_range",
    ]
    assert table["file"].value_counts().to_dict() == {"spike": 1000, "sub/shift": 1100}
    for name in ("spike", "sub/shift"):
        single_out = tmp_path / f"single-{name.replace('/', '-')}"
        assert predict_cli(child, folder / f"{name}.csv", single_out) == 0
        single_lines = capsys.readouterr().out.splitlines()
        single = pd.read_csv(single_out / "anomalies.csv")
        rows = table[table["file"] == name].drop(columns="file").reset_index(drop=True)
        pd.testing.assert_frame_equal(rows, single)
        assert [line for line in out if line.startswith(f"{name}: ")] == [
            f"{name}: {line}" for line in single_lines
        ]
    assert out[-1] == f"{int(table['is_anomaly'].sum())} alarm(s) in 2 file(s)"


@pytest.mark.parametrize("case", ["no-csv", "malformed"])
def test_predict_on_a_bad_folder_is_one_error_and_writes_nothing(case, shift_run, tmp_path, capsys):
    child, _, _ = shift_run
    folder = tmp_path / "bad"
    (folder / "sub").mkdir(parents=True)
    (folder / "readme.txt").write_text("no series here")
    if case == "malformed":
        synthetic_csv(folder / "good.csv", "spike", 700, n=1000, seed=13)
        (folder / "sub" / "bad.csv").write_text("timestamp,value\n2024-03-01,1.0\n2024-03-02,x\n")
    output = tmp_path / "out"
    assert predict_cli(child, folder, output) == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, errors
    named = str(folder) if case == "no-csv" else str(folder / "sub" / "bad.csv")
    assert named in errors[0], errors[0]
    assert not output.exists()
