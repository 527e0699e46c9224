"""Classical baselines scored on the same origins as the LSTM.

An origin ``t`` is the index of the first forecast step: a forecast from ``t`` sees ``y[:t]``
only and predicts ``y[t : t + horizon]``.

The statsmodels baseline is Holt-Winters exponential smoothing (additive seasonality with the
series' period; without a season, Holt's damped trend). It is fitted ONCE on the training part
(with and without a damped trend, lower AIC wins). Forecasting from every later origin re-runs
the smoothing recursions over the whole series with those fitted parameters frozen
(``initialization_method="known"``, ``optimized=False``) and reads the level, trend and
seasonal states at each origin: exact, and one pass instead of one fit per origin. ETS was chosen
over SARIMA because a seasonal ARIMA with a period of 336 (a week of half-hours) has a state
vector hundreds of entries long and takes minutes to fit, while Holt-Winters takes a second.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

from pipelines.core.errors import DataError


def naive(values: np.ndarray, origins: np.ndarray, horizon: int) -> np.ndarray:
    """The last observed value, for every step: [origins, horizon]."""
    return np.repeat(values[origins - 1][:, None], horizon, axis=1)


def seasonal_lags(origins: np.ndarray, horizon: int, season: int) -> np.ndarray:
    """Index of the value one season before each target step (repeating the last observed
    season for steps beyond it): [origins, horizon]."""
    steps = np.arange(horizon)
    return origins[:, None] + steps[None, :] - season * (steps[None, :] // season + 1)


def seasonal_naive(
    values: np.ndarray, origins: np.ndarray, horizon: int, season: int
) -> np.ndarray:
    """The value one season earlier: exact on a purely periodic series."""
    lags = seasonal_lags(origins, horizon, season)
    if lags.min() < 0:
        raise DataError(f"a forecast origin has less than one season ({season}) of history")
    return values[lags]


def detect_season(train: np.ndarray, max_season: int, threshold: float = 0.3) -> int:
    """The lag (>= 2) of the highest autocorrelation peak above ``threshold``; 1 if none.

    Only local maxima count, so the slowly decaying short lags of a trend are not mistaken
    for a season.
    """
    from statsmodels.tsa.stattools import acf

    max_season = min(max_season, len(train) // 2)
    if max_season < 3 or np.ptp(train) == 0:
        return 1
    correlation = acf(train - train.mean(), nlags=max_season, fft=True)
    lags = np.arange(2, max_season)
    peaks = lags[
        (correlation[lags] > correlation[lags - 1])
        & (correlation[lags] >= correlation[lags + 1])
        & (correlation[lags] > threshold)
    ]
    return int(peaks[np.argmax(correlation[peaks])]) if len(peaks) else 1


@dataclass
class HoltWinters:
    """Exponential smoothing fitted on the training part, forecasting from any later origin."""

    season: int
    trend: bool
    params: dict

    @classmethod
    def fit(cls, train: np.ndarray, season: int) -> HoltWinters:
        """Fit with and without a damped additive trend; keep the lower AIC."""
        seasonal = season > 1 and len(train) >= 2 * season
        fits = []
        for trend in (False, True) if seasonal else (True,):
            model = _model(train, trend, season if seasonal else 1)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                result = model.fit()
            fits.append((result.aic, trend, result.params))
        _, trend, params = min(fits, key=lambda f: f[0])
        return cls(season if seasonal else 1, trend, params)

    @property
    def description(self) -> str:
        parts = ["damped additive trend" if self.trend else "no trend"]
        if self.season > 1:
            parts.append(f"additive season {self.season}")
        return "Holt-Winters ETS, " + ", ".join(parts)

    def forecast(self, values: np.ndarray, origins: np.ndarray, horizon: int) -> np.ndarray:
        """[origins, horizon] forecasts, the states at each origin from the frozen recursions."""
        p = self.params
        model = _model(
            values,
            self.trend,
            self.season,
            initialization_method="known",
            initial_level=p["initial_level"],
            initial_trend=p["initial_trend"] if self.trend else None,
            initial_seasonal=p["initial_seasons"] if self.season > 1 else None,
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            states = model.fit(
                smoothing_level=p["smoothing_level"],
                smoothing_trend=p["smoothing_trend"] if self.trend else None,
                smoothing_seasonal=p["smoothing_seasonal"] if self.season > 1 else None,
                damping_trend=p["damping_trend"] if self.trend else None,
                optimized=False,
            )
        last = origins - 1
        steps = np.arange(1, horizon + 1)
        forecast = np.repeat(states.level[last][:, None], horizon, axis=1)
        if self.trend:
            damping = np.cumsum(p["damping_trend"] ** steps)
            forecast += states.trend[last][:, None] * damping[None, :]
        if self.season > 1:
            forecast += states.season[seasonal_lags(origins, horizon, self.season)]
        return forecast


def _model(values: np.ndarray, trend: bool, season: int, **kwargs):
    from statsmodels.tsa.holtwinters import ExponentialSmoothing

    kwargs.setdefault("initialization_method", "heuristic" if season > 1 else "estimated")
    return ExponentialSmoothing(
        np.asarray(values, np.float64),
        trend="add" if trend else None,
        damped_trend=trend,
        seasonal="add" if season > 1 else None,
        seasonal_periods=season if season > 1 else None,
        **kwargs,
    )
