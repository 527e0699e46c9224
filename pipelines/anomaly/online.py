"""The online protocol's scoring: normalisation that follows the series, an anomaly likelihood
that transfers across series, and alarms that are events.

Every piece is a small state machine fed one point at a time (``update``), so a live stream
and a whole-file run share one code path and give the same alarms; the ``*_series`` helpers
just loop over a file. NumPy only: the recurrent model's prediction errors come in from outside.

* :class:`RollingNormaliser` turns values into z-scores against an exponentially weighted mean
  and variance of the past (Welford-style EWMA), so after a level shift the new level becomes
  the reference within about ``span`` rows and stops alarming.
* :class:`AnomalyLikelihood` is Numenta's anomaly likelihood (Ahmad et al. 2017, "Unsupervised
  real-time anomaly detection for streaming data"): the mean of the last ``short_window`` errors
  is compared with a Gaussian fitted to that same short-term mean over the last ``long_window``
  steps (past only); the likelihood is the Gaussian's CDF there, so ``1 - likelihood`` is a
  tail probability whose meaning does not depend on the series' scale.
* :class:`PeriodicErrors` keeps errors that recur once per period from alarming (a forecaster
  that misses every heartbeat of an ECG, every morning peak of a traffic series): after the
  probation period each error is discounted by how far the errors around the same phase one
  period before rose above the ordinary. The period is the first autocorrelation peak of the
  probation errors, if it is strong enough; a stream without one passes unchanged.
* :class:`RangeCheck` is Numenta's "spatial anomaly" (their NAB detector): a value beyond the
  range of every value seen so far, by more than a share of that range, scores likelihood 1
  whatever the forecaster expected. A new extreme is what people label an anomaly, and a
  forecaster that follows the series' own level can predict the step after a jump well.
* :class:`AlarmRule` raises one alarm when the likelihood reaches the threshold and then stays
  silent for ``gap`` rows: an event, not a stretch of flagged rows.
"""

from __future__ import annotations

import itertools
import math
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

MIN_STD = 1e-3  # errors are in units of the normalised series: a thousandth of its spread
MIN_PERIOD = 8  # shorter recurrences are the forecaster's own ripple, not a cycle of the data
PHASE_JITTER = 0.1  # share of the period a recurring error may drift by (heart rate varies)
ORDINARY_QUANTILE = 0.9  # errors up to this quantile of a period are not a recurring spike


class RollingNormaliser:
    """Causal z-scores ``(x_t - m_{t-1}) / s_{t-1}`` with EWMA mean ``m`` and variance ``s**2``.

    ``mean``/``std`` start from a reference stretch (the probation period), so the first rows
    are not judged against nothing. ``std`` is floored at ``MIN_STD`` times the reference
    spread (or of its level, for a constant reference) so a flat stretch does not divide by 0.
    """

    def __init__(self, span: float, mean: np.ndarray, std: np.ndarray) -> None:
        self.alpha = 2.0 / (float(span) + 1.0)
        self.mean = np.asarray(mean, np.float64).copy()
        self.var = np.asarray(std, np.float64) ** 2
        scale = np.where(np.asarray(std) > 0, std, np.maximum(np.abs(mean), 1.0))
        self.floor = MIN_STD * np.asarray(scale, np.float64)

    @classmethod
    def fit(cls, span: float, reference: np.ndarray) -> RollingNormaliser:
        reference = np.asarray(reference, np.float64)
        return cls(span, reference.mean(axis=0), reference.std(axis=0))

    def update(self, x: np.ndarray) -> np.ndarray:
        """The z-score of ``x`` against the past, then ``x`` joins the statistics."""
        x = np.asarray(x, np.float64)
        z = (x - self.mean) / np.maximum(np.sqrt(self.var), self.floor)
        delta = x - self.mean
        self.mean = self.mean + self.alpha * delta
        self.var = (1.0 - self.alpha) * (self.var + self.alpha * delta**2)
        return z

    def state(self) -> dict[str, list[float]]:
        return {"mean": self.mean.tolist(), "std": np.sqrt(self.var).tolist()}


def normalise_series(values: np.ndarray, span: float, reference: np.ndarray) -> np.ndarray:
    """Causal z-scores of every row (float32), the normaliser fitted on ``reference`` rows."""
    normaliser = RollingNormaliser.fit(span, reference)
    return np.array([normaliser.update(row) for row in values], np.float32)


def tail_probability(x: float, mean: float, std: float) -> float:
    """``P(X >= x)`` for ``X ~ N(mean, std**2)``: the upper tail only (small errors are normal)."""
    return 0.5 * math.erfc((x - mean) / (std * math.sqrt(2.0)))


class AnomalyLikelihood:
    """Numenta's anomaly likelihood of a stream of non-negative errors.

    ``update(error)`` appends the error, averages the last ``short_window`` errors, and returns
    ``1 - P(A >= a_t)`` where ``A`` is normal with the mean and standard deviation (floored at
    ``MIN_STD``) of the previous ``long_window`` short-term averages. Until ``short_window``
    averages exist it returns 0.5 (no evidence either way). Running sums make each step O(1).
    """

    def __init__(self, short_window: int = 10, long_window: int = 1000) -> None:
        self.short = deque(maxlen=short_window)
        self.short_sum = 0.0
        self.history: deque[float] = deque()
        self.long_window = long_window
        self.sum = 0.0
        self.sum_sq = 0.0

    def update(self, error: float) -> float:
        if len(self.short) == self.short.maxlen:
            self.short_sum -= self.short[0]
        self.short.append(float(error))
        self.short_sum += float(error)
        average = self.short_sum / len(self.short)
        likelihood = 0.5
        n = len(self.history)
        if n >= self.short.maxlen:
            mean = self.sum / n
            std = math.sqrt(max(self.sum_sq / n - mean * mean, 0.0))
            likelihood = 1.0 - tail_probability(average, mean, max(std, MIN_STD))
        self.history.append(average)
        self.sum += average
        self.sum_sq += average * average
        if len(self.history) > self.long_window:
            old = self.history.popleft()
            self.sum -= old
            self.sum_sq -= old * old
        return likelihood


def error_period(errors: np.ndarray, strength: float) -> int:
    """The lag at which ``errors`` recur: the highest autocorrelation peak after the
    autocorrelation first turns negative, within half the stretch, if it reaches ``strength``;
    else 0 (no period)."""
    x = np.asarray(errors, np.float64)
    x = x - x.mean()
    energy = float((x * x).sum())
    max_lag = len(x) // 2
    if energy <= 0 or strength <= 0 or max_lag <= MIN_PERIOD:
        return 0
    acf = np.array([(x[:-k] * x[k:]).sum() / energy for k in range(1, max_lag)])
    negative = np.flatnonzero(acf < 0)
    if not negative.size:
        return 0
    lag = int(negative[0] + np.argmax(acf[negative[0] :])) + 1
    return lag if lag >= MIN_PERIOD and acf[lag - 1] >= strength else 0


class PeriodicErrors:
    """``update(error)`` returns the error the likelihood should see: unchanged during the
    ``probation`` rows, whose errors then give the period (:func:`error_period`); after them,
    the error less how far the same phase one period before rose above the ordinary: ``error -
    max(m - q, 0)`` (at least 0), with ``m`` the largest error within ``PHASE_JITTER`` of a
    period before and ``q`` the ``ORDINARY_QUANTILE`` of the last period's errors. A phase that
    spikes every period is discounted by its spike; every other row keeps its error, so the
    likelihood's history keeps its spread (unchanged when there is no period)."""

    def __init__(self, probation: int, strength: float) -> None:
        self.probation = probation
        self.strength = strength
        self.warmup: list[float] = []
        self.period = 0
        self.jitter = 0
        self.recent: deque[float] | None = None  # the last period + jitter errors

    def update(self, error: float) -> float:
        error = float(error)
        if self.recent is None:
            if len(self.warmup) < self.probation:
                self.warmup.append(error)
                return error
            self.period = error_period(np.array(self.warmup), self.strength)
            self.jitter = max(1, int(PHASE_JITTER * self.period)) if self.period else 0
            span = self.period + self.jitter
            self.recent = deque(self.warmup[len(self.warmup) - span :] if span else [], span or 1)
            self.warmup = []
        if not self.period:
            return error
        seen = error
        if len(self.recent) == self.recent.maxlen:  # errors[t - period - jitter : t]
            same_phase = max(itertools.islice(self.recent, 0, 2 * self.jitter + 1))
            ordinary = float(np.quantile(self.recent, ORDINARY_QUANTILE))
            seen = max(error - max(same_phase - ordinary, 0.0), 0.0)
        self.recent.append(error)
        return seen


class RangeCheck:
    """``update(x)`` says whether any feature of ``x`` lies beyond the range of the values seen
    before it by more than ``tolerance`` times that range (a feature that has only held one
    value has no range yet), then widens the range by ``x``. ``tolerance`` 0 turns it off."""

    def __init__(self, tolerance: float) -> None:
        self.tolerance = tolerance
        self.low: np.ndarray | None = None
        self.high: np.ndarray | None = None

    def update(self, x: np.ndarray) -> bool:
        x = np.ravel(np.asarray(x, np.float64))
        if self.low is None or self.high is None:
            self.low, self.high = x.copy(), x.copy()
            return False
        spread = self.high - self.low
        margin = self.tolerance * spread
        beyond = (x > self.high + margin) | (x < self.low - margin)
        self.low, self.high = np.minimum(self.low, x), np.maximum(self.high, x)
        return self.tolerance > 0 and bool(np.any(beyond & (spread > 0)))


class AlarmRule:
    """One alarm when the likelihood reaches ``threshold`` (from row ``start`` on), then none
    for ``gap`` rows. ``update`` takes rows in order and returns whether this row alarms."""

    def __init__(self, threshold: float, gap: int, start: int = 0) -> None:
        self.threshold = threshold
        self.gap = gap
        self.row = -1
        self.start = start
        self.last: int | None = None

    def update(self, likelihood: float) -> bool:
        self.row += 1
        if self.row < self.start or likelihood < self.threshold:
            return False
        if self.last is not None and self.row - self.last <= self.gap:
            return False
        self.last = self.row
        return True


@dataclass
class Scored:
    """Per-row errors, likelihoods and alarm flags of one detector over one series."""

    errors: np.ndarray
    likelihood: np.ndarray
    alarms: np.ndarray
    period: int = 0  # the recurrence of the errors that was discounted (0: none)
    beyond_range: np.ndarray | None = None  # rows whose value left the range seen so far


@dataclass
class AlarmSettings:
    """What turns errors into alarms; the same for every series of a run."""

    threshold: float
    gap: int
    short_window: int = 10
    long_window: int = 1000
    period_strength: float = 0.0  # PeriodicErrors' autocorrelation threshold (0: off)
    range_tolerance: float = 0.0  # RangeCheck's share of the range (0: off)

    @classmethod
    def of_detector(cls, detector: dict) -> AlarmSettings:
        """The settings an online run saved in its ``detector.json`` (runs from before
        ``period_strength`` or ``range_tolerance`` existed have them off)."""
        return cls(
            detector["threshold"],
            detector["alarm_gap"],
            detector["short_window"],
            detector["likelihood_window"],
            detector.get("period_strength", 0.0),
            detector.get("range_tolerance", 0.0),
        )


def score_errors(
    errors: Iterable[float], settings: AlarmSettings, start: int, values: np.ndarray
) -> Scored:
    """Likelihood and alarms of an error stream and the rows ``values`` it came from; alarms
    only from row ``start`` (probation end), recurring errors discounted from there
    (:class:`PeriodicErrors`), a value beyond the range seen so far at likelihood 1
    (:class:`RangeCheck`)."""
    errors = np.asarray(list(errors), np.float64)
    periodic = PeriodicErrors(start, settings.period_strength)
    likelihood = AnomalyLikelihood(settings.short_window, settings.long_window)
    check = RangeCheck(settings.range_tolerance)
    beyond = np.array([check.update(row) for row in np.asarray(values)], dtype=bool)
    scores = np.array([likelihood.update(periodic.update(e)) for e in errors])
    scores[beyond] = 1.0
    rule = AlarmRule(settings.threshold, settings.gap, start)
    alarms = np.array([rule.update(v) for v in scores], dtype=bool)
    return Scored(errors, scores, alarms, periodic.period, beyond)


def zscore_errors(values: np.ndarray, span: float, reference: np.ndarray) -> np.ndarray:
    """The non-neural baseline's error: ``|z|`` of each row against its EWMA past, averaged
    over features (a rolling z-score detector)."""
    return np.abs(normalise_series(values, span, reference)).mean(axis=1).astype(np.float64)


def alarm_stretches(likelihood: np.ndarray, threshold: float, start: int) -> list[tuple[int, int]]:
    """Inclusive row ranges from ``start`` on where the likelihood stays at the threshold or
    above: what ``windows.csv`` reports, while only each stretch's onset alarms."""
    mask = np.asarray(likelihood) >= threshold
    mask[:start] = False
    padded = np.concatenate(([False], mask, [False])).astype(np.int8)
    edges = np.flatnonzero(np.diff(padded))
    return [(int(s), int(e) - 1) for s, e in zip(edges[::2], edges[1::2])]
