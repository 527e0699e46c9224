"""The Task contract: what a pipeline must say about itself; the runner does the rest."""

from __future__ import annotations

import abc
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

import keras
import tensorflow as tf

from pipelines.core.config import TaskConfig
from pipelines.core.errors import ConfigError
from pipelines.core.folds import summary
from pipelines.core.results import Prediction, Report

if TYPE_CHECKING:
    from pipelines.core.inference import LoggedModel


@dataclass
class Splits:
    """Batched train/validation/test datasets plus what the model needs to know about the data."""

    train: tf.data.Dataset
    validation: tf.data.Dataset
    test: tf.data.Dataset
    info: dict[str, Any] = field(default_factory=dict)
    stages: dict[str, Any] = field(default_factory=dict)  # what each Stage's plan returned


@dataclass
class Fit:
    """One training a :class:`Stage` asks the runner for: a compiled model, its data, its epochs.

    ``callbacks`` are the stage's own (weight averaging, early stopping on its own monitor);
    ``name`` tells apart the fits of a stage that trains more than once: the curves of the fit
    named ``copy1-round2`` of stage ``adapt`` are ``adapt/copy1-round2/loss``.
    """

    model: keras.Model
    train: tf.data.Dataset
    epochs: int
    validation: tf.data.Dataset | None = None
    callbacks: list[keras.callbacks.Callback] = field(default_factory=list)
    name: str = ""


@dataclass
class Stage:
    """A training a task needs besides its main fit (language-model pretraining, gradual
    unfreezing, adaptation to a new voice), fitted by the runner like the main fit: same
    strategy, precision, XLA, steps per execution, MLflow curves (``<name>/loss``), and
    checkpoints that ``--resume`` continues from.

    ``plan(model)`` receives the task's main model and is a generator: it yields a :class:`Fit`
    whenever it needs a training (of the main model, of a model sharing its layers, of a
    copy), the runner fits it and resumes the generator, which may then use the trained model
    (predict, freeze or unfreeze layers, recompile) before it yields the next one. Its models
    are built under the main model's distribution strategy. What it returns is kept in
    ``splits.stages[name]`` for ``evaluate``.

    Stages run in the order given: before the main fit (``after=False``; also before every
    search trial's fit), or after it (``after=True``; not in search trials, which score the
    main fit alone).
    """

    name: str
    plan: Callable[[keras.Model], Generator[Fit, None, Any]]
    after: bool = False


class SearchSpace:
    """One code path for tuned and plain runs.

    ``space.int("units", 16, 128)`` declares a KerasTuner hyperparameter when the runner passes
    ``hp`` and returns the config's value otherwise, so ``build_model`` is written once.
    """

    def __init__(self, cfg: TaskConfig, hp: Any = None):
        self.cfg = cfg
        self.hp = hp

    def _value(self, name: str) -> Any:
        return getattr(self.cfg, name)

    def choice(self, name: str, values: list | tuple) -> Any:
        if self.hp is None:
            return self._value(name)
        return self.hp.Choice(name, list(values))

    def int(self, name: str, low: int, high: int, step: int = 1, sampling: str = "linear") -> int:
        if self.hp is None:
            return self._value(name)
        return self.hp.Int(name, low, high, step=step, sampling=sampling)

    def float(
        self,
        name: str,
        low: float,
        high: float,
        step: float | None = None,
        sampling: str = "linear",
    ) -> float:
        if self.hp is None:
            return self._value(name)
        return self.hp.Float(name, low, high, step=step, sampling=sampling)


class Task(abc.ABC):
    """A pipeline: data, model and evaluation. CLI, tracking, tuning and fitting live in the runner.

    ``objective`` is the validation metric early stopping and the tuner optimise, with its
    ``direction`` ("min" or "max").
    """

    name: ClassVar[str]
    config_class: ClassVar[type[TaskConfig]]
    objective: ClassVar[str] = "val_loss"
    direction: ClassVar[str] = "min"
    # A search's final refit trains on train+validation unless the task still needs the
    # validation part after training (e.g. to calibrate an anomaly threshold on unseen data).
    refit_on_validation: ClassVar[bool] = True

    @abc.abstractmethod
    def data(self, cfg: TaskConfig) -> Splits:
        """Load, validate, split and batch the data set named by ``cfg.data``."""

    @abc.abstractmethod
    def build_model(self, cfg: TaskConfig, splits: Splits, hp: Any = None) -> keras.Model:
        """A compiled model; with ``hp`` it also declares the search space."""

    @abc.abstractmethod
    def evaluate(self, model: keras.Model, splits: Splits, cfg: TaskConfig) -> Report:
        """Test metrics and figures of a trained model."""

    def deployable(self, model: keras.Model, splits: Splits, cfg: TaskConfig) -> keras.Model:
        """The model evaluated and logged; default: the trained one.

        A task may train one model and deploy a larger one around it: sentiment trains its
        recurrent classifier alone (its own loss and early stopping), then averages it with a
        fixed expert fitted beforehand (trained jointly, the expert, fitting the training data
        almost perfectly, would leave the recurrent model no gradient).
        """
        return model

    def data_hyperparameters(self, space: SearchSpace) -> dict[str, Any]:
        """Config fields that shape the data (a window length, a vocabulary size), declared
        through ``space`` like ``build_model``'s; returns field -> value.

        They are resolved before ``data`` is called, so a search can vary them per trial (the
        tuner rebuilds the data once per distinct value); a plain run gets its config back.
        """
        return {}

    def input_example(self, splits: Splits) -> Any:
        """A small batch of model inputs, logged with the model so its signature is known."""
        features = next(iter(splits.test.take(1)))[0]
        return tf.nest.map_structure(lambda t: t.numpy()[:2], features)

    def predict(self, logged: LoggedModel, source: str, cfg: TaskConfig) -> Prediction:
        """Apply a logged model of this task to new input (``--model-uri URI --predict SOURCE``).

        ``source`` is ``--predict`` as given (a file or folder, or a text for text tasks);
        ``cfg`` holds the command line's flags, ``logged.config(...)`` the training run's.
        Bad input raises DataError or ConfigError (one line, exit 2).
        """
        raise ConfigError(f"the {self.name} pipeline cannot apply a logged model (--predict) yet")

    def log_serving_model(
        self, model: keras.Model, splits: Splits, cfg: TaskConfig, report: Report
    ) -> None:
        """Log extra deployable forms of the model (e.g. a pyfunc for ``mlflow models serve``)
        as logged models of the active run, after the Keras model and before the run's metrics
        (which belong to the Keras model: MLflow would link them to a model logged later).

        Most tasks have none: the Keras model the runner logs is what they deploy.
        """
        return None

    def folds(self, cfg: TaskConfig) -> list[tuple[str, TaskConfig]]:
        """Named configs to train one after another as cross-validation folds (each a child
        run; the parent summarises them, see :mod:`pipelines.core.folds`), or ``[]`` to train
        ``cfg`` itself (the default)."""
        return []

    def fold_summary(self, rows: list[dict[str, Any]]) -> Report:
        """The parent run's report of folds (each row: ``fold`` and its held-out metrics);
        default: mean, worst and best of each metric (:func:`pipelines.core.folds.summary`).
        A task whose folds add up differently (a benchmark corpus) extends it."""
        return summary(rows)

    def stages(self, cfg: TaskConfig, splits: Splits) -> list[Stage]:
        """Trainings besides the main fit that the runner runs for this model (see
        :class:`Stage`); none by default."""
        return []

    def run_tags(self, cfg: TaskConfig) -> dict[str, str]:
        """Extra MLflow tags a task wants on its runs."""
        return {}
