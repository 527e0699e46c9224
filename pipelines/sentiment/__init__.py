"""Sentence sentiment: bidirectional LSTM with attention pooling (python -m pipelines.sentiment)."""
