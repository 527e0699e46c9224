"""The runner: everything that is the same for every task.

``main(task)`` parses the CLI, opens the MLflow run, trains and evaluates (every fit, stages
included, in :mod:`pipelines.core.fitting`) or runs a search (:mod:`pipelines.core.tuning`),
writes ``--output`` files, applies logged models (``--model-uri``), and turns known failures
into one line on stderr with exit code 2.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import mlflow

from pipelines.core import inference, naming, resume, tracking
from pipelines.core.boundary import EXIT_BAD_INPUT, EXIT_INTERRUPTED, guarded
from pipelines.core.cli import build_parser, split_namespace
from pipelines.core.config import RunOptions, TaskConfig
from pipelines.core.errors import ConfigError
from pipelines.core.fitting import Result, register, train_and_evaluate
from pipelines.core.folds import held_out_metrics, mean_history
from pipelines.core.outputs import OutputFolder
from pipelines.core.strategy import is_chief
from pipelines.core.task import Prediction, Task
from pipelines.core.tuning import run_search

__all__ = ["EXIT_BAD_INPUT", "EXIT_INTERRUPTED", "main", "run"]


def main(task: Task, argv: list[str] | None = None) -> int:
    """CLI entry point of ``python -m pipelines.<task>``; returns the process exit code
    (2 and one line for an expected failure, see :mod:`pipelines.core.boundary`)."""
    return guarded(lambda: _main(task, argv))


def _main(task: Task, argv: list[str] | None) -> int:
    parser = build_parser(
        f"python -m pipelines.{task.name}", (task.__doc__ or "").strip(), task.config_class
    )
    cfg, opts = split_namespace(parser.parse_args(argv), task.config_class)
    if opts.model_uri or opts.predict:
        for line in apply_logged_model(task, cfg, opts).lines:
            print(line)
        return 0
    result = run(task, cfg, opts)
    print_summary(result, tracking.resolve_tracking_uri(opts.tracking_uri))
    return 0


def run(task: Task, cfg: TaskConfig, opts: RunOptions) -> Result:
    """Train and evaluate one config (or run a search) inside an MLflow run.

    Run options are checked before the store is touched; the task config inside the run, so a
    bad value leaves a FAILED run that says why, like any other bad input.
    """
    opts.validate()
    output = OutputFolder(opts.output) if opts.output else None  # ours, new or empty
    if not (opts.tune or is_chief()):  # a multi-worker peer trains in lockstep; the chief logs
        cfg.validate()
        return train_folds_or_one(task, cfg, opts)
    tracking.connect(tracking.resolve_tracking_uri(opts.tracking_uri))
    tracking.use_experiment(opts.experiment or task.name)
    if opts.tune:
        if output:
            resume.check_search(output, task.name, opts)
            output.own_tree("tuner")
        result = run_search(task, cfg, opts)
        if output and result.model is not None:  # the chief's (a worker has none)
            write_outputs(output, result)
        return result
    run_id = resume.run_to_continue(output, cfg, opts) if output else None
    tags = naming.run_tags(task.name, cfg) | task.run_tags(cfg)
    if output:
        tags["output"] = str(output.path.resolve())
    with tracking.tracked_run(naming.run_name(cfg, opts), tags, run_id=run_id) as active:
        if run_id is None:
            tracking.log_config(cfg, opts.execution_params())
        cfg.validate()
        result = train_folds_or_one(task, cfg, opts)
        result.run_id = active.info.run_id
        register(result, opts)
        if output:
            write_outputs(output, result)
    return result


def apply_logged_model(task: Task, cfg: TaskConfig, opts: RunOptions) -> Prediction:
    """``--model-uri URI --predict SOURCE``: the task's prediction with a logged model, its
    tables and texts written to ``--output`` (all or nothing). Trains nothing."""
    opts.validate()
    cfg.validate()
    output = OutputFolder(opts.output) if opts.output else None  # ours, new or empty
    tracking.connect(tracking.resolve_tracking_uri(opts.tracking_uri))
    prediction = task.predict(inference.load(opts.model_uri), opts.predict, cfg)
    if output:
        write_files(output, prediction.tables, {}, prediction.texts)
    return prediction


def train_folds_or_one(task: Task, cfg: TaskConfig, opts: RunOptions) -> Result:
    """``cfg`` trained and evaluated, or, when the task splits it into folds, every fold as a
    child run and their summary (mean, worst and best fold of each test metric)."""
    folds = task.folds(cfg)
    if not folds:
        return train_and_evaluate(task, cfg, opts)
    if opts.resume:
        raise ConfigError("--resume does not combine with folds: rerun the folds from scratch")
    if opts.register_model:
        raise ConfigError("--register-model needs one model; folds train one per fold")
    fold_opts = dataclasses.replace(opts, output="")  # fold checkpoints would overwrite each other
    rows, results = [], []
    parent_name = naming.run_name(cfg, opts)
    for name, fold_cfg in folds:
        fold_name = f"{parent_name}-{name}"  # the fold's own config would name it twice
        with child_run(task, fold_cfg, opts, fold_name, {"fold": name}):
            results.append(train_and_evaluate(task, fold_cfg, fold_opts))
        rows.append({"fold": name} | held_out_metrics(results[-1].metrics))
    report = task.fold_summary(rows)
    metrics = tracking.log_report(report) if is_chief() else tracking.report_metrics(report)
    return Result(
        None,
        report,
        mean_history([r.history for r in results]),
        metrics,
        train_seconds=sum(r.train_seconds for r in results),
        parameter_count=results[0].parameter_count,
    )


@contextlib.contextmanager
def child_run(
    task: Task, cfg: TaskConfig, opts: RunOptions, name: str, labels: dict[str, str]
) -> Iterator[None]:
    """A nested run ``name`` for one of several trainings under a parent (a fold, a compared
    cell's seed), tagged with ``labels``, its config logged like a plain run's. Nothing on a
    non-chief worker, which trains in lockstep without logging."""
    if not is_chief():
        yield
        return
    tags = naming.run_tags(task.name, cfg) | labels | task.run_tags(cfg)
    with tracking.tracked_run(name, tags, nested=True):
        tracking.log_config(cfg, opts.execution_params())
        yield


def write_outputs(output: Path | OutputFolder, result: Result) -> None:
    """Write a run's tables, metrics, JSON artifacts and texts as plain files."""
    report = result.report
    json_files = {"metrics": result.metrics} | report.artifacts
    active = mlflow.active_run()
    run_id = result.run_id or (active.info.run_id if active else None)
    write_files(output, report.tables, json_files, report.texts, run_id)


def write_files(
    output: Path | OutputFolder,
    tables: dict[str, Any],
    json_files: dict[str, Any],
    texts: dict[str, str],
    run_id: str | None = None,
) -> None:
    """Tables as ``<name>.csv``, objects as ``<name>.json``, texts under their own names, all or
    nothing (staged, then moved in place), into a folder that is new, empty or ours."""
    folder = OutputFolder(output.path if isinstance(output, OutputFolder) else output)

    def write(staging: Path) -> None:
        for name, table in tables.items():
            table.to_csv(staging / f"{name}.csv", index=False)
        for name, obj in json_files.items():
            (staging / f"{name}.json").write_text(json.dumps(obj, indent=2) + "\n")
        for name, text in texts.items():
            (staging / name).write_text(text)

    folder.publish(write, run_id)


def print_summary(result: Result, uri: str) -> None:
    """The metrics, one per line; the run and where to see it; the registered model."""
    width = max((len(k) for k in result.metrics), default=0)
    for name, value in sorted(result.metrics.items()):
        print(f"{name:<{width}}  {value:.4f}")
    if result.run_id:
        print(tracking.run_summary(result.run_id, uri))
    if result.registered:
        print(f"registered as {result.registered}")
