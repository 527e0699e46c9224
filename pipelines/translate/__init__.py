"""English→French translation pipeline: ``python -m pipelines.translate``."""
