"""makemore part 4's exercise 1 in numpy: backpropagate through every line of the forward pass.

Each d<name> has <name>'s shape; a broadcast in the forward pass is a sum in the backward.
"""

import numpy as np


def forward(p, X):
    n = X.shape[0]
    f = {"emb": p["C"][X]}                                   # (N, BLOCK, EMBD)
    f["embcat"] = f["emb"].reshape(n, -1)                    # (N, BLOCK·EMBD)
    f["hprebn"] = f["embcat"] @ p["W1"] + p["b1"]            # (N, HIDDEN)
    f["bnmeani"] = f["hprebn"].sum(0, keepdims=True) / n     # (1, HIDDEN)
    f["bndiff"] = f["hprebn"] - f["bnmeani"]
    f["bndiff2"] = f["bndiff"] ** 2
    f["bnvar"] = f["bndiff2"].sum(0, keepdims=True) / (n - 1)
    f["bnvar_inv"] = (f["bnvar"] + 1e-5) ** -0.5
    f["bnraw"] = f["bndiff"] * f["bnvar_inv"]
    f["hpreact"] = p["bngain"] * f["bnraw"] + p["bnbias"]
    f["h"] = np.tanh(f["hpreact"])                           # (N, HIDDEN)
    f["logits"] = f["h"] @ p["W2"] + p["b2"]                 # (N, VOCAB)
    f["logit_maxes"] = f["logits"].max(1, keepdims=True)     # (N, 1)
    f["norm_logits"] = f["logits"] - f["logit_maxes"]
    f["counts"] = np.exp(f["norm_logits"])
    f["counts_sum"] = f["counts"].sum(1, keepdims=True)      # (N, 1)
    f["counts_sum_inv"] = f["counts_sum"] ** -1
    f["probs"] = f["counts"] * f["counts_sum_inv"]           # (N, VOCAB)
    f["logprobs"] = np.log(f["probs"])
    return f


def gradients(p, X, Y):
    f, n = forward(p, X), X.shape[0]
    d = {"logprobs": np.zeros_like(f["logprobs"])}
    d["logprobs"][np.arange(n), Y] = -1.0 / n
    d["probs"] = d["logprobs"] / f["probs"]
    d["counts_sum_inv"] = (f["counts"] * d["probs"]).sum(1, keepdims=True)
    d["counts_sum"] = -f["counts_sum"] ** -2 * d["counts_sum_inv"]
    d["counts"] = f["counts_sum_inv"] * d["probs"] + d["counts_sum"]    # both paths
    d["norm_logits"] = f["counts"] * d["counts"]
    d["logit_maxes"] = -d["norm_logits"].sum(1, keepdims=True)
    d["logits"] = d["norm_logits"].copy()
    d["logits"][np.arange(n), f["logits"].argmax(1)] += d["logit_maxes"][:, 0]
    d["h"] = d["logits"] @ p["W2"].T
    d["hpreact"] = (1.0 - f["h"] ** 2) * d["h"]
    d["bnraw"] = p["bngain"] * d["hpreact"]
    d["bnvar_inv"] = (f["bndiff"] * d["bnraw"]).sum(0, keepdims=True)
    d["bnvar"] = -0.5 * (f["bnvar"] + 1e-5) ** -1.5 * d["bnvar_inv"]
    d["bndiff2"] = np.ones_like(f["bndiff2"]) / (n - 1) * d["bnvar"]
    d["bndiff"] = f["bnvar_inv"] * d["bnraw"] + 2 * f["bndiff"] * d["bndiff2"]
    d["bnmeani"] = -d["bndiff"].sum(0, keepdims=True)
    d["hprebn"] = d["bndiff"] + d["bnmeani"] / n
    d["embcat"] = d["hprebn"] @ p["W1"].T
    d["emb"] = d["embcat"].reshape(f["emb"].shape)
    dC = np.zeros_like(p["C"])
    np.add.at(dC, X, d["emb"])                               # a repeated id adds up
    return {**d, "C": dC, "W1": f["embcat"].T @ d["hprebn"], "b1": d["hprebn"].sum(0),
            "W2": f["h"].T @ d["logits"], "b2": d["logits"].sum(0),
            "bngain": (f["bnraw"] * d["hpreact"]).sum(0, keepdims=True),
            "bnbias": d["hpreact"].sum(0, keepdims=True)}
