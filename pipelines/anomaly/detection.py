"""Turn per-time-step anomaly scores into detections and evaluate them.

Pure NumPy / pandas / scikit-learn (no TensorFlow), so the same code serves offline
evaluation and streaming detectors. Conventions used throughout:

* a *score* is a 1-D array of finite floats (e.g. smoothed prediction errors);
* a point is *flagged* when ``score > threshold`` (strict);
* a *window* is an inclusive ``(start, end)`` index pair into the score array.

References
----------
* Hundman et al., "Detecting Spacecraft Anomalies Using LSTMs and Nonparametric Dynamic
  Thresholding", KDD 2018 (arXiv:1802.04431); reference code ``khundman/telemanom``,
  ``telemanom/errors.py``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import average_precision_score, roc_auc_score

Window = tuple[int, int]

THRESHOLD_METHODS = ("ndt", "quantile", "max-train")

# telemanom ``find_epsilon`` guardrails: a candidate threshold is only accepted if it yields
# at most this many anomalous sequences and flags less than this fraction of the points.
_NDT_MAX_SEQUENCES = 5
_NDT_MAX_FLAGGED_FRACTION = 0.5


# ----------------------------------------------------------------------------- validation


def _as_scores(scores: Sequence[float] | np.ndarray, name: str = "scores") -> np.ndarray:
    arr = np.asarray(scores, dtype=float)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {arr.shape}")
    if arr.size and not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} must be finite (no NaN/inf)")
    return arr


def _as_nonempty_scores(scores: Sequence[float] | np.ndarray, name: str) -> np.ndarray:
    arr = _as_scores(scores, name)
    if arr.size == 0:
        raise ValueError(f"{name} must not be empty")
    return arr


def _as_binary(values: Sequence[int] | np.ndarray, name: str) -> np.ndarray:
    arr = np.asarray(values)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {arr.shape}")
    if arr.size and not np.isin(arr, (0, 1)).all():
        raise ValueError(f"{name} must contain only 0/1 or booleans")
    return arr.astype(bool)


def _check_windows(windows: Sequence[Window], n: int) -> list[Window]:
    out = []
    for w in windows:
        if len(w) != 2:
            raise ValueError(f"window {w!r} must be a (start, end) pair")
        start, end = int(w[0]), int(w[1])
        if not 0 <= start <= end < n:
            raise ValueError(f"window {w!r} must satisfy 0 <= start <= end < {n}")
        out.append((start, end))
    return out


# ------------------------------------------------------------------------------ smoothing


def _ewma_alpha(span: float) -> float:
    if not span >= 1:
        raise ValueError(f"span must be >= 1, got {span}")
    return 2.0 / (span + 1.0)


class EWMA:
    """Causal exponentially weighted moving average, one point at a time.

    Uses pandas' ``adjust=False`` recursion so each output depends only on the past:
    ``s_0 = x_0``, ``s_t = a * x_t + (1 - a) * s_{t-1}`` with ``a = 2 / (span + 1)``.
    (telemanom's ``get_errors`` uses pandas' default ``adjust=True``, which differs only
    in the first few ``span`` steps but is not a one-step recursion.) ``update`` returns
    exactly the values of :func:`ewma`, so a streaming detector matches batch evaluation.
    """

    def __init__(self, span: float) -> None:
        self.alpha = _ewma_alpha(span)
        self.value: float | None = None

    def update(self, x: float) -> float:
        """Feed one observation and return the smoothed value."""
        x = float(x)
        if not math.isfinite(x):
            raise ValueError(f"EWMA input must be finite, got {x}")
        if self.value is None:
            self.value = x
        else:
            self.value = self.alpha * x + (1.0 - self.alpha) * self.value
        return self.value


def ewma(errors: Sequence[float] | np.ndarray, span: float) -> np.ndarray:
    """Smooth errors with an EWMA (telemanom smooths residuals this way, Hundman et al. 2018).

    Smoothing makes sustained error increases stand out over isolated noisy spikes.
    Semantics are those of :class:`EWMA` (pandas ``ewm(span, adjust=False).mean()``).
    """
    arr = _as_scores(errors, "errors")
    smoother = EWMA(span)
    return np.array([smoother.update(x) for x in arr], dtype=float)


# ----------------------------------------------------------------------------- thresholds


def _runs(mask: np.ndarray) -> list[Window]:
    """Inclusive (start, end) pairs of the contiguous True runs of a boolean mask."""
    padded = np.concatenate(([False], mask, [False])).astype(np.int8)
    edges = np.flatnonzero(np.diff(padded))
    return [(int(s), int(e) - 1) for s, e in zip(edges[::2], edges[1::2])]


def ndt_threshold(
    scores: Sequence[float] | np.ndarray,
    z_range: tuple[float, float] = (2.0, 10.0),
    z_step: float = 0.5,
    error_buffer: int = 0,
) -> float:
    """Nonparametric dynamic threshold ``eps = mu + z * sigma`` (Hundman et al. 2018).

    Fit on label-free reference scores. For each ``z`` in ``[z_min, z_max]`` (step
    ``z_step``) it scores

        (dmu / mu + dsigma / sigma) / (|e_a| + |E_seq| ** 2)

    where ``dmu`` / ``dsigma`` are the drops in mean / std when the points above ``eps``
    are removed, ``e_a`` are the points above ``eps`` widened by ``error_buffer``
    neighbours on each side, and ``E_seq`` the contiguous runs of ``e_a``; the argmax wins
    (ties go to the larger ``z``). As in telemanom's ``find_epsilon`` the buffer only widens
    ``e_a``/``E_seq`` (the mean/std drops use the points above ``eps``), and candidates
    giving more than 5 sequences or flagging half the points or more are rejected.

    Degenerate cases: if no candidate is accepted (nothing lies above any ``eps``, or all
    are rejected) the most conservative ``mu + z_max * sigma`` is returned, telemanom's
    default; if ``sigma == 0`` (constant reference) ``mu`` is returned, so any score above
    the constant reference level is flagged. A zero mean makes ``dmu / mu`` undefined;
    that term is then taken as 0.
    """
    arr = _as_nonempty_scores(scores, "scores")
    z_min, z_max = float(z_range[0]), float(z_range[1])
    if not 0 <= z_min <= z_max:
        raise ValueError(f"z_range must satisfy 0 <= z_min <= z_max, got {z_range}")
    if not z_step > 0:
        raise ValueError(f"z_step must be > 0, got {z_step}")
    if error_buffer < 0:
        raise ValueError(f"error_buffer must be >= 0, got {error_buffer}")

    mu, sigma = float(arr.mean()), float(arr.std())
    if sigma == 0.0:
        return mu
    n = arr.size
    best_z, best_score = z_max, -np.inf
    for z in np.arange(z_min, z_max + z_step / 2, z_step):
        eps = mu + z * sigma
        above = arr > eps
        if not above.any():
            continue
        widened = np.zeros(n, dtype=bool)
        for start, end in _runs(above):
            widened[max(start - error_buffer, 0) : min(end + error_buffer, n - 1) + 1] = True
        n_anom, n_seq = int(widened.sum()), len(_runs(widened))
        if n_seq > _NDT_MAX_SEQUENCES or n_anom >= _NDT_MAX_FLAGGED_FRACTION * n:
            continue
        kept = arr[~above]
        mean_drop = (mu - kept.mean()) / mu if mu != 0 else 0.0
        std_drop = (sigma - kept.std()) / sigma
        score = (mean_drop + std_drop) / (n_anom + n_seq**2)
        if score >= best_score:
            best_z, best_score = float(z), score
    return mu + best_z * sigma


def quantile_threshold(scores: Sequence[float] | np.ndarray, q: float = 0.999) -> float:
    """``q``-quantile of reference scores: flags roughly a ``1 - q`` fraction of normal data."""
    arr = _as_nonempty_scores(scores, "scores")
    if not 0.0 <= q <= 1.0:
        raise ValueError(f"q must be in [0, 1], got {q}")
    return float(np.quantile(arr, q))


def max_threshold(scores: Sequence[float] | np.ndarray) -> float:
    """Maximum reference (training) error, as in keras-io's timeseries anomaly-detection
    autoencoder example: anything worse than the worst normal reconstruction is anomalous."""
    return float(_as_nonempty_scores(scores, "scores").max())


def fit_threshold(method: str, reference_scores: Sequence[float] | np.ndarray, **kw: Any) -> float:
    """Fit a threshold on label-free reference scores with ``method`` in
    ``{"ndt", "quantile", "max-train"}``; ``kw`` go to the chosen function.

    Reference scores must come from training/validation errors, never from test labels,
    so that the threshold is not tuned on the evaluation data.
    """
    if method == "ndt":
        return ndt_threshold(reference_scores, **kw)
    if method == "quantile":
        return quantile_threshold(reference_scores, **kw)
    if method == "max-train":
        return max_threshold(reference_scores, **kw)
    raise ValueError(f"unknown threshold method {method!r}; expected one of {THRESHOLD_METHODS}")


# ------------------------------------------------------------------------------- windows


def flags_to_windows(
    flags: Sequence[int] | np.ndarray, merge_gap: int = 0, min_length: int = 1
) -> list[Window]:
    """Contiguous flagged runs as inclusive ``(start, end)`` pairs.

    Runs separated by at most ``merge_gap`` unflagged points are merged first (one event
    often dips briefly below threshold); merged windows shorter than ``min_length`` points
    are then dropped (isolated blips are usually noise).
    """
    mask = _as_binary(flags, "flags")
    if merge_gap < 0:
        raise ValueError(f"merge_gap must be >= 0, got {merge_gap}")
    if min_length < 1:
        raise ValueError(f"min_length must be >= 1, got {min_length}")
    merged: list[Window] = []
    for start, end in _runs(mask):
        if merged and start - merged[-1][1] - 1 <= merge_gap:
            merged[-1] = (merged[-1][0], end)
        else:
            merged.append((start, end))
    return [(s, e) for s, e in merged if e - s + 1 >= min_length]


def windows_to_flags(windows: Sequence[Window], n: int) -> np.ndarray:
    """Boolean array of length ``n`` that is True inside the given windows."""
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    flags = np.zeros(n, dtype=bool)
    for start, end in _check_windows(windows, n):
        flags[start : end + 1] = True
    return flags


def labels_to_events(labels: Sequence[int] | np.ndarray) -> list[Window]:
    """True anomaly events: the contiguous runs of label 1."""
    return _runs(_as_binary(labels, "labels"))


def windows_table(
    windows: Sequence[Window],
    scores: Sequence[float] | np.ndarray,
    timestamps: Sequence | np.ndarray | pd.Index,
) -> pd.DataFrame:
    """One row per detected window: ``start``, ``end`` (as timestamps) and ``peak_score``."""
    arr = _as_scores(scores)
    stamps = pd.Index(timestamps)
    if len(stamps) != arr.size:
        raise ValueError(f"timestamps ({len(stamps)}) and scores ({arr.size}) differ in length")
    checked = _check_windows(windows, arr.size)
    return pd.DataFrame(
        {
            "start": stamps[[s for s, _ in checked]],
            "end": stamps[[e for _, e in checked]],
            "peak_score": [float(arr[s : e + 1].max()) for s, e in checked],
        }
    )


def prune_windows(
    windows: Sequence[Window],
    scores: Sequence[float] | np.ndarray,
    threshold: float,
    min_decrease: float = 0.13,
) -> list[Window]:
    """telemanom's false-positive pruning (Hundman et al. 2018, Sec. 3.3; ``prune_anoms``).

    Peaks of the detected windows are sorted descending and followed by the background
    level: the largest score outside every window (``threshold`` if every point lies in a
    window). With ``d_i = (peak_i - next_i) / peak_i``, windows ranked after the last
    ``d_i >= min_decrease`` are dropped, keeping only peaks clearly above the background.
    Returns the kept windows in their original order.
    """
    arr = _as_scores(scores)
    checked = _check_windows(windows, arr.size)
    if not 0.0 <= min_decrease <= 1.0:
        raise ValueError(f"min_decrease must be in [0, 1], got {min_decrease}")
    if not checked:
        return []
    peaks = np.array([arr[s : e + 1].max() for s, e in checked])
    outside = ~windows_to_flags(checked, arr.size)
    background = float(arr[outside].max()) if outside.any() else float(threshold)

    order = np.argsort(-peaks, kind="stable")
    ranked = np.append(peaks[order], background)
    with np.errstate(divide="ignore", invalid="ignore"):
        decreases = np.where(ranked[:-1] > 0, (ranked[:-1] - ranked[1:]) / ranked[:-1], 0.0)
    big = np.flatnonzero(decreases >= min_decrease)
    if big.size == 0:
        return []
    keep = set(order[: big[-1] + 1].tolist())
    return [w for i, w in enumerate(checked) if i in keep]


# ---------------------------------------------------------------------------- evaluation


def _ratio(num: float, den: float) -> float:
    return num / den if den else float("nan")


def _f1(precision: float, recall: float) -> float:
    """2TP / (2TP + FP + FN): undefined only when there is nothing to find and nothing found.

    When just one of precision/recall is undefined, TP = 0 and the defined one is 0, so F1 is 0
    (a detector that stays silent on a labelled anomaly scores 0, not NaN).
    """
    if math.isnan(precision) and math.isnan(recall):
        return float("nan")
    if math.isnan(precision) or math.isnan(recall):
        return 0.0
    return _ratio(2 * precision * recall, precision + recall) if precision + recall else 0.0


def _overlaps(a: Window, b: Window) -> bool:
    return a[0] <= b[1] and b[0] <= a[1]


def evaluate_detection(
    labels: Sequence[int] | np.ndarray,
    scores: Sequence[float] | np.ndarray,
    flags: Sequence[int] | np.ndarray,
) -> dict[str, float]:
    """Point-wise, event-wise and threshold-free metrics of one detection run.

    * ``point_precision/recall/f1``: per time step.
    * ``event_precision``: fraction of detected windows (runs of ``flags``) overlapping a
      true event; ``event_recall``: fraction of true events (runs of label 1) overlapped by
      at least one detected window; ``event_f1`` their harmonic mean. Event metrics do not
      reward long detections over short ones, matching how operators consume alarms.
    * ``roc_auc`` and ``pr_auc`` (average precision) of the raw scores, via scikit-learn.

    Undefined metrics are NaN rather than errors: precisions with no detections, recalls
    and ``pr_auc`` with no positive labels, ``roc_auc`` unless both classes occur, F1 only
    with neither labels nor detections (otherwise 2TP / (2TP + FP + FN)).
    """
    y = _as_binary(labels, "labels")
    s = _as_scores(scores)
    f = _as_binary(flags, "flags")
    if not y.size == s.size == f.size:
        raise ValueError(
            f"labels ({y.size}), scores ({s.size}) and flags ({f.size}) differ in length"
        )

    tp = float(np.sum(y & f))
    point_precision = _ratio(tp, float(f.sum()))
    point_recall = _ratio(tp, float(y.sum()))

    events, detected = labels_to_events(y), flags_to_windows(f)
    event_precision = _ratio(
        sum(any(_overlaps(d, e) for e in events) for d in detected), len(detected)
    )
    event_recall = _ratio(sum(any(_overlaps(e, d) for d in detected) for e in events), len(events))

    both_classes = 0 < y.sum() < y.size
    return {
        "point_precision": point_precision,
        "point_recall": point_recall,
        "point_f1": _f1(point_precision, point_recall),
        "event_precision": event_precision,
        "event_recall": event_recall,
        "event_f1": _f1(event_precision, event_recall),
        "roc_auc": float(roc_auc_score(y, s)) if both_classes else float("nan"),
        "pr_auc": float(average_precision_score(y, s)) if y.any() else float("nan"),
    }
