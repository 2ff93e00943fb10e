"""Losses and their derivatives with respect to the network output, by hand.

Notation: A (N, K) the output of the last layer (after ``output_activation``), Y the
targets, N the batch size, K the number of outputs, M = N·K. The reductions are part of
each definition; the factors ½, 1/N and 1/M are where hand derivations usually slip.

    half_sse       E = ½ Σ_n Σ_k (A − Y)²                       ∂E/∂A = A − Y
    mse            E = (1/M) Σ_n Σ_k (A − Y)²                   ∂E/∂A = 2 (A − Y) / M
    bce            E = −(1/M) Σ [Y log A + (1 − Y) log(1 − A)]  ∂E/∂A = (A − Y) / (A (1 − A)) / M
    cross_entropy  P = softmax(A) row-wise (A are logits),
                   E = −(1/N) Σ_n Σ_k T log P                   ∂E/∂A = (P Σ_k T − T) / N
                   T = one-hot of integer labels, or given rows of probabilities
                   (then Σ_k T = 1 and ∂E/∂A = (P − T) / N).

bce follows torch.nn.BCELoss at the edges so that outputs of exactly 0 or 1 give finite
numbers: each log is clamped at −100, and the denominator A(1 − A) at float32(1e-12);
log(1 − A) is evaluated as log1p(−A), exact for small A.

Every E is one per-element quantity u (N, K) summed and then scaled, E = c · Σ u / d
(``ELEMENTS``: half_sse u = (A − Y)², c = ½, d = 1; mse the same u, c = 1, d = M; bce
c = −1, d = M; cross_entropy u = T log P, c = −1, d = N). ``loss_terms`` gives each
element's share c · u / d, from the same u.
"""

from __future__ import annotations

LOG_CLAMP = -100.0   # torch.nn.BCELoss clamps log(x) at -100 (documented in its reference)
BCE_EPS = 9.999999960041972e-13  # x(1 - x) clamp: torch's `float EPSILON = 1e-12` (Loss.cpp)


def _clamped_log(x, xp):
    """max(log x, −100) for x ≥ 0, without ever evaluating log 0 (so numpy stays quiet)."""
    pos = x > 0
    return xp.where(pos, xp.clip(xp.log(xp.where(pos, x, 1.0)), min=LOG_CLAMP), LOG_CLAMP)


def _clamped_log1m(x, xp):
    """max(log(1 − x), −100) for x ≤ 1, as log1p(−x): accurate for small x (torch does the
    same), and never log 0."""
    below = x < 1
    return xp.where(below, xp.clip(xp.log1p(-xp.where(below, x, 0.0)), min=LOG_CLAMP),
                    LOG_CLAMP)


def _one_hot(labels, K, dtype, xp):
    """(N,) integer labels -> (N, K) one-hot of ``dtype``."""
    classes = xp.arange(K, device=labels.device if hasattr(labels, "device") else None)
    return xp.astype(labels[:, None] == classes[None, :], dtype)   # (N, K)


def targets_for(name, A, Y, xp):
    """Targets as a float (N, K) array: integer labels become one-hot for cross_entropy."""
    if name == "cross_entropy" and Y.ndim == 1:
        return _one_hot(Y, A.shape[1], A.dtype, xp)                 # (N, K)
    return xp.astype(Y, A.dtype) if Y.dtype != A.dtype else Y       # (N, K)


def squared_error(A, T, xp):
    """u = (A − T)² per element (half_sse, mse)."""
    D = A - T                                         # (N, K)
    return D * D                                      # (N, K)


def bce_elements(A, T, xp):
    """u = Y log A + (1 − Y) log(1 − A) per element, logs clamped as BCELoss (bce)."""
    log_a = _clamped_log(A, xp)                       # (N, K)  log 0 -> -100
    log_1a = _clamped_log1m(A, xp)                    # (N, K)  log(1 − A) via log1p
    return T * log_a + (1 - T) * log_1a               # (N, K)


def _log_softmax(A, xp):
    S = A - xp.max(A, axis=1, keepdims=True)          # (N, K)  shift: exp cannot overflow
    return S - xp.log(xp.sum(xp.exp(S), axis=1, keepdims=True))  # (N, K)


def cross_entropy_elements(A, T, xp):
    """u = T log softmax(A) per element (cross_entropy)."""
    return T * _log_softmax(A, xp)                    # (N, K)


#: name -> (u, reduction): E = c · Σ_n Σ_k u / d with (c, d) = reduction(N, K)
ELEMENTS = {
    "half_sse": (squared_error, lambda N, K: (0.5, 1)),
    "mse": (squared_error, lambda N, K: (1, N * K)),
    "bce": (bce_elements, lambda N, K: (-1, N * K)),
    "cross_entropy": (cross_entropy_elements, lambda N, K: (-1, N)),
}


def _total(name, A, T, xp):
    """E = c · Σ u / d: the whole sum first, then the reduction's constants."""
    u, reduction = ELEMENTS[name]
    c, d = reduction(*A.shape)
    return c * xp.sum(u(A, T, xp)) / d                # ()


def loss_terms(name, A, T, xp):
    """Each element's share c · u / d of E (N, K), for showing where the error comes from.
    They add up to E up to rounding: E itself sums u before scaling (``_total``)."""
    u, reduction = ELEMENTS[name]
    c, d = reduction(*A.shape)
    return c * u(A, T, xp) / d                        # (N, K)


def half_sse(A, T, xp):
    return _total("half_sse", A, T, xp)


def half_sse_grad(A, T, xp):
    return A - T                                  # (N, K)


def mse(A, T, xp):
    return _total("mse", A, T, xp)


def mse_grad(A, T, xp):
    M = A.shape[0] * A.shape[1]                   # N·K
    return 2 * (A - T) / M                        # (N, K)


def bce(A, T, xp):
    return _total("bce", A, T, xp)


def bce_grad(A, T, xp):
    M = A.shape[0] * A.shape[1]                       # N·K
    denom = xp.clip(A * (1 - A), min=BCE_EPS)         # (N, K)  0 at saturated outputs
    return (A - T) / denom / M                        # (N, K)


def cross_entropy(A, T, xp):
    return _total("cross_entropy", A, T, xp)


def cross_entropy_grad(A, T, xp):
    P = xp.exp(_log_softmax(A, xp))                   # (N, K)  softmax
    return (P * xp.sum(T, axis=1, keepdims=True) - T) / A.shape[0]  # (N, K)


#: name -> (E(A, T), ∂E/∂A)
LOSSES = {
    "half_sse": (half_sse, half_sse_grad),
    "mse": (mse, mse_grad),
    "bce": (bce, bce_grad),
    "cross_entropy": (cross_entropy, cross_entropy_grad),
}
