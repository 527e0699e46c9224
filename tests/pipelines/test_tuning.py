"""KerasTuner search via the runner: parent and child runs, resume, failed trials, chief/workers.

Seed 4 makes the random oracle pick windows 16 and 32 for the first two trials (so the data is
rebuilt per trial) and no cell/dropout combination that diverges on this tiny series.
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import mlflow
import pytest

from pipelines.anomaly.task import AnomalyConfig, AnomalyTask
from pipelines.core import RunOptions, main, run
from pipelines.core.tuning import TaskHyperModel
from tests.conftest import finish, free_port, mlflow_server, reaped, runs_of
from tests.pipelines.test_anomaly import ecg_like_csv

REPO = Path(__file__).parents[2]


def tiny_config(data: Path) -> AnomalyConfig:
    return AnomalyConfig(
        data=str(data),
        time_column="timestamp",
        label_column="label",
        epochs=1,
        units=8,
        window=32,
        stride=8,
        batch_size=32,
        seed=4,
    )


def parent_and_children(uri: str, experiment: str = "anomaly"):
    runs = runs_of(uri, experiment)
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    return parents, children


def test_killed_search_resumes_without_rerunning_finished_trials(
    workdir, tracking_uri, monkeypatch
):
    cfg = tiny_config(ecg_like_csv(workdir / "series.csv"))
    opts = RunOptions(
        tune=True,
        max_trials=2,
        tracking_uri=tracking_uri,
        output=str(workdir / "out"),
        log_model=False,
    )
    fits = []
    original_fit = TaskHyperModel.fit

    def killed_in_second_trial(self, *args, **kwargs):
        fits.append(1)
        if len(fits) == 2:
            raise KeyboardInterrupt
        return original_fit(self, *args, **kwargs)

    monkeypatch.setattr(TaskHyperModel, "fit", killed_in_second_trial)
    with pytest.raises(KeyboardInterrupt):
        run(AnomalyTask(), cfg, opts)
    (killed,), _ = parent_and_children(tracking_uri)
    assert killed.info.status == "KILLED"
    monkeypatch.setattr(TaskHyperModel, "fit", original_fit)

    result = run(AnomalyTask(), cfg, dataclasses.replace(opts, resume=True))
    (parent,), children = parent_and_children(tracking_uri)
    assert parent.info.run_id == killed.info.run_id == result.run_id
    assert parent.info.status == "FINISHED"
    attempts = sorted((c.data.tags["trial_id"], c.info.status) for c in children)
    assert attempts == [("0", "FINISHED"), ("1", "FINISHED"), ("1", "KILLED")]
    trial_dirs = sorted(p.name for p in (workdir / "out" / "tuner" / "anomaly").glob("trial_*"))
    assert trial_dirs == ["trial_0", "trial_1"]


class ExplodingAnomaly(AnomalyTask):
    """A search space of two points, one of which cannot be built."""

    def data_hyperparameters(self, space):
        return {}

    def build_model(self, cfg, splits, hp=None):
        if hp is not None and hp.Boolean("explode"):
            raise ValueError("boom")
        return super().build_model(cfg, splits)


def test_a_failing_trial_is_failed_and_the_search_completes(workdir, tracking_uri):
    cfg = tiny_config(ecg_like_csv(workdir / "series.csv"))
    opts = RunOptions(tune=True, max_trials=2, tracking_uri=tracking_uri, log_model=False)
    result = run(ExplodingAnomaly(), cfg, opts)
    (parent,), children = parent_and_children(tracking_uri)
    assert parent.info.status == "FINISHED" and parent.info.run_id == result.run_id
    by_status = {c.info.status: c for c in children}
    assert sorted(by_status) == ["FAILED", "FINISHED"]
    assert by_status["FAILED"].data.tags["error"] == "ValueError: boom"
    assert by_status["FAILED"].data.params["explode"] == "True"
    assert parent.data.params["best_explode"] == "False"
    assert "test_roc_auc" in parent.data.metrics
    assert (workdir / "mlruns" / "tuner" / "anomaly" / "oracle.json").exists()


@pytest.mark.slow
def test_chief_and_two_workers_log_every_trial_once_to_one_server(tmp_path):
    """Loopback cluster: an MLflow server, a chief oracle and two workers as real processes."""
    data = ecg_like_csv(tmp_path / "series.csv")
    oracle_port = free_port()
    with mlflow_server(tmp_path) as uri, reaped() as processes:
        # Created up front: three processes creating it at once race in MLflow (one loses with
        # RESOURCE_ALREADY_EXISTS); the race belongs to experiment creation, not to tuning.
        mlflow.MlflowClient(uri).create_experiment("anomaly")
        args = [sys.executable, "-m", "pipelines.anomaly", "--data", str(data)] + (
            "--tune --max-trials 3 --time-column timestamp --label-column label --epochs 1 "
            f"--units 8 --window 32 --stride 8 --batch-size 32 --seed 4 --tracking-uri {uri} "
            "--no-log-model"
        ).split()
        for tuner_id in ("chief", "tuner0", "tuner1"):
            env = os.environ | {
                "PYTHONPATH": str(REPO),
                "KERASTUNER_TUNER_ID": tuner_id,
                "KERASTUNER_ORACLE_IP": "127.0.0.1",
                "KERASTUNER_ORACLE_PORT": str(oracle_port),
            }
            processes[tuner_id] = subprocess.Popen(
                [*args, "--output", str(tmp_path / tuner_id)],
                cwd=tmp_path,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        outputs = finish(processes)
        (parent,), children = parent_and_children(uri)
        assert parent.info.status == "FINISHED" and "test_roc_auc" in parent.data.metrics
        assert sorted(c.data.tags["trial_id"] for c in children) == ["0", "1", "2"]
        assert {c.data.tags["mlflow.parentRunId"] for c in children} == {parent.info.run_id}
        assert {c.data.tags["tuner_id"] for c in children} <= {"tuner0", "tuner1"}
        assert parent.info.run_id in outputs["chief"]


class BrokenAnomaly(ExplodingAnomaly):
    """Every trial raises."""

    def build_model(self, cfg, splits, hp=None):
        if hp is not None and hp.values.get("explode") is not None:
            raise ValueError("boom")
        return super().build_model(cfg, splits, hp)


def test_a_search_whose_trials_all_fail_is_exit_2_and_a_failed_parent(
    workdir, tracking_uri, capsys
):
    data = ecg_like_csv(workdir / "series.csv")
    flags = "--tune --max-trials 2 --epochs 1 --units 8 --window 32 --no-log-model"
    code = main(
        BrokenAnomaly(),
        [*flags.split(), "--data", str(data), "--tracking-uri", tracking_uri],
    )
    last_line = capsys.readouterr().err.strip().splitlines()[-1]
    assert code == 2
    assert last_line == "error: all 2 trials failed; last error: ValueError: boom"
    (parent,), children = parent_and_children(tracking_uri)
    assert parent.info.status == "FAILED" and "all 2 trials failed" in parent.data.tags["error"]
    assert [c.info.status for c in children] == ["FAILED", "FAILED"]
