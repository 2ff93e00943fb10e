"""A near miss: gradients by forward differences, (E(w + h) − E(w)) / h with h = 1e-4.

The seed case in handgrad's own convention. A forward difference is off by about
h·∂²E/∂w²/2 — proportional to h, here about 1e-5 relative — which reads like a small
derivation mistake unless one looks at how the error is spread.

    handgrad check examples/learners/numerical_forward.py seed
"""

import numpy as np

H = 1e-4


def loss(params, X, Y):
    a = X
    for i in range(len(params)):
        a = 1 / (1 + np.exp(-(a @ params[f"layers.{i}.weight"].T)))   # (N, out)
    return 0.5 * np.sum((a - Y) ** 2)                                 # ½·SSE, summed


def gradients(params, X, Y):
    E = loss(params, X, Y)
    grads = {}
    for key, w in params.items():
        g = np.zeros_like(w)
        for i in np.ndindex(w.shape):
            w0 = w[i]
            w[i] = w0 + H
            g[i] = (loss(params, X, Y) - E) / H                       # MISTAKE: numerical
            w[i] = w0
        grads[key] = g
    return grads
