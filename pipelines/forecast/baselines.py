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


@dataclass
class Theta:
    """The Theta method (Assimakopoulos & Nikolopoulos 2000; SES with half the linear trend's
    drift, Hyndman & Billah 2003) as statsmodels' ThetaModel fits it on the training part:
    deseasonalized by classical decomposition (multiplicative for a positive series), with
    ``alpha`` and the drift ``b0`` frozen; from a later origin the SES level is the recursion
    run over the history up to it."""

    season: int
    multiplicative: bool
    seasonal: np.ndarray  # one index per position in the cycle, counted from the series' start
    alpha: float
    b0: float

    @classmethod
    def fit(cls, train: np.ndarray, season: int) -> Theta:
        from statsmodels.tsa.forecasting.theta import ThetaModel
        from statsmodels.tsa.seasonal import seasonal_decompose

        seasonal_cycle = season > 1 and len(train) >= 2 * season
        period = season if seasonal_cycle else 1
        multiplicative = bool(train.min() > 0)
        seasonal = np.zeros(1) if not multiplicative else np.ones(1)
        if seasonal_cycle:
            seasonal = seasonal_decompose(
                train, model="mul" if multiplicative else "add", period=period
            ).seasonal[:period]
            if multiplicative and seasonal.min() <= 0:  # as ThetaModel falls back
                multiplicative = False
                seasonal = seasonal_decompose(train, model="add", period=period).seasonal[:period]
        model = ThetaModel(
            train,
            period=period,
            deseasonalize=seasonal_cycle,
            use_test=False,
            method="mul" if multiplicative else "add",
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            params = model.fit().params
        return cls(period, multiplicative, seasonal, float(params["alpha"]), float(params["b0"]))

    @property
    def description(self) -> str:
        kind = "multiplicative" if self.multiplicative else "additive"
        return "Theta (SES + drift)" + (f", {kind} season {self.season}" if self.season > 1 else "")

    def forecast(self, values: np.ndarray, origins: np.ndarray, horizon: int) -> np.ndarray:
        from scipy.signal import lfilter

        values = np.asarray(values, np.float64)
        cycle = self.seasonal[np.arange(len(values) + horizon) % self.season]
        past = cycle[: len(values)]
        plain = values / past if self.multiplicative else values - past
        alpha = self.alpha
        # level[i] = alpha * plain[i] + (1 - alpha) * level[i - 1], starting from plain[0]
        level, _ = lfilter([alpha], [1, alpha - 1], plain, zi=[(1 - alpha) * plain[0]])
        steps = np.arange(horizon)[None, :]
        drift = steps + (1 - (1 - alpha) ** origins[:, None]) / alpha if alpha > 0 else steps
        forecast = level[origins - 1][:, None] + 0.5 * self.b0 * drift
        future = cycle[origins[:, None] + steps]
        return forecast * future if self.multiplicative else forecast + future


@dataclass
class AutoETS:
    """ETS chosen by AIC on the training part (statsmodels ETSModel, additive errors): trend
    none, additive or damped; season none, additive or (positive series) multiplicative; states
    initialised heuristically. From a later origin the smoothing runs with the fitted
    parameters and initial states frozen and reads the states there."""

    spec: dict
    params: list[float]
    initial: dict

    @classmethod
    def fit(cls, train: np.ndarray, season: int) -> AutoETS:
        from statsmodels.tsa.exponential_smoothing.ets import ETSModel

        seasonal_cycle = season > 1 and len(train) >= 2 * season
        seasons = [None] + (["add", "mul"] if train.min() > 0 else ["add"]) * seasonal_cycle
        trends = [(None, False), ("add", False), ("add", True)]
        best = None
        for seasonal in seasons:
            for trend, damped in trends:
                spec = {
                    "error": "add",
                    "trend": trend,
                    "damped_trend": damped,
                    "seasonal": seasonal,
                    "seasonal_periods": season if seasonal else None,
                }
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    try:
                        result = ETSModel(
                            np.asarray(train, np.float64),
                            initialization_method="heuristic",
                            **spec,
                        ).fit(disp=False)
                    except (ValueError, np.linalg.LinAlgError):
                        continue  # a heuristic start the series is too short for
                if np.isfinite(result.aic) and (best is None or result.aic < best[0]):
                    best = (result.aic, spec, result)
        if best is None:
            raise DataError("no ETS model could be fitted to the training part")
        _, spec, result = best
        initial = {"initial_level": float(result.initial_level)}
        if spec["trend"]:
            initial["initial_trend"] = float(result.initial_trend)
        if spec["seasonal"]:
            initial["initial_seasonal"] = np.asarray(result.initial_seasonal).tolist()
        return cls(spec, np.asarray(result.params, np.float64).tolist(), initial)

    @property
    def description(self) -> str:
        spec = self.spec
        trend = {None: "N", "add": "Ad" if spec["damped_trend"] else "A"}[spec["trend"]]
        season = {None: "N", "add": "A", "mul": "M"}[spec["seasonal"]]
        period = f", season {spec['seasonal_periods']}" if spec["seasonal"] else ""
        return f"auto-ETS(A,{trend},{season}){period}"

    def forecast(self, values: np.ndarray, origins: np.ndarray, horizon: int) -> np.ndarray:
        from statsmodels.tsa.exponential_smoothing.ets import ETSModel

        spec = self.spec
        model = ETSModel(
            np.asarray(values, np.float64), initialization_method="known", **self.initial, **spec
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            states = np.asarray(model.smooth(np.asarray(self.params)).states)
        last = origins - 1
        steps = np.arange(1, horizon + 1)
        trend = np.zeros((len(origins), horizon))
        if spec["trend"]:
            phi = self.params[self.spec_index("damping_trend")] if spec["damped_trend"] else 1.0
            trend = states[last, 1][:, None] * np.cumsum(phi**steps)[None, :]
        forecast = states[last, 0][:, None] + trend
        if spec["seasonal"]:
            m = spec["seasonal_periods"]
            season = states[:, -1][seasonal_lags(origins, horizon, m)]
            forecast = forecast * season if spec["seasonal"] == "mul" else forecast + season
        return forecast

    def spec_index(self, name: str) -> int:
        names = ["smoothing_level"]
        names += ["smoothing_trend"] * bool(self.spec["trend"])
        names += ["smoothing_seasonal"] * bool(self.spec["seasonal"])
        return (names + ["damping_trend"]).index(name)
