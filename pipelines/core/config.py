"""Config dataclasses shared by every task.

A task's config subclasses :class:`TaskConfig`; every field becomes a CLI flag and an MLflow
param, so the common hyperparameters keep one name across tasks (``cell``, ``units``, ...).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

from models.recurrent import CELL_NAMES
from pipelines.core.errors import ConfigError


def option(default: Any, help: str, choices: tuple | None = None, **kwargs: Any) -> Any:
    """A dataclass field carrying its CLI help text and allowed values."""
    metadata = {"help": help, "choices": choices}
    if isinstance(default, list | dict):
        return field(default_factory=lambda: type(default)(default), metadata=metadata, **kwargs)
    return field(default=default, metadata=metadata, **kwargs)


@dataclass
class TaskConfig:
    """Hyperparameters every recurrent task has. Subclasses override defaults and add fields."""

    data: str = option("", "registered data set name, tfds:NAME, or a file/folder path")
    cell: str = option("lstm", "recurrent cell", choices=CELL_NAMES)
    units: int = option(64, "units per recurrent layer")
    layers: int = option(1, "number of stacked recurrent layers")
    dropout: float = option(0.0, "input dropout of the recurrent layers")
    recurrent_dropout: float = option(0.0, "recurrent-state dropout of the recurrent layers")
    learning_rate: float = option(1e-3, "Adam(W) learning rate")
    weight_decay: float = option(0.0, "decoupled weight decay (AdamW); 0 means plain Adam")
    epochs: int = option(20, "maximum training epochs (early stopping may end sooner)")
    batch_size: int = option(64, "training batch size")
    patience: int = option(5, "early-stopping patience in epochs (0 disables it)")
    average_last: float = option(
        0.0,
        "share of the epochs, counted back from the last, whose weights are averaged "
        "(stochastic weight averaging); training then runs all --epochs, without early "
        "stopping; 0 disables it",
    )
    seed: int = option(42, "random seed for data splits, initialisation and shuffling")

    def validate(self) -> None:
        """Reject out-of-range values before any work starts; subclasses extend it."""
        for f in dataclasses.fields(self):  # argparse reads "inf" and "nan" as floats
            value = getattr(self, f.name)
            if isinstance(value, float) and not math.isfinite(value):
                raise ConfigError(f"--{_flag(f.name)} must be a finite number, got {value}")
        self._require(("seed",), lambda v: 0 <= v < 2**32, "must be in [0, 2**32)")
        if type(self).__dataclass_fields__["data"].default and not self.data.strip():
            raise ConfigError("--data is empty: name a data set, tfds:NAME or a file/folder path")
        self.require_positive("units", "layers", "epochs", "batch_size", "learning_rate")
        self.require_rate("dropout", "recurrent_dropout")
        self.require_non_negative("weight_decay", "patience")
        self.require_share("average_last")
        for f in dataclasses.fields(self):
            choices = f.metadata.get("choices")
            if choices and getattr(self, f.name) not in choices:
                raise ConfigError(
                    f"--{_flag(f.name)} must be one of {', '.join(map(str, choices))}, "
                    f"got {getattr(self, f.name)!r}"
                )

    def require_positive(self, *names: str) -> None:
        self._require(names, lambda v: v > 0, "must be positive")

    def require_non_negative(self, *names: str) -> None:
        self._require(names, lambda v: v >= 0, "must not be negative")

    def require_rate(self, *names: str) -> None:
        self._require(names, lambda v: 0.0 <= v < 1.0, "must be in [0, 1)")

    def require_share(self, *names: str) -> None:
        self._require(names, lambda v: 0.0 <= v <= 1.0, "must be in [0, 1]")

    def require_split(self) -> None:
        """``validation_fraction`` and ``test_fraction`` both > 0 and leaving data to train on."""
        fractions = (self.validation_fraction, self.test_fraction)
        if min(fractions) <= 0 or sum(fractions) >= 1:
            raise ConfigError("--validation-fraction and --test-fraction must be > 0, sum < 1")

    def _require(self, names: tuple[str, ...], ok: Any, message: str) -> None:
        for name in names:
            value = getattr(self, name)
            if not ok(value):
                raise ConfigError(f"--{_flag(name)} {message}, got {value}")

    def to_params(self) -> dict[str, Any]:
        """Flat dict of the resolved config, as logged to MLflow."""
        return dataclasses.asdict(self)

    @property
    def first_averaged_epoch(self) -> int | None:
        """1-based epoch from which ``average_last`` averages the weights (None: off)."""
        if not self.average_last:
            return None
        return self.epochs - math.ceil(self.average_last * self.epochs) + 1


def new_default(name: str, value: Any) -> Any:
    """A :class:`TaskConfig` field with a task's own default; help text and choices stay."""
    base = TaskConfig.__dataclass_fields__[name]
    return option(value, base.metadata["help"], base.metadata["choices"])


@dataclass
class RunOptions:
    """How to run (not what to learn): tracking, tuning, distribution, outputs."""

    tune: bool = option(False, "search hyperparameters with KerasTuner instead of one run")
    tuner: str = option(
        "random", "KerasTuner algorithm", choices=("random", "hyperband", "bayesian")
    )
    max_trials: int = option(10, "number of tuning trials")
    executions_per_trial: int = option(1, "models trained per tuning trial (averaged)")
    strategy: str = option(
        "auto", "tf.distribute strategy", choices=("auto", "mirrored", "multiworker", "tpu")
    )
    precision: str = option(
        "float32", "Keras dtype policy", choices=("float32", "mixed_float16", "mixed_bfloat16")
    )
    tracking_uri: str = option("", "MLflow tracking URI (default $MLFLOW_TRACKING_URI or mlruns/)")
    experiment: str = option("", "MLflow experiment name (default: the task name)")
    run_name: str = option("", "MLflow run name (default: the data set, then cell and settings)")
    resume: bool = option(False, "resume an interrupted run or search from --output")
    output: str = option("", "directory for plain-file results, checkpoints and tuner state")
    jit_compile: bool = option(False, "compile the model with XLA")
    steps_per_execution: int = option(
        1, "training batches per compiled call (amortises dispatch; 32 or more on a TPU)"
    )
    log_model: bool = option(True, "log the trained model to MLflow")
    register_model: str = option(
        "", "register the trained model in the MLflow model registry under this name"
    )
    model_uri: str = option(
        "",
        "apply this logged model instead of training: runs:/<run id>/model, "
        "models:/<name>/<version> or models:/<name>@<alias>",
    )
    predict: str = option(
        "", "what --model-uri is applied to: a file or folder (a text, for text tasks)"
    )

    def execution_params(self) -> dict[str, Any]:
        """How the run executes (dtype policy, strategy, XLA, steps per execution), logged as
        MLflow params beside the config's so runs can be filtered and compared by them."""
        return {
            "precision": self.precision,
            "strategy": self.strategy,
            "jit_compile": self.jit_compile,
            "steps_per_execution": self.steps_per_execution,
        }

    def validate(self) -> None:
        if min(self.max_trials, self.executions_per_trial, self.steps_per_execution) <= 0:
            raise ConfigError(
                "--max-trials, --executions-per-trial and --steps-per-execution must be positive"
            )
        if self.resume and not self.output:
            raise ConfigError("--resume needs --output (where the checkpoints are kept)")
        if self.predict and not self.model_uri:
            raise ConfigError("--predict needs --model-uri (e.g. runs:/<run id>/model)")
        if self.model_uri and not self.predict:
            raise ConfigError("--model-uri needs --predict INPUT (what to apply the model to)")
        if self.register_model and not self.log_model:
            raise ConfigError("--register-model needs the model logged: drop --no-log-model")
        if self.model_uri and (self.tune or self.resume):
            raise ConfigError(
                "--model-uri applies a logged model: it trains nothing to --tune or --resume"
            )


def _flag(name: str) -> str:
    return name.replace("_", "-")
