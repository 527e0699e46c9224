"""Applying a logged model to new input: ``python -m pipelines.<task> --model-uri URI --predict X``.

The runner owns the whole path (tracking connection, loading, errors, output files); a task
only says how its model reads new input (``Task.predict``). A model is found by any MLflow
model URI: ``runs:/<run id>/model``, ``models:/<name>/<version>``, ``models:/<name>@<alias>``
or ``models:/<logged model id>``. What inference needs besides the weights (thresholds,
vocabularies, scalers) is what the training run logged as ``results/<name>.json``, and the
training configuration is its ``config.json``.
"""

from __future__ import annotations

import dataclasses
import functools
import os
from dataclasses import dataclass
from typing import Any, TypeVar

import keras
import mlflow

from pipelines.core.config import TaskConfig
from pipelines.core.errors import TrackingError

ConfigT = TypeVar("ConfigT", bound=TaskConfig)


@dataclass
class LoggedModel:
    """A logged Keras model and what its training run recorded beside it."""

    model: keras.Model
    uri: str
    run_id: str

    @functools.cached_property
    def training(self) -> dict[str, Any]:
        """The training run's resolved configuration (its ``config.json``)."""
        return self._load_dict("config.json")

    def artifact(self, name: str) -> Any:
        """``results/<name>.json`` of the training run; TrackingError if it was not logged."""
        return self._load_dict(f"results/{name}.json")

    def _load_dict(self, path: str) -> Any:
        try:
            return mlflow.artifacts.load_dict(f"runs:/{self.run_id}/{path}")
        except (mlflow.exceptions.MlflowException, OSError, ValueError):
            raise TrackingError(f"the run of {self.uri} lacks {path}") from None

    def config(self, cls: type[ConfigT]) -> ConfigT:
        """The training configuration as ``cls`` (fields the run did not log keep defaults)."""
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in self.training.items() if k in names})


def load(uri: str) -> LoggedModel:
    """The Keras model at ``uri`` (any MLflow model URI) and its training run."""
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    try:
        run_id = source_run_id(uri)
        model = mlflow.keras.load_model(uri)
    except (mlflow.exceptions.MlflowException, OSError, ValueError) as exc:
        raise TrackingError(f"cannot load {uri}: {_first_line(exc)}") from None
    if not run_id:
        raise TrackingError(f"cannot load {uri}: it names no training run")
    return LoggedModel(model, uri, run_id)


def source_run_id(uri: str) -> str | None:
    """The run that logged the model at ``uri``."""
    if uri.startswith("runs:/"):
        return uri.removeprefix("runs:/").split("/", 1)[0] or None
    if uri.startswith("models:/"):
        name = uri.removeprefix("models:/").rstrip("/")
        client = mlflow.MlflowClient()
        if "@" in name:
            return client.get_model_version_by_alias(*name.split("@", 1)).run_id
        if "/" in name:
            return client.get_model_version(*name.split("/", 1)).run_id
        return mlflow.get_logged_model(name).source_run_id
    return mlflow.models.get_model_info(uri).run_id


def _first_line(exc: BaseException) -> str:
    text = str(getattr(exc, "message", exc)).strip()
    return text.splitlines()[0] if text else type(exc).__name__
