"""Mistake: ∂E/∂Whh accumulated as da_tᵀ h_{t−1}, the product in the other order (Whh is
square, so the shape does not tell)."""

import numpy as np


def gradients(params, X, Y):
    N, T, _ = X.shape
    hs = [np.zeros((N, params["Whh"].shape[0]))]
    for t in range(T):
        hs.append(np.tanh(X[:, t] @ params["Wxh"] + hs[-1] @ params["Whh"] + params["bh"]))
    y = hs[-1] @ params["Why"] + params["by"]
    dy = (y - Y) / N
    g = {"Why": hs[-1].T @ dy, "by": dy.sum(axis=0)}
    for k in ("Wxh", "Whh", "bh"):
        g[k] = np.zeros_like(params[k])
    dh = dy @ params["Why"].T
    for t in range(T, 0, -1):
        da = dh * (1 - hs[t] ** 2)
        g["Wxh"] += X[:, t - 1].T @ da
        g["Whh"] += da.T @ hs[t - 1]                           # should be hs[t − 1].T @ da
        g["bh"] += da.sum(axis=0)
        dh = da @ params["Whh"].T
    return g
