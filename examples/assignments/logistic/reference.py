"""Logistic regression: p = σ(X w + b), E = mean binary cross-entropy over the N samples."""

import numpy as np
import torch
import torch.nn.functional as F

LR, STEPS = 0.5, 20
INTERMEDIATES = ["z"]                # the logits: a learner may return ∂E/∂z too


def params():
    g = torch.Generator().manual_seed(0)
    return {"w": torch.randn(3, generator=g, dtype=torch.float64, requires_grad=True),
            "b": torch.zeros((), dtype=torch.float64, requires_grad=True)}


def data():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(16, 3))                                   # (N, D)
    Y = (X @ [1.0, -2.0, 0.5] + 0.3 * rng.normal(size=16) > 0) * 1.0   # (N,) in {0, 1}
    return X, Y


def loss(params, X, Y):
    z = X @ params["w"] + params["b"]                              # (N,)
    return F.binary_cross_entropy_with_logits(z, Y), {"z": z}
