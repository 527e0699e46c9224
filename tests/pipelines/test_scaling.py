"""Scale-out, proved with real processes on 127.0.0.1: multi-worker training, a SIGKILLed run
resumed, two pipelines writing to one MLflow server at once, and a whole pipeline in bfloat16."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import keras
import mlflow
import numpy as np
import pytest
import tensorflow as tf

from pipelines.anomaly.task import AnomalyTask
from pipelines.core import RunOptions, run
from tests.conftest import finish, free_port, mlflow_server, reaped, runs_of
from tests.pipelines.test_anomaly import ecg_like_csv
from tests.pipelines.test_tuning import tiny_config

REPO = Path(__file__).parents[2]
TINY = "--time-column timestamp --label-column label --units 8 --window 32 --batch-size 32"
FORECAST_TINY = "--time-column timestamp --target-column value --horizon 6 --window 48 --units 8"

# One worker of a two-worker cluster: runs the anomaly pipeline, saves its final weights.
WORKER = """
import dataclasses, sys
import numpy as np
from pipelines.anomaly.task import AnomalyTask
from pipelines.core import RunOptions, run
from tests.pipelines.test_tuning import tiny_config

data, uri, output, weights = sys.argv[1:]
cfg = dataclasses.replace(tiny_config(data), epochs=2)
opts = RunOptions(strategy="multiworker", tracking_uri=uri, output=output)
result = run(AnomalyTask(), cfg, opts)
np.savez(weights, *result.model.get_weights())
"""


def cluster_env(ports: list[int], index: int) -> dict[str, str]:
    cluster = {"worker": [f"127.0.0.1:{port}" for port in ports]}
    tf_config = {"cluster": cluster, "task": {"type": "worker", "index": index}}
    return os.environ | {"TF_CONFIG": json.dumps(tf_config), "PYTHONPATH": str(REPO)}


def loss_steps(uri: str, run_id: str) -> list[int]:
    return sorted(m.step for m in mlflow.MlflowClient(uri).get_metric_history(run_id, "loss"))


@pytest.mark.slow
def test_two_workers_end_with_identical_weights_and_one_run_logged_by_the_chief(tmp_path):
    data = ecg_like_csv(tmp_path / "series.csv")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    ports = [free_port(), free_port()]
    with reaped() as processes:
        for index in (0, 1):
            args = [data, uri, tmp_path / f"out{index}", tmp_path / f"weights{index}.npz"]
            processes[f"worker{index}"] = subprocess.Popen(
                [sys.executable, "-c", WORKER, *map(str, args)],
                cwd=tmp_path,
                env=cluster_env(ports, index),
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        finish(processes)
    chief, worker = (np.load(tmp_path / f"weights{i}.npz") for i in (0, 1))
    assert len(chief.files) == len(worker.files) > 0
    for name in chief.files:
        np.testing.assert_array_equal(chief[name], worker[name])
    (logged,) = runs_of(uri, "anomaly")
    assert logged.info.status == "FINISHED" and "test_roc_auc" in logged.data.metrics
    assert loss_steps(uri, logged.info.run_id) == [1, 2]
    assert json.loads((tmp_path / "out0" / "run.json").read_text())["run_id"] == logged.info.run_id
    assert not (tmp_path / "out1" / "metrics.json").exists()  # the worker writes nothing


def test_jit_compile_under_multiworker_on_cpu_is_refused_in_one_line(tmp_path):
    data = ecg_like_csv(tmp_path / "series.csv")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"  # explicit: mlflow exports the last URI it saw
    process = subprocess.run(
        [sys.executable, "-m", "pipelines.anomaly", "--data", str(data), *TINY.split()]
        + ["--strategy", "multiworker", "--jit-compile", "--epochs", "1", "--tracking-uri", uri],
        cwd=tmp_path,
        env=cluster_env([free_port()], 0),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert process.returncode == 2
    assert process.stderr.strip().splitlines() == [
        "error: --jit-compile with --strategy multiworker needs GPUs or TPUs "
        "(XLA has no cross-worker collectives on CPU)"
    ]
    (failed,) = runs_of(uri, "anomaly")
    assert failed.info.status == "FAILED"


@pytest.mark.slow
def test_sigkilled_run_resumes_into_the_same_mlflow_run_losing_at_most_one_epoch(tmp_path):
    data = ecg_like_csv(tmp_path / "series.csv", n=6000, anomaly=(5000, 5040))
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    output, epochs = tmp_path / "out", 6
    command = [sys.executable, "-m", "pipelines.anomaly", "--data", str(data), *TINY.split()]
    command += f"--stride 1 --epochs {epochs} --patience 0 --seed 3 --no-log-model".split()
    command += ["--tracking-uri", uri, "--output", str(output)]
    env = os.environ | {"PYTHONPATH": str(REPO)}
    first = subprocess.Popen(command, cwd=tmp_path, env=env, stderr=subprocess.DEVNULL)
    metadata = output / ".pipelines" / "checkpoints" / "training_metadata.json"
    try:
        deadline = time.monotonic() + 300
        while not (metadata.exists() and json.loads(metadata.read_text() or "{}").get("epoch")):
            assert first.poll() is None and time.monotonic() < deadline, "no checkpoint written"
            time.sleep(0.05)
        first.send_signal(signal.SIGKILL)  # one epoch finished, the next under way
        first.wait(timeout=30)
    finally:
        if first.poll() is None:
            first.kill()
    run_id = json.loads((output / "run.json").read_text())["run_id"]
    before = loss_steps(uri, run_id)
    finished = json.loads(metadata.read_text())["epoch"]
    assert (
        1 <= finished < epochs and mlflow.MlflowClient(uri).get_run(run_id).info.status == "RUNNING"
    )

    resumed = subprocess.run(
        [*command, "--resume"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600
    )
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    (logged,) = runs_of(uri, "anomaly")
    assert logged.info.run_id == run_id and logged.info.status == "FINISHED"
    after = loss_steps(uri, run_id)
    assert sorted(set(after)) == list(range(1, epochs + 1))
    # Epochs the checkpoint held are not trained again; at most the one under way is redone.
    assert all(after.count(step) == 1 for step in range(1, finished + 1))
    assert len(after) - epochs <= 1 and before == sorted(set(before))
    assert "test_roc_auc" in logged.data.metrics and (output / "metrics.json").exists()


@pytest.mark.slow
def test_two_pipelines_logging_at_once_to_one_server_lose_no_run_and_no_metric(tmp_path):
    data = ecg_like_csv(tmp_path / "series.csv")
    epochs = 3
    with mlflow_server(tmp_path) as uri, reaped() as processes:
        for name, flags in {"anomaly": TINY, "forecast": FORECAST_TINY}.items():
            processes[name] = subprocess.Popen(
                [sys.executable, "-m", f"pipelines.{name}", "--data", str(data), *flags.split()]
                + f"--epochs {epochs} --patience 0 --stride 4 --no-log-model".split()
                + ["--experiment", "shared", "--tracking-uri", uri]
                + ["--output", str(tmp_path / name)],
                cwd=tmp_path,
                env=os.environ | {"PYTHONPATH": str(REPO)},
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        finish(processes)
        logged = {r.data.tags["task"]: r for r in runs_of(uri, "shared")}
        assert sorted(logged) == ["anomaly", "forecast"]
        for name, found in logged.items():
            assert found.info.status == "FINISHED"
            assert loss_steps(uri, found.info.run_id) == list(range(1, epochs + 1))
            written = json.loads((tmp_path / name / "metrics.json").read_text())
            finite = {k: v for k, v in written.items() if np.isfinite(v)}
            assert finite and {k: found.data.metrics[k] for k in finite} == pytest.approx(finite)


def test_a_whole_pipeline_trains_and_evaluates_under_mixed_bfloat16(workdir, tracking_uri):
    data = ecg_like_csv(workdir / "series.csv")
    cfg = dataclasses.replace(tiny_config(data), epochs=2)
    opts = RunOptions(precision="mixed_bfloat16", tracking_uri=tracking_uri)
    try:
        result = run(AnomalyTask(), cfg, opts)
    finally:
        keras.mixed_precision.set_global_policy("float32")
    recurrent = [layer for layer in result.model.layers if hasattr(layer, "cell")]
    assert recurrent and all(layer.compute_dtype == "bfloat16" for layer in recurrent)
    assert all(v.dtype == "float32" for v in result.model.trainable_variables)
    assert np.isfinite(result.history["loss"]).all()
    assert result.history["loss"][-1] < result.history["loss"][0]
    logged = mlflow.MlflowClient(tracking_uri).get_run(result.run_id)
    assert logged.data.params["precision"] == "mixed_bfloat16"
    assert np.isfinite(logged.data.metrics["test_roc_auc"])


def test_mirrored_strategy_holds_every_variable_and_trains_with_xla(workdir, tracking_uri):
    data = ecg_like_csv(workdir / "series.csv")
    cfg = dataclasses.replace(tiny_config(data), epochs=2)
    opts = RunOptions(strategy="mirrored", jit_compile=True, tracking_uri=tracking_uri)
    result = run(AnomalyTask(), cfg, opts)
    assert result.model.jit_compile and result.model.weights
    assert all(isinstance(w.value, tf.distribute.DistributedValues) for w in result.model.weights)
    assert result.history["loss"][-1] < result.history["loss"][0]
    assert np.isfinite(result.metrics["test_roc_auc"])
