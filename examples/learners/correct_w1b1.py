"""A correct learner file in the course-notebook convention ("W1b1"), seed-case style.

The 3-4-1 network of the seed case: X (4, 3), Y (4, 1), weights laid out (in, out) so a
layer computes a @ W — W1 (3, 4), W2 (4, 1) — no biases, sigmoid everywhere, and
E = ½ Σ_n (Y − out)², summed over the samples. One sample at a time, as column vectors,
the way the chain rule is first written by hand. ``update`` is plain gradient descent.

    handgrad check examples/learners/correct_w1b1.py seed
"""

import numpy as np

CONVENTION = "W1b1"


def sigmoid(x):
    return 1 / (1 + np.exp(-x))


def gradients(params, X, Y):
    W1, W2 = params["W1"], params["W2"]
    dW1 = np.zeros_like(W1)                       # (3, 4)
    dW2 = np.zeros_like(W2)                       # (4, 1)
    for n in range(X.shape[0]):
        x = X[n].reshape(-1, 1)                   # (3, 1) one sample, a column
        y = Y[n].reshape(-1, 1)                   # (1, 1)
        hidden = sigmoid(W1.T @ x)                # (4, 1)
        out = sigmoid(W2.T @ hidden)              # (1, 1)
        d2 = (out - y) * out * (1 - out)          # ∂E/∂net at the output      (1, 1)
        d1 = (W2 @ d2) * hidden * (1 - hidden)    # ∂E/∂net at the hidden layer (4, 1)
        dW2 += hidden @ d2.T                      # (4, 1) like W2
        dW1 += x @ d1.T                           # (3, 4) like W1
    return {"W1": dW1, "W2": dW2}


def update(params, grads, lr):
    return {name: params[name] - lr * grads[name] for name in params}
