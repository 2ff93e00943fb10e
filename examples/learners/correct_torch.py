"""A correct learner file in handgrad's own convention ("torch").

Parameters as torch.nn.Linear stores them: ``layers.{i}.weight`` (out, in) and
``layers.{i}.bias`` (out,), so a layer computes z = a Wᵀ + b. The network: sigmoid on
every layer, loss E = ½ Σ_n Σ_k (A − Y)², summed over the batch (``half_sse``); any depth,
with or without biases. It fits the seed, xor and worked-2-2-2 experiments:

    handgrad check examples/learners/correct_torch.py xor
"""

import numpy as np

CONVENTION = "torch"   # the default; the line may be left out


def sigmoid(z):
    return 1 / (1 + np.exp(-z))


def gradients(params, X, Y):
    """δ_L = (A − Y) ⊙ A(1 − A);  δ_l = (δ_{l+1} W_{l+1}) ⊙ a_l(1 − a_l);
    ∂E/∂W_l = δ_lᵀ a_{l-1} (out, in);  ∂E/∂b_l = Σ_n δ_l (out,)."""
    L = sum(key.endswith(".weight") for key in params)
    bias = "layers.0.bias" in params
    a = [X]                                                    # a_0 = X      (N, D)
    for i in range(L):
        z = a[-1] @ params[f"layers.{i}.weight"].T             # (N, out)
        if bias:
            z = z + params[f"layers.{i}.bias"]
        a.append(sigmoid(z))                                   # (N, out)
    grads = {}
    delta = (a[L] - Y) * a[L] * (1 - a[L])                     # δ_L          (N, K)
    for i in reversed(range(L)):
        grads[f"layers.{i}.weight"] = delta.T @ a[i]           # (out, in) like W
        if bias:
            grads[f"layers.{i}.bias"] = delta.sum(axis=0)      # (out,) like b
        if i > 0:
            delta = (delta @ params[f"layers.{i}.weight"]) * a[i] * (1 - a[i])   # (N, in)
    return grads
