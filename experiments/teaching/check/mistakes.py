"""Named derivation mistakes, recomputed: is the learner's gradient exactly what backprop
gives with one factor changed?

``experiments.core.diagnose`` reads a mismatch from its shape (a constant ratio, a
transpose, the layers it is confined to). Some classic mistakes have no such shape — a
σ′ evaluated at the wrong place changes every entry by a different factor — but they can
be *recomputed*: a ``manual.MLP`` whose ``activation_derivative`` (a public factor of its
backward pass) makes the mistake gives the gradients a learner who made it returns. When
the learner's gradients equal one of these to √u (the bug level), that mistake is named.

    sigma_of_a   σ′ applied to the activation: σ(a)(1 − σ(a)) for a(1 − a)
    none         δ = ∂E/∂a with f′(z) left out (``activation_derivative`` = 1)

each at every layer, the hidden layers only, or the output layer only (sigmoid/tanh/relu
layers; an identity layer has f′ = 1 and nothing to leave out).
"""

from __future__ import annotations

import manual
from experiments.core.diagnose import bug_tolerance
from experiments.core.metrics import rel_err
from manual.activations import sigmoid


class MistakenMLP(manual.MLP):
    """``manual.MLP`` with ``activation_derivative`` changed on ``layers``: ``"sigma_of_a"``
    (σ(a)(1 − σ(a)) from the stored a = σ(z)) or ``"none"`` (f′ left out: 1)."""

    def __init__(self, *args, change: str, layers: set[int], **kwargs):
        super().__init__(*args, **kwargs)
        self.change, self.layers = change, layers

    def activation_derivative(self, l: int, a_out):
        if l not in self.layers:
            return super().activation_derivative(l, a_out)
        if self.change == "none":
            return self.xp.ones_like(a_out)                                  # (N, n_out)
        s = sigmoid(a_out, self.xp)          # σ(a): σ applied a second time      (N, n_out)
        return s * (1 - s)                                                   # (N, n_out)


TEXTS = {
    "sigma_of_a": "σ′ taken of the activation: σ(a)(1 − σ(a)) where σ′(z) = a(1 − a) is "
                  "meant (a = σ(z) is already the activation; a helper written for z was "
                  "handed a)",
    "none": "the activation derivative f′(z) left out of δ (δ = ∂E/∂a where δ = ∂E/∂a ⊙ f′(z))",
}


def _layer_sets(cfg) -> list[tuple[str, set[int]]]:
    L = len(cfg.sizes) - 1
    return [("every layer", set(range(L))), ("the hidden layers", set(range(L - 1))),
            ("the output layer", {L - 1})]


def candidates(cfg):
    """``(what the learner did in words, change, layers)`` for the mistakes this network
    can show."""
    L = len(cfg.sizes) - 1
    acts = [cfg.activation] * (L - 1) + [cfg.resolved_output_activation]
    out = []
    for change in ("sigma_of_a", "none"):
        fits = {l for l in range(L) if (acts[l] == "sigmoid" if change == "sigma_of_a"
                                         else acts[l] != "identity")}
        for where, layers in _layer_sets(cfg):
            if layers and layers <= fits:
                out.append((f"{TEXTS[change]}, at {where}", change, layers))
    return out


def recognise(cfg, params: dict, X, Y, yours: dict, autograd: dict) -> str | None:
    """The named mistake whose gradients the learner's equal (to √u), if any, in words."""
    bug = bug_tolerance(cfg.dtype)
    keys = list(autograd)
    if any(yours[k].shape != autograd[k].shape for k in keys):
        return None
    for text, change, layers in candidates(cfg):
        net = MistakenMLP(cfg.sizes, **cfg.spec(), params=params, change=change,
                          layers=layers)
        g = net.gradients(X, Y)
        if all(rel_err(g[k], autograd[k]) <= bug for k in keys):
            continue     # the change makes no difference on this network
        if all(rel_err(yours[k], g[k]) <= bug for k in keys):
            return text
    return None
