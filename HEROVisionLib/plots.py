"""Figures as PNG files, the way every HEROVision report draws them (matplotlib, no screen needed)."""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path


def pyplot():
    """matplotlib's pyplot on the file-only Agg backend (no display is ever needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


@contextmanager
def figure(path: Path, title: str, x_label: str, y_label: str, diagonal: bool = False):
    """A matplotlib axis, saved to ``path`` as PNG (with a legend when labelled) when the block ends."""
    plt = pyplot()
    drawing, axis = plt.subplots(figsize=(6, 4.5))
    try:
        yield axis
        if diagonal:
            axis.plot([0, 1], [0, 1], color="grey", linestyle=":")
        axis.set(xlabel=x_label, ylabel=y_label, title=title)
        if axis.get_legend_handles_labels()[0]:
            axis.legend()
        drawing.tight_layout()
        drawing.savefig(path, dpi=120)
    finally:
        plt.close(drawing)


