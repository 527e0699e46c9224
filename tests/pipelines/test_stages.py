"""Stages: extra trainings a task declares, fitted by the runner like its main fit.

A toy regression task declares a pretraining stage (a second head on the main model's hidden
layer), a gradual-unfreezing stage (the main model with its hidden layer frozen) and an
adaptation stage after the main fit (a copy trained twice on its own predictions). One run is
interrupted in the unfreezing stage and resumed: every assertion reads those two runs.
"""

from __future__ import annotations

import dataclasses

import keras
import mlflow
import numpy as np
import pytest
import tensorflow as tf

from pipelines.core import Fit, Report, RunOptions, Splits, Stage, Task, TaskConfig, run
from pipelines.core.fitting import rebuilt_copy
from tests.conftest import runs_of

WEIGHTS = np.array([[1.0], [-2.0], [0.5]], "float32")


class Seen(keras.callbacks.Callback):
    """Records what each stage fit was given; raises Ctrl-C once when told to."""

    def __init__(self, name: str, log: list, interrupt_at: int | None = None):
        super().__init__()
        self.name, self.log, self.interrupt_at = name, log, interrupt_at

    def on_train_begin(self, logs=None):
        model = self.model
        self.log.append(
            {
                "fit": self.name,
                "jit_compile": model.jit_compile,
                "steps_per_execution": model.steps_per_execution,
                "policy": model.layers[-1].dtype_policy.name,
                "strategy": type(model.distribute_strategy).__name__,
            }
        )

    def on_epoch_end(self, epoch, logs=None):
        if epoch == self.interrupt_at:
            raise KeyboardInterrupt


class Toy(Task):
    """y = x @ WEIGHTS on 3 features."""

    name = "toy"
    config_class = TaskConfig

    def __init__(self, interrupt: bool = False):
        self.interrupt = interrupt
        self.seen: list[dict] = []

    def data(self, cfg):
        x = np.random.default_rng(0).normal(size=(96, 3)).astype("float32")
        pairs = tf.data.Dataset.from_tensor_slices((x, x @ WEIGHTS)).batch(16)
        return Splits(pairs.take(4), pairs.skip(4).take(1), pairs.skip(5), {"x": x})

    def build_model(self, cfg, splits, hp=None):
        inputs = keras.Input((3,))
        hidden = keras.layers.Dense(4, name="hidden")(inputs)
        model = keras.Model(inputs, keras.layers.Dense(1, name="out")(hidden))
        model.compile(keras.optimizers.SGD(0.05), "mse")
        return model

    def evaluate(self, model, splits, cfg):
        mse = model.evaluate(splits.test, verbose=0)
        return Report(metrics={"mse": float(mse), "adapted_mean": splits.stages["adapt"]})

    def stages(self, cfg, splits):
        x = splits.info["x"]

        def pretrain(model):
            head = keras.layers.Dense(1, name="sum_head")(model.get_layer("hidden").output)
            summer = keras.Model(model.inputs, head)
            summer.compile(keras.optimizers.SGD(0.05), "mse")
            data = tf.data.Dataset.from_tensor_slices((x, x.sum(1, keepdims=True))).batch(32)
            yield Fit(summer, data, epochs=2, callbacks=[Seen("pretrain", self.seen)])

        def unfreeze(model):
            model.get_layer("hidden").trainable = False
            model.compile(keras.optimizers.SGD(0.05), "mse")
            stop = 1 if self.interrupt else None
            yield Fit(model, splits.train, 3, callbacks=[Seen("unfreeze", self.seen, stop)])
            model.get_layer("hidden").trainable = True
            model.compile(keras.optimizers.SGD(0.05), "mse")

        def adapt(model):
            copy = rebuilt_copy(self, cfg, splits, model)
            for round_ in (1, 2):
                pseudo = copy.predict(x, verbose=0)
                data = tf.data.Dataset.from_tensor_slices((x, pseudo)).batch(32)
                seen = Seen(f"round{round_}", self.seen)
                yield Fit(copy, data, 1, callbacks=[seen], name=f"round{round_}")
            return float(copy.predict(x, verbose=0).mean())

        return [
            Stage("pretrain", pretrain),
            Stage("unfreeze", unfreeze),
            Stage("adapt", adapt, after=True),
        ]


@pytest.fixture(scope="module")
def staged(tmp_path_factory):
    """A run interrupted in its unfreezing stage, then resumed: both tasks' records."""
    workdir = tmp_path_factory.mktemp("stages")
    uri = f"sqlite:///{workdir / 'mlflow.db'}"
    cfg = TaskConfig(epochs=2, patience=0)
    opts = RunOptions(
        tracking_uri=uri,
        output=str(workdir / "out"),
        strategy="mirrored",
        precision="mixed_bfloat16",
        jit_compile=True,
        steps_per_execution=2,
        log_model=False,
    )
    first = Toy(interrupt=True)
    with pytest.raises(KeyboardInterrupt):
        run(first, cfg, opts)
    keras.mixed_precision.set_global_policy("float32")
    resumed = Toy()
    try:
        result = run(resumed, cfg, dataclasses.replace(opts, resume=True))
    finally:
        keras.mixed_precision.set_global_policy("float32")
    return first, resumed, result, uri


def history(uri: str, run_id: str, key: str) -> list[mlflow.entities.Metric]:
    return mlflow.MlflowClient(uri).get_metric_history(run_id, key)


def test_stage_fits_get_the_runs_strategy_precision_xla_and_steps_per_execution(staged):
    first, resumed, _, _ = staged
    seen = first.seen + resumed.seen
    assert {s["fit"] for s in seen} == {"pretrain", "unfreeze", "round1", "round2"}
    for record in seen:
        assert record["jit_compile"] is True and record["steps_per_execution"] == 2, record
        assert record["policy"] == "mixed_bfloat16", record
        assert record["strategy"] == "MirroredStrategy", record


def test_stages_run_before_and_after_the_main_fit_with_prefixed_curves_from_epoch_1(staged):
    _, _, result, uri = staged
    (logged,) = runs_of(uri, "toy")
    assert logged.info.status == "FINISHED" and logged.info.run_id == result.run_id
    curves = {
        key: history(uri, logged.info.run_id, key)
        for key in (
            "pretrain/loss",
            "unfreeze/loss",
            "loss",
            "adapt/round1/loss",
            "adapt/round2/loss",
        )
    }
    assert [m.step for m in curves["pretrain/loss"]] == [1, 2]
    assert sorted(m.step for m in curves["unfreeze/loss"]) == [1, 2, 3]
    assert [m.step for m in curves["loss"]] == [1, 2]
    assert [m.step for m in curves["adapt/round2/loss"]] == [1]
    order = [max(m.timestamp for m in c) for c in curves.values()]
    assert order == sorted(order)  # pretrain, unfreeze, main fit, then adaptation
    for name in ("pretrain", "unfreeze", "adapt"):
        assert logged.data.metrics[f"{name}/train_seconds"] > 0
    assert logged.data.metrics["test_adapted_mean"] == pytest.approx(
        result.report.metrics["adapted_mean"]
    )


def test_resume_skips_finished_stages_and_continues_the_interrupted_one(staged):
    first, resumed, _, uri = staged
    assert [s["fit"] for s in first.seen] == ["pretrain", "unfreeze"]
    assert [s["fit"] for s in resumed.seen] == ["unfreeze", "round1", "round2"]
    (logged,) = runs_of(uri, "toy")
    steps = [m.step for m in history(uri, logged.info.run_id, "unfreeze/loss")]
    assert sorted(steps) == [1, 2, 3]  # epochs 1-2 before the interruption, 3 after resuming
