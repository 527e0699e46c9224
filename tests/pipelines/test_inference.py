"""The runner's inference path: ``--model-uri URI --predict INPUT`` on a toy task, through every
kind of model URI, and its errors as one line with exit 2."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import keras
import mlflow
import numpy as np
import pandas as pd
import pytest
import tensorflow as tf

from pipelines.core import (
    DataError,
    Prediction,
    Report,
    RunOptions,
    Splits,
    Task,
    TaskConfig,
    TrackingError,
    inference,
    main,
    option,
    run,
)

WEIGHTS = np.array([[1.0], [-2.0]], "float32")


@dataclass
class ToyConfig(TaskConfig):
    offset: float = option(0.5, "added to every prediction (logged as an artifact)")


class ToyTask(Task):
    """A linear regression that predicts from a CSV with columns a, b."""

    name = "toy"
    config_class = ToyConfig

    def data(self, cfg: ToyConfig) -> Splits:
        x = np.random.default_rng(cfg.seed).normal(size=(64, 2)).astype("float32")
        parts = tf.data.Dataset.from_tensor_slices((x, x @ WEIGHTS)).batch(16)
        return Splits(parts, parts, parts)

    def build_model(self, cfg: ToyConfig, splits: Splits, hp=None) -> keras.Model:
        model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
        model.compile(keras.optimizers.Adam(cfg.learning_rate), "mse")
        return model

    def evaluate(self, model: keras.Model, splits: Splits, cfg: ToyConfig) -> Report:
        return Report(
            metrics={"mse": float(model.evaluate(splits.test, verbose=0))},
            artifacts={"offset": {"value": cfg.offset}},
        )

    def predict(self, logged: inference.LoggedModel, source: str, cfg: ToyConfig) -> Prediction:
        path = Path(source)
        if not path.is_file():
            raise DataError(f"no such file: {source}")
        x = pd.read_csv(path)[["a", "b"]].to_numpy("float32")
        offset = logged.artifact("offset")["value"]
        y = logged.model.predict(x, verbose=0).ravel() + offset
        return Prediction([f"{v:.6f}" for v in y], {"predictions": pd.DataFrame({"y": y})})


class Untrainable(ToyTask):
    name = "untrainable"
    predict = Task.predict


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[str, str, Path]:
    """A toy run (offset 0.25) registered as model ``toy`` version 1 with alias ``champion``."""
    workdir = tmp_path_factory.mktemp("inference")
    uri = f"sqlite:///{workdir}/mlflow.db"
    cfg = ToyConfig(offset=0.25, epochs=2)
    result = run(ToyTask(), cfg, RunOptions(tracking_uri=uri))
    mlflow.set_tracking_uri(uri)
    mlflow.register_model(f"runs:/{result.run_id}/model", "toy")
    mlflow.MlflowClient().set_registered_model_alias("toy", "champion", "1")
    inputs = workdir / "new.csv"
    pd.DataFrame({"a": [1.0, 0.0, 2.0], "b": [0.0, 1.0, 3.0]}).to_csv(inputs, index=False)
    return uri, result.run_id, inputs


@pytest.mark.parametrize(
    "model_uri", ["runs:/{run}/model", "models:/toy/1", "models:/toy@champion"]
)
def test_every_kind_of_model_uri_predicts_the_same(trained, model_uri, capsys, tmp_path):
    uri, run_id, inputs = trained
    model_uri = model_uri.format(run=run_id)
    argv = ["--model-uri", model_uri, "--predict", str(inputs), "--tracking-uri", uri,
            "--output", str(tmp_path)]  # fmt: skip
    assert main(ToyTask(), argv) == 0
    printed = [float(v) for v in capsys.readouterr().out.split()]
    model = mlflow.keras.load_model(f"runs:/{run_id}/model")
    x = pd.read_csv(inputs).to_numpy("float32")
    expected = model.predict(x, verbose=0).ravel() + 0.25  # the training run's offset
    np.testing.assert_allclose(printed, expected, atol=1e-5)
    np.testing.assert_allclose(pd.read_csv(tmp_path / "predictions.csv")["y"], expected, atol=1e-6)


def test_logged_model_knows_its_training_run(trained):
    uri, run_id, _ = trained
    mlflow.set_tracking_uri(uri)
    logged = inference.load("models:/toy@champion")
    assert logged.run_id == run_id
    assert logged.config(ToyConfig).offset == 0.25 and logged.config(ToyConfig).epochs == 2
    with pytest.raises(TrackingError, match="lacks results/missing.json"):
        logged.artifact("missing")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--predict", "new.csv"], "--predict needs --model-uri"),
        (["--model-uri", "runs:/{run}/model"], "--model-uri needs --predict"),
        (["--model-uri", "runs:/0123abcd/model", "--predict", "x"], "cannot load runs:/0123abcd"),
        (["--model-uri", "models:/nobody/1", "--predict", "x"], "cannot load models:/nobody/1"),
        (["--model-uri", "runs:/{run}/model", "--predict", "nowhere.csv"], "no such file"),
    ],
)
def test_bad_requests_are_one_line_and_exit_2(trained, args, message, capsys):
    uri, run_id, _ = trained
    argv = [a.format(run=run_id) for a in args] + ["--tracking-uri", uri]
    assert main(ToyTask(), argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and message in err[0], err


def test_a_task_without_a_predict_hook_says_so(trained, capsys):
    uri, run_id, inputs = trained
    argv = ["--model-uri", f"runs:/{run_id}/model", "--predict", str(inputs), "--tracking-uri", uri]
    assert main(Untrainable(), argv) == 2
    assert capsys.readouterr().err.strip() == (
        "error: the untrainable pipeline cannot apply a logged model (--predict) yet"
    )
