"""A classic mistake: the learning rate folded into the gradient.

gradients() returns ∂E/∂w; the step w − lr·∂E/∂w is update()'s (or handgrad's SGD) job.
This file returns lr·∂E/∂w with its own LR, so with handgrad's lr the step is taken with
lr² — and at lr = 1 nobody would notice. Check it at lr = 2 (the seed case, W1b1):

    handgrad check examples/learners/lr_in_gradients.py seed --set lr=2
"""

import numpy as np

CONVENTION = "W1b1"
LR = 2.0


def sigmoid(x):
    return 1 / (1 + np.exp(-x))


def gradients(params, X, Y):
    W1, W2 = params["W1"], params["W2"]
    hidden = sigmoid(X @ W1)                      # (N, 4)
    out = sigmoid(hidden @ W2)                    # (N, 1)
    d2 = (out - Y) * out * (1 - out)              # δ2 (N, 1)
    d1 = (d2 @ W2.T) * hidden * (1 - hidden)      # δ1 (N, 4)
    return {"W1": LR * (X.T @ d1), "W2": LR * (hidden.T @ d2)}        # MISTAKE: lr·∂E/∂w
