"""Cross-validation folds (e.g. leave-one-speaker-out): one summary of many test results.

A task whose config names several folds (``Task.folds``) trains each as a child run; the parent
run gets the mean of every test metric under the metric's own name (so it compares with plain
runs in the MLflow UI), the worst and best fold as ``<metric>_min`` and ``<metric>_max``,
``results/folds.csv`` (one row per fold) and ``folds.png``. A metric some folds cannot define
(an event F1 on a file without anomalies) is summarised over the folds that define it, their
number logged as ``<metric>_count``; one no fold defines is left out (it stays in the table).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from pipelines.core.plotting import figure
from pipelines.core.results import Report


def held_out_metrics(metrics: dict[str, float]) -> dict[str, float]:
    """A run's results: its ``test_*`` metrics and those of its in-run baselines
    (``baseline_*``), not its train time or validation curves."""
    return {k: v for k, v in metrics.items() if k.startswith(("test_", "baseline_"))}


def summary(rows: list[dict]) -> Report:
    """Mean, min and max over folds of every test metric, the per-fold table and its figure.

    ``rows`` hold a ``fold`` name and that fold's test metrics; NaN (or absent) where a fold
    cannot define a metric.
    """
    table = pd.DataFrame(rows)
    columns = table.columns.drop("fold")
    metrics = {}
    for column in columns:
        values = table[column].to_numpy(float)
        defined = values[~np.isnan(values)]
        if not defined.size:
            continue
        metrics[column] = float(np.mean(defined))
        metrics[f"{column}_min"] = float(np.min(defined))
        metrics[f"{column}_max"] = float(np.max(defined))
        if defined.size < values.size:
            metrics[f"{column}_count"] = float(defined.size)
    plotted = pd.Index([c for c in columns if c in metrics])
    figures = {"folds": plot(table, plotted)} if len(plotted) else {}
    return Report(metrics=metrics, tables={"folds": table}, figures=figures)


def mean_history(histories: list[dict[str, list[float]]]) -> dict[str, list[float]]:
    """Per-epoch mean over folds of every training curve (a fold may stop early: the mean is
    over the folds still training)."""
    keys = dict.fromkeys(k for history in histories for k in history)
    return {
        k: pd.DataFrame([pd.Series(h.get(k, []), dtype=float) for h in histories]).mean().tolist()
        for k in keys
    }


def plot(table: pd.DataFrame, columns: pd.Index):
    """One panel per metric: a bar per fold, the mean as a dashed line."""
    fig, axes = figure(len(columns), width=7, height=2.2)
    for ax, column in zip(axes, columns):
        bars = ax.bar(table["fold"], table[column], color="tab:blue")
        ax.bar_label(bars, fmt="%.4g", fontsize=8)
        ax.axhline(table[column].mean(), color="tab:red", linestyle="--", label="mean")
        ax.set(ylabel=column.removeprefix("test_"))
        ax.tick_params(axis="x", labelrotation=30)
    axes[0].set_title(f"{len(table)} folds")
    axes[0].legend()
    return fig
