"""Real data sets shipped inside pinned packages, registered as TFDS builders on import."""

import pipelines.datasets.image_builders  # noqa: F401  (registers *_scenes)
from pipelines.datasets import (
    speech_builders,  # noqa: F401  (registers fsdd, japanese_vowels)
    text_builders,  # noqa: F401  (registers rotten_tomatoes, hamlet)
    translation_builders,  # noqa: F401  (registers gettext_en_fr)
)
from pipelines.datasets.forecast_builders import (  # noqa: F401  (registers taylor, co2, ...)
    FORECAST_SERIES,
    load_forecast_series,
)
from pipelines.datasets.timeseries_builders import SERIES, Mitdb, Ucr135, load_series

__all__ = ["SERIES", "Mitdb", "Ucr135", "load_series"]
