"""KerasTuner search for any Task: one MLflow parent run per search, one child run per trial.

The search space is what ``Task.build_model(cfg, splits, hp)`` declares through ``SearchSpace``,
plus the data-level hyperparameters of ``Task.data_hyperparameters`` (e.g. the anomaly window):
those are resolved before ``Task.data`` is called, so :class:`TaskHyperModel` rebuilds the data
when a trial picks new values and caches it per distinct value.

Each trial runs inside its own MLflow run, named by what it changed from the search's starting
point (config and hyperparameters as params, ``config.json``, per-epoch curves, the best
objective and its epoch count as metrics), ending FAILED with an ``error`` tag when it raises;
KerasTuner then records the trial as failed and the search goes on. The parent run describes the
winner: the best configuration retrained on train+validation for the best trial's epoch count,
with its params, tags, name, ``config.json``, ``test_*`` metrics and model, beside the search's
``best_*`` params, its starting point (``results/search_start.json``), a table of all trials and
``tuning_objective.png``.

Distributed search uses KerasTuner's own chief/worker mode (``KERASTUNER_TUNER_ID``,
``KERASTUNER_ORACLE_IP``, ``KERASTUNER_ORACLE_PORT``; a tuner id containing "chief" serves the
oracle). Start the chief and the workers with the same flags and tracking server:

* The chief creates the parent run *before* it builds the search space and declares the parent's
  run id as a ``Fixed`` hyperparameter (``mlflow_parent_run_id``). Every trial the oracle hands
  out carries it, so a worker learns its parent from the trial itself: no shared file system, no
  extra variable, no race (a worker cannot get a trial before the parent exists). Workers log
  each trial as a child run (tag ``mlflow.parentRunId``) in the parent's experiment.
* Only the chief retrains the best model and logs the search's results; a worker just runs
  trials and exits when the oracle has none left.
* ``--resume`` reloads the oracle from the tuner directory (``<output>/tuner/<task>``, or
  ``mlruns/tuner/<task>`` without ``--output``), which also holds the parent's run id: the same
  parent run is reopened, finished trials are not re-run and an interrupted one runs again.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

import keras
import keras_tuner as kt
import mlflow
import numpy as np
import pandas as pd

from pipelines.core import naming, tracking
from pipelines.core.config import RunOptions, TaskConfig
from pipelines.core.errors import ConfigError, PipelineError
from pipelines.core.fitting import Result, fit, register, run_stages, train_and_evaluate
from pipelines.core.plotting import figure
from pipelines.core.strategy import select_strategy
from pipelines.core.task import Report, SearchSpace, Splits, Task

PARENT_HP = "mlflow_parent_run_id"
SEARCH_START = "results/search_start.json"  # the config the search started from


def distributed_role() -> str:
    """``single``, ``chief`` or ``worker``, by KerasTuner's environment contract."""
    if not os.environ.get("KERASTUNER_ORACLE_IP"):
        return "single"
    return "chief" if "chief" in os.environ.get("KERASTUNER_TUNER_ID", "") else "worker"


def configured(cfg: TaskConfig, values: dict[str, Any]) -> TaskConfig:
    """``cfg`` with the hyperparameters that name one of its fields set to their trial value."""
    names = {f.name for f in dataclasses.fields(cfg)}
    return dataclasses.replace(cfg, **{k: v for k, v in values.items() if k in names})


def tuner_directory(opts: RunOptions) -> Path:
    return Path(opts.output or "mlruns") / "tuner"


class TaskHyperModel(kt.HyperModel):
    """A Task seen by KerasTuner: builds with the trial's data and fits through the runner."""

    def __init__(
        self, task: Task, cfg: TaskConfig, opts: RunOptions, parent_run_id: str | None = None
    ):
        super().__init__(name=task.name)
        self.task, self.cfg, self.opts = task, cfg, opts
        self.parent_run_id = parent_run_id
        self.data_names: tuple[str, ...] = ()
        self.execution = 0
        self._splits: dict[tuple, Splits] = {}

    def declare_hyperparameters(self, hp: kt.HyperParameters) -> None:
        if self.parent_run_id:
            hp.Fixed(PARENT_HP, self.parent_run_id)

    def splits(self, cfg: TaskConfig) -> Splits:
        """The data for ``cfg``'s data-level values, loaded once per distinct value."""
        key = tuple(getattr(cfg, name) for name in self.data_names)
        if key not in self._splits:
            self._splits[key] = self.task.data(cfg)
        return self._splits[key]

    def build(self, hp: kt.HyperParameters) -> keras.Model:
        data_values = self.task.data_hyperparameters(SearchSpace(self.cfg, hp))
        self.data_names = tuple(sorted(data_values))
        cfg = configured(self.cfg, hp.values | data_values)
        # Executions of one trial differ only by their initialisation.
        keras.utils.set_random_seed(cfg.seed + self.execution)
        return self.task.build_model(cfg, self.splits(cfg), hp)

    def fit(
        self,
        hp: kt.HyperParameters,
        model: keras.Model,
        *args: Any,
        callbacks: list | None = None,
        epochs: int | None = None,
        initial_epoch: int = 0,
        **kwargs: Any,
    ) -> dict[str, float]:
        """Fit one execution; returns the best objective and the epoch count that reached it."""
        cfg = configured(self.cfg, hp.values)
        if epochs:  # Hyperband's budget for this bracket
            cfg = dataclasses.replace(cfg, epochs=epochs)
        if self.execution == 0:
            mlflow.log_param("parameter_count", model.count_params())
        opts = dataclasses.replace(self.opts, output="")  # trials keep no backup of their own
        prefix = f"execution_{self.execution}/" if self.execution else ""
        splits = self.splits(cfg)
        if not initial_epoch:  # a continued Hyperband trial's model went through them already
            stages = self.task.stages(cfg, splits)
            run_stages(stages, model, splits, opts, after=False, metrics_prefix=prefix)
        history = fit(
            self.task,
            cfg,
            model,
            splits,
            opts,
            callbacks,
            initial_epoch=initial_epoch,
            metrics_prefix=prefix,
        )
        self.execution += 1
        return best_epoch(history, self.task, initial_epoch)


def best_epoch(history: dict[str, list[float]], task: Task, initial_epoch: int) -> dict[str, float]:
    values = history.get(task.objective)
    if not values:
        raise PipelineError(
            f"objective {task.objective!r} is not in the training history ({', '.join(history)})"
        )
    best = int(np.nanargmin(values) if task.direction == "min" else np.nanargmax(values))
    return {task.objective: float(values[best]), "best_epochs": float(initial_epoch + best + 1)}


class TrackedTrials:
    """Mixin over a KerasTuner tuner: every trial runs inside its own MLflow child run.

    Overrides ``run_trial`` (KerasTuner's extension point); an exception becomes
    ``FailedTrialError`` so KerasTuner marks the trial FAILED without retrying it.
    """

    hypermodel: TaskHyperModel

    def run_trial(self, trial: kt.engine.trial.Trial, *args: Any, **kwargs: Any) -> dict:
        hypermodel = self.hypermodel
        values = trial.hyperparameters.values
        parent = values.get(PARENT_HP)
        cfg = configured(hypermodel.cfg, values)
        tags = naming.run_tags(hypermodel.task.name, cfg) | hypermodel.task.run_tags(cfg)
        tags |= {"trial_id": trial.trial_id, "tuner_id": self.tuner_id}
        if parent:
            tags |= {"mlflow.parentRunId": parent, "search_run_id": parent}
            if mlflow.active_run() is None:  # a worker: log where the chief's parent lives
                mlflow.set_experiment(experiment_id=mlflow.get_run(parent).info.experiment_id)
        hypermodel.execution = 0
        try:
            with tracking.tracked_run(
                trial_name(cfg, hypermodel.cfg, trial.trial_id),
                tags,
                nested=mlflow.active_run() is not None,
            ):
                execution = hypermodel.opts.execution_params()
                tracking.log_config(cfg, trial_params(values) | execution)
                results = super().run_trial(trial, *args, **kwargs)
                averaged = {k: float(np.mean([r[k] for r in results])) for k in results[0]}
                objective = hypermodel.task.objective
                mlflow.log_metric(f"best_{objective}", averaged[objective])
                mlflow.log_metric("best_epochs", averaged["best_epochs"])
        except kt.errors.FatalError:
            raise
        except Exception as exc:
            raise kt.errors.FailedTrialError(f"{type(exc).__name__}: {exc}") from exc
        return averaged


def trial_name(cfg: TaskConfig, start: TaskConfig, trial_id: str) -> str:
    """Data, cell, what this trial changed from the search's starting point, trial id."""
    return f"{naming.run_name(cfg, RunOptions(), reference=start)}-trial{trial_id}"


def trial_params(values: dict[str, Any]) -> dict[str, Any]:
    """The trial's own hyperparameters (Hyperband's ``tuner/*`` bookkeeping included)."""
    return {k: v for k, v in values.items() if k != PARENT_HP}


class TrackedRandomSearch(TrackedTrials, kt.RandomSearch):
    """``--tuner random``."""


class TrackedHyperband(TrackedTrials, kt.Hyperband):
    """``--tuner hyperband``: ``--epochs`` is the largest bracket's budget."""


class TrackedBayesianOptimization(TrackedTrials, kt.BayesianOptimization):
    """``--tuner bayesian`` (Gaussian process)."""


def make_tuner(
    task: Task, cfg: TaskConfig, opts: RunOptions, hypermodel: TaskHyperModel, overwrite: bool
) -> kt.Tuner:
    """The tuner of ``--tuner``; it reloads its state from the tuner directory unless told not to.

    Failed trials never stop the search early (the limit is above ``--max-trials``).
    """
    common = {
        "hypermodel": hypermodel,
        "objective": kt.Objective(task.objective, direction=task.direction),
        "seed": cfg.seed,
        "directory": str(tuner_directory(opts)),
        "project_name": task.name,
        "overwrite": overwrite,
        "executions_per_trial": opts.executions_per_trial,
        "max_consecutive_failed_trials": opts.max_trials + 1,
        "distribution_strategy": select_strategy(opts.strategy),
    }
    if opts.tuner == "hyperband":
        tuner = TrackedHyperband(max_epochs=cfg.epochs, factor=3, **common)
        if distributed_role() != "worker":
            tuner.oracle.max_trials = opts.max_trials  # cap the bracket schedule too
        return tuner
    cls = TrackedRandomSearch if opts.tuner == "random" else TrackedBayesianOptimization
    return cls(max_trials=opts.max_trials, **common)


def run_search(task: Task, cfg: TaskConfig, opts: RunOptions) -> Result:
    """Search, then retrain the best configuration; the parent run's result (none on a worker)."""
    keras.mixed_precision.set_global_policy(opts.precision)
    hypermodel = TaskHyperModel(task, cfg, opts)
    if distributed_role() == "worker":
        validate_searchable(task, cfg)
        make_tuner(task, cfg, opts, hypermodel, overwrite=False).search(verbose=0)
        return Result(None, Report(), {}, {})
    resuming = opts.resume and (tuner_directory(opts) / task.name / "oracle.json").exists()
    tuner = make_tuner(task, cfg, opts, hypermodel, overwrite=False) if resuming else None
    parent_id = tuner.oracle.get_space().get(PARENT_HP) if tuner else None
    tags = naming.run_tags(task.name, cfg) | task.run_tags(cfg) | {"search": opts.tuner}
    name = f"{naming.run_name(cfg, opts)}-search"  # until the winner is known
    with tracking.tracked_run(name, tags, run_id=parent_id) as parent:
        if tuner is None:
            tracking.log_params(search_params(task, opts))
            mlflow.log_dict(cfg.to_params(), SEARCH_START)
            hypermodel.parent_run_id = parent.info.run_id
            validate_searchable(task, cfg)
            tuner = make_tuner(task, cfg, opts, hypermodel, overwrite=True)
        tuner.search(verbose=0)
        result = finish_search(task, cfg, opts, tuner)
        result.run_id = parent.info.run_id
    return result


def validate_searchable(task: Task, cfg: TaskConfig) -> None:
    """A valid config of one model: a search tunes one training, not a set of folds."""
    cfg.validate()
    if task.folds(cfg):
        raise ConfigError("--tune does not combine with folds: search on one fold's configuration")


def search_params(task: Task, opts: RunOptions) -> dict[str, Any]:
    return {
        "tuner": opts.tuner,
        "max_trials": opts.max_trials,
        "executions_per_trial": opts.executions_per_trial,
        "objective": task.objective,
        "direction": task.direction,
    } | opts.execution_params()


def finish_search(task: Task, cfg: TaskConfig, opts: RunOptions, tuner: kt.Tuner) -> Result:
    """Retrain the best trial's configuration (on train+validation when the task allows) for
    the best trial's epoch count and log it on the parent, which then describes the winner:
    its config as params and ``config.json``, its tags and name (the starting point stays in
    ``results/search_start.json``), with the search's ``best_*`` params beside them."""
    trials = trials_table(tuner.oracle)
    (best,) = tuner.oracle.get_best_trials(1) or (None,)
    if best is None or best.status != "COMPLETED":
        messages = [t.message for t in tuner.oracle.trials.values() if t.message]
        reason = messages[-1].strip().splitlines()[-1] if messages else "no trial ran"
        reason = reason.split("FailedTrialError: ", 1)[-1]  # the trial's own error
        raise PipelineError(f"all {len(trials)} trials failed; last error: {reason}")
    best_values = trial_params(best.hyperparameters.values)
    epochs = max(1, round(best.metrics.get_last_value("best_epochs")))
    best_cfg = dataclasses.replace(configured(cfg, best_values), epochs=epochs, patience=0)
    describe_winner(task, best_cfg, opts)  # first: the logged model copies the run's params
    tracking.log_params(
        {f"best_{k}": v for k, v in best_values.items()}
        | {"best_trial_id": best.trial_id, "best_epochs": epochs}
    )
    result = train_and_evaluate(task, best_cfg, opts, merge_validation=task.refit_on_validation)
    mlflow.log_metric(f"best_{task.objective}", best.score, model_id=result.model_id)
    figure = plot_objective(trials, task.objective, task.direction)
    tracking.log_report(Report(tables={"trials": trials}, figures={"tuning_objective": figure}))
    result.report.tables["trials"] = trials
    register(result, opts)
    return result


def describe_winner(task: Task, best_cfg: TaskConfig, opts: RunOptions) -> None:
    """The active (parent) run's params, config.json, tags and name: the refit winner's."""
    tracking.log_config(best_cfg)
    mlflow.set_tags(naming.run_tags(task.name, best_cfg) | task.run_tags(best_cfg))
    run_id = mlflow.active_run().info.run_id
    mlflow.MlflowClient().update_run(run_id, name=f"{naming.run_name(best_cfg, opts)}-search")


def trials_table(oracle: kt.Oracle) -> pd.DataFrame:
    """One row per trial in start order: status, objective, best epoch count, hyperparameters."""
    rows = []
    for trial_id in sorted(oracle.trials):
        trial = oracle.trials[trial_id]
        done = trial.status == "COMPLETED"
        rows.append(
            {
                "trial_id": trial_id,
                "status": trial.status,
                "score": trial.score if done else np.nan,
                "best_epochs": trial.metrics.get_last_value("best_epochs") if done else np.nan,
            }
            | trial_params(trial.hyperparameters.values)
        )
    return pd.DataFrame(rows)


def plot_objective(trials: pd.DataFrame, objective: str, direction: str):
    """Each trial's objective and the best so far; failed trials marked on the axis."""
    fig, (ax,) = figure(height=3.5, width=7)
    position = np.arange(len(trials))
    done = trials["status"] == "COMPLETED"
    scores = trials["score"].to_numpy(dtype=float)
    ax.plot(position[done], scores[done], "o", label="trial")
    running = np.fmin.accumulate if direction == "min" else np.fmax.accumulate
    ax.step(position, running(scores), where="post", color="tab:red", label="best so far")
    if (~done).any():
        edge = np.nanmax(scores) if direction == "min" else np.nanmin(scores)
        ax.plot(position[~done], np.full((~done).sum(), edge), "x", color="gray", label="failed")
    ax.set(xlabel="trial", ylabel=objective, title=f"search: {objective} ({direction}) per trial")
    ax.set_xticks(position, trials["trial_id"])
    ax.legend()
    return fig
