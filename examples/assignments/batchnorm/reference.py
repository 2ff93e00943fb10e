"""A batchnorm layer (training mode) after a linear one, as in CS231n assignment 2.

h = X W (N, H); x̂ = (h − μ)/√(σ² + ε) with the batch's mean μ and biased variance σ²;
out = γ ⊙ x̂ + β; E = ½ Σ (out − Y)² / N.
"""

import numpy as np
import torch

LR, STEPS = 0.1, 20
EPS = 1e-5
INTERMEDIATES = ["h", "out"]        # ∂E/∂h is CS231n's dx of batchnorm_backward


def params():
    g = torch.Generator().manual_seed(2)
    return {"W": torch.randn(4, 3, generator=g, dtype=torch.float64, requires_grad=True),
            "gamma": (1 + 0.1 * torch.randn(3, generator=g, dtype=torch.float64)
                      ).requires_grad_(),
            "beta": (0.1 * torch.randn(3, generator=g, dtype=torch.float64)).requires_grad_()}


def data():
    rng = np.random.default_rng(2)
    X = rng.normal(size=(16, 4))                       # (N, D)
    Y = np.tanh(X[:, :3] - X[:, 1:]) + 0.5             # (N, H)
    return X, Y


def loss(params, X, Y):
    h = X @ params["W"]                                # (N, H)
    mu = h.mean(0)                                     # (H,)
    var = h.var(0, unbiased=False)                     # (H,)
    xhat = (h - mu) / torch.sqrt(var + EPS)            # (N, H)
    out = params["gamma"] * xhat + params["beta"]      # (N, H)
    return 0.5 * ((out - Y) ** 2).sum() / X.shape[0], {"h": h, "out": out}
