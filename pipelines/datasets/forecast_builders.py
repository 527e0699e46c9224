"""TFDS builders for real forecasting series shipped in pmdarima, vega_datasets and statsmodels.

Each builder yields one whole series (timestamps plus value columns, the target first) and
declares the series' known seasonal period, which the forecasting baselines use.
``tfds.load("taylor")`` works after ``import pipelines.datasets``; nothing is downloaded.
"""

from __future__ import annotations

import abc
import ast
import re

import numpy as np
import pandas as pd
import tensorflow_datasets as tfds

from pipelines.core.errors import DataError
from pipelines.core.packaged import PackagedFile, prepare
from pipelines.core.timeseries import TimeSeries

TAYLOR = PackagedFile(
    "pmdarima",
    "2.1.1",
    "datasets/taylor.py",
    "3df2f44f654bfe4338ea39350912140c9710fa776270f50a2529b2f5c87a4e19",
    "Half-hourly England & Wales electricity demand (Taylor 2003) via pmdarima (MIT)",
)
SEATTLE_WEATHER = PackagedFile(
    "vega_datasets",
    "0.9.0",
    "_data/seattle-weather.csv",
    "62f0609f787158128aa2bd102967173a4953122dd4f872bf1d502cae1037df0b",
    "Seattle daily weather 2012-2015 (NOAA, public domain) via vega_datasets (BSD-3)",
)
CO2 = PackagedFile(
    "statsmodels",
    "0.15.0",
    "datasets/co2/co2.csv",
    "16695fa2786e53414e5a6b54767a3fdf5de99cfbc68617f69d1362d92776a92f",
    "Weekly Mauna Loa CO2 1958-2001 (Scripps, public domain) via statsmodels (BSD-3)",
)


def taylor_values(source: str) -> np.ndarray:
    """The demand array written as a literal inside pmdarima's taylor.py (read, not imported)."""
    found = re.search(r"np\.array\(\[(.*?)\]\)", source, re.S)
    if found is None:
        raise DataError("pmdarima's taylor.py no longer holds the demand array literal")
    return np.asarray(ast.literal_eval(f"[{found.group(1)}]"), np.float64)


class _SeriesBuilder(tfds.core.GeneratorBasedBuilder):
    """One example holding a whole series; subclasses say where it comes from.

    ``COLUMNS`` names the value features (target first), ``SEASON`` the known period in steps,
    ``HORIZON`` the forecast length its documented results use (a day of half-hours on taylor).
    """

    VERSION = tfds.core.Version("1.0.0")
    COLUMNS: tuple[str, ...] = ("value",)
    SEASON = 1
    HORIZON = 48
    SOURCE: PackagedFile
    HOMEPAGE = ""

    def _info(self) -> tfds.core.DatasetInfo:
        return self.dataset_info_from_configs(
            features=tfds.features.FeaturesDict(
                {
                    "timestamp": tfds.features.Tensor(shape=(None,), dtype=np.int64),
                    "value": tfds.features.Tensor(
                        shape=(None, len(self.COLUMNS)), dtype=np.float32
                    ),
                }
            ),
            homepage=self.HOMEPAGE,
            description=self.SOURCE.license,
            metadata=tfds.core.MetadataDict(columns=list(self.COLUMNS), season=self.SEASON),
        )

    def _split_generators(self, dl_manager):
        return {"full": self._generate_examples()}

    def _generate_examples(self):
        stamps, values = self.read()
        yield (
            self.name,
            {
                "timestamp": pd.DatetimeIndex(stamps).as_unit("ns").asi8,
                "value": np.asarray(values, np.float32).reshape(len(stamps), -1),
            },
        )

    @abc.abstractmethod
    def read(self) -> tuple[pd.DatetimeIndex, np.ndarray]:
        """Timestamps and [N, len(COLUMNS)] values of the whole series."""


class Taylor(_SeriesBuilder):
    """Half-hourly electricity demand, England & Wales, 5 June - 27 August 2000 (4,032 points).

    Daily (48) and weekly (336) cycles; the weekly one is the stronger seasonal-naive reference.
    """

    COLUMNS = ("demand_mw",)
    SEASON = 336
    SOURCE = TAYLOR
    HOMEPAGE = "https://doi.org/10.1057/palgrave.jors.2601589"

    def read(self) -> tuple[pd.DatetimeIndex, np.ndarray]:
        values = taylor_values(TAYLOR.path().read_text())
        return pd.date_range("2000-06-05", periods=len(values), freq="30min"), values


class SeattleWeather(_SeriesBuilder):
    """Seattle daily weather 2012-2015 (1,461 days): max temperature, with three covariates."""

    COLUMNS = ("temp_max", "temp_min", "precipitation", "wind")
    SEASON = 365
    SOURCE = SEATTLE_WEATHER
    HOMEPAGE = "https://github.com/vega/vega-datasets"

    def read(self) -> tuple[pd.DatetimeIndex, np.ndarray]:
        frame = pd.read_csv(SEATTLE_WEATHER.path())
        return pd.DatetimeIndex(pd.to_datetime(frame["date"])), frame[list(self.COLUMNS)].values


class Co2(_SeriesBuilder):
    """Weekly Mauna Loa CO2, 1958-2001 (2,284 weeks; the 59 missing weeks interpolated)."""

    COLUMNS = ("co2",)
    SEASON = 52
    SOURCE = CO2
    HOMEPAGE = "https://scrippsco2.ucsd.edu/"

    def read(self) -> tuple[pd.DatetimeIndex, np.ndarray]:
        frame = pd.read_csv(CO2.path(), dtype={"date": str})
        stamps = pd.DatetimeIndex(pd.to_datetime(frame["date"], format="%Y%m%d"))
        return stamps, frame["co2"].interpolate(limit_direction="both").to_numpy()


FORECAST_SERIES = {"taylor": Taylor, "seattle_weather": SeattleWeather, "co2": Co2}


def load_forecast_series(name: str, data_dir: str | None = None) -> tuple[TimeSeries, int]:
    """A registered forecasting series and its known seasonal period."""
    if name not in FORECAST_SERIES:
        raise DataError(
            f"unknown data set {name!r}; known series: {', '.join(FORECAST_SERIES)} (or a CSV)"
        )
    builder = prepare(tfds.builder(name, data_dir=data_dir))
    example = next(iter(tfds.as_numpy(builder.as_dataset(split="full"))))
    series = TimeSeries(
        timestamps=example["timestamp"].astype("datetime64[ns]"),
        values=example["value"],
        columns=list(FORECAST_SERIES[name].COLUMNS),
        name=name,
    )
    return series, FORECAST_SERIES[name].SEASON
