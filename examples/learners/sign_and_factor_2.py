"""The tutorial's error term: ``2 * (y - output)``, the sign flipped and a factor 2.

Many tutorials write the output error as 2(Y − A) and *add* the step. With E = ½·Σ(A − Y)²
(the seed case) ∂E/∂A = A − Y, so as a gradient this is −2 times autograd's. W1b1:

    handgrad check examples/learners/sign_and_factor_2.py seed
"""

import numpy as np

CONVENTION = "W1b1"


def sigmoid(x):
    return 1 / (1 + np.exp(-x))


def gradients(params, X, Y):
    W1, W2 = params["W1"], params["W2"]
    hidden = sigmoid(X @ W1)                                  # (N, 4)
    output = sigmoid(hidden @ W2)                             # (N, 1)
    d2 = 2 * (Y - output) * output * (1 - output)             # MISTAKE: 2(Y − A)
    d1 = (d2 @ W2.T) * hidden * (1 - hidden)                  # (N, 4)
    return {"W1": X.T @ d1, "W2": hidden.T @ d2}
