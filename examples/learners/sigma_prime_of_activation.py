"""A classic mistake: σ′ taken of the activation instead of the pre-activation.

``sigmoid_derivative(x) = sigmoid(x)(1 − sigmoid(x))`` is σ′ of its *argument*; handed the
stored activation a = σ(z) it gives σ(a)(1 − σ(a)), not σ′(z) = a(1 − a). Seed case,
notebook convention, vectorised over the batch.

    handgrad check examples/learners/sigma_prime_of_activation.py seed
"""

import numpy as np

CONVENTION = "W1b1"


def sigmoid(x):
    return 1 / (1 + np.exp(-x))


def sigmoid_derivative(x):
    return sigmoid(x) * (1 - sigmoid(x))


def gradients(params, X, Y):
    W1, W2 = params["W1"], params["W2"]
    hidden = sigmoid(X @ W1)                                   # (4, 4)
    out = sigmoid(hidden @ W2)                                 # (4, 1)
    d2 = (out - Y) * sigmoid_derivative(out)                   # MISTAKE: out(1 − out)
    d1 = (d2 @ W2.T) * sigmoid_derivative(hidden)              # MISTAKE: hidden(1 − hidden)
    return {"W1": X.T @ d1, "W2": hidden.T @ d2}
