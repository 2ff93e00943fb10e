"""Softmax regression: logits = X W + b, E = mean cross-entropy over the N samples.

X (N, D), W (D, K) as in most course notes (X @ W), b (K,), Y integer labels (N,).
"""

import numpy as np
import torch
import torch.nn.functional as F

LR, STEPS = 0.5, 20
INTERMEDIATES = ["logits"]


def params():
    g = torch.Generator().manual_seed(1)
    return {"W": torch.randn(3, 3, generator=g, dtype=torch.float64, requires_grad=True),
            "b": (0.1 * torch.randn(3, generator=g, dtype=torch.float64)).requires_grad_()}


def data():
    rng = np.random.default_rng(1)
    X = rng.normal(size=(24, 3))                      # (N, D)
    Y = np.argmax(X @ rng.normal(size=(3, 3)), axis=1)    # (N,) labels in 0..K-1
    return X, Y


def loss(params, X, Y):
    logits = X @ params["W"] + params["b"]            # (N, K)
    return F.cross_entropy(logits, Y), {"logits": logits}
