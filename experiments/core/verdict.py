"""A run's verdict, from its tables (the runner's, or a run directory's CSVs): the summary
(summary.csv, one row per parameter, a ``loss`` row and an ``all`` row) and the one word
that stands for the run.

    summarize(grads, keys, loss)   summary.csv's frame (SUMMARY_COLUMNS)
    run_verdict(summary)           exact, agree, differ, or none
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from experiments.core.schema import SUMMARY_COLUMNS

__all__ = ["run_verdict", "summarize"]


def summarize(grads: pd.DataFrame, keys, loss: pd.DataFrame | None = None) -> pd.DataFrame:
    """One row per parameter, a ``loss`` row and an ``all`` row: the verdict, and the step
    it rests on.

    The verdict judges the code, not the drift of a free run: its worst step is the one
    where the gradient code, evaluated at the same weights as the reference
    (``gradient_rel_err``; rel_err itself in synced mode), comes closest to (or goes
    furthest past) that step's tolerance; ``rel_err``, ``tolerance`` and ``worst_ratio``
    are that step's. The update is judged too: ``update_ratio`` is the worst
    update_max_abs_diff / update_tol. Verdict: exact (every gradient and update
    bit-identical), agree (both ratios ≤ 1), differ. The other columns are extremes over
    the logged steps: max_abs_diff, max_rel_err, weight_max_abs_diff, fd_rel_err (max),
    min_cosine (min), and drift_ratio = max rel_err / rel_tol of the sides at their own
    weights (= worst_ratio in synced mode; in free mode it includes the drift). A step
    where either side's gradient is non-finite (the divergence step) is left out.

    The ``loss`` row (given ``loss``, loss.csv's frame) judges the loss value the same
    way: loss_rel_diff against loss_rel_tol (the loss code at the same weights; rel_diff
    and rel_tol where no probe judged it), over the same steps (a step with a non-finite
    loss left out too: a run without one finite step has no summary rows at all); its
    max_abs_diff, max_rel_err and drift_ratio are abs_diff, rel_diff and rel_diff /
    rel_tol's, and the gradient-only columns stay empty. The ``all`` row's numbers are
    every parameter's together; its verdict is the run's: ``differ`` when the loss or any
    parameter differs, ``exact`` when all are exact.
    """
    rows = []
    finite = grads[np.isfinite(grads["norm_manual"]) & np.isfinite(grads["norm_torch"])]
    for k in keys:
        g = finite[finite["param"] == k]
        if not g.empty:
            rows.append([k, *_summary_row(g)])
    if loss is not None and "loss_rel_tol" in loss and not finite.empty:
        ok = loss[np.isfinite(loss["loss_manual"]) & np.isfinite(loss["loss_torch"])
                  & loss["step"].isin(finite["step"])]
        if not ok.empty:
            rows.append(["loss", *_loss_row(ok)])
    if not finite.empty:
        row = ["all", *_summary_row(finite)]
        rows.append(row)
        verdicts = {r[SUMMARY_COLUMNS.index("verdict")] for r in rows}
        row[SUMMARY_COLUMNS.index("verdict")] = next(
            v for v in ("differ", "agree", "exact") if v in verdicts)
    return pd.DataFrame(rows, columns=SUMMARY_COLUMNS)


def run_verdict(summary: pd.DataFrame) -> str:
    """The run's verdict: the ``all`` row's (every parameter and the loss: ``differ`` when
    any differs), or ``none`` when no step was judged."""
    rows = summary.loc[summary["param"] == "all", "verdict"]
    return str(rows.iloc[0]) if len(rows) else "none"


def _worst(g: pd.DataFrame, err: str, tol: str, own_err: str, own_tol: str):
    """The judged comparison: ``err`` / ``tol`` where recorded (the code at the same
    weights), ``own_err`` / ``own_tol`` elsewhere; the row where their ratio is largest (a
    ratio that is undefined counts as infinite), that ratio, and the drift ratio: the
    largest own_err / own_tol."""
    judged = g[err].notna()
    e = g[err].where(judged, g[own_err])
    t = g[tol].where(judged, g[own_tol])
    ratio = (e / t).fillna(np.inf)
    worst = ratio.idxmax()
    drift = float((g[own_err] / g[own_tol]).fillna(np.inf).max())
    return e, t, worst, float(ratio.max()), drift


def _verdict(exact: bool, ratio: float, update_ratio: float = math.nan) -> str:
    return "exact" if exact else ("agree" if ratio <= 1 and not update_ratio > 1 else "differ")


def _summary_row(g: pd.DataFrame) -> list:
    err, tol, worst, r, drift = _worst(g, "gradient_rel_err", "gradient_rel_tol", "rel_err",
                                       "rel_tol")
    upd = (g["update_max_abs_diff"] / g["update_tol"]).where(g["update_max_abs_diff"] > 0, 0.0)
    ur = float(upd.max()) if upd.notna().any() else math.nan
    v = _verdict((err == 0).all() and not (g["update_max_abs_diff"] > 0).any(), r, ur)
    return [g["max_abs_diff"].max(), float(err[worst]), int(g.loc[worst, "step"]),
            g["cosine"].min(), g["weight_max_abs_diff"].max(), g["fd_rel_err"].max(),
            float(tol[worst]), v, r, g["rel_err"].max(), drift, ur]


def _loss_row(loss: pd.DataFrame) -> list:
    err, tol, worst, r, drift = _worst(loss, "loss_rel_diff", "loss_rel_tol", "rel_diff",
                                       "rel_tol")
    return [loss["abs_diff"].max(), float(err[worst]), int(loss.loc[worst, "step"]), math.nan,
            math.nan, math.nan, float(tol[worst]), _verdict(bool((err == 0).all()), r), r,
            loss["rel_diff"].max(), drift, math.nan]
