"""A file written for another config: a network with biases, checked on one without.

Correct backprop for a two-layer sigmoid network *with* biases (it agrees on xor); the
seed case has none, so params holds no b1 and the file's ``params["b1"]`` fails. W1b1:

    handgrad check examples/learners/written_for_biases.py seed
"""

import numpy as np

CONVENTION = "W1b1"


def sigmoid(x):
    return 1 / (1 + np.exp(-x))


def gradients(params, X, Y):
    W1, b1, W2, b2 = params["W1"], params["b1"], params["W2"], params["b2"]
    hidden = sigmoid(X @ W1 + b1)                 # (N, H)
    out = sigmoid(hidden @ W2 + b2)               # (N, K)
    d2 = (out - Y) * out * (1 - out)              # δ2 (N, K)
    d1 = (d2 @ W2.T) * hidden * (1 - hidden)      # δ1 (N, H)
    return {"W1": X.T @ d1, "W2": hidden.T @ d2, "b1": d1.sum(axis=0), "b2": d2.sum(axis=0)}
