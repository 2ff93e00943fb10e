"""The MLP of makemore part 4 ("becoming a backprop ninja"), every step of it a tensor.

A character-level model: the 3 previous characters (ids 0..26) are embedded (C), joined,
through a linear layer, a batchnorm (Bessel-corrected variance, as in the lecture), tanh,
a linear layer and the cross-entropy, spelt out one operation per line so that a learner
backpropagates through each by hand and may return ∂E/∂ of every named intermediate.
"""

import numpy as np
import torch

LR, STEPS = 0.1, 10
VOCAB, BLOCK, EMBD, HIDDEN = 27, 3, 4, 16
INTERMEDIATES = ["emb", "embcat", "hprebn", "bnmeani", "bndiff", "bndiff2", "bnvar",
                 "bnvar_inv", "bnraw", "hpreact", "h", "logits", "logit_maxes",
                 "norm_logits", "counts", "counts_sum", "counts_sum_inv", "probs", "logprobs"]


def params():
    g = torch.Generator().manual_seed(2147483647)

    def randn(*shape):
        return torch.randn(*shape, generator=g, dtype=torch.float64)

    p = {"C": randn(VOCAB, EMBD),
         "W1": randn(EMBD * BLOCK, HIDDEN) * (5 / 3) / (EMBD * BLOCK) ** 0.5,
         "b1": randn(HIDDEN) * 0.1,              # useless before a batchnorm: kept, as there
         "W2": randn(HIDDEN, VOCAB) * 0.1,
         "b2": randn(VOCAB) * 0.1,
         "bngain": randn(1, HIDDEN) * 0.1 + 1.0,
         "bnbias": randn(1, HIDDEN) * 0.1}
    return {k: v.requires_grad_() for k, v in p.items()}


def data():
    rng = np.random.default_rng(4)
    X = rng.integers(0, VOCAB, size=(32, BLOCK))            # (N, BLOCK) character ids
    Y = (X.sum(axis=1) + rng.integers(0, 3, size=32)) % VOCAB   # (N,) the next one
    return X, Y


def loss(params, X, Y):
    C, W1, b1, W2, b2 = (params[k] for k in ("C", "W1", "b1", "W2", "b2"))
    bngain, bnbias = params["bngain"], params["bnbias"]
    n = X.shape[0]
    emb = C[X]                                              # (N, BLOCK, EMBD)
    embcat = emb.view(n, -1)                                # (N, BLOCK·EMBD)
    hprebn = embcat @ W1 + b1                               # (N, HIDDEN)
    bnmeani = 1 / n * hprebn.sum(0, keepdim=True)           # (1, HIDDEN)
    bndiff = hprebn - bnmeani                               # (N, HIDDEN)
    bndiff2 = bndiff ** 2
    bnvar = 1 / (n - 1) * bndiff2.sum(0, keepdim=True)      # (1, HIDDEN) Bessel's n − 1
    bnvar_inv = (bnvar + 1e-5) ** -0.5
    bnraw = bndiff * bnvar_inv
    hpreact = bngain * bnraw + bnbias
    h = torch.tanh(hpreact)                                 # (N, HIDDEN)
    logits = h @ W2 + b2                                    # (N, VOCAB)
    logit_maxes = logits.max(1, keepdim=True).values       # (N, 1)
    norm_logits = logits - logit_maxes
    counts = norm_logits.exp()
    counts_sum = counts.sum(1, keepdim=True)                # (N, 1)
    counts_sum_inv = counts_sum ** -1
    probs = counts * counts_sum_inv                         # (N, VOCAB)
    logprobs = probs.log()
    E = -logprobs[torch.arange(n), Y].mean()
    return E, {name: value for name, value in locals().items() if name in INTERMEDIATES}
