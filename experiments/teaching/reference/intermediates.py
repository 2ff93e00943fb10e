"""Intermediate gradients, makemore-style: where in the chain a mistake enters.

A reference may name intermediate tensors of its forward pass (``INTERMEDIATES``: logits,
hpreact, bnraw ...); a learner who backpropagates by hand computes ∂E/∂t for each on the
way back, and may return them next to the parameters' gradients. Each returned one is
compared with autograd's (kept with ``retain_grad``), as makemore part 4's ``cmp`` does:

    exact   bit-identical
    close   rel_err within the tolerance (``experiments.core.reference``'s, measured for
            each intermediate as for each parameter)
    wrong   beyond it

in forward order. Backpropagation visits them in reverse, so the *first wrong
intermediate* is the wrong one latest in forward order: the place on the way back from
the loss where the mistake enters (every gradient computed from it is wrong too).
"""

from __future__ import annotations

import math

import pandas as pd

from experiments.core.diagnose import fit_ratio
from experiments.core.metrics import compare_many
from experiments.core.reference import Reference, allowed
from experiments.teaching.boundary.learner import BadLearner

COLUMNS = ["name", "key", "verdict", "max_abs_diff", "rel_err", "rel_tol", "ratio"]


def compare(ref: Reference, yours: dict, autograd: dict, noise: dict) -> pd.DataFrame:
    """One row per intermediate the learner returned, in forward order (``COLUMNS``), each
    held to ``reference.allowed`` with its ``noise``."""
    rows = []
    for k in ref.intermediates:
        if k not in yours:
            continue
        a, t = yours[k], autograd[k]
        if a.shape != t.shape:
            name = ref.learner_name(k)
            raise BadLearner(f"gradients(params, X, Y)[{name!r}] has shape {a.shape}; "
                             f"expected {t.shape}, the shape of {name} on this batch",
                             output=True)
        m = compare_many([a], [t])[0]
        tol = allowed(a, t, noise[k], ref.dtype)
        v = ("exact" if m.max_abs_diff == 0 else "close" if m.rel_err <= tol else "wrong")
        c, residual = fit_ratio(a, t)
        rows.append([ref.learner_name(k), k, v, m.max_abs_diff, m.rel_err, tol,
                     c if residual <= 1e-6 and v == "wrong" else math.nan])
    return pd.DataFrame(rows, columns=COLUMNS)


def first_wrong(table: pd.DataFrame) -> str:
    """The learner's name of the first wrong intermediate on the way back ("" if none)."""
    wrong = table[table["verdict"] == "wrong"]
    return str(wrong["name"].iloc[-1]) if not wrong.empty else ""


def lines(table: pd.DataFrame) -> list[str]:
    """makemore's ``cmp`` lines, forward order, the first wrong one marked."""
    if table.empty:
        return []
    first = first_wrong(table)
    width = max(len(n) for n in table["name"])
    out = []
    for r in table.itertuples():
        mark = "   <- the first wrong on the way back" if r.name == first else ""
        out.append(f"  {r.name:<{width}}  {r.verdict:<5}  maxdiff {r.max_abs_diff:.3g}  "
                   f"rel_err {r.rel_err:.2g}{mark}")
    return out
