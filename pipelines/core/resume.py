"""Resume that cannot lie: which run an ``--output`` folder continues, and checkpoints whose
epoch curves reach MLflow exactly once.

``run.json`` (see :mod:`pipelines.core.outputs`) names the folder's run, the config it trained
with and the process that ran it. A new run refuses a folder whose run was interrupted (its
checkpoints would be lost: ``--resume`` continues it); ``--resume`` refuses a finished run and
any flag that differs from the run's (MLflow would keep the old params while training used the
new ones).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import keras
import mlflow

from pipelines.core.boundary import describe, uninterrupted
from pipelines.core.config import RunOptions, TaskConfig
from pipelines.core.errors import ConfigError, TrackingError
from pipelines.core.outputs import PRIVATE, OutputFolder, process_alive
from pipelines.core.tracking import epoch_metrics

JOURNAL = "epochs.jsonl"
METADATA = "training_metadata.json"  # BackupAndRestore's record of the finished epochs


def run_config(cfg: TaskConfig, opts: RunOptions) -> dict[str, Any]:
    """What a run trains with, compared on resume (the other execution params may change:
    a run can resume on other hardware, with another strategy)."""
    return json.loads(json.dumps(cfg.to_params() | {"precision": opts.precision}))


def interruption(folder: OutputFolder) -> str | None:
    """How far the folder's interrupted training got ("3 epoch(s) of the main fit"), or None
    when it holds no checkpoint (of the main fit or of a stage's)."""
    found = sorted((folder.path / PRIVATE).rglob(METADATA + "*"))
    if not found:
        return None
    for name in (METADATA, METADATA + ".bkp"):
        try:
            epochs = int(json.loads((folder.checkpoints / name).read_text())["epoch"])
            return f"{epochs} epoch(s) of the main fit"
        except (OSError, ValueError, KeyError, TypeError):
            continue
    stages = folder.path / PRIVATE / "stages"
    in_stages = [p for p in found if p.is_relative_to(stages)]
    return f"stage {in_stages[0].relative_to(stages).parts[0]}" if in_stages else "a checkpoint"


def run_to_continue(folder: OutputFolder, cfg: TaskConfig, opts: RunOptions) -> str | None:
    """The MLflow run a run in ``folder`` continues (None: a new one), or ConfigError."""
    previous = folder.run_id
    where = f"--output {folder.path}"
    close_orphans(folder, keep=previous)
    if previous is None:
        return None
    status = run_status(previous)
    pid, host = folder.state.get("pid"), folder.state.get("host")
    if status in (None, "RUNNING") and process_alive(pid, host):
        raise ConfigError(f"{where} is in use: its run {previous} is still running (pid {pid})")
    reached = interruption(folder)
    if not opts.resume:
        if reached and status != "FINISHED":
            raise ConfigError(
                f"{where} holds run {previous}, interrupted after {reached}: add --resume to "
                "continue it, or choose another --output"
            )
        if status == "RUNNING":
            mark_killed(previous, f"its process ({pid} on {host}) ended without closing it")
            print(
                f"note: run {previous} of {where} was left RUNNING by a process that is gone; "
                "marked KILLED",
                file=sys.stderr,
            )
        return None
    if status is None:
        raise ConfigError(
            f"--resume: run {previous} of {where} is not in the MLflow store "
            f"{mlflow.get_tracking_uri()} (pass the --tracking-uri it was logged to)"
        )
    if status == "FINISHED":
        raise ConfigError(
            f"--resume: run {previous} of {where} has finished; nothing to resume "
            "(drop --resume to train a new run)"
        )
    recorded = folder.state.get("config") or {}
    for name, value in run_config(cfg, opts).items():
        if name in recorded and recorded[name] != value:
            raise ConfigError(
                f"--resume: --{name.replace('_', '-')} is {value!r} but run {previous} trained "
                f"with {recorded[name]!r}: resume with the run's flags, or drop --resume"
            )
    return previous


def close_orphans(folder: OutputFolder, keep: str | None) -> None:
    """Runs of this ``--output`` left RUNNING by a process that is gone (a SIGKILL before the
    first checkpoint, so ``run.json`` never named them) are marked KILLED, each with a note;
    one whose process still runs makes the folder busy."""
    path = str(folder.path.resolve())
    if "'" in path:
        return  # not expressible in MLflow's filter syntax; run.json still guards the folder
    found = mlflow.search_runs(
        filter_string=f"tags.output = '{path}' and attributes.status = 'RUNNING'",
        output_format="list",
    )
    for run in found:
        if run.info.run_id == keep:
            continue
        pid, host = run.data.tags.get("pid"), run.data.tags.get("host")
        alive = process_alive(int(pid) if (pid or "").isdigit() else None, host)
        if alive:
            raise ConfigError(
                f"--output {folder.path} is in use: run {run.info.run_id} is still running "
                f"(pid {pid})"
            )
        if alive is False:
            mark_killed(run.info.run_id, f"its process ({pid} on {host}) ended without closing it")
            print(
                f"note: run {run.info.run_id} of --output {folder.path} was left RUNNING by a "
                "process that is gone; marked KILLED",
                file=sys.stderr,
            )


def check_search(folder: OutputFolder, task: str, opts: RunOptions) -> None:
    """A new search would overwrite the KerasTuner state of one that did not finish (its
    trials and parent run): refused, pointing at ``--resume``."""
    state = folder.path / "tuner" / task / "oracle.json"
    finished = folder.run_id is not None and run_status(folder.run_id) == "FINISHED"
    if state.exists() and not (opts.resume or finished):
        raise ConfigError(
            f"--output {folder.path} holds a search that did not finish (tuner/{task}): add "
            "--resume to continue it, or choose another --output"
        )


def run_status(run_id: str) -> str | None:
    """The run's status in the current store, None if the store has no such run."""
    try:
        return mlflow.MlflowClient().get_run(run_id).info.status
    except mlflow.exceptions.MlflowException as exc:
        if exc.error_code == "RESOURCE_DOES_NOT_EXIST":
            return None
        raise


def mark_killed(run_id: str, reason: str) -> None:
    client = mlflow.MlflowClient()
    client.set_tag(run_id, "error", reason)
    client.set_terminated(run_id, "KILLED")


def prepare_output(folder: OutputFolder, cfg: TaskConfig, opts: RunOptions) -> None:
    """Just before training: a new run makes ``folder`` its home (our earlier results and
    checkpoints removed), a resumed one keeps its checkpoints and records its new process."""
    active = mlflow.active_run()
    run_id = active.info.run_id if active else None
    if opts.resume and folder.run_id is not None and folder.run_id == run_id:
        folder.claim_process()
    else:
        folder.start_run(run_id, run_config(cfg, opts))


class Checkpoints(keras.callbacks.BackupAndRestore):
    """Keras BackupAndRestore (two generations kept) whose epoch metrics reach MLflow only
    after the checkpoint that holds the epoch, each epoch exactly once.

    Every epoch's metrics are first appended to ``epochs.jsonl`` beside the checkpoint, then
    the checkpoint is written, then the metrics are sent. A kill before the checkpoint redoes
    the epoch on resume (its journal line is dropped, nothing was sent); a kill after it, or a
    tracking server that stopped answering, leaves the line to be sent on resume, unless
    MLflow already has that step.
    """

    def __init__(self, directory: Path, log: bool = True, prefix: str = ""):
        super().__init__(str(directory), double_checkpoint=True)
        self.directory, self.journal = directory, directory / JOURNAL
        self.log, self.prefix = log, prefix

    def on_train_begin(self, logs: dict | None = None) -> None:
        super().on_train_begin(logs)  # restores weights, optimizer and the epoch count
        done = 0
        if (self.directory / METADATA).exists():
            done = int(json.loads((self.directory / METADATA).read_text())["epoch"])
        kept = [entry for entry in self._entries() if entry["epoch"] < done]
        self._rewrite(kept)
        if self.log and kept:
            self._replay(kept)

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        metrics = epoch_metrics(logs, self.prefix)
        with uninterrupted():
            if self.log:
                self._append({"epoch": epoch, "metrics": metrics})
            super().on_epoch_end(epoch, logs)
        if self.log and metrics:
            self._send(epoch, metrics)

    def _entries(self) -> list[dict[str, Any]]:
        if not self.journal.exists():
            return []
        entries = []
        for line in self.journal.read_text().splitlines():
            try:
                entries.append(json.loads(line))
            except json.JSONDecodeError:  # a line cut short by a kill: never sent
                continue
        return entries

    def _append(self, entry: dict[str, Any]) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        with self.journal.open("a") as file:
            file.write(json.dumps(entry) + "\n")

    def _rewrite(self, entries: list[dict[str, Any]]) -> None:
        if self.journal.exists():
            staged = self.journal.with_suffix(".tmp")
            staged.write_text("".join(json.dumps(e) + "\n" for e in entries))
            staged.replace(self.journal)

    def _replay(self, entries: list[dict[str, Any]]) -> None:
        """Send what a kill or a dead server kept from MLflow (steps it has are skipped)."""
        client = mlflow.MlflowClient()
        run_id = mlflow.active_run().info.run_id
        keys = {key for entry in entries for key in entry["metrics"]}
        logged = {k: {m.step for m in client.get_metric_history(run_id, k)} for k in keys}
        for entry in entries:
            step = entry["epoch"] + 1
            missing = {k: v for k, v in entry["metrics"].items() if step not in logged[k]}
            if missing:
                self._send(entry["epoch"], missing)

    def _send(self, epoch: int, metrics: dict[str, float]) -> None:
        try:
            mlflow.log_metrics(metrics, step=epoch + 1)  # epoch 1 first, as in our figures
        except Exception as exc:
            reason = describe(exc)
            if reason is None:
                raise
            raise TrackingError(
                f"MLflow stopped answering while logging epoch {epoch + 1} ({reason}); the "
                "checkpoint is kept: rerun with --resume when the store is back (the epochs "
                "it missed are sent then)"
            ) from None
