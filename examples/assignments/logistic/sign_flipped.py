"""Mistake: ∂E/∂z written as (y − p)/N, the sign flipped."""

import numpy as np


def gradients(params, X, Y):
    N = X.shape[0]
    z = X @ params["w"] + params["b"]          # (N,)
    p = 1 / (1 + np.exp(-z))                   # (N,)
    dz = (Y - p) / N                           # (N,)  should be (p − y)/N
    return {"w": X.T @ dz, "b": dz.sum(), "z": dz}
