"""Recurrent language model with an n-gram baseline and sampling (python -m pipelines.textgen)."""
