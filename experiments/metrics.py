"""Difference metrics between the two sides' gradients, and the tolerances they are held to.

Definitions (also in the README), for one parameter tensor with gradients g_m (manual)
and g_t (torch), flattened:

    max_abs_diff = max |g_m − g_t|
    rel_err      = ‖g_m − g_t‖₂ / max(‖g_m‖₂, ‖g_t‖₂, tiny)        (0 when both are zero)
    cosine       = ⟨g_m, g_t⟩ / (‖g_m‖₂ ‖g_t‖₂)                    (1 when both are zero)
"""

from __future__ import annotations

import math

import numpy as np

TINY = np.finfo(np.float64).tiny
VERDICTS = ("exact", "agree", "differ")


def compare(gm: np.ndarray, gt: np.ndarray) -> tuple[float, float, float, float, float]:
    """(max_abs_diff, rel_err, cosine, norm_manual, norm_torch) of two same-shape arrays.

    Computed in float64 whatever the inputs' dtype, so float32 runs are measured exactly.
    """
    gm = gm.ravel().astype(np.float64, copy=False)
    gt = gt.ravel().astype(np.float64, copy=False)
    d = gm - gt
    max_abs = float(np.max(np.abs(d))) if d.size else 0.0
    nm, nt = math.sqrt(gm @ gm), math.sqrt(gt @ gt)
    scale = max(nm, nt)
    rel = math.sqrt(d @ d) / scale if scale > TINY else (0.0 if max_abs == 0 else math.inf)
    if nm > 0 and nt > 0:
        cos = float(gm @ gt) / (nm * nt)
    else:
        cos = 1.0 if nm == nt else 0.0   # both zero: identical directions by convention
    return max_abs, rel, cos, nm, nt


def rel_err(a: np.ndarray, b: np.ndarray) -> float:
    """‖a − b‖₂ / max(‖a‖₂, ‖b‖₂, tiny), in float64."""
    return compare(a, b)[1]


def unit_roundoff(dtype: str) -> float:
    """u = ε/2: the largest relative error of one correctly rounded operation."""
    return float(np.finfo(dtype).eps) / 2


def gradient_tolerance(dtype: str, sizes, batch: int) -> float:
    """The rel_err two correct implementations may show on one gradient evaluation.

    Each gradient entry ∂E/∂W_l[i, j] = Σ_n δ_l[n, i] a_{l-1}[n, j] sits at the end of a
    chain of rounded operations: the forward dot products (inner lengths n_0 … n_{L-1}),
    the backward products through the later layers (n_{l+1} … n_L), the sum over the
    batch (N), and a few elementwise operations per layer (affine add, exp, division,
    σ' = a(1 − a), product with the delta: we count 5) plus 5 for the loss. With m the
    length of that chain, the classic bound (Higham, Accuracy and Stability of Numerical
    Algorithms, §3.1) on each side's relative error is γ_m = m u / (1 − m u); the two
    sides round independently (different BLAS, summation order, exp), so their
    difference is bounded by 2 γ_m. That bound assumes no cancellation between the terms
    of a sum; a gradient that is a small difference of large per-sample terms can exceed
    it, and the run then reports `differ` with the step, which is the honest answer.

    float64, seed case (sizes 3-4-1, N = 4): m = 4 + 8 + 10 + 5 = 27, tol ≈ 6.0e-15.
    float32, digits (64-30-10, N = 32): m = 32 + 104 + 10 + 5 = 151, tol ≈ 1.8e-5.
    """
    L = len(sizes) - 1
    m = batch + sum(sizes) + 5 * L + 5
    u = unit_roundoff(dtype)
    return 2 * m * u / (1 - m * u)


def verdict(max_abs_diff: float, rel: float, tolerance: float) -> str:
    """exact = bit-identical; agree = rel_err within the tolerance; differ otherwise."""
    if max_abs_diff == 0:
        return "exact"
    return "agree" if rel <= tolerance else "differ"


def _loss_grad_magnitude(loss: str, A: np.ndarray, T: np.ndarray) -> np.ndarray:
    """|∂E/∂A| with every difference replaced by a sum of magnitudes (|A| + |T| for A − T):
    the size rounding errors in A are measured against, even when A − T cancels."""
    N, K = A.shape
    if loss == "half_sse":
        return np.abs(A) + np.abs(T)
    if loss == "mse":
        return 2 * (np.abs(A) + np.abs(T)) / (N * K)
    if loss == "bce":
        return (np.abs(A) + np.abs(T)) / np.maximum(A * (1 - A), 1e-12) / (N * K)
    # cross_entropy: (P Σ T − T) / N
    S = A - A.max(axis=1, keepdims=True)
    P = np.exp(S) / np.exp(S).sum(axis=1, keepdims=True)
    return (P * np.abs(T).sum(axis=1, keepdims=True) + np.abs(T)) / N


def magnitude_gradients(net, weights, activations, T: np.ndarray) -> dict[str, float]:
    """‖G̃‖₂ per trainable parameter: the gradient recomputed with every quantity replaced
    by its magnitude (|δ|, |W|, |a|, |f'|), from the manual side's stored activations
    ``[a_0 … a_L]``, its ``weights`` (numpy) and the encoded targets T (N, K).

    Higham's componentwise bound for the rounding error of a computed gradient ĝ is
    |ĝ − g| ≤ γ_m G̃. When the terms of g cancel (a small full-batch gradient made of
    large per-sample ones, or a residual A − Y near a fit), ‖G̃‖ ≫ ‖g‖, and the relative
    error allowed grows by the factor cond = ‖G̃‖ / ‖g‖. numpy, float64.
    """
    from manual.activations import ACTIVATIONS  # the derivative formulas, not a second impl.

    a = [np.abs(np.asarray(x, dtype=np.float64)) for x in activations]
    L = len(a) - 1
    names = [net.activation] * (L - 1) + [net.output_activation]
    dA = _loss_grad_magnitude(net.loss_name, np.asarray(activations[-1], np.float64),
                              np.asarray(T, np.float64))                 # (N, K)
    out = {}
    for l in range(L - 1, -1, -1):
        f_prime = ACTIVATIONS[names[l]][1]
        d = dA * np.abs(f_prime(np.asarray(activations[l + 1], np.float64), np))  # (N, n_out)
        G = d.T @ a[l]                                                         # like W
        out[f"layers.{l}.weight"] = math.sqrt(float(np.sum(G * G)))
        out[f"layers.{l}.bias"] = math.sqrt(float(np.sum(d.sum(axis=0) ** 2)))
        if l > 0:
            W = np.abs(np.asarray(weights[f"layers.{l}.weight"], np.float64))  # (n_out, n_in)
            dA = d @ W                                                         # (N, n_in)
    return out
