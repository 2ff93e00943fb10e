"""experiments.core.diagnose's findings, said in the learner's terms.

diagnose speaks of ``layers.{i}.weight`` and g_manual; a learner wrote ``W2`` (or
``layers.1.weight``) and wants to know what to change. ``translate`` turns each finding
into one sentence in the learner's names and notation (the convention's: W_l, δ_l, a_l
for W1b1, the keys for torch), and names the usual cause:

    constant_ratio   "your gradients are 1/N of autograd's on every parameter (c = 0.25,
                     N = 4): you averaged over the batch where this loss sums"
    transposed       "your W2 gradient is the transpose of autograd's ..."
    accumulated      "your gradients keep growing from call to call ..."
    layer_confined   where the mistake enters: a layer's delta, or one weight's own formula
    other            every layer differs: the mistake enters at the output delta
    update           the learner's update against w − lr·∂E/∂w

``first_param`` picks the parameter a learner should look at first: the first that
differs in the order backpropagation computes them (output layer first), where a mistake
that flows down the layers enters.
"""

from __future__ import annotations

import itertools
import math
import re

from experiments.core.diagnose import Finding

_KEY = re.compile(r"layers\.(\d+)\.(weight|bias)")


def first_param(differing, keys) -> str:
    """The first differing key in backprop order: from the output layer down, each layer's
    weight before its bias ("" when none differs)."""
    def rank(k):
        m = _KEY.match(k)
        return (-int(m.group(1)), m.group(2) != "weight") if m else (0, False)
    return next((k for k in sorted(keys, key=rank) if k in set(differing)), "")


def _names(conv, keys) -> str:
    names = [conv.name_of(k) for k in keys]
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


# -- constant ratios ---------------------------------------------------------------------------

def ratio_symbols(c: float, N: int, K: int, tol: float) -> list[str]:
    """The simplest names of c among 2, ½, N, K, M = N·K, their inverses and −1
    (several when they coincide, e.g. N = 2)."""
    factors = [("", 1.0), ("2", 2.0), ("½", 0.5)]
    reductions = [("", 1.0), ("N", N), ("1/N", 1 / N)]
    if K > 1:
        reductions += [("K", K), ("1/K", 1 / K), ("M", N * K), ("1/M", 1 / (N * K))]
    found = []
    for (f, fv), (r, rv), (s, sv) in itertools.product(factors, reductions,
                                                        [("", 1.0), ("−", -1.0)]):
        value = fv * rv * sv
        if value != 1.0 and math.isfinite(c) and abs(c / value - 1) <= tol:
            parts = [p for p in (f, r) if p]
            found.append((len(parts) + bool(s), s + ("·".join(parts) or "1")))
    best = min((n for n, _ in found), default=0)
    return list(dict.fromkeys(sym for n, sym in found if n == best))


def _cause(sym: str, loss: str) -> str:
    sums = loss == "half_sse"
    mean = "its 1/N (1/M = 1/(N·K) for mse and bce) is already inside ∂E/∂A"
    table = {
        "1/N": ("you averaged over the batch where this loss sums" if sums else
                f"you divided by N on top of the loss's own mean: {mean}"),
        "N": ("you multiplied by N" if sums else "you summed over the batch where this loss "
              "averages: the 1/N (1/M = 1/(N·K) for mse and bce) of ∂E/∂A is missing"),
        "½": ("the factor 2 of ∂(A − Y)²/∂A = 2(A − Y) is missing" if loss == "mse" else
              "an extra factor ½" + (": ½·Σ(A − Y)² has ∂E/∂A = A − Y, the ½ cancels the 2"
                                     if sums else "")),
        "2": ("an extra factor 2: ½·Σ(A − Y)² has ∂E/∂A = A − Y (its ½ cancels the 2 of the "
              "square)" if sums else "an extra factor 2" + (": 2(A − Y)/M counted twice"
                                                           if loss == "mse" else "")),
        "−1": "the sign is flipped: ∂E/∂A = A − Y, not Y − A",
    }
    return table.get(sym, "")


#: ∂E/∂A of the squared-error losses as (coefficient, powers of N and K in the denominator):
#: half_sse A − Y; mse 2(A − Y)/M with M = N·K (manual.losses)
_SQUARED = {"half_sse": (1.0, {"N": 0, "K": 0}), "mse": (2.0, {"N": 1, "K": 1})}
_WORDS = {"−": "sign flipped", "2": "a factor 2", "½": "a factor ½", "N": "multiplied by N",
          "1/N": "divided by N", "K": "multiplied by K", "1/K": "divided by K",
          "M": "multiplied by M = N·K", "1/M": "divided by M = N·K"}


def _parts(sym: str) -> list[str]:
    """``"−2·1/N"`` -> ``["−", "2", "1/N"]``: the sign, factor and reduction of a symbol."""
    sign = ["−"] if sym.startswith("−") else []
    return sign + [p for p in sym.lstrip("−").split("·") if p and p != "1"]


def _derivative(coef: float, sign: bool, den: dict, K: int) -> str:
    """``2(Y − A)/N``-style text of coef·(A − Y) (negated with ``sign``) over N^a·K^b."""
    diff = "Y − A" if sign else "A − Y"
    if K == 1:
        den = {**den, "K": 0}
    if den["N"] == den["K"] == 1:
        under, over = "M", ""
    else:
        power = {1: "", 2: "²", 3: "³"}
        under = "·".join(f"{s}{power.get(e, f'^{e}')}" for s, e in den.items() if e > 0)
        over = "·".join(f"{s}{power.get(-e, f'^{-e}')}" for s, e in den.items() if e < 0)
    num = {1.0: "", 2.0: "2", 0.5: "½", 4.0: "4", 0.25: "¼"}.get(coef, f"{coef:g}") + \
        ("·" if over and coef != 1 else "") + over
    text = f"{num}({diff})" if num else diff
    return f"{text}/{under}" if under else text


def _composite(sym: str, loss: str, K: int) -> str:
    """A short cause for a constant made of several parts: "sign flipped and a factor 2:
    2(Y − A) where ∂E/∂A = A − Y" (the formula for the squared-error losses)."""
    parts = _parts(sym)
    words = " and ".join(_WORDS[p] for p in parts)
    if loss not in _SQUARED:
        return words
    coef, den = _SQUARED[loss]
    theirs = dict(den)
    for p in parts:
        if p in ("2", "½"):
            coef *= 2.0 if p == "2" else 0.5
        elif p != "−":
            up = -1 if p.startswith("1/") else 1
            for s in ("N", "K") if p.lstrip("1/") == "M" else (p.lstrip("1/"),):
                theirs[s] -= up
    return (f"{words}: {_derivative(coef, '−' in parts, theirs, K)} where ∂E/∂A = "
            f"{_derivative(_SQUARED[loss][0], False, den, K)}")


def _how_much(sym: str, c: float) -> str:
    if sym == "−1":
        return "the negative of autograd's"
    if sym.startswith("1/") or sym == "½":
        return f"{sym} of autograd's"
    return f"{sym} times autograd's" if sym else f"{c:.4g} times autograd's"


def _ratio(f: Finding, conv, cfg, batch: int, keys) -> str:
    """A constant ratio c, with one cause: the config's lr when c = lr ≠ 1 (gradients()
    has no lr, so only a learner who folded it in returns lr·∂E/∂w), else the simplest
    product of sign, factor 2 and reduction that gives c (``ratio_symbols``)."""
    c = f.numbers["c"]
    K = cfg.sizes[-1]
    syms = ratio_symbols(c, batch, K, 1e-6)
    sym = next((s for s in syms if _cause(s, cfg.loss)), syms[0] if syms else "")
    cause = _cause(sym, cfg.loss) or (_composite(sym, cfg.loss, K) if sym else "")
    if cfg.lr != 1 and math.isfinite(c) and abs(c / cfg.lr - 1) <= 1e-6:
        sym = f"{c:.4g}"
        cause = ("you returned lr·∂E/∂w (lr = " + f"{cfg.lr:g}): gradients() returns the "
                 "derivative, update() applies lr" + (f" (if lr is nowhere in your code: "
                                                      f"{cause})" if cause else ""))
    consts = f"c = {c:.4g}" + (f", N = {batch}" if "N" in sym or "M" in sym else "") + \
        (f", K = {K}" if "K" in sym or "M" in sym else "")
    if not cause:
        names = "2, ½, N, K, M = N·K" if K > 1 else "2, ½, N"    # no K for one output
        cause = (f"c is none of {names}, their products or lr: look for another constant (a "
                 f"hand-written scale)")
    if set(f.params) == set(keys):
        return f"your gradients are {_how_much(sym, c)} on every parameter ({consts}): {cause}"
    lead = (f"your {_names(conv, f.params)} gradient{'s are' if len(f.params) > 1 else ' is'}"
            f" {_how_much(sym, c)} ({consts}) while the others agree")
    if all(k.endswith("bias") for k in f.params) and sym == "1/N":
        cause = ("you averaged the bias gradient over the batch: ∂E/∂b = Σ_n δ_n sums over "
                 "the samples, as ∂E/∂W = δᵀ·a does")
    elif not all(k.endswith("bias") for k in f.params):
        cause = f"a factor in these parameters' own formulas; {cause}"
    return f"{lead}: {cause}"


# -- the other kinds ---------------------------------------------------------------------------

def _notation(conv, layer: int) -> dict[str, str]:
    """Symbols of layer ``layer`` (0-based key index) in the learner's convention."""
    if conv.name == "W1b1":
        n = layer + 1
        a_in = "X" if n == 1 else f"a{n - 1}"
        return {"W": f"W{n}", "delta": f"δ{n}", "above": f"δ{n + 1} · W{n + 1}ᵀ",
                "grad": f"{a_in}ᵀ · δ{n}", "wrong": f"δ{n}ᵀ · {a_in}", "layout": "(in, out)"}
    return {"W": f"layers.{layer}.weight", "delta": f"δ of layers.{layer}",
            "above": f"δ of layers.{layer + 1} · layers.{layer + 1}.weight",
            "grad": "δᵀ · a_in", "wrong": "a_inᵀ · δ", "layout": "(out, in)"}


def _transposed(f: Finding, conv, yours) -> str:
    k = f.params[0]
    s = _notation(conv, int(_KEY.match(k).group(1)))
    name = conv.name_of(k)
    shape = conv.shapes[name]
    got = shape if k not in yours else (yours[k].T.shape if conv.names[k][1]
                                         else yours[k].shape)    # in the learner's layout
    if got != shape:
        how = f"shape {got} where {name} is {shape}"
    elif shape[0] == shape[1]:
        how = f"{name} is square, so the shape could not show it"
    else:
        how = f"computed as {shape[::-1]} and reshaped into {name}'s shape {shape}"
    return (f"your {name} gradient is the transpose of autograd's ({how}): ∂E/∂{s['W']} = "
            f"{s['grad']}, {s['layout']} like {s['W']}; you computed {s['wrong']}")


def _confined(f: Finding, conv, cfg) -> str:
    hi = int(f.numbers["layer"])
    s = _notation(conv, hi)
    names = _names(conv, f.params)
    if "enters_at" in f.numbers:
        top = len(cfg.sizes) - 2
        below = "the layer below" if hi == 0 else "the layers below"
        where = ("its δ = ∂E/∂a ⊙ f′(z)" if hi == top else f"{s['delta']} = ({s['above']}) "
                 f"⊙ f′(z)")
        return (f"{names} differ{'s' if len(f.params) == 1 else ''} while the layers above "
                f"agree: the mistake enters at {s['W']}'s layer, in {where} — its activation "
                f"derivative f′, or the error passed down to it — or in {s['W']}'s own "
                f"formula ∂E/∂{s['W']} = {s['grad']}; a wrong delta reaches {below} too, "
                f"never the layers above")
    return (f"only {names} differ{'s' if len(f.params) == 1 else ''} while the layers below, "
            f"which receive their error through {s['W']}, agree: δ is right, so the mistake "
            f"is in {s['W']}'s own formula ∂E/∂{s['W']} = {s['grad']} (∂E/∂b = Σ_n δ)")


def _other(f: Finding, conv, cfg) -> str:
    if "enters_at" not in f.numbers:
        return _in_learner_names(f, conv)
    L = len(cfg.sizes) - 1
    delta = f"δ{L}" if conv.name == "W1b1" else "the output delta"
    return (f"every parameter differs, with no constant factor between yours and autograd's: "
            f"the mistake enters at {delta} = ∂E/∂A ⊙ f′(z_out) — the loss derivative "
            f"({cfg.loss}) or the output activation's derivative ({cfg.resolved_output_activation}"
            f") — and backpropagation carries it into every layer below")


def _update(f: Finding, conv, cfg) -> str:
    c, lr = f.numbers["c"], f.numbers.get("lr", cfg.lr)    # the lr update() was called with
    names = _names(conv, f.params)
    if abs(c + 1) <= 1e-6:
        how = "moves uphill, w + lr·∂E/∂w: gradient descent subtracts, w − lr·∂E/∂w"
    elif abs(c) <= 1e-6:
        how = "leaves the weights where they were (does it return the old params?)"
    elif lr != 1 and abs(c * lr - 1) <= 1e-6:
        how = (f"ignores the learning rate: w − ∂E/∂w (called with lr = {lr:g}; "
               f"use the lr argument, never a number of your own)")
    elif lr != 1 and abs(c / lr - 1) <= 1e-6:
        how = f"applies the learning rate twice: w − lr²·∂E/∂w (called with lr = {lr:g})"
    elif math.isfinite(c):
        how = f"takes {c:.4g} times torch.optim.SGD's step w − lr·∂E/∂w (or no single factor)"
    else:
        how = "is not w − lr·∂E/∂w"
    return f"your update of {names} {how}"


def _in_learner_names(f: Finding, conv) -> str:
    """diagnose's own sentence with the learner's names for the keys."""
    text = _KEY.sub(lambda m: conv.name_of(m.group(0)) if m.group(0) in conv.names
                    else m.group(0), f.detail)
    return text.replace("g_manual", "yours").replace("the reference", "autograd")


def translate(f: Finding, conv, cfg, batch: int, keys, yours) -> str:
    """One finding as one sentence in the learner's terms."""
    if f.kind == "constant_ratio" and "loss" not in f.params:   # the loss's: said as is
        return _ratio(f, conv, cfg, batch, keys)
    if f.kind == "transposed":
        return _transposed(f, conv, yours)
    if f.kind == "accumulated":
        return ("your gradients keep growing from call to call: the second call returned "
                "autograd's gradient at its point plus the first call's. They are accumulated "
                "across calls, never reset: start each call from zero (dW = np.zeros_like(W), "
                "or = instead of +=) and keep no running sum outside the function")
    if f.kind == "layer_confined":
        return _confined(f, conv, cfg)
    if f.kind == "other":
        return _other(f, conv, cfg)
    if f.kind == "update":
        return _update(f, conv, cfg)
    return _in_learner_names(f, conv)
