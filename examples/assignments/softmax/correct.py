"""Softmax regression by hand. P = softmax(X W + b); E = −(1/N) Σ_n log P[n, y_n].

∂E/∂logits = (P − onehot(Y))/N;  ∂E/∂W = Xᵀ ∂E/∂logits;  ∂E/∂b = Σ_n ∂E/∂logits_n.
"""

import numpy as np


def gradients(params, X, Y):
    N = X.shape[0]
    logits = X @ params["W"] + params["b"]                 # (N, K)
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    P = e / e.sum(axis=1, keepdims=True)                   # (N, K)
    dlogits = P.copy()
    dlogits[np.arange(N), Y] -= 1
    dlogits /= N                                           # (N, K)
    return {"W": X.T @ dlogits, "b": dlogits.sum(axis=0), "logits": dlogits}
