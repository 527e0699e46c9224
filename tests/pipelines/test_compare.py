"""`python -m pipelines.compare`: one parent, a child per (cell, seed), the table, the figure."""

from __future__ import annotations

from pathlib import Path

import mlflow
import pandas as pd
import pytest

from pipelines.compare import available_tasks, main
from tests.conftest import runs_of
from tests.pipelines.test_anomaly import TINY, ecg_like_csv
from tests.pipelines.test_speech import EVERY_SPEAKER, wav_folder


def test_two_cells_give_two_child_runs_a_table_and_a_figure(workdir, tracking_uri, capsys):
    data = ecg_like_csv(workdir / "series.csv")
    flags = "--time-column timestamp --label-column label --epochs 1 --no-log-model --output out"
    code = main(
        ["--task", "anomaly", "--cells", "lstm,gru", *TINY, *flags.split()]
        + ["--data", str(data), "--tracking-uri", tracking_uri]
    )
    out, err = capsys.readouterr()
    assert code == 0, err
    runs = runs_of(tracking_uri, "anomaly-compare")
    (parent,) = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    assert parent.info.status == "FINISHED" and parent.info.run_id in out
    assert sorted(c.data.params["cell"] for c in children) == ["gru", "lstm"]
    assert {c.data.tags["mlflow.parentRunId"] for c in children} == {parent.info.run_id}
    assert {c.data.params["seed"] for c in children} == {"42"}
    assert all("test_roc_auc" in c.data.metrics for c in children)

    local = mlflow.artifacts.download_artifacts(
        run_id=parent.info.run_id, tracking_uri=tracking_uri
    )
    table = pd.read_csv(f"{local}/results/comparison.csv")
    assert list(table["cell"]) == ["lstm", "gru"] and list(table["runs"]) == [1, 1]
    for column in (
        "parameter_count",
        "train_seconds_mean",
        "test_roc_auc_mean",
        "test_roc_auc_std",
        "test_event_f1_mean",
    ):
        assert column in table
    by_cell = {c.data.params["cell"]: c for c in children}
    for _, row in table.iterrows():
        child = by_cell[row["cell"]]
        assert row["test_roc_auc_mean"] == pytest.approx(child.data.metrics["test_roc_auc"])
        assert str(row["parameter_count"]) == child.data.params["parameter_count"]
    assert (Path(local) / "validation_curves.png").stat().st_size > 1000
    assert (workdir / "out" / "comparison.csv").exists()
    assert "test_roc_auc" in out and "±" in out


def test_cells_compare_over_folds_as_grandchild_runs(workdir, tracking_uri, capsys):
    folder = wav_folder(workdir / "wavs")
    code = main(
        ["--task", "speech", "--cells", "lstm,gru", *EVERY_SPEAKER, "--epochs", "1"]
        + ["--units", "4", "--no-log-model"]
        + ["--data", str(folder), "--tracking-uri", tracking_uri]
    )
    assert code == 0, capsys.readouterr().err
    runs = {r.info.run_id: r for r in runs_of(tracking_uri, "speech-compare")}
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
    assert runs_of(tracking_uri, "anomaly-compare") == []


def test_tasks_are_found_by_package_without_registration():
    tasks = available_tasks()
    assert "anomaly" in tasks and "core" not in tasks and "datasets" not in tasks
