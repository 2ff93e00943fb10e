"""Mistake: dC[ix] = demb, assigned where it must be added: a character that appears twice
in a batch keeps only its last gradient."""

import numpy as np
from correct import gradients as correct_gradients


def gradients(p, X, Y):
    g = correct_gradients(p, X, Y)
    dC = np.zeros_like(p["C"])
    for k in range(X.shape[0]):
        for j in range(X.shape[1]):
            dC[X[k, j]] = g["emb"][k, j]                    # should be +=
    return {**g, "C": dC}
