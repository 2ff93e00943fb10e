"""A correct learner file in the style of Nielsen's ``network.py``: lists of weight
matrices and bias column vectors, backprop one sample at a time with the sample as a
column vector, and the ``nabla_w``, ``nabla_b`` sums. handgrad's own convention (W of shape
(out, in), as Nielsen's), any depth, sigmoid layers, ½·SSE summed over the batch, biases
when the config has them:

    handgrad check examples/learners/correct_nielsen.py xor
"""

import numpy as np


def sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


def sigmoid_prime(z):
    return sigmoid(z) * (1 - sigmoid(z))


def backprop(weights, biases, x, y):
    """(nabla_b, nabla_w) for one sample; x (D, 1), y (K, 1)."""
    activation, activations, zs = x, [x], []
    for w, b in zip(weights, biases, strict=True):
        z = np.dot(w, activation) + b
        zs.append(z)
        activation = sigmoid(z)
        activations.append(activation)
    delta = (activations[-1] - y) * sigmoid_prime(zs[-1])
    nabla_b = [None] * len(weights)
    nabla_w = [None] * len(weights)
    nabla_b[-1], nabla_w[-1] = delta, np.dot(delta, activations[-2].transpose())
    for l in range(2, len(weights) + 1):
        delta = np.dot(weights[-l + 1].transpose(), delta) * sigmoid_prime(zs[-l])
        nabla_b[-l], nabla_w[-l] = delta, np.dot(delta, activations[-l - 1].transpose())
    return nabla_b, nabla_w


def gradients(params, X, Y):
    L = sum(k.endswith(".weight") for k in params)
    weights = [params[f"layers.{i}.weight"] for i in range(L)]
    has_bias = "layers.0.bias" in params
    biases = [params[f"layers.{i}.bias"].reshape(-1, 1) if has_bias
              else np.zeros((w.shape[0], 1)) for i, w in enumerate(weights)]
    nabla_w = [np.zeros(w.shape) for w in weights]
    nabla_b = [np.zeros(b.shape) for b in biases]
    for x, y in zip(X, Y, strict=True):
        db, dw = backprop(weights, biases, x.reshape(-1, 1), y.reshape(-1, 1))
        nabla_w = [nw + d for nw, d in zip(nabla_w, dw, strict=True)]
        nabla_b = [nb + d for nb, d in zip(nabla_b, db, strict=True)]
    grads = {f"layers.{i}.weight": nabla_w[i] for i in range(L)}
    if has_bias:
        grads.update({f"layers.{i}.bias": nabla_b[i].ravel() for i in range(L)})
    return grads
