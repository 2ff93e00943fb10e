"""Mistake: backpropagation stopped after the last time step (no flow through Whh to the
earlier ones), as if h_{t−1} were a constant input."""

import numpy as np


def gradients(params, X, Y):
    N, T, _ = X.shape
    hs = [np.zeros((N, params["Whh"].shape[0]))]
    for t in range(T):
        hs.append(np.tanh(X[:, t] @ params["Wxh"] + hs[-1] @ params["Whh"] + params["bh"]))
    y = hs[-1] @ params["Why"] + params["by"]
    dy = (y - Y) / N
    dh = dy @ params["Why"].T
    da = dh * (1 - hs[T] ** 2)
    return {"Why": hs[-1].T @ dy, "by": dy.sum(axis=0), "y": dy, f"h{T}": dh,
            "Wxh": X[:, T - 1].T @ da, "Whh": hs[T - 1].T @ da, "bh": da.sum(axis=0),
            **{f"h{t}": np.zeros_like(dh) for t in range(1, T)}}
