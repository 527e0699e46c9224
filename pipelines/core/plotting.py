"""Figures without pyplot's global state (safe in threads, no display needed)."""

from __future__ import annotations

from matplotlib.figure import Figure


def figure(rows: int = 1, cols: int = 1, width: float = 10.0, height: float = 3.0, **kw):
    """A Figure and its axes; ``height`` is per row."""
    fig = Figure(figsize=(width, height * rows), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False, **kw)
    return fig, axes[:, 0] if cols == 1 else axes
