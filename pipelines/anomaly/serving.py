"""A pyfunc model so ``mlflow models serve`` scores windows of points over HTTP.

The request is a DataFrame with the series' value columns (one row per point, oldest first);
the response has ``score`` and ``is_anomaly`` per row. Scoring starts from a fresh recurrent
state, so send some history before the points you care about (a few hundred steps). An online
run's scorer also answers each row's ``likelihood``; its first ``probation`` rows only warm up
the normaliser and likelihood (no alarm), exactly as in the run.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import keras
import mlflow
import numpy as np
import pandas as pd

import models
import pipelines
from pipelines.anomaly.scoring import online_scores, score_series
from pipelines.core.serving import check_rows, guard_scoring_server
from pipelines.core.tracking import pip_requirements


class WindowScorer(mlflow.pyfunc.PythonModel):
    """Scores and flags for each point of a posted window, with the run's threshold."""

    def load_context(self, context: Any) -> None:
        guard_scoring_server()  # 413 above the byte cap, 400 for unparseable JSON
        self.model = keras.saving.load_model(context.artifacts["keras_model"])
        self.config = json.loads(Path(context.artifacts["detector"]).read_text())

    def predict(self, context: Any, model_input: pd.DataFrame, params: Any = None) -> pd.DataFrame:
        check_rows(len(model_input))
        values = model_input[self.config["columns"]].to_numpy(np.float32)
        if self.config.get("protocol") == "online":
            scored = online_scores(self.model, values, self.config)
            return pd.DataFrame(
                {
                    "score": scored.errors,
                    "likelihood": scored.likelihood,
                    "is_anomaly": scored.alarms,
                }
            )
        scores = score_series(
            self.model,
            values,
            self.config["model"],
            self.config["window"],
            self.config["smoothing"],
        )
        return pd.DataFrame({"score": scores, "is_anomaly": scores > self.config["threshold"]})


def log_window_scorer(model: keras.Model, detector: dict, example: pd.DataFrame) -> None:
    """Log the scorer as artifact path ``scorer`` of the active run (code travels with it)."""
    with tempfile.TemporaryDirectory() as tmp:
        model_path = Path(tmp) / "model.keras"
        model.save(model_path)
        config_path = Path(tmp) / "detector.json"
        config_path.write_text(json.dumps(detector))
        mlflow.pyfunc.log_model(
            name="scorer",
            python_model=WindowScorer(),
            artifacts={"keras_model": str(model_path), "detector": str(config_path)},
            code_paths=[str(Path(models.__file__).parent), str(Path(pipelines.__file__).parent)],
            input_example=example,
            pip_requirements=pip_requirements(),
        )
