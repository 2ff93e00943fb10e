"""A classic mistake: gradients accumulated across calls, never reset.

The running sums live outside the function (as ``.grad`` does in a framework) and each call
adds this batch's gradient to them, so the second call returns the first call's gradient
plus its own. Each call must start from zero. Seed case, handgrad's own convention.

    handgrad check examples/learners/accumulated.py seed
"""

import numpy as np

_grads = {}   # MISTAKE: state kept between calls


def sigmoid(z):
    return 1 / (1 + np.exp(-z))


def gradients(params, X, Y):
    W0, W1 = params["layers.0.weight"], params["layers.1.weight"]   # (4, 3), (1, 4)
    a1 = sigmoid(X @ W0.T)                                     # (N, 4)
    A = sigmoid(a1 @ W1.T)                                     # (N, 1)
    d1 = (A - Y) * A * (1 - A)                                 # (N, 1)
    d0 = (d1 @ W1) * a1 * (1 - a1)                             # (N, 4)
    for key, g in (("layers.0.weight", d0.T @ X), ("layers.1.weight", d1.T @ a1)):
        _grads[key] = _grads.get(key, 0) + g                   # MISTAKE: += without a reset
    return {key: g.copy() for key, g in _grads.items()}
