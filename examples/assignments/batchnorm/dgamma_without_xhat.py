"""Mistake: dγ = Σ_n dout, like dβ: the factor x̂ of out = γ x̂ + β left out."""

import numpy as np

EPS = 1e-5


def gradients(params, X, Y):
    N = X.shape[0]
    h = X @ params["W"]                                # (N, H)
    inv_std = 1 / np.sqrt(h.var(axis=0) + EPS)         # (H,)
    xhat = (h - h.mean(axis=0)) * inv_std              # (N, H)
    out = params["gamma"] * xhat + params["beta"]      # (N, H)
    dout = (out - Y) / N                               # (N, H)
    dxhat = dout * params["gamma"]                     # (N, H)
    dh = inv_std / N * (N * dxhat - dxhat.sum(axis=0) - xhat * (dxhat * xhat).sum(axis=0))
    return {"W": X.T @ dh, "gamma": dout.sum(axis=0), "beta": dout.sum(axis=0),
            "h": dh, "out": dout}
