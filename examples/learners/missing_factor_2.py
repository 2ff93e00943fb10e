"""A classic mistake: the factor 2 of the squared error dropped.

For the mean squared error E = (1/M) Σ (A − Y)² (torch's MSELoss, M = N·K elements),
∂E/∂A = 2(A − Y)/M. Writing (A − Y)/M halves every gradient. (½·SSE, the seed case's own
loss, has no such factor: its ½ cancels the 2. So this file is checked with loss = mse.)
Convention "torch".

    handgrad check examples/learners/missing_factor_2.py seed --set loss=mse
"""

import numpy as np


def sigmoid(z):
    return 1 / (1 + np.exp(-z))


def gradients(params, X, Y):
    W0, W1 = params["layers.0.weight"], params["layers.1.weight"]   # (4, 3), (1, 4)
    a1 = sigmoid(X @ W0.T)                                     # (N, 4)
    A = sigmoid(a1 @ W1.T)                                     # (N, 1)
    dA = (A - Y) / A.size                                      # MISTAKE: 2 (A − Y) / M
    d1 = dA * A * (1 - A)                                      # (N, 1)
    d0 = (d1 @ W1) * a1 * (1 - a1)                             # (N, 4)
    return {"layers.0.weight": d0.T @ X, "layers.1.weight": d1.T @ a1}
