"""Batchnorm backward by hand (CS231n's batchnorm_backward_alt, one line for dx).

dx̂ = dout ⊙ γ;  dh = (1/N)·(1/√(σ² + ε))·(N dx̂ − Σ_n dx̂ − x̂ ⊙ Σ_n (dx̂ ⊙ x̂));  dW = Xᵀ dh.
"""

import numpy as np

EPS = 1e-5


def gradients(params, X, Y):
    N = X.shape[0]
    h = X @ params["W"]                                # (N, H)
    mu = h.mean(axis=0)                                # (H,)
    var = h.var(axis=0)                                # (H,)  biased, as the forward pass
    inv_std = 1 / np.sqrt(var + EPS)                   # (H,)
    xhat = (h - mu) * inv_std                          # (N, H)
    out = params["gamma"] * xhat + params["beta"]      # (N, H)
    dout = (out - Y) / N                               # (N, H)
    dxhat = dout * params["gamma"]                     # (N, H)
    dh = inv_std / N * (N * dxhat - dxhat.sum(axis=0) - xhat * (dxhat * xhat).sum(axis=0))
    return {"W": X.T @ dh, "gamma": (dout * xhat).sum(axis=0), "beta": dout.sum(axis=0),
            "h": dh, "out": dout}
