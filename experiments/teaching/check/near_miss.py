"""Near misses: gradients that are almost right, or right but not in the form asked for.

``experiments.core.diagnose`` reads a mismatch as a derivation mistake: a constant ratio,
a transpose, the layer it enters at. Some mismatches are no derivation mistake at all,
and blaming them on a formula sends a learner looking in the wrong place. Each is
recognised from what the check already has — the dtype the learner returned, the size
and spread of the error, autograd's gradients of the other parameters, the network's
pre-activations — and named as what it is (checked in this order; the first that fits):

    zero       a gradient exactly 0 everywhere where autograd's is not: allocated and
               never filled in
    swapped    the gradient returned as W1 is autograd's gradient of W2 (and W2's is W1's:
               the names swapped), to the bug level √u
    float32    the arrays came back float32 under a wider config (float16: kind
               ``float16``), and agree with autograd to that dtype's bug level √u
               (2.4e-4 for float32: diagnose's threshold between rounding and mistakes,
               for the dtype the learner used)
    numerical  finite differences instead of backprop: the error is small (at most
               ``NUMERICAL_MAX`` relative), in nearly every entry, and has the shape a
               difference quotient leaves — (h/2)·∂²E/∂w² for a forward difference,
               (h²/6)·∂³E/∂w³ for a central one, or, below the bug level, the rounding
               u·|E|/h of either
    relu_kink  relu′ taken as 1 at exactly z = 0 (``z >= 0``): the gradients equal, to
               √u, backprop's with that relu′, and some pre-activation is exactly 0

``recognise`` returns ``(kind, sentence)`` in the learner's names, or None.
"""

from __future__ import annotations

import math

import numpy as np

import manual
from experiments.core.diagnose import bug_tolerance, fit_ratio
from experiments.core.metrics import TINY, rel_err
from experiments.core.tolerance import unit_roundoff

#: the largest relative error read as a finite difference's: a forward difference with a
#: step as coarse as h = 1e-2 leaves about h·|E″|/(2|E′|) ≈ 1e-2 on these networks, and a
#: derivation mistake changes a gradient by far more (a factor, a missing f′ ≤ ¼)
NUMERICAL_MAX = 3e-2
#: share of the entries that must be off for an error to count as "everywhere"
DENSE = 0.9
#: a difference-quotient model explains the error when the residual of the fit is below
#: this share of it: the next term of the Taylor series and the rounding u·|E|/h stay far
#: below it for 1e-7 ≤ h ≤ 1e-2
MODEL_FIT = 0.2
#: the steps at which handgrad takes its own difference quotients, to learn the shape of
#: each one's error: a forward step small enough that (h/2)·E″ dominates the next term,
#: a central step large enough that (h²/6)·E‴ dominates the rounding u·|E|/h
FORWARD_H, CENTRAL_H = 1e-6, 1e-3


def _names(conv, keys) -> str:
    names = [conv.name_of(k) for k in keys]
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


def _zero(init) -> str | None:
    zero = [k for k in init.autograd if not np.any(init.yours[k])
            and np.any(init.autograd[k])]
    if not zero:
        return None
    conv = init.convention
    which = ("your gradients are" if len(zero) == len(init.autograd) else
             f"your {_names(conv, zero)} gradient{'s are' if len(zero) > 1 else ' is'}")
    return (f"{which} all zeros, where autograd's {'are' if len(zero) > 1 else 'is'} not: "
            f"an array allocated (np.zeros_like) and never filled in — is each sample's "
            f"term added to that very array (a misspelt name, a copy, a loop that never "
            f"runs), and is it the array you return?")


def _swapped(init) -> str | None:
    conv, yours, ref = init.convention, init.yours, init.autograd
    bug = bug_tolerance(init.config.dtype)
    moved = {}   # key -> the key whose autograd gradient it holds
    for k in ref:
        if yours[k].shape == ref[k].shape and rel_err(yours[k], ref[k]) <= bug:
            continue   # (a transposed shape is compared too: in a 2-4-2 network a swapped
                       # W1 (2, 4) and W2 (4, 2) come back with each other's shapes)
        holds = [j for j in ref if j != k and ref[j].shape == yours[k].shape
                 and np.any(ref[j]) and rel_err(yours[k], ref[j]) <= bug]
        if holds:
            moved[k] = holds[0]
    if not moved:
        return None
    k, j = next(iter(moved.items()))
    a, b = conv.name_of(k), conv.name_of(j)
    if moved.get(j) == k:
        return (f"your {a} and {b} are swapped: the gradient you return as {a} is autograd's "
                f"∂E/∂{b}, and the one you return as {b} is ∂E/∂{a}; return each under its "
                f"own name")
    return (f"the gradient you return as {a} is autograd's ∂E/∂{b}: it belongs to {b}; "
            f"∂E/∂{a} is missing")


def _narrow(cfg, dtypes) -> dict[str, str]:
    """The keys whose arrays came back in a dtype narrower than the config's."""
    return {k: d for k, d in dtypes.items()
            if np.dtype(d).itemsize < np.dtype(cfg.dtype).itemsize}


def _narrowest(cfg, dtypes) -> str:
    narrow = _narrow(cfg, dtypes)
    return str(min(map(np.dtype, narrow.values()), key=lambda d: d.itemsize)) if narrow else ""


def _float32(init, dtypes) -> str | None:
    narrow = _narrow(init.config, dtypes)
    if not narrow:
        return None
    dtype = _narrowest(init.config, dtypes)
    errs = [rel_err(init.yours[k], init.autograd[k]) for k in init.autograd]
    if max(errs) > bug_tolerance(dtype):
        return None
    fix = "use float64" + (", or run with `--set dtype=float32`" if dtype == "float32" else "")
    which = ("your arrays are" if len(narrow) == len(init.autograd) else
             f"your {_names(init.convention, list(narrow))} {'are' if len(narrow) > 1 else 'is'}")
    return (f"{which} {dtype}: the maths agrees to {dtype} precision (rel_err "
            f"{max(errs):.1g}); {fix} (no .astype(np.{dtype}), no np.{dtype} arrays)")


# -- finite differences ------------------------------------------------------------------------

def _flat(arrays, keys) -> np.ndarray:
    return np.concatenate([np.asarray(arrays[k], np.float64).ravel() for k in keys])


def _quotient(init, h: float, central: bool) -> np.ndarray:
    """handgrad's own forward or central difference quotient at step ``h`` (float64),
    flattened in autograd's key order: two loss evaluations per entry (one for a forward
    difference), made only for an error that passed ``_numerical``'s cheap tests."""
    cfg = init.config
    net = manual.MLP(cfg.sizes, **cfg.spec(dtype="float64"), params=init.weights)
    E = net.loss(init.X, init.Y)
    out = []
    for k in init.autograd:
        w = net.param_arrays[k]          # perturbed in place, restored
        for i in np.ndindex(w.shape):
            w0 = w[i]
            w[i] = w0 + h
            up = net.loss(init.X, init.Y)
            w[i] = w0 - h
            down = net.loss(init.X, init.Y) if central else E
            w[i] = w0
            out.append((up - down) / (2 * h if central else h))
    return np.array(out)


def _numerical(init) -> str | None:
    keys = list(init.autograd)
    if any(init.yours[k].shape != init.autograd[k].shape for k in keys):
        return None
    g = _flat(init.autograd, keys)
    e = _flat(init.yours, keys) - g                               # the learner's error
    scale = max(float(np.linalg.norm(g)), TINY)
    rel = float(np.linalg.norm(e)) / scale
    u = unit_roundoff(init.config.dtype)
    # "everywhere": nearly every entry off by more than a few roundings of its own value
    # (of 1e-3 of the largest, for an entry near 0, whose own rounding is no yardstick)
    off = np.abs(e) > 4 * u * np.maximum(np.abs(g), float(np.abs(g).max()) * 1e-3)
    if rel > NUMERICAL_MAX or off.mean() < DENSE:
        return None
    if fit_ratio(e, g)[1] <= MODEL_FIT:            # proportional to g: a constant factor
        return None
    size = float(np.median(np.abs(e)))
    advice = ("a difference quotient is a test of a gradient, not a gradient: derive "
              "∂E/∂w with backprop (δ = ∂E/∂a ⊙ f′(z), ∂E/∂W from δ and the layer's input) "
              "and keep the difference as your check")
    fwd = _quotient(init, FORWARD_H, False) - g    # ≈ (h/2)·∂²E/∂w² at h = FORWARD_H
    c, res = fit_ratio(e, fwd)
    if c > 0 and res <= MODEL_FIT:
        return (f"your gradients look numerical: errors of about {size:.0e} everywhere, "
                f"proportional to h as a forward difference (E(w + h) − E(w))/h leaves "
                f"(h ≈ {c * FORWARD_H:.0e}); {advice}")
    cen = _quotient(init, CENTRAL_H, True) - g     # ≈ (h²/6)·∂³E/∂w³ at h = CENTRAL_H
    c, res = fit_ratio(e, cen)
    fits = c > 0 and res <= MODEL_FIT
    if fits or rel <= bug_tolerance(init.config.dtype):
        h = f" (h ≈ {math.sqrt(c) * CENTRAL_H:.0e})" if fits else ""
        return (f"your gradients look numerical: errors of about {size:.0e} everywhere, the "
                f"size a central difference (E(w + h) − E(w − h))/2h leaves{h}; {advice}")
    return None


# -- relu′ at 0 ----------------------------------------------------------------------------

class _KinkMLP(manual.MLP):
    """``manual.MLP`` with relu′(0) = 1 on the layers ``kinked``, given each layer's z."""

    def __init__(self, *args, z, kinked: set[int], **kwargs):
        super().__init__(*args, **kwargs)
        self.z, self.kinked = z, kinked

    def activation_derivative(self, l: int, a_out):
        d = super().activation_derivative(l, a_out)                          # (N, n_out)
        return self.xp.where(self.z[l] == 0, 1.0, d) if l in self.kinked else d


def preactivations(net, X) -> list[np.ndarray]:
    """z_l = a_{l-1} W_lᵀ + b_l of every layer, from ``net``'s forward pass."""
    a = net.forward_cache(X)
    p = net.param_arrays
    return [a[l] @ p[f"layers.{l}.weight"].T + (p[f"layers.{l}.bias"] if net.bias is not False
                                                   else 0.0) for l in range(len(a) - 1)]


def _relu_kink(init) -> str | None:
    cfg = init.config
    L = len(cfg.sizes) - 1
    acts = [cfg.activation] * (L - 1) + [cfg.resolved_output_activation]
    if "relu" not in acts:
        return None
    net = manual.MLP(cfg.sizes, **cfg.spec(), params=init.weights)
    z = preactivations(net, init.X)
    zeros = sum(int(np.sum(z[l] == 0)) for l in range(L) if acts[l] == "relu")
    if not zeros:
        return None
    relu = {l for l in range(L) if acts[l] == "relu"}
    net = _KinkMLP(cfg.sizes, **cfg.spec(), params=init.weights, z=z, kinked=relu)
    g = net.gradients(init.X, init.Y)
    bug = bug_tolerance(cfg.dtype)
    if any(init.yours[k].shape != g[k].shape or rel_err(init.yours[k], g[k]) > bug
           for k in g):
        return None
    return (f"relu′ at exactly z = 0: your code takes 1, autograd takes 0 ({zeros} "
            f"entr{'y' if zeros == 1 else 'ies'} of z {'is' if zeros == 1 else 'are'} exactly "
            f"0 here); relu has no derivative at 0 and torch.relu's backward takes 0 there: "
            f"write relu′(z) as (z > 0), not (z >= 0)")


def recognise(init, dtypes: dict[str, str]) -> tuple[str, str] | None:
    """``(kind, sentence)`` for the first near miss of the module docstring that fits the
    diagnosed call ``init`` (an ``initial.Initial``), or None. ``dtypes``: the dtype of
    each array as the learner returned it (torch keys)."""
    for kind, test in (("zero", _zero), ("swapped", _swapped),
                       ("float32", lambda i: _float32(i, dtypes)),
                       ("numerical", _numerical), ("relu_kink", _relu_kink)):
        sentence = test(init)
        if sentence:   # float32's kind is the dtype returned: float16 is said as such
            return (_narrowest(init.config, dtypes) if kind == "float32" else kind), sentence
    return None
