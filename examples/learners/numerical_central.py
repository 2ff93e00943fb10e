"""A near miss: gradients by central differences instead of backprop.

E(w + h) − E(w − h) over 2h for every weight, h = 1e-5, on the seed case (handgrad's own
convention). It is right to about 1e-10 — the truncation h²·E‴/6 and the rounding
u·|E|/h a central difference leaves — so it passes any loose test, but it is a check of a
gradient, not a derivation of one, and it costs two forward passes per weight.

    handgrad check examples/learners/numerical_central.py seed
"""

import numpy as np

H = 1e-5


def loss(params, X, Y):
    a = X
    for i in range(len(params)):
        a = 1 / (1 + np.exp(-(a @ params[f"layers.{i}.weight"].T)))   # (N, out)
    return 0.5 * np.sum((a - Y) ** 2)                                 # ½·SSE, summed


def gradients(params, X, Y):
    grads = {}
    for key, w in params.items():
        g = np.zeros_like(w)
        for i in np.ndindex(w.shape):
            w0 = w[i]
            w[i] = w0 + H
            up = loss(params, X, Y)
            w[i] = w0 - H
            down = loss(params, X, Y)
            w[i] = w0
            g[i] = (up - down) / (2 * H)                              # MISTAKE: numerical
        grads[key] = g
    return grads
