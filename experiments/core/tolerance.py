"""The rounding bound two correct gradient implementations are held to, per step.

rel_tol = 2γ_m · max(1, ‖G̃‖ / ‖g‖): ``gradient_tolerance`` gives 2γ_m for the chain of
rounded operations behind one gradient entry; ``magnitude_gradients`` gives G̃, the
gradient recomputed on magnitudes (with the forward pass's errors carried through), which
widens the bound where the terms of g cancel. docs/tolerance.md derives both.

The loss value gets the same kind of bound, 2γ_{m_E} · max(1, Ẽ / |E|):
``loss_tolerance`` gives 2γ_{m_E} for its chain (the forward pass, the loss's own
elementwise operations and its sum over the M = N·K elements of its reduction), and
``magnitude_loss`` gives Ẽ, the size its rounding error is bounded by.
"""

from __future__ import annotations

import math

import numpy as np

from experiments.core.metrics import TINY
from manual.activations import ACTIVATIONS


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


def _loss_grad_magnitude(loss: str, A: np.ndarray, T: np.ndarray) -> np.ndarray:
    """|∂E/∂A| with every difference replaced by a sum of magnitudes (|A| + |T| for A − T):
    the size rounding errors in A − T are measured against, even when it cancels."""
    N, K = A.shape
    if loss == "half_sse":
        return np.abs(A) + np.abs(T)
    if loss == "mse":
        return 2 * (np.abs(A) + np.abs(T)) / (N * K)
    if loss == "bce":
        return (np.abs(A) + np.abs(T)) / np.maximum(A * (1 - A), 1e-12) / (N * K)
    P = _softmax(A)   # cross_entropy: (P Σ T − T) / N
    return (P * np.abs(T).sum(axis=1, keepdims=True) + np.abs(T)) / N


def _softmax(A):
    S = np.exp(A - A.max(axis=1, keepdims=True))
    return S / S.sum(axis=1, keepdims=True)


def _loss_grad_error(loss: str, A: np.ndarray, EA: np.ndarray) -> np.ndarray:
    """How far ∂E/∂A moves when the output A carries an error EA (first order)."""
    N, K = A.shape
    if loss == "half_sse":
        return EA
    if loss == "mse":
        return 2 * EA / (N * K)
    if loss == "bce":   # magnitude_gradients bounds bce's output delta whole, not via ∂E/∂A
        return np.zeros_like(EA)
    # softmax: |δP| ≤ P (|δz| + Σ_k P_k |δz_k|) ≤ 2 P max|δz| per row
    return 2 * _softmax(A) * EA.max(axis=1, keepdims=True) / N


FORWARD_OPS = 5   # rounded operations per unit besides the dot product: + b, f (exp, 1 +, ÷)


def magnitude_gradients(net, weights, activations, T: np.ndarray, forward=None
                        ) -> dict[str, float]:
    """‖G̃‖₂ per trainable parameter, in units of γ_m (``gradient_tolerance``'s m): the
    size the rounding error of a computed gradient ĝ is bounded by, |ĝ − g| ≤ γ_m G̃,
    from the manual side's stored activations ``[a_0 … a_L]``, its ``weights`` (numpy,
    all parameters) and the encoded targets T (N, K). First order in u, two parts:

    * the backward pass's own rounding: the gradient recomputed with every quantity
      replaced by its magnitude (|δ|, |W|, |a|, |f'|; residuals such as A − T measured
      as |A| + |T|; σ' = a(1 − a) charged |1 − 2a|·a for the error of a near saturation);
    * the forward pass's rounding, carried through: each activation's error
      E_l = |f'| ⊙ (w_l (|a_{l-1}||W_l|ᵀ + |b_l|) + E_{l-1}|W_l|ᵀ) + (c/m)|a_l|, where
      w_l = (n_{l-1} + 1)/m is that dot product's own γ in units of γ_m (a
      pre-activation that cancels keeps the error of its terms; in saturation this is
      exp's condition |z|), then propagated by the chain rule into ∂E/∂W — per sample,
      and over the batch in root-sum-square, as independent roundings do.

    Where the terms of g cancel (a small full-batch gradient made of large per-sample
    ones), ‖G̃‖ ≫ ‖g‖, and the relative error allowed grows by cond = ‖G̃‖ / ‖g‖.
    ``forward``: ``_forward``'s result for these activations, when already computed.
    """
    acts, absW, names, m, E = forward or _forward(net, weights, activations)
    L = len(acts) - 1
    # backward: magnitudes (rounding) and the forward errors' effect, side by side
    A = acts[-1]
    dA = _loss_grad_magnitude(net.loss_name, A, T)                          # (N, K)
    eA = _loss_grad_error(net.loss_name, A, E[-1])                          # (N, K)
    out = {}
    for l in range(L - 1, -1, -1):
        a = acts[l + 1]
        fp, fpp = _PRIME[names[l]](a), _SECOND[names[l]](a)
        d = dA * (fp + fpp * np.abs(a) / m)                                 # (N, n_out)
        e = eA * fp + dA * fpp * E[l + 1]                                   # (N, n_out)
        if l == L - 1 and net.loss_name == "bce":
            d, e = _bce_output_delta(a, T, E[l + 1])
        # Each sample's forward error comes from its own roundings: independent, so over
        # the batch they add in root-sum-square (Higham & Mary, SIAM J. Sci. Comput. 41
        # (2019), probabilistic rounding error analysis), while the backward pass's own
        # rounding (first term) keeps the worst-case linear sum.
        a_prev = np.abs(acts[l])
        G = d.T @ a_prev + np.sqrt((e * e).T @ (a_prev * a_prev)
                                   + (d * d).T @ (E[l] * E[l]))             # like W
        out[f"layers.{l}.weight"] = math.sqrt(float(np.vdot(G, G)))
        if net.bias is True:
            db = d.sum(axis=0) + np.sqrt((e * e).sum(axis=0))               # like b
            out[f"layers.{l}.bias"] = math.sqrt(float(db @ db))
        if l > 0:
            dA, eA = d @ absW[l], e @ absW[l]                               # (N, n_in)
    return out


def _bce_output_delta(A: np.ndarray, T: np.ndarray, E_L: np.ndarray):
    """The output delta's magnitude and forward error for bce on sigmoid outputs.

    ∂E/∂A = (A − T)/max(A(1 − A), ε)/M times σ' = A(1 − A), both from the same Â, so the
    denominator cancels to first order and the output delta is (Â − T)·min(1, Â(1 − Â)/ε)/M:
    size (|A| + |T|)/M, forward error E_L/M. Where the clamp ε acts (outputs saturated to
    within 1e-12, in float32 often exactly 0 or 1) the factor is taken as the same on both
    sides: a side that saturates one output and not the other would show as `differ`.
    """
    M = A.shape[0] * A.shape[1]
    return (np.abs(A) + np.abs(T)) / M, E_L / M


def _forward(net, weights, activations):
    """The forward pass's magnitudes: the activations in float64, |W_l|, the activation
    names, the gradient chain's m and the forward errors E_l in units of its γ_m."""
    acts = [x if x.dtype == np.float64 else x.astype(np.float64) for x in activations]
    L = len(acts) - 1
    m = acts[0].shape[0] + sum(net.sizes) + 5 * L + 5
    names = [net.activation] * (L - 1) + [net.output_activation]
    absW = [np.abs(np.asarray(weights[f"layers.{l}.weight"], np.float64)) for l in range(L)]
    absb = [np.abs(np.asarray(weights[f"layers.{l}.bias"], np.float64))
            if net.bias is not False else 0.0 for l in range(L)]
    return acts, absW, names, m, _forward_errors(acts, absW, absb, names, net.sizes, m)


def _forward_errors(acts, absW, absb, names, sizes, m) -> list[np.ndarray]:
    """The error each activation a_l carries from the forward pass, in units of γ_m:
    E_0 = 0 (the inputs are exact), then E_l as in ``magnitude_gradients``."""
    E = [np.zeros_like(acts[0])]
    for l in range(len(acts) - 1):
        fresh = (sizes[l] + 1) / m * (np.abs(acts[l]) @ absW[l].T + absb[l])
        dz = fresh + E[l] @ absW[l].T                                       # (N, n_out)
        E.append(_PRIME[names[l]](acts[l + 1]) * dz + FORWARD_OPS / m * np.abs(acts[l + 1]))
    return E


# f' as a function of the stored activation a = f(z): manual's own formula (non-negative
# for these four), and |df'/da|, how far f' moves when a carries an error (σ' = a(1 − a)
# with a ≈ 1 cancels in 1 − a).
_PRIME = {name: (lambda a, fp=fp: fp(a, np)) for name, (_, fp) in ACTIVATIONS.items()}
_SECOND = {
    "sigmoid": lambda a: np.abs(1 - 2 * a),
    "tanh": lambda a: 2 * np.abs(a),
    "relu": np.zeros_like,
    "identity": np.zeros_like,
}


def step_tolerances(net, weights, activations, T, metrics, dtype: str) -> list[float]:
    """Each parameter's rel_tol at one step: 2γ_m · max(1, ‖G̃‖/‖g‖), in ``metrics`` order
    (``compare_many`` rows), for the batch the activations hold. An overflowed magnitude
    (inf, or 0·inf = nan) bounds nothing: its tolerance is inf."""
    return step_bounds(net, weights, activations, T, metrics, dtype)[0]

# -- the loss value ------------------------------------------------------------------------

LOG_FLOOR = math.exp(-100.0)   # both sides clamp log x at −100 (torch.nn.BCELoss): x = e^-100


def loss_tolerance(dtype: str, sizes, batch: int) -> float:
    """The rel_diff two correct implementations may show on one loss value: 2γ_{m_E}.

    E = c·Σ u / d sums one term u per output element, M = N·K of them (``manual.losses``).
    Each term sits at the end of the forward pass's chain (the dot products and the
    elementwise operations a gradient's chain counts: Σ sizes + 5L) and a few operations
    of its own (the residual or the logs and the product with the target: 5 are counted);
    then come the sum of the M terms and the scaling by c/d. So

        m_E = M + Σ sizes + 5L + 5

    the gradient's m with its sum over the batch (N) replaced by the loss's sum over every
    element its reduction covers (M = N·K: mse and bce average over all of them, half_sse
    and cross_entropy sum them). Each side's error is at most γ_{m_E}·Ẽ
    (``magnitude_loss``), the two round independently: 2γ_{m_E}.

    float64, seed (3-4-1, N = 4): m_E = 4 + 8 + 10 + 5 = 27, tol ≈ 6.0e-15 (K = 1: the
    gradients' own). float64, iris (4-8-3, N = 16): m_E = 48 + 15 + 10 + 5 = 78, tol ≈ 1.7e-14.
    """
    L = len(sizes) - 1
    m = batch * sizes[-1] + sum(sizes) + 5 * L + 5
    u = unit_roundoff(dtype)
    return 2 * m * u / (1 - m * u)


def magnitude_loss(net, weights, activations, T: np.ndarray, forward=None) -> float:
    """Ẽ in units of γ_{m_E} (``loss_tolerance``'s m_E): the size the rounding error of a
    computed loss value Ê is bounded by, |Ê − E| ≤ γ_{m_E}·Ẽ, from the manual side's stored
    activations, its ``weights`` and the encoded targets T (N, K). First order in u, plus
    the squared errors' exact second-order term. Two parts:

    * the loss's own rounding: the sum of its terms' magnitudes |c·u|/d (the term's own
      operations, the sum over M and the scaling are at most γ_{m_E} of it): (A − T)² for
      the squared errors; |T||log A| + |1 − T||log(1 − A)| for bce (logs clamped at −100,
      as on both sides); |T|(|log P| + 1) for cross_entropy, where log P = S − log Σ exp S
      (S = A − max A ≤ 0 and the log ≥ 0: no cancellation) and the 1 is the log's absolute
      error from the rounded sum Σ exp S ≥ 1;
    * the output's forward error |δA| ≤ γ_{m_E} F_L (``_forward_errors``) through the
      loss's slope |∂E/∂A|: the derivative itself, not a sum of magnitudes, since E is
      computed from Â and a loss near its minimum moves with its output only to second
      order. The squared errors add that second-order term, ½|∂²E/∂A²||δA|² (exact for a
      quadratic): it covers an output that fits its target to within rounding.

    An overflowed magnitude (inf, nan) bounds nothing: ``step_bounds`` turns it into an
    infinite tolerance. ``forward`` as in ``magnitude_gradients``.
    """
    acts, _, _, m, F = forward or _forward(net, weights, activations)
    A = acts[-1]                                                            # (N, K)
    N, K = A.shape
    M = N * K
    m_E = M + sum(net.sizes) + 5 * (len(acts) - 1) + 5
    dA = F[-1] * (m / m_E)      # the forward error of A in units of γ_{m_E}     (N, K)
    gamma = loss_tolerance(net.dtype, net.sizes, N) / 2
    loss = net.loss_name
    if loss in ("half_sse", "mse"):
        scale = 0.5 if loss == "half_sse" else 1 / M                       # E = scale·Σ(A − T)²
        R = np.abs(A - T)                                                   # (N, K)
        own = scale * R * R
        slope = scale * (2 * R + gamma * dA)    # |∂E/∂A| + ½|∂²E/∂A²|·γ_{m_E}F, exact
    elif loss == "bce":
        A_, A1 = np.maximum(A, LOG_FLOOR), np.maximum(1 - A, LOG_FLOOR)
        own = (np.abs(T) * -np.log(A_) + np.abs(1 - T) * -np.log(A1)) / M
        slope = np.abs(T / A_ - (1 - T) / A1) / M
    else:   # cross_entropy, E = −(1/N) Σ T log P
        S = A - A.max(axis=1, keepdims=True)                                # (N, K) ≤ 0
        lse = np.log(np.exp(S).sum(axis=1, keepdims=True))                  # (N, 1) ≥ 0
        P = np.exp(S - lse)                                                 # (N, K)
        own = np.abs(T) * (lse - S + 1) / N
        slope = np.abs(P * T.sum(axis=1, keepdims=True) - T) / N
    return float(own.sum() + (slope * dA).sum())


def step_bounds(net, weights, activations, T, metrics, dtype: str, losses=None
                ) -> tuple[list[float], float]:
    """One step's bounds from one pass over the forward errors: each parameter's rel_tol
    (as ``step_tolerances``) and, given ``losses`` = (E_m, E_t), the loss's
    2γ_{m_E} · max(1, Ẽ / max(|E_m|, |E_t|)) (else nan). An overflowed magnitude bounds
    nothing: its tolerance is inf."""
    forward = _forward(net, weights, activations)
    N = len(activations[0])
    tols = []
    if metrics:
        base = gradient_tolerance(dtype, net.sizes, N)
        G = magnitude_gradients(net, weights, activations, T, forward)
        for k, m in zip(net.trainable, metrics, strict=True):
            tols.append(_widened(base, G[k], max(m.norm_manual, m.norm_torch)))
    loss_tol = math.nan
    if losses is not None:
        size = max(abs(losses[0]), abs(losses[1]))
        loss_tol = _widened(loss_tolerance(dtype, net.sizes, N),
                            magnitude_loss(net, weights, activations, T, forward), size)
    return tols, loss_tol


def _widened(base: float, magnitude: float, size: float) -> float:
    """base · max(1, cond), cond = magnitude / size: inf where cond is not finite."""
    cond = magnitude / max(size, TINY)
    return base * max(cond, 1.0) if math.isfinite(cond) else math.inf
