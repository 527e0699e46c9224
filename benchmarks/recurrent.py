"""Benchmarks the fused LSTM layers against `keras.layers.LSTM` and `torch.nn.LSTM`.

Every Keras layer is timed the same way: a compiled `keras.Model` (layer + Dense head)
driven by `train_on_batch` (forward + backward + Adam, one compiled train step) and
`predict_on_batch`, with XLA off and on. `keras.layers.RNN(PeepholeLSTMCell)` and
`keras.layers.RNN(LayerNormLSTMCell)` are what a user who writes (or ports from TensorFlow
Addons) a peephole or layer-norm cell gets: the cell stepped by Keras' generic loop.
`torch.nn.LSTM` (same head, Adam, eager; its fused LSTM kernel) is timed when torch is
installed (`pip install torch`, an optional extra; if importing it next to TensorFlow
crashes in `triton`, `pip uninstall triton`: CPU runs do not use it). It runs in a child
process that times each call it is asked for, interleaved with the Keras calls: timed
inside this process, beside TensorFlow's thread pools, it took 1.3-2.0x its own time here.

The machine may be shared, so wall-clock times are inflated and noisy: all models of a
shape are built and warmed up first, then timed interleaved (one call of each per repeat)
so load swings hit them alike, and the process CPU time of each call is recorded beside
its wall time. Median and minimum wall and median CPU times are reported, with ratios
against the best of keras.layers.LSTM's XLA-off/XLA-on times measured in the same run; the
summary takes each layer's best of XLA off/on by its fastest repeat (see `summary`). On a
GPU the same table runs there (keras' and our `LSTM` on cuDNN with XLA off; peephole and
layer norm compile their loop with XLA) and torch runs on CUDA.

    python benchmarks/recurrent.py [--quick] [--output benchmarks/results/recurrent.json]
"""

from __future__ import annotations

import argparse
import functools
import importlib.util
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from models.recurrent import (  # noqa: E402
    LSTM,
    LayerNormLSTM,
    LayerNormLSTMCell,
    PeepholeLSTM,
    PeepholeLSTMCell,
)

REFERENCE = "keras.LSTM"
LAYERS: dict[str, Callable[[int], keras.layers.Layer]] = {
    REFERENCE: keras.layers.LSTM,
    "LSTM": LSTM,
    "PeepholeLSTM": PeepholeLSTM,
    "LayerNormLSTM": LayerNormLSTM,
    "RNN(PeepholeLSTMCell)": lambda units: keras.layers.RNN(PeepholeLSTMCell(units)),
    "RNN(LayerNormLSTMCell)": lambda units: keras.layers.RNN(LayerNormLSTMCell(units)),
}
TORCH = "torch.nn.LSTM"
# Layers also compared with another of ours: the targets for peephole and layer norm are
# relative to our LSTM, a hand-built RNN(cell) is compared with the fused layer it replaces.
COMPARED_WITH = {
    "PeepholeLSTM": "LSTM",
    "LayerNormLSTM": "LSTM",
    "RNN(PeepholeLSTMCell)": "PeepholeLSTM",
    "RNN(LayerNormLSTMCell)": "LayerNormLSTM",
}
FULL_SHAPES = [(64, 100, 32, 128), (64, 1000, 32, 128)]  # (B, T, D, H)
QUICK_SHAPES = [(8, 10, 4, 8), (8, 30, 4, 8)]
METRICS = ("train", "infer")


def device_name() -> str:
    """ "GPU: <name>" when TensorFlow sees a GPU, else "CPU: <model name>"."""
    gpus = tf.config.list_physical_devices("GPU")
    if gpus:
        details = tf.config.experimental.get_device_details(gpus[0])
        return f"GPU: {details.get('device_name', gpus[0].name)}"
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"CPU: {model} ({os.cpu_count()} cores)"


def _timed(fn: Callable[[], object]) -> tuple[float, float]:
    """(wall, CPU) seconds of one call; CPU time counts every thread of this process."""
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - wall, time.process_time() - cpu


def _keras_calls(name: str, shape: tuple, xla: bool, x: np.ndarray, y: np.ndarray) -> dict:
    batch, steps, features, units = shape
    keras.utils.set_random_seed(0)
    inputs = keras.Input((steps, features), batch_size=batch)
    model = keras.Model(inputs, keras.layers.Dense(1)(LAYERS[name](units)(inputs)))
    model.compile(optimizer="adam", loss="mse", jit_compile=xla)
    return {
        "train": lambda: model.train_on_batch(x, y),
        "infer": lambda: model.predict_on_batch(x),
    }


def _torch_calls(torch: object, shape: tuple, x: np.ndarray, y: np.ndarray) -> dict:
    """`torch.nn.LSTM` + Linear head with Adam; `.item()`/`.cpu()` wait for the result."""
    _, _, features, units = shape
    device = "cuda" if torch.cuda.is_available() else "cpu"
    torch.manual_seed(0)
    lstm = torch.nn.LSTM(features, units, batch_first=True).to(device)
    head = torch.nn.Linear(units, 1).to(device)
    optimizer = torch.optim.Adam([*lstm.parameters(), *head.parameters()])
    x_t, y_t = torch.from_numpy(x).to(device), torch.from_numpy(y).to(device)

    def train() -> float:
        optimizer.zero_grad()
        loss = torch.nn.functional.mse_loss(head(lstm(x_t)[0][:, -1]), y_t)
        loss.backward()
        optimizer.step()
        return loss.item()

    def infer() -> object:
        with torch.inference_mode():
            return head(lstm(x_t)[0][:, -1]).cpu()

    return {"train": train, "infer": infer}


def _samples_to_row(name: str, xla: bool | None, shape: tuple, times: dict) -> dict:
    batch, steps, features, units = shape
    row = {"layer": name, "B": batch, "T": steps, "D": features, "H": units, "xla": xla}
    for metric in METRICS:
        samples = times[metric]
        row[f"{metric}_ms"] = 1e3 * statistics.median(s[0] for s in samples)
        row[f"{metric}_min_ms"] = 1e3 * min(s[0] for s in samples)
        row[f"{metric}_cpu_ms"] = 1e3 * statistics.median(s[1] for s in samples)
    return row


def _inputs(shape: tuple) -> tuple[np.ndarray, np.ndarray]:
    batch, steps, features, _ = shape
    rng = np.random.default_rng(0)
    x = rng.normal(size=(batch, steps, features)).astype("float32")
    return x, rng.normal(size=(batch, 1)).astype("float32")


def serve_torch(shape: tuple, warmup: int) -> None:
    """Child process: builds and warms up `torch.nn.LSTM`, says "ready <version> <threads>",
    then times one call per metric name read from stdin and answers "wall cpu" (seconds)."""
    import torch

    calls = _torch_calls(torch, shape, *_inputs(shape))
    for fn in calls.values():
        for _ in range(warmup):
            fn()
    print("ready", torch.__version__, torch.get_num_threads(), flush=True)
    for line in sys.stdin:
        print(*_timed(calls[line.strip()]), flush=True)


class TorchProcess:
    """`torch.nn.LSTM` in a child process, timed call by call so that it interleaves with
    the Keras models like any other row."""

    def __init__(self, shape: tuple, warmup: int) -> None:
        command = [sys.executable, __file__, "--torch-worker", json.dumps([shape, warmup])]
        self.process = subprocess.Popen(
            command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        ready, self.version, threads = self.process.stdout.readline().split()
        assert ready == "ready"
        self.threads = int(threads)

    def timed(self, metric: str) -> tuple[float, float]:
        self.process.stdin.write(metric + "\n")
        self.process.stdin.flush()
        wall, cpu = self.process.stdout.readline().split()
        return float(wall), float(cpu)

    def close(self) -> None:
        self.process.stdin.close()
        self.process.wait()


def bench_shape(
    names: list[str], shape: tuple, warmup: int, repeats: int, torch: bool = False
) -> list[dict]:
    """Times every (layer, XLA) model of one shape, interleaved; one row each, in ms
    (`torch.nn.LSTM`'s with its version and thread count)."""
    x, y = _inputs(shape)
    calls = {(name, xla): _keras_calls(name, shape, xla, x, y) for name in names for xla in (0, 1)}
    for key, fns in calls.items():
        for fn in fns.values():
            for _ in range(warmup):
                fn()
        print(f"warmed up {key[0]} T={shape[1]} xla={key[1]}", file=sys.stderr, flush=True)
    timers = {
        key: {metric: functools.partial(_timed, fn) for metric, fn in fns.items()}
        for key, fns in calls.items()
    }
    child = TorchProcess(shape, warmup) if torch else None
    if child:
        timers[TORCH, None] = {m: functools.partial(child.timed, m) for m in METRICS}
    times = {key: {metric: [] for metric in METRICS} for key in timers}
    for _ in range(repeats):
        for metric in METRICS:
            for key, fns in timers.items():
                times[key][metric].append(fns[metric]())
    rows = [
        _samples_to_row(name, None if xla is None else bool(xla), shape, times[name, xla])
        for name, xla in timers
    ]
    if child:
        child.close()
        rows[-1] |= {"torch": child.version, "torch_threads": child.threads}
    return rows


def _best(rows: list[dict], layer: str, steps: int, key: str) -> float | None:
    values = [r[key] for r in rows if r["layer"] == layer and r["T"] == steps]
    return min(values) if values else None


def add_ratios(rows: list[dict]) -> None:
    """Wall (median, min) and CPU ratios against keras.LSTM's best (XLA off/on), same shape."""
    for row in rows:
        for metric in METRICS:
            for kind, suffix in (("ms", "ratio"), ("min_ms", "min_ratio"), ("cpu_ms", "cpu_ratio")):
                best = _best(rows, REFERENCE, row["T"], f"{metric}_{kind}")
                row[f"{metric}_{suffix}"] = row[f"{metric}_{kind}"] / best


def summary(rows: list[dict], statistic: str = "min_ms") -> list[dict]:
    """Each layer's best of XLA off/on per metric: wall ms, ratio to keras and to the layer
    of ours it is compared with (`COMPARED_WITH`).

    `statistic` "min_ms" (default) takes each model's fastest repeat, as `timeit` does: on
    a shared machine it is the call least disturbed by other load; "ms" takes the median.
    """
    out = []
    for steps in sorted({r["T"] for r in rows}):
        for layer in dict.fromkeys(r["layer"] for r in rows):
            entry = {"layer": layer, "T": steps, "statistic": statistic}
            for metric in METRICS:
                key = f"{metric}_{statistic}"
                ms = _best(rows, layer, steps, key)
                entry[f"{metric}_ms"] = ms
                entry[f"{metric}_vs_keras"] = ms / _best(rows, REFERENCE, steps, key)
                cpu = f"{metric}_cpu_ms"
                entry[f"{metric}_cpu_vs_keras"] = _best(rows, layer, steps, cpu) / _best(
                    rows, REFERENCE, steps, cpu
                )
                base = _best(rows, COMPARED_WITH.get(layer, ""), steps, key)
                if base:
                    entry["compared_with"] = COMPARED_WITH[layer]
                    entry[f"{metric}_vs_base"] = ms / base
            out.append(entry)
    return out


def format_table(rows: list[dict]) -> str:
    columns = " ".join(f"{c:>8}" for c in ("median", "ratio", "min", "ratio", "cpu", "ratio"))
    header = f"{'layer (ms)':<23} {'T':>5} {'xla':>5} | train {columns} | infer {columns}"
    lines = [header, "-" * len(header)]
    for r in rows:
        cells = [f"{r['layer']:<23} {r['T']:>5} {str(r['xla']):>5}"]
        for metric in METRICS:
            values = (
                r[f"{metric}_{key}"]
                for key in ("ms", "ratio", "min_ms", "min_ratio", "cpu_ms", "cpu_ratio")
            )
            cells.append(" " * 5 + " ".join(f"{v:>8.2f}" for v in values))
        lines.append(" | ".join(cells))
    return "\n".join(lines)


def format_summary(entries: list[dict]) -> str:
    """Markdown table of the best-of-XLA ratios (what docs/layers.md quotes)."""
    lines = [
        "| layer | T | train ms | vs keras (CPU) | infer ms | vs keras (CPU) | train, infer vs |",
        "|---|---|---|---|---|---|---|",
    ]
    for e in entries:
        relative = ""
        if "compared_with" in e:
            relative = (
                f"{e['train_vs_base']:.2f}, {e['infer_vs_base']:.2f} vs `{e['compared_with']}`"
            )
        lines.append(
            f"| `{e['layer']}` | {e['T']} | {e['train_ms']:.1f} | {e['train_vs_keras']:.2f} "
            f"({e['train_cpu_vs_keras']:.2f}) | {e['infer_ms']:.1f} | {e['infer_vs_keras']:.2f} "
            f"({e['infer_cpu_vs_keras']:.2f}) | {relative} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes for a smoke run")
    parser.add_argument("--output", default="benchmarks/results/recurrent.json")
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--layers", nargs="+", default=list(LAYERS), choices=list(LAYERS))
    parser.add_argument("--no-torch", action="store_true", help="skip torch.nn.LSTM")
    parser.add_argument("--torch-worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.torch_worker:
        serve_torch(*json.loads(args.torch_worker))
        return

    shapes = QUICK_SHAPES if args.quick else FULL_SHAPES
    repeats = args.repeats or (3 if args.quick else 9)
    warmup = 1 if args.quick else 2
    names = [REFERENCE, *[n for n in args.layers if n != REFERENCE]]
    # torch is only imported by its child process: beside TensorFlow it runs slower.
    torch = not args.no_torch and importlib.util.find_spec("torch") is not None
    load_before = os.getloadavg()
    rows = [row for shape in shapes for row in bench_shape(names, shape, warmup, repeats, torch)]
    add_ratios(rows)
    best = summary(rows)
    device = device_name()
    print(format_table(rows))
    print()
    print(format_summary(best))
    batch, _, features, units = shapes[0]
    print(f"{device}; B={batch}, D={features}, H={units}; load average {load_before}")

    output = Path(args.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    torch_rows = [r for r in rows if r["layer"] == TORCH]
    meta = {
        "device": device,
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "torch": torch_rows[0]["torch"] if torch_rows else None,
        "torch_threads": torch_rows[0]["torch_threads"] if torch_rows else None,
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
        "load_average_before": load_before,
        "load_average_after": os.getloadavg(),
        "quick": args.quick,
        "repeats": repeats,
        "warmup": warmup,
        "timing": "interleaved repeats (torch timed in its own process); median wall and "
        "process-CPU ms per call",
    }
    output.write_text(json.dumps({"meta": meta, "rows": rows, "best": best}, indent=2))
    print(f"wrote {output}", file=sys.stderr)


if __name__ == "__main__":
    main()
