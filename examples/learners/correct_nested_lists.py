"""A correct learner file in plain Python lists: no numpy in the maths, one sample at a
time, the course notebooks' layout (``CONVENTION = "W1b1"``: ``W1[i][j]`` joins input i to
hidden unit j, shape (in, out)). Sigmoid layers, E = ½ Σ_n Σ_k (A − Y)² summed over the
batch; one hidden layer, biases when the config has them (seed: none; xor: b1, b2):

    handgrad check examples/learners/correct_nested_lists.py xor
"""

import math

import numpy as np

CONVENTION = "W1b1"


def sigmoid(z):
    return 1 / (1 + math.exp(-z))


def layer(a, W, b):
    """out_j = σ(Σ_i a_i W[i][j] + b_j) for one sample."""
    return [sigmoid(sum(a[i] * W[i][j] for i in range(len(a))) + (b[j] if b else 0.0))
            for j in range(len(W[0]))]


def gradients(params, X, Y):
    W1, W2 = params["W1"].tolist(), params["W2"].tolist()
    b1 = params["b1"].tolist() if "b1" in params else None
    b2 = params["b2"].tolist() if "b2" in params else None
    D, H, K = len(W1), len(W2), len(W2[0])
    dW1 = [[0.0] * H for _ in range(D)]
    dW2 = [[0.0] * K for _ in range(H)]
    db1, db2 = [0.0] * H, [0.0] * K
    for x, y in zip(X.tolist(), Y.tolist(), strict=True):
        h = layer(x, W1, b1)
        out = layer(h, W2, b2)
        d2 = [(out[k] - y[k]) * out[k] * (1 - out[k]) for k in range(K)]
        d1 = [sum(W2[j][k] * d2[k] for k in range(K)) * h[j] * (1 - h[j]) for j in range(H)]
        for j in range(H):
            db1[j] += d1[j]
            for i in range(D):
                dW1[i][j] += x[i] * d1[j]
            for k in range(K):
                dW2[j][k] += h[j] * d2[k]
        for k in range(K):
            db2[k] += d2[k]
    grads = {"W1": np.array(dW1), "W2": np.array(dW2)}
    if b1 is not None:
        grads["b1"], grads["b2"] = np.array(db1), np.array(db2)
    return grads
