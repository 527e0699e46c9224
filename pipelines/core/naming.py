"""Run names, params and tags that read well in MLflow's runs table.

A run name starts with what differs between runs: the data set (a file's stem), the cell, then
the settings that differ from a reference (the task's defaults; a search trial's: the search's
starting point; a compared run's: the comparison's config). A table cell or plot axis shows only
the first characters of a value, so a path is logged as its file stem, with the full path as a
``<field>_path`` tag; ``config.json`` keeps the config as it was given.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

from pipelines.core.config import RunOptions, TaskConfig

SHORT_KEYS = {
    "learning_rate": "lr",
    "batch_size": "batch",
    "recurrent_dropout": "rdropout",
    "weight_decay": "wd",
}


def run_name(
    cfg: TaskConfig,
    opts: RunOptions,
    reference: TaskConfig | None = None,
    cell: str | None = None,
) -> str:
    """``--run-name``, else ``<data>-<cell>-<setting=value>...``: the settings that differ from
    ``reference`` (default: the config class's defaults), the seed last. ``cell`` replaces
    ``cfg.cell`` (a comparison names all its cells)."""
    if opts.run_name:
        return opts.run_name
    reference = reference or type(cfg)()
    parts = [data_label(cfg.data), cell or cfg.cell, *differences(cfg, reference)]
    if cfg.seed != reference.seed:
        parts.append(f"seed={cfg.seed}")
    return "-".join(parts)


def differences(cfg: TaskConfig, reference: TaskConfig) -> list[str]:
    """``key=value`` for each setting of ``cfg`` that differs from ``reference``, in field order.

    Settings are numbers, flags and strings with a fixed set of choices (``--mode ctc``); free
    strings (the data, column names, paths), lists and the seed are left out."""
    found = []
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        if f.name in ("cell", "seed", "data") or value == getattr(reference, f.name, None):
            continue
        if isinstance(value, str) and not f.metadata.get("choices"):
            continue
        if isinstance(value, bool | int | float | str):
            found.append(setting(f.name, value))
    return found


def setting(name: str, value: Any) -> str:
    key = SHORT_KEYS.get(name, name)
    if isinstance(value, bool):
        return key if value else f"no-{key}"
    return f"{key}={value:g}" if isinstance(value, float) else f"{key}={value}"


def data_label(data: str) -> str:
    """A data set's name as shown in names, params and tags: a path's stem, a name as it is."""
    return Path(data.rstrip("/\\")).stem if is_path(data) else (data or "default")


def is_path(value: str) -> bool:
    """A file or folder path (a registered name or ``tfds:NAME`` is not)."""
    if not value or ":" in value.split("/", 1)[0]:  # tfds:NAME, a URI
        return False
    return "/" in value or os.sep in value or Path(value).exists()


def short_params(params: dict[str, Any]) -> dict[str, Any]:
    """``params`` with every path replaced by its stem."""
    return {k: data_label(v) if isinstance(v, str) and is_path(v) else v for k, v in params.items()}


def path_tags(params: dict[str, Any]) -> dict[str, str]:
    """``<field>_path`` tags with the full (absolute) path of every path-valued param."""
    return {
        f"{k}_path": str(Path(v).expanduser().absolute())
        for k, v in params.items()
        if isinstance(v, str) and is_path(v)
    }


def run_tags(task_name: str, cfg: TaskConfig) -> dict[str, str]:
    """The tags every run of a task carries: task, cell, data (short) and full paths."""
    params = cfg.to_params()
    return {"task": task_name, "cell": cfg.cell, "data": data_label(cfg.data)} | path_tags(params)
