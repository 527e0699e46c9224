"""A NAB-like corpus of synthetic streaming series with known anomalies, to develop and test on.

Five families that look like NAB's files: server metrics (noisy level with normal spikes),
machine sensors (smooth daily cycle), traffic (daily and weekly cycles), tweet volumes (Poisson
counts with normal bursts) and ad clicks (skewed, irregularly sampled). Each series gets 1-3
anomalies of eight kinds (spike, dip, level shift, flatline, variance change, frequency change,
slow drift, seasonality break) placed anywhere after the first 10 % (so also in the first
half), and NAB-sized label windows: 10 % of the length shared by its anomalies, centred on each
onset, written as ``combined_windows.json`` next to the CSVs.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

FAMILIES = ("server", "sensor", "traffic", "tweets", "adclicks")
KINDS = ("spike", "dip", "level", "flatline", "variance", "frequency", "drift", "seasonality")
STEP = pd.Timedelta(minutes=5)


def _normal(family: str, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(values, daily phase) of a normal series of ``family``."""
    t = np.arange(n)
    day = 288 * rng.uniform(0.7, 1.3)  # rows per cycle: NAB files sample every 5 minutes
    phase = 2 * np.pi * t / day + rng.uniform(0, 2 * np.pi)
    if family == "server":
        base = rng.uniform(20, 60) + rng.uniform(0, 5) * np.sin(phase)
        values = base + rng.normal(0, rng.uniform(1, 4), n)
        spikes = rng.random(n) < 0.004  # normal, short load spikes
        values[spikes] += rng.uniform(5, 15, spikes.sum())
    elif family == "sensor":
        values = 80 + 10 * np.sin(phase) + 0.5 * np.cumsum(rng.normal(0, 0.05, n))
        values += rng.normal(0, 0.6, n)
    elif family == "traffic":
        week = 2 * np.pi * t / (7 * day)
        values = 50 + 25 * np.sin(phase) + 8 * np.sin(week) + rng.normal(0, 3, n)
    elif family == "tweets":
        rate = 20 + 10 * np.sin(phase)
        bursts = rng.random(n) < 0.003
        rate = rate + np.convolve(bursts * rng.uniform(20, 40, n), np.ones(6), "same")
        values = rng.poisson(np.maximum(rate, 0.1)).astype(float)
    else:  # ad clicks: log-normal around a daily cycle
        values = np.exp(0.2 + 0.3 * np.sin(phase) + rng.normal(0, 0.25, n))
    return values, phase


def _inject(values: np.ndarray, phase: np.ndarray, kind: str, at: int, rng) -> None:
    n = len(values)
    spread = float(np.std(values[: max(at, 100)])) or 1.0
    length = int(rng.integers(30, 150))
    end = min(n, at + length)
    if kind == "spike":
        values[at : at + 3] += rng.uniform(4, 7) * spread
    elif kind == "dip":
        values[at : at + 3] -= rng.uniform(4, 7) * spread
    elif kind == "level":
        values[at:] += rng.choice([-1, 1]) * rng.uniform(2, 4) * spread
    elif kind == "flatline":
        values[at:end] = values[at]
    elif kind == "variance":
        values[at:end] += rng.normal(0, rng.uniform(2, 3) * spread, end - at)
    elif kind == "frequency":
        values[at:end] += 1.5 * spread * np.sin(2 * np.pi * np.arange(end - at) / 6)
    elif kind == "drift":
        ramp = np.linspace(0, rng.uniform(3, 5) * spread, n - at)
        values[at:] += rng.choice([-1, 1]) * ramp
    else:  # seasonality break: the cycle inverted for a while
        values[at:end] -= 2 * (values[at:end] - np.mean(values[at:end]))


def make_series(family: str, n: int, rng: np.random.Generator) -> tuple[pd.DataFrame, list]:
    """One series as a ``timestamp``/``value`` frame and its label windows (row ranges)."""
    values, phase = _normal(family, n, rng)
    count = int(rng.integers(1, 4))
    width = max(1, int(0.1 * n / count))
    slots = np.sort(rng.choice(np.arange(int(0.1 * n), int(0.95 * n), 2 * width), count, False))
    windows = []
    for at in slots:
        at = int(at + rng.integers(0, width // 2 + 1))
        _inject(values, phase, str(rng.choice(KINDS)), at, rng)
        windows.append((max(0, at - width // 2), min(n - 1, at + width // 2)))
    start = pd.Timestamp("2024-01-01")
    # ad clicks are sampled irregularly: steps of 5, 10 or 15 minutes
    steps = STEP * rng.choice([1, 1, 1, 2, 3], n) if family == "adclicks" else [STEP] * n
    stamps = start + pd.to_timedelta(np.cumsum(steps))
    return pd.DataFrame({"timestamp": stamps, "value": np.round(values, 4)}), windows


def make_corpus(folder: str | Path, series: int, seed: int, lengths=(1500, 6000)) -> Path:
    """Write ``series`` CSVs and ``combined_windows.json`` into ``folder``; returns the labels
    file. Different seeds give independent corpora (one to choose settings, one to report)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    labels = {}
    for i in range(series):
        family = FAMILIES[i % len(FAMILIES)]
        frame, windows = make_series(family, int(rng.integers(*lengths)), rng)
        name = f"{family}_{seed}_{i:03d}.csv"
        frame.to_csv(folder / name, index=False)
        stamps = frame["timestamp"].astype(str)
        labels[f"synthetic/{name}"] = [[stamps[s], stamps[e]] for s, e in windows]
    path = folder / "combined_windows.json"
    path.write_text(json.dumps(labels, indent=1))
    return path


def main(argv: list[str] | None = None) -> int:
    """``python -m pipelines.anomaly.synthetic DIR [--series 40] [--seed 2]``"""
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", help="where to write the CSVs and combined_windows.json")
    parser.add_argument("--series", type=int, default=40)
    parser.add_argument("--seed", type=int, default=2)
    args = parser.parse_args(argv)
    print(make_corpus(args.folder, args.series, args.seed))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
