"""Speech recognition pipeline: ``python -m pipelines.speech``."""
