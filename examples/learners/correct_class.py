"""A correct learner file built around a class, as object-oriented courses write it.

``Network`` keeps its weights and the forward pass's activations; ``gradients`` builds one
from params and asks it for backprop. handgrad's own convention, any depth, sigmoid
layers, ½·SSE summed over the batch, biases when the config has them:

    handgrad check examples/learners/correct_class.py seed
"""

import numpy as np


class Network:
    def __init__(self, params):
        self.L = sum(k.endswith(".weight") for k in params)
        self.W = [params[f"layers.{i}.weight"] for i in range(self.L)]       # (out, in)
        self.b = [params.get(f"layers.{i}.bias") for i in range(self.L)]     # (out,) or None

    def forward(self, X):
        self.a = [X]                                                         # a_0 (N, D)
        for W, b in zip(self.W, self.b, strict=True):
            z = self.a[-1] @ W.T + (0.0 if b is None else b)                 # (N, out)
            self.a.append(1 / (1 + np.exp(-z)))
        return self.a[-1]

    def backward(self, Y):
        grads = {}
        delta = (self.a[-1] - Y) * self.a[-1] * (1 - self.a[-1])             # δ_L (N, K)
        for i in reversed(range(self.L)):
            grads[f"layers.{i}.weight"] = delta.T @ self.a[i]                # (out, in)
            if self.b[i] is not None:
                grads[f"layers.{i}.bias"] = delta.sum(axis=0)                # (out,)
            delta = (delta @ self.W[i]) * self.a[i] * (1 - self.a[i])        # (N, in)
        return grads


def gradients(params, X, Y):
    net = Network(params)
    net.forward(X)
    return net.backward(Y)
