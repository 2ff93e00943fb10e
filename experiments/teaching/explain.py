"""``handgrad explain``: one backpropagation step of a small network, number by number.

For each weight (or the ones named with ``--param``) the chain rule is written out with
the numbers of manual/'s forward cache, in the notation of the classic 2-2-2 worked
example (net = weighted input sum, out = activation):

    output layer   ∂E/∂w = ∂E/∂out_o · ∂out_o/∂net_o · ∂net_o/∂w          ∂net_o/∂w = out_h
    hidden layer   ∂E/∂out_h = Σ_o ∂E/∂out_o · ∂out_o/∂net_o · w_oh        (written out)
                   ∂E/∂w = ∂E/∂out_h · ∂out_h/∂net_h · ∂net_h/∂w           ∂net_h/∂w = out_i

summed over the batch when it holds more than one sample. This is manual.MLP.backward's
arithmetic kept entry by entry: δ = ∂E/∂net = ∂E/∂out ⊙ f'(out), ∂E/∂W = δᵀ a_{l-1},
∂E/∂a_{l-1} = δ W (``backprop`` below repeats those lines, and the tests hold the result
to ``manual.MLP.gradients``). Next to every gradient stands autograd's (torch_impl) and
the difference; then the update w⁺ = w − lr·∂E/∂w, next to torch.optim.SGD's.

Update order. The derivation computes every δ at the weights the step starts from and
then moves all weights ("simultaneous"; autograd + torch.optim.SGD do exactly this).
A hand implementation may instead update the output weights first and backpropagate
through the *new* ones ("sequential"). ``update_order_table`` trains both orders (and
torch) and checks which of the published 2-2-2 figures each reproduces.

What the numbers show (``handgrad explain --steps 10000``; tests/test_explain.py): the
published text mixes the orders. ∂E/∂w1 = 0.000438568 and w1⁺ = 0.149780716 are
simultaneous; the error after the first step, 0.291027924, and the outputs after 10,000
steps, 0.015912196 and 0.984065734, are sequential (simultaneous gives 0.291027774,
0.015913620, 0.984064274); the error after 10,000 steps, 0.0000351085, is neither order's
at step 10,000 (3.51019e-05 / 3.50848e-05) but the simultaneous error after 9,999 updates.

Everything runs on the explained batch: the config's first batch (the full batch for the
named small experiments), on the CPU, in the config's dtype.
"""

from __future__ import annotations

import io
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

import manual
from experiments.core.config import ConfigError, RunConfig, load_config, replace
from experiments.core.schema import EXPLAIN_COLUMNS as CSV_COLUMNS
from experiments.core.schema import UPDATE_ORDER_COLUMNS as TABLE_COLUMNS

__all__ = [
    "CSV_COLUMNS",
    "ORDERS",
    "Explanation",
    "backprop",
    "draw_network",
    "explain",
    "explanation_rows",
    "parse_param",
    "prepare",
    "register",
    "render",
    "update_order_notes",
    "update_order_table",
]

ORDERS = ("simultaneous", "sequential")
FORMATS = ("text", "markdown", "csv")
MAX_PARAMS = 200        # beyond this the full explanation is a wall of numbers: ask for --param
DISPLAY_SAMPLES = 8     # text/markdown show this many samples per sum (csv shows all)

LOSS_RULES = {  # ∂E/∂out, as manual.losses writes it (M = N·K)
    "half_sse": "∂E/∂out = out − target   (E = ½ Σ_n Σ_o (target − out)²)",
    "mse": "∂E/∂out = 2 (out − target) / M   (E = (1/M) Σ (target − out)², M = N·K)",
    "bce": "∂E/∂out = (out − target) / (out (1 − out)) / M   (mean binary cross-entropy)",
    "cross_entropy": "∂E/∂out = (softmax(out) − target) / N   (out are the logits)",
}
ACTIVATION_RULES = {  # f'(net) through the stored out = f(net), as manual.activations
    "sigmoid": "∂out/∂net = out (1 − out)",
    "tanh": "∂out/∂net = 1 − out²",
    "relu": "∂out/∂net = 1 if out > 0 else 0",
    "identity": "∂out/∂net = 1",
}


# ------------------------------------------------------------------------------ data


@dataclass(frozen=True)
class Problem:
    """What one explanation runs on: the resolved config, initial weights, the batch."""

    config: RunConfig        # resolved: sizes filled in
    params: dict             # initial parameters (numpy, run dtype)
    X: np.ndarray            # (N, D) the explained batch
    Y: np.ndarray            # targets as the dataset encodes them
    T: np.ndarray            # (N, K) targets as the loss sees them
    batch: str               # "full batch" or "first batch (samples …)"
    worked: bool             # the published 2-2-2 example with its settings
    worked_diffs: tuple[str, ...] = ()   # why a 2-2-2 is not the published example


@dataclass(frozen=True)
class Factor:
    symbol: str              # e.g. "∂E/∂out_o1"
    values: np.ndarray       # (N,) one per sample


@dataclass(frozen=True)
class Upstream:
    """One term of ∂E/∂out_h = Σ_j (…): its factors and their product per sample."""

    factors: tuple[Factor, ...]
    values: np.ndarray       # (N,)


@dataclass(frozen=True)
class GradientTerm:
    key: str                 # "layers.0.weight"
    index: tuple[int, ...]   # (j, i) or (j,)
    name: str                # "w1", or "layers.0.weight[0,0]"
    edge: str                # "i1 → h1"
    layer: int               # l: the parameter feeds the neurons of layer l (1 … L)
    upstream: tuple[Upstream, ...]   # empty for the output layer
    factors: tuple[Factor, ...]      # ∂E/∂out_x, ∂out_x/∂net_x, ∂net_x/∂w
    products: np.ndarray     # (N,) per-sample chain-rule products
    value: float             # Σ_n products: the explained gradient
    autograd: float          # torch_impl's gradient entry

    @property
    def diff(self) -> float:
        return self.value - self.autograd


@dataclass(frozen=True)
class UpdateTerm:
    name: str
    key: str
    index: tuple[int, ...]
    w: float                 # before the step
    grad: float              # ∂E/∂w used by the step (the explained order's)
    effective: float         # what lr multiplies (∂E/∂w, or with weight decay / Nesterov)
    w_new: float             # after the step (manual.SGD, or the sequential update)
    autograd: float          # torch.optim.SGD's weight after its first step

    @property
    def diff(self) -> float:
        return self.w_new - self.autograd


@dataclass
class Explanation:
    """Everything ``handgrad explain`` prints, as data (renderers below turn it into text)."""

    problem: Problem
    order: str
    neurons: list[list[str]]          # names per layer (layer 0 = inputs)
    symbols: list[list[str]]          # formula subscripts per layer ("h1" or "[1,0]")
    net: list[np.ndarray | None]      # per layer (N, n_l); None for the inputs
    out: list[np.ndarray]             # per layer (N, n_l); out[0] = X
    net_autograd: list[np.ndarray | None]
    out_autograd: list[np.ndarray]
    error_terms: np.ndarray           # (N, K) elementwise, Σ = E_total
    E_total: float                    # manual.MLP.loss
    E_autograd: float
    gradients: list[GradientTerm]
    updates: list[UpdateTerm]
    update_rule: str
    grads_all: dict                   # every trainable gradient in the explained order
    grads_autograd: dict
    notes: list[str] = field(default_factory=list)

    @property
    def config(self) -> RunConfig:
        return self.problem.config

    @property
    def n_samples(self) -> int:
        return self.problem.X.shape[0]

    def frame(self) -> pd.DataFrame:
        """The long form: ``CSV_COLUMNS``, one row per printed number."""
        return explanation_rows(self)


# ------------------------------------------------------------------------------ problem


def _is_222(sizes) -> bool:
    return tuple(sizes) == (2, 2, 2)


def prepare(cfg: RunConfig) -> Problem:
    """Resolve ``cfg`` and build the run's initial parameters and first batch, as the runner
    does (same SeedSequence spawn for the init and the batch order)."""
    from experiments.core.init import worked_example_params
    from experiments.core.runner import batches, initial_state

    cfg, data, params, order_rng, _ = initial_state(
        replace(cfg, device="cpu", manual_backend="numpy"))
    N = data.X.shape[0]
    dtype = np.dtype(cfg.dtype)
    B = N if cfg.batch_size == "full" else min(cfg.batch_size, N)
    _, _, idx = next(batches(N, B, cfg.shuffle, order_rng, 1))   # the run's first batch
    if idx is None:
        idx, batch = np.arange(N), f"full batch, N = {N}"
    else:
        batch = f"the first batch of the run: {B} of {N} samples"
    X = data.X[idx].astype(dtype)                                        # (N, D)
    Y = data.Y[idx] if data.Y.dtype.kind == "i" else data.Y[idx].astype(dtype)
    if Y.ndim == 1:   # integer class labels: one-hot, as manual.losses.targets_for does
        T = (Y[:, None] == np.arange(cfg.sizes[-1])[None, :]).astype(dtype)  # (N, K)
    else:
        T = Y                                                            # (N, K)
    diffs: list[str] = []
    worked = False
    if _is_222(cfg.sizes):   # compared in float64, before the cast to the run's dtype
        ref = worked_example_params(True)
        checks = [
            ("activation", cfg.activation == "sigmoid"
             and cfg.resolved_output_activation == "sigmoid"),
            ("loss", cfg.loss == "half_sse"), ("bias", cfg.bias == "frozen"),
            ("lr", cfg.lr == 0.5), ("dtype", cfg.dtype == "float64"),
            ("momentum/weight_decay", cfg.momentum == 0 and cfg.weight_decay == 0),
            ("init", cfg.bias is not False and all(
                np.array_equal(params[k], ref[k]) for k in ref)),
            ("dataset", idx.size == 1 and np.array_equal(data.X[idx], [[0.05, 0.10]])
             and np.array_equal(data.Y[idx], [[0.01, 0.99]])),
        ]
        diffs = [name for name, ok in checks if not ok]
        worked = not diffs
    params = {k: v.astype(dtype) for k, v in params.items()}
    return Problem(cfg, params, X, Y, T, batch, worked, tuple(diffs))


def _n_params(cfg: RunConfig) -> int:
    return sum(int(np.prod(s)) for s in manual.parameter_shapes(cfg.sizes, cfg.bias).values())


def _names(sizes) -> tuple[list[list[str]], list[list[str]]]:
    """Neuron names and formula subscripts: i1 h1 o1 for the 2-2-2, else layer l, unit j."""
    if _is_222(sizes):
        names = [["i1", "i2"], ["h1", "h2"], ["o1", "o2"]]
        return names, names
    names = [[f"layer {l}, unit {j}" for j in range(n)] for l, n in enumerate(sizes)]
    syms = [[f"[{l},{j}]" for j in range(n)] for l, n in enumerate(sizes)]
    return names, syms


def param_name(key: str, index: tuple[int, ...], sizes) -> str:
    """w1 … w8 and b_h1 … for the 2-2-2 (w1, w2 feed h1 from i1, i2; w5, w6 feed o1), else
    the key with its index: ``layers.1.weight[0,3]``."""
    layer = int(key.split(".")[1])
    if _is_222(sizes):
        if key.endswith("weight"):
            j, i = index
            return f"w{1 + 4 * layer + 2 * j + i}"
        return f"b_{'ho'[layer]}{index[0] + 1}"
    return f"{key}[{','.join(str(i) for i in index)}]"


_PARAM_RE = re.compile(r"^\s*(layers\.\d+\.(?:weight|bias))\s*(?:\[([^\]]*)\])?\s*$")


def parse_param(text: str, shapes: dict, trainable: Sequence[str], sizes=None
                ) -> list[tuple[str, tuple[int, ...]]]:
    """``layers.1.weight[0,0]`` (one entry), ``layers.1.weight`` (the whole tensor), or w1 …
    w8 on the 2-2-2 -> [(key, index), …]. Raises ``ConfigError`` with what to type instead."""
    where = f"--param {text!r}"
    listing = ", ".join(f"{k} {tuple(s)}" for k, s in shapes.items())
    if sizes is not None and _is_222(sizes):
        listing += " (or w1 … w8, the worked example's names)"
    if sizes is not None and _is_222(sizes):
        m = re.fullmatch(r"\s*w([1-8])\s*", text)
        if m:
            n = int(m.group(1)) - 1
            return [(f"layers.{n // 4}.weight", ((n % 4) // 2, n % 2))]
    m = _PARAM_RE.match(text)
    if not m:
        raise ConfigError(f"{where}: expected KEY[i,j] like layers.1.weight[0,0] or KEY for "
                          f"a whole tensor; this network has {listing}")
    key, raw = m.group(1), m.group(2)
    if key not in shapes:
        raise ConfigError(f"{where}: no parameter {key!r} in this network; it has {listing}")
    if key not in trainable:
        raise ConfigError(f"{where}: {key} is frozen (bias = \"frozen\"): it is never updated "
                          f"and has no gradient; choose a weight")
    shape = tuple(shapes[key])
    if raw is None:
        return [(key, tuple(int(i) for i in ix)) for ix in np.ndindex(*shape)]
    try:
        index = tuple(int(p) for p in raw.split(","))
    except ValueError:
        raise ConfigError(f"{where}: the index must be integers, e.g. {key}"
                          f"[{','.join('0' * len(shape))}]") from None
    if len(index) != len(shape):
        example = f"{key}[{','.join('0' for _ in shape)}]"
        raise ConfigError(f"{where}: {key} has shape {shape} and takes {len(shape)} "
                          f"ind{'ices' if len(shape) > 1 else 'ex'}, e.g. {example}")
    for i, n in zip(index, shape, strict=True):
        if not 0 <= i < n:
            raise ConfigError(f"{where}: index [{raw}] is out of range for {key} of shape "
                              f"{shape} (indices from 0 to n − 1)")
    return [(key, index)]


# ------------------------------------------------------------------------------ backprop


@dataclass
class Backprop:
    """manual.MLP.backward's intermediate arrays, per layer l = 1 … L (index 0 unused)."""

    dA: list          # ∂E/∂out_l   (N, n_l)
    fprime: list      # ∂out_l/∂net_l = f'(net_l) through out_l   (N, n_l)
    delta: list       # ∂E/∂net_l = dA ⊙ f'   (N, n_l)
    W_back: list      # W_l the backward pass went through to reach layer l − 1
    grads: dict       # ∂E/∂param for the trainable parameters (numpy, like the params)


def backprop(params: dict, a: list, T: np.ndarray, cfg: RunConfig, order: str = "simultaneous",
             lr: float | None = None) -> Backprop:
    """manual.MLP.backward, line for line, keeping every intermediate array.

        δ_L = ∂E/∂A ⊙ f'_L;  ∂E/∂W_l = δ_lᵀ a_{l-1};  ∂E/∂b_l = Σ_n δ_l;  ∂E/∂a_{l-1} = δ_l W_l

    ``order="sequential"`` updates W_l (and b_l) in ``params`` *in place* with
    p ← p − lr·∂E/∂p as soon as its gradient is known, so the next layer down is reached
    through the new W_l; "simultaneous" leaves ``params`` alone (the derivation).
    """
    if order not in ORDERS:
        raise ConfigError(f"update order {order!r}: choose one of {list(ORDERS)}")
    L = len(a) - 1
    names = [cfg.activation] * (L - 1) + [cfg.resolved_output_activation]
    _, loss_grad = manual.LOSSES[cfg.loss]
    bp = Backprop([None] * (L + 1), [None] * (L + 1), [None] * (L + 1), [None] * (L + 1), {})
    bp.dA[L] = loss_grad(a[L], T.astype(a[L].dtype, copy=False), np)        # ∂E/∂A (N, K)
    for l in range(L, 0, -1):
        _, f_prime = manual.ACTIVATIONS[names[l - 1]]
        bp.fprime[l] = f_prime(a[l], np)                                  # (N, n_l)
        bp.delta[l] = bp.dA[l] * bp.fprime[l]                             # δ_l (N, n_l)
        wk, bk = f"layers.{l - 1}.weight", f"layers.{l - 1}.bias"
        bp.grads[wk] = bp.delta[l].T @ a[l - 1]                           # (n_l, n_{l-1})
        if cfg.bias is True:
            bp.grads[bk] = np.sum(bp.delta[l], axis=0)                    # (n_l,)
        if order == "sequential":
            params[wk] -= lr * bp.grads[wk]                               # W_l ← W_l − lr ∂E/∂W_l
            if cfg.bias is True:
                params[bk] -= lr * bp.grads[bk]
        bp.W_back[l] = params[wk].copy()
        if l > 1:
            bp.dA[l - 1] = bp.delta[l] @ params[wk]                       # ∂E/∂a_{l-1} (N, n_{l-1})
    return bp


def _error_terms(loss: str, A: np.ndarray, T: np.ndarray) -> np.ndarray:
    """(N, K) elementwise loss terms whose sum is E (the definitions of manual.losses)."""
    M = A.shape[0] * A.shape[1]
    if loss == "half_sse":
        return 0.5 * (T - A) ** 2
    if loss == "mse":
        return (T - A) ** 2 / M
    if loss == "bce":
        with np.errstate(divide="ignore"):
            la = np.maximum(np.log(A), -100.0)          # BCELoss clamps log at −100
            l1a = np.maximum(np.log1p(-A), -100.0)     # log(1 − A) as log1p, as manual
        return -(T * la + (1 - T) * l1a) / M
    S = A - A.max(axis=1, keepdims=True)                # cross_entropy: log-softmax
    logp = S - np.log(np.exp(S).sum(axis=1, keepdims=True))
    return -(T * logp) / A.shape[0]


def _torch_forward(tor, X) -> tuple[list, list]:
    """torch_impl's own forward, layer by layer: (net per layer, out per layer)."""
    import torch

    nets, outs = [None], [X]
    with torch.no_grad():
        x = tor.as_input(X)
        for linear, f in zip(tor.module.layers, tor.module.activations, strict=True):
            z = linear(x)
            x = f(z)
            nets.append(z.cpu().numpy())
            outs.append(x.cpu().numpy())
    return nets, outs


def _sgd_kwargs(cfg: RunConfig) -> dict:
    return dict(lr=cfg.lr, momentum=cfg.momentum, dampening=cfg.dampening,
                weight_decay=cfg.weight_decay, nesterov=cfg.nesterov)


def _plain(cfg: RunConfig) -> bool:
    return cfg.momentum == 0 and cfg.weight_decay == 0


def explain(cfg: RunConfig | str, param: str | Sequence[str] | None = None,
            order: str = "simultaneous") -> Explanation:
    """The forward pass, the error, the chain rule for each selected parameter (default:
    every trainable one) and one update, from manual's forward cache, next to autograd.

    ``cfg``: a RunConfig or a named experiment / TOML path; ``param``: one or more
    ``--param`` strings. Raises ``ConfigError`` for bad input."""
    import torch_impl

    if isinstance(cfg, str):
        cfg = load_config(cfg)
    if order not in ORDERS:
        raise ConfigError(f"--update-order {order!r}: choose one of {list(ORDERS)}")
    prob = prepare(cfg)
    cfg = prob.config
    if order == "sequential" and not _plain(cfg):
        raise ConfigError(f"--update-order sequential is defined for plain gradient descent; "
                          f"this config has momentum = {cfg.momentum}, weight_decay = "
                          f"{cfg.weight_decay}: add --set momentum=0 --set weight_decay=0")
    shapes = manual.parameter_shapes(cfg.sizes, cfg.bias)
    spec = dict(activation=cfg.activation, output_activation=cfg.resolved_output_activation,
                bias=cfg.bias, loss=cfg.loss, dtype=cfg.dtype)
    net = manual.MLP(cfg.sizes, **spec, params=prob.params)
    trainable = net.trainable
    n_params = _n_params(cfg)
    if param is None or param == []:
        if n_params > MAX_PARAMS:
            raise ConfigError(f"{cfg.name}: {n_params} parameters is too many to explain "
                              f"all at once (limit {MAX_PARAMS}); pick some with --param, "
                              f"e.g. --param 'layers.{len(cfg.sizes) - 2}.weight[0,0]'")
        selected = [(k, ix) for k in trainable for ix in np.ndindex(*shapes[k])]
    else:
        texts = [param] if isinstance(param, str) else list(param)
        selected = []
        for text in texts:
            for item in parse_param(text, shapes, trainable, cfg.sizes):
                if item not in selected:
                    selected.append(item)

    # manual: the forward cache, then backward's arithmetic with its intermediates
    a = net.forward_cache(prob.X)                                         # [a_0 … a_L]
    E = net.loss(prob.X, prob.Y)
    work = {k: v.copy() for k, v in net.params.items()}
    bp = backprop(work, a, prob.T, cfg, order, cfg.lr)
    L = len(cfg.sizes) - 1
    # net_l = a_{l-1} W_lᵀ + b_l: the expression manual.forward_cache evaluates (it keeps a_l)
    nets = [None] + [a[l - 1] @ prob.params[f"layers.{l - 1}.weight"].T
                     + (prob.params[f"layers.{l - 1}.bias"] if cfg.bias is not False else 0)
                     for l in range(1, L + 1)]                            # (N, n_l)

    # autograd: torch_impl's loss, gradients, forward values, and one torch.optim.SGD step
    tor = torch_impl.MLP(cfg.sizes, **spec, params=prob.params)
    E_t, g_t = tor.loss_and_gradients(prob.X, prob.Y)
    net_t, out_t = _torch_forward(tor, prob.X)
    tor.optimizer(**_sgd_kwargs(cfg)).step()
    w_t = tor.params

    # the update: manual.SGD (simultaneous) or the sequential in-place update
    if order == "simultaneous":
        stepped = {k: v.copy() for k, v in prob.params.items()}
        manual.SGD(stepped, **_sgd_kwargs(cfg)).step({k: bp.grads[k] for k in trainable})
    else:
        stepped = work
    names, syms = _names(cfg.sizes)
    grads = [_gradient_term(key, ix, bp, a, cfg, names, syms, order, g_t)
             for key, ix in selected]
    updates, rule = [], _update_rule(cfg, order)
    for key, ix in selected:
        g = float(bp.grads[key][ix])
        w = float(prob.params[key][ix])
        eff = g + cfg.weight_decay * w
        if cfg.momentum and cfg.nesterov:
            eff = eff + cfg.momentum * eff        # first step: buffer = g, g + μ·b
        updates.append(UpdateTerm(param_name(key, ix, cfg.sizes), key, ix, w, g, eff,
                                  float(stepped[key][ix]), float(w_t[key][ix])))
    notes = []
    if n_params > MAX_PARAMS:
        notes.append(f"{n_params} parameters: the forward pass lists only the neurons on the "
                     f"selected parameters' paths")
    return Explanation(problem=prob, order=order, neurons=names, symbols=syms, net=nets,
                       out=list(a), net_autograd=net_t, out_autograd=out_t,
                       error_terms=_error_terms(cfg.loss, a[-1], prob.T), E_total=E,
                       E_autograd=E_t, gradients=grads, updates=updates, update_rule=rule,
                       grads_all=dict(bp.grads), grads_autograd=g_t, notes=notes)


def _update_rule(cfg: RunConfig, order: str) -> str:
    g = "∂E/∂w" if cfg.weight_decay == 0 else f"(∂E/∂w + {cfg.weight_decay:g}·w)"
    if cfg.momentum and cfg.nesterov:
        rule = (f"w⁺ = w − lr·(1 + μ)·{g}  (lr {cfg.lr:g}, μ {cfg.momentum:g}; torch's "
                f"Nesterov SGD on its first step: the momentum buffer starts at the gradient)")
    elif cfg.momentum:
        rule = (f"w⁺ = w − lr·{g}  (lr {cfg.lr:g}; with momentum {cfg.momentum:g} the first "
                f"step is plain: torch's momentum buffer starts at the gradient)")
    else:
        rule = f"w⁺ = w − lr·{g}  (lr {cfg.lr:g})"
    if order == "sequential":
        rule += "; sequential: each layer is updated before the next layer down is reached"
    return rule


def _gradient_term(key, ix, bp: Backprop, a, cfg, names, syms, order, g_t) -> GradientTerm:
    l = int(key.split(".")[1]) + 1                 # parameter feeds layer l (1 … L)
    L = len(a) - 1
    j = ix[0]                                      # the neuron it feeds
    name = param_name(key, ix, cfg.sizes)

    def sym(kind, layer, unit):
        sub = syms[layer][unit]
        return f"{kind}_{sub}" if not sub.startswith("[") else f"{kind}{sub}"

    upstream: list[Upstream] = []
    if l < L:                                      # hidden: ∂E/∂out_h through layer l + 1
        for k in range(cfg.sizes[l + 1]):
            wname = param_name(f"layers.{l}.weight", (k, j), cfg.sizes)
            if order == "sequential":
                wname += "⁺"
            w = np.full(a[0].shape[0], bp.W_back[l + 1][k, j])
            if l + 1 == L:
                parts = (Factor(f"∂E/∂{sym('out', l + 1, k)}", bp.dA[l + 1][:, k]),
                         Factor(f"∂{sym('out', l + 1, k)}/∂{sym('net', l + 1, k)}",
                                bp.fprime[l + 1][:, k]),
                         Factor(wname, w))
            else:
                parts = (Factor(f"∂E/∂{sym('net', l + 1, k)}", bp.delta[l + 1][:, k]),
                         Factor(wname, w))
            upstream.append(Upstream(parts, bp.delta[l + 1][:, k] * w))
    short = name if _is_222(cfg.sizes) else ("w" if key.endswith("weight") else "b")
    if key.endswith("weight"):
        i = ix[1]
        src = Factor(f"∂{sym('net', l, j)}/∂{short} = {sym('out', l - 1, i)}", a[l - 1][:, i])
        edge = f"{names[l - 1][i]} → {names[l][j]}"
    else:
        src = Factor(f"∂{sym('net', l, j)}/∂{short}", np.ones(a[0].shape[0], a[0].dtype))
        edge = f"bias → {names[l][j]}"
    factors = (Factor(f"∂E/∂{sym('out', l, j)}", bp.dA[l][:, j]),
               Factor(f"∂{sym('out', l, j)}/∂{sym('net', l, j)}", bp.fprime[l][:, j]),
               src)
    products = bp.delta[l][:, j] * src.values     # (∂E/∂out · ∂out/∂net) · ∂net/∂w  (N,)
    return GradientTerm(key=key, index=tuple(ix), name=name, edge=edge, layer=l,
                        upstream=tuple(upstream), factors=factors, products=products,
                        value=float(np.sum(products)), autograd=float(g_t[key][ix]))


# ------------------------------------------------------------------------------ update order


@dataclass(frozen=True)
class Published:
    figure: str
    text: str                      # as printed in the worked example
    step: int                      # updates made before the quantity is measured
    quantity: str                  # E | out | grad | param
    where: tuple = ()              # out: (n, k); grad/param: (key, index)

    @property
    def digits(self) -> int:
        return len(self.text.split(".")[1])

    @property
    def value(self) -> float:
        return float(self.text)

    def matches(self, x: float) -> bool:
        """Every published figure is rounded, not truncated (checked: truncating out_o1,
        E_total, ∂E/∂w5, ∂E/∂w1 or w5⁺ would fail), so |x − pub| ≤ ½·10^−digits."""
        return bool(np.isfinite(x)) and abs(x - self.value) <= 0.5 * 10.0 ** -self.digits


#: The published figures of the 2-2-2 worked example (inputs 0.05, 0.10; targets 0.01, 0.99).
PUBLISHED = (
    Published("out_o1 (first forward pass)", "0.75136507", 0, "out", (0, 0)),
    Published("E_total (first forward pass)", "0.298371109", 0, "E"),
    Published("∂E/∂w5 (first backward pass)", "0.082167041", 0, "grad",
              ("layers.1.weight", (0, 0))),
    Published("∂E/∂w1 (first backward pass)", "0.000438568", 0, "grad",
              ("layers.0.weight", (0, 0))),
    Published("w5⁺ after 1 update", "0.35891648", 1, "param", ("layers.1.weight", (0, 0))),
    Published("w1⁺ after 1 update", "0.149780716", 1, "param", ("layers.0.weight", (0, 0))),
    Published("E_total after 1 update", "0.291027924", 1, "E"),
    Published("out_o1 after 10,000 updates", "0.015912196", 10_000, "out", (0, 0)),
    Published("out_o2 after 10,000 updates", "0.984065734", 10_000, "out", (0, 1)),
    Published("E_total after 10,000 updates", "0.0000351085", 10_000, "E"),
)


@dataclass
class Trajectory:
    """One training run on the explained batch: E and outputs after k = 0 … steps updates."""

    E: np.ndarray                  # (steps + 1,)
    out: np.ndarray | None         # (steps + 1, N, K), kept for small problems
    grads0: dict                   # the gradients the first update used
    params1: dict                  # the weights after 1 update
    final: dict                    # the weights after all updates


def _train(prob: Problem, steps: int, order: str) -> Trajectory:
    """Plain gradient descent on the explained batch; "simultaneous" is manual.MLP.backward +
    manual.SGD (what the runner does), "sequential" is ``backprop(order="sequential")``."""
    cfg = prob.config
    net = manual.MLP(cfg.sizes, activation=cfg.activation,
                     output_activation=cfg.resolved_output_activation, bias=cfg.bias,
                     loss=cfg.loss, dtype=cfg.dtype, params=prob.params)
    loss, _ = manual.LOSSES[cfg.loss]
    opt = manual.SGD(net.param_arrays, lr=cfg.lr)
    N, K = prob.T.shape
    keep = (steps + 1) * N * K <= 2_000_000
    E = np.empty(steps + 1)
    out = np.empty((steps + 1, N, K)) if keep else None
    T = prob.T.astype(prob.X.dtype, copy=False)
    grads0, params1 = {}, {}
    for s in range(steps + 1):
        a = net.forward_cache(prob.X)                                     # [a_0 … a_L]
        E[s] = float(loss(a[-1], T, np))
        if keep:
            out[s] = a[-1]
        if s == steps:
            break
        if order == "simultaneous":
            g = net.backward(a, prob.Y)
            opt.step(g)
        else:
            g = backprop(net.param_arrays, a, T, cfg, "sequential", cfg.lr).grads
        if s == 0:
            grads0 = {k: np.array(v) for k, v in g.items()}
            params1 = net.params
    return Trajectory(E, out, grads0, params1, net.params)


def _train_torch(prob: Problem, steps: int, record: set[int]) -> tuple[dict, dict, dict, dict]:
    """torch_impl + torch.optim.SGD on the explained batch: ({k: E}, {k: outputs}, grads of
    the first step, weights after 1 update, final weights) for the steps in ``record``."""
    import torch

    import torch_impl

    cfg = prob.config
    tor = torch_impl.MLP(cfg.sizes, activation=cfg.activation,
                         output_activation=cfg.resolved_output_activation, bias=cfg.bias,
                         loss=cfg.loss, dtype=cfg.dtype, params=prob.params)
    opt = tor.optimizer(lr=cfg.lr)
    X, Y = tor.as_input(prob.X), tor.as_target(prob.Y)
    E, out, grads0, params1 = {}, {}, {}, {}
    threads = torch.get_num_threads()
    torch.set_num_threads(1)   # a few hundred flops per step: extra threads only add overhead
    try:
        _torch_loop(tor, opt, X, Y, steps, record, E, out, grads0, params1)
    finally:
        torch.set_num_threads(threads)
    return E, out, grads0, params1, tor.params


def _torch_loop(tor, opt, X, Y, steps, record, E, out, grads0, params1) -> None:
    import torch

    for s in range(steps + 1):
        if s == steps:
            with torch.no_grad():
                o = tor.module(X)
                E[s], out[s] = float(tor.criterion(o, Y)), o.numpy().copy()
            break
        opt.zero_grad()
        o = tor.module(X)
        loss = tor.criterion(o, Y)
        loss.backward()
        if s in record:
            E[s], out[s] = float(loss.detach()), o.detach().numpy().copy()
        if s == 0:
            grads0.update({k: p.grad.numpy().copy() for k, p in tor.trainable.items()})
        opt.step()
        if s == 0:
            params1.update(tor.params)


def _max_diff(p: dict, q: dict, keys) -> float:
    return max(float(np.max(np.abs(p[k] - q[k]))) for k in keys)


def update_order_table(steps: int = 1, cfg: RunConfig | str | None = None, *,
                       witness: bool = True) -> pd.DataFrame:
    """Train the simultaneous and the sequential order (and autograd + torch.optim.SGD when
    ``witness``) for ``steps`` updates on the explained batch; one row per figure.

    Columns ``TABLE_COLUMNS``: the published value (NaN for rows that have none) with its
    decimals, the step it is measured at, each order's value, autograd's, which order
    matches to the published digits (simultaneous | sequential | both | neither), and a
    note (for "neither": the step at which an order does give the published value)."""
    if cfg is None or isinstance(cfg, str):
        cfg = load_config(cfg or "worked-2-2-2")
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ConfigError(f"--steps {steps!r}: the number of updates must be an integer >= 1")
    prob = prepare(cfg)
    cfg = prob.config
    if not _plain(cfg):
        raise ConfigError(f"the update-order comparison is for plain gradient descent; this "
                          f"config has momentum = {cfg.momentum}, weight_decay = "
                          f"{cfg.weight_decay}: add --set momentum=0 --set weight_decay=0")
    sim = _train(prob, steps, "simultaneous")
    seq = _train(prob, steps, "sequential")
    record = {0, 1, steps} | {p.step for p in PUBLISHED if p.step <= steps}
    if witness:
        tE, tout, tg0, tp1, tfinal = _train_torch(prob, steps, record)
    rows = []
    nan = float("nan")

    def value(traj: Trajectory, fig: Published) -> float:
        if fig.step > steps:
            return nan
        if fig.quantity == "E":
            return float(traj.E[fig.step])
        if fig.quantity == "out":
            return float(traj.out[fig.step][fig.where]) if traj.out is not None else nan
        key, ix = fig.where
        return float((traj.grads0 if fig.quantity == "grad" else traj.params1)[key][ix])

    def torch_value(fig: Published) -> float:
        if not witness or fig.step > steps:
            return nan
        if fig.quantity == "E":
            return tE[fig.step]
        if fig.quantity == "out":
            return float(tout[fig.step][fig.where])
        key, ix = fig.where
        return float((tg0 if fig.quantity == "grad" else tp1)[key][ix])

    if prob.worked:
        for fig in PUBLISHED:
            vs, vq = value(sim, fig), value(seq, fig)
            if fig.step > steps:
                match, note = "", f"run with --steps {fig.step} to compute"
            else:
                ms, mq = fig.matches(vs), fig.matches(vq)
                match = {(True, True): "both", (True, False): "simultaneous",
                         (False, True): "sequential"}.get((ms, mq), "neither")
                note = _search_note(fig, sim, seq) if match == "neither" else ""
                if fig.step == 0 and fig.quantity != "grad":
                    note = "before any update: the order cannot matter yet"
            rows.append([fig.figure, fig.value, fig.digits, fig.step, vs, vq,
                         torch_value(fig), match, note])
    else:
        for k in sorted({1, steps}):
            label = "update" if k == 1 else "updates"
            rows.append([f"E_total after {k:,} {label}", nan, 0, k, float(sim.E[k]),
                         float(seq.E[k]), tE[k] if witness else nan, "", ""])
    if witness:   # how far each order's weights are from torch.optim.SGD's
        keys = list(sim.grads0)
        checkpoints = [(1, sim.params1, seq.params1, tp1)]
        if steps > 1:
            checkpoints.append((steps, sim.final, seq.final, tfinal))
        for k, ps, pq, pt in checkpoints:
            label = "update" if k == 1 else "updates"
            rows.append([f"max |w − w_autograd| after {k:,} {label}", nan, 0, k,
                         _max_diff(ps, pt, keys), _max_diff(pq, pt, keys), nan, "",
                         "weights against torch.optim.SGD's"])
    table = pd.DataFrame(rows, columns=TABLE_COLUMNS)
    table.attrs["worked"] = prob.worked
    table.attrs["worked_diffs"] = prob.worked_diffs
    table.attrs["steps"] = steps
    table.attrs["config"] = cfg.name
    return table


def _search_note(fig: Published, sim: Trajectory, seq: Trajectory) -> str:
    """For a figure no order reproduces at its step: the nearest step where one does."""
    found = []
    for order, traj in (("simultaneous", sim), ("sequential", seq)):
        if fig.quantity == "E":
            series = traj.E
        elif fig.quantity == "out" and traj.out is not None:
            series = traj.out[(slice(None), *fig.where)]
        else:
            continue
        hits = np.flatnonzero(np.abs(series - fig.value) <= 0.5 * 10.0 ** -fig.digits)
        if hits.size:
            k = int(hits[np.argmin(np.abs(hits - fig.step))])
            found.append((abs(k - fig.step), order, k, float(series[k])))
    if not found:
        return "no step of either order gives it"
    _, order, k, v = min(found)
    return f"{order} after {k:,} updates gives {v:.{fig.digits + 2}f}"


def update_order_notes(table: pd.DataFrame) -> list[str]:
    """What the table shows, in sentences computed from it (never assumed)."""
    notes = []
    pub = table[table["published"].notna() & (table["matches"] != "")]
    if table.attrs.get("worked") is False and table.attrs.get("worked_diffs"):
        notes.append("The published figures belong to the 2-2-2 worked example with its "
                     "settings; this config differs in: "
                     f"{', '.join(table.attrs['worked_diffs'])} — none are compared.")
    if not pub.empty:
        def figs(kind):
            return [f for f, m in zip(pub["figure"], pub["matches"], strict=True) if m == kind]

        sim_only, seq_only, both, neither = (figs(k) for k in
                                             ("simultaneous", "sequential", "both", "neither"))
        if both:
            notes.append(f"Both orders give: {'; '.join(both)} (the orders differ only once a "
                         f"hidden delta has gone through an updated weight).")
        if sim_only:
            notes.append(f"Only the simultaneous order gives: {'; '.join(sim_only)}.")
        if seq_only:
            notes.append(f"Only the sequential order gives: {'; '.join(seq_only)}.")
        for f in neither:
            row = pub[pub["figure"] == f].iloc[0]
            notes.append(f"Neither order gives {f} at step {row['step']:,}; {row['note']}.")
        if sim_only and seq_only:
            notes.append(
                "So the published text mixes the two orders: "
                f"{'; '.join(sim_only)} follow the simultaneous order (the derivation), while "
                f"{'; '.join(seq_only)} come from a sequential implementation"
                + (f"; {'; '.join(neither)} matches neither order at its stated step."
                   if neither else "."))
        pending = table[(table["matches"] == "") & table["published"].notna()]
        if not pending.empty:
            notes.append(f"Not computed at --steps {table.attrs.get('steps')}: "
                         f"{'; '.join(pending['figure'])} (use --steps "
                         f"{int(pending['step'].max())}).")
    drift = table[table["figure"].str.startswith("max |w")]
    if not drift.empty:
        first, last = drift.iloc[0], drift.iloc[-1]

        def size(x):
            return "0 (bit-identical)" if x == 0 else f"{x:.2g} (rounding)"

        later = ("" if int(last["step"]) == 1 else
                 f"; after {int(last['step']):,} updates: {size(last['simultaneous'])} against "
                 f"{last['sequential']:.2g}")
        notes.append(
            "autograd + torch.optim.SGD compute every gradient at the weights the step starts "
            "from, then update: the simultaneous order. After 1 update its weights differ from "
            f"the simultaneous hand update by {size(first['simultaneous'])} and from the "
            f"sequential one by {first['sequential']:.2g}{later}. The sequential difference is "
            "O(lr·Δw), not rounding: its hidden deltas went through output weights already "
            "moved by lr·∂E/∂w, so a sequential hand implementation parts from autograd in "
            "the first step (below the output layer), and everywhere after.")
    return notes


# ------------------------------------------------------------------------------ rendering


def _f(x) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return ""
    x = float(x)
    return "0" if x == 0 else f"{x:.9g}"


def _d(x) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return ""
    return "0" if x == 0 else f"{x:.1e}"


def _pub(v, digits) -> str:
    return "" if v is None or math.isnan(v) else f"{v:.{int(digits)}f}"


def _prod_text(factors: Sequence[Factor], n: int) -> str:
    """a · b · c with negative factors in brackets: 0.74 · 0.19 · (-0.5)."""
    return " · ".join(_bracket(f.values[n]) for f in factors)


def _samples(N: int) -> list[int]:
    return list(range(min(N, DISPLAY_SAMPLES)))


def _forward_units(expl: Explanation) -> list[set[int]]:
    """Per layer, the units the forward section lists (all, or the selected params' paths)."""
    sizes = expl.config.sizes
    if _n_params(expl.config) <= MAX_PARAMS:
        return [set(range(n)) for n in sizes]
    keep = [set() for _ in sizes]
    for g in expl.gradients:
        keep[g.layer].add(g.index[0])
        if len(g.index) == 2:
            keep[g.layer - 1].add(g.index[1])
        for later in range(g.layer + 1, len(sizes)):
            keep[later] = set(range(sizes[later]))
    return keep


def explanation_rows(expl: Explanation, table: pd.DataFrame | None = None) -> pd.DataFrame:
    """The long form (``CSV_COLUMNS``): one row per number the explanation shows."""
    rows = []
    N = expl.n_samples
    nan = float("nan")

    def pre(n):
        return f"n={n}: " if N > 1 else ""

    units = _forward_units(expl)
    for n in range(N):
        for l, names in enumerate(expl.neurons):
            for j in sorted(units[l]):
                if l == 0:
                    rows.append(["forward", names[j], f"{pre(n)}out", float(expl.out[0][n, j]),
                                 nan, nan])
                    continue
                for term, mine, theirs in (("net", expl.net[l], expl.net_autograd[l]),
                                           ("out", expl.out[l], expl.out_autograd[l])):
                    v, t = float(mine[n, j]), float(theirs[n, j])
                    rows.append(["forward", names[j], f"{pre(n)}{term}", v, t, v - t])
    outs = expl.neurons[-1]
    for n in range(N):
        for k, name in enumerate(outs):
            rows.append(["error", name, f"{pre(n)}target", float(expl.problem.T[n, k]), nan, nan])
            rows.append(["error", name, f"{pre(n)}E term", float(expl.error_terms[n, k]),
                         nan, nan])
    rows.append(["error", "total", "E_total", expl.E_total, expl.E_autograd,
                 expl.E_total - expl.E_autograd])
    for g in expl.gradients:
        for n in range(N):
            for u in g.upstream:
                rows.append(["gradient", g.name, pre(n) + " · ".join(f.symbol for f in u.factors),
                             float(u.values[n]), nan, nan])
            for f in g.factors:
                rows.append(["gradient", g.name, pre(n) + f.symbol.split(" = ")[0],
                             float(f.values[n]), nan, nan])
            if N > 1:
                rows.append(["gradient", g.name, f"{pre(n)}product", float(g.products[n]),
                             nan, nan])
        w = g.factors[2].symbol.split("/∂")[1].split(" = ")[0]
        rows.append(["gradient", g.name, f"∂E/∂{w}", g.value, g.autograd, g.diff])
    for u in expl.updates:
        rows.append(["update", u.name, "w", u.w, nan, nan])
        rows.append(["update", u.name, "∂E/∂w", u.grad, nan, nan])
        rows.append(["update", u.name, "lr", expl.config.lr, nan, nan])
        rows.append(["update", u.name, "w⁺", u.w_new, u.autograd, u.diff])
    if table is not None:
        for r in table.itertuples(index=False):
            t = r.autograd_sgd
            if not math.isnan(r.published):
                rows.append(["update_order", r.figure, "published", r.published, t,
                             r.published - t])
            for order in ORDERS:
                v = getattr(r, order)
                rows.append(["update_order", r.figure, order, v, t, v - t])
    return pd.DataFrame(rows, columns=CSV_COLUMNS)


def _text_table(headers: list[str], rows: list[list[str]], markdown: bool) -> str:
    if markdown:
        esc = [[c.replace("|", "\\|") for c in r] for r in [headers, *rows]]
        lines = ["| " + " | ".join(esc[0]) + " |", "|" + "|".join("---" for _ in headers) + "|"]
        lines += ["| " + " | ".join(r) + " |" for r in esc[1:]]
        return "\n".join(lines)
    widths = [max(len(r[i]) for r in [headers, *rows]) for i in range(len(headers))]
    return "\n".join("  " + "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
                     for r in [headers, *rows])


def _header(expl: Explanation) -> list[str]:
    c = expl.config
    act = (c.activation if c.resolved_output_activation == c.activation
           else f"{c.activation} → {c.resolved_output_activation}")
    bias = {True: "trainable biases", False: "no biases", "frozen": "frozen biases"}[c.bias]
    order_text = {
        "simultaneous": "simultaneous (every δ at the weights the step starts from: the "
                        "derivation, and autograd + torch.optim.SGD)",
        "sequential": "sequential (output weights updated first; hidden deltas go through "
                      "the NEW output weights)",
    }[expl.order]
    return [
        f"{c.name}: sizes {'-'.join(map(str, c.sizes))}, {act}, {bias}, {c.loss}, lr {c.lr:g}, "
        f"{c.dtype}; {expl.problem.batch}",
        f"update order: {order_text}",
        "hand side: manual/'s forward cache and backward arithmetic; autograd: torch_impl "
        "(loss.backward(), torch.optim.SGD); diff = hand − autograd",
    ]


def render(expl: Explanation, fmt: str = "text", table: pd.DataFrame | None = None) -> str:
    """The explanation (and the update-order table) as text, markdown or csv."""
    if fmt not in FORMATS:
        raise ConfigError(f"--format {fmt!r}: choose one of {list(FORMATS)}")
    if fmt == "csv":
        buf = io.StringIO()
        explanation_rows(expl, table).to_csv(buf, index=False)   # repr: exact round trip
        return buf.getvalue()
    md = fmt == "markdown"
    out: list[str] = []
    N = expl.n_samples
    shown = _samples(N)
    more = (f" (samples {shown[0]}–{shown[-1]} shown of {N}; sums run over all {N}, "
            f"--format csv lists every sample)" if N > len(shown) else "")

    def h(title):
        out.append(f"\n## {title}\n" if md else f"\n{title}\n{'-' * len(title)}")

    if md:
        out.append(f"# handgrad explain: {expl.config.name}\n")
        out.extend(f"- {line}" for line in _header(expl))
    else:
        out.extend(_header(expl))
    out.extend(("- " if md else "note: ") + n for n in expl.notes)

    # forward
    h(f"Forward pass{more}")
    if md:
        out.append("")
    units = _forward_units(expl)
    rows = []
    for n in shown:
        for l, names in enumerate(expl.neurons):
            for j in sorted(units[l]):
                row = [str(n)] if N > 1 else []
                if l == 0:
                    row += [names[j], "", _f(expl.out[0][n, j]), "", ""]
                else:
                    d = max(abs(expl.net[l][n, j] - expl.net_autograd[l][n, j]),
                            abs(expl.out[l][n, j] - expl.out_autograd[l][n, j]))
                    row += [names[j], _f(expl.net[l][n, j]), _f(expl.out[l][n, j]),
                            _f(expl.out_autograd[l][n, j]), _d(d)]
                rows.append(row)
    head = (["n"] if N > 1 else []) + ["neuron", "net", "out", "autograd out", "max diff"]
    out.append(_text_table(head, rows, md))
    c = expl.config
    out.append(("\n" if md else "  ") + "net = Σ w·out(previous layer)"
               + (" + b" if c.bias is not False else "") + f"; out = {c.activation}(net)"
               + (f", {c.resolved_output_activation} in the output layer"
                  if c.resolved_output_activation != c.activation else ""))

    # error
    h("Error")
    outs = expl.neurons[-1]
    rows = []
    for n in shown:
        for k, name in enumerate(outs):
            rows.append(([str(n)] if N > 1 else []) + [name, _f(expl.problem.T[n, k]),
                        _f(expl.out[-1][n, k]), _f(expl.error_terms[n, k])])
    head = (["n"] if N > 1 else []) + ["output", "target", "out", "E term"]
    out.append(_text_table(head, rows, md))
    line = (f"E_total = {_f(expl.E_total)}   autograd {_f(expl.E_autograd)}   "
            f"diff {_d(expl.E_total - expl.E_autograd)}")
    out.append(("\n" if md else "  ") + (f"**{line}**" if md else line))
    if c.loss == "half_sse":
        rule = "E term = ½ (target − out)²"
    else:
        rule = f"E terms: each output's share of the {c.loss} sum (they add up to E_total)"
    out.append(("\n" if md else "  ") + rule)

    # gradients
    h("Gradients by the chain rule" + (f", summed over the batch of {N} samples" if N > 1
                                       else ""))
    same = c.activation == c.resolved_output_activation
    out.append(("" if md else "  ") + f"{LOSS_RULES[c.loss]};  "
               f"{ACTIVATION_RULES[c.resolved_output_activation]}"
               + (" (every layer)" if same else
                  f" (output layer), {ACTIVATION_RULES[c.activation]} (hidden)"))
    if expl.order == "sequential":
        out.append(("\n" if md else "  ") + "sequential order: a weight marked ⁺ is already "
                   "updated (w⁺ = w − lr·∂E/∂w) when the hidden deltas go through it, so the "
                   "hidden gradients differ from autograd's by O(lr·∂E/∂w), not by rounding")
    for g in expl.gradients:
        out.extend(_gradient_lines(g, expl, md, shown))

    # update
    h("Update")
    out.append(("" if md else "  ") + expl.update_rule + ("\n" if md else ""))
    rows = []
    for u in expl.updates:
        lhs = f"{_f(u.w)} − {c.lr:g} · {_bracket(u.effective)}"
        rows.append([u.name, _f(u.w), _f(u.grad), lhs, _f(u.w_new), _f(u.autograd), _d(u.diff)])
    out.append(_text_table(["param", "w", "∂E/∂w", "w − lr·(…)", "w⁺", "autograd+SGD w⁺",
                            "diff"], rows, md))

    if table is not None:
        out.extend(_table_lines(table, md))
    return "\n".join(out).lstrip("\n") + "\n"


def _gradient_lines(g: GradientTerm, expl: Explanation, md: bool, shown: list[int]):
    """One parameter's chain rule: the ∂E/∂out expansion (hidden layers), then the product."""
    N = expl.n_samples
    f0, f1, f2 = g.factors
    out_sym = f0.symbol[len("∂E/∂"):]
    title = (g.name + (f" = {g.key}[{','.join(map(str, g.index))}]"
                       if not g.name.startswith("layers") else "") + f"   ({g.edge})")
    w = f2.symbol.split("/∂")[1].split(" = ")[0]              # w1, or w / b
    src = f2.symbol.split(" = ")[1] if " = " in f2.symbol else "1"
    lhs = f"∂E/∂{w}"
    product = f"{f0.symbol} · {f1.symbol} · {f2.symbol.split(' = ')[0]}"
    upstream = " + ".join(" · ".join(f.symbol for f in u.factors) for u in g.upstream)

    def numbers(n):
        return " + ".join(_prod_text(u.factors, n) for u in g.upstream)

    if md:
        rows: list[list[str]] = []
        pre = [f"n={n}: " if N > 1 else "" for n in range(N)]
        for n in shown if g.upstream else ():
            rows.append([f"{pre[n]}∂E/∂{out_sym} = {upstream}", numbers(n),
                         _f(f0.values[n]), "", ""])
        for n in shown:
            rows.append([f"{pre[n]}{lhs} = {product}", _prod_text(g.factors, n),
                         _f(g.products[n]), "", ""])
        rows.append([f"**{lhs}**" + (" = Σ_n" if N > 1 else ""), "", f"**{_f(g.value)}**",
                     _f(g.autograd), _d(g.diff)])
        return [f"\n### {title}\n", f"∂net/∂{w} = {src}\n",
                _text_table(["term", "product", "value", "autograd", "diff"], rows, md)]

    lines = [f"\n  {title}"]
    if g.upstream:
        head = f"    ∂E/∂{out_sym} = "
        pad = " " * (len(head) - 2)
        lines.append(head + upstream)
        for n in shown:
            parts = [numbers(n)]
            if len(g.upstream) > 1:
                parts.append(" + ".join(_bracket(u.values[n]) for u in g.upstream))
            parts.append(_f(f0.values[n]))
            if N > 1:
                lines.append(f"      n={n}: " + " = ".join(parts))
            else:
                lines.extend(f"{pad}= {p}" for p in parts)
    head = f"    {lhs} = " + ("Σ_n " if N > 1 else "")
    pad = " " * len(f"    {lhs} ")
    lines.append(f"{head}{product}   (∂net/∂{w} = {src})")
    for n in shown:
        if N > 1:
            lines.append(f"      n={n}: {_prod_text(g.factors, n)} = {_f(g.products[n])}")
        else:
            lines.append(f"{pad}= {_prod_text(g.factors, n)}")
            lines.append(f"{pad}= {_f(g.products[n])}")
    if N > 1:
        if N > len(shown):
            lines.append(f"      … {N - len(shown)} more samples (--format csv lists them)")
        lines.append(f"      Σ_n = {_f(g.value)}")
    lines.append(f"    autograd {_f(g.autograd)}   diff {_d(g.diff)}")
    return lines


def _bracket(x) -> str:
    """A number for a sum or product: negative ones in brackets, (-0.19)."""
    x = float(x)
    return f"({_f(x)})" if x < 0 else _f(x)


def _table_lines(table: pd.DataFrame, md: bool) -> list[str]:
    steps = table.attrs.get("steps", 1)
    title = f"Update order: simultaneous vs sequential, {steps:,} update(s)"
    lines = [f"\n## {title}\n" if md else f"\n{title}\n{'-' * len(title)}"]
    lines.append(("" if md else "  ") + "both orders trained on the explained batch with "
                 "plain gradient descent; autograd+SGD = torch_impl + torch.optim.SGD; "
                 "a match is agreement to the published digits (|x − pub| ≤ ½·10^−d)"
                 + ("\n" if md else ""))
    rows = []
    for r in table.itertuples(index=False):
        drift = r.figure.startswith("max |w")
        fmt = _d if drift else _f
        rows.append([r.figure, _pub(r.published, r.digits), fmt(r.simultaneous),
                     fmt(r.sequential), _f(r.autograd_sgd), r.matches])
    lines.append(_text_table(["figure", "published", "simultaneous", "sequential",
                              "autograd+SGD", "matches"], rows, md))
    notes = update_order_notes(table)
    if notes:
        lines.append("")
        lines.extend(("- " if md else "  * ") + n for n in notes)
    return lines


# ------------------------------------------------------------------------------ figure


def draw_network(expl: Explanation, path: str | Path) -> Path:
    """The network as a diagram (PNG, dpi 100): neurons with net/out (sample 0), edges with
    the weight, the hand-derived ∂E/∂w and autograd's; biases as small boxes.

    Edge labels sit on their edge; each is placed, in turn, at the point along the edge
    (12 % … 88 % of its length) nearest its preferred spot where it overlaps no neuron,
    bias box or label placed before it (measured with the Agg renderer)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.patches import Circle

    path = Path(path)
    if not path.parent.is_dir():
        raise ConfigError(f"--figure {path}: folder {path.parent} does not exist; create it "
                          f"or choose another path")
    cfg = expl.config
    if _n_params(cfg) > MAX_PARAMS:
        raise ConfigError(f"--figure draws the whole network: {_n_params(cfg)} parameters is "
                          f"too many to label (limit {MAX_PARAMS})")
    sizes = cfg.sizes
    L = len(sizes) - 1
    is222 = _is_222(sizes)
    vs, r = 3.2, 0.95                     # unit spacing, neuron radius (data units)
    # column gaps grow with the number of edges they hold, so the labels have room
    gaps = [6.0 + max(0, sizes[l] * sizes[l + 1] - 4) * 0.55 for l in range(L)]
    xs = np.concatenate([[0.0], np.cumsum(gaps)])
    top = max(sizes)
    pos = [[(xs[l], (n - 1) / 2 * vs - j * vs) for j in range(n)] for l, n in enumerate(sizes)]
    x0, x1 = -1.6, xs[-1] + 3.2
    y0, y1 = -(top - 1) / 2 * vs - 1.9, (top - 1) / 2 * vs + 2.3
    scale = 0.62                          # inches per data unit
    title_in = 0.55
    fig = Figure(figsize=((x1 - x0) * scale, (y1 - y0) * scale + title_in), dpi=100)
    ax = fig.add_axes((0, 0, 1, (y1 - y0) * scale / ((y1 - y0) * scale + title_in)))
    ax.set_xlim(x0, x1)
    ax.set_ylim(y0, y1)
    ax.set_aspect("equal")
    ax.axis("off")
    N = expl.n_samples
    sample = f"sample 0 of {N}" if N > 1 else "the one sample"
    fig.suptitle(f"{cfg.name}: neurons show net and out for {sample}; edges show the weight, "
                 f"∂E/∂w by hand ({expl.order} order) and autograd's"
                 + (f", summed over the batch of {N}" if N > 1 else ""), fontsize=10, y=0.985)
    colors = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2",
              "#17becf", "#7f7f7f", "#bcbd22"]
    obstacles = []                        # display-space boxes labels must avoid
    renderer = FigureCanvasAgg(fig).get_renderer()   # to measure labels while placing them

    def box_of(artist):
        return artist.get_window_extent(renderer).expanded(1.06, 1.12)

    # neurons
    for l, column in enumerate(pos):
        for j, (x, y) in enumerate(column):
            ax.add_patch(Circle((x, y), r, facecolor="#f3f6fb", edgecolor="black", lw=1.2,
                                zorder=3))
            name = expl.neurons[l][j] if is222 else f"[{l},{j}]"
            if l == 0:
                text = f"{name}\n{_short(expl.out[0][0, j])}"
            else:
                text = (f"{name}\nnet {_short(expl.net[l][0, j])}\n"
                        f"out {_short(expl.out[l][0, j])}")
            ax.text(x, y, text, ha="center", va="center", fontsize=8.5, zorder=4,
                    linespacing=1.3)
            obstacles.append(_bbox(ax.transData.transform([(x - r, y - r), (x + r, y + r)])))
    for j, (x, y) in enumerate(pos[L]):
        t = ax.text(x + r + 0.25, y, f"target {_short(expl.problem.T[0, j])}\n"
                    f"E term {_short(expl.error_terms[:, j].sum())}", ha="left", va="center",
                    fontsize=7.5, zorder=4)
        obstacles.append(box_of(t))
    layer_title = ["input"] + ["hidden"] * (L - 1) + ["output"]
    for l in range(L + 1):
        ax.text(xs[l], y0 + 0.25, f"{layer_title[l]} (layer {l})", ha="center", va="bottom",
                fontsize=9, color="#444444")
    t = ax.text(x1 - 0.2, y1 - 0.2, f"E_total {_short(expl.E_total)}\n"
                f"autograd {_short(expl.E_autograd)}", ha="right", va="top", fontsize=8.5)
    obstacles.append(box_of(t))
    if not is222:
        t = ax.text(x0 + 0.2, y1 - 0.2, "[l,j] = layer l, unit j\nWl[j,i] = "
                    "layers.l.weight[j,i]: unit i of layer l → unit j of layer l+1",
                    ha="left", va="top", fontsize=8,
                    color="#444444")
        obstacles.append(box_of(t))

    # biases: a small box above each neuron
    if cfg.bias is not False:
        for l in range(1, L + 1):
            key = f"layers.{l - 1}.bias"
            b = expl.problem.params[key]
            bname = f"b{l}" if is222 else "b"    # the worked example's b1 (hidden), b2
            for j, (x, y) in enumerate(pos[l]):
                if cfg.bias is True:
                    label = (f"{bname} = {_short(b[j])}\n∂E/∂b {_short(expl.grads_all[key][j])}"
                             f"\nautograd {_short(expl.grads_autograd[key][j])}")
                else:
                    label = f"{bname} = {_short(b[j])} (frozen)"
                bx, by = x + 0.45, y + r + 0.12     # above, a little right: clear of the
                ax.plot([bx, x + 0.3 * r], [by, y + 0.95 * r], color="#777777",  # inputs
                        lw=0.8, zorder=1)
                t = ax.text(bx, by, label, ha="center", va="bottom", fontsize=7, zorder=5,
                            bbox=dict(boxstyle="square,pad=0.25", fc="#fff8e6", ec="#aa8800",
                                      lw=0.8))
                obstacles.append(box_of(t))

    # edges, then their labels placed greedily where they overlap nothing drawn so far
    edges = []
    for l in range(1, L + 1):
        key = f"layers.{l - 1}.weight"
        W = expl.problem.params[key]
        for j in range(sizes[l]):
            for i in range(sizes[l - 1]):
                (xa, ya), (xb, yb) = pos[l - 1][i], pos[l][j]
                d = math.hypot(xb - xa, yb - ya)
                ua = (xa + (xb - xa) * r / d, ya + (yb - ya) * r / d)
                ub = (xb - (xb - xa) * r / d, yb - (yb - ya) * r / d)
                color = colors[(i * sizes[l] + j) % len(colors)]
                ax.annotate("", xy=ub, xytext=ua, zorder=2,
                            arrowprops=dict(arrowstyle="-|>", color=color, lw=1.1,
                                            shrinkA=0, shrinkB=0, mutation_scale=9))
                name = param_name(key, (j, i), sizes) if is222 else f"W{l - 1}[{j},{i}]"
                label = (f"{name} = {_short(W[j, i])}\n"
                         f"∂E/∂w {_short(expl.grads_all[key][j, i])}\n"
                         f"autograd {_short(expl.grads_autograd[key][j, i])}")
                edges.append((ua, ub, color, label))
    n_edges = len(edges)
    ts = np.linspace(0.12, 0.88, 39)
    for e, (ua, ub, color, label) in enumerate(edges):
        prefer = 0.5 if n_edges == 1 else 0.3 + 0.4 * ((e * 7) % n_edges) / (n_edges - 1)
        best = None
        for t in sorted(ts, key=lambda t, p=prefer: abs(t - p)):
            x, y = ua[0] + t * (ub[0] - ua[0]), ua[1] + t * (ub[1] - ua[1])
            txt = ax.text(x, y, label, ha="center", va="center", fontsize=7, color=color,
                          zorder=6, bbox=dict(boxstyle="round,pad=0.2", fc="white", ec=color,
                                              lw=0.6, alpha=0.92))
            bb = box_of(txt)
            overlap = sum(_overlap(bb, o) for o in obstacles)
            if best is None or overlap < best[0]:
                if best is not None:
                    best[1].remove()
                best = (overlap, txt, bb)
                if overlap == 0:
                    break
            else:
                txt.remove()
        obstacles.append(best[2])
    fig.savefig(path, dpi=100, format="png")
    return path


def _short(x) -> str:
    x = float(x)
    return "0" if x == 0 else f"{x:.6g}"


def _bbox(corners):
    from matplotlib.transforms import Bbox
    return Bbox(corners)


def _overlap(a, b) -> float:
    w = min(a.x1, b.x1) - max(a.x0, b.x0)
    h = min(a.y1, b.y1) - max(a.y0, b.y0)
    return w * h if w > 0 and h > 0 else 0.0


# ------------------------------------------------------------------------------ CLI


def register(subparsers, formatter_class) -> None:
    """Add ``handgrad explain`` to the CLI (experiments.cli.FEATURE_MODULES)."""
    p = subparsers.add_parser(
        "explain", formatter_class=formatter_class,
        help="the chain rule for each weight, number by number, next to autograd",
        description="One backpropagation step of a small network, by hand and with numbers:\n"
                    "the forward pass (net and out of every neuron), the error, each weight's\n"
                    "chain-rule product (from manual/'s forward cache) next to autograd's\n"
                    "gradient, the update w⁺ = w − lr·∂E/∂w next to torch.optim.SGD's, and\n"
                    "which update order (simultaneous or sequential) reproduces which\n"
                    "published figure of the 2-2-2 worked example.\n\n"
                    "  handgrad explain                          # the 2-2-2 worked example\n"
                    "  handgrad explain --param w1 --steps 10000\n"
                    "  handgrad explain seed --format markdown --figure seed.png")
    p.add_argument("experiment", nargs="?", default="worked-2-2-2", metavar="NAME|CONFIG.toml",
                   help="a named experiment (see `handgrad list`) or a TOML config")
    p.add_argument("--set", dest="overrides", action="append", default=[],
                   metavar="KEY=VALUE", help="override a config key (repeatable)")
    p.add_argument("--param", dest="params", action="append", default=None,
                   metavar="KEY[i,j]", help="explain only this parameter (repeatable): "
                   "layers.1.weight[0,0], a whole tensor layers.1.weight, or w1 … w8 on a "
                   "2-2-2 network (default: every trainable parameter)")
    p.add_argument("--update-order", choices=ORDERS, default="simultaneous",
                   help="the order the explained gradients and update use")
    p.add_argument("--format", choices=FORMATS, default="text", help="output format")
    p.add_argument("--out", type=Path, default=None, metavar="PATH",
                   help="write the output to this file instead of stdout")
    p.add_argument("--figure", type=Path, default=None, metavar="PATH",
                   help="also draw the network with its numbers (PNG)")
    p.add_argument("--steps", type=int, default=1,
                   help="updates for the update-order comparison (the published 10,000-step "
                        "figures need --steps 10000)")
    p.set_defaults(func=cmd_explain)


def cmd_explain(args) -> int:
    cfg = load_config(args.experiment, args.overrides)
    if args.steps < 1:
        raise ConfigError(f"--steps {args.steps}: the number of updates must be >= 1")
    if args.out is not None and not args.out.parent.is_dir():
        raise ConfigError(f"--out {args.out}: folder {args.out.parent} does not exist")
    if args.figure is not None and not args.figure.parent.is_dir():
        raise ConfigError(f"--figure {args.figure}: folder {args.figure.parent} does not "
                          f"exist")
    expl = explain(cfg, args.params, args.update_order)
    if _plain(expl.config):
        table = update_order_table(args.steps, cfg)
    else:
        table = None
        expl.notes.append(f"update-order comparison skipped: it is defined for plain "
                          f"gradient descent (this config has momentum = "
                          f"{expl.config.momentum}, weight_decay = {expl.config.weight_decay})")
    text = render(expl, args.format, table)
    if args.figure is not None:
        draw_network(expl, args.figure)
    if args.out is not None:
        args.out.write_text(text, encoding="utf-8")
        print(f"wrote {args.out}")
    else:
        print(text, end="")
    if args.figure is not None:
        print(f"wrote {args.figure}")
    return 0
