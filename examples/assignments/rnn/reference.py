"""A vanilla RNN over T = 5 steps, read out at the last: backpropagation through time.

h_t = tanh(x_t Wxh + h_{t−1} Whh + bh), h_0 = 0;  y = h_T Why + by;  E = ½ Σ (y − Y)² / N.
X (N, T, D) = (4, 5, 3); hidden 6; Y (N, 2).
"""

import numpy as np
import torch

LR, STEPS = 0.1, 10
T = 5
INTERMEDIATES = [f"h{t}" for t in range(1, T + 1)] + ["y"]


def params():
    g = torch.Generator().manual_seed(6)

    def randn(*shape, scale):
        return (scale * torch.randn(*shape, generator=g, dtype=torch.float64)).requires_grad_()

    return {"Wxh": randn(3, 6, scale=0.5), "Whh": randn(6, 6, scale=0.4),
            "bh": randn(6, scale=0.1), "Why": randn(6, 2, scale=0.5), "by": randn(2, scale=0.1)}


def data():
    rng = np.random.default_rng(6)
    X = rng.normal(size=(4, T, 3))                     # (N, T, D)
    Y = np.stack([X[:, :, 0].sum(1), X[:, 0, 1] - X[:, -1, 2]], axis=1) / 3   # (N, 2)
    return X, Y


def loss(params, X, Y):
    h = torch.zeros(X.shape[0], 6, dtype=X.dtype)
    inter = {}
    for t in range(T):
        h = torch.tanh(X[:, t] @ params["Wxh"] + h @ params["Whh"] + params["bh"])   # (N, 6)
        inter[f"h{t + 1}"] = h
    y = h @ params["Why"] + params["by"]               # (N, 2)
    inter["y"] = y
    return 0.5 * ((y - Y) ** 2).sum() / X.shape[0], inter
