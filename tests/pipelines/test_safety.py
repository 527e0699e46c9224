"""Never lose a user's files, runs or store; every failure one line; resume that cannot lie.

Most of these tests never train: the failures they check happen before any training. The few
that fit do so on a 64-row linear problem for a few epochs.
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import socket
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
from pipelines.core.outputs import OutputFolder, replace_folder, writable
from pipelines.core.resume import JOURNAL, Checkpoints
from pipelines.core.task import Report, Splits, Task
from tests.conftest import reaped, runs_of

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
    data: str = new_default("data", "linear")
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
    orphan = running_run(store, "orphan")
    OutputFolder("out").start_run(orphan, {})
    state = json.loads(Path("out/run.json").read_text()) | {"pid": dead_pid()}
    Path("out/run.json").write_text(json.dumps(state))
    code = main(
        LinearTask(), ["--tracking-uri", store, "--experiment", "orphan", "--output", "out"]
    )
    assert code == 0
    assert f"run {orphan} of --output out was left RUNNING" in capsys.readouterr().err
    closed = mlflow.MlflowClient(store).get_run(orphan)
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


def test_a_new_search_keeps_the_state_of_an_unfinished_one(workdir, store):
    folder = OutputFolder("out")
    oracle = folder.own_tree("tuner") / "linear" / "oracle.json"
    oracle.parent.mkdir(parents=True)
    oracle.write_text("{}")
    with pytest.raises(ConfigError, match=r"holds a search that did not finish \(tuner/linear\)"):
        run(LinearTask(), LinearConfig(), options(store, "search", tune=True))
    assert oracle.read_text() == "{}"


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


# 8. SIGTERM ends a run KILLED like Ctrl-C; runs whose process is gone are found and closed

LINEAR_CLI = (
    "import sys; from pipelines.core import main; from tests.pipelines.test_safety import "
    "LinearTask; sys.exit(main(LinearTask(), sys.argv[1:]))"
)


def test_sigterm_ends_the_run_killed_with_its_checkpoints_kept(workdir, store):
    argv = ["--tracking-uri", store, "--experiment", "sigterm", "--output", "out", "--pause", "0.3"]
    metadata = workdir / "out/.pipelines/checkpoints/training_metadata.json"
    with reaped() as processes, open(workdir / "stderr.txt", "w+") as err:
        process = processes["run"] = subprocess.Popen(
            [sys.executable, "-c", LINEAR_CLI, *argv],
            cwd=workdir,
            env=os.environ | {"PYTHONPATH": str(REPO)},
            stdout=subprocess.DEVNULL,
            stderr=err,
        )
        deadline = time.monotonic() + 300
        while not metadata.exists():  # one epoch saved, the next under way
            assert process.poll() is None and time.monotonic() < deadline, "no checkpoint"
            time.sleep(0.05)
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=120)
        err.seek(0)
        lines = err.read().strip().splitlines()
    assert process.returncode == 143 and lines == ["terminated (SIGTERM)"]
    run_id = json.loads((workdir / "out/run.json").read_text())["run_id"]
    killed = mlflow.MlflowClient(store).get_run(run_id)
    assert killed.info.status == "KILLED" and killed.data.tags["error"] == "terminated by SIGTERM"
    assert metadata.exists()
    assert main(LinearTask(), [*argv, "--resume"]) == 0
    assert loss_steps(store, run_id) == [1, 2, 3, 4]


def dead_pid() -> int:
    gone = subprocess.Popen(["true"])
    gone.wait()
    return gone.pid


def running_run(store: str, experiment: str, **tags: str) -> str:
    """A run left RUNNING by a process that no longer exists (as after a SIGKILL)."""
    mlflow.set_tracking_uri(store)
    mlflow.set_experiment(experiment)
    with mlflow.start_run(tags={"pid": str(dead_pid()), "host": socket.gethostname()} | tags):
        run_id = mlflow.active_run().info.run_id
    mlflow.MlflowClient(store).update_run(run_id, "RUNNING")
    return run_id


def test_runs_cleanup_marks_runs_whose_process_is_gone_killed(workdir, store, capsys):
    from pipelines.runs import main as runs_main

    gone = running_run(store, "cleanup", output="/data/out")
    assert runs_main(["--tracking-uri", store]) == 0
    listed = capsys.readouterr().out
    assert f"process gone: run {gone}" in listed and "--resume (--output /data/out)" in listed
    assert mlflow.MlflowClient(store).get_run(gone).info.status == "RUNNING"  # only listed
    assert runs_main(["--tracking-uri", store, "--cleanup"]) == 0
    assert f"marked KILLED: run {gone}" in capsys.readouterr().out
    closed = mlflow.MlflowClient(store).get_run(gone)
    assert (
        closed.info.status == "KILLED" and "ended without closing it" in closed.data.tags["error"]
    )


def test_a_run_closes_runs_of_its_output_killed_before_their_first_checkpoint(
    workdir, store, capsys
):
    orphan = running_run(store, "orphans", output=str(workdir / "out"))
    argv = ["--tracking-uri", store, "--experiment", "orphans", "--output", "out", "--epochs", "1"]
    assert main(LinearTask(), argv) == 0
    assert f"note: run {orphan} of --output out was left RUNNING" in capsys.readouterr().err
    assert mlflow.MlflowClient(store).get_run(orphan).info.status == "KILLED"


# 7. every expected failure: one line naming the file, flag or store, exit 2, no traceback, no
# file left in --output, the MLflow run (if one started) FAILED. All fail before training.

PIPELINES = ("anomaly", "forecast", "speech", "captioning", "sentiment", "translate", "textgen")


def read_only_folder(tmp: Path) -> Path:
    """A folder nobody can create files in (root ignores permission bits: a read-only mount)."""
    folder = tmp / "read-only"
    folder.mkdir()
    folder.chmod(0o555)
    if writable(folder):
        folder = next((p for p in (Path("/sys"), Path("/proc")) if not writable(p)), None)
        if folder is None:
            pytest.skip("no read-only folder to try (running as root without a read-only mount)")
    return folder


def series_csv(tmp: Path, values) -> str:
    path = tmp / "series.csv"
    lines = [f"{i},{v!r}" for i, v in enumerate(values)]
    path.write_text("timestamp,value\n" + "\n".join(lines) + "\n")
    return str(path)


def run_json(tmp: Path, text: str) -> str:
    (tmp / "out").mkdir()
    (tmp / "out" / "run.json").write_text(text)
    return str(tmp / "out")


SERIES = ("--time-column", "timestamp", "--window", "16", "--epochs", "1")
SINE = [float(np.sin(i / 5)) for i in range(1200)]
BATCH = {"anomaly": ["--protocol", "batch"]}  # the split protocol refuses what online scores
TFDS_SETS = {  # catalogue sets these pipelines read once prepared, never downloaded
    "anomaly": "tfds:mnist",
    "speech": "tfds:speech_commands",
    "captioning": "tfds:coco_captions",
    "sentiment": "tfds:imdb_reviews",
    "textgen": "tfds:tiny_shakespeare",
}
# case: (argv of the test's folder and pipeline, part of the line, pipelines, run FAILED?)
FAILURES = {
    "output is a file": (
        lambda t, p: ["--output", str(t / "run.json")],
        "is a file, not a folder",
        PIPELINES,
        False,
    ),
    "output in a read-only folder": (
        lambda t, p: ["--output", str(read_only_folder(t) / "out")],
        "is not a writable folder",
        PIPELINES,
        False,
    ),
    "store in a read-only folder": (
        lambda t, p: ["--tracking-uri", f"sqlite:///{read_only_folder(t) / 'mlflow.db'}"],
        "is not writable",
        PIPELINES,
        False,
    ),
    "store that is not a database": (
        lambda t, p: ["--tracking-uri", f"sqlite:///{t / 'run.json'}"],
        "is not an SQLite database",
        PIPELINES,
        False,
    ),
    "corrupt run.json": (
        lambda t, p: ["--output", run_json(t, '{"run_id": ')],
        "run.json is unreadable",
        PIPELINES,
        False,
    ),
    "foreign run.json": (
        lambda t, p: ["--output", run_json(t, "[1, 2]")],
        "run.json was not written by these pipelines",
        PIPELINES,
        False,
    ),
    "negative seed": (
        lambda t, p: ["--seed", "-1"],
        "--seed must be in [0, 2**32), got -1",
        PIPELINES,
        True,
    ),
    "empty data": (lambda t, p: ["--data", ""], "--data is empty", PIPELINES, True),
    "infinite learning rate": (
        lambda t, p: ["--learning-rate", "inf"],
        "--learning-rate must be a finite number, got inf",
        PIPELINES,
        True,
    ),
    "epochs 1e30": (
        lambda t, p: ["--epochs", "1e30"],
        "argument --epochs: invalid int value: '1e30' (see --help)",
        PIPELINES,
        False,
    ),
    "unknown flag": (
        lambda t, p: ["--bogus"],
        "unrecognized arguments: --bogus (see --help)",
        PIPELINES,
        False,
    ),
    "malformed TF_CONFIG": (lambda t, p: [], "TF_CONFIG is not valid JSON", PIPELINES, False),
    "a million units": (
        lambda t, p: ["--data", series_csv(t, SINE), *SERIES, "--units", "1000000"],
        "out of memory: lower --units",
        ("anomaly",),
        True,
    ),
    "values beyond float32": (
        lambda t, p: ["--data", series_csv(t, [v * 1e38 for v in SINE]), *SERIES],
        "whose variance overflows float32",
        ("anomaly", "forecast"),
        True,
    ),
    "constant series": (  # online anomaly detection scores it (no alarms, test_anomaly_online)
        lambda t, p: ["--data", series_csv(t, [1.0] * 1200), *SERIES, *BATCH.get(p, [])],
        "constant over the training part",
        ("anomaly", "forecast"),
        True,
    ),
    "binary transcripts.txt": (
        lambda t, p: ["--data", str(binary_transcripts(t))],
        "transcripts.txt is not UTF-8 text",
        ("speech",),
        True,
    ),
    "a TFDS data set not prepared": (
        lambda t, p: ["--data", TFDS_SETS[p]],
        "is not prepared in",
        tuple(TFDS_SETS),
        True,
    ),
    "labels JSON that is a list": (
        lambda t, p: ["--data", series_csv(t, SINE), *SERIES, "--labels", labels_list(t)],
        "must map each data file to a list of [start, end] windows",
        ("anomaly",),
        True,
    ),
}


def labels_list(tmp: Path) -> str:
    (tmp / "labels.json").write_text('[["2024-01-01", "2024-01-02"]]')
    return str(tmp / "labels.json")


def binary_transcripts(tmp: Path) -> Path:
    import wave

    (tmp / "wavs").mkdir()
    with wave.open(str(tmp / "wavs" / "a.wav"), "wb") as recording:
        recording.setparams((1, 2, 8000, 0, "NONE", ""))
        recording.writeframes(bytes(1600))
    (tmp / "wavs" / "transcripts.txt").write_bytes(bytes(range(128, 256)))
    return tmp / "wavs"


CASES = [(case, name) for case, spec in FAILURES.items() for name in spec[2]]


@pytest.mark.parametrize(("case", "pipeline"), CASES, ids=[f"{p}-{c}" for c, p in CASES])
def test_every_expected_failure_is_one_line_exit_2(
    case, pipeline, workdir, store, capfd, monkeypatch
):
    from pipelines.compare import load_task

    argv_of, expected, _, failed_run = FAILURES[case]
    (workdir / "run.json").write_text("not a database")  # a file to misuse
    tfds_dir = workdir / "tensorflow_datasets"
    tfds_dir.mkdir()
    monkeypatch.setenv("TFDS_DATA_DIR", str(tfds_dir))
    if case == "malformed TF_CONFIG":
        monkeypatch.setenv("TF_CONFIG", '{"cluster": ')
    experiment = f"{pipeline}-{case}".replace(" ", "-")
    argv = ["--tracking-uri", store, "--experiment", experiment, "--output", str(workdir / "new")]
    argv += argv_of(workdir, pipeline)
    before = snapshot(workdir)
    code = main(load_task(pipeline), argv)
    err = capfd.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith("error: "), err
    assert expected in err[0]
    assert not (workdir / "new").exists() and snapshot(workdir) == before
    assert list(tfds_dir.iterdir()) == []  # nothing downloaded, no temporary file
    runs = runs_of(store, experiment)
    assert [r.info.status for r in runs] == (["FAILED"] if failed_run else [])
    if failed_run:
        assert expected in runs[0].data.tags["error"]


def test_an_html_page_instead_of_mlflow_is_one_line(workdir, capfd):
    """A web server that is not MLflow (answering /health, then HTML for the API)."""
    import http.server
    import threading

    class Page(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            page = b"ok" if self.path == "/health" else b"<html><body>Not here</body></html>"
            self.send_response(200 if self.path == "/health" else 404)
            self.send_header("Content-Type", "text/html")
            self.end_headers()
            self.wfile.write(page)

        do_POST = do_GET

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Page)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        uri = f"http://127.0.0.1:{server.server_address[1]}"
        code = main(LinearTask(), ["--tracking-uri", uri, "--output", "out"])
    finally:
        server.shutdown()
    err = capfd.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "HTML page instead of MLflow's API" in err[0], err
    assert uri in err[0] and not (workdir / "out").exists()


def test_a_sqlite_stores_artifacts_never_land_in_a_folder_beside_it(tmp_path):
    """An experiment named like a folder next to the database (a user's data folder, which a
    corpus run would then read our files from) or named with ``/`` and ``..`` keeps its
    artifacts in the store's own ``<stem>-artifacts/`` folder."""
    from urllib.parse import urlparse

    from pipelines.core import tracking

    data = tmp_path / "data"
    data.mkdir()
    (data / "mine.csv").write_text("value\n1\n")
    tracking.connect(f"sqlite:///{tmp_path / 'store.db'}")
    for name in ("data", "../escape", "a/b"):
        experiment_id = tracking.use_experiment(name)
        with mlflow.start_run(experiment_id=experiment_id):
            mlflow.log_text("ours", "note.txt")
        location = Path(urlparse(mlflow.get_experiment(experiment_id).artifact_location).path)
        assert location.parent == tmp_path / "store-artifacts", (name, location)
    assert [p.name for p in data.iterdir()] == ["mine.csv"]
    assert not (tmp_path.parent / "escape").exists()
