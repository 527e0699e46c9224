"""Benchmarks the fused LSTM layers against `keras.layers.LSTM` (train step and inference).

Every layer is timed the same way: a compiled `keras.Model` (layer + Dense head) driven by
`train_on_batch` (forward + backward + Adam) and `predict_on_batch`, with XLA off and on.
The machine is shared, so wall-clock times are inflated and noisy: all models of a shape
are built and warmed up first, then timed interleaved (one call of each per repeat) so
load swings hit them alike, and the process CPU time of each call is recorded beside its
wall time. Medians are reported, plus ratios against the best of keras.layers.LSTM's
XLA-off/XLA-on medians measured in the same run.

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
METRICS = ("train", "infer")


def _timed(fn: Callable[[], object]) -> tuple[float, float]:
    """(wall, CPU) seconds of one call; CPU time counts every thread of this process."""
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - wall, time.process_time() - cpu


def _model(name: str, shape: tuple[int, int, int, int], xla: bool) -> keras.Model:
    batch, steps, features, units = shape
    keras.utils.set_random_seed(0)
    inputs = keras.Input((steps, features), batch_size=batch)
    model = keras.Model(inputs, keras.layers.Dense(1)(LAYERS[name](units)(inputs)))
    model.compile(optimizer="adam", loss="mse", jit_compile=xla)
    return model


def bench_shape(
    names: list[str], shape: tuple[int, int, int, int], warmup: int, repeats: int
) -> list[dict]:
    """Times every (layer, XLA) model of one shape, interleaved; one row each, in ms."""
    batch, steps, features, units = shape
    rng = np.random.default_rng(0)
    x = rng.normal(size=(batch, steps, features)).astype("float32")
    y = rng.normal(size=(batch, 1)).astype("float32")
    keys = [(name, xla) for name in names for xla in (False, True)]
    calls = {}
    for key in keys:
        model = _model(key[0], shape, key[1])
        calls[key] = {
            "train": lambda m=model: m.train_on_batch(x, y),
            "infer": lambda m=model: m.predict_on_batch(x),
        }
        for fn in calls[key].values():
            for _ in range(warmup):
                fn()
        print(f"built {key[0]} T={steps} xla={key[1]}", file=sys.stderr, flush=True)
    times = {(key, metric): [] for key in keys for metric in METRICS}
    for _ in range(repeats):
        for metric in METRICS:
            for key in keys:
                times[key, metric].append(_timed(calls[key][metric]))
    rows = []
    for name, xla in keys:
        row = {"layer": name, "B": batch, "T": steps, "D": features, "H": units, "xla": xla}
        for metric in METRICS:
            samples = times[(name, xla), metric]
            row[f"{metric}_ms"] = 1e3 * statistics.median(s[0] for s in samples)
            row[f"{metric}_cpu_ms"] = 1e3 * statistics.median(s[1] for s in samples)
        rows.append(row)
    return rows


def add_ratios(rows: list[dict]) -> None:
    """Adds wall and CPU ratios against keras.LSTM's best (XLA off/on) for the same shape."""
    for row in rows:
        ref = [r for r in rows if r["layer"] == "keras.LSTM" and r["T"] == row["T"]]
        for metric in METRICS:
            for kind in ("ms", "cpu_ms"):
                best = min(r[f"{metric}_{kind}"] for r in ref)
                suffix = "ratio" if kind == "ms" else "cpu_ratio"
                row[f"{metric}_{suffix}"] = row[f"{metric}_{kind}"] / best


def format_table(rows: list[dict]) -> str:
    header = (
        f"{'layer':<14} {'T':>5} {'xla':>5} | {'train ms':>9} {'ratio':>6} {'cpu ms':>8} "
        f"{'ratio':>6} | {'infer ms':>9} {'ratio':>6} {'cpu ms':>8} {'ratio':>6}"
    )
    lines = [header, "-" * len(header)]
    for r in rows:
        cells = [f"{r['layer']:<14} {r['T']:>5} {str(r['xla']):>5}"]
        for metric in METRICS:
            cells.append(
                f"{r[f'{metric}_ms']:>9.2f} {r[f'{metric}_ratio']:>6.2f} "
                f"{r[f'{metric}_cpu_ms']:>8.2f} {r[f'{metric}_cpu_ratio']:>6.2f}"
            )
        lines.append(" | ".join(cells))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes for a smoke run")
    parser.add_argument("--output", default="benchmarks/results/recurrent.json")
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--layers", nargs="+", default=list(LAYERS), choices=list(LAYERS))
    args = parser.parse_args(argv)

    shapes = QUICK_SHAPES if args.quick else FULL_SHAPES
    repeats = args.repeats or (3 if args.quick else 9)
    warmup = 1 if args.quick else 2
    names = ["keras.LSTM", *[n for n in args.layers if n != "keras.LSTM"]]
    rows = [row for shape in shapes for row in bench_shape(names, shape, warmup, repeats)]
    add_ratios(rows)
    print(format_table(rows))
    print(f"batch {shapes[0][0]}, features {shapes[0][2]}, units {shapes[0][3]}")

    output = Path(args.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    meta = {
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
        "load_average": os.getloadavg(),
        "quick": args.quick,
        "repeats": repeats,
        "warmup": warmup,
        "timing": "interleaved repeats; median wall and process-CPU ms per call",
    }
    output.write_text(json.dumps({"meta": meta, "rows": rows}, indent=2))
    print(f"wrote {output}", file=sys.stderr)


if __name__ == "__main__":
    main()
