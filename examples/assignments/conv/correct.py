"""Convolution backward by hand, CS231n's conv_backward_naive (stride 1, no padding).

out[n, f, i, j] = Σ_{c,p,q} X[n, c, i+p, j+q] w[f, c, p, q] + b[f]  (a cross-correlation), so
∂E/∂w[f, c, p, q] = Σ_{n,i,j} dout[n, f, i, j] X[n, c, i+p, j+q];  ∂E/∂b[f] = Σ_{n,i,j} dout.
"""

import numpy as np


def forward(w, b, X):
    N, _, H, W = X.shape
    F, _, HH, WW = w.shape
    out = np.zeros((N, F, H - HH + 1, W - WW + 1))          # (N, F, H', W')
    for i in range(out.shape[2]):
        for j in range(out.shape[3]):
            patch = X[:, :, i:i + HH, j:j + WW]              # (N, C, HH, WW)
            out[:, :, i, j] = np.tensordot(patch, w, axes=([1, 2, 3], [1, 2, 3])) + b
    return out


def gradients(params, X, Y):
    w, b = params["w"], params["b"]
    out = forward(w, b, X)
    dout = (out - Y) / X.shape[0]                            # (N, F, H', W')
    dw = np.zeros_like(w)
    HH, WW = w.shape[2:]
    for i in range(out.shape[2]):
        for j in range(out.shape[3]):
            patch = X[:, :, i:i + HH, j:j + WW]              # (N, C, HH, WW)
            dw += np.tensordot(dout[:, :, i, j], patch, axes=([0], [0]))   # (F, C, HH, WW)
    return {"w": dw, "b": dout.sum(axis=(0, 2, 3)), "out": dout}
