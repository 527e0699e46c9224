"""Shared machinery of every pipeline: the Task contract, CLI, runner, tracking, data utilities."""

from pipelines.core.config import RunOptions, TaskConfig, new_default, option
from pipelines.core.errors import ConfigError, DataError, PipelineError, TrackingError
from pipelines.core.runner import main, run
from pipelines.core.task import Fit, Prediction, Report, SearchSpace, Splits, Stage, Task

__all__ = [
    "ConfigError",
    "DataError",
    "Fit",
    "PipelineError",
    "Prediction",
    "Report",
    "RunOptions",
    "SearchSpace",
    "Splits",
    "Stage",
    "Task",
    "TaskConfig",
    "TrackingError",
    "main",
    "new_default",
    "option",
    "run",
]
