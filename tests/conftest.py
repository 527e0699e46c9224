"""Shared fixtures: every test runs in its own directory with its own MLflow store."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import mlflow  # noqa: E402
import pytest  # noqa: E402

import pipelines  # noqa: E402, F401  (quiet TensorFlow start-up)


@pytest.fixture(autouse=True)
def no_active_experiment_left() -> Iterator[None]:
    """A test that selects an experiment of its own store must not hand it to the next test."""
    yield
    if mlflow.active_run():
        mlflow.end_run()
    mlflow.tracking.fluent._active_experiment_id = None
    os.environ.pop("MLFLOW_EXPERIMENT_ID", None)


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


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until_healthy(url: str, process: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"mlflow server exited with {process.returncode}")
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2):
                return
        except OSError:
            time.sleep(1)
    raise TimeoutError(f"mlflow server at {url} did not answer within {timeout} s")


@contextlib.contextmanager
def mlflow_server(root: Path) -> Iterator[str]:
    """A real ``mlflow server`` on 127.0.0.1 (SQLite store and artifacts under ``root``)."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    server = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "server"]
        + f"--backend-store-uri sqlite:///{root / 'server.db'}".split()
        + f"--default-artifact-root {root / 'artifacts'}".split()
        + f"--host 127.0.0.1 --port {port} --workers 1".split(),
        cwd=root,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # its uvicorn and job workers die with it
    )
    try:
        wait_until_healthy(url, server)
        yield url
    finally:
        os.killpg(server.pid, signal.SIGKILL)
        server.wait(timeout=30)


@contextlib.contextmanager
def reaped() -> Iterator[dict[str, subprocess.Popen]]:
    """A dict to hold started processes; any still alive at the end is killed."""
    processes: dict[str, subprocess.Popen] = {}
    try:
        yield processes
    finally:
        for process in processes.values():
            if process.poll() is None:
                process.kill()
                process.wait(timeout=30)


def finish(processes: dict[str, subprocess.Popen], timeout: float = 600) -> dict[str, str]:
    """Wait for every process; assert each exited 0; return their stdout."""
    outputs = {name: p.communicate(timeout=timeout) for name, p in processes.items()}
    for name, process in processes.items():
        assert process.returncode == 0, (name, outputs[name][1][-3000:])
    return {name: out for name, (out, _) in outputs.items()}


def logged_models(uri: str, run: mlflow.entities.Run) -> dict[str, mlflow.entities.LoggedModel]:
    """The MLflow 3 logged models a run produced, by name."""
    client = mlflow.MlflowClient(uri)
    found = client.search_logged_models(
        [run.info.experiment_id], filter_string=f"source_run_id = '{run.info.run_id}'"
    )
    return {model.name: model for model in found}
