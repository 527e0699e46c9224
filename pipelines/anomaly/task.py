"""Time-series anomaly detection with recurrent models.

Two protocols:

* ``online`` (default): the detector sees the series once, in order, as a live stream would.
  It learns on a probationary period (NAB's first 15 %, at most 750 rows), then every later row
  gets an error from the past only, an anomaly likelihood against the error's own recent
  history, and an alarm when the likelihood reaches one threshold shared by every series, at
  most one per ``--alarm-gap`` rows (see :mod:`pipelines.anomaly.online`). Values are z-scored
  against an EWMA of their past, so a new level becomes the new normal. A rolling z-score
  detector with the same likelihood and alarm rule runs beside it as ``baseline_zscore_*``.
  ``--data DIR`` runs every CSV of a folder as a child run and scores the corpus on the parent.
* ``batch``: the chronological split below, for series with a clean training stretch.

Two detectors, both unsupervised (labels are used only to score the result):

* ``forecaster`` (default, Hundman et al. 2018 "telemanom"): a causal LSTM predicts x[t+1]
  at every step; the smoothed prediction error is the anomaly score. It scores a whole series in
  one pass and also one point at a time (``StreamingDetector``).
* ``autoencoder`` (Malhotra et al. 2016 "EncDec-AD"): an LSTM encoder-decoder reconstructs
  windows; a step's score is its mean reconstruction error over the windows that cover it.

Split (chronological, honest): the model trains on the first part, the threshold is fitted on
the validation part's scores (or the training part's, for ``max-train``), and labels of the test
part are only read by the evaluation. A data set with its own test part (UCR) keeps it.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import keras
import numpy as np
import pandas as pd

from models.architectures import next_step_predictor, sequence_autoencoder
from models.recurrent import CELL_NAMES, gate_activations
from pipelines.anomaly import detection, nab, online
from pipelines.anomaly.scoring import forecast_errors, online_scores, score_series
from pipelines.core import (
    ConfigError,
    DataError,
    Report,
    SearchSpace,
    Splits,
    Task,
    TaskConfig,
    new_default,
    option,
)
from pipelines.core.folds import summary as fold_summary
from pipelines.core.inference import LoggedModel
from pipelines.core.plotting import figure
from pipelines.core.task import Fit, Prediction, Stage
from pipelines.core.timeseries import (
    Standardizer,
    TimeSeries,
    csv_folder_folds,
    duplicates_option,
    read_series_csv,
    split_points,
    windows,
)
from pipelines.core.training import make_optimizer
from pipelines.datasets import SERIES, load_series

MODELS = ("forecaster", "autoencoder")
THRESHOLDS = ("ndt", "quantile", "max-train")
PROTOCOLS = ("online", "batch")
MIN_PROBATION = 50  # rows: fewer leave too little to learn the normal behaviour from


@dataclass
class AnomalyConfig(TaskConfig):
    data: str = option(
        "mitdb", f"{', '.join(SERIES)}, tfds:NAME, a CSV path, or a folder of CSVs (a corpus)"
    )
    protocol: str = option(
        "online",
        "online: learn on --probation, then score each row from the past only; "
        "batch: train/validation/test split",
        choices=PROTOCOLS,
    )
    probation: int = option(
        0,
        "online rows to learn from before scoring (0: NAB's 15 %% capped at 750, or a data "
        "set's own training part)",
    )
    norm_span: float = option(
        500.0, "online: EWMA span (rows) of the mean/std values are scored against"
    )
    alarm_likelihood: float = option(0.999, "online: anomaly likelihood that raises an alarm")
    alarm_gap: int = option(100, "online: rows after an alarm in which no new alarm is raised")
    likelihood_window: int = option(
        500, "online: rows of error history the likelihood compares with"
    )
    period_strength: float = option(
        0.3,
        "online: errors recurring at a period of the probation errors with at least this "
        "autocorrelation are discounted by the same phase's spike one period before (0: off)",
    )
    range_tolerance: float = option(
        0.05,
        "online: a value beyond the range of all earlier values by more than this share of "
        "the range alarms whatever the forecast (Numenta's spatial anomaly; 0: off)",
    )
    refit_every: int = option(0, "online: fine-tune on recent rows every this many rows (0: never)")
    refit_epochs: int = option(2, "online: epochs of each fine-tuning")
    baseline_span: float = option(20.0, "online: EWMA span of the rolling z-score baseline")
    model: str = option(
        "forecaster", "detector: next-step forecaster or window autoencoder", choices=MODELS
    )
    window: int = option(128, "training window length in steps")
    stride: int = option(4, "steps between consecutive training windows")
    threshold: str = option("ndt", "threshold rule", choices=THRESHOLDS)
    quantile: float = option(0.999, "quantile of validation scores for --threshold quantile")
    smoothing: int = option(32, "EWMA span smoothing the error score (1 = raw error)")
    merge_gap: int = option(128, "merge detections at most this many steps apart")
    validation_fraction: float = option(0.2, "share of the series for threshold fitting")
    test_fraction: float = option(0.2, "share of the series held out for evaluation")
    time_column: str = option("", "CSV time column (default: one named or parsed like one)")
    duplicates: str = duplicates_option()
    value_columns: list[str] = option([], "CSV value columns, comma separated (default: numeric)")
    label_column: str = option("", "CSV 0/1 anomaly label column")
    labels: str = option("", "NAB combined_windows.json giving this CSV's anomaly windows")
    fill_missing: bool = option(False, "interpolate NaN/inf values instead of refusing them")
    epochs: int = new_default("epochs", 30)
    patience: int = new_default("patience", 4)

    def validate(self) -> None:
        super().validate()
        self.require_positive("window", "stride", "smoothing", "norm_span", "refit_epochs")
        self.require_positive("likelihood_window", "baseline_span")
        self.require_non_negative("merge_gap", "probation", "alarm_gap", "refit_every")
        self.require_share("period_strength", "range_tolerance")
        if not 0 < self.alarm_likelihood < 1:
            raise ConfigError(f"--alarm-likelihood must be in (0, 1), got {self.alarm_likelihood}")
        if self.protocol == "online" and self.model != "forecaster":
            raise ConfigError(
                "--protocol online needs --model forecaster (or use --protocol batch)"
            )
        self.require_split()
        if not 0 < self.quantile < 1:
            raise ConfigError(f"--quantile must be in (0, 1), got {self.quantile}")


@dataclass
class Detection:
    """Scores and detections over the whole series; ``test`` slices the evaluated part."""

    scores: np.ndarray
    threshold: float
    windows: list[tuple[int, int]]
    flags: np.ndarray
    test: slice


class AnomalyTask(Task):
    """LSTM anomaly detection on a time series (forecaster or autoencoder), NDT thresholds."""

    name = "anomaly"
    config_class = AnomalyConfig
    refit_on_validation = False  # the threshold is fitted on validation scores

    # ---- data -------------------------------------------------------------------------------
    def data(self, cfg: AnomalyConfig) -> Splits:
        series = self.load(cfg)
        if cfg.protocol == "online":
            return self.online_data(series, cfg)
        train_end, validation_end = self.split(series, cfg)
        scaler = Standardizer.fit(series.values[:train_end])
        scaled = scaler.transform(series.values)
        parts = {
            "train": (0, train_end),
            "validation": (train_end, validation_end),
            "test": (validation_end, len(series)),
        }
        datasets = {}
        for name, (start, stop) in parts.items():
            if stop - start < cfg.window + 1:
                raise DataError(
                    f"the {name} part has {stop - start} points, fewer than one window "
                    f"({cfg.window} + 1); use a smaller --window"
                )
            if cfg.model == "forecaster":
                inputs, targets = series.values[start : stop - 1], scaled[start + 1 : stop]
            else:
                inputs, targets = series.values[start:stop], scaled[start:stop]
            datasets[name] = windows(
                inputs,
                targets,
                cfg.window,
                cfg.stride if name == "train" else cfg.window // 2,
                cfg.batch_size,
                shuffle_seed=cfg.seed if name == "train" else None,
            )
        info = {
            "series": series,
            "scaler": scaler,
            "train_end": train_end,
            "validation_end": validation_end,
        }
        return Splits(datasets["train"], datasets["validation"], datasets["test"], info)

    def online_data(self, series: TimeSeries, cfg: AnomalyConfig) -> Splits:
        """Training windows from the probation period only (its last fifth validates early
        stopping); the whole series, z-scored against its own past, is what gets scored."""
        probation = probation_rows(series, cfg)
        scaled = online.normalise_series(series.values, cfg.norm_span, series.values[:probation])
        window = train_window(probation, cfg.window)
        learn_end = probation - probation // 5
        parts = {
            "train": (0, learn_end),
            "validation": (learn_end - 1, probation),
            "test": (probation - 1, len(series)),
        }
        datasets = {
            name: windows(
                scaled[start : stop - 1],
                scaled[start + 1 : stop],
                window,
                cfg.stride if name == "train" else window // 2,
                cfg.batch_size,
                shuffle_seed=cfg.seed if name == "train" else None,
            )
            for name, (start, stop) in parts.items()
        }
        info = {"series": series, "scaled": scaled, "probation": probation, "window": window}
        return Splits(datasets["train"], datasets["validation"], datasets["test"], info)

    def folds(self, cfg: AnomalyConfig) -> list[tuple[str, AnomalyConfig]]:
        """``--data DIR``: every CSV under the folder is one child run of a corpus run."""
        return csv_folder_folds(cfg)

    def fold_summary(self, rows: list[dict]) -> Report:
        """The corpus scores NAB reports (raw totals normalised once) besides each file's row."""
        report = fold_summary(rows)
        table = pd.DataFrame(rows)
        for prefix in ("test_", "baseline_zscore_"):
            report.metrics |= corpus_metrics(table, prefix)
        return report

    def load(self, cfg: AnomalyConfig) -> TimeSeries:
        spec = cfg.data
        if spec.endswith(".csv") or "/" in spec:
            series = read_series_csv(
                spec,
                cfg.time_column,
                cfg.value_columns or None,
                cfg.label_column,
                cfg.fill_missing,
                cfg.duplicates,
            )
            if cfg.labels:
                series.labels = self._nab_labels(cfg.labels, spec, series)
            return series
        if cfg.labels:
            raise DataError("--labels (NAB windows) applies only to a CSV given by --data")
        return load_series(spec)

    @staticmethod
    def _nab_labels(labels_path: str, data_path: str, series: TimeSeries) -> np.ndarray:
        if not Path(labels_path).is_file():
            raise DataError(f"labels file not found: {labels_path}")
        try:
            nab_windows = nab.read_windows(labels_path, data_path)
        except (KeyError, ValueError) as exc:
            raise DataError(str(exc).strip("'\"")) from None
        if not np.issubdtype(series.timestamps.dtype, np.datetime64):
            raise DataError(
                f"NAB labels need timestamps; {Path(data_path).name} has no time column "
                "(name it with --time-column)"
            )
        labels = np.zeros(len(series), dtype=int)
        for start, end in nab.window_rows(series.timestamps, nab_windows):
            labels[start : end + 1] = 1
        if nab_windows and not labels.any():
            raise DataError(
                f"the NAB windows of {Path(data_path).name} do not overlap its timestamps"
            )
        return labels

    @staticmethod
    def split(series: TimeSeries, cfg: AnomalyConfig) -> tuple[int, int]:
        """Chronological (train_end, validation_end); a data set's own test part is kept."""
        if series.test_start is None:
            return split_points(len(series), cfg.validation_fraction, cfg.test_fraction)
        validation = int(round(series.test_start * cfg.validation_fraction))
        return series.test_start - validation, series.test_start

    def data_hyperparameters(self, space: SearchSpace) -> dict[str, Any]:
        """The window length is searched around the configured one (half, same, double)."""
        window = space.cfg.window
        return {"window": space.choice("window", sorted({max(2, window // 2), window, 2 * window}))}

    # ---- model ------------------------------------------------------------------------------
    def build_model(self, cfg: AnomalyConfig, splits: Splits, hp: Any = None) -> keras.Model:
        space = SearchSpace(cfg, hp)
        if "scaler" in splits.info:
            scaler: Standardizer = splits.info["scaler"]
        else:  # online: the values arrive z-scored against their own past
            n_features = splits.info["scaled"].shape[1]
            scaler = Standardizer(np.zeros(n_features), np.ones(n_features))
        n_features = len(scaler.mean)
        kwargs = {
            "cell": space.choice("cell", CELL_NAMES),
            "units": space.int("units", 16, 128, step=16),
            "layers": space.int("layers", 1, 2),
            "dropout": space.float("dropout", 0.0, 0.3, step=0.1),
            "recurrent_dropout": space.float("recurrent_dropout", 0.0, 0.3, step=0.1),
        }
        stats = (scaler.mean, scaler.std**2)
        if cfg.model == "forecaster":  # online: a correction of the persistence forecast
            residual = cfg.protocol == "online"
            model = next_step_predictor(n_features, *stats, residual=residual, **kwargs)
        else:
            model = sequence_autoencoder(cfg.window, n_features, *stats, **kwargs)
        learning_rate = space.float("learning_rate", 1e-4, 1e-2, sampling="log")
        weight_decay = space.float("weight_decay", 0.0, 1e-3)
        model.compile(
            optimizer=make_optimizer(learning_rate, weight_decay), loss="mse", metrics=["mae"]
        )
        return model

    # ---- evaluation -------------------------------------------------------------------------
    def evaluate(self, model: keras.Model, splits: Splits, cfg: AnomalyConfig) -> Report:
        if cfg.protocol == "online":
            return self.online_evaluate(model, splits, cfg)
        series: TimeSeries = splits.info["series"]
        found = self.detect(model, splits, cfg)
        report = Report()
        report.metrics["threshold"] = found.threshold
        report.metrics["detected_windows"] = float(
            sum(1 for s, e in found.windows if e >= found.test.start)
        )
        if series.labels is not None:
            labels = series.labels[found.test]
            report.metrics |= detection.evaluate_detection(
                labels, found.scores[found.test], found.flags[found.test]
            )
            if cfg.labels:
                truth = detection.labels_to_events(labels)
                report.metrics["nab_score"] = nab.score_file(
                    found.flags[found.test], truth
                ).normalised()
        report.tables["anomalies"] = self.anomalies_table(series, found, splits)
        report.tables["windows"] = detection.windows_table(
            found.windows, found.scores, series.timestamps
        )
        report.artifacts["detector"] = {
            "model": cfg.model,
            "threshold": found.threshold,
            "smoothing": cfg.smoothing,
            "window": cfg.window,
            "columns": series.columns,
        }
        report.figures = self.figures(model, series, found, splits, cfg)
        return report

    # ---- online protocol --------------------------------------------------------------------
    def stages(self, cfg: AnomalyConfig, splits: Splits) -> list[Stage]:
        """Online scoring after the fit: chunk by chunk, each scored by the model as trained
        so far, with a fine-tuning on the latest rows between chunks (``--refit-every``)."""
        if cfg.protocol != "online":
            return []
        return [Stage("online", lambda model: self.online_plan(model, splits, cfg), after=True)]

    def online_plan(self, model: keras.Model, splits: Splits, cfg: AnomalyConfig):
        scaled: np.ndarray = splits.info["scaled"]
        probation, window = splits.info["probation"], splits.info["window"]
        n = len(scaled)
        if not cfg.refit_every:
            return forecast_errors(model, scaled)
        errors = forecast_errors(model, scaled[:probation])
        for start in range(probation, n, cfg.refit_every):
            stop = min(n, start + cfg.refit_every)
            errors = np.concatenate([errors, forecast_errors(model, scaled[:stop])[start:]])
            if stop < n:
                recent = scaled[max(0, stop - max(probation, 4 * window)) : stop]
                train = windows(
                    recent[:-1], recent[1:], window, cfg.stride, cfg.batch_size, cfg.seed
                )
                yield Fit(model, train, cfg.refit_epochs, name=f"rows{stop}")
        return errors

    def online_evaluate(self, model: keras.Model, splits: Splits, cfg: AnomalyConfig) -> Report:
        series: TimeSeries = splits.info["series"]
        probation = splits.info["probation"]
        errors = splits.stages.get("online")
        if errors is None:  # a search trial scores its fit without the after-fit stage
            errors = forecast_errors(model, splits.info["scaled"])
        settings = alarm_settings(cfg)
        lstm = online.score_errors(errors, settings, probation, series.values)
        base_errors = online.zscore_errors(
            series.values, cfg.baseline_span, series.values[:probation]
        )
        baseline = online.score_errors(base_errors, settings, probation, series.values)
        report = Report()
        report.metrics = online_metrics(series, lstm, probation) | {"error_period": lstm.period}
        report.metrics |= {
            f"baseline_zscore_{k}": v
            for k, v in online_metrics(series, baseline, probation).items()
        }
        stretches = online.alarm_stretches(lstm.likelihood, settings.threshold, probation)
        report.tables["anomalies"] = online_table(series, lstm, baseline, probation)
        report.tables["windows"] = detection.windows_table(
            stretches, lstm.likelihood, series.timestamps
        ).rename(columns={"peak_score": "peak_likelihood"})
        normaliser = online.RollingNormaliser.fit(cfg.norm_span, series.values[:probation])
        report.artifacts["detector"] = {
            "protocol": "online",
            "model": cfg.model,
            "columns": series.columns,
            "window": splits.info["window"],
            "probation": probation,
            "norm_span": cfg.norm_span,
            "reference": normaliser.state(),
            "threshold": settings.threshold,
            "alarm_gap": settings.gap,
            "short_window": settings.short_window,
            "likelihood_window": settings.long_window,
            "period_strength": settings.period_strength,
            "range_tolerance": settings.range_tolerance,
            "error_period": lstm.period,
        }
        report.figures = {"series": plot_online(series, lstm, probation, settings.threshold)}
        return report

    def predict(self, logged: LoggedModel, source: str, cfg: AnomalyConfig) -> Prediction:
        """Run an online run's detector over a CSV (``--predict FILE``): every row's error and
        likelihood in ``anomalies.csv``, one line per alarm. The first ``probation`` rows (the
        run's count) start the normaliser and the likelihood, as in the run.

        ``--predict DIR`` scores every CSV under the folder (subfolders included) the same way,
        each a fresh stream: lines are prefixed by the file's path relative to the folder
        without ``.csv``, which is also ``anomalies.csv``'s ``file`` column. Every file is read
        and checked before any is scored; a bad one fails the whole call, naming it."""
        detector = logged.artifact("detector")
        if detector.get("protocol") != "online":
            raise ConfigError(
                "--predict applies the model of a --protocol online run; this run used batch"
            )
        if not Path(source).is_dir():
            series = self._predict_series(source, detector, cfg)
            table, lines = self._predict_scores(logged, series, detector)
            return Prediction(lines, {"anomalies": table})
        files = csv_folder_folds(replace(cfg, data=source))
        named = []
        for name, file_cfg in files:
            try:
                named.append((name, self._predict_series(file_cfg.data, detector, cfg)))
            except DataError as exc:  # name the file by its path (errors may give its name)
                message = str(exc)
                if file_cfg.data not in message:
                    message = f"{file_cfg.data}: {message}"
                raise DataError(message) from None
        tables, lines = [], []
        for name, series in named:
            table, file_lines = self._predict_scores(logged, series, detector)
            tables.append(table.assign(file=name)[["file", *table.columns]])
            lines += [f"{name}: {line}" for line in file_lines]
        alarms = sum(int(t["is_anomaly"].sum()) for t in tables)
        lines.append(f"{alarms} alarm(s) in {len(files)} file(s)")
        return Prediction(lines, {"anomalies": pd.concat(tables, ignore_index=True)})

    @staticmethod
    def _predict_series(source: str, detector: dict, cfg: AnomalyConfig) -> TimeSeries:
        """A CSV read with the run's value columns, long enough to score after probation."""
        series = read_series_csv(
            source, cfg.time_column, detector["columns"], "", cfg.fill_missing, cfg.duplicates
        )
        probation = detector["probation"]
        if len(series) <= probation:
            raise DataError(
                f"{Path(source).name} has {len(series)} rows; the detector warms up on its first "
                f"{probation} and needs more to score"
            )
        return series

    @staticmethod
    def _predict_scores(
        logged: LoggedModel, series: TimeSeries, detector: dict
    ) -> tuple[pd.DataFrame, list[str]]:
        """One series' table (every row's error, likelihood and alarm) and its lines (one per
        alarm, then a count)."""
        scored = online_scores(logged.model, series.values, detector, fit_reference=True)
        table = pd.DataFrame(
            {
                "timestamp": series.timestamps,
                "score": scored.errors,
                "likelihood": scored.likelihood,
                "is_anomaly": scored.alarms.astype(int),
                "beyond_range": scored.beyond_range.astype(int),
            }
        )
        lines = [
            f"alarm at {series.timestamps[row]} (row {row}, "
            + (
                "beyond the range seen)"
                if scored.beyond_range[row]
                else f"likelihood {scored.likelihood[row]:.6f})"
            )
            for row in np.flatnonzero(scored.alarms)
        ]
        lines.append(f"{len(lines)} alarm(s) in {len(series) - detector['probation']} scored rows")
        return table, lines

    def log_serving_model(self, model, splits: Splits, cfg: AnomalyConfig, report: Report) -> None:
        """A window scorer for ``mlflow models serve`` (artifact path ``scorer``)."""
        from pipelines.anomaly.serving import log_window_scorer

        series: TimeSeries = splits.info["series"]
        example = pd.DataFrame(series.values[:256], columns=series.columns)
        log_window_scorer(model, report.artifacts["detector"], example)

    def detect(self, model: keras.Model, splits: Splits, cfg: AnomalyConfig) -> Detection:
        """Score every step, fit the threshold on label-free reference scores, find windows."""
        series: TimeSeries = splits.info["series"]
        train_end, validation_end = splits.info["train_end"], splits.info["validation_end"]
        scores = score_series(model, series.values, cfg.model, cfg.window, cfg.smoothing)
        if cfg.threshold == "max-train":
            reference = scores[cfg.window : train_end]  # skip the cold-start of the state
        else:
            reference = scores[train_end:validation_end]
        threshold = detection.fit_threshold(
            cfg.threshold, reference, **({"q": cfg.quantile} if cfg.threshold == "quantile" else {})
        )
        found = detection.flags_to_windows(scores > threshold, merge_gap=cfg.merge_gap)
        if cfg.threshold == "ndt":
            found = detection.prune_windows(found, scores, threshold)
        flags = detection.windows_to_flags(found, len(scores))
        return Detection(scores, threshold, found, flags, slice(validation_end, len(scores)))

    @staticmethod
    def anomalies_table(series: TimeSeries, found: Detection, splits: Splits) -> pd.DataFrame:
        split = np.full(len(series), "train", dtype=object)
        split[splits.info["train_end"] : splits.info["validation_end"]] = "validation"
        split[found.test] = "test"
        table = pd.DataFrame(
            {
                "timestamp": series.timestamps,
                "score": found.scores,
                "is_anomaly": found.flags.astype(int),
                "split": split,
            }
        )
        if series.labels is not None:
            table["label"] = series.labels
        return table

    # ---- figures ----------------------------------------------------------------------------
    def figures(
        self, model, series: TimeSeries, found: Detection, splits: Splits, cfg: AnomalyConfig
    ) -> dict[str, Any]:
        figures = {
            "series": plot_series(series, found),
            "score": plot_score(series, found, splits.info["validation_end"]),
            "error_histogram": plot_histogram(found, splits),
        }
        gates = plot_gates(model, series, found, cfg)
        if gates is not None:
            figures["gates"] = gates
        return figures


def probation_rows(series: TimeSeries, cfg: AnomalyConfig) -> int:
    """``--probation``, else a data set's own training part, else NAB's probation length."""
    n = len(series)
    rows = cfg.probation or series.test_start or nab.probation_length(n)
    if rows < MIN_PROBATION or rows >= n:
        raise DataError(
            f"the series has {n} rows and a probation period of {rows}: online detection needs "
            f"at least {MIN_PROBATION} rows to learn from and some left to score (set --probation)"
        )
    return rows


def train_window(probation: int, window: int) -> int:
    """The training window: ``--window``, shortened so the probation's last fifth (early
    stopping's validation) still holds one."""
    return max(2, min(window, probation // 5 - 1))


def alarm_settings(cfg: AnomalyConfig) -> online.AlarmSettings:
    return online.AlarmSettings(
        cfg.alarm_likelihood,
        cfg.alarm_gap,
        long_window=cfg.likelihood_window,
        period_strength=cfg.period_strength,
        range_tolerance=cfg.range_tolerance,
    )


def online_metrics(series: TimeSeries, scored: online.Scored, probation: int) -> dict[str, float]:
    """Alarms after probation and, with labels, NAB's windowed score (each profile, with the raw,
    null and perfect parts a corpus needs), event precision/recall and time to detect."""
    metrics = {"alarms": float(scored.alarms[probation:].sum())}
    if series.labels is None:
        return metrics
    events = detection.labels_to_events(series.labels)
    found = nab.score_file(scored.alarms, events)
    for profile in nab.PROFILES:
        metrics[f"nab_{profile}"] = found.normalised(profile)
        for part in ("raw", "null", "perfect"):
            metrics[f"nab_{part}_{profile}"] = getattr(found, part)[profile]
    labels = series.labels[probation:]
    scores = detection.evaluate_detection(
        labels, scored.likelihood[probation:], scored.alarms[probation:]
    )
    metrics |= {
        k: scores[k] for k in ("event_precision", "event_recall", "event_f1", "roc_auc", "pr_auc")
    }
    metrics |= {
        "windows": float(found.windows),
        "detected": float(found.detected),
        "false_alarms": float(found.false_alarms),
        "time_to_detect": float(np.mean(found.delays)) if found.delays else float("nan"),
    }
    return metrics


def corpus_metrics(table: pd.DataFrame, prefix: str) -> dict[str, float]:
    """NAB's corpus scores (:func:`nab.corpus_scores`) from the files' logged raw/null/perfect
    scores and event counts, under ``<prefix>corpus_*``."""
    if f"{prefix}nab_raw_standard" not in table:
        return {}
    files = {}
    for index, row in table.iterrows():
        part = {
            kind: {p: float(row[f"{prefix}nab_{kind}_{p}"]) for p in nab.PROFILES}
            for kind in ("raw", "null", "perfect")
        }
        detected = int(row[f"{prefix}detected"])
        delays = [float(row[f"{prefix}time_to_detect"])] * detected  # the file's mean, weighted
        files[str(index)] = nab.FileScore(
            **part,
            windows=int(row[f"{prefix}windows"]),
            detected=detected,
            false_alarms=int(row[f"{prefix}false_alarms"]),
            alarms=int(row[f"{prefix}alarms"]),
            delays=delays,
        )
    return {f"{prefix}corpus_{k}": v for k, v in nab.corpus_scores(files).items()}


def online_table(
    series: TimeSeries, lstm: online.Scored, baseline: online.Scored, probation: int
) -> pd.DataFrame:
    """Every row's error and likelihood; ``is_anomaly`` only on alarm rows."""
    table = pd.DataFrame(
        {
            "timestamp": series.timestamps,
            "score": lstm.errors,
            "likelihood": lstm.likelihood,
            "is_anomaly": lstm.alarms.astype(int),
            "beyond_range": lstm.beyond_range.astype(int),
            "baseline_likelihood": baseline.likelihood,
            "baseline_alarm": baseline.alarms.astype(int),
            "probation": (np.arange(len(series)) < probation).astype(int),
        }
    )
    if series.labels is not None:
        table["label"] = series.labels
    return table


def plot_online(series: TimeSeries, scored: online.Scored, probation: int, threshold: float):
    """Values, error and likelihood of one series with its alarms and labelled events."""
    x = time_axis(series)
    fig, axes = figure(rows=3, height=2.2, sharex=True)
    alarms = np.flatnonzero(scored.alarms)
    axes[0].plot(x, series.values[:, 0], lw=0.6, color="black")
    axes[1].plot(x, scored.errors, lw=0.6, color="tab:blue")
    axes[2].plot(x, scored.likelihood, lw=0.6, color="tab:purple")
    axes[2].axhline(threshold, color="tab:red", ls="--", lw=0.8, label=f"threshold {threshold}")
    for ax in axes:
        ax.axvspan(x[0], x[probation - 1], color="gray", alpha=0.15)
        for start, end in (
            detection.labels_to_events(series.labels) if series.labels is not None else []
        ):
            ax.axvspan(x[start], x[end], color="tab:red", alpha=0.2)
        for row in alarms:
            ax.axvline(x[row], color="tab:red", lw=1.0)
    axes[0].set(
        title=f"{series.name or 'series'}: alarms (red lines), labelled anomalies "
        "(red spans), probation (gray)",
        ylabel=series.columns[0],
    )
    axes[1].set(ylabel="error")
    axes[2].set(ylabel="likelihood", ylim=(0, 1.02))
    axes[2].legend(loc="lower left")
    return fig


def time_axis(series: TimeSeries) -> np.ndarray:
    """The series' timestamps when they are dates, else row numbers: the figures' x axis."""
    if np.issubdtype(series.timestamps.dtype, np.datetime64):
        return series.timestamps
    return np.arange(len(series))


def _shade(ax, x: np.ndarray, spans, color, label):
    for i, (start, end) in enumerate(spans):
        ax.axvspan(x[start], x[end], color=color, alpha=0.25, label=label if i == 0 else None)


def plot_series(series: TimeSeries, found: Detection):
    x = time_axis(series)
    fig, (ax,) = figure(height=3.5)
    ax.plot(x, series.values[:, 0], lw=0.6, color="black")
    if series.labels is not None:
        _shade(ax, x, detection.labels_to_events(series.labels), "tab:red", "labelled anomaly")
    _shade(ax, x, found.windows, "tab:blue", "detected")
    ax.axvline(x[found.test.start], ls="--", color="gray", label="test part starts")
    ax.set(
        title=f"{series.name or 'series'}: labelled vs detected anomalies",
        ylabel=series.columns[0],
    )
    ax.legend(loc="upper left")
    return fig


def plot_score(series: TimeSeries, found: Detection, validation_end: int):
    x = time_axis(series)
    fig, (ax,) = figure(height=3.0)
    ax.plot(x, found.scores, lw=0.7, label="score")
    ax.axhline(found.threshold, color="tab:red", ls="--", label=f"threshold {found.threshold:.3g}")
    ax.axvline(x[validation_end], ls="--", color="gray")
    if series.labels is not None:
        _shade(ax, x, detection.labels_to_events(series.labels), "tab:red", "labelled anomaly")
    ax.set(title="anomaly score", yscale="log")
    ax.legend(loc="upper left")
    return fig


def plot_histogram(found: Detection, splits: Splits):
    fig, (ax,) = figure(height=3.0, width=6)
    validation = found.scores[splits.info["train_end"] : splits.info["validation_end"]]
    bins = np.linspace(0, max(found.scores.max(), found.threshold) * 1.05, 80)
    ax.hist(validation, bins=bins, alpha=0.6, label="validation", density=True)
    ax.hist(found.scores[found.test], bins=bins, alpha=0.6, label="test", density=True)
    ax.axvline(found.threshold, color="tab:red", ls="--", label="threshold")
    ax.set(title="score distribution", xlabel="score", yscale="log")
    ax.legend()
    return fig


def plot_gates(model, series: TimeSeries, found: Detection, cfg: AnomalyConfig):
    """Heatmaps of the first recurrent layer's gates around the highest test score."""
    layer = model.get_layer("recurrent_0" if cfg.model == "forecaster" else "encoder_0")
    if cfg.cell not in ("lstm", "peephole", "layernorm"):
        return None
    peak = found.test.start + int(np.argmax(found.scores[found.test]))
    start, stop = max(0, peak - 2 * cfg.window), min(len(series), peak + cfg.window)
    segment = model.get_layer("normalize")(series.values[start:stop][None])
    gates = gate_activations(layer, segment)
    fig, axes = figure(rows=5, height=1.6, sharex=True)
    axes[0].plot(np.arange(start, stop), series.values[start:stop, 0], color="black", lw=0.7)
    axes[0].axvline(peak, color="tab:red", ls="--")
    axes[0].set(title=f"gate activations of {layer.name} ({cfg.cell}) around the top anomaly")
    shown = min(32, gates["input"].shape[-1])
    for ax, key in zip(axes[1:], ("input", "forget", "output", "cell")):
        ax.imshow(
            gates[key][0, :, :shown].T,
            aspect="auto",
            cmap="viridis",
            extent=(start, stop, shown, 0),
            interpolation="nearest",
        )
        ax.set_ylabel(key)
    axes[-1].set_xlabel("step")
    return fig
