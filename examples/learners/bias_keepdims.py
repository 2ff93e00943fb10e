"""A shape slip: the bias gradient summed with ``keepdims=True``, shape (1, out).

∂E/∂b = Σ_n δ_n is a vector (out,), the shape of b; ``delta.sum(axis=0, keepdims=True)``
keeps a row (1, out). The xor experiment (biases), handgrad's own convention:

    handgrad check examples/learners/bias_keepdims.py xor
"""

import numpy as np


def sigmoid(z):
    return 1 / (1 + np.exp(-z))


def gradients(params, X, Y):
    W0, b0 = params["layers.0.weight"], params["layers.0.bias"]   # (4, 2), (4,)
    W1, b1 = params["layers.1.weight"], params["layers.1.bias"]   # (1, 4), (1,)
    a1 = sigmoid(X @ W0.T + b0)                                # (N, 4)
    A = sigmoid(a1 @ W1.T + b1)                                # (N, 1)
    d1 = (A - Y) * A * (1 - A)                                 # (N, 1)
    d0 = (d1 @ W1) * a1 * (1 - a1)                             # (N, 4)
    return {"layers.0.weight": d0.T @ X,
            "layers.0.bias": d0.sum(axis=0, keepdims=True),    # MISTAKE: (1, 4)
            "layers.1.weight": d1.T @ a1,
            "layers.1.bias": d1.sum(axis=0, keepdims=True)}    # MISTAKE: (1, 1)
