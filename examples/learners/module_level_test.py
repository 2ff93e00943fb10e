"""A slip outside the maths: test code left at module level, which runs when the file is
loaded and names a variable only the author's own notebook had. The gradients are right;
handgrad cannot reach them, and shows where the file stopped (file, line, code), with its
own frames left out:

    handgrad check examples/learners/module_level_test.py seed
"""

import numpy as np


def sigmoid(x):
    return 1 / (1 + np.exp(-x))


def gradients(params, X, Y):
    W0, W1 = params["layers.0.weight"], params["layers.1.weight"]
    a1 = sigmoid(X @ W0.T)                        # (N, 4)
    A = sigmoid(a1 @ W1.T)                        # (N, 1)
    d1 = (A - Y) * A * (1 - A)                    # (N, 1)
    d0 = (d1 @ W1) * a1 * (1 - a1)                # (N, 4)
    return {"layers.0.weight": d0.T @ X, "layers.1.weight": d1.T @ a1}


print(gradients(initial_params, training_data, training_labels))   # MISTAKE: test code  # noqa: F821
