"""Backpropagation through time for a vanilla RNN, by hand.

δ_T = ∂E/∂h_T = (y − Y)/N · Whyᵀ;  da_t = δ_t ⊙ (1 − h_t²);  δ_{t−1} = da_t Whhᵀ;
∂E/∂Whh = Σ_t h_{t−1}ᵀ da_t;  ∂E/∂Wxh = Σ_t x_tᵀ da_t;  ∂E/∂bh = Σ_t Σ_n da_t.
"""

import numpy as np


def gradients(params, X, Y):
    N, T, _ = X.shape
    hs = [np.zeros((N, params["Whh"].shape[0]))]               # h_0 … h_T, each (N, H)
    for t in range(T):
        hs.append(np.tanh(X[:, t] @ params["Wxh"] + hs[-1] @ params["Whh"] + params["bh"]))
    y = hs[-1] @ params["Why"] + params["by"]                  # (N, 2)
    dy = (y - Y) / N                                           # (N, 2)
    g = {"Why": hs[-1].T @ dy, "by": dy.sum(axis=0), "y": dy}
    for k in ("Wxh", "Whh", "bh"):
        g[k] = np.zeros_like(params[k])
    dh = dy @ params["Why"].T                                  # (N, H) ∂E/∂h_T
    for t in range(T, 0, -1):
        g[f"h{t}"] = dh
        da = dh * (1 - hs[t] ** 2)                             # (N, H) through tanh
        g["Wxh"] += X[:, t - 1].T @ da
        g["Whh"] += hs[t - 1].T @ da
        g["bh"] += da.sum(axis=0)
        dh = da @ params["Whh"].T                              # ∂E/∂h_{t−1}
    return g
