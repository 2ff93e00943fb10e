"""A 2-D convolution layer on a small image batch (CS231n's conv_forward_naive, stride 1,
no padding): out = conv2d(X, w) + b, E = ½ Σ (out − Y)² / N.

X (N, C, H, W) = (4, 2, 5, 5); w (F, C, HH, WW) = (3, 2, 3, 3); b (F,); out (N, F, 3, 3).
"""

import numpy as np
import torch
import torch.nn.functional as F

LR, STEPS = 0.05, 10
INTERMEDIATES = ["out"]


def params():
    g = torch.Generator().manual_seed(5)
    return {"w": (0.3 * torch.randn(3, 2, 3, 3, generator=g, dtype=torch.float64)
                  ).requires_grad_(),
            "b": (0.1 * torch.randn(3, generator=g, dtype=torch.float64)).requires_grad_()}


def data():
    rng = np.random.default_rng(5)
    X = rng.normal(size=(4, 2, 5, 5))                  # (N, C, H, W)
    Y = rng.normal(size=(4, 3, 3, 3))                  # (N, F, H', W')
    return X, Y


def loss(params, X, Y):
    out = F.conv2d(X, params["w"], params["b"])        # (N, F, H', W')
    return 0.5 * ((out - Y) ** 2).sum() / X.shape[0], {"out": out}
