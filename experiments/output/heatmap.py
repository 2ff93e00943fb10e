"""The final-step heatmap of a run (grad_heatmap.png): |g_manual − g_torch| per element,
one panel per parameter, from final_grads.csv (param, row, col, abs_diff; see
``experiments.output.plots``, which saves it with the run's other figures).

Exact zeros cannot sit on the log colour scale: their cells are drawn light grey, below
it, and annotated ``0``.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib import colormaps
from matplotlib.cm import ScalarMappable
from matplotlib.colors import LogNorm, Normalize
from matplotlib.figure import Figure

ANNOTATE_MAX = 8  # heatmaps with at most 8 x 8 cells get their values written in


def _heatmap_norm(positive: np.ndarray):
    """One log colour scale over every panel, and the value exact zeros are drawn at (below
    it, in the colour map's "under" colour)."""
    if not positive.size:
        return Normalize(vmin=0.0, vmax=1.0), -1.0
    vmax = positive.max()
    vmin = min(positive.min(), vmax / 10)  # a one-value scale still spans a decade
    return LogNorm(vmin=vmin, vmax=vmax), vmin / 10


HEATMAP_PANELS = 16   # panels at most: 128 of them took 10 GB to draw


def heatmap_figure(final: pd.DataFrame) -> Figure:
    """|g_manual − g_torch| per element at the final step: one (row x col) panel per param.

    One shared log colour scale over all panels, so panels compare; exact zeros sit below
    it (light grey). A bias vector of length n is drawn as an n x 1 column.
    """
    matrices = {
        param: group.pivot(index="row", columns="col", values="abs_diff")  # (out, in)
        for param, group in final.groupby("param", sort=False)
    }
    every = len(matrices)
    if every > HEATMAP_PANELS:   # a deep net: its largest differences, in network order
        worst = final.groupby("param", sort=False)["abs_diff"].max().fillna(np.inf)
        keep = set(worst.nlargest(HEATMAP_PANELS).index)
        matrices = {p: m for p, m in matrices.items() if p in keep}
    values = final["abs_diff"].to_numpy(dtype=float)
    positive = values[np.isfinite(values) & (values > 0)]
    cmap = colormaps["viridis"].with_extremes(under="0.85")
    norm, under = _heatmap_norm(positive)
    n = len(matrices)
    ncols = min(n, 4)
    nrows = math.ceil(n / ncols)
    sizes = [_panel_size(m.shape) for m in matrices.values()]  # (width, height) inches
    widths = [max(sizes[i][0] for i in range(c, n, ncols)) for c in range(ncols)]
    heights = [
        max(sizes[i][1] for i in range(r * ncols, min(n, (r + 1) * ncols))) for r in range(nrows)
    ]
    fig = Figure(
        figsize=(sum(widths) + 1.2, sum(heights) + 0.8),
        layout="constrained",
    )
    axes = fig.subplots(
        nrows, ncols, squeeze=False, gridspec_kw={"width_ratios": widths, "height_ratios": heights}
    ).ravel()
    for ax, (param, matrix) in zip(axes, matrices.items(), strict=False):
        _heatmap_panel(ax, param, matrix, norm, cmap, under)
    for ax in axes[n:]:
        ax.remove()
    label = "|g_manual − g_torch|, log scale"
    if positive.size:
        title = "Final-step gradient difference per element (grey = exactly 0)"
    else:
        title = "Final-step gradient difference per element: all exactly 0 (bit-identical)"
    if every > n:
        title += f"\nthe {n} of {every} parameters with the largest difference"
    if positive.size:  # with no non-zero value there is no scale to show
        fig.colorbar(
            ScalarMappable(norm=norm, cmap=cmap),
            ax=axes[:n].tolist(),
            extend="min",
            label=label,
            shrink=0.9,
        )
    fig.suptitle(title)
    return fig


def _heatmap_panel(ax, param: str, matrix: pd.DataFrame, norm, cmap, under: float) -> None:
    """One parameter's |g_manual − g_torch|, written into the cells when the panel is small."""
    cells = matrix.to_numpy(dtype=float)  # (rows, cols)
    small = max(cells.shape) <= ANNOTATE_MAX
    annot = np.where(cells == 0, "0", np.char.mod("%.1e", cells)) if small else False
    sns.heatmap(
        np.where(cells == 0, under, cells),
        ax=ax,
        cmap=cmap,
        norm=norm,
        cbar=False,
        annot=annot,
        fmt="",
        annot_kws={"fontsize": 7},
        xticklabels=matrix.columns.tolist() if small else "auto",
        yticklabels=matrix.index.tolist() if small else "auto",
        linewidths=0.5 if small else 0,
        linecolor="white",
    )
    ax.set_title(f"{param}  ({cells.shape[0]}×{cells.shape[1]})", fontsize=9)
    ax.set_xlabel("col (input index)" if cells.shape[1] > 1 else "col")
    ax.set_ylabel("row (output index)")
    ax.tick_params(labelsize=7)


def _panel_size(shape: tuple[int, int]) -> tuple[float, float]:
    """Inches for one heatmap panel: room for written values when small, capped when large."""
    rows, cols = shape
    if max(rows, cols) <= ANNOTATE_MAX:
        return 0.7 * cols + 0.9, 0.45 * rows + 0.9
    return (1.8 if cols == 1 else 3.5), 3.2  # a long bias vector needs no width
