"""One model across a folder of short series (``--across-series``) against one model per series,
at the same season, horizon and window, on panels of series whose answers we do not tune to.

    python benchmarks/forecast_panel.py [--only monthly,co2,seattle,taylor] [--seed 1]

For each panel: the across-series default run chooses the settings; every series is then also
run alone with those settings (the per-series model of ``--data DIR`` without the flag). Prints
per panel the mean over series of test MASE (deployed forecast and LSTM alone) for both, the
best baseline per series (lowest test MASE: an oracle neither can know), the mean ratio
deployed / best baseline and how many series each beats the best baseline on; writes
benchmarks/results/forecast_panel_<panels>_seed<seed>.json.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

RESULTS = Path(__file__).parent / "results"
SETTINGS = ("season", "horizon", "window")


def monthly_panel(seed: int, count: int = 12) -> dict[str, pd.DataFrame]:
    """Monthly series of 100-220 points: levels from 10 to 1000, growth, a yearly season of
    random phase and strength, noise; multiplicative, as sales series are."""
    rng = np.random.default_rng(seed)
    panel = {}
    for i in range(count):
        n = int(rng.integers(100, 221))
        t = np.arange(n)
        growth = rng.uniform(-0.002, 0.01) * t
        season = rng.uniform(0.0, 0.3) * np.sin(2 * np.pi * t / 12 + rng.uniform(0, 2 * np.pi))
        noise = rng.normal(0, rng.uniform(0.01, 0.08), n)
        values = rng.uniform(10, 1000) * (1 + growth + season + noise)
        times = pd.date_range("1990-01-01", periods=n, freq="MS")
        panel[f"m{i:02d}"] = pd.DataFrame({"time": times, "y": values})
    return panel


def embedded_panel(name: str, length: int, count: int, seed: int) -> dict[str, pd.DataFrame]:
    """``count`` non-overlapping cuts of ``length`` points from an embedded series, at
    offsets drawn with ``seed``."""
    from pipelines.datasets import load_forecast_series

    series, _ = load_forecast_series(name)
    slots = len(series) // length
    rng = np.random.default_rng(seed)
    starts = sorted(rng.choice(slots, size=min(count, slots), replace=False) * length)
    return {
        f"{name}_{start}": pd.DataFrame(
            {
                "time": series.timestamps[start : start + length],
                "y": series.values[start : start + length, 0],
            }
        )
        for start in starts
    }


PANELS = {
    "monthly": lambda seed: monthly_panel(seed),
    "co2": lambda seed: embedded_panel("co2", 260, 8, seed),
    "seattle": lambda seed: embedded_panel("seattle_weather", 240, 6, seed),
    "taylor": lambda seed: embedded_panel("taylor", 480, 8, seed),
}


def best_baseline(metrics: dict[str, float]) -> tuple[str, float]:
    scores = {
        k[len("baseline_") : -len("_test_mase")]: v
        for k, v in metrics.items()
        if k.startswith("baseline_") and k.endswith("_test_mase") and np.isfinite(v)
    }
    best = min(scores, key=scores.get)
    return best, scores[best]


def run_panel(folder: Path, store: str, seed: int) -> list[dict]:
    """The across-series run, then each series alone at its settings; one row per series."""
    from pipelines.core import RunOptions, run
    from pipelines.core.tracking import report_metrics
    from pipelines.forecast.task import ForecastConfig, ForecastTask

    opts = RunOptions(tracking_uri=store, log_model=False)
    started = time.perf_counter()
    pooled = run(
        ForecastTask(), ForecastConfig(data=str(folder), across_series=True, seed=seed), opts
    )
    pooled_seconds = time.perf_counter() - started
    spec = pooled.report.artifacts["forecaster"]
    settings = {k: spec[k] for k in SETTINGS}
    rows = []
    for name, child in pooled.report.children.items():
        alone_cfg = ForecastConfig(data=str(folder / f"{name}.csv"), seed=seed, **settings)
        started = time.perf_counter()
        alone = run(ForecastTask(), alone_cfg, opts)
        alone_seconds = time.perf_counter() - started
        child_metrics = report_metrics(child)
        baseline, baseline_mase = best_baseline(child_metrics)
        rows.append(
            {
                "series": name,
                **settings,
                "best_baseline": baseline,
                "best_baseline_mase": baseline_mase,
                "across_mase": child_metrics["test_mase"],
                "across_lstm_mase": child_metrics["lstm/test_mase"],
                "alone_mase": alone.metrics["test_mase"],
                "alone_lstm_mase": alone.metrics["lstm/test_mase"],
                "alone_chosen": alone.report.artifacts["forecaster"]["combination"]["description"],
                "across_chosen": spec["combination"]["description"],
                "across_coverage": child_metrics["test_coverage"],
                "alone_coverage": alone.metrics["test_coverage"],
                "alone_seconds": alone_seconds,
                "across_seconds": pooled_seconds / len(pooled.report.children),
            }
        )
    return rows


def summarise(panel: str, table: pd.DataFrame) -> dict:
    best = table.best_baseline_mase
    return {
        "panel": panel,
        "series": len(table),
        "season/horizon/window": "/".join(str(table[k].iloc[0]) for k in SETTINGS),
        "across_ratio": float((table.across_mase / best).mean()),
        "alone_ratio": float((table.alone_mase / best).mean()),
        "across_lstm_ratio": float((table.across_lstm_mase / best).mean()),
        "alone_lstm_ratio": float((table.alone_lstm_mase / best).mean()),
        "across_wins": int((table.across_mase < best).sum()),
        "alone_wins": int((table.alone_mase < best).sum()),
        "across_coverage": float(table.across_coverage.mean()),
        "alone_coverage": float(table.alone_coverage.mean()),
        "across_seconds": float(table.across_seconds.sum()),
        "alone_seconds": float(table.alone_seconds.sum()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--only", default=",".join(PANELS))
    parser.add_argument("--seed", type=int, default=1, help="panel draws and training seed")
    args = parser.parse_args()
    rows, summaries = [], []
    with tempfile.TemporaryDirectory() as tmp:
        store = f"sqlite:///{tmp}/mlflow.db"
        for panel in args.only.split(","):
            folder = Path(tmp) / panel
            folder.mkdir()
            for name, frame in PANELS[panel](args.seed).items():
                frame.to_csv(folder / f"{name}.csv", index=False)
            found = run_panel(folder, store, args.seed)
            rows += [{"panel": panel} | row for row in found]
            summaries.append(summarise(panel, pd.DataFrame(found)))
            print(pd.DataFrame(summaries).to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    print(pd.DataFrame(rows).to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"forecast_panel_{args.only.replace(',', '_')}_seed{args.seed}.json"
    path.write_text(json.dumps({"summary": summaries, "series": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
