"""A slip with cross-entropy: the code assumes Y is one-hot, (N, K).

For ``cross_entropy`` handgrad passes the integer class labels, shape (N,), as
torch.nn.CrossEntropyLoss takes them; ``P - Y`` then cannot broadcast (N, K) against
(N,). The iris experiment (4-8-3, softmax cross-entropy on the logits), torch convention:

    handgrad check examples/learners/onehot_labels.py iris
"""

import numpy as np


def sigmoid(z):
    return 1 / (1 + np.exp(-z))


def gradients(params, X, Y):
    W0, b0 = params["layers.0.weight"], params["layers.0.bias"]   # (8, 4), (8,)
    W1, b1 = params["layers.1.weight"], params["layers.1.bias"]   # (3, 8), (3,)
    a1 = sigmoid(X @ W0.T + b0)                                # (N, 8)
    logits = a1 @ W1.T + b1                                    # (N, 3)
    P = np.exp(logits - logits.max(axis=1, keepdims=True))
    P /= P.sum(axis=1, keepdims=True)                          # softmax (N, 3)
    d1 = (P - Y) / len(X)                                      # MISTAKE: Y taken as one-hot
    d0 = (d1 @ W1) * a1 * (1 - a1)                             # (N, 8)
    return {"layers.0.weight": d0.T @ X, "layers.0.bias": d0.sum(axis=0),
            "layers.1.weight": d1.T @ a1, "layers.1.bias": d1.sum(axis=0)}
