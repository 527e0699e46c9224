"""Point and interval forecast metrics over [origins, horizon] arrays.

Every metric averages over all origins and horizon steps at once, which equals the mean over
origins of per-origin averages because each origin forecasts the same number of steps.
"""

from __future__ import annotations

import numpy as np

from pipelines.core.errors import DataError


def seasonal_scale(train: np.ndarray, season: int) -> float:
    """MASE denominator: in-sample MAE of the seasonal-naive forecast on the training part
    (Hyndman & Koehler 2006); ``season`` 1 gives the naive forecast."""
    season = max(season, 1)
    if len(train) <= season:
        raise DataError(
            f"the training part ({len(train)} points) is not longer than the season ({season})"
        )
    scale = float(np.mean(np.abs(train[season:] - train[:-season])))
    if scale == 0.0:
        raise DataError(
            "the target is constant over the training part: MASE is undefined (its scale, "
            "the in-sample seasonal-naive error, is 0), and nothing is left to forecast"
        )
    return scale


def mae(actual: np.ndarray, forecast: np.ndarray) -> float:
    return float(np.mean(np.abs(actual - forecast)))


def rmse(actual: np.ndarray, forecast: np.ndarray) -> float:
    return float(np.sqrt(np.mean((actual - forecast) ** 2)))


def smape(actual: np.ndarray, forecast: np.ndarray) -> float:
    """Symmetric MAPE in percent (0-200); a step where both are 0 counts as no error."""
    denominator = np.abs(actual) + np.abs(forecast)
    ratio = np.divide(
        2 * np.abs(actual - forecast),
        denominator,
        out=np.zeros_like(denominator, dtype=np.float64),
        where=denominator > 0,
    )
    return float(100 * np.mean(ratio))


def mase(actual: np.ndarray, forecast: np.ndarray, scale: float) -> float:
    return mae(actual, forecast) / scale


def coverage(actual: np.ndarray, lower: np.ndarray, upper: np.ndarray) -> float:
    """Share of actual values inside [lower, upper]."""
    return float(np.mean((actual >= lower) & (actual <= upper)))


def score(
    actual: np.ndarray,
    forecast: np.ndarray,
    scale: float,
    interval: tuple[np.ndarray, np.ndarray] | None = None,
) -> dict[str, float]:
    """MAE, RMSE, sMAPE, MASE and, given an interval, its coverage and mean width."""
    scores = {
        "mae": mae(actual, forecast),
        "rmse": rmse(actual, forecast),
        "smape": smape(actual, forecast),
        "mase": mase(actual, forecast, scale),
    }
    if interval is not None:
        lower, upper = interval
        scores["coverage"] = coverage(actual, lower, upper)
        scores["interval_width"] = float(np.mean(upper - lower))
    return scores


def mae_by_step(actual: np.ndarray, forecast: np.ndarray) -> np.ndarray:
    """MAE of each horizon step, averaged over origins: how error grows with lead time."""
    return np.mean(np.abs(actual - forecast), axis=0)
