"""A classic slip: a gradient allocated and never filled in.

The result dict is built before the per-sample loop, with a *copy* of dW1 (W2's array is
shared); the loop adds each sample's term to dW1 and dW2, so W1's gradient comes back all
zeros while W2's is right. The seed case,
W1b1 convention:

    handgrad check examples/learners/zero_gradient.py seed
"""

import numpy as np

CONVENTION = "W1b1"


def sigmoid(x):
    return 1 / (1 + np.exp(-x))


def gradients(params, X, Y):
    W1, W2 = params["W1"], params["W2"]
    dW1, dW2 = np.zeros_like(W1), np.zeros_like(W2)   # (3, 4), (4, 1)
    grads = {"W1": dW1.copy(), "W2": dW2}              # MISTAKE: a copy, never filled in
    for n in range(len(X)):
        x, y = X[n:n + 1], Y[n:n + 1]                  # (1, 3), (1, 1)
        hidden = sigmoid(x @ W1)                       # (1, 4)
        out = sigmoid(hidden @ W2)                     # (1, 1)
        d2 = (out - y) * out * (1 - out)               # δ2 (1, 1)
        d1 = (d2 @ W2.T) * hidden * (1 - hidden)       # δ1 (1, 4)
        dW1 += x.T @ d1
        dW2 += hidden.T @ d2
    return grads
