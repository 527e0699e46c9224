"""Real data sets shipped inside pinned packages, registered as TFDS builders on import."""

from pipelines.datasets.timeseries_builders import SERIES, Mitdb, Ucr135, load_series

__all__ = ["SERIES", "Mitdb", "Ucr135", "load_series"]
