"""A near miss: the maths is right, the arrays are float32.

The seed case in the course-notebook convention, derived correctly, but every array is
cast to float32 (``np.float32`` is a common default in deep-learning code). Under a float64
config the gradients then agree to float32's precision only — about 1e-8 relative, far
above float64's rounding, far below any derivation mistake.

    handgrad check examples/learners/float32_arrays.py seed
"""

import numpy as np

CONVENTION = "W1b1"


def sigmoid(x):
    return 1 / (1 + np.exp(-x))


def gradients(params, X, Y):
    X, Y = X.astype(np.float32), Y.astype(np.float32)              # MISTAKE: float32
    W1, W2 = params["W1"].astype(np.float32), params["W2"].astype(np.float32)
    hidden = sigmoid(X @ W1)                      # (N, 4)
    out = sigmoid(hidden @ W2)                    # (N, 1)
    d2 = (out - Y) * out * (1 - out)              # δ2 (N, 1)
    d1 = (d2 @ W2.T) * hidden * (1 - hidden)      # δ1 (N, 4)
    return {"W1": X.T @ d1, "W2": hidden.T @ d2}  # (3, 4), (4, 1)
