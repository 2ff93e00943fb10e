"""A slip in update(): the step size written as a number, the lr argument never read.

On the seed case (lr = 1) the step is even right, so training agrees; handgrad calls
update() a second time with half the config's lr, where it is not. The seed case, W1b1
convention:

    handgrad check examples/learners/update_hardcoded_lr.py seed
"""

import numpy as np

CONVENTION = "W1b1"


def sigmoid(x):
    return 1 / (1 + np.exp(-x))


def gradients(params, X, Y):
    W1, W2 = params["W1"], params["W2"]
    hidden = sigmoid(X @ W1)                      # (N, 4)
    out = sigmoid(hidden @ W2)                    # (N, 1)
    d2 = (out - Y) * out * (1 - out)              # δ2 (N, 1)
    d1 = (d2 @ W2.T) * hidden * (1 - hidden)      # δ1 (N, 4)
    return {"W1": X.T @ d1, "W2": hidden.T @ d2}


def update(params, grads, lr):
    step = 1.0                                    # MISTAKE: lr is the argument
    return {name: params[name] - step * grads[name] for name in params}
