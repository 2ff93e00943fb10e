"""Difference metrics between two sides' gradients (the tolerances: ``experiments.core.tolerance``).

Definitions (also in docs/csv-schema.md), for one parameter tensor with gradients g_m (manual)
and g_t (torch), flattened:

    max_abs_diff = max |g_m − g_t|
    rel_err      = ‖g_m − g_t‖₂ / max(‖g_m‖₂, ‖g_t‖₂, tiny)        (0 when both are zero)
    cosine       = ⟨g_m, g_t⟩ / (‖g_m‖₂ ‖g_t‖₂)                    (1 when both are zero)
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

TINY = np.finfo(np.float64).tiny
VERDICTS = ("exact", "agree", "differ")


class Comparison(NamedTuple):
    """How one side's gradient tensor compares with the reference's (grads.csv's names)."""

    max_abs_diff: float
    rel_err: float
    cosine: float
    norm_manual: float     # ‖g_m‖₂ of the compared side
    norm_torch: float      # ‖g_t‖₂ of the reference


def compare_many(gms, gts) -> list[Comparison]:
    """Metrics of several parameter tensors at once: one ``Comparison`` per pair
    ``(gms[i], gts[i])``.

    All tensors are flattened into one float64 vector per side and reduced segment by
    segment (``ufunc.reduceat``): a fixed number of numpy calls per step, whatever the
    number of parameters; float32 inputs are measured exactly in float64.
    """
    sizes = [g.size for g in gms]
    if 0 in sizes:  # reduceat cannot express an empty segment (not produced by an MLP)
        raise ValueError(f"empty gradient tensor among sizes {sizes}")
    cm = np.concatenate([g.reshape(-1) for g in gms]).astype(np.float64, copy=False)
    ct = np.concatenate([g.reshape(-1) for g in gts]).astype(np.float64, copy=False)
    starts = np.cumsum([0, *sizes[:-1]])
    d = cm - ct
    max_abs = np.maximum.reduceat(np.abs(d), starts).tolist()
    sums = np.add.reduceat(np.stack([cm * cm, ct * ct, d * d, cm * ct]), starts, axis=1)
    out = []
    for mad, (sm, st, sd, sc) in zip(max_abs, sums.T.tolist(), strict=True):
        nm, nt = math.sqrt(sm), math.sqrt(st)
        if mad == 0:
            out.append(Comparison(0.0, 0.0, 1.0, nm, nt))
            continue
        scale = max(nm, nt)
        rel = math.sqrt(sd) / max(scale, TINY)   # ‖d‖ / max(‖g_m‖, ‖g_t‖, tiny): docs/csv-schema.md
        if nm > 0 and nt > 0:
            cos = sc / (nm * nt)
        else:
            cos = 1.0 if nm == nt else 0.0   # both zero: same direction by convention
        out.append(Comparison(mad, rel, cos, nm, nt))
    return out


def compare(gm: np.ndarray, gt: np.ndarray) -> Comparison:
    """The ``Comparison`` of two same-shape arrays."""
    return compare_many([gm], [gt])[0]


def rel_err(a: np.ndarray, b: np.ndarray) -> float:
    """‖a − b‖₂ / max(‖a‖₂, ‖b‖₂, tiny), in float64."""
    return compare(a, b).rel_err


def verdict(max_abs_diff: float, rel: float, tolerance: float) -> str:
    """exact = bit-identical; agree = rel_err within the tolerance; differ otherwise."""
    if max_abs_diff == 0:
        return "exact"
    return "agree" if rel <= tolerance else "differ"
