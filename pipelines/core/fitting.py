"""Every training of a run: the main fit, the task's stages, each fold's and each trial's fit.

One place gives every fit what the run options ask for: the dtype policy (set before models are
built), the distribution strategy (models are built under it), XLA (``--jit-compile``),
``--steps-per-execution``, the NaN guard, per-epoch MLflow curves, and ``--output``
checkpoints that ``--resume`` continues from.
"""

from __future__ import annotations

import dataclasses
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import keras
import mlflow
import numpy as np
import tensorflow as tf

from pipelines.core import naming, resume, tracking
from pipelines.core.config import RunOptions, TaskConfig
from pipelines.core.errors import ConfigError, PipelineError
from pipelines.core.outputs import PRIVATE, OutputFolder
from pipelines.core.strategy import is_chief, select_strategy, spans_workers
from pipelines.core.task import Report, Splits, Stage, Task
from pipelines.core.training import WeightAveraging


@dataclass
class Result:
    """A finished run: the trained model, its report, training history and where it was logged."""

    model: keras.Model | None  # None on a tuning worker (the chief holds the search's result)
    # and after folds (one model per fold, each logged in its own run)
    report: Report
    history: dict[str, list[float]]
    metrics: dict[str, float]
    run_id: str | None = None
    train_seconds: float = 0.0
    parameter_count: int = 0
    model_id: str | None = None  # the MLflow logged model of ``model``, if it was logged
    registered: str | None = None  # its model-registry URI (--register-model), if registered


def train_and_evaluate(
    task: Task,
    cfg: TaskConfig,
    opts: RunOptions,
    log_model: bool | None = None,
    merge_validation: bool = False,
) -> Result:
    """Seed, load data, build under the strategy, run the stages and the main fit, evaluate,
    log to the active run: the model (and the task's serving forms of it) first, then the
    metrics, linked to the Keras model only.

    ``merge_validation`` trains on train+validation without validation (the final refit of a
    search, whose epoch count the search already chose); evaluation still sees the real splits.
    """
    keras.utils.set_random_seed(cfg.seed)
    keras.mixed_precision.set_global_policy(opts.precision)
    strategy = select_strategy(opts.strategy)
    if opts.jit_compile and spans_workers(strategy) and not tf.config.list_logical_devices("GPU"):
        raise ConfigError(
            "--jit-compile with --strategy multiworker needs GPUs or TPUs "
            "(XLA has no cross-worker collectives on CPU)"
        )
    splits = task.data(cfg)
    with strategy.scope():
        model = task.build_model(cfg, splits)
    chief = is_chief()
    parameter_count = model.count_params()
    if chief:
        mlflow.log_param("parameter_count", parameter_count)
    if opts.output:  # only now, so a run that fails before training leaves no file there
        resume.prepare_output(OutputFolder(opts.output), cfg, opts)
    stages = task.stages(cfg, splits)
    stage_seconds = run_stages(stages, model, splits, opts, after=False)
    started = time.perf_counter()
    if merge_validation:
        merged = dataclasses.replace(splits, train=splits.train.concatenate(splits.validation))
        history = fit(task, cfg, model, merged, opts, validation=False)
    else:
        history = fit(task, cfg, model, splits, opts)
    train_seconds = time.perf_counter() - started
    stage_seconds |= run_stages(stages, model, splits, opts, after=True)
    if spans_workers(strategy):
        model = rebuilt_copy(task, cfg, splits, model)
    model = task.deployable(model, splits, cfg)
    report = task.evaluate(model, splits, cfg)
    report.metrics.setdefault("train_seconds", train_seconds)
    report.metrics |= {f"{name}/train_seconds": s for name, s in stage_seconds.items()}
    model_id = None
    if (opts.log_model if log_model is None else log_model) and chief:
        model_id = tracking.log_keras_model(model, task.input_example(splits))
        task.log_serving_model(model, splits, cfg, report)
    metrics = tracking.log_report(report, model_id) if chief else tracking.report_metrics(report)
    if chief:
        log_children(task, cfg, report)
    return Result(
        model,
        report,
        history,
        metrics,
        train_seconds=train_seconds,
        parameter_count=parameter_count,
        model_id=model_id,
    )


def log_children(task: Task, cfg: TaskConfig, report: Report) -> None:
    """Each child report (a series of a model trained across series) as a nested run named
    after the active run and the child, holding its metrics, tables and figures; the model is
    the parent's."""
    parent = mlflow.active_run().info.run_name
    for name, child in report.children.items():
        tags = naming.run_tags(task.name, cfg) | task.run_tags(cfg) | {"part": name}
        with tracking.tracked_run(f"{parent}-{name}", tags, nested=True):
            tracking.log_report(child)


def register(result: Result, opts: RunOptions) -> None:
    """``--register-model NAME``: the result's logged model as a new version of NAME."""
    if opts.register_model and result.model_id:
        result.registered = tracking.register_model(result.model_id, opts.register_model)


def rebuilt_copy(task: Task, cfg: TaskConfig, splits: Splits, model: keras.Model) -> keras.Model:
    """A new compiled model of the task with the trained weights, built under the strategy in
    scope (the default one outside any scope).

    After multi-worker training every worker holds the same weights, and evaluating or logging
    them must not wait on collectives the other workers never call; a copy can also be trained
    further without touching the original (speech's adaptation)."""
    copy = task.build_model(cfg, splits)
    copy.set_weights(model.get_weights())
    return copy


def fit(
    task: Task,
    cfg: TaskConfig,
    model: keras.Model,
    splits: Splits,
    opts: RunOptions,
    extra_callbacks: list[keras.callbacks.Callback] | None = None,
    *,
    initial_epoch: int = 0,
    validation: bool = True,
    metrics_prefix: str = "",
) -> dict[str, list[float]]:
    """The main fit: early stopping on the task objective (or weight averaging,
    ``--average-last``) on top of what every fit gets (:func:`fit_model`).

    ``initial_epoch`` lets Hyperband continue a trial; ``metrics_prefix`` keeps the curves of a
    tuning trial's repeated executions apart.
    """
    callbacks: list[keras.callbacks.Callback] = []
    first_averaged = cfg.first_averaged_epoch
    if first_averaged:  # the mean of the last epochs replaces early stopping's pick of one
        callbacks.append(WeightAveraging(first_averaged))
    elif cfg.patience:
        callbacks.append(
            keras.callbacks.EarlyStopping(
                monitor=task.objective,
                mode=task.direction,
                patience=cfg.patience,
                restore_best_weights=True,
            )
        )
    return fit_model(
        model,
        splits.train,
        splits.validation if validation else None,
        cfg.epochs,
        opts,
        callbacks + (extra_callbacks or []),
        backup=checkpoint_folder(opts),
        initial_epoch=initial_epoch,
        metrics_prefix=metrics_prefix,
    )


def fit_model(
    model: keras.Model,
    train: tf.data.Dataset,
    validation: tf.data.Dataset | None,
    epochs: int,
    opts: RunOptions,
    callbacks: list[keras.callbacks.Callback],
    *,
    backup: Path | None = None,
    initial_epoch: int = 0,
    metrics_prefix: str = "",
) -> dict[str, list[float]]:
    """What every fit gets: XLA and steps per execution as asked, the NaN guard, per-epoch
    curves in MLflow (named ``<metrics_prefix><metric>``), backup/restore in ``backup``."""
    configure(model, opts)
    standard: list[keras.callbacks.Callback] = [keras.callbacks.TerminateOnNaN()]
    if backup:  # it logs each epoch's curves once the epoch is saved
        standard.append(resume.Checkpoints(backup, log=is_chief(), prefix=metrics_prefix))
    elif is_chief():
        standard.append(tracking.EpochMetrics(metrics_prefix))
    try:
        history = model.fit(
            train,
            validation_data=validation,
            epochs=epochs,
            initial_epoch=initial_epoch,
            callbacks=standard + callbacks,
            shuffle=False,  # datasets arrive shuffled by the task
            verbose=2 if sys.stdout.isatty() else 0,
        )
    finally:
        # BackupAndRestore leaves the restored epoch on the model (Keras 3.15), where the next
        # fit of the same model (the main fit after a resumed stage) would start from it.
        model._initial_epoch = None
    losses = history.history.get("loss", [])
    if losses and not np.isfinite(losses[-1]):
        raise PipelineError("training diverged (loss became NaN/inf); try a lower --learning-rate")
    return history.history


def configure(model: keras.Model, opts: RunOptions) -> None:
    """XLA (when asked) and ``--steps-per-execution`` on ``model``.

    Functions the model compiled before keep their old settings, and a predict function made
    for one step per call, run by an iterator that advances two, silently skips every other
    batch: they are dropped when a setting changes (a stage's plan may predict before it fits).
    """
    jit_compile = True if opts.jit_compile else model.jit_compile
    if (model.jit_compile, model.steps_per_execution) == (jit_compile, opts.steps_per_execution):
        return
    model.jit_compile = jit_compile
    model.steps_per_execution = opts.steps_per_execution
    model.train_function = model.test_function = model.predict_function = None


def checkpoint_folder(opts: RunOptions) -> Path | None:
    """Where the main fit keeps its backup under ``--output`` (None without it)."""
    return Path(opts.output) / PRIVATE / "checkpoints" if opts.output else None


def stage_folder(opts: RunOptions, stage: Stage) -> Path | None:
    """Where a stage keeps its fits' backups and finished weights under ``--output``."""
    return Path(opts.output) / PRIVATE / "stages" / stage.name if opts.output else None


def run_stages(
    stages: list[Stage],
    model: keras.Model,
    splits: Splits,
    opts: RunOptions,
    *,
    after: bool,
    metrics_prefix: str = "",
) -> dict[str, float]:
    """Run the stages that come ``after`` the main fit (or before it), in order; each plan's
    return value goes to ``splits.stages[name]``. Returns each stage's seconds."""
    seconds = {}
    for stage in stages:
        if stage.after != after:
            continue
        started = time.perf_counter()
        splits.stages[stage.name] = run_stage(stage, model, opts, metrics_prefix)
        seconds[stage.name] = time.perf_counter() - started
    return seconds


def run_stage(stage: Stage, model: keras.Model, opts: RunOptions, metrics_prefix: str = "") -> Any:
    """Fit every :class:`Fit` the stage's plan yields, in order; returns what the plan returns.

    With ``--output``, each fit keeps a backup (``--resume`` continues an interrupted fit at
    its epoch) and, once done, its weights: a resumed run loads those instead of fitting again
    (the plan then goes on as if it had just trained; optimizer moments start afresh).
    """
    folder = stage_folder(opts, stage)
    scope = model.distribute_strategy.scope  # the stage's models train like the main one
    plan = stage.plan(model)
    index = 0
    while True:
        with scope():
            try:
                step = next(plan)
            except StopIteration as finished:
                return finished.value
        done = folder / f"{index}.weights.h5" if folder else None
        if done and opts.resume and done.exists():
            step.model.load_weights(done)
        else:
            prefix = f"{metrics_prefix}{stage.name}/" + (f"{step.name}/" if step.name else "")
            fit_model(
                step.model,
                step.train,
                step.validation,
                step.epochs,
                opts,
                step.callbacks,
                backup=folder / str(index) if folder else None,
                metrics_prefix=prefix,
            )
            if done and is_chief():
                step.model.save_weights(done)
        index += 1
