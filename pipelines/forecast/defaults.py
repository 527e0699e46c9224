"""Settings chosen from the series when the command line leaves them out.

- **Season**: the data set's own; else the calendar periods the time step divides (a day, a week
  or a year of steps: 24 and 168 for hourly data, 12 for monthly), or, without a time axis, the
  autocorrelation peak; a candidate is kept only if it passes the 90 % seasonality test of the
  M4 Theta benchmark (``n * acf[m]**2 / sum(acf[:m]**2)`` above the chi-square(1) critical
  value) on the differenced training part, or on the part itself where its autocorrelation
  peaks at that lag; the strongest wins.
- **Horizon**: the data set's own; else what forecasting competitions ask of that frequency
  (M4: yearly 6, quarterly 8, monthly 18, weekly 13, daily 14; a day of steps below daily),
  or one season without a time axis; capped at half the smaller of the validation and test
  parts, so that each holds several forecast origins.
- **Window**: one season plus two horizons (the model reads the change from one season before
  and two horizons of recent dynamics), at most half of what the training part can slide over,
  so that at least as many training windows remain as the window is long.
- **Stride**: 1, or more so that at most about 1,200 training windows are drawn.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pipelines.core.errors import DataError

DAY = 86_400.0
# Calendar periods (seconds) a seasonal cycle may span.
PERIODS = {"day": DAY, "week": 7 * DAY, "year": 365.2425 * DAY}
# Competition horizons by the length of one step (seconds, upper bound exclusive).
HORIZONS = ((300 * DAY, 6), (80 * DAY, 8), (27 * DAY, 18), (6.5 * DAY, 13), (0.9 * DAY, 14))
SEASONALITY_CRITICAL = 2.705543454095404  # chi-square(1) 90 % quantile (1.645 ** 2)
MAX_TRAIN_WINDOWS = 1200
MIN_WINDOW = 4


@dataclass
class Plan:
    """The settings a run uses and how each was chosen (said once on stderr, logged)."""

    season: int
    horizon: int
    window: int
    stride: int
    train_end: int
    validation_end: int
    reasons: dict[str, str]

    def describe(self) -> str:
        return "; ".join(
            f"{name} {getattr(self, name)} ({why})" for name, why in self.reasons.items()
        )


def step_seconds(timestamps: np.ndarray) -> float | None:
    """The median spacing of datetime timestamps in seconds (None without a time axis)."""
    if not np.issubdtype(np.asarray(timestamps).dtype, np.datetime64) or len(timestamps) < 2:
        return None
    spacing = np.diff(np.asarray(timestamps, "datetime64[ns]")).astype(np.float64) / 1e9
    step = float(np.median(spacing))
    return step if step > 0 else None


def calendar_seasons(step: float | None) -> list[int]:
    """Cycles of a day, a week and a year counted in steps (whole numbers, 3 or more)."""
    if step is None:
        return []
    seasons = []
    for period in PERIODS.values():
        ratio = period / step
        # a year of weeks (52.18) or months (12.0) rounds; a day of 7-minute steps does not
        whole = round(ratio)
        if whole >= 3 and abs(ratio - whole) <= (0.25 if step >= 6 * DAY else 1e-6):
            seasons.append(whole)
    return seasons


def frequency_horizon(step: float | None) -> int | None:
    """The competition horizon of a time step, a day of steps below daily (None: unknown)."""
    if step is None:
        return None
    for shortest, horizon in HORIZONS:
        if step >= shortest:
            return horizon
    return max(int(round(DAY / step)), 1)


def seasonality_strength(train: np.ndarray, season: int) -> float:
    """The M4 seasonality statistic at lag ``season`` (seasonal above SEASONALITY_CRITICAL):
    of the differenced series, or of the series itself where its autocorrelation peaks at
    that lag. Differencing keeps a trend or a random walk (autocorrelation decaying slowly
    past every lag) from passing; the raw series with a peak keeps a small cycle under a
    strong trend (weekly CO2's year) that the noise of the differences would hide."""
    if season < 2 or len(train) < 2 * season or np.ptp(np.diff(train)) == 0:
        return 0.0
    differenced = _m4_statistic(np.diff(train), season)
    rho = _acf(train, season + 1)
    peak = rho[season] > rho[season - 1] and rho[season] >= rho[season + 1]
    return max(differenced, _m4_statistic(train, season) if peak else 0.0)


def _acf(values: np.ndarray, lags: int) -> np.ndarray:
    from statsmodels.tsa.stattools import acf

    return acf(values, nlags=lags, fft=True)


def _m4_statistic(values: np.ndarray, season: int) -> float:
    """n * acf[m]^2 / sum(acf[:m]^2), signed by acf[m] (a negative correlation is no cycle)."""
    rho = _acf(values, season)
    statistic = len(values) * rho[season] ** 2 / np.sum(rho[:season] ** 2)
    return float(statistic * np.sign(rho[season]))


def choose_season(train: np.ndarray, step: float | None, autocorrelation_peak: int) -> int:
    """The candidate season with the strongest seasonality passing the test; 1 if none."""
    candidates = calendar_seasons(step) or ([autocorrelation_peak] if step is None else [])
    strengths = {s: seasonality_strength(train, s) for s in candidates if s > 1}
    passing = {s: v for s, v in strengths.items() if v > SEASONALITY_CRITICAL}
    return max(passing, key=passing.get) if passing else 1


def plan(
    n: int,
    train_end: int,
    validation_end: int,
    season: int,
    step: float | None,
    given: dict[str, int],
    reasons: dict[str, str],
) -> Plan:
    """Horizon, window and stride for a series of ``n`` points split at the given points;
    ``given`` holds the values the user set (0: choose). DataError when nothing fits."""
    shortest_part = min(validation_end - train_end, n - validation_end)
    horizon = given["horizon"]
    if not horizon:
        natural = frequency_horizon(step)
        wanted = natural or (season if season > 1 else 8)
        horizon = max(min(wanted, shortest_part // 2), 1)
        how = f"{'the frequency' if natural else 'one season' if season > 1 else 'default'}"
        reasons["horizon"] = how + (", capped by the split" if horizon < wanted else "")
    window = given["window"]
    if not window:
        wanted = season + 2 * horizon if season > 1 else max(3 * horizon, 2 * MIN_WINDOW)
        window = min(wanted, (train_end - horizon + 1) // 2)
        if window < MIN_WINDOW:
            raise DataError(
                f"the series ({n} points) is too short to forecast: its training part "
                f"({train_end} points) cannot hold windows of {MIN_WINDOW} steps and the "
                f"{horizon} after them; a series needs about 20 points or more"
            )
        reasons["window"] = "season + 2 x horizon" if season > 1 else "3 x horizon"
        if window < wanted:
            reasons["window"] += ", capped to keep training windows"
    stride = given["stride"]
    if not stride:
        count = max(train_end - window - horizon + 1, 1)
        stride = -(-count // MAX_TRAIN_WINDOWS)
        reasons["stride"] = f"at most {MAX_TRAIN_WINDOWS} training windows"
    return Plan(season, horizon, window, stride, train_end, validation_end, reasons)
