"""Mistake: dh = dx̂ / √(σ² + ε), as if the batch's mean and variance did not depend on h."""

import numpy as np

EPS = 1e-5


def gradients(params, X, Y):
    N = X.shape[0]
    h = X @ params["W"]                                # (N, H)
    inv_std = 1 / np.sqrt(h.var(axis=0) + EPS)         # (H,)
    xhat = (h - h.mean(axis=0)) * inv_std              # (N, H)
    out = params["gamma"] * xhat + params["beta"]      # (N, H)
    dout = (out - Y) / N                               # (N, H)
    dh = dout * params["gamma"] * inv_std              # (N, H)  the μ and σ² paths missing
    return {"W": X.T @ dh, "gamma": (dout * xhat).sum(axis=0), "beta": dout.sum(axis=0),
            "h": dh, "out": dout}
