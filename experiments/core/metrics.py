"""Difference metrics between two sides' gradients (the tolerances: ``experiments.core.tolerance``).

Definitions (also in docs/csv-schema.md), for one parameter tensor with gradients g_m (manual)
and g_t (torch), flattened:

    max_abs_diff = max |g_m − g_t|
    rel_err      = ‖g_m − g_t‖₂ / max(‖g_m‖₂, ‖g_t‖₂, tiny)        (0 when both are zero)
    cosine       = ⟨g_m, g_t⟩ / (‖g_m‖₂ ‖g_t‖₂)                    (1 when both are zero)
"""

from __future__ import annotations

import functools
import itertools
import math
from typing import NamedTuple

import numpy as np

TINY = float(np.finfo(np.float64).tiny)
VERDICTS = ("exact", "agree", "differ")


#: sums of squares in [2^-960, 2^960] are measured as they are: every square that matters is a
#: normal number (entries under 2^-511 lose at most 2^-1074 each, 2^-114 relative to 2^-960),
#: and products of two norms stay within [2^-960, 2^960], far from under- and overflow
SAFE_SUM = (2.0**-960, 2.0**960)


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
    number of parameters; float32 inputs are measured exactly in float64. A segment whose
    sums of squares leave the safe range is measured again rescaled (``_rescaled``).
    """
    sizes = [g.size for g in gms]
    if 0 in sizes:  # reduceat cannot express an empty segment (not produced by an MLP)
        raise ValueError(f"empty gradient tensor among sizes {sizes}")
    A = np.empty((3, sum(sizes)))                      # rows: g_m, g_t, d = g_m − g_t
    np.concatenate([g.reshape(-1) for g in gms], out=A[0])
    np.concatenate([g.reshape(-1) for g in gts], out=A[1])
    starts = _starts(tuple(sizes))
    # differences and squares beyond float64's range are expected here: the segments they
    # touch leave the safe range and are measured again rescaled, so numpy's warning is noise
    with np.errstate(over="ignore", invalid="ignore"):
        np.subtract(A[0], A[1], out=A[2])
        sums = _sums(A, starts).tolist()                  # [Σg_m², Σg_t², Σd², Σg_m g_t]
    top = np.maximum.reduceat(np.abs(A), starts, axis=1)   # (3, P) max |g_m|, |g_t|, |d|
    max_abs = top[2].tolist()
    # every sum of squares in the safe range, or of an all-zero row (a zero tensor, not one
    # whose squares underflowed); inf and nan fail both tests
    lo, hi = SAFE_SUM
    if not all(lo <= s <= hi or t == 0 for s, t in zip(itertools.chain(*sums[:3]),
                                                           top.ravel().tolist(), strict=True)):
        return _rescaled(A, starts, sizes, top, sums)
    return [_comparison(mad, *s) for mad, *s in zip(max_abs, *sums, strict=True)]


def _comparison(mad, sm, st, sd, sc, em=0, et=0, ed=0) -> Comparison:
    """One segment's metrics from its sums of squares (``_sums``), each of g_m, g_t, d
    scaled by 2^-e (``_rescaled``; e = 0: as measured), so ‖g_m‖ = √sm·2^em and so on."""
    rm, rt = math.sqrt(sm), math.sqrt(st)
    nm, nt = (rm, rt) if not (em or et) else (_ldexp(rm, em), _ldexp(rt, et))
    if mad == 0:
        return Comparison(0.0, 0.0, 1.0, nm, nt)
    rs, es = (rm, em) if _ldexp(rm, em - et) >= rt else (rt, et)     # the larger norm
    # ‖d‖ / max(‖g_m‖, ‖g_t‖, tiny): docs/csv-schema.md
    rel = math.sqrt(sd) / max(rs, TINY)
    rel = rel if ed == es else _ldexp(rel, ed - es)
    if rm > 0 and rt > 0:
        cos = sc / (rm * rt)     # the scales cancel: Σ(g_m 2^-em)(g_t 2^-et) / (rm rt)
    elif math.isnan(rm) or math.isnan(rt):
        cos = math.nan
    else:
        cos = 1.0 if rm == rt else 0.0   # both zero: same direction by convention
    return Comparison(mad, rel, cos, nm, nt)


@functools.lru_cache(maxsize=64)
def _starts(sizes: tuple) -> np.ndarray:
    """Each segment's first index in the flat vector (read only: shared between calls)."""
    starts = np.cumsum([0, *sizes[:-1]])
    starts.flags.writeable = False
    return starts


def _sums(A: np.ndarray, starts) -> np.ndarray:
    """Per segment: Σg_m², Σg_t², Σd², Σg_m g_t, shape (4, segments), from the rows of
    ``A`` = [g_m; g_t; d] (3, n)."""
    S = np.empty((4, A.shape[1]))
    np.multiply(A, A, out=S[:3])
    np.multiply(A[0], A[1], out=S[3])
    return np.add.reduceat(S, starts, axis=1)


def _rescaled(A, starts, sizes, top, sums) -> list[Comparison]:
    """``compare_many``'s result with each of g_m, g_t and d (the rows of ``A``) scaled per
    segment by 2^-e where its plain sum of squares left the safe range (the way a careful
    nrm2 scales before squaring): squares near 1 neither underflow (gradients under √tiny ≈
    1.5e-154 square to 0) nor overflow (over ~1.3e154 to inf).

    Each row takes e from its own largest magnitude, so a difference far below the
    gradients (1e-200 beside 1) is measured as well as the gradients are. A difference that
    overflowed (1e308 against −1e308, two finite sides) is computed again from g_m and g_t
    both scaled by the e of the larger of the two. Only those segments are scaled (e = 0
    elsewhere, and ldexp(x, 0) = x): a power of two is exact for normal numbers, but scaling
    a segment that needs none could still move entries across the subnormal boundary and
    change the last bit of what a normal-range run has always measured. A side holding inf
    or nan is not scaled, nor is d where either side does: those propagate.
    """
    max_abs = top[2].tolist()                    # top: (3, P) max |g_m|, |g_t|, |d|
    e = np.frexp(top)[1]                                              # 0 for an all-zero row
    finite = np.isfinite(top)
    S = np.array(sums[:3])                                            # (3, P) Σg_m², Σg_t², Σd²
    unsafe = ~((SAFE_SUM[0] <= S) & (S <= SAFE_SUM[1]))
    ex = np.where(finite & unsafe, e, 0)                              # (3, P)
    overflowed = finite[:2].all(axis=0) & ~finite[2]                  # d = ±inf, sides finite
    ex[2, overflowed] = np.frexp(top[:2, overflowed].max(axis=0))[1]
    scaled = np.ldexp(A, -np.repeat(ex, sizes, axis=1))              # (3, n)
    with np.errstate(over="ignore", invalid="ignore"):   # inf − inf where a side is inf
        if overflowed.any():
            again = np.repeat(overflowed, sizes)
            shift = -np.repeat(ex[2], sizes)[again]
            scaled[2, again] = np.ldexp(A[0, again], shift) - np.ldexp(A[1, again], shift)
        rows = zip(max_abs, *_sums(scaled, starts).tolist(), *ex.tolist(), strict=True)
    return [_comparison(*row) for row in rows]


def _ldexp(x: float, e: int) -> float:
    """x·2^e, inf where that overflows (math.ldexp raises instead)."""
    try:
        return math.ldexp(x, e)
    except OverflowError:
        return math.copysign(math.inf, x)


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
