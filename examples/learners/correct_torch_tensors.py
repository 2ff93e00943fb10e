"""A correct learner file with torch tensors and no autograd: the backward pass written by
hand in torch operations (no ``requires_grad``, no ``backward()``), numpy in and out.
The course notebooks' layout (``CONVENTION = "W1b1"``: W of shape (in, out)), any depth,
sigmoid layers, E = ½ Σ_n Σ_k (A − Y)² summed over the batch, biases when the config has
them:

    handgrad check examples/learners/correct_torch_tensors.py seed
"""

import torch

CONVENTION = "W1b1"


def gradients(params, X, Y):
    L = sum(k.startswith("W") for k in params)
    W = [torch.from_numpy(params[f"W{l}"]) for l in range(1, L + 1)]
    b = [torch.from_numpy(params[f"b{l}"]) if f"b{l}" in params else None
         for l in range(1, L + 1)]
    a = [torch.from_numpy(X)]
    for l in range(L):
        z = a[-1] @ W[l] + (b[l] if b[l] is not None else 0)       # (N, n_l)
        a.append(torch.sigmoid(z))
    delta = (a[-1] - torch.from_numpy(Y)) * a[-1] * (1 - a[-1])     # δ_L (N, K)
    grads = {}
    for l in range(L - 1, -1, -1):
        grads[f"W{l + 1}"] = (a[l].T @ delta).numpy()               # (n_in, n_out)
        if b[l] is not None:
            grads[f"b{l + 1}"] = delta.sum(dim=0).numpy()            # (n_out,)
        if l > 0:
            delta = (delta @ W[l].T) * a[l] * (1 - a[l])             # δ_l (N, n_l)
    return grads
