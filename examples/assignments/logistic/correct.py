"""Logistic regression by hand. p = σ(z), z = X w + b;
E = −(1/N) Σ_n [y log p + (1 − y) log(1 − p)].

∂E/∂z = (p − y)/N;  ∂E/∂w = Xᵀ ∂E/∂z;  ∂E/∂b = Σ_n ∂E/∂z_n.
"""

import numpy as np


def gradients(params, X, Y):
    N = X.shape[0]
    z = X @ params["w"] + params["b"]          # (N,)
    p = 1 / (1 + np.exp(-z))                   # (N,)
    dz = (p - Y) / N                           # (N,)
    return {"w": X.T @ dz, "b": dz.sum(), "z": dz}
