"""A slip of the pen: the gradients of W1 and W2 returned under each other's names.

Correct backprop for a two-layer sigmoid network (W1b1 convention, biases optional), but
the dict at the end swaps the names. On the 2-2-2 worked example every weight is 2×2, so
no shape gives it away; on the seed case (W1 (3, 4), W2 (4, 1)) the shapes do:

    handgrad check examples/learners/swapped_weights.py worked-2-2-2
    handgrad check examples/learners/swapped_weights.py seed
"""

import numpy as np

CONVENTION = "W1b1"


def sigmoid(x):
    return 1 / (1 + np.exp(-x))


def gradients(params, X, Y):
    W1, W2 = params["W1"], params["W2"]
    b1, b2 = params.get("b1", 0.0), params.get("b2", 0.0)   # frozen or absent: not trained
    hidden = sigmoid(X @ W1 + b1)                 # (N, H)
    out = sigmoid(hidden @ W2 + b2)               # (N, K)
    d2 = (out - Y) * out * (1 - out)              # δ2 (N, K)
    d1 = (d2 @ W2.T) * hidden * (1 - hidden)      # δ1 (N, H)
    dW1, dW2 = X.T @ d1, hidden.T @ d2            # (D, H), (H, K)
    return {"W1": dW2, "W2": dW1}                 # MISTAKE: names swapped
