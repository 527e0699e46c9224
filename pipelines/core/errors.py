"""Errors a user can fix: the CLI prints them as one line and exits with code 2."""


class PipelineError(Exception):
    """Bad input or configuration, reported as ``error: <message>`` without a traceback."""


class DataError(PipelineError):
    """The data set is missing, malformed, or unsuitable for the task."""


class ConfigError(PipelineError):
    """A flag or config value is out of range or inconsistent."""


class TrackingError(PipelineError):
    """The MLflow tracking store cannot be reached or written."""
