"""A shape slip: the bias gradient left per sample, shape (N, out).

δ holds one row per sample; ∂E/∂b = Σ_n δ_n sums them, as ∂E/∂W = δᵀ·a sums over the
samples inside its matrix product. The xor experiment (biases), W1b1 convention:

    handgrad check examples/learners/bias_not_summed.py xor
"""

import numpy as np

CONVENTION = "W1b1"


def sigmoid(z):
    return 1 / (1 + np.exp(-z))


def gradients(params, X, Y):
    W1, b1, W2, b2 = params["W1"], params["b1"], params["W2"], params["b2"]
    h = sigmoid(X @ W1 + b1)                      # (N, 4)
    out = sigmoid(h @ W2 + b2)                    # (N, 1)
    d2 = (out - Y) * out * (1 - out)              # δ2 (N, 1)
    d1 = (d2 @ W2.T) * h * (1 - h)                # δ1 (N, 4)
    return {"W1": X.T @ d1, "b1": d1,             # MISTAKE: δ1 per sample, (N, 4)
            "W2": h.T @ d2, "b2": d2}             # MISTAKE: δ2 per sample, (N, 1)
