"""Forecasting pipeline: ``python -m pipelines.forecast``, an LSTM beside classical baselines."""
