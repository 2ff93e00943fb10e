"""A slip in update(): the step is taken in place and nothing is returned.

``params[name] -= lr * grads[name]`` changes the arrays, but handgrad (like any caller
that writes ``params = update(params, grads, lr)``) uses the *returned* dict, and a
function without ``return`` returns None. The seed case, W1b1 convention:

    handgrad check examples/learners/update_returns_none.py seed
"""

import numpy as np

CONVENTION = "W1b1"


def sigmoid(x):
    return 1 / (1 + np.exp(-x))


def gradients(params, X, Y):
    W1, W2 = params["W1"], params["W2"]
    hidden = sigmoid(X @ W1)                      # (N, 4)
    out = sigmoid(hidden @ W2)                    # (N, 1)
    d2 = (out - Y) * out * (1 - out)              # δ2 (N, 1)
    d1 = (d2 @ W2.T) * hidden * (1 - hidden)      # δ1 (N, 4)
    return {"W1": X.T @ d1, "W2": hidden.T @ d2}


def update(params, grads, lr):
    for name in params:
        params[name] -= lr * grads[name]          # MISTAKE: no return
