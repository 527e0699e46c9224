"""Time-series anomaly detection with recurrent models.

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

from dataclasses import dataclass
from typing import Any

import keras
import numpy as np
import pandas as pd

from models.architectures import next_step_predictor, sequence_autoencoder
from models.recurrent import CELL_NAMES, gate_activations
from pipelines.anomaly import detection, nab
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
from pipelines.core.plotting import figure
from pipelines.core.timeseries import (
    Standardizer,
    TimeSeries,
    duplicates_option,
    read_series_csv,
    split_points,
    windows,
)
from pipelines.core.training import make_optimizer
from pipelines.datasets import SERIES, load_series

MODELS = ("forecaster", "autoencoder")
THRESHOLDS = ("ndt", "quantile", "max-train")


@dataclass
class AnomalyConfig(TaskConfig):
    data: str = option("mitdb", f"{', '.join(SERIES)}, tfds:NAME, or a CSV path")
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
        self.require_positive("window", "stride", "smoothing")
        self.require_non_negative("merge_gap")
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
        from pathlib import Path

        if not Path(labels_path).is_file():
            raise DataError(f"labels file not found: {labels_path}")
        try:
            nab_windows = nab.read_windows(labels_path, Path(data_path).name)
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
        scaler: Standardizer = splits.info["scaler"]
        n_features = len(scaler.mean)
        kwargs = {
            "cell": space.choice("cell", CELL_NAMES),
            "units": space.int("units", 16, 128, step=16),
            "layers": space.int("layers", 1, 2),
            "dropout": space.float("dropout", 0.0, 0.3, step=0.1),
            "recurrent_dropout": space.float("recurrent_dropout", 0.0, 0.3, step=0.1),
        }
        stats = (scaler.mean, scaler.std**2)
        if cfg.model == "forecaster":
            model = next_step_predictor(n_features, *stats, **kwargs)
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


def score_series(
    model: keras.Model, values: np.ndarray, kind: str, window: int, smoothing: int
) -> np.ndarray:
    """Per-step anomaly score of a raw series: EWMA-smoothed mean absolute error."""
    scaled = np.asarray(model.get_layer("normalize")(values[None]))[0]
    if kind == "forecaster":
        predicted = model.predict(values[None], verbose=0)[0]
        errors = np.zeros(len(values), np.float32)
        errors[1:] = np.abs(scaled[1:] - predicted[:-1]).mean(axis=1)
    else:
        errors = _reconstruction_errors(model, values, scaled, window)
    return detection.ewma(errors, smoothing).astype(np.float32)


def _reconstruction_errors(model, values, scaled, window: int) -> np.ndarray:
    starts = np.arange(len(values) - window + 1)
    idx = starts[:, None] + np.arange(window)[None, :]
    reconstructed = model.predict(values[idx], batch_size=256, verbose=0)
    step_error = np.abs(reconstructed - scaled[idx]).mean(axis=2)
    total = np.zeros(len(values))
    count = np.zeros(len(values))
    np.add.at(total, idx, step_error)
    np.add.at(count, idx, 1.0)
    return total / count


def _shade(ax, spans, color, label):
    for i, (start, end) in enumerate(spans):
        ax.axvspan(start, end, color=color, alpha=0.25, label=label if i == 0 else None)


def plot_series(series: TimeSeries, found: Detection):
    fig, (ax,) = figure(height=3.5)
    ax.plot(series.values[:, 0], lw=0.6, color="black")
    if series.labels is not None:
        _shade(ax, detection.labels_to_events(series.labels), "tab:red", "labelled anomaly")
    _shade(ax, found.windows, "tab:blue", "detected")
    ax.axvline(found.test.start, ls="--", color="gray", label="test part starts")
    ax.set(
        title=f"{series.name or 'series'}: labelled vs detected anomalies",
        xlabel="step",
        ylabel=series.columns[0],
    )
    ax.legend(loc="upper left")
    return fig


def plot_score(series: TimeSeries, found: Detection, validation_end: int):
    fig, (ax,) = figure(height=3.0)
    ax.plot(found.scores, lw=0.7, label="score")
    ax.axhline(found.threshold, color="tab:red", ls="--", label=f"threshold {found.threshold:.3g}")
    ax.axvline(validation_end, ls="--", color="gray")
    if series.labels is not None:
        _shade(ax, detection.labels_to_events(series.labels), "tab:red", "labelled anomaly")
    ax.set(title="anomaly score", xlabel="step", yscale="log")
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
