"""Points per second of the streaming anomaly detector.

Compares, in one run on the same model: the TFLite-compiled step used by
``StreamingDetector``, the same step as a plain ``tf.function`` call per point (the obvious
implementation), and whole-series batch scoring (not streaming; the upper bound).
Prints a table and writes JSON.

    python benchmarks/streaming.py [--points 5000] [--output benchmarks/results/streaming.json]
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np

import pipelines  # noqa: F401  (quiet TensorFlow start-up)
from models.architectures import next_step_predictor
from pipelines.anomaly.scoring import score_series
from pipelines.anomaly.streaming import StreamingDetector, StreamingStep


def points_per_second(update, values: np.ndarray, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        for value in values:
            update(value)
        best = min(best, time.perf_counter() - started)
    return len(values) / best


def tf_function_stepper(module: StreamingStep):
    carry = {
        "prediction": np.zeros((1, module.n_features), np.float32),
        "score": np.float32(0),
        "state": np.zeros((1, sum(module.state_sizes)), np.float32),
    }

    def update(value):
        out = module.step(
            np.reshape(value, (1, -1)).astype(np.float32),
            carry["prediction"],
            carry["score"],
            np.float32(0),
            carry["state"],
        )
        carry.update(prediction=out["prediction"], score=out["score"], state=out["state"])
        return float(out["score"])

    return update


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=5000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--output", default="benchmarks/results/streaming.json")
    args = parser.parse_args()
    values = np.sin(np.arange(args.points) / 10.0)[:, None].astype(np.float32)
    rows = []
    for cell, units, layers in [("lstm", 64, 1), ("lstm", 128, 2), ("gru", 64, 1)]:
        model = next_step_predictor(
            1, np.zeros(1), np.ones(1), cell=cell, units=units, layers=layers
        )
        detector = StreamingDetector(model, threshold=1.0, smoothing=32)
        tflite = points_per_second(detector.update, values, args.repeats)
        tf_step = points_per_second(
            tf_function_stepper(StreamingStep(model, 1.0, 32)),
            values[: max(500, args.points // 10)],
            args.repeats,
        )
        started = time.perf_counter()
        score_series(model, values, "forecaster", 128, 32)
        batch = args.points / (time.perf_counter() - started)
        rows.append(
            {
                "cell": cell,
                "units": units,
                "layers": layers,
                "tflite_points_per_s": tflite,
                "tf_function_points_per_s": tf_step,
                "speedup_vs_tf_function": tflite / tf_step,
                "batch_points_per_s": batch,
            }
        )
    print(
        f"{'model':<16}{'streaming (TFLite)':>20}{'tf.function/point':>20}{'ratio':>8}"
        f"{'batch (not streaming)':>24}"
    )
    for r in rows:
        name = f"{r['cell']} {r['layers']}x{r['units']}"
        print(
            f"{name:<16}{r['tflite_points_per_s']:>18,.0f}/s{r['tf_function_points_per_s']:>18,.0f}/s"
            f"{r['speedup_vs_tf_function']:>7.1f}x{r['batch_points_per_s']:>22,.0f}/s"
        )
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(
        json.dumps({"points": args.points, "machine": platform.platform(), "rows": rows}, indent=2)
        + "\n"
    )


if __name__ == "__main__":
    main()
