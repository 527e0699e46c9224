"""Default forecasting runs on series with known structure, short cuts of the embedded series
and the embedded series themselves: deployed forecast vs the best baseline of the same run.

    python benchmarks/forecast_suite.py [--only synthetic,cuts,embedded] [--epochs N]

Prints one row per series (test MASE of the deployed forecast, the LSTM alone and the best
baseline, their ratio, what validation chose, the calibrated interval's coverage and width)
and writes benchmarks/results/forecast_suite_<groups>.json. Every run uses the defaults (no
flags but --data), so it measures what a new user gets.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

RESULTS = Path(__file__).parent / "results"


def _frame(values: np.ndarray, freq: str, start: str = "2000-01-01") -> pd.DataFrame:
    return pd.DataFrame({"time": pd.date_range(start, periods=len(values), freq=freq), "y": values})


def synthetic_series(seed: int = 0) -> dict[str, pd.DataFrame]:
    """Series whose structure is known: trend, one or two seasons, level shifts, noise."""
    rng = np.random.default_rng(seed)

    def t(n: int) -> np.ndarray:
        return np.arange(n, dtype=np.float64)

    shifts = np.repeat(rng.normal(0, 4, 8), 100)
    hourly = t(800)
    return {
        "trend + yearly season (monthly, 240)": _frame(
            100 + 0.5 * t(240) + 10 * np.sin(2 * np.pi * t(240) / 12) + rng.normal(0, 2, 240),
            "MS",
        ),
        "trend x season (monthly, 180)": _frame(
            (100 + t(180))
            * (1 + 0.2 * np.sin(2 * np.pi * t(180) / 12))
            * (1 + rng.normal(0, 0.02, 180)),
            "MS",
        ),
        "daily + weekly seasons (hourly, 1200)": _frame(
            10
            + 3 * np.sin(2 * np.pi * t(1200) / 24)
            + 2 * np.sin(2 * np.pi * t(1200) / 168)
            + rng.normal(0, 0.5, 1200),
            "h",
        ),
        "level shifts + daily season (hourly, 800)": _frame(
            20 + shifts + 2 * np.sin(2 * np.pi * hourly / 24) + rng.normal(0, 0.5, 800), "h"
        ),
        "random walk (daily, 300)": _frame(100 + np.cumsum(rng.normal(0, 1, 300)), "D"),
        "noise around a level (daily, 250)": _frame(50 + rng.normal(0, 1, 250), "D"),
        "growth x season (monthly, 144)": _frame(
            100
            * np.exp(0.01 * t(144))
            * (1 + 0.25 * np.sin(2 * np.pi * t(144) / 12))
            * np.exp(rng.normal(0, 0.03, 144)),
            "MS",
        ),
    }


def embedded_cuts() -> dict[str, pd.DataFrame]:
    """Short series (100-300 points) cut from the embedded ones, with their timestamps."""
    from pipelines.datasets import load_forecast_series

    cuts = {}
    for name, pieces in {
        "taylor": [(0, 300), (2000, 2250)],
        "co2": [(0, 200), (1500, 1800)],
        "seattle_weather": [(0, 300), (700, 900)],
    }.items():
        series, _ = load_forecast_series(name)
        for start, stop in pieces:
            frame = pd.DataFrame(
                {"time": series.timestamps[start:stop], "y": series.values[start:stop, 0]}
            )
            cuts[f"{name}[{start}:{stop}]"] = frame
    return cuts


def run_default(data: str, epochs: int | None, store: str) -> dict:
    """One default run; the deployed, LSTM and baseline test scores it logged."""
    from pipelines.core import RunOptions, run
    from pipelines.forecast.task import ForecastConfig, ForecastTask

    cfg = ForecastConfig(data=data)
    if epochs:
        cfg.epochs = epochs
    result = run(ForecastTask(), cfg, RunOptions(tracking_uri=store, log_model=False))
    m = result.metrics
    spec = result.report.artifacts["forecaster"]
    scores = {
        k[len("baseline_") : -len("_test_mase")]: v
        for k, v in m.items()
        if k.startswith("baseline_") and k.endswith("_test_mase")
    }
    best = min(scores, key=scores.get)
    return {
        "season": spec["season"],
        "horizon": spec["horizon"],
        "window": spec["window"],
        "deployed_mase": m["test_mase"],
        "lstm_mase": m["lstm/test_mase"],
        "best_baseline": best,
        "best_baseline_mase": scores[best],
        "ratio": m["test_mase"] / scores[best],
        "lstm_ratio": m["lstm/test_mase"] / scores[best],
        "chosen": spec["combination"]["description"],
        "coverage": m["test_coverage"],
        "width": m["test_interval_width"],
        "baselines": scores,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--only", default="synthetic,cuts,embedded")
    parser.add_argument("--epochs", type=int, default=0, help="0: the default")
    args = parser.parse_args()
    groups: dict[str, Callable[[], dict[str, pd.DataFrame]]] = {
        "synthetic": synthetic_series,
        "cuts": embedded_cuts,
    }
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        store = f"sqlite:///{tmp}/mlflow.db"
        for group in args.only.split(","):
            if group == "embedded":
                for name in ("taylor", "co2", "seattle_weather"):
                    rows.append(
                        {"group": group, "series": name} | run_default(name, args.epochs, store)
                    )
                continue
            for name, frame in groups[group]().items():
                path = Path(tmp) / f"series{len(rows)}.csv"
                frame.to_csv(path, index=False)
                rows.append(
                    {"group": group, "series": name} | run_default(str(path), args.epochs, store)
                )
    table = pd.DataFrame(rows)
    shown = [
        "group",
        "series",
        "season",
        "horizon",
        "deployed_mase",
        "lstm_mase",
        "best_baseline",
        "best_baseline_mase",
        "ratio",
        "chosen",
        "coverage",
        "width",
    ]
    print(table[shown].to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    for group, part in table.groupby("group"):
        print(
            f"{group}: deployed/best mean {part.ratio.mean():.3f}, worst {part.ratio.max():.3f};"
            f" LSTM alone/best mean {part.lstm_ratio.mean():.3f};"
            f" 80 % interval coverage mean {part.coverage.mean():.3f}"
        )
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"forecast_suite_{args.only.replace(',', '_')}.json"
    path.write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
