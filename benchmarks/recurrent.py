"""Benchmarks the fused LSTM layers against `keras.layers.LSTM` (train step and inference).

Every layer is timed the same way: a compiled `keras.Model` (layer + Dense head) driven by
`train_on_batch` (forward + backward + Adam) and `predict_on_batch`, with XLA off and on.
After warm-up calls the median of several repeats is reported, plus a ratio against the
best of keras.layers.LSTM's XLA-off/XLA-on time measured in the same run.

    python benchmarks/recurrent.py [--quick] [--output benchmarks/results/recurrent.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from models.recurrent import LSTM, LayerNormLSTM, PeepholeLSTM  # noqa: E402

LAYERS: dict[str, Callable[[int], keras.layers.Layer]] = {
    "keras.LSTM": keras.layers.LSTM,
    "LSTM": LSTM,
    "PeepholeLSTM": PeepholeLSTM,
    "LayerNormLSTM": LayerNormLSTM,
}
FULL_SHAPES = [(64, 100, 32, 128), (64, 1000, 32, 128)]  # (B, T, D, H)
QUICK_SHAPES = [(8, 10, 4, 8), (8, 30, 4, 8)]


def _median_seconds(fn: Callable[[], object], warmup: int, repeats: int) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def bench_one(
    name: str, shape: tuple[int, int, int, int], xla: bool, warmup: int, repeats: int
) -> dict:
    """Times one (layer, shape, XLA) combination; returns a result row in milliseconds."""
    batch, steps, features, units = shape
    keras.utils.set_random_seed(0)
    x = np.random.normal(size=(batch, steps, features)).astype("float32")
    y = np.random.normal(size=(batch, 1)).astype("float32")
    inputs = keras.Input((steps, features), batch_size=batch)
    model = keras.Model(inputs, keras.layers.Dense(1)(LAYERS[name](units)(inputs)))
    model.compile(optimizer="adam", loss="mse", jit_compile=xla)
    train = _median_seconds(lambda: model.train_on_batch(x, y), warmup, repeats)
    infer = _median_seconds(lambda: model.predict_on_batch(x), warmup, repeats)
    return {
        "layer": name,
        "B": batch,
        "T": steps,
        "D": features,
        "H": units,
        "xla": xla,
        "train_ms": 1e3 * train,
        "infer_ms": 1e3 * infer,
    }


def add_ratios(rows: list[dict]) -> None:
    """Adds `train_ratio`/`infer_ratio` against keras.LSTM's best time for the same shape."""
    for row in rows:
        ref = [r for r in rows if r["layer"] == "keras.LSTM" and r["T"] == row["T"]]
        for metric in ("train", "infer"):
            best = min(r[f"{metric}_ms"] for r in ref)
            row[f"{metric}_ratio"] = row[f"{metric}_ms"] / best


def format_table(rows: list[dict]) -> str:
    header = (
        f"{'layer':<14} {'B':>3} {'T':>5} {'D':>3} {'H':>4} {'xla':>5} "
        f"{'train ms':>10} {'ratio':>6} {'infer ms':>10} {'ratio':>6}"
    )
    lines = [header, "-" * len(header)]
    for r in rows:
        lines.append(
            f"{r['layer']:<14} {r['B']:>3} {r['T']:>5} {r['D']:>3} {r['H']:>4} "
            f"{str(r['xla']):>5} {r['train_ms']:>10.2f} {r['train_ratio']:>6.2f} "
            f"{r['infer_ms']:>10.2f} {r['infer_ratio']:>6.2f}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes for a smoke run")
    parser.add_argument("--output", default="benchmarks/results/recurrent.json")
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--layers", nargs="+", default=list(LAYERS), choices=list(LAYERS))
    args = parser.parse_args(argv)

    shapes = QUICK_SHAPES if args.quick else FULL_SHAPES
    repeats = args.repeats or (2 if args.quick else 5)
    warmup = 1 if args.quick else 2
    names = ["keras.LSTM", *[n for n in args.layers if n != "keras.LSTM"]]
    rows = []
    for shape in shapes:
        for name in names:
            for xla in (False, True):
                rows.append(bench_one(name, shape, xla, warmup, repeats))
                print(f"done {name} T={shape[1]} xla={xla}", file=sys.stderr, flush=True)
    add_ratios(rows)
    print(format_table(rows))

    output = Path(args.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    meta = {
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
        "quick": args.quick,
        "repeats": repeats,
        "warmup": warmup,
    }
    output.write_text(json.dumps({"meta": meta, "rows": rows}, indent=2))
    print(f"wrote {output}", file=sys.stderr)


if __name__ == "__main__":
    main()
