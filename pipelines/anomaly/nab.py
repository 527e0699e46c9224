"""The Numenta Anomaly Benchmark's windowed score, per file and over a corpus.

Follows NAB's scorer (Lavin & Ahmad 2015; ``nab/sweeper.py``, ``nab/runner.py``,
``config/profiles.json``) for detections that are already decided (alarms), i.e. one threshold:

* The first ``min(floor(0.15 n), 0.15 * 5000)`` rows of a file are probationary: alarms there are
  ignored, and a window whose rows all lie there is not scored.
* In a window of ``w`` rows whose right edge is row ``r``, an alarm at row ``i`` earns
  ``A_TP * S(-(r - i + 1) / w) / S(-1)``, with the scaled sigmoid ``S(x) = 2 / (1 + e^{5x}) - 1``
  (``-1`` for ``x >= 3``): the window's left edge earns ``A_TP``, its right edge about 0. Only
  the best (first) alarm of a window counts; a window with none costs ``-A_FN``.
* An alarm outside every window costs ``A_FP * S((i - r_prev) / (w_prev - 1))`` relative to the
  closest window before it (``-A_FP`` before any window): alarms just after a window cost little,
  those a few window-widths later the full ``A_FP``.
* The corpus score sums the raw scores of every file and normalises the total as
  ``100 * (raw - null) / (perfect - null)``, where the null detector never alarms and the perfect
  one alarms on every window row (so on each window's first scored row): 0 is no better than
  silence, 100 is perfect, and false alarms can push it below 0.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from os import PathLike

import numpy as np
import pandas as pd

Window = tuple[int, int]

# config/profiles.json (tnWeight is unused by the scorer).
PROFILES: dict[str, dict[str, float]] = {
    "standard": {"tp": 1.0, "fp": 0.11, "fn": 1.0},
    "reward_low_FP_rate": {"tp": 1.0, "fp": 0.22, "fn": 1.0},
    "reward_low_FN_rate": {"tp": 1.0, "fp": 0.11, "fn": 2.0},
}
PROBATION_PERCENT = 0.15


def probation_length(n: int, percent: float = PROBATION_PERCENT) -> int:
    """Rows of NAB's probationary period: ``min(floor(p * n), p * 5000)``, rounded up to a row
    count (NAB compares ``row >= length`` with the possibly fractional cap)."""
    return math.ceil(min(math.floor(percent * n), percent * 5000))


def scaled_sigmoid(position: np.ndarray | float) -> np.ndarray:
    """NAB's ``scaledSigmoid``: ``2 / (1 + exp(5 x)) - 1``, and ``-1`` from ``x = 3`` on."""
    x = np.asarray(position, dtype=float)
    with np.errstate(over="ignore"):
        return np.where(x >= 3.0, -1.0, 2.0 / (1.0 + np.exp(5.0 * x)) - 1.0)


@dataclass
class FileScore:
    """One file's raw score per profile and what it is made of."""

    raw: dict[str, float]
    null: dict[str, float]
    perfect: dict[str, float]
    windows: int  # scored windows
    detected: int  # scored windows with an alarm inside
    false_alarms: int  # scored alarms outside every window
    alarms: int  # scored alarms
    delays: list[int] = field(default_factory=list)  # rows from window start to first alarm

    def normalised(self, profile: str = "standard") -> float:
        return normalise(self.raw[profile], self.null[profile], self.perfect[profile])


def normalise(raw: float, null: float, perfect: float) -> float:
    """``100 (raw - null) / (perfect - null)``; NaN when there is nothing to find."""
    return 100.0 * (raw - null) / (perfect - null) if perfect != null else float("nan")


def _raw_score(alarms: np.ndarray, spans: list[Window], scored: np.ndarray, weights: dict) -> tuple:
    max_tp = float(scaled_sigmoid(-1.0))
    raw, found, counted, delays = 0.0, 0, 0, []
    inside = np.zeros(alarms.size, dtype=bool)
    for start, end in spans:
        inside[start : end + 1] = True
        if not scored[end]:
            continue
        counted += 1
        hits = np.flatnonzero(alarms[start : end + 1] & scored[start : end + 1])
        if hits.size == 0:
            raw -= weights["fn"]
            continue
        first = start + int(hits[0])
        found += 1
        delays.append(first - start)
        raw += (
            weights["tp"] * float(scaled_sigmoid(-(end - first + 1) / (end - start + 1))) / max_tp
        )
    false = np.flatnonzero(alarms & scored & ~inside)
    if false.size:
        ends = np.array([e for _, e in spans], dtype=int)
        widths = np.array([e - s + 1 for s, e in spans], dtype=float)
        prev = np.searchsorted(ends, false, side="left") - 1
        position = np.full(false.size, 3.0)
        has = prev >= 0
        # NAB divides by (width - 1); a one-row window would divide by zero there.
        position[has] = (false[has] - ends[prev[has]]) / np.maximum(widths[prev[has]] - 1, 1.0)
        raw += weights["fp"] * float(scaled_sigmoid(position).sum())
    return raw, counted, found, int(false.size), delays


def score_file(
    alarms: Sequence[int] | np.ndarray,
    windows: Sequence[Window],
    probation_percent: float = PROBATION_PERCENT,
) -> FileScore:
    """Score one file's alarms (0/1 per row) against its windows (inclusive row ranges)."""
    flags = np.asarray(alarms).astype(bool)
    n = flags.size
    spans = _checked(windows, n)
    scored = np.arange(n) >= probation_length(n, probation_percent)
    perfect_flags = np.zeros(n, dtype=bool)
    for start, end in spans:
        perfect_flags[start : end + 1] = True
    raw, null, perfect = {}, {}, {}
    for name, weights in PROFILES.items():
        raw[name], counted, found, false, delays = _raw_score(flags, spans, scored, weights)
        null[name] = -weights["fn"] * counted
        perfect[name] = _raw_score(perfect_flags, spans, scored, weights)[0]
    return FileScore(raw, null, perfect, counted, found, false, int((flags & scored).sum()), delays)


def _checked(windows: Sequence[Window], n: int) -> list[Window]:
    spans = sorted((int(s), int(e)) for s, e in windows)
    for i, (start, end) in enumerate(spans):
        if not 0 <= start <= end < n:
            raise ValueError(f"window {(start, end)} must satisfy 0 <= start <= end < {n}")
        if i and start <= spans[i - 1][1]:
            raise ValueError(f"windows overlap at row {start}")
    return spans


def corpus_scores(files: dict[str, FileScore]) -> dict[str, float]:
    """The corpus score of each profile (raw totals normalised once, as NAB does), event
    precision and recall, false alarms and the mean time to detect (rows from window start)."""
    out: dict[str, float] = {}
    for name in PROFILES:
        out[f"nab_{name}"] = normalise(
            sum(f.raw[name] for f in files.values()),
            sum(f.null[name] for f in files.values()),
            sum(f.perfect[name] for f in files.values()),
        )
    windows = sum(f.windows for f in files.values())
    found = sum(f.detected for f in files.values())
    alarms = sum(f.alarms for f in files.values())
    false = sum(f.false_alarms for f in files.values())
    delays = [d for f in files.values() for d in f.delays]
    out["event_recall"] = found / windows if windows else float("nan")
    out["event_precision"] = (alarms - false) / alarms if alarms else float("nan")
    out["false_alarms"] = float(false)
    out["mean_time_to_detect"] = float(np.mean(delays)) if delays else float("nan")
    return out


# ---- NAB label files ------------------------------------------------------------------------


def read_windows(
    path: str | PathLike[str], data_key: str
) -> list[tuple[pd.Timestamp, pd.Timestamp]]:
    """Anomaly windows of one data file from NAB's ``labels/combined_windows.json``.

    The JSON maps relative data paths (``"realKnownCause/nyc_taxi.csv"``) to lists of
    ``[start, end]`` timestamp strings. ``data_key`` may be a basename or a relative path; it
    matches the key equal to it or ending with ``"/" + data_key``.
    """
    combined = read_label_file(path)
    key = match_key(combined, data_key, str(path))
    return [(pd.Timestamp(start), pd.Timestamp(end)) for start, end in combined[key]]


def read_label_file(path: str | PathLike[str]) -> dict[str, list]:
    """The whole labels JSON, checked to be a mapping of file to ``[start, end]`` pairs."""
    with open(path, encoding="utf-8") as fh:
        combined = json.load(fh)
    if not isinstance(combined, dict) or not all(
        isinstance(v, list) and all(isinstance(w, list) and len(w) == 2 for w in v)
        for v in combined.values()
    ):
        raise ValueError(
            f"{path} must map each data file to a list of [start, end] windows, as NAB's "
            "combined_windows.json does"
        )
    return combined


def match_key(combined: dict, data_key: str, where: str) -> str:
    """The key naming ``data_key``: the longest key the data path ends with (a corpus folder
    laid out as NAB's ``data/<category>/<file>.csv``), else the one key ending with its name."""
    path = "/" + str(data_key).replace("\\", "/").strip("/")
    by_path = [key for key in combined if path.endswith("/" + key.replace("\\", "/").strip("/"))]
    if by_path:
        return max(by_path, key=len)
    wanted = path.rsplit("/", 1)[-1]
    matches = [
        key
        for key in combined
        if (norm := key.replace("\\", "/")) == wanted or norm.endswith("/" + wanted)
    ]
    if not matches:
        raise ValueError(f"no NAB label entry for data file {data_key!r} in {where}")
    if len(matches) > 1:
        raise ValueError(f"data file {data_key!r} is ambiguous in {where}: {sorted(matches)}")
    return matches[0]


def window_rows(
    timestamps: Sequence | np.ndarray | pd.Index, windows: Sequence[tuple]
) -> list[Window]:
    """Inclusive row ranges covered by timestamp windows; windows covering no row are skipped."""
    stamps = pd.DatetimeIndex(pd.to_datetime(timestamps))
    if not stamps.is_monotonic_increasing:
        raise ValueError("timestamps must be sorted in increasing order")
    out: list[Window] = []
    for first, last in sorted((pd.Timestamp(a), pd.Timestamp(b)) for a, b in windows):
        if first > last:
            raise ValueError(f"NAB window start {first} is after its end {last}")
        start = int(stamps.searchsorted(first, side="left"))
        end = int(stamps.searchsorted(last, side="right")) - 1
        if start > end:
            continue
        if out and start <= out[-1][1]:
            raise ValueError(f"NAB windows overlap at {first}")
        out.append((start, end))
    return out
