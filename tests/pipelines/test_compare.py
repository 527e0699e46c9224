"""`python -m pipelines.compare`: folds as grandchildren, bad input, task discovery.

The parent's metrics, table and figure are checked in test_mlflow.py.
"""

from __future__ import annotations

import mlflow
import pandas as pd
import pytest

from pipelines.compare import available_tasks, main
from tests.conftest import runs_of
from tests.pipelines.test_speech import EVERY_SPEAKER, wav_folder


def test_cells_compare_over_folds_as_grandchild_runs(workdir, tracking_uri, capsys):
    folder = wav_folder(workdir / "wavs")
    code = main(
        ["--task", "speech", "--cells", "lstm,gru", *EVERY_SPEAKER, "--epochs", "1"]
        + ["--units", "4", "--no-log-model"]
        + ["--data", str(folder), "--tracking-uri", tracking_uri]
    )
    assert code == 0, capsys.readouterr().err
    runs = {r.info.run_id: r for r in runs_of(tracking_uri, "speech")}
    folds = [r for r in runs.values() if "fold" in r.data.tags]
    assert len(runs) == 1 + 2 + 4 and len(folds) == 4
    by_cell = {}
    for fold in folds:
        cell_run = runs[fold.data.tags["mlflow.parentRunId"]]
        by_cell.setdefault(cell_run.data.params["cell"], []).append(fold)
    assert {cell: len(f) for cell, f in by_cell.items()} == {"lstm": 2, "gru": 2}
    parent_id = runs[folds[0].data.tags["mlflow.parentRunId"]].data.tags["mlflow.parentRunId"]
    local = mlflow.artifacts.download_artifacts(run_id=parent_id, tracking_uri=tracking_uri)
    table = pd.read_csv(f"{local}/results/comparison.csv").set_index("cell")
    for cell, cell_folds in by_cell.items():
        worst = min(f.data.metrics["test_accuracy"] for f in cell_folds)
        assert table.loc[cell, "test_accuracy_min_mean"] == pytest.approx(worst)
        assert table.loc[cell, "parameter_count"] > 0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--task", "weather", "--cells", "lstm"], "error: unknown task 'weather'; available: "),
        (["--task", "anomaly", "--cells", "lstm,rnn"], "error: unknown cell(s) rnn; choose from"),
    ],
)
def test_unknown_task_or_cell_is_one_line_and_exit_2(args, message, workdir, tracking_uri, capsys):
    code = main([*args, "--tracking-uri", tracking_uri])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert len(err) == 1 and err[0].startswith(message), err
    assert runs_of(tracking_uri, "anomaly") == []


def test_tasks_are_found_by_package_without_registration():
    tasks = available_tasks()
    assert "anomaly" in tasks and "core" not in tasks and "datasets" not in tasks
