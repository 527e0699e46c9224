"""Shared fixtures: every test runs in its own directory with its own MLflow store."""

from __future__ import annotations

import os
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import mlflow  # noqa: E402
import pytest  # noqa: E402

import pipelines  # noqa: E402, F401  (quiet TensorFlow start-up)


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh working directory: the default ``mlruns/`` store and outputs land here."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    yield tmp_path
    if mlflow.active_run():
        mlflow.end_run()


@pytest.fixture
def tracking_uri(workdir: Path) -> str:
    return f"sqlite:///{workdir / 'mlruns' / 'mlflow.db'}"


def runs_of(uri: str, experiment: str) -> list[mlflow.entities.Run]:
    """All runs of an experiment, newest first."""
    client = mlflow.MlflowClient(uri)
    found = client.get_experiment_by_name(experiment)
    if found is None:
        return []
    return client.search_runs([found.experiment_id], order_by=["attributes.start_time DESC"])
