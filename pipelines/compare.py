"""Compare recurrent cells on one task: ``python -m pipelines.compare --task anomaly --cells ...``.

Every cell trains with the same config and the same seeds (``--seeds N`` repeats with seeds
``seed, seed+1, ...``), each (cell, seed) as a child run under one parent run, in the task's own
experiment (or ``--experiment``), the parent tagged ``compare`` (the cells). The parent's params
and ``config.json`` are the shared config with ``cells`` and ``seeds`` in place of one ``cell``.
Its metrics sort beside plain runs: ``<metric>/<cell>`` is a cell's mean over seeds of each test
metric (and of its best validation objective, ``best_<objective>/<cell>``), and ``<metric>`` the
best cell's, best by that validation objective (tag ``best_cell``; the test set does not choose).
It also gets ``results/comparison.csv`` (per cell: mean and std of every test metric, train time
and parameter count) and ``validation_curves.png`` (the validation objective per epoch, mean over
seeds, cells overlaid); the table is printed too.

Tasks are found by name: ``pipelines.<task>.task`` holds a ``Task`` subclass whose ``name`` is
the task's; any task flag is accepted after ``--task``.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import importlib
import importlib.util
import pkgutil
import sys

import mlflow
import numpy as np
import pandas as pd
from matplotlib.ticker import MaxNLocator

import pipelines
from models.recurrent import CELL_NAMES
from pipelines.core import naming, runner, tracking
from pipelines.core.boundary import guarded
from pipelines.core.cli import OneLineParser, build_parser, split_namespace
from pipelines.core.config import RunOptions, TaskConfig
from pipelines.core.errors import ConfigError
from pipelines.core.fitting import Result
from pipelines.core.folds import held_out_metrics
from pipelines.core.outputs import OutputFolder
from pipelines.core.plotting import figure
from pipelines.core.task import Report, Task


@functools.cache
def available_tasks() -> tuple[str, ...]:
    """Runnable packages under ``pipelines`` with a ``task`` module (found without importing)."""
    return tuple(
        info.name
        for info in pkgutil.iter_modules(pipelines.__path__)
        if info.ispkg
        and all(
            importlib.util.find_spec(f"pipelines.{info.name}.{module}") is not None
            for module in ("task", "__main__")
        )
    )


def load_task(name: str) -> Task:
    """The Task named ``name``, from ``pipelines.<name>.task``."""
    if name not in available_tasks():
        raise ConfigError(f"unknown task {name!r}; available: {', '.join(available_tasks())}")
    module = importlib.import_module(f"pipelines.{name}.task")
    for value in vars(module).values():
        is_task = isinstance(value, type) and issubclass(value, Task)
        if is_task and getattr(value, "name", "") == name:
            return value()
    raise ConfigError(f"pipelines.{name}.task defines no Task named {name!r}")


def parse_cells(text: str) -> list[str]:
    cells = [c.strip() for c in text.split(",") if c.strip()]
    unknown = [c for c in cells if c not in CELL_NAMES]
    if unknown or not cells:
        raise ConfigError(
            f"unknown cell(s) {', '.join(unknown) or '(none given)'}; "
            f"choose from {', '.join(CELL_NAMES)}"
        )
    return cells


def compare(
    task: Task, cfg: TaskConfig, opts: RunOptions, cells: list[str], seeds: int = 1
) -> tuple[pd.DataFrame, str]:
    """Train every (cell, seed) as a child run; returns the table and the parent run id."""
    cfg.validate()
    opts.validate()
    if opts.tune:
        raise ConfigError("--tune does not combine with a comparison; tune each cell instead")
    if opts.register_model:
        raise ConfigError("--register-model needs one model; a comparison trains one per run")
    if seeds <= 0:
        raise ConfigError(f"--seeds must be positive, got {seeds}")
    output = OutputFolder(opts.output) if opts.output else None  # ours, new or empty
    tracking.connect(tracking.resolve_tracking_uri(opts.tracking_uri))
    tracking.use_experiment(opts.experiment or task.name)
    child_opts = dataclasses.replace(opts, output="", resume=False, run_name="")
    config = {k: v for k, v in cfg.to_params().items() if k != "cell"}
    config |= {"cells": ",".join(cells), "seeds": seeds}
    tags = {k: v for k, v in naming.run_tags(task.name, cfg).items() if k != "cell"}
    tags |= task.run_tags(cfg) | {"compare": ",".join(cells)}
    name = opts.run_name or f"{naming.run_name(cfg, child_opts, cell='+'.join(cells))}-compare"
    with tracking.tracked_run(name, tags) as parent:
        tracking.log_params(naming.short_params(config) | opts.execution_params())
        mlflow.log_dict(config, "config.json")
        rows, curves = [], {}
        for cell in cells:
            curves[cell] = []
            for offset in range(seeds):
                run_cfg = dataclasses.replace(cfg, cell=cell, seed=cfg.seed + offset)
                result = train_child(task, run_cfg, cfg, child_opts)
                rows.append(summary_row(cell, run_cfg.seed, result))
                curves[cell].append(result.history.get(task.objective, []))
        table = comparison_table(pd.DataFrame(rows))
        best = best_cell(curves, task.objective, task.direction)
        if best:
            mlflow.set_tag("best_cell", best)
        report = Report(
            metrics=cell_metrics(table, curves, task.objective, task.direction, best),
            tables={"comparison": table},
            figures={"validation_curves": plot_curves(curves, task.objective)},
        )
        tracking.log_report(report)
        if output:
            write = lambda staged: table.to_csv(staged / "comparison.csv", index=False)  # noqa: E731
            output.publish(write, parent.info.run_id)
    return table, parent.info.run_id


def train_child(task: Task, cfg: TaskConfig, shared: TaskConfig, opts: RunOptions) -> Result:
    """One (cell, seed) as a child run named by what sets it apart from ``shared``."""
    name = naming.run_name(cfg, opts, reference=shared)
    with runner.child_run(task, cfg, opts, name, {"seed": str(cfg.seed)}):
        return runner.train_folds_or_one(task, cfg, opts)


def best_objective(curve: list[float], direction: str) -> float:
    """The best value a run's validation objective reached (NaN if it has none)."""
    values = np.asarray(curve, float)
    if not values.size or np.isnan(values).all():
        return np.nan
    return float(np.nanmin(values) if direction == "min" else np.nanmax(values))


def objective_by_cell(curves: dict[str, list[list[float]]], direction: str) -> dict[str, float]:
    """Per cell: the mean over seeds of each run's best validation objective."""
    scores = {c: [best_objective(run, direction) for run in runs] for c, runs in curves.items()}
    return {c: float(np.nanmean(v)) for c, v in scores.items() if not np.isnan(v).all()}


def best_cell(curves: dict[str, list[list[float]]], objective: str, direction: str) -> str | None:
    """The cell with the best mean validation objective (None without validation curves)."""
    by_cell = objective_by_cell(curves, direction)
    if not by_cell:
        return None
    pick = min if direction == "min" else max
    return pick(by_cell, key=by_cell.get)


def cell_metrics(
    table: pd.DataFrame,
    curves: dict[str, list[list[float]]],
    objective: str,
    direction: str,
    best: str | None,
) -> dict[str, float]:
    """``<metric>/<cell>``: each cell's mean over seeds; ``<metric>``: the best cell's."""
    rows = table.set_index("cell")
    means = [c for c in rows.columns if c.endswith("_mean")]
    metrics = {
        f"{column.removesuffix('_mean')}/{cell}": float(rows.loc[cell, column])
        for cell in rows.index
        for column in means
    }
    metrics |= {f"best_{objective}/{c}": v for c, v in objective_by_cell(curves, direction).items()}
    if best:
        metrics |= {k.rsplit("/", 1)[0]: v for k, v in metrics.items() if k.endswith(f"/{best}")}
    return metrics


def summary_row(cell: str, seed: int, result: Result) -> dict[str, float | str | int]:
    return {
        "cell": cell,
        "seed": seed,
        "parameter_count": result.parameter_count,
        "train_seconds": result.train_seconds,
    } | held_out_metrics(result.metrics)


def comparison_table(runs: pd.DataFrame) -> pd.DataFrame:
    """Per cell (in the order given): parameter count, and mean and std over seeds of the rest."""
    grouped = runs.drop(columns="seed").groupby("cell", sort=False)
    table = grouped["parameter_count"].first().to_frame()
    table.insert(0, "runs", grouped.size())
    for column in runs.columns.drop(["cell", "seed", "parameter_count"]):
        table[f"{column}_mean"] = grouped[column].mean()
        table[f"{column}_std"] = grouped[column].std(ddof=0)
    return table.reset_index()


def format_table(table: pd.DataFrame) -> str:
    """``mean ± std`` per metric (rows) and cell (columns), narrow enough for a terminal."""
    shown = table[["cell", "runs", "parameter_count"]].astype(str)
    for column in table.columns:
        if column.endswith("_mean"):
            base = column.removesuffix("_mean")
            shown[base] = [
                f"{m:.4g} ± {s:.2g}" for m, s in zip(table[column], table[f"{base}_std"])
            ]
    return shown.set_index("cell").T.to_string()


def plot_curves(curves: dict[str, list[list[float]]], objective: str):
    """Mean over seeds of the validation objective per epoch (runs may stop at different epochs)."""
    fig, (ax,) = figure(height=3.5, width=7)
    for cell, runs in curves.items():
        longest = max((len(r) for r in runs), default=0)
        if not longest:
            continue
        padded = np.full((len(runs), longest), np.nan)
        for i, run in enumerate(runs):
            padded[i, : len(run)] = run
        ax.plot(np.arange(1, longest + 1), np.nanmean(padded, axis=0), marker=".", label=cell)
    ax.set(xlabel="epoch", ylabel=objective, title=f"{objective} per epoch, mean over seeds")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.legend()
    return fig


def build_compare_parser(config_class: type[TaskConfig]) -> argparse.ArgumentParser:
    parser = build_parser(
        "python -m pipelines.compare", (__doc__ or "").strip().splitlines()[0], config_class
    )
    group = parser.add_argument_group("comparison")
    group.add_argument("--task", required=True, help=f"one of {', '.join(available_tasks())}")
    group.add_argument("--cells", default=",".join(CELL_NAMES), help="comma-separated cells")
    group.add_argument("--seeds", type=int, default=1, help="runs per cell (seeds seed..seed+N-1)")
    return parser


def main(argv: list[str] | None = None) -> int:
    return guarded(lambda: _main(sys.argv[1:] if argv is None else argv))


def _main(argv: list[str]) -> int:
    pre = OneLineParser(add_help=False)
    pre.add_argument("--task")
    known, _ = pre.parse_known_args(argv)
    if known.task is None:  # --help or a missing --task: the generic parser says it
        build_compare_parser(TaskConfig).parse_args(argv)
    task = load_task(known.task)
    namespace = build_compare_parser(task.config_class).parse_args(argv)
    cfg, opts = split_namespace(namespace, task.config_class)
    cells = parse_cells(namespace.cells)
    table, run_id = compare(task, cfg, opts, cells, namespace.seeds)
    print(format_table(table))
    print(tracking.run_summary(run_id, tracking.resolve_tracking_uri(opts.tracking_uri)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
