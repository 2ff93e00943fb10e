"""A correct learner file for classification: sigmoid hidden layers, a linear output
(the logits), softmax cross-entropy averaged over the batch (``cross_entropy``).

Y holds integer class labels (N,). Convention "torch": ``layers.{i}.weight`` (out, in),
``layers.{i}.bias`` (out,). It fits the iris and digits experiments:

    handgrad check examples/learners/correct_softmax.py iris --steps 50
"""

import numpy as np


def gradients(params, X, Y):
    """E = −(1/N) Σ_n log P[n, y_n], P = softmax(A):  ∂E/∂A = (P − onehot(Y)) / N."""
    L = sum(key.endswith(".weight") for key in params)
    a = [X]                                                            # (N, D)
    for i in range(L):
        z = a[-1] @ params[f"layers.{i}.weight"].T + params[f"layers.{i}.bias"]
        a.append(z if i == L - 1 else 1 / (1 + np.exp(-z)))            # (N, out)
    A = a[L]                                                           # logits (N, K)
    P = np.exp(A - A.max(axis=1, keepdims=True))
    P /= P.sum(axis=1, keepdims=True)                                  # softmax (N, K)
    T = np.eye(A.shape[1])[Y]                                          # one-hot (N, K)
    delta = (P - T) / X.shape[0]                                       # (N, K)
    grads = {}
    for i in reversed(range(L)):
        grads[f"layers.{i}.weight"] = delta.T @ a[i]
        grads[f"layers.{i}.bias"] = delta.sum(axis=0)
        if i > 0:
            delta = (delta @ params[f"layers.{i}.weight"]) * a[i] * (1 - a[i])
    return grads
