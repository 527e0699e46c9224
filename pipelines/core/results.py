"""What a task hands back to the runner: an evaluation's Report, an inference's Prediction."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class Report:
    """What evaluation produced: scalar metrics, figures, tables and JSON-able artifacts.

    Metric names carry no prefix; the runner logs them as ``test_<name>`` unless a name already
    has a prefix of its own (``baseline_...``). Tables are written to ``--output`` as CSV.
    ``texts`` maps a file name with its extension (``explanations.html``) to text content.
    ``children`` are reports of parts of the evaluation (each series of a model trained across
    series), which the runner logs as nested runs under the run, without a model.
    """

    metrics: dict[str, float] = field(default_factory=dict)
    figures: dict[str, Any] = field(default_factory=dict)
    tables: dict[str, Any] = field(default_factory=dict)
    artifacts: dict[str, Any] = field(default_factory=dict)
    texts: dict[str, str] = field(default_factory=dict)
    children: dict[str, Report] = field(default_factory=dict)


@dataclass
class Prediction:
    """What applying a logged model to new input produced (``Task.predict``).

    ``lines`` are printed on stdout (one per input item: a file, a row, a text); ``tables`` are
    written to ``--output`` as ``<name>.csv`` and ``texts`` as files named by their keys.
    """

    lines: list[str] = field(default_factory=list)
    tables: dict[str, Any] = field(default_factory=dict)
    texts: dict[str, str] = field(default_factory=dict)
