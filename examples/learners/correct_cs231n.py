"""A correct learner file in CS231n style: layer functions that return a cache.

Each layer has a ``*_forward`` returning ``(out, cache)`` and a ``*_backward`` taking
``(dout, cache)``; the network strings them together. W1b1 convention, biases when the
config has them (xor) and none when it has not (seed), sigmoid layers, ½·SSE summed:

    handgrad check examples/learners/correct_cs231n.py xor
"""

import numpy as np

CONVENTION = "W1b1"


def affine_forward(x, w, b):
    out = x @ w + b                               # (N, out)
    return out, (x, w)


def affine_backward(dout, cache):
    x, w = cache
    return dout @ w.T, x.T @ dout, dout.sum(axis=0)   # dx (N, in), dw (in, out), db (out,)


def sigmoid_forward(z):
    out = 1 / (1 + np.exp(-z))
    return out, out


def sigmoid_backward(dout, cache):
    out = cache
    return dout * out * (1 - out)                 # σ′(z) = a(1 − a) from the stored a


def gradients(params, X, Y):
    bias = "b1" in params
    L = sum(name.startswith("W") for name in params)
    caches, a = [], X
    for i in range(1, L + 1):
        z, c_aff = affine_forward(a, params[f"W{i}"], params[f"b{i}"] if bias else 0.0)
        a, c_sig = sigmoid_forward(z)
        caches.append((c_aff, c_sig))
    grads, da = {}, a - Y                         # ∂E/∂A for ½·Σ(A − Y)²   (N, K)
    for i in range(L, 0, -1):
        c_aff, c_sig = caches[i - 1]
        dz = sigmoid_backward(da, c_sig)
        da, grads[f"W{i}"], db = affine_backward(dz, c_aff)
        if bias:
            grads[f"b{i}"] = db
    return grads
