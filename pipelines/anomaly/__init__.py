"""Anomaly detection pipeline: ``python -m pipelines.anomaly``."""
