"""A classic mistake: a mean over the batch where the loss sums.

The seed case's loss is E = ½ Σ_n (Y − out)², a sum over the samples, so its gradient sums
the samples' contributions; dividing by N gives 1/N of it. Notebook convention.

    handgrad check examples/learners/mean_over_batch.py seed
"""

import numpy as np

CONVENTION = "W1b1"


def sigmoid(x):
    return 1 / (1 + np.exp(-x))


def gradients(params, X, Y):
    W1, W2 = params["W1"], params["W2"]
    N = X.shape[0]
    hidden = sigmoid(X @ W1)                                   # (N, 4)
    out = sigmoid(hidden @ W2)                                 # (N, 1)
    d2 = (out - Y) * out * (1 - out)                           # (N, 1)
    d1 = (d2 @ W2.T) * hidden * (1 - hidden)                   # (N, 4)
    return {"W1": X.T @ d1 / N, "W2": hidden.T @ d2 / N}       # MISTAKE: / N
