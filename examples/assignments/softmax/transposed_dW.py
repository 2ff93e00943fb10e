"""Mistake: ∂E/∂W = dlogitsᵀ X, the product in the other order (W is square here)."""

import numpy as np


def gradients(params, X, Y):
    N = X.shape[0]
    logits = X @ params["W"] + params["b"]                 # (N, K)
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    P = e / e.sum(axis=1, keepdims=True)                   # (N, K)
    dlogits = P.copy()
    dlogits[np.arange(N), Y] -= 1
    dlogits /= N                                           # (N, K)
    return {"W": dlogits.T @ X, "b": dlogits.sum(axis=0)}  # should be X.T @ dlogits
