"""Wall time of the online anomaly protocol on a long series, and of the default command.

Runs, each in a fresh process as a user would: ``python -m pipelines.anomaly`` on the
22,695-row file of the synthetic NAB-like corpus (the length of NAB's longest files; online
protocol, default settings) and the default command (mitdb). Prints a table and writes JSON.

    python benchmarks/anomaly_online.py [--output FILE.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from pipelines.datasets.timeseries_builders import nab_like_corpus

ROOT = Path(__file__).resolve().parents[1]


def timed(args: list[str], workdir: Path) -> float:
    """Wall seconds of ``python -m pipelines.anomaly ARGS`` (checked to succeed)."""
    started = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "pipelines.anomaly", *args,
         "--tracking-uri", f"sqlite:///{workdir / 'mlflow.db'}"],
        check=True, cwd=workdir, capture_output=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )  # fmt: skip
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", default=str(ROOT / "benchmarks/results/anomaly_online.json"))
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        longest = max(nab_like_corpus(seed=0), key=lambda item: len(item.frame))
        longest.frame.to_csv(workdir / "long.csv", index=False)
        points = len(longest.frame)
        rows.append(
            (f"online, {points}-row series", points, timed(["--data", "long.csv"], workdir))
        )
        rows.append(("default command (mitdb)", 7500, timed([], workdir)))
    print(f"{'run':<28} {'points':>7} {'wall s':>8} {'points/s':>9}")
    for name, points, seconds in rows:
        print(f"{name:<28} {points:>7} {seconds:>8.1f} {points / seconds:>9.0f}")
    result = {
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "rows": [{"run": n, "points": p, "wall_seconds": s} for n, p, s in rows],
    }
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
