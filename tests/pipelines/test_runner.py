"""``--output`` files: every kind of report content lands as a plain file, all or nothing."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from pipelines.core.fitting import Result
from pipelines.core.folds import summary
from pipelines.core.runner import write_outputs
from pipelines.core.task import Report


def report_result(table: pd.DataFrame) -> Result:
    report = Report(
        metrics={"accuracy": 0.5},
        tables={"predictions": table},
        artifacts={"classes": {"names": ["neg", "pos"]}},
        texts={"explanations.html": "<p>good</p>", "samples.txt": "To be"},
    )
    return Result(None, report, {}, {"test_accuracy": 0.5})


def test_tables_metrics_artifacts_and_texts_are_written(tmp_path):
    write_outputs(tmp_path, report_result(pd.DataFrame({"y": [1, 0]})))
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "classes.json", "explanations.html", "metrics.json", "predictions.csv", "run.json",
        "samples.txt"
    ]  # fmt: skip
    assert (tmp_path / "explanations.html").read_text() == "<p>good</p>"
    assert json.loads((tmp_path / "metrics.json").read_text()) == {"test_accuracy": 0.5}
    assert pd.read_csv(tmp_path / "predictions.csv")["y"].tolist() == [1, 0]


def test_a_failure_while_writing_leaves_no_file(tmp_path):
    class Unwritable(pd.DataFrame):
        def to_csv(self, *args, **kwargs):
            raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        write_outputs(tmp_path / "out", report_result(Unwritable({"y": [1]})))
    assert not (tmp_path / "out").exists()


def test_a_fold_summary_skips_folds_that_cannot_define_a_metric():
    """A corpus file without anomalies has no event F1: the summary is over the files that do."""
    rows = [
        {"fold": "a.csv", "test_event_f1": 0.5, "test_alarms": 2.0, "test_roc_auc": float("nan")},
        {"fold": "b.csv", "test_event_f1": float("nan"), "test_alarms": 0.0},
        {"fold": "c.csv", "test_event_f1": 1.0, "test_alarms": 1.0},
    ]
    report = summary(rows)
    assert report.metrics["test_event_f1"] == pytest.approx(0.75)
    assert (report.metrics["test_event_f1_min"], report.metrics["test_event_f1_max"]) == (0.5, 1.0)
    assert report.metrics["test_event_f1_count"] == 2
    assert (
        report.metrics["test_alarms"] == pytest.approx(1.0)
        and "test_alarms_count" not in report.metrics
    )
    assert not any(k.startswith("test_roc_auc") for k in report.metrics)
    assert report.tables["folds"]["test_roc_auc"].isna().all() and "folds" in report.figures
