"""Checks of ``python -m pipelines.forecast``: metrics, baselines, MLflow contents, bad input."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest

from benchmarks.forecast_suite import synthetic_series
from pipelines.core import ConfigError, RunOptions, main, run
from pipelines.forecast import baselines, defaults, hybrid, metrics
from pipelines.forecast.task import ForecastConfig, ForecastTask, spread_origins
from tests.conftest import logged_models, runs_of

MODELS = ["forecast", "lstm", "naive", "seasonal_naive", "ets", "theta", "auto_ets"]
TINY = [
    "--epochs",
    "2",
    "--units",
    "8",
    "--horizon",
    "6",
    "--window",
    "36",
    "--stride",
    "4",
    "--batch-size",
    "32",
]


def periodic_csv(path: Path, n: int = 700, period: int = 24) -> Path:
    """A noisy daily cycle sampled hourly, with a covariate that leads it."""
    t = np.arange(n)
    noise = 0.05 * np.random.default_rng(0).normal(size=n)
    frame = pd.DataFrame(
        {
            "time": pd.date_range("2024-01-01", periods=n, freq="h"),
            "load": 10 + np.sin(2 * np.pi * t / period) + noise,
            "temperature": np.cos(2 * np.pi * t / period),
        }
    )
    frame.to_csv(path, index=False)
    return path


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> str:
    """One MLflow store for the module (creating a SQLite store is slow); one experiment per
    test keeps their runs apart."""
    return f"sqlite:///{tmp_path_factory.mktemp('mlflow') / 'mlflow.db'}"


@pytest.fixture(scope="module")
def trained(tmp_path_factory, store):
    """One tiny run on the default data (taylor) with quantiles, shared by the tests below."""
    workdir = tmp_path_factory.mktemp("forecast")
    uri = store
    cfg = ForecastConfig(epochs=1, units=8, stride=16, backtest=10, quantiles=[0.1, 0.5, 0.9])
    result = run(ForecastTask(), cfg, RunOptions(tracking_uri=uri, output=str(workdir / "out")))
    return result, cfg, uri, workdir / "out"


# ---- metrics and baselines, by hand --------------------------------------------------------
def test_metrics_match_hand_computed_values():
    actual = np.array([[1.0, 2.0], [3.0, 4.0]])
    forecast = np.array([[2.0, 2.0], [3.0, 2.0]])
    assert metrics.mae(actual, forecast) == pytest.approx(0.75)
    assert metrics.rmse(actual, forecast) == pytest.approx(np.sqrt(5 / 4))
    # sMAPE terms: 2*1/3, 0, 0, 2*2/6 -> mean (2/3 + 2/3) / 4 = 1/3 -> 33.33 %
    assert metrics.smape(actual, forecast) == pytest.approx(100 / 3)
    assert metrics.smape(np.zeros(3), np.zeros(3)) == 0.0
    train = np.array([1.0, 3.0, 2.0, 5.0])  # season 2: |2-1| + |5-3| -> scale 1.5
    assert metrics.seasonal_scale(train, 2) == pytest.approx(1.5)
    assert metrics.mase(actual, forecast, 1.5) == pytest.approx(0.5)
    lower, upper = actual - 0.5, actual + np.array([[1.0, -1.0], [0.0, 2.0]])
    assert metrics.coverage(actual, lower, upper) == pytest.approx(0.75)
    scores = metrics.score(actual, forecast, 1.5, (lower, upper))
    assert scores["interval_width"] == pytest.approx(np.mean(upper - lower))
    np.testing.assert_allclose(metrics.mae_by_step(actual, forecast), [0.5, 1.0])


def test_constant_series_has_no_mase_scale():
    with pytest.raises(Exception, match="MASE is undefined"):
        metrics.seasonal_scale(np.full(50, 3.0), 7)


def test_seasonal_naive_is_exact_on_a_periodic_series():
    season, horizon = 12, 30  # a horizon beyond one season repeats the last season
    values = np.tile(np.random.default_rng(1).normal(size=season), 20)
    origins = np.array([24, 100, 200])
    forecast = baselines.seasonal_naive(values, origins, horizon, season)
    actual = values[origins[:, None] + np.arange(horizon)]
    np.testing.assert_array_equal(forecast, actual)
    np.testing.assert_array_equal(
        baselines.naive(values, origins, 3), values[origins - 1, None].repeat(3, axis=1)
    )
    assert baselines.detect_season(values[:150], max_season=50) == season
    assert baselines.detect_season(np.cumsum(np.ones(200)), max_season=60) == 1


def test_holt_winters_from_the_training_end_equals_statsmodels_forecast():
    t = np.arange(400)
    values = 5 + np.sin(2 * np.pi * t / 24) + 0.1 * np.random.default_rng(2).normal(size=400)
    ets = baselines.HoltWinters.fit(values[:300], 24)
    from statsmodels.tsa.holtwinters import ExponentialSmoothing

    reference = (
        ExponentialSmoothing(
            values[:300],
            trend="add" if ets.trend else None,
            damped_trend=ets.trend,
            seasonal="add",
            seasonal_periods=24,
            initialization_method="heuristic",
        )
        .fit()
        .forecast(10)
    )
    np.testing.assert_allclose(ets.forecast(values, np.array([300]), 10)[0], reference, rtol=1e-6)
    assert ets.description.startswith("Holt-Winters ETS")


@pytest.mark.parametrize("season", [12, 1])
def test_theta_and_auto_ets_from_the_training_end_equal_statsmodels(season):
    from statsmodels.tsa.exponential_smoothing.ets import ETSModel
    from statsmodels.tsa.forecasting.theta import ThetaModel

    t = np.arange(300)
    noise = np.random.default_rng(4).normal(size=300)
    values = 50 + 0.2 * t + 5 * np.sin(2 * np.pi * t / 12) + noise
    theta = baselines.Theta.fit(values[:200], season)
    reference = ThetaModel(
        values[:200], period=season, deseasonalize=season > 1, use_test=False, method="mul"
    )
    np.testing.assert_allclose(
        theta.forecast(values, np.array([200]), 10)[0], reference.fit().forecast(10), rtol=1e-9
    )
    ets = baselines.AutoETS.fit(values[:200], season)
    fitted = ETSModel(values[:200], initialization_method="heuristic", **ets.spec).fit(disp=False)
    np.testing.assert_allclose(
        ets.forecast(values, np.array([200]), 10)[0], fitted.forecast(10), rtol=1e-9
    )
    assert ets.description.startswith("auto-ETS(A,")
    assert (ets.spec["seasonal"] is not None) == (season > 1)


def test_combination_is_chosen_on_validation_and_intervals_cover():
    rng = np.random.default_rng(5)
    actual = rng.normal(size=(400, 4))
    good, bad = actual + 0.5 * rng.normal(size=(400, 4)), actual + rng.normal(size=(400, 4))
    chosen = hybrid.Combination.choose(actual, {"lstm": bad, "ets": good})
    assert chosen.baseline == "ets" and chosen.weight < 0.5
    assert chosen.validation_mae["forecast"] <= chosen.validation_mae["ets"]
    pure = hybrid.Combination.choose(actual, {"lstm": actual + 9, "ets": good})
    assert (pure.weight, pure.description) == (0.0, "ets")
    alone = hybrid.Combination.choose(actual, {"lstm": actual + 0.01, "ets": good})
    assert (alone.weight, alone.description) == (1.0, "lstm")
    # exchangeable errors: the calibrated interval covers ~80 % of new ones
    half = hybrid.conformal_half_widths(actual[:200], good[:200], 0.8)
    inside = np.abs(actual[200:] - good[200:]) <= half
    assert half.shape == (4,) and 0.74 < inside.mean() < 0.86
    pooled = hybrid.conformal_half_widths(actual[:10], good[:10], 0.8)  # few origins
    np.testing.assert_allclose(pooled / pooled[0], np.sqrt([1, 2, 3, 4]))


def test_backtest_spreads_the_requested_number_of_origins():
    assert len(spread_origins(100, 300, 7)) == 7
    origins = spread_origins(100, 300, 7)
    assert origins[0] == 100 and origins[-1] == 300
    np.testing.assert_array_equal(spread_origins(100, 110, 0), np.arange(100, 111))


# ---- end to end on the default data ---------------------------------------------------------
def test_default_run_is_fully_tracked(trained):
    result, _, uri, _ = trained
    (logged,) = runs_of(uri, "forecast")
    assert logged.info.status == "FINISHED"
    assert logged.data.tags["task"] == "forecast" and logged.data.tags["data"] == "taylor"
    for key in (
        "cell",
        "units",
        "layers",
        "dropout",
        "learning_rate",
        "window",
        "horizon",
        "decoder",
        "quantiles",
        "backtest",
    ):
        assert key in logged.data.params
    for metric in ("mae", "rmse", "smape", "mase"):
        assert f"test_{metric}" in logged.data.metrics
        assert f"lstm/test_{metric}" in logged.data.metrics
        for baseline in MODELS[2:]:
            assert f"baseline_{baseline}_test_{metric}" in logged.data.metrics
    assert 0 <= logged.data.metrics["hybrid/lstm_weight"] <= 1
    assert 0 <= logged.data.metrics["test_coverage"] <= 1
    assert 0 <= logged.data.metrics["lstm/test_coverage"] <= 1
    assert logged.data.metrics["test_interval_width"] >= 0
    artifacts = mlflow.artifacts.download_artifacts(run_id=logged.info.run_id, tracking_uri=uri)
    names = {str(p.relative_to(artifacts)) for p in Path(artifacts).rglob("*") if p.is_file()}
    for name in (
        "forecast.png",
        "error_by_step.png",
        "results/forecast_metrics.csv",
        "results/forecasts.csv",
        "results/forecaster.json",
        "config.json",
    ):
        assert name in names
    assert set(logged_models(uri, logged)) == {"model"}
    assert result.report.artifacts["forecaster"]["season"] == 336


def test_logged_model_reloads_and_predicts_the_same(trained):
    result, _, uri, _ = trained
    (logged,) = runs_of(uri, "forecast")
    mlflow.set_tracking_uri(uri)
    reloaded = mlflow.keras.load_model(f"runs:/{logged.info.run_id}/model")
    window = result.report.artifacts["forecaster"]["window"]
    x = np.random.default_rng(0).normal(30000, 3000, (4, window, 1)).astype(np.float32)
    np.testing.assert_allclose(
        reloaded.predict(x, verbose=0), result.model.predict(x, verbose=0), atol=1e-5
    )


def test_predict_forecasts_past_the_end_of_a_new_csv(trained, tmp_path, capsys):
    """--predict on a CSV the model never saw: the horizon after its last row, equal to the
    model applied to the last window; two numeric columns need --target-column."""
    result, cfg, uri, _ = trained
    spec = result.report.artifacts["forecaster"]
    path = periodic_csv(tmp_path / "new.csv", n=spec["window"] + 20)
    (logged,) = runs_of(uri, "forecast")
    argv = ["--model-uri", f"runs:/{logged.info.run_id}/model", "--tracking-uri", uri]
    assert main(ForecastTask(), [*argv, "--predict", str(path)]) == 2
    assert "--target-column" in capsys.readouterr().err
    out = tmp_path / "out"
    argv += ["--predict", str(path), "--target-column", "load", "--output", str(out)]
    assert main(ForecastTask(), argv) == 0
    table = pd.read_csv(out / "forecast.csv")
    frame = pd.read_csv(path, parse_dates=["time"])
    quantile_columns = ["lstm_q0.1", "lstm_q0.5", "lstm_q0.9"]
    assert list(table.columns) == ["timestamp", "forecast", "lower", "upper", "lstm"] + [
        *quantile_columns
    ]
    expected_times = frame.time.iloc[-1] + pd.Timedelta("1h") * np.arange(1, 48 + 1)
    assert (pd.to_datetime(table.timestamp) == expected_times).all()
    history = frame.load.to_numpy(np.float32)[None, -spec["window"] :, None]
    scaled = result.model.predict(history, verbose=0)[0]
    expected = scaled * spec["scaler"]["std"][0] + spec["scaler"]["mean"][0]
    np.testing.assert_allclose(table[quantile_columns], expected, rtol=1e-4, atol=1e-2)
    # the deployed mix: the LSTM's median with the chosen baseline refitted on the new CSV
    mix = spec["combination"]
    baseline = hybrid.forecast_past_end(mix["baseline"], frame.load.to_numpy(float), 336, 48)
    weight = mix["lstm_weight"]
    deployed = weight * table["lstm"] + (1 - weight) * baseline
    np.testing.assert_allclose(table["forecast"], deployed, rtol=1e-5)
    half = np.asarray(spec["interval"]["half_widths"])
    np.testing.assert_allclose(table["upper"] - table["forecast"], half, rtol=1e-5)
    np.testing.assert_allclose(table["forecast"] - table["lower"], half, rtol=1e-5)
    assert len(capsys.readouterr().out.strip().splitlines()) == 48


def test_quantiles_are_ordered_and_outputs_written(trained):
    result, cfg, _, out = trained
    window = result.report.artifacts["forecaster"]["window"]
    x = np.random.default_rng(1).normal(30000, 3000, (5, window, 1)).astype(np.float32)
    predicted = result.model.predict(x, verbose=0)
    assert predicted.shape == (5, 48, 3)  # taylor's own horizon
    assert (np.diff(predicted, axis=-1) >= 0).all()
    forecasts = pd.read_csv(out / "forecasts.csv")
    assert list(forecasts.columns) == [
        "origin",
        "step",
        "timestamp",
        "actual",
        "forecast",
        "forecast_lower",
        "forecast_upper",
        *MODELS[1:],
        "lstm_q0.1",
        "lstm_q0.5",
        "lstm_q0.9",
    ]
    assert forecasts["origin"].nunique() == 10 and len(forecasts) == 10 * 48
    np.testing.assert_allclose(forecasts["lstm"], forecasts["lstm_q0.5"])
    mix = result.report.artifacts["forecaster"]["combination"]
    weight = mix["lstm_weight"]
    baseline = hybrid.candidates({m: forecasts[m].to_numpy() for m in MODELS[1:]})[mix["baseline"]]
    deployed = weight * forecasts["lstm"] + (1 - weight) * baseline
    np.testing.assert_allclose(forecasts["forecast"], deployed, rtol=1e-6)
    table = pd.read_csv(out / "forecast_metrics.csv")
    assert list(table["model"]) == MODELS
    # chosen on validation: no candidate scored lower there than the deployed forecast
    assert table.loc[0, "validation_mae"] <= table["validation_mae"].min() + 1e-9
    saved = json.loads((out / "metrics.json").read_text())
    assert saved["test_mase"] == pytest.approx(table.loc[0, "mase"])
    assert saved["lstm/test_mase"] == pytest.approx(table.loc[1, "mase"])
    assert saved["baseline_ets_test_mae"] == pytest.approx(table.loc[4, "mae"])


# ---- a CSV with covariates, both decoders ---------------------------------------------------
DECODER_CASES = {
    "direct": ("direct", []),
    "seq2seq": ("seq2seq", []),
    # a window shorter than the season is allowed when the output is not a seasonal residual
    "seq2seq-no-residual": ("seq2seq", ["--no-residual", "--window", "12"]),
}


@pytest.mark.parametrize("case", sorted(DECODER_CASES))
def test_csv_with_covariates_and_both_decoders(case, workdir, store, capsys):
    decoder, extra = DECODER_CASES[case]
    data = periodic_csv(workdir / "load.csv")
    experiment = f"csv-{case}"
    code = main(
        ForecastTask(),
        [
            *TINY,
            "--data",
            str(data),
            "--time-column",
            "time",
            "--target-column",
            "load",
            "--covariates",
            "temperature",
            "--decoder",
            decoder,
            "--backtest",
            "5",
            "--tracking-uri",
            store,
            "--experiment",
            experiment,
            "--no-log-model",
            *extra,
        ],
    )
    assert code == 0, capsys.readouterr().err
    (logged,) = runs_of(store, experiment)
    assert logged.data.params["decoder"] == decoder
    forecaster = json.loads(
        Path(
            mlflow.artifacts.download_artifacts(
                run_id=logged.info.run_id,
                artifact_path="results/forecaster.json",
                tracking_uri=store,
            )
        ).read_text()
    )
    assert forecaster["season"] == 24 and forecaster["inputs"] == ["load", "temperature"]
    assert forecaster["test_origins"] == 5
    scores = logged.data.metrics
    assert scores["baseline_seasonal_naive_test_mase"] < scores["baseline_naive_test_mase"]
    assert "forecast metrics on 5 test origins" in capsys.readouterr().out


# ---- defaults from the data -----------------------------------------------------------------
def test_defaults_follow_the_calendar_and_the_length():
    hourly = pd.date_range("2024-01-01", periods=50, freq="h").to_numpy()
    step = defaults.step_seconds(hourly)
    assert defaults.calendar_seasons(step) == [24, 168]
    assert defaults.frequency_horizon(step) == 24
    monthly = defaults.step_seconds(pd.date_range("2000-01", periods=30, freq="MS").to_numpy())
    assert defaults.calendar_seasons(monthly) == [12]
    assert defaults.frequency_horizon(monthly) == 18
    assert defaults.step_seconds(np.arange(10)) is None
    noise = np.random.default_rng(0).normal(size=200)
    assert defaults.choose_season(noise, monthly, 1) == 1  # no cycle: the test refuses 12
    cycle = np.sin(2 * np.pi * np.arange(200) / 12) + 0.3 * noise
    assert defaults.choose_season(cycle, monthly, 1) == 12
    assert defaults.choose_season(cycle, None, 12) == 12  # no time axis: the ACF peak
    walk = np.cumsum(noise)  # slowly decaying autocorrelation, but no cycle
    assert (
        defaults.choose_season(
            walk, defaults.step_seconds(pd.date_range("2000", periods=3).to_numpy()), 1
        )
        == 1
    )
    plan = defaults.plan(144, 101, 115, 12, monthly, dict(horizon=0, window=0, stride=0), {})
    assert (plan.horizon, plan.window, plan.stride) == (7, 26, 1)  # 18 capped by the split


# Three of the six synthetic series of benchmarks/forecast_suite.py (docs/forecast.md has all).
PINNED = {
    "trend + yearly season (monthly, 240)": ("12", "12", "36"),
    "noise around a level (daily, 250)": ("1", "12", "36"),
    "random walk (daily, 300)": ("1", "14", "42"),
}


def test_default_on_short_series_is_within_2_percent_of_the_best_baseline(workdir, store, capsys):
    """No flags but a tiny network: settings chosen from the data, and the deployed forecast's
    test MASE on average within 2 % of the best baseline's in the same run."""
    series = synthetic_series()
    ratios = []
    for i, (name, chosen) in enumerate(PINNED.items()):
        path = workdir / f"synthetic{i}.csv"
        series[name].to_csv(path, index=False)
        flags = ["--epochs", "2", "--units", "8", "--no-log-model", "--tracking-uri", store]
        code = main(ForecastTask(), ["--data", str(path), *flags, "--experiment", f"pin{i}"])
        err = capsys.readouterr().err
        assert code == 0, err
        assert "note: chosen from the data: season" in err
        (logged,) = runs_of(store, f"pin{i}")
        params = logged.data.params
        assert (params["chosen_season"], params["chosen_horizon"], params["chosen_window"]) == (
            chosen
        )
        scores = logged.data.metrics
        best = min(v for k, v in scores.items() if k.startswith("baseline_") and "_test_mase" in k)
        ratios.append(scores["test_mase"] / best)
    assert np.mean(ratios) <= 1.02, ratios


def test_a_folder_of_series_is_one_child_run_each_and_a_summary(workdir, store):
    folder = workdir / "series"
    folder.mkdir()
    periodic_csv(folder / "hourly.csv", n=300)
    synthetic_series()["noise around a level (daily, 250)"].to_csv(
        folder / "daily.csv", index=False
    )
    flags = ["--epochs", "1", "--units", "8", "--no-log-model", "--tracking-uri", store]
    assert main(ForecastTask(), ["--data", str(folder), *flags, "--experiment", "many"]) == 0
    runs = runs_of(store, "many")
    children = {r.data.tags.get("fold"): r for r in runs if "fold" in r.data.tags}
    (parent,) = [r for r in runs if "fold" not in r.data.tags]
    assert set(children) == {"hourly", "daily"}
    assert all(r.info.status == "FINISHED" for r in runs)
    maes = [r.data.metrics["test_mase"] for r in children.values()]
    assert parent.data.metrics["test_mase"] == pytest.approx(np.mean(maes))
    assert parent.data.metrics["test_mase_max"] == pytest.approx(max(maes))


def test_across_series_trains_one_model_and_scores_each_series(workdir, store, capsys):
    """--across-series: one run, one logged model over series of unlike scale and length; a
    child run per series, the parent the mean; --predict scales each new series by itself."""
    folder = workdir / "panel"
    (folder / "sub").mkdir(parents=True)
    periodic_csv(folder / "small.csv", n=300)
    frame = pd.read_csv(periodic_csv(folder / "sub" / "large.csv", n=400))
    frame[["load", "temperature"]] *= 1000
    frame.to_csv(folder / "sub" / "large.csv", index=False)
    flags = ["--epochs", "1", "--units", "8", "--tracking-uri", store, "--experiment", "panel"]
    argv = ["--data", str(folder), "--across-series", "--target-column", "load", *flags]
    assert main(ForecastTask(), argv) == 0
    assert "chosen from the data for 2 series: season 24" in capsys.readouterr().err
    runs = runs_of(store, "panel")
    children = {r.data.tags.get("part"): r for r in runs if "part" in r.data.tags}
    (parent,) = [r for r in runs if "part" not in r.data.tags]
    assert set(children) == {"small", "sub/large"}
    assert all(r.info.status == "FINISHED" for r in runs)
    assert all(r.data.tags["mlflow.parentRunId"] == parent.info.run_id for r in children.values())
    mases = [r.data.metrics["test_mase"] for r in children.values()]
    assert parent.data.metrics["test_mase"] == pytest.approx(np.mean(mases))
    assert parent.data.params["across_series"] == "True"
    assert set(logged_models(store, parent)) == {"model"}
    assert not any(logged_models(store, child) for child in children.values())
    mlflow.set_tracking_uri(store)
    child_files = {
        a.path for a in mlflow.MlflowClient().list_artifacts(children["small"].info.run_id)
    }
    assert {"forecast.png", "error_by_step.png", "results"} <= child_files
    spec = mlflow.artifacts.load_dict(f"runs:/{parent.info.run_id}/results/forecaster.json")
    assert spec["scaling"] == "per_series" and spec["series"] == ["small", "sub/large"]
    # Each series is read in its own units: a new series 1000x larger gets a forecast 1000x
    # larger (up to float32 rounding), the baselines and intervals too.
    predict = ["--model-uri", f"runs:/{parent.info.run_id}/model", "--tracking-uri", store]
    tables = []
    for factor in (1, 1000):
        path = workdir / f"new{factor}.csv"
        new = pd.read_csv(periodic_csv(path, n=200)).drop(columns="temperature")
        new["load"] *= factor
        new.to_csv(path, index=False)
        out = workdir / f"predicted{factor}"
        assert main(ForecastTask(), [*predict, "--predict", str(path), "--output", str(out)]) == 0
        tables.append(pd.read_csv(out / "forecast.csv"))
    assert len(tables[0]) == spec["horizon"]
    columns = ["forecast", "lower", "upper", "lstm"]
    np.testing.assert_allclose(tables[1][columns], 1000 * tables[0][columns], rtol=1e-3)


def test_a_long_csv_is_read_as_one_series_per_name(workdir, store):
    """--series-column: the rows of each name form a series, in time order, named by it."""
    frames = []
    for name, n in (("b", 300), ("a", 260)):
        frame = pd.read_csv(periodic_csv(workdir / f"{name}.csv", n=n))
        frames.append(frame.assign(shop=name).iloc[::-1])  # newest first: sorted on reading
    path = workdir / "long.csv"
    pd.concat(frames).to_csv(path, index=False)
    cfg = ForecastConfig(
        data=str(path), across_series=True, series_column="shop", epochs=1, units=8
    )
    named = ForecastTask().read_panel(cfg)
    assert [(name, len(series)) for name, series in named] == [("b", 300), ("a", 260)]
    np.testing.assert_allclose(
        named[1][1].values[:, 0], pd.read_csv(workdir / "a.csv").load, rtol=1e-6
    )
    result = run(ForecastTask(), cfg, RunOptions(tracking_uri=store, experiment="long"))
    assert set(result.report.children) == {"a", "b"}
    with pytest.raises(ConfigError, match="--series-column reads a long CSV"):
        dataclasses.replace(cfg, across_series=False).validate()


def test_across_series_refuses_what_it_cannot_do(workdir, store, capsys):
    flags = ["--tracking-uri", store, "--experiment", "panel-bad", "--across-series"]
    path = periodic_csv(workdir / "one.csv", n=300)
    assert main(ForecastTask(), ["--data", str(path), *flags]) == 2
    assert "--across-series needs --data DIR" in capsys.readouterr().err
    folder = workdir / "short-panel"
    folder.mkdir()
    periodic_csv(folder / "fine.csv", n=300)
    periodic_csv(folder / "tiny.csv", n=12)
    assert main(ForecastTask(), ["--data", str(folder), "--target-column", "load", *flags]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: tiny: "), err


# ---- bad input ------------------------------------------------------------------------------
def _bad_csvs(workdir: Path) -> dict[str, Path]:
    frame = pd.read_csv(periodic_csv(workdir / "good.csv"))
    files = {name: workdir / f"{name}.csv" for name in ("short", "dup", "constant", "tiny")}
    frame.head(40).to_csv(files["short"], index=False)
    frame.head(10).to_csv(files["tiny"], index=False)
    files["empty folder"] = workdir / "no_series"
    files["empty folder"].mkdir(exist_ok=True)
    dup = frame.copy()
    dup.loc[200, "time"] = dup.loc[199, "time"]
    dup.to_csv(files["dup"], index=False)
    frame.assign(load=4.0).to_csv(files["constant"], index=False)
    return files


BAD_INPUTS = {
    "too short": ("short", [], "too short for --window 36 + --horizon 6"),
    "duplicated": ("dup", [], "repeating an earlier timestamp"),
    "missing target": ("good", ["--target-column", "demand"], "no column(s) demand"),
    "constant": ("constant", [], "MASE is undefined"),
    "empty folder": ("empty folder", [], "holds no .csv file"),
    "too short to forecast": ("tiny", ["--window", "0", "--horizon", "0"], "too short to forecast"),
    "negative horizon": ("good", ["--horizon", "-2"], "--horizon must not be negative"),
    "interval level": ("good", ["--interval", "1.5"], "--interval must lie in (0, 1)"),
}
STARTS_A_RUN = set(BAD_INPUTS)  # flag mistakes too: validated inside the run


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_input_is_one_line_exit_2_and_a_failed_run(case, workdir, store, capsys):
    files = _bad_csvs(workdir) | {"good": workdir / "good.csv"}
    name, extra, message = BAD_INPUTS[case]
    code = main(
        ForecastTask(),
        [
            *TINY,
            "--data",
            str(files[name]),
            "--time-column",
            "time",
            *extra,
            "--tracking-uri",
            store,
            "--experiment",
            f"bad-{case}",
            "--output",
            str(workdir / "out"),
        ],
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert len(err) == 1 and err[0].startswith("error: ") and message in err[0], err
    runs = runs_of(store, f"bad-{case}")
    if case in STARTS_A_RUN:
        assert [r.info.status for r in runs] == ["FAILED"]
        assert message in runs[0].data.tags["error"]
    else:  # rejected by flag validation before any run starts
        assert runs == []
    assert not (workdir / "out" / "forecasts.csv").exists()
    assert not (workdir / "out" / "forecast_metrics.csv").exists()


def test_help_lists_task_flags_with_defaults(capsys):
    with pytest.raises(SystemExit):
        main(ForecastTask(), ["--help"])
    out = " ".join(capsys.readouterr().out.split())
    for flag in (
        "--horizon",
        "--window",
        "--decoder",
        "--quantiles",
        "--backtest",
        "--season",
        "--covariates",
        "--target-column",
        "--cell",
        "--tune",
    ):
        assert flag in out
    assert "default: taylor" in out
