"""Mistake: ∂E/∂w taken as for a true convolution (kernel flipped), where the forward pass
is a cross-correlation, as in every deep learning library."""

import numpy as np
from correct import forward


def gradients(params, X, Y):
    w, b = params["w"], params["b"]
    out = forward(w, b, X)
    dout = (out - Y) / X.shape[0]
    dw = np.zeros_like(w)
    HH, WW = w.shape[2:]
    for i in range(out.shape[2]):
        for j in range(out.shape[3]):
            patch = X[:, :, i:i + HH, j:j + WW]
            dw += np.tensordot(dout[:, :, i, j], patch, axes=([0], [0]))
    return {"w": dw[:, :, ::-1, ::-1], "b": dout.sum(axis=(0, 2, 3)), "out": dout}
