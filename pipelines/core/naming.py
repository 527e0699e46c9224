"""Run names: what differs between runs comes first, so a cut-off name still tells them apart."""

from __future__ import annotations

from pathlib import Path

from pipelines.core.config import RunOptions, TaskConfig


def run_name(task_name: str, cfg: TaskConfig, opts: RunOptions) -> str:
    data = Path(cfg.data).stem if cfg.data else "default"
    return opts.run_name or f"{task_name}-{cfg.cell}-{data}"
