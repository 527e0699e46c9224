"""End-to-end checks of ``python -m pipelines.anomaly``: MLflow contents, outputs, bad input."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest

from pipelines.anomaly.scoring import score_series
from pipelines.anomaly.streaming import StreamingDetector
from pipelines.anomaly.task import AnomalyConfig, AnomalyTask
from pipelines.core import RunOptions, main, run
from pipelines.datasets import load_series
from tests.conftest import free_port, logged_models, runs_of

TINY = ["--epochs", "2", "--units", "8", "--window", "32", "--batch-size", "32", "--stride", "8"]


def ecg_like_csv(path: Path, n: int = 1200, anomaly: tuple[int, int] = (1000, 1040)) -> Path:
    """A periodic signal with one distorted stretch, timestamps every minute."""
    t = np.arange(n)
    value = np.sin(2 * np.pi * t / 40) + 0.05 * np.random.default_rng(0).normal(size=n)
    label = np.zeros(n, int)
    value[anomaly[0] : anomaly[1]] += 3.0
    label[anomaly[0] : anomaly[1]] = 1
    stamps = pd.date_range("2024-01-01", periods=n, freq="min")
    pd.DataFrame({"timestamp": stamps, "value": value, "label": label}).to_csv(path, index=False)
    return path


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One tiny batch-protocol mitdb run shared by the tests that inspect it."""
    workdir = tmp_path_factory.mktemp("anomaly")
    uri = f"sqlite:///{workdir / 'mlflow.db'}"
    cfg = AnomalyConfig(epochs=2, units=8, window=32, stride=8, batch_size=32, protocol="batch")
    opts = RunOptions(tracking_uri=uri, output=str(workdir / "out"))
    result = run(AnomalyTask(), cfg, opts)
    return result, cfg, uri, workdir / "out"


def test_default_run_is_fully_tracked(trained):
    result, cfg, uri, _ = trained
    (logged,) = runs_of(uri, "anomaly")
    assert logged.info.status == "FINISHED"
    assert logged.data.tags["task"] == "anomaly"
    assert logged.data.tags["cell"] == "lstm" and logged.data.tags["data"] == "mitdb"
    for key in (
        "cell",
        "units",
        "layers",
        "dropout",
        "learning_rate",
        "batch_size",
        "epochs",
        "data",
        "window",
        "threshold",
    ):
        assert key in logged.data.params
    assert logged.data.params["units"] == "8"
    for key in ("test_event_f1", "test_point_f1", "test_roc_auc", "test_pr_auc", "test_threshold"):
        assert key in logged.data.metrics
    history = mlflow.MlflowClient(uri).get_metric_history(logged.info.run_id, "loss")
    assert [m.step for m in history] == list(range(1, len(result.history["loss"]) + 1))
    artifacts = mlflow.artifacts.download_artifacts(run_id=logged.info.run_id, tracking_uri=uri)
    names = {str(p.relative_to(artifacts)) for p in Path(artifacts).rglob("*") if p.is_file()}
    for name in (
        "series.png",
        "score.png",
        "error_histogram.png",
        "gates.png",
        "results/anomalies.csv",
        "results/windows.csv",
        "results/detector.json",
        "config.json",
    ):
        assert name in names
    assert set(logged_models(uri, logged)) == {"model", "scorer"}


def test_logged_model_reloads_and_predicts_the_same(trained):
    result, _, uri, _ = trained
    (logged,) = runs_of(uri, "anomaly")
    mlflow.set_tracking_uri(uri)
    reloaded = mlflow.keras.load_model(f"runs:/{logged.info.run_id}/model")
    x = load_series("mitdb").values[:500][None]
    np.testing.assert_allclose(
        reloaded.predict(x, verbose=0), result.model.predict(x, verbose=0), atol=1e-6
    )


def test_output_files_hold_one_row_per_step(trained):
    result, _, _, out = trained
    table = pd.read_csv(out / "anomalies.csv")
    assert list(table.columns) == ["timestamp", "score", "is_anomaly", "split", "label"]
    assert len(table) == 7500
    assert set(table["split"]) == {"train", "validation", "test"}
    windows = pd.read_csv(out / "windows.csv")
    assert list(windows.columns) == ["start", "end", "peak_score"]
    flagged = table["is_anomaly"].to_numpy().astype(bool)
    assert flagged.sum() == sum(e - s + 1 for s, e in windows[["start", "end"]].to_numpy())
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["test_threshold"] == pytest.approx(result.metrics["test_threshold"])


def test_streaming_scores_equal_batch_scores(trained):
    result, cfg, _, _ = trained
    values = load_series("mitdb").values[:1500]
    batch = score_series(result.model, values, "forecaster", cfg.window, cfg.smoothing)
    threshold = result.metrics["test_threshold"]
    detector = StreamingDetector(result.model, threshold, cfg.smoothing)
    streamed = detector.score(values)
    np.testing.assert_allclose(streamed, batch, rtol=1e-4, atol=1e-5)
    detector.reset()
    score, flagged = detector.update(values[0])
    assert score == 0.0 and flagged is False


def test_streaming_detector_loads_from_a_run(trained):
    _, cfg, uri, _ = trained
    (logged,) = runs_of(uri, "anomaly")
    mlflow.set_tracking_uri(uri)
    detector = StreamingDetector.from_run(logged.info.run_id)
    assert detector.threshold == pytest.approx(logged.data.metrics["test_threshold"])


def test_ucr135_keeps_its_own_test_part():
    series = load_series("ucr135")
    assert series.test_start == 1200 and len(series) == 1200 + 7501
    assert series.labels[:1200].sum() == 0 and series.labels.sum() == 12
    train_end, validation_end = AnomalyTask.split(series, AnomalyConfig(data="ucr135"))
    assert (train_end, validation_end) == (960, 1200)


@pytest.mark.parametrize("threshold", ["quantile", "max-train"])
def test_autoencoder_and_other_thresholds_on_a_csv(workdir, tracking_uri, threshold, capsys):
    data = ecg_like_csv(workdir / "series.csv")
    code = main(
        AnomalyTask(),
        [
            *TINY,
            "--data",
            str(data),
            "--model",
            "autoencoder",
            "--protocol",
            "batch",
            "--time-column",
            "timestamp",
            "--label-column",
            "label",
            "--threshold",
            threshold,
            "--tracking-uri",
            tracking_uri,
            "--no-log-model",
        ],
    )
    assert code == 0, capsys.readouterr().err
    (logged,) = runs_of(tracking_uri, "anomaly")
    assert logged.data.params["model"] == "autoencoder"
    assert "test_event_recall" in logged.data.metrics


def test_nab_labels_give_a_nab_score(workdir, tracking_uri, capsys):
    data = ecg_like_csv(workdir / "machine_temperature.csv")
    frame = pd.read_csv(data).drop(columns="label")
    frame.to_csv(data, index=False)
    stamps = pd.to_datetime(frame["timestamp"])
    windows = {"realKnownCause/machine_temperature.csv": [[str(stamps[990]), str(stamps[1050])]]}
    labels = workdir / "combined_windows.json"
    labels.write_text(json.dumps(windows))
    code = main(
        AnomalyTask(),
        [
            *TINY,
            "--data",
            str(data),
            "--time-column",
            "timestamp",
            "--labels",
            str(labels),
            "--tracking-uri",
            tracking_uri,
            "--no-log-model",
        ],
    )
    assert code == 0, capsys.readouterr().err
    (logged,) = runs_of(tracking_uri, "anomaly")
    assert np.isfinite(logged.data.metrics["test_nab_standard"])


def _bad_csvs(workdir: Path) -> dict[str, Path]:
    good = ecg_like_csv(workdir / "good.csv")
    frame = pd.read_csv(good)
    files = {
        "empty": workdir / "empty.csv",
        "text": workdir / "text.csv",
        "nan": workdir / "nan.csv",
        "short": workdir / "short.csv",
        "badlabel": workdir / "badlabel.csv",
        "badcell": workdir / "badcell.csv",
    }
    files["empty"].write_text("")
    pd.DataFrame({"name": ["a", "b"], "kind": ["x", "y"]}).to_csv(files["text"], index=False)
    nan = frame.copy()
    nan.loc[5, "value"] = np.nan
    nan.to_csv(files["nan"], index=False)
    frame.head(50).to_csv(files["short"], index=False)
    bad = frame.copy()
    bad.loc[3, "label"] = 2
    bad.to_csv(files["badlabel"], index=False)
    cell = frame.astype({"value": object})
    cell.loc[7, "value"] = "n/a?"
    cell.to_csv(files["badcell"], index=False)
    (workdir / "windows.json").write_text(json.dumps({"other/file.csv": []}))
    late = [["2031-01-01 00:00:00", "2031-01-02 00:00:00"]]
    (workdir / "late.json").write_text(json.dumps({"data/good.csv": late}))
    return files | {"good": good}


BAD_INPUTS = {
    "missing file": (["--data", "nowhere.csv"], "not found"),
    "empty file": (["--data", "{empty}"], "empty"),
    "no numeric column": (["--data", "{text}"], "no numeric value column"),
    "unknown column": (["--data", "{good}", "--value-columns", "volts"], "no column(s) volts"),
    "nan values": (["--data", "{nan}"], "NaN/inf"),
    "one non-numeric cell": (["--data", "{badcell}"], "non-numeric cell(s) (first at row 7"),
    "shorter than a window": (["--data", "{short}"], "at least 50 rows to learn from"),
    "labels not 0/1": (["--data", "{badlabel}", "--label-column", "label"], "only 0 and 1"),
    "nab windows off the series": (
        ["--data", "{good}", "--time-column", "timestamp", "--labels", "late.json"],
        "do not overlap",
    ),
    "nab key missing": (
        ["--data", "{good}", "--time-column", "timestamp", "--labels", "windows.json"],
        "good.csv",
    ),
    "unknown data name": (["--data", "ecg9000"], "unknown data set 'ecg9000'"),
    "zero epochs": (["--epochs", "0"], "--epochs must be positive"),
    "averaging more than all epochs": (["--average-last", "1.5"], "--average-last must be in"),
    "period strength above 1": (
        ["--period-strength", "1.5"],
        "--period-strength must be in [0, 1], got 1.5",
    ),
    "zero window": (["--window", "0"], "--window must be positive"),
    "negative units": (["--units", "-3"], "--units must be positive"),
    "unreachable server": (["--tracking-uri", "http://127.0.0.1:9"], "unreachable"),
    "zero steps per execution": (["--steps-per-execution", "0"], "--steps-per-execution must"),
}
# Run options are checked before the store is touched; every other mistake leaves a FAILED run.
NO_RUN = {"unreachable server", "zero steps per execution"}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_input_is_one_line_exit_2_and_a_failed_run(case, workdir, tracking_uri, capsys):
    files = _bad_csvs(workdir)
    args, message = BAD_INPUTS[case]
    args = [a.format(**{k: str(v) for k, v in files.items()}) for a in args]
    if "--tracking-uri" not in args:
        args += ["--tracking-uri", tracking_uri]
    code = main(AnomalyTask(), [*TINY, *args, "--output", str(workdir / "out")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert len(err) == 1 and err[0].startswith("error: ") and message in err[0], err
    runs = runs_of(tracking_uri, "anomaly")
    if case in NO_RUN:
        assert runs == []
    else:
        assert [r.info.status for r in runs] == ["FAILED"]
        assert message in runs[0].data.tags["error"]
    assert not (workdir / "out" / "anomalies.csv").exists()


def test_fill_missing_interpolates_instead_of_failing(workdir, tracking_uri, capsys):
    files = _bad_csvs(workdir)
    code = main(
        AnomalyTask(),
        [
            *TINY,
            "--data",
            str(files["nan"]),
            "--fill-missing",
            "--tracking-uri",
            tracking_uri,
            "--no-log-model",
        ],
    )
    assert code == 0, capsys.readouterr().err


def test_cli_process_prints_one_clean_error_line(workdir):
    """The real process: no TensorFlow chatter, no traceback, exit code 2."""
    done = subprocess.run(
        [sys.executable, "-m", "pipelines.anomaly", "--data", "missing.csv"],
        capture_output=True,
        text=True,
        cwd=workdir,
        timeout=300,
        env={**__import__("os").environ, "PYTHONPATH": str(Path(__file__).parents[2])},
    )
    assert done.returncode == 2
    assert done.stderr.strip() == "error: data file not found: missing.csv"


def test_help_lists_task_flags_with_defaults(capsys):
    with pytest.raises(SystemExit):
        main(AnomalyTask(), ["--help"])
    out = " ".join(capsys.readouterr().out.split())
    for flag in ("--window", "--threshold", "--model", "--cell", "--tune", "--tracking-uri"):
        assert flag in out
    assert "default: mitdb" in out


def test_exported_streaming_savedmodel_gives_the_detector_scores(trained, tmp_path):
    import tensorflow as tf

    from pipelines.export import main as export_main

    result, cfg, uri, _ = trained
    (logged,) = runs_of(uri, "anomaly")
    out = tmp_path / "streaming"
    assert (
        export_main(["--run-id", logged.info.run_id, "--output", str(out), "--tracking-uri", uri])
        == 0
    )
    step = tf.saved_model.load(str(out)).signatures["serving_default"]
    values = load_series("mitdb").values[:300]
    detector = StreamingDetector(result.model, result.metrics["test_threshold"], cfg.smoothing)
    expected = detector.score(values)
    carry = {
        "prediction": tf.zeros((1, 1)),
        "score": tf.constant(0.0),
        "state": tf.zeros((1, 2 * cfg.units)),
    }
    scores = []
    for i, value in enumerate(values):
        out_step = step(
            x=tf.constant(value.reshape(1, 1)), first=tf.constant(float(i == 0)), **carry
        )
        carry = {k: out_step[k] for k in carry}
        scores.append(float(out_step["score"]))
    np.testing.assert_allclose(scores, expected, rtol=1e-4, atol=1e-5)
    assert json.loads((out / "detector.json").read_text())["smoothing"] == cfg.smoothing


def test_export_of_an_unknown_run_is_one_error_line(trained, tmp_path, capsys):
    from pipelines.export import main as export_main

    _, _, uri, _ = trained
    code = export_main(
        ["--run-id", "0" * 32, "--output", str(tmp_path / "x"), "--tracking-uri", uri]
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith("error: cannot load run")
    assert not (tmp_path / "x").exists()


def test_mlflow_models_serve_scores_a_posted_window(trained):
    """`mlflow models serve` on the run's scorer answers a POSTed window over HTTP."""
    import os
    import signal
    import time
    import urllib.error
    import urllib.request

    result, cfg, uri, _ = trained
    (logged,) = runs_of(uri, "anomaly")
    port = free_port()
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mlflow",
            "models",
            "serve",
            "-m",
            f"runs:/{logged.info.run_id}/scorer",
            "--env-manager",
            "local",
            "-h",
            "127.0.0.1",
            "-p",
            str(port),
        ],
        # mlflow starts `uvicorn` by name: the venv's bin must be on PATH even if not activated
        env={
            **os.environ,
            "MLFLOW_TRACKING_URI": uri,
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
            "PIPELINES_SERVING_MAX_BYTES": "65536",
            "PIPELINES_SERVING_MAX_ROWS": "1000",
        },
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # its uvicorn workers die with it
    )
    try:
        deadline = time.time() + 180
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=2)
                break
            except OSError:
                assert server.poll() is None and time.time() < deadline, "server did not start"
                time.sleep(1)
        values = load_series("mitdb").values[6800:7300]

        def post(body: bytes) -> tuple[int, dict]:
            request = urllib.request.Request(
                f"http://127.0.0.1:{port}/invocations", body, {"Content-Type": "application/json"}
            )
            try:
                with urllib.request.urlopen(request, timeout=60) as response:
                    return response.status, json.loads(response.read())
            except urllib.error.HTTPError as refused:
                return refused.code, json.loads(refused.read())

        def rows(data: list) -> bytes:
            return json.dumps({"dataframe_split": {"columns": ["value"], "data": data}}).encode()

        status, answered = post(rows(values.tolist()))
        answer = answered["predictions"]
        refusals = {
            "too many rows": post(rows([[0.5]] * 1001)),
            "too large": post(b" " * 70_000 + rows([[0.5]])),
            "malformed": post(b'{"dataframe_split": {"columns": ["value"], "data": [[1]'),
            "nested": post(b"[" * 5000 + b"]" * 5000),
        }
    finally:
        os.killpg(server.pid, signal.SIGKILL)
        server.wait(timeout=30)
    assert status == 200
    assert {k: code for k, (code, _) in refusals.items()} == {
        "too many rows": 400, "too large": 413, "malformed": 400, "nested": 400
    }  # fmt: skip
    assert "1001 rows are over the limit of 1000" in refusals["too many rows"][1]["message"]
    assert "over the limit of 65536" in refusals["too large"][1]["message"]
    assert "nested too deeply" in refusals["nested"][1]["message"]
    expected = score_series(result.model, values, "forecaster", cfg.window, cfg.smoothing)
    np.testing.assert_allclose([row["score"] for row in answer], expected, rtol=1e-4, atol=1e-5)
    threshold = result.metrics["test_threshold"]
    assert [row["is_anomaly"] for row in answer] == list(expected > threshold)


def test_batch_figures_put_timestamps_on_the_x_axis():
    from pipelines.anomaly.task import Detection, plot_score, plot_series
    from pipelines.core.timeseries import TimeSeries

    stamps = pd.date_range("2024-01-01", periods=50, freq="h").to_numpy()
    values = np.sin(np.arange(50, dtype=np.float32))[:, None]
    series = TimeSeries(stamps, values, ["value"], labels=(np.arange(50) >= 40).astype(int))
    scores = np.abs(values[:, 0]) + 0.1
    found = Detection(scores, 0.5, [(42, 45)], np.zeros(50, bool), slice(30, 50))
    for fig in (plot_series(series, found), plot_score(series, found, 30)):
        xdata = fig.axes[0].lines[0].get_xdata()
        assert np.issubdtype(np.asarray(xdata).dtype, np.datetime64)
        np.testing.assert_array_equal(xdata, stamps)
