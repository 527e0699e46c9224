"""Image captioning pipeline: ``python -m pipelines.captioning``."""
