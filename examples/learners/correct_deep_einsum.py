"""A correct learner file, vectorised over the batch with einsum and a list of layer
caches, for any depth and the course notebooks' layout (``CONVENTION = "W1b1"``: W of
shape (in, out)). Sigmoid layers, E = ½ Σ_n Σ_k (A − Y)² summed over the batch; biases
when the config has them, and a frozen bias (the 2-2-2 worked example) left out:

    handgrad check examples/learners/correct_deep_einsum.py worked-2-2-2
"""

import numpy as np

CONVENTION = "W1b1"


def gradients(params, X, Y):
    L = sum(name.startswith("W") for name in params)
    caches, a = [], X
    for l in range(1, L + 1):
        z = np.einsum("ni,ij->nj", a, params[f"W{l}"]) + params.get(f"b{l}", 0)  # (N, n_l)
        caches.append(a)
        a = 1 / (1 + np.exp(-z))
        caches.append(a)
    dA = a - Y                                          # ∂E/∂A (N, K)
    grads = {}
    for l in range(L, 0, -1):
        a_in, a_out = caches[2 * l - 2], caches[2 * l - 1]
        delta = dA * a_out * (1 - a_out)                # δ_l (N, n_l)
        grads[f"W{l}"] = np.einsum("ni,nj->ij", a_in, delta)
        if f"b{l}" in params:
            grads[f"b{l}"] = delta.sum(axis=0)
        dA = np.einsum("nj,ij->ni", delta, params[f"W{l}"])
    return grads
