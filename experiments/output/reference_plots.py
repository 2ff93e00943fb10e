"""The figures of a reference check's folder (``teaching.reference.report``), in the one
plot style of ``experiments.output.plots``:

    plot_reference_initial(initial, path)   initial.png: the initial point, per parameter
                                            and intermediate, your rel_err against the
                                            tolerance
    plot_reference_steps(steps, path)       steps.png: rel_err and tolerance over training
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from experiments.output.plots import (
    ALL_ZERO_FLOOR,
    LINE_FIGSIZE,
    STEP_LABEL,
    log_lineplot,
    save_listed,
)
from experiments.output.style import style, zero_floor

__all__ = ["plot_reference_initial", "plot_reference_steps"]


def plot_reference_steps(steps: pd.DataFrame, path: str | Path) -> Path:
    """A reference check's training (its steps.csv: step, name, rel_err, rel_tol, ...):
    each parameter's rel_err against autograd (solid) and that step's measured tolerance
    rel_tol (dotted, same colour) over steps, log y, in the learner's names; written to
    ``path``."""
    long = steps.rename(columns={"name": "param"}).melt(
        id_vars=["step", "param"], value_vars=["rel_err", "rel_tol"], var_name="line",
        value_name="value")
    with style():
        fig = Figure(figsize=LINE_FIGSIZE, layout="constrained")
        ax = fig.add_subplot()
        scale = log_lineplot(
            ax, long, y="value", hue="param", style="line", style_order=["rel_err", "rel_tol"],
            dashes={"rel_err": "", "rel_tol": (1, 2)}, zeros_of="rel_err",
            title="Your gradient's relative error per parameter (solid) against each step's "
                  "measured tolerance (dotted)\n‖g_yours − g_autograd‖₂ / max(‖g_yours‖₂, "
                  "‖g_autograd‖₂), at autograd's weights")
        ax.set_xlabel(STEP_LABEL)
        ax.set_ylabel("relative error (dimensionless)" + scale)
        return save_listed(fig, Path(path))


VERDICT_COLOURS = {"agree": "C2", "exact": "C2", "differ": "C3"}


def plot_reference_initial(initial: pd.DataFrame, path: str | Path) -> Path:
    """A reference check's initial point (its initial.csv: call, name, kind, rel_err,
    rel_tol, verdict, ...), at the last call made (the one diagnosed when it differs): one
    row per parameter, then per intermediate in forward order; your rel_err against
    autograd (a dot: green agrees, red differs) and the tolerance (a bar), log x. An exact
    0 is drawn at a floor a decade below the smallest value, as an x."""
    call = initial["call"].iloc[-1]
    rows = initial[initial["call"] == call]
    err, tol = (rows[c].to_numpy(dtype=float) for c in ("rel_err", "rel_tol"))
    floor = zero_floor(np.concatenate([err, tol]), ALL_ZERO_FLOOR)
    y = np.arange(len(rows))
    colours = [VERDICT_COLOURS.get(v, "0.5") for v in rows["verdict"]]
    zero = err == 0
    with style():
        fig = Figure(figsize=(8.0, 0.32 * len(rows) + 2.0), layout="constrained")
        ax = fig.add_subplot()
        ax.scatter(tol, y, marker="|", s=260, color="0.35", label="tolerance rel_tol", zorder=2)
        ax.scatter(err[~zero], y[~zero], c=[c for c, z in zip(colours, zero, strict=True)
                                            if not z], s=36, label="your rel_err", zorder=3)
        if zero.any():
            ax.scatter(np.full(int(zero.sum()), floor), y[zero], marker="x", s=40,
                       c=[c for c, z in zip(colours, zero, strict=True) if z],
                       label=f"exact 0 (bit-identical), drawn at {floor:.0e}", zorder=3)
        ax.set_xscale("log")
        ax.set_yticks(y, [f"{n} ({'intermediate' if k == 'intermediate' else 'parameter'})"
                          for n, k in zip(rows["name"], rows["kind"], strict=True)])
        ax.set_ylim(len(rows) - 0.5, -0.5)
        ax.set_xlabel("relative error against autograd (dimensionless, log scale)")
        ax.set_title(f"The initial point, call \"{call}\": your gradients against autograd's"
                     "\nparameters first, then the intermediates in forward order")
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
        return save_listed(fig, Path(path))
