"""A classic mistake: a weight gradient computed as its transpose.

With W2 laid out (in, out) = (4, 1), ∂E/∂W2 = hiddenᵀ · δ2 has W2's shape; δ2ᵀ · hidden is
its transpose (1, 4). (numpy would even broadcast W2 − lr·dW2 to a (4, 4) array.)
Notebook convention, seed case.

    handgrad check examples/learners/transposed_weight_gradient.py seed
"""

import numpy as np

CONVENTION = "W1b1"


def sigmoid(x):
    return 1 / (1 + np.exp(-x))


def gradients(params, X, Y):
    W1, W2 = params["W1"], params["W2"]
    hidden = sigmoid(X @ W1)                                   # (4, 4)
    out = sigmoid(hidden @ W2)                                 # (4, 1)
    d2 = (out - Y) * out * (1 - out)                           # (4, 1)
    d1 = (d2 @ W2.T) * hidden * (1 - hidden)                   # (4, 4)
    return {"W1": X.T @ d1, "W2": d2.T @ hidden}               # MISTAKE: hidden.T @ d2
