"""Never lose a user's files, runs or store; every failure one line; resume that cannot lie.

Most of these tests never train: the failures they check happen before any training. The few
that fit do so on a 64-row linear problem for a few epochs.
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import keras
import mlflow
import numpy as np
import pytest
import requests
import tensorflow as tf

from pipelines.core import main, run
from pipelines.core.config import RunOptions, TaskConfig, new_default, option
from pipelines.core.errors import ConfigError
from pipelines.core.outputs import OutputFolder, replace_folder
from pipelines.core.resume import JOURNAL, Checkpoints
from pipelines.core.task import Report, Splits, Task
from tests.conftest import reaped

REPO = Path(__file__).resolve().parents[2]


def user_files(folder: Path) -> dict[str, bytes]:
    """A user's folder with a file at the top and one below, as the issue's reporter had."""
    (folder / "sub").mkdir(parents=True)
    (folder / "thesis.txt").write_text("three years of work")
    (folder / "sub" / "data.bin").write_bytes(b"\x00\x01")
    return snapshot(folder)


def snapshot(folder: Path) -> dict[str, bytes]:
    return {
        p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()
    }


def one_error_line(capsys: pytest.CaptureFixture) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: "), err
    return err[0]


# 1. export never deletes what we did not write


def test_export_refuses_a_folder_of_user_files_and_leaves_them(tmp_path, capsys):
    from pipelines.export import main as export_main

    folder = tmp_path / "mine"
    before = user_files(folder)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    code = export_main(["--run-id", "0" * 32, "--output", str(folder), "--tracking-uri", uri])
    line = one_error_line(capsys)
    assert code == 2 and "holds files we did not write (thesis.txt, sub/)" in line
    assert snapshot(folder) == before
    assert not (tmp_path / "mlflow.db").exists()  # refused before the store is touched


def test_export_to_an_existing_file_is_one_line(tmp_path, capsys):
    from pipelines.export import main as export_main

    target = tmp_path / "model.bin"
    target.write_bytes(b"keep")
    code = export_main(["--run-id", "0" * 32, "--output", str(target)])
    assert code == 2 and "is a file, not a folder" in one_error_line(capsys)
    assert target.read_bytes() == b"keep"


def test_an_export_replaces_an_earlier_export_but_not_a_file_added_to_it(tmp_path):
    folder = tmp_path / "export"

    def write(version: str):
        def files(staged: Path) -> None:
            (staged / "variables").mkdir()
            (staged / "variables" / "weights").write_text(version)
            (staged / "saved_model.pb").write_text(version)

        return files

    replace_folder(OutputFolder(folder), write("1"), run_id="a")
    replace_folder(OutputFolder(folder), write("2"), run_id="b")
    assert (folder / "variables" / "weights").read_text() == "2"
    assert json.loads((folder / "run.json").read_text())["run_id"] == "b"
    (folder / "variables" / "notes.txt").write_text("mine")
    with pytest.raises(ConfigError, match=r"did not write \(variables/notes.txt\)"):
        OutputFolder(folder)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["export"]  # no staging left


# 2. checkpoints live under a name we own; only our files are touched


@dataclass
class LinearConfig(TaskConfig):
    epochs: int = new_default("epochs", 4)
    patience: int = new_default("patience", 0)
    learning_rate: float = new_default("learning_rate", 0.05)
    pause: float = option(0.0, "seconds each training batch sleeps (a run slow enough to kill)")


class LinearTask(Task):
    """y = x @ w on 64 rows: a whole run takes a second or two."""

    name = "linear"
    config_class = LinearConfig

    def data(self, cfg: LinearConfig) -> Splits:
        x = np.random.default_rng(cfg.seed).normal(size=(64, 3)).astype("float32")
        data = tf.data.Dataset.from_tensor_slices((x, x @ np.array([[1], [-2], [0.5]], "f4")))
        train = data.batch(16)
        if cfg.pause:

            def pause(batch):
                time.sleep(cfg.pause)
                return batch

            slow = lambda x, y: (tf.numpy_function(pause, [x], tf.float32), y)  # noqa: E731
            train = train.map(slow).map(lambda x, y: (tf.ensure_shape(x, [None, 3]), y))
        return Splits(train, data.batch(32), data.batch(32))

    def build_model(self, cfg: LinearConfig, splits: Splits, hp=None) -> keras.Model:
        model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
        model.compile(keras.optimizers.SGD(cfg.learning_rate), "mse")
        return model

    def evaluate(self, model: keras.Model, splits: Splits, cfg: LinearConfig) -> Report:
        return Report(metrics={"mse": float(model.evaluate(splits.test, verbose=0))})


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> str:
    """One SQLite store for the module (creating one costs seconds); tests use own experiments."""
    return f"sqlite:///{tmp_path_factory.mktemp('store') / 'mlflow.db'}"


def options(store: str, experiment: str, **changes) -> RunOptions:
    opts = RunOptions(tracking_uri=store, experiment=experiment, output="out", log_model=False)
    return dataclasses.replace(opts, **changes)


def loss_steps(store: str, run_id: str) -> list[int]:
    history = mlflow.MlflowClient(store).get_metric_history(run_id, "loss")
    return sorted(m.step for m in history)


def test_checkpoints_are_ours_and_go_when_training_ends(workdir, store):
    seen = []
    original = Checkpoints.on_epoch_end

    def look(self, epoch, logs=None):
        original(self, epoch, logs)
        seen.append(sorted(p.name for p in (workdir / "out/.pipelines/checkpoints").iterdir()))

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(Checkpoints, "on_epoch_end", look)
        result = run(LinearTask(), LinearConfig(epochs=2), options(store, "ours"))
    assert {"latest.weights.h5", "training_metadata.json", JOURNAL} <= set(seen[-1])
    assert sorted(p.name for p in (workdir / "out").iterdir()) == ["metrics.json", "run.json"]
    state = json.loads((workdir / "out/run.json").read_text())
    assert state["run_id"] == result.run_id and state["config"]["epochs"] == 2
    assert state["files"] == ["metrics.json"]
    assert loss_steps(store, result.run_id) == [1, 2]


# 4 and 5. a rerun never loses an interrupted run; resume checks what it resumes; each epoch
# reaches MLflow once, wherever the kill falls

KILLS = {
    # where the kill falls in the epoch's end: what the checkpoint holds decides what is redone
    "before the checkpoint": (keras.callbacks.BackupAndRestore, "on_epoch_end"),
    "before sending": (Checkpoints, "_send"),
    "after sending": (Checkpoints, "on_epoch_end"),
}


def killed_at_epoch(where: str, store: str, experiment: str, kill_epoch: int = 2) -> str:
    """Run LinearTask until a Ctrl-C at the end of epoch ``kill_epoch``; its run id."""
    owner, name = KILLS[where]
    original = getattr(owner, name)

    def killed(self, epoch, *args):
        if where != "after sending" and epoch == kill_epoch:
            raise KeyboardInterrupt
        original(self, epoch, *args)
        if epoch == kill_epoch:
            raise KeyboardInterrupt

    with pytest.MonkeyPatch.context() as patch, pytest.raises(KeyboardInterrupt):
        patch.setattr(owner, name, killed)
        run(LinearTask(), LinearConfig(), options(store, experiment))
    return json.loads(Path("out/run.json").read_text())["run_id"]


@pytest.mark.parametrize("where", sorted(KILLS))
def test_a_killed_run_resumes_into_its_run_each_epoch_logged_once(where, workdir, store):
    experiment = f"kill-{where.replace(' ', '-')}"
    run_id = killed_at_epoch(where, store, experiment)
    killed = mlflow.MlflowClient(store).get_run(run_id)
    assert killed.info.status == "KILLED" and killed.data.tags["error"] == "interrupted by Ctrl-C"
    assert loss_steps(store, run_id) == ([1, 2, 3] if where == "after sending" else [1, 2])
    result = run(LinearTask(), LinearConfig(), options(store, experiment, resume=True))
    assert result.run_id == run_id
    assert mlflow.MlflowClient(store).get_run(run_id).info.status == "FINISHED"
    assert loss_steps(store, run_id) == [1, 2, 3, 4]


def test_a_rerun_without_resume_keeps_the_interrupted_run(workdir, store, capsys):
    run_id = killed_at_epoch("before sending", store, "rerun")
    before = snapshot(workdir / "out")
    code = main(LinearTask(), ["--tracking-uri", store, "--experiment", "rerun", "--output", "out"])
    line = one_error_line(capsys)
    assert code == 2 and f"holds run {run_id}, interrupted after 3 epoch(s) of the main fit" in line
    assert "add --resume" in line and snapshot(workdir / "out") == before


def test_a_rerun_after_a_sigkill_before_any_checkpoint_closes_the_orphan(workdir, store, capsys):
    mlflow.set_tracking_uri(store)
    mlflow.set_experiment("orphan")
    with mlflow.start_run() as orphan:
        pass
    mlflow.MlflowClient(store).update_run(orphan.info.run_id, "RUNNING")
    gone = subprocess.Popen(["true"])
    gone.wait()
    OutputFolder("out").start_run(orphan.info.run_id, {})
    state = json.loads(Path("out/run.json").read_text()) | {"pid": gone.pid}
    Path("out/run.json").write_text(json.dumps(state))
    code = main(
        LinearTask(), ["--tracking-uri", store, "--experiment", "orphan", "--output", "out"]
    )
    assert code == 0
    assert f"run {orphan.info.run_id} of --output out was left RUNNING" in capsys.readouterr().err
    closed = mlflow.MlflowClient(store).get_run(orphan.info.run_id)
    assert (
        closed.info.status == "KILLED" and "ended without closing it" in closed.data.tags["error"]
    )


def test_resume_refuses_a_changed_flag_and_a_finished_run(workdir, store):
    run_id = killed_at_epoch("before sending", store, "changed")
    changed = LinearConfig(learning_rate=0.02)
    with pytest.raises(
        ConfigError, match=f"--learning-rate is 0.02 but run {run_id} trained with 0.05"
    ):
        run(LinearTask(), changed, options(store, "changed", resume=True))
    run(LinearTask(), LinearConfig(), options(store, "changed", resume=True))
    with pytest.raises(ConfigError, match=f"run {run_id} of --output out has finished"):
        run(LinearTask(), LinearConfig(), options(store, "changed", resume=True))
    assert loss_steps(store, run_id) == [1, 2, 3, 4]


def test_a_tracking_store_failing_mid_run_keeps_the_epochs_for_resume(workdir, store, capsys):
    original = mlflow.log_metrics

    def dies_at_epoch_2(metrics, step=None, **kwargs):
        if step == 2:
            raise requests.exceptions.ConnectionError("Connection refused")
        return original(metrics, step=step, **kwargs)

    argv = ["--tracking-uri", store, "--experiment", "dying", "--output", "out"]
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(mlflow, "log_metrics", dies_at_epoch_2)
        code = main(LinearTask(), argv)
    line = one_error_line(capsys)
    assert code == 2 and "MLflow stopped answering while logging epoch 2" in line
    assert "network: Connection refused" in line and "--resume" in line
    run_id = json.loads(Path("out/run.json").read_text())["run_id"]
    assert loss_steps(store, run_id) == [1]
    assert main(LinearTask(), [*argv, "--resume"]) == 0
    assert loss_steps(store, run_id) == [1, 2, 3, 4]


# 3. concurrent first runs on a store that does not exist yet

FIRST_RUN = """
import sys, types
from pathlib import Path
repo = Path(sys.argv[2])
for name in ("pipelines", "pipelines.core"):  # their __init__ would import TensorFlow
    module = types.ModuleType(name)
    module.__path__ = [str(repo / name.replace(".", "/"))]
    sys.modules[name] = module
import mlflow
from pipelines.core.store import open_sqlite_store
open_sqlite_store(sys.argv[1])
mlflow.set_tracking_uri(sys.argv[1])
try:
    mlflow.create_experiment("first")
except mlflow.exceptions.MlflowException:
    pass  # another process created it
mlflow.set_experiment("first")
with mlflow.start_run():
    mlflow.log_metric("loss", 1.0)
"""


def test_four_first_runs_on_a_new_store_all_finish(tmp_path):
    """Without the lock all four die in the schema migration (tried: 4 of 4)."""
    uri = f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}"
    with reaped() as processes:
        for index in range(4):
            processes[index] = subprocess.Popen(
                [sys.executable, "-c", FIRST_RUN, uri, str(REPO)],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        for index, process in processes.items():
            _, err = process.communicate(timeout=600)
            assert process.returncode == 0, (index, err[-2000:])
    client = mlflow.MlflowClient(uri)
    runs = client.search_runs([client.get_experiment_by_name("first").experiment_id])
    assert len(runs) == 4 and {r.info.status for r in runs} == {"FINISHED"}
