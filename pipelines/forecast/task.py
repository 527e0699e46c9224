"""Multi-step forecasting with an LSTM, scored beside classical baselines in every run.

An LSTM encodes a window of history and forecasts the next ``horizon`` steps of the target
(direct multi-output head or a seq2seq recurrent decoder; optionally quantiles trained with
pinball loss). Naive, seasonal-naive and Holt-Winters (statsmodels) forecasts are computed on
the same chronological split from the same test origins, so a table of MAE / RMSE / sMAPE /
MASE shows at once whether the network earns its keep.

Split: train | validation | test in time order. Scaling statistics, the baselines' parameters
and the MASE scale come from the training part only; origins in a later part may read history
from earlier parts (as a deployed forecaster would), never the values they forecast.
"""

from __future__ import annotations

import dataclasses
import functools
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import keras
import numpy as np
import pandas as pd

from models.architectures import PinballLoss, multi_step_forecaster
from models.recurrent import CELL_NAMES
from pipelines.core import (
    ConfigError,
    DataError,
    Prediction,
    Report,
    SearchSpace,
    Splits,
    Task,
    TaskConfig,
    new_default,
    option,
)
from pipelines.core.folds import summary
from pipelines.core.inference import LoggedModel
from pipelines.core.plotting import figure
from pipelines.core.timeseries import (
    Standardizer,
    TimeSeries,
    announce_settings,
    csv_folder_folds,
    duplicates_option,
    origin_windows,
    read_long_csv,
    read_series_csv,
    split_points,
)
from pipelines.core.tracking import report_metrics
from pipelines.core.training import make_optimizer
from pipelines.datasets import FORECAST_SERIES, load_forecast_series
from pipelines.forecast import baselines, defaults, hybrid, metrics

DECODERS = ("direct", "seq2seq")
PARTS = ("train", "validation", "test")
ORIGINS_INPUTS_TARGETS = ("origins", "inputs", "targets")


@dataclass
class ForecastConfig(TaskConfig):
    data: str = option(
        "taylor", f"{', '.join(FORECAST_SERIES)}, a CSV path, or a folder of CSVs (one run each)"
    )
    time_column: str = option("", "CSV time column (default: one named or parsed like one)")
    duplicates: str = duplicates_option()
    target_column: str = option("", "CSV column to forecast (default: first numeric column)")
    covariates: list[str] = option([], "CSV input-only columns, comma separated (multivariate)")
    fill_missing: bool = option(False, "interpolate NaN/inf values instead of refusing them")
    horizon: int = option(0, "steps forecast from each origin (0: from the data, see docs)")
    window: int = option(0, "history steps the model reads (0: season + 2 x horizon, capped)")
    stride: int = option(0, "steps between consecutive training origins (0: from the data)")
    across_series: bool = option(
        False, "one model over every series of --data DIR or of a long CSV (--series-column)"
    )
    series_column: str = option("", "long-format CSV column naming each row's series")
    decoder: str = option("direct", "multi-output Dense head or recurrent decoder", DECODERS)
    quantiles: list[float] = option([], "quantiles to forecast with pinball loss, with 0.5")
    residual: bool = option(True, "forecast the correction to the seasonal-naive forecast")
    interval: float = option(0.8, "coverage of the interval calibrated on validation (conformal)")
    season: int = option(0, "season in steps (0: the data set's own, else detected; 1: none)")
    backtest: int = option(0, "forecast origins spread over the test part (0: every step)")
    validation_fraction: float = option(0.1, "share of the series for early stopping")
    test_fraction: float = option(0.2, "share of the series held out for evaluation")
    units: int = new_default("units", 32)
    learning_rate: float = new_default("learning_rate", 3e-3)
    epochs: int = new_default("epochs", 12)
    patience: int = new_default("patience", 3)

    def validate(self) -> None:
        super().validate()
        self.require_non_negative("horizon", "window", "stride", "season", "backtest")
        self.require_split()
        if self.series_column and not self.across_series:
            raise ConfigError("--series-column reads a long CSV for --across-series: add it")
        if not 0 < self.interval < 1:
            raise ConfigError(f"--interval must lie in (0, 1), got {self.interval}")
        if self.quantiles:
            if 0.5 not in self.quantiles or not all(0 < q < 1 for q in self.quantiles):
                raise ConfigError("--quantiles must lie in (0, 1) and include 0.5 (the forecast)")
            if len(set(self.quantiles)) != len(self.quantiles):
                raise ConfigError("--quantiles must not repeat a value")


@dataclass
class Samples:
    """Model inputs and targets of one part, with the origins they forecast from."""

    origins: np.ndarray
    inputs: np.ndarray
    targets: np.ndarray

    @classmethod
    def concatenate(cls, parts: list[Samples]) -> Samples:
        if len(parts) == 1:
            return parts[0]
        return cls(
            *(np.concatenate([getattr(p, k) for p in parts]) for k in ORIGINS_INPUTS_TARGETS)
        )


@dataclass
class PartForecasts:
    """Every model's [origins, horizon] forecasts of one part of a series, with the actuals."""

    origins: np.ndarray
    actual: np.ndarray
    quantiles: np.ndarray  # the LSTM's, [origins, horizon, quantiles]
    forecasts: dict[str, np.ndarray]
    baselines: dict[str, Any]  # the statistical baselines, fitted on the training part


@dataclass
class SeriesSplit:
    """One series split in time (``plan``), scaled on its training part and cut into samples
    per part: what training and evaluation need of it."""

    name: str
    series: TimeSeries
    scaler: Standardizer
    plan: defaults.Plan
    scale: float  # MASE denominator (in-sample seasonal-naive MAE of the training part)
    samples: dict[str, Samples]

    @property
    def target(self) -> np.ndarray:
        return self.series.values[:, 0].astype(np.float64)


class ForecastTask(Task):
    """LSTM multi-step forecasting beside naive, seasonal-naive and Holt-Winters baselines."""

    name = "forecast"
    config_class = ForecastConfig
    # the deployed mix and its interval are chosen on validation forecasts of a model that
    # never trained on them
    refit_on_validation = False

    # ---- data -------------------------------------------------------------------------------
    def data(self, cfg: ForecastConfig) -> Splits:
        if cfg.across_series:
            members = self.split_panel(cfg)
            scaler = Standardizer(np.zeros(1), np.ones(1))  # each member arrives scaled
        else:
            series, known = self.load(cfg)
            settings = self.plan(cfg, series, known)
            members = [self.split_series(cfg, series, settings)]
            scaler = members[0].scaler
            if settings.reasons:  # once the series is known to be usable
                announce_settings(
                    f"chosen from the data: {settings.describe()}",
                    {f"chosen_{name}": getattr(settings, name) for name in settings.reasons},
                )
        datasets = {
            part: to_dataset(
                Samples.concatenate([m.samples[part] for m in members]), cfg, part == "train"
            )
            for part in PARTS
        }
        first = members[0]
        info = {
            "members": members,
            "scaler": scaler,  # what the model's input layer normalises by
            "season": first.plan.season,
            "window": first.plan.window,
            "horizon": first.plan.horizon,
        }
        return Splits(datasets["train"], datasets["validation"], datasets["test"], info)

    def split_series(
        self, cfg: ForecastConfig, series: TimeSeries, settings: defaults.Plan
    ) -> SeriesSplit:
        """One series split in time, scaled on its training part and cut into samples."""
        target = series.values[:, 0].astype(np.float64)
        n = len(series)
        train_end, validation_end = settings.train_end, settings.validation_end
        season, window, horizon = settings.season, settings.window, settings.horizon
        self.check_lengths(n, window, horizon, train_end, validation_end)
        given_window = cfg.window and "window" not in settings.reasons
        if cfg.residual and given_window and season >= window:
            raise ConfigError(
                f"--window {window} must be longer than the season ({season}) the residual "
                f"model reads back to; use --window > {season}, --season 1 or --no-residual"
            )
        scale = metrics.seasonal_scale(target[:train_end], season)
        scaler = Standardizer.fit(series.values[:train_end])
        scaled = (target - scaler.mean[0]) / scaler.std[0]
        origins = {
            "train": np.arange(window, train_end - horizon + 1, settings.stride),
            "validation": np.arange(max(train_end, window), validation_end - horizon + 1),
            "test": spread_origins(validation_end, n - horizon, cfg.backtest),
        }
        # A model trained across series reads every series scaled by its own statistics.
        inputs = scaler.transform(series.values) if cfg.across_series else series.values
        samples = {}
        for part, starts in origins.items():
            history, future = origin_windows(inputs, scaled, starts, window, horizon)
            samples[part] = Samples(starts, history, future[..., None].astype(np.float32))
        return SeriesSplit(series.name, series, scaler, settings, scale, samples)

    def split_panel(self, cfg: ForecastConfig) -> list[SeriesSplit]:
        """``--across-series``: every series of the folder, split with one season, horizon
        and window for all (the season most series would choose alone, the shortest horizon
        and window they would), each scaled by its own training part."""
        if cfg.covariates:
            raise ConfigError(
                "--across-series forecasts each file's target alone: drop --covariates"
            )
        named = [  # the target (the first value column) of each
            (name, dataclasses.replace(s, values=s.values[:, :1], columns=s.columns[:1]))
            for name, s in self.read_panel(cfg)
        ]
        chosen = {}
        for setting in ("season", "horizon", "window"):
            if getattr(cfg, setting):
                continue
            fixed = dataclasses.replace(cfg, **chosen)
            plans = per_series(named, functools.partial(self.plan, fixed, known={}))
            values = [getattr(plan, setting) for plan in plans]
            # the shortest horizon and window fit every series; the season most of them have
            pick = Counter(values).most_common(1)[0][0] if setting == "season" else min(values)
            chosen[setting] = pick
        fixed = dataclasses.replace(cfg, **chosen)

        def split(series: TimeSeries) -> SeriesSplit:
            settings = self.plan(fixed, series, {})
            settings.reasons |= {k: "chosen over the series" for k in chosen}
            return self.split_series(fixed, series, settings)

        members = per_series(named, split)
        if chosen:
            rule = {"season": "most common", "horizon": "shortest", "window": "shortest"}
            announce_settings(
                f"chosen from the data for {len(named)} series: "
                + "; ".join(f"{k} {v} ({rule[k]} over the series)" for k, v in chosen.items()),
                {f"chosen_{k}": v for k, v in chosen.items()},
            )
        return members

    def read_panel(self, cfg: ForecastConfig) -> list[tuple[str, TimeSeries]]:
        """The named series of a folder of CSVs or of a long-format CSV."""
        if cfg.series_column:
            columns = [cfg.target_column] if cfg.target_column else None
            panel = read_long_csv(
                cfg.data,
                cfg.series_column,
                cfg.time_column,
                columns,
                fill_missing=cfg.fill_missing,
                duplicates=cfg.duplicates,
            )
            return [(series.name, series) for series in panel]
        folds = csv_folder_folds(cfg)
        if not folds:
            raise ConfigError(
                "--across-series needs --data DIR (a folder of CSVs) or a long CSV with "
                "--series-column"
            )
        return [(name, dataclasses.replace(self.load(fold)[0], name=name)) for name, fold in folds]

    def load(self, cfg: ForecastConfig) -> tuple[TimeSeries, dict[str, int]]:
        """The series (target first, then covariates) and what its data set declares (its
        ``season`` and ``horizon``; empty for a CSV)."""
        if not (cfg.data.endswith(".csv") or "/" in cfg.data):
            if cfg.target_column or cfg.covariates:
                raise DataError("--target-column/--covariates apply only to a CSV given by --data")
            name = cfg.data.removeprefix("tfds:")
            series, season = load_forecast_series(name)
            return series, {"season": season, "horizon": FORECAST_SERIES[name].HORIZON}
        columns = [cfg.target_column, *cfg.covariates] if cfg.target_column else None
        if columns is None and cfg.covariates:
            raise DataError("--covariates needs --target-column")
        series = read_series_csv(
            cfg.data,
            cfg.time_column,
            columns,
            fill_missing=cfg.fill_missing,
            duplicates=cfg.duplicates,
        )
        return series, {}

    @staticmethod
    def plan(cfg: ForecastConfig, series: TimeSeries, known: dict[str, int]) -> defaults.Plan:
        """Split points, season, horizon, window and stride: as given, else the data set's
        own, else chosen from the series (:mod:`pipelines.forecast.defaults`)."""
        train_end, validation_end = split_points(
            len(series), cfg.validation_fraction, cfg.test_fraction
        )
        train = series.values[:train_end, 0].astype(np.float64)
        step = defaults.step_seconds(series.timestamps)
        reasons = {}
        season = cfg.season or known.get("season", 0)
        if not season:
            peak = baselines.detect_season(train, max_season=len(train) // 3)
            season = defaults.choose_season(train, step, peak)
            reasons["season"] = "seasonality test on the training part"
        given = {"horizon": cfg.horizon or known.get("horizon", 0)}
        given |= {"window": cfg.window, "stride": cfg.stride}
        settings = defaults.plan(
            len(series), train_end, validation_end, season, step, given, reasons
        )
        return settings

    @staticmethod
    def check_lengths(
        n: int, window: int, horizon: int, train_end: int, validation_end: int
    ) -> None:
        need = window + horizon
        if train_end < need:
            raise DataError(
                f"the series ({n} points) is too short for --window {window} + --horizon "
                f"{horizon}: its training part has {train_end} points, {need} needed"
            )
        shortest = min(validation_end - train_end, n - validation_end)
        if shortest < horizon:
            raise DataError(
                f"the validation/test parts ({shortest} points) are shorter than --horizon "
                f"{horizon}; use a longer series or a shorter horizon"
            )

    def folds(self, cfg: ForecastConfig) -> list[tuple[str, ForecastConfig]]:
        """A folder of CSVs: each series forecast by its own default run (a child run), the
        parent summarising every test metric over series (mean, worst, best); with
        ``--across-series`` one run trains one model over them all (see ``split_panel``)."""
        return [] if cfg.across_series else csv_folder_folds(cfg)

    # ---- model ------------------------------------------------------------------------------
    def build_model(self, cfg: ForecastConfig, splits: Splits, hp: Any = None) -> keras.Model:
        space = SearchSpace(cfg, hp)
        scaler: Standardizer = splits.info["scaler"]
        season, window = splits.info["season"], splits.info["window"]
        # Without --residual a season longer than the window is fine: the seq2seq decoder's
        # per-step reference input then falls back to the last value.
        reference_season = season if season < window else 1
        model = multi_step_forecaster(
            window,
            len(scaler.mean),
            splits.info["horizon"],
            scaler.mean,
            scaler.std**2,
            cell=space.choice("cell", CELL_NAMES),
            units=space.int("units", 16, 128, step=16),
            layers=space.int("layers", 1, 2),
            dropout=space.float("dropout", 0.0, 0.3, step=0.1),
            recurrent_dropout=cfg.recurrent_dropout,
            decoder=space.choice("decoder", DECODERS),
            n_outputs=max(len(cfg.quantiles), 1),
            season=reference_season,
            residual=cfg.residual,
        )
        learning_rate = space.float("learning_rate", 1e-4, 1e-2, sampling="log")
        weight_decay = space.float("weight_decay", 0.0, 1e-3)
        loss = PinballLoss(sorted(cfg.quantiles)) if cfg.quantiles else "mae"
        model.compile(optimizer=make_optimizer(learning_rate, weight_decay), loss=loss)
        return model

    # ---- inference --------------------------------------------------------------------------
    def predict(self, logged: LoggedModel, source: str, cfg: ForecastConfig) -> Prediction:
        """The model's horizon forecast past the last row of a CSV, from its last ``window``
        rows: the target (the one numeric column, or ``--target-column``) and, for a model
        trained with covariates, the same columns by name."""
        spec = logged.artifact("forecaster")
        inputs: list[str] = spec["inputs"]
        target = [cfg.target_column] if cfg.target_column else None
        columns = inputs if len(inputs) > 1 else target
        series = read_series_csv(
            source,
            cfg.time_column,
            columns,
            fill_missing=cfg.fill_missing,
            duplicates=cfg.duplicates,
        )
        name = Path(source).name
        if series.values.shape[1] != 1 and len(inputs) == 1:
            raise DataError(
                f"{name} has {series.values.shape[1]} value columns ({', '.join(series.columns)}); "
                "name the one to forecast with --target-column"
            )
        window, horizon = spec["window"], spec["horizon"]
        if len(series) < window:
            raise DataError(f"{name} has {len(series)} rows; the model reads the last {window}")
        target = series.values[:, 0].astype(np.float64)
        if spec.get("scaling") == "per_series":  # trained across series, each scaled by itself
            scaler = Standardizer.fit(series.values)
            history = scaler.transform(series.values[None, -window:])
            scale = metrics.seasonal_scale(target, spec["season"])
            half_widths = np.asarray(spec["interval"]["scaled_half_widths"]) * scale
        else:
            scaler = Standardizer(np.array(spec["scaler"]["mean"]), np.array(spec["scaler"]["std"]))
            history = series.values[None, -window:].astype(np.float32)
            half_widths = np.asarray(spec["interval"]["half_widths"])
        quantiles = unscaled_forecast(logged.model, history, scaler)[0]
        levels = spec["quantiles"] or [0.5]
        lstm = quantiles[:, levels.index(0.5)]
        combination = spec["combination"]
        forecast = lstm
        if combination["lstm_weight"] < 1:
            baseline = hybrid.forecast_past_end(
                combination["baseline"], target, spec["season"], horizon
            )
            weight = combination["lstm_weight"]
            forecast = weight * lstm + (1 - weight) * baseline
        table = pd.DataFrame({"timestamp": future_timestamps(series.timestamps, horizon)})
        table["forecast"] = forecast
        table["lower"], table["upper"] = forecast - half_widths, forecast + half_widths
        table["lstm"] = lstm
        for i, q in enumerate(levels if len(levels) > 1 else []):
            table[f"lstm_q{q:g}"] = quantiles[:, i]
        lines = [
            "  ".join(f"{value:.6g}" if isinstance(value, float) else str(value) for value in row)
            for row in table.itertuples(index=False)
        ]
        return Prediction(lines=lines, tables={"forecast": table})

    # ---- evaluation -------------------------------------------------------------------------
    def evaluate(self, model: keras.Model, splits: Splits, cfg: ForecastConfig) -> Report:
        """The deployed forecast (LSTM, baseline or mix) chosen and calibrated on validation.

        Across series, one choice and one interval serve every series: validation errors are
        pooled in units of each series' MASE scale (a dozen origins of one short series choose
        noisily among 60 candidates), and each series gets a child report."""
        members: list[SeriesSplit] = splits.info["members"]
        parts = [self.part_forecasts(model, member, cfg) for member in members]
        units = [member.scale if cfg.across_series else 1.0 for member in members]
        val_actual = np.concatenate([p["validation"].actual / u for p, u in zip(parts, units)])
        val_forecasts = {
            name: np.concatenate(
                [p["validation"].forecasts[name] / u for p, u in zip(parts, units)]
            )
            for name in parts[0]["validation"].forecasts
        }
        chosen = hybrid.Combination.choose(val_actual, val_forecasts)
        half_widths = hybrid.conformal_half_widths(
            val_actual, chosen.apply(val_forecasts), cfg.interval
        )
        reports = {
            member.name: self.series_report(member, p["test"], chosen, half_widths * u, cfg)
            for member, p, u in zip(members, parts, units)
        }
        if not cfg.across_series:
            (report,) = reports.values()
            print_metrics(report.tables["forecast_metrics"], parts[0]["test"], chosen)
            test = parts[0]["test"]
            report.artifacts["forecaster"] = forecaster_spec(members[0], chosen, cfg) | {
                "interval": {"level": cfg.interval, "half_widths": half_widths.tolist()},
                "mase_scale": members[0].scale,
                "baselines": {name: fit.description for name, fit in test.baselines.items()},
                "test_origins": len(test.origins),
                "scaler": members[0].scaler.to_dict(),
            }
            return report
        return self.pooled_report(members, reports, chosen, half_widths, cfg)

    def part_forecasts(
        self, model: keras.Model, member: SeriesSplit, cfg: ForecastConfig
    ) -> dict[str, PartForecasts]:
        """The LSTM's and every baseline's forecasts of a series' validation and test origins."""
        target, plan = member.target, member.plan
        fitted = hybrid.fit_baselines(target[: plan.train_end], plan.season)
        found = {}
        for part in ("validation", "test"):
            samples = member.samples[part]
            actual = target[samples.origins[:, None] + np.arange(plan.horizon)[None, :]]
            quantiles = unscaled_forecast(model, samples.inputs, member.scaler)
            forecasts = self.forecasts(quantiles, cfg) | hybrid.baseline_forecasts(
                target, samples.origins, plan.horizon, plan.season, fitted
            )
            found[part] = PartForecasts(samples.origins, actual, quantiles, forecasts, fitted)
        return found

    def series_report(
        self,
        member: SeriesSplit,
        test: PartForecasts,
        chosen: hybrid.Combination,
        half_widths: np.ndarray,
        cfg: ForecastConfig,
    ) -> Report:
        """Test metrics, tables and figures of one series' deployed forecast."""
        forecasts = {"forecast": chosen.apply(test.forecasts)} | test.forecasts
        deployed = forecasts["forecast"]
        intervals = {"forecast": (deployed - half_widths, deployed + half_widths)}
        if len(cfg.quantiles) > 1:
            intervals["lstm"] = (test.quantiles[..., 0], test.quantiles[..., -1])
        report = Report()
        rows = []
        for name, forecast in forecasts.items():
            scores = metrics.score(test.actual, forecast, member.scale, intervals.get(name))
            if name == "forecast":
                report.metrics |= scores
            elif name == "lstm":
                report.metrics |= {f"lstm/test_{k}": v for k, v in scores.items()}
            else:
                report.metrics |= {f"baseline_{name}_test_{k}": v for k, v in scores.items()}
            validation_mae = chosen.validation_mae[name]
            rows.append({"model": name, "validation_mae": validation_mae, **scores})
        report.metrics["hybrid/lstm_weight"] = chosen.weight
        report.tables["forecast_metrics"] = pd.DataFrame(rows)
        series = member.series
        report.tables["forecasts"] = forecasts_table(
            series.timestamps,
            test.origins,
            test.actual,
            forecasts,
            intervals["forecast"],
            test.quantiles,
            cfg,
        )
        report.figures = {
            "forecast": plot_forecasts(
                member.target,
                series.columns[0],
                test.origins,
                forecasts,
                intervals["forecast"],
                cfg,
            ),
            "error_by_step": plot_error_by_step(test.actual, forecasts),
        }
        return report

    @staticmethod
    def pooled_report(
        members: list[SeriesSplit],
        reports: dict[str, Report],
        chosen: hybrid.Combination,
        scaled_half_widths: np.ndarray,
        cfg: ForecastConfig,
    ) -> Report:
        """A model across series: each series' report as a child, every test metric's mean,
        worst and best over series, and one table of all forecasts."""
        rows = [
            {"fold": name}
            | {k: v for k, v in report_metrics(r).items() if k != "hybrid/lstm_weight"}
            for name, r in reports.items()
        ]
        report = summary(rows)
        report.children = reports
        report.metrics["hybrid/lstm_weight"] = chosen.weight
        report.tables["forecasts"] = pd.concat(
            [r.tables["forecasts"].assign(series=name) for name, r in reports.items()],
            ignore_index=True,
        )
        per_model = pd.concat([r.tables["forecast_metrics"] for r in reports.values()])
        table = per_model.groupby("model", sort=False).mean().reset_index()
        print(f"\nmean over {len(members)} series (MAE, RMSE in each series' own units):")
        print(table.to_string(index=False, float_format=lambda v: f"{v:.4f}"))
        print(f"forecast = {chosen.description} (lowest validation error, pooled over series)")
        report.tables["forecast_metrics"] = table
        report.artifacts["forecaster"] = forecaster_spec(members[0], chosen, cfg) | {
            "scaling": "per_series",
            "interval": {"level": cfg.interval, "scaled_half_widths": scaled_half_widths.tolist()},
            "series": [member.name for member in members],
        }
        return report

    @staticmethod
    def forecasts(quantiles: np.ndarray, cfg: ForecastConfig) -> dict[str, np.ndarray]:
        median = sorted(cfg.quantiles).index(0.5) if cfg.quantiles else 0
        return {"lstm": quantiles[..., median]}


def unscaled_forecast(model: keras.Model, inputs: np.ndarray, scaler: Standardizer) -> np.ndarray:
    """[origins, horizon, quantiles] forecasts in the target's units."""
    scaled = model.predict(inputs, batch_size=256, verbose=0)
    return scaled.astype(np.float64) * scaler.std[0] + scaler.mean[0]


def print_metrics(table: pd.DataFrame, test: PartForecasts, chosen: hybrid.Combination) -> None:
    count, horizon = test.actual.shape
    print(f"\nforecast metrics on {count} test origins x {horizon} steps:")
    print(table.to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    print(f"forecast = {chosen.description} (lowest validation MAE)")


def forecaster_spec(
    member: SeriesSplit, chosen: hybrid.Combination, cfg: ForecastConfig
) -> dict[str, Any]:
    """What ``--predict`` needs of a trained forecaster (``forecaster.json``)."""
    plan = member.plan
    return {
        "target": member.series.columns[0],
        "inputs": member.series.columns,
        "window": plan.window,
        "horizon": plan.horizon,
        "season": plan.season,
        "quantiles": sorted(cfg.quantiles),
        "combination": {
            "baseline": chosen.baseline,
            "lstm_weight": chosen.weight,
            "description": chosen.description,
        },
    }


def per_series(named: list[tuple[str, TimeSeries]], step: Callable[[TimeSeries], Any]) -> list:
    """``step`` applied to every series, a DataError naming the series it came from."""
    found = []
    for name, series in named:
        try:
            found.append(step(series))
        except DataError as exc:
            raise DataError(f"{name}: {exc}") from None
    return found


def future_timestamps(timestamps: np.ndarray, horizon: int) -> np.ndarray:
    """``horizon`` timestamps after the last, one median sampling step apart."""
    if len(timestamps) < 2:
        return np.arange(1, horizon + 1) + (timestamps[-1] if len(timestamps) else 0)
    step = np.median(np.diff(timestamps[-min(len(timestamps), 100) :]))
    return timestamps[-1] + step * np.arange(1, horizon + 1)


def spread_origins(start: int, last: int, count: int) -> np.ndarray:
    """Every origin from ``start`` to ``last``, or ``count`` of them spread evenly."""
    every = np.arange(start, last + 1)
    if count == 0 or count >= len(every):
        return every
    return np.unique(np.linspace(start, last, count).round().astype(int))


def to_dataset(samples: Samples, cfg: ForecastConfig, shuffle: bool) -> Any:
    import tensorflow as tf

    dataset = tf.data.Dataset.from_tensor_slices((samples.inputs, samples.targets))
    if shuffle:
        dataset = dataset.shuffle(len(samples.origins), seed=cfg.seed)
    return dataset.batch(cfg.batch_size).prefetch(tf.data.AUTOTUNE)


def forecasts_table(
    timestamps: np.ndarray,
    origins: np.ndarray,
    actual: np.ndarray,
    forecasts: dict[str, np.ndarray],
    interval: tuple[np.ndarray, np.ndarray],
    quantiles: np.ndarray,
    cfg: ForecastConfig,
) -> pd.DataFrame:
    """One row per (origin, step): the origin is the time of the last observed value."""
    horizon = actual.shape[1]
    targets = origins[:, None] + np.arange(horizon)[None, :]
    table = pd.DataFrame(
        {
            "origin": np.repeat(timestamps[origins - 1], horizon),
            "step": np.tile(np.arange(1, horizon + 1), len(origins)),
            "timestamp": timestamps[targets].ravel(),
            "actual": actual.ravel(),
        }
    )
    for name, forecast in forecasts.items():
        table[name] = forecast.ravel()
        if name == "forecast":
            table["forecast_lower"], table["forecast_upper"] = (b.ravel() for b in interval)
    for i, q in enumerate(sorted(cfg.quantiles)):
        table[f"lstm_q{q:g}"] = quantiles[..., i].ravel()
    return table


def plot_forecasts(
    target: np.ndarray,
    name: str,
    origins: np.ndarray,
    forecasts: dict[str, np.ndarray],
    interval: tuple[np.ndarray, np.ndarray],
    cfg: ForecastConfig,
    shown: int = 3,
):
    """Forecasts vs actual, with the deployed forecast's calibrated interval, from the last
    origins."""
    horizon = interval[0].shape[1]
    picks = sorted({int(np.searchsorted(origins, origins[-1] - j * horizon)) for j in range(shown)})
    fig, axes = figure(rows=len(picks), height=2.6)
    for ax, i in zip(axes, picks):
        origin = origins[i]
        past = np.arange(max(0, origin - 2 * horizon), origin)
        future = origin + np.arange(horizon)
        ax.plot(past, target[past], color="black", lw=0.8, label="history")
        ax.plot(future, target[future], color="black", lw=1.2, ls="--", label="actual")
        ax.fill_between(
            future,
            interval[0][i],
            interval[1][i],
            color="tab:blue",
            alpha=0.2,
            label=f"{cfg.interval:.0%} interval (calibrated)",
        )
        for model, forecast in forecasts.items():
            ax.plot(future, forecast[i], lw=1.6 if model == "forecast" else 0.8, label=model)
        ax.axvline(origin - 0.5, color="gray", lw=0.6)
        ax.set(ylabel=name, title=f"forecast from step {origin}")
    axes[0].legend(loc="upper left", fontsize="small", ncol=3)
    axes[-1].set_xlabel("step")
    return fig


def plot_error_by_step(actual: np.ndarray, forecasts: dict[str, np.ndarray]):
    fig, (ax,) = figure(height=3.2, width=7)
    steps = np.arange(1, actual.shape[1] + 1)
    for model, forecast in forecasts.items():
        ax.plot(steps, metrics.mae_by_step(actual, forecast), marker=".", label=model)
    ax.set(title="test MAE by horizon step", xlabel="steps ahead", ylabel="MAE", yscale="log")
    ax.legend()
    return fig
