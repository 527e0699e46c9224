"""MLflow conventions shared by every task: store, experiment, run lifecycle, what gets logged."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import socket
import subprocess
import tempfile
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import keras
import mlflow
import numpy as np

from pipelines.core.boundary import describe, stop_reason
from pipelines.core.config import TaskConfig
from pipelines.core.errors import TrackingError
from pipelines.core.naming import short_params
from pipelines.core.store import open_sqlite_store
from pipelines.core.task import Report

DEFAULT_TRACKING_URI = "sqlite:///mlruns/mlflow.db"
# MLflow's INFO chatter (database creation, migrations) would bury our one-line errors.
logging.getLogger("mlflow").setLevel(logging.WARNING)
logging.getLogger("urllib3").setLevel(logging.ERROR)  # a line per retried connection
# Our pyfunc scorers are classes whose code travels with the model (`code_paths`); MLflow's
# caution about pickling them came once per logged model, 32 lines in a 32-file corpus run.
logging.getLogger("mlflow.pyfunc").addFilter(
    lambda record: not record.getMessage().startswith("Passing a Python object as `python_model`")
)
# Fail fast on an unreachable server instead of MLflow's minutes of retries.
os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")
# Progress bars of artifact downloads (loading a model) would surround an error line.
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")


def resolve_tracking_uri(uri: str = "") -> str:
    """``--tracking-uri``, else ``$MLFLOW_TRACKING_URI``, else the SQLite store under mlruns/."""
    return uri or os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_TRACKING_URI


def connect(uri: str) -> str:
    """Point MLflow at ``uri`` after checking the store answers; raise TrackingError if not."""
    if uri.startswith(("http://", "https://")):
        health = uri.rstrip("/") + "/health"
        try:
            with urllib.request.urlopen(health, timeout=5) as response:
                response.read()
        except (TimeoutError, urllib.error.URLError, ConnectionError) as exc:
            reason = getattr(exc, "reason", exc)
            raise TrackingError(f"MLflow tracking server {uri} is unreachable ({reason})") from None
    elif uri.startswith("sqlite:///"):
        open_sqlite_store(uri)
    mlflow.set_tracking_uri(uri)
    return uri


def use_experiment(name: str) -> str:
    """Create or select the experiment; returns its id.

    With a SQLite store, a new experiment keeps its artifacts beside the database
    (:func:`artifact_location`; MLflow's default would be ./mlruns of whatever directory the
    run started in).
    """
    try:
        if mlflow.get_experiment_by_name(name) is None:
            _create_experiment(name)
        experiment = mlflow.set_experiment(name)
    except mlflow.exceptions.MlflowException as exc:
        raise TrackingError(
            f"cannot open MLflow experiment {name!r} in {mlflow.get_tracking_uri()}: {exc.message}"
        ) from None
    return experiment.experiment_id


def artifact_location(database: Path, experiment: str) -> Path:
    """Where a SQLite store keeps an experiment's artifacts: ``<database stem>-artifacts/``
    beside the database, one folder per experiment (its name, reduced to a plain folder
    name). A folder of our own: ``<db dir>/<experiment>`` could be the user's (a data folder
    named like the experiment would fill with our files, and a corpus run would then read
    them as data), and a name with ``/`` or ``..`` could point anywhere."""
    folder = re.sub(r"[^A-Za-z0-9_.-]+", "_", experiment).lstrip(".") or "experiment"
    database = database.resolve()
    return database.parent / f"{database.stem}-artifacts" / folder


def _create_experiment(name: str) -> None:
    uri = mlflow.get_tracking_uri()
    location = None
    if uri.startswith("sqlite:///"):
        database = Path(uri.removeprefix("sqlite:///"))
        location = artifact_location(database, name).as_uri()
    try:
        mlflow.create_experiment(name, artifact_location=location)
    except mlflow.exceptions.MlflowException as exc:
        if exc.error_code != "RESOURCE_ALREADY_EXISTS":  # another process won the race: fine
            raise


UI_ADDRESS = "http://127.0.0.1:5000"  # where ``mlflow ui`` serves by default


def runs_table_url(base: str, experiment_id: str) -> str:
    """The MLflow UI page of an experiment's runs table (MLflow 3 opens its GenAI page unless
    told the workflow is machine learning)."""
    return f"{base.rstrip('/')}/#/experiments/{experiment_id}/runs?workflowType=machine_learning"


def where_to_view(uri: str, experiment_id: str) -> str:
    """How to see the experiment's runs: a link to the server's runs table, or for a local
    store the ``mlflow ui`` command (absolute store path: it works from any folder) and then
    the link."""
    if uri.startswith(("http://", "https://")):
        return f"open {runs_table_url(uri, experiment_id)}"
    store = uri
    if uri.startswith("sqlite:///"):
        store = "sqlite:///" + str(Path(uri.removeprefix("sqlite:///")).absolute())
    elif "://" not in uri:
        store = str(Path(uri).absolute())
    url = runs_table_url(UI_ADDRESS, experiment_id)
    return f"run `mlflow ui --backend-store-uri {store}`, then open {url}"


def run_summary(run_id: str, uri: str) -> str:
    """The printed line that names a run and where to see it."""
    experiment_id = mlflow.MlflowClient(uri).get_run(run_id).info.experiment_id
    return f"MLflow run {run_id}; to view it: {where_to_view(uri, experiment_id)}"


def git_commit() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            cwd=Path(__file__).resolve().parent,
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return out.stdout.strip() or "unknown"


@contextlib.contextmanager
def tracked_run(
    run_name: str, tags: dict[str, str], run_id: str | None = None, nested: bool = False
) -> Iterator[mlflow.ActiveRun]:
    """An MLflow run that ends FINISHED, FAILED (error message as tag ``error``) or KILLED
    (Ctrl-C or SIGTERM, the reason as tag ``error``).

    The run is tagged with the process that runs it (``pid``, ``host``), so a run left RUNNING
    by a SIGKILL can be told from a live one. If the store itself is what failed, the run is
    left as it is (the original error is what the user needs to see).
    """
    base_tags = {"git_commit": git_commit(), "host": socket.gethostname(), "pid": str(os.getpid())}
    run = mlflow.start_run(
        run_id=run_id, run_name=None if run_id else run_name, nested=nested, tags=base_tags | tags
    )
    try:
        yield run
    except KeyboardInterrupt as exc:
        _end_run("KILLED", stop_reason(exc))
        raise
    except BaseException as exc:
        _end_run("FAILED", describe(exc) or f"{type(exc).__name__}: {exc}")
        raise
    else:
        mlflow.end_run("FINISHED")


def _end_run(status: str, reason: str) -> None:
    """End the active run with ``reason`` as tag ``error``, best effort."""
    with contextlib.suppress(Exception):
        mlflow.set_tag("error", reason[:5000])
    with contextlib.suppress(Exception):
        mlflow.end_run(status)  # pops the run locally even when the store is gone


def log_params(params: dict[str, Any]) -> None:
    """Log a flat config; values MLflow cannot store are written as strings."""
    mlflow.log_params(
        {
            k: v if isinstance(v, int | float | str | bool) else json.dumps(v)
            for k, v in params.items()
        }
    )


def log_config(cfg: TaskConfig, extra: dict[str, Any] | None = None) -> None:
    """The resolved config as params (paths shortened to their stem, see
    :mod:`pipelines.core.naming`) with ``extra``, and as given in ``config.json``."""
    params = cfg.to_params()
    log_params(short_params(params) | (extra or {}))
    mlflow.log_dict(params, "config.json")


class EpochMetrics(keras.callbacks.Callback):
    """Log every epoch's training and validation metrics to the active MLflow run."""

    def __init__(self, prefix: str = ""):
        super().__init__()
        self.prefix = prefix

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        finite = epoch_metrics(logs, self.prefix)
        if finite:
            mlflow.log_metrics(finite, step=epoch + 1)  # epoch 1 first, as in our figures


def epoch_metrics(logs: dict | None, prefix: str = "") -> dict[str, float]:
    """An epoch's finite scalar logs as MLflow metrics, names prefixed."""
    logs = logs or {}
    return {f"{prefix}{k}": float(v) for k, v in logs.items() if np.isscalar(v) and np.isfinite(v)}


def metric_name(name: str) -> str:
    """``test_`` prefix unless the metric is already scoped (``baseline_...``, a stage's
    ``pretrain/train_seconds``)."""
    scoped = "/" in name or name.startswith(("test_", "baseline_", "val_", "train_"))
    return name if scoped else f"test_{name}"


def report_metrics(report: Report) -> dict[str, float]:
    """The report's metrics under the names they are logged with."""
    return {metric_name(k): float(v) for k, v in report.metrics.items()}


def log_report(report: Report, model_id: str | None = None) -> dict[str, float]:
    """Log metrics (NaN dropped, with a tag saying so), figures as ``<name>.png`` at the
    artifact root, tables as ``results/<name>.csv``.

    The metrics are linked to the logged model ``model_id`` (its quality in the Models tab)
    and to no other model of the run.
    """
    metrics = report_metrics(report)
    finite = {k: v for k, v in metrics.items() if np.isfinite(v)}
    mlflow.log_metrics(finite, model_id=model_id)
    undefined = sorted(set(metrics) - set(finite))
    if undefined:
        mlflow.set_tag("undefined_metrics", ",".join(undefined))
    for name, figure in report.figures.items():  # at the root: MLflow's compare page shows
        mlflow.log_figure(figure, f"{name}.png")  # only root files side by side
    with tempfile.TemporaryDirectory() as tmp:
        for name, table in report.tables.items():
            path = Path(tmp) / f"{name}.csv"
            table.to_csv(path, index=False)
            mlflow.log_artifact(str(path), artifact_path="results")
    for name, obj in report.artifacts.items():
        mlflow.log_dict(obj, f"results/{name}.json")
    for name, text in report.texts.items():
        mlflow.log_text(text, f"results/{name}")
    return metrics


def log_keras_model(model: keras.Model, input_example: Any) -> str:
    """Log ``model`` as the run's MLflow 3 logged model ``model`` (mlflow.keras flavor, input
    example, signature inferred from a real batch); returns its model id.

    Log it before the run's final metrics (:func:`log_report` links them to it): MLflow links
    a logged model to every step-0 metric the run already holds, so a second model logged after
    them (anomaly's scorer) would claim them too.
    """
    signature = mlflow.models.infer_signature(
        input_example, np.asarray(model.predict(input_example, verbose=0))
    )
    info = mlflow.models.Model.log(
        artifact_path=None,
        name="model",
        flavor=_KerasFlavor,
        flavor_name="mlflow.keras",
        model=model,
        signature=signature,
        input_example=input_example,
        pip_requirements=pip_requirements(),
        # Validation reloads and reruns the model only to warn; our tests reload it for real.
        validate_serving_input=False,
    )
    return info.model_id


class _KerasFlavor:
    """``mlflow.keras`` for ``Model.log``, creating the model folder first: mlflow.keras's
    ``save_model`` writes the input example before it creates the folder, so
    ``mlflow.keras.log_model(..., input_example=...)`` fails (mlflow/mlflow#16183, 3.17)."""

    @staticmethod
    def save_model(path: str, validate_serving_input: bool = True, **kwargs: Any) -> None:
        Path(path).mkdir(parents=True, exist_ok=True)
        mlflow.keras.save_model(path=path, **kwargs)


def register_model(model_id: str, name: str) -> str:
    """Register the logged model ``model_id`` as a new version of ``name``; its URI."""
    try:
        version = mlflow.register_model(f"models:/{model_id}", name)
    except mlflow.exceptions.MlflowException as exc:
        raise TrackingError(f"cannot register the model as {name!r}: {exc.message}") from None
    return f"models:/{name}/{version.version}"


def pip_requirements() -> list[str]:
    """Pinned to the running versions; skips MLflow's slow requirement inference."""
    import importlib.metadata as md

    return [f"{pkg}=={md.version(pkg)}" for pkg in ("tensorflow", "keras", "mlflow", "numpy")]
