"""The one look of every handgrad figure: seaborn's whitegrid, one font scale, one dpi.

    with style():
        fig, axes = figure(ncols=2)
        ...
        save(fig, folder / "loss.png")
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import seaborn as sns
from matplotlib.figure import Figure

DPI = 100            # keeps committed PNGs small (tens of kB)
FONT_SCALE = 0.85


@contextlib.contextmanager
def style(grid: bool = True) -> Iterator[None]:
    """seaborn's whitegrid (``grid=False``: white, for heat maps and diagrams)."""
    with (sns.axes_style("whitegrid" if grid else "white"),
          sns.plotting_context("notebook", font_scale=FONT_SCALE)):
        yield


def figure(ncols: int = 1, width: float = 6.0, height: float = 4.0, nrows: int = 1, **kw):
    """A pyplot-free Figure (no global state, safe in worker threads) and its axes, flat."""
    fig = Figure(figsize=(width * ncols, height * nrows), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False, **kw).ravel()
    return fig, axes


def title(fig: Figure, text: str, note: str = "") -> None:
    """The figure's overall title (every study figure has one, so a figure cut out of its
    report still says what it shows), with an optional second line."""
    fig.suptitle(text + (f"\n{note}" if note else ""), fontsize=11)


def save(fig: Figure, path: Path, tight: bool = True) -> str:
    """Write ``fig`` as PNG at ``DPI``; return the file name (for report links)."""
    path = Path(path)
    fig.savefig(path, dpi=DPI, format="png", bbox_inches="tight" if tight else None)
    return path.name


def zero_floor(values, all_zero: float = 1e-18) -> float:
    """Where exact zeros go on a log axis: a decade below the smallest finite positive value,
    so a zero is never drawn above a real (if tiny) number; ``all_zero`` when there is none."""
    values = np.asarray(values, dtype=float)
    positive = values[np.isfinite(values) & (values > 0)]
    return 10.0 ** (math.floor(math.log10(positive.min())) - 1) if positive.size else all_zero
