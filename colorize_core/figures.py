"""Figures of the pipeline: matplotlib without a display, written atomically."""

from __future__ import annotations

from pathlib import Path

from colorize_core.io import atomic_output


def pyplot():
    """``matplotlib.pyplot`` on the Agg backend (no display needed), imported on first use."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, path: Path, dpi: int = 110) -> None:
    """Write ``fig`` to ``path`` as a PNG (temporary file, then rename) and free it."""
    with atomic_output(path, "wb") as f:
        fig.savefig(f, format="png", dpi=dpi)
    pyplot().close(fig)
