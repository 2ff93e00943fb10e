"""The explanation as data: every number ``handgrad explain`` shows, computed once.

``prepare`` builds the problem (resolved config, initial weights, the explained batch).
``explain`` runs manual.MLP's forward pass and one traced ``backward`` — whose
``LayerTrace`` hands over ∂E/∂out, f' = ∂out/∂net, δ = ∂E/∂net and the W each error went
back through — and writes each selected weight's chain rule as ``Factor``s per sample
(``GradientTerm``), next to torch_impl's autograd numbers and torch.optim.SGD's update.
The renderers (render.py, diagram.py) only format an ``Explanation``.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np

import manual
from experiments.core.config import ConfigError, RunConfig, load_config, replace
from experiments.teaching.boundary.learner import CONVENTIONS

ORDERS = ("simultaneous", "sequential")
MAX_PARAMS = 200        # beyond this the full explanation is a wall of numbers: ask for --param


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


class Factor(NamedTuple):
    symbol: str              # e.g. "∂E/∂out_o1"
    values: np.ndarray       # (N,) one per sample


class Upstream(NamedTuple):  # one term of ∂E/∂out_h = Σ_k (…)
    factors: tuple[Factor, ...]
    values: np.ndarray       # (N,) their product per sample


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
    wrt: str                 # the parameter in the formulas: "w1", or "w" / "b"
    source: str              # what ∂net/∂w equals: "out_i1" (the input it weighs), or "1"

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
    """Everything ``handgrad explain`` prints, as data; a renderer only formats it."""

    problem: Problem
    order: str
    neurons: list[list[str]]          # names per layer (layer 0 = inputs)
    net: list[np.ndarray | None]      # per layer (N, n_l); None for the inputs
    out: list[np.ndarray]             # per layer (N, n_l); out[0] = X
    net_autograd: list[np.ndarray | None]
    out_autograd: list[np.ndarray]
    error_terms: np.ndarray           # (N, K) each output's share of E (manual.losses)
    E_total: float                    # manual.MLP.loss
    E_autograd: float
    gradients: list[GradientTerm]
    updates: list[UpdateTerm]
    update_rule: str
    grads_all: dict                   # every trainable gradient in the explained order
    grads_autograd: dict
    notes: list[str] = field(default_factory=list)
    params_after: dict = field(default_factory=dict)   # every parameter after the step
    convention: str = "torch"         # the names shown: torch keys, or W1b1 (W_l (in, out))

    @property
    def config(self) -> RunConfig:
        return self.problem.config

    @property
    def n_samples(self) -> int:
        return self.problem.X.shape[0]

    def forward_units(self) -> list[set[int]]:
        """Per layer, the units a forward table lists: all of them, or on a network over
        ``MAX_PARAMS`` parameters only those on the selected parameters' paths."""
        sizes = self.config.sizes
        if n_params(self.config) <= MAX_PARAMS:
            return [set(range(n)) for n in sizes]
        keep = [set() for _ in sizes]
        for g in self.gradients:
            keep[g.layer].add(g.index[0])
            if len(g.index) == 2:
                keep[g.layer - 1].add(g.index[1])
            for later in range(g.layer + 1, len(sizes)):
                keep[later] = set(range(sizes[later]))
        return keep


# ------------------------------------------------------------------------------ problem


def is_222(sizes) -> bool:
    return tuple(sizes) == (2, 2, 2)


def plain(cfg: RunConfig) -> bool:
    """Plain gradient descent: the only setting where the update order is defined."""
    return cfg.momentum == 0 and cfg.weight_decay == 0


def n_params(cfg: RunConfig) -> int:
    return sum(int(np.prod(s)) for s in manual.parameter_shapes(cfg.sizes, cfg.bias).values())


def prepare(cfg: RunConfig) -> Problem:
    """Resolve ``cfg`` and build the run's initial parameters and first batch, as the runner
    does (same SeedSequence spawn for the init and the batch order)."""
    from experiments.core.engine import batches
    from experiments.core.init import worked_example_params
    from experiments.core.runner import initial_state

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
    diffs = []
    if is_222(cfg.sizes):   # compared in float64, before the cast to the run's dtype
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
    params = {k: v.astype(dtype) for k, v in params.items()}
    return Problem(cfg, params, X, Y, T, batch, is_222(cfg.sizes) and not diffs, tuple(diffs))


def neuron_names(sizes, convention: str = "torch") -> list[list[str]]:
    """i1 h1 o1 for the 2-2-2, else "layer l, unit j"; in the W1b1 convention the course
    notebooks' a_l, as the chain rule's symbols name a unit: ``a0[2]`` (an input, a column
    of X), ``a1[0]``."""
    if is_222(sizes):
        return [["i1", "i2"], ["h1", "h2"], ["o1", "o2"]]
    if convention == "W1b1":
        return [[f"a{l}[{j}]" for j in range(n)] for l, n in enumerate(sizes)]
    return [[f"layer {l}, unit {j}" for j in range(n)] for l, n in enumerate(sizes)]


def symbol(kind: str, l: int, j: int, sizes, convention: str = "torch") -> str:
    """A unit's net or out in the formulas: out_h1 on the 2-2-2, else out[l,j] (in the
    W1b1 convention the course notebooks' z_l and a_l: ``a1[j]``, ``z2[j]``)."""
    if is_222(sizes):
        return f"{kind}_{neuron_names(sizes)[l][j]}"
    if convention == "W1b1":
        return f"{'a' if kind == 'out' else 'z'}{l}[{j}]"
    return f"{kind}[{l},{j}]"


def param_name(key: str, index: tuple[int, ...], sizes, convention: str = "torch") -> str:
    """w1 … w8 and b_h1 … for the 2-2-2 (w1, w2 feed h1 from i1, i2; w5, w6 feed o1), else
    the key with its index: ``layers.1.weight[0,3]``, or in the W1b1 convention (W_l of
    shape (in, out), experiments.teaching.check.side) ``W2[3,0]``."""
    layer = int(key.split(".")[1])
    if is_222(sizes):
        if key.endswith("weight"):
            j, i = index
            return f"w{1 + 4 * layer + 2 * j + i}"
        return f"b_{'ho'[layer]}{index[0] + 1}"
    if convention == "W1b1":
        weight = key.endswith("weight")
        shown = index[::-1] if weight else index
        return f"{'W' if weight else 'b'}{layer + 1}[{','.join(str(i) for i in shown)}]"
    return f"{key}[{','.join(str(i) for i in index)}]"


_LEARNER_RE = re.compile(r"^\s*([Wb])(\d+)\s*(?:\[([^\]]*)\])?\s*$")


def param_convention(param) -> str:
    """``W1b1`` when any ``--param`` is written in the course notebooks' names (``W1[0,1]``,
    ``b2``), else ``torch``."""
    texts = [] if param is None else [param] if isinstance(param, str) else list(param)
    return "W1b1" if any(_LEARNER_RE.match(t) for t in texts) else "torch"


_PARAM_RE = re.compile(r"^\s*(layers\.\d+\.(?:weight|bias))\s*(?:\[([^\]]*)\])?\s*$")


def parse_param(text: str, shapes: dict, trainable: Sequence[str], sizes=None
                ) -> list[tuple[str, tuple[int, ...]]]:
    """``layers.1.weight[0,0]`` (one entry), ``layers.1.weight`` (the whole tensor), the
    W1b1 names ``W2[0,0]`` (W_l of shape (in, out): the transpose of layers.{l-1}.weight),
    ``b2[0]``, ``W2``, or w1 … w8 on the 2-2-2 -> [(key, index), …]. Raises ``ConfigError``
    with what to type instead."""
    where = f"--param {text!r}"
    listing = ", ".join(f"{k} {tuple(s)}" for k, s in shapes.items())
    if sizes is not None and is_222(sizes):
        listing += " (or w1 … w8, the worked example's names)"
        m = re.fullmatch(r"\s*w([1-8])\s*", text)
        if m:
            n = int(m.group(1)) - 1
            return [(f"layers.{n // 4}.weight", ((n % 4) // 2, n % 2))]
    learner = _LEARNER_RE.match(text)
    m = learner or _PARAM_RE.match(text)
    if not m:
        raise ConfigError(f"{where}: expected KEY[i,j] like layers.1.weight[0,0] or W2[0,0] "
                          f"(W_l of shape (in, out)), or KEY for a whole tensor; this network "
                          f"has {listing}")
    if learner:
        kind, n, raw = m.groups()
        key = f"layers.{int(n) - 1}.{'weight' if kind == 'W' else 'bias'}"
        name, flip = f"{kind}{n}", kind == "W"
        listing = ", ".join(f"{'W' if k.endswith('weight') else 'b'}{int(k.split('.')[1]) + 1} "
                            f"{tuple(s)[::-1] if k.endswith('weight') else tuple(s)}"
                            for k, s in shapes.items())
    else:
        key, raw = m.group(1), m.group(2)
        name, flip = key, False
    if key not in shapes:
        raise ConfigError(f"{where}: no parameter {name!r} in this network; it has {listing}")
    if key not in trainable:
        raise ConfigError(f"{where}: {name} is frozen (bias = \"frozen\"): it is never updated "
                          f"and has no gradient; choose a weight")
    shape = tuple(shapes[key])[::-1] if flip else tuple(shapes[key])   # as the name has it
    back = (lambda ix: tuple(ix)[::-1]) if flip else tuple            # to the key's index
    if raw is None:
        return [(key, tuple(int(i) for i in back(ix))) for ix in np.ndindex(*shape)]
    example = f"{name}[{','.join('0' for _ in shape)}]"
    try:
        index = tuple(int(p) for p in raw.split(","))
    except ValueError:
        raise ConfigError(f"{where}: the index must be integers, e.g. {example}") from None
    if len(index) != len(shape):
        raise ConfigError(f"{where}: {name} has shape {shape} and takes {len(shape)} "
                          f"ind{'ices' if len(shape) > 1 else 'ex'}, e.g. {example}")
    if not all(0 <= i < n for i, n in zip(index, shape, strict=True)):
        raise ConfigError(f"{where}: index [{raw}] is out of range for {name} of shape "
                          f"{shape} (indices from 0 to n − 1)")
    return [(key, back(index))]


# ------------------------------------------------------------------------------ one step


class SequentialMLP(manual.MLP):
    """manual.MLP in the *sequential* update order: ``backward`` updates each layer's W
    and b in place, p ← p − lr·∂E/∂p, as soon as their gradients are known (its
    ``after_layer`` hook), so δ reaches the layer below through the NEW W. Plain gradient
    descent: there is no optimizer state to carry."""

    def __init__(self, sizes, lr: float, **spec):
        super().__init__(sizes, **spec)
        self.lr = lr

    def backward(self, a, Y, *, trace=None, after_layer=None):
        def step(l, grads):
            for key in (f"layers.{l}.weight", f"layers.{l}.bias"):
                if key in grads:   # a frozen (or absent) bias has no gradient
                    self.param_arrays[key] -= self.lr * grads[key]   # W_l ← W_l − lr ∂E/∂W_l
            if after_layer is not None:
                after_layer(l, grads)
        return super().backward(a, Y, trace=trace, after_layer=step)


def explain(cfg: RunConfig | str, param: str | Sequence[str] | None = None,
            order: str = "simultaneous", *, params: dict | None = None,
            convention: str | None = None) -> Explanation:
    """The forward pass, the error, the chain rule for each selected parameter (default:
    every trainable one) and one update, from manual's forward cache and traced backward,
    next to autograd.

    ``cfg``: a RunConfig or a named experiment / TOML path; ``param``: one or more
    ``--param`` strings; ``params``: start from these weights instead of the config's
    initial ones (same keys and shapes: a later step of gradient descent on the explained
    batch, as the html page steps through); ``convention``: the names shown, ``torch``
    (``layers.1.weight[0,3]``) or ``W1b1`` (``W2[3,0]``, ``a1``, ``z2``; W_l of shape (in,
    out)), by default the one ``param`` is written in. Raises ``ConfigError`` for bad
    input."""
    if isinstance(cfg, str):
        cfg = load_config(cfg)
    if order not in ORDERS:
        raise ConfigError(f"--update-order {order!r}: choose one of {list(ORDERS)}")
    convention = convention or param_convention(param)
    if convention not in CONVENTIONS:
        raise ConfigError(f"--convention {convention!r}: choose one of {list(CONVENTIONS)} "
                          f"or a learner's file that sets CONVENTION")
    prob = prepare(cfg)
    if params is not None:
        prob = dataclasses.replace(prob, params={k: np.array(v, dtype=prob.params[k].dtype)
                                                 for k, v in params.items()})
    cfg = prob.config
    if order == "sequential" and not plain(cfg):
        raise ConfigError(f"--update-order sequential is defined for plain gradient descent; "
                          f"this config has momentum = {cfg.momentum}, weight_decay = "
                          f"{cfg.weight_decay}: add --set momentum=0 --set weight_decay=0")
    # manual: the forward cache, then one backward pass that traces every layer's factors
    net = (SequentialMLP(cfg.sizes, cfg.lr, **cfg.spec(), params=prob.params)
           if order == "sequential" else manual.MLP(cfg.sizes, **cfg.spec(), params=prob.params))
    selected = _select(cfg, param, net.shapes, net.trainable)
    a = net.forward_cache(prob.X)                                         # [a_0 … a_L]
    E = net.loss(prob.X, prob.Y)                  # before backward: sequential moves weights
    trace: list[manual.LayerTrace] = []
    grads = net.backward(a, prob.T, trace=trace)
    layers = {t.layer + 1: t for t in trace}       # by the layer each feeds, l = 1 … L
    # net_l = a_{l-1} W_lᵀ + b_l: the expression manual.forward_cache evaluates (it keeps a_l)
    nets = [None] + [a[l - 1] @ prob.params[f"layers.{l - 1}.weight"].T
                     + (prob.params[f"layers.{l - 1}.bias"] if cfg.bias is not False else 0)
                     for l in range(1, len(a))]                           # (N, n_l)
    if order == "simultaneous":                   # the derivation's update: manual.SGD
        stepped = {k: v.copy() for k, v in prob.params.items()}
        manual.SGD(stepped, **cfg.sgd).step(grads)
    else:                                         # backward has already moved every layer
        stepped = net.params
    E_t, g_t, net_t, out_t, w_t = _autograd(prob)
    names = neuron_names(cfg.sizes, convention)
    notes = [f"{n_params(cfg)} parameters: the forward pass lists only the neurons on the "
             f"selected parameters' paths"] if n_params(cfg) > MAX_PARAMS else []
    return Explanation(
        problem=prob, order=order, neurons=names, net=nets, out=list(a),
        net_autograd=net_t, out_autograd=out_t, E_total=E, E_autograd=E_t,
        error_terms=manual.losses.loss_terms(cfg.loss, a[-1], prob.T, np),
        gradients=[_gradient_term(k, ix, layers, a, cfg, order, g_t, convention)
                   for k, ix in selected],
        updates=[_update_term(k, ix, cfg, prob.params, grads, stepped, w_t, convention)
                 for k, ix in selected],
        update_rule=_update_rule(cfg, order), grads_all=dict(grads), grads_autograd=g_t,
        notes=notes, params_after=dict(stepped), convention=convention)


def _select(cfg: RunConfig, param, shapes: dict, trainable: list[str]
            ) -> list[tuple[str, tuple[int, ...]]]:
    """The (key, index) entries to explain: every trainable one (the network's ``shapes``
    and ``trainable`` keys), or the ``--param`` ones."""
    if param is None or param == []:
        if n_params(cfg) > MAX_PARAMS:
            raise ConfigError(f"{cfg.name}: {n_params(cfg)} parameters is too many to explain "
                              f"all at once (limit {MAX_PARAMS}); pick some with --param, "
                              f"e.g. --param 'layers.{len(cfg.sizes) - 2}.weight[0,0]'")
        return [(k, ix) for k in trainable for ix in np.ndindex(*shapes[k])]
    selected = []
    for text in [param] if isinstance(param, str) else list(param):
        for item in parse_param(text, shapes, trainable, cfg.sizes):
            if item not in selected:
                selected.append(item)
    return selected


def _autograd(prob: Problem) -> tuple:
    """torch_impl on the batch: (E, gradients, net and out per layer from its own forward,
    the weights after one torch.optim.SGD step)."""
    import torch

    import torch_impl

    cfg = prob.config
    tor = torch_impl.MLP(cfg.sizes, **cfg.spec(), params=prob.params)
    E, grads = tor.loss_and_gradients(prob.X, prob.Y)
    nets, outs = [None], [prob.X]
    with torch.no_grad():
        x = tor.as_input(prob.X)
        for linear, f in zip(tor.module.layers, tor.module.activations, strict=True):
            z = linear(x)
            x = f(z)
            nets.append(z.cpu().numpy())
            outs.append(x.cpu().numpy())
    tor.optimizer(**cfg.sgd).step()
    return E, grads, nets, outs, tor.params


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


def _update_term(key, ix, cfg: RunConfig, params, grads, stepped, w_t, convention
                 ) -> UpdateTerm:
    g, w = float(grads[key][ix]), float(params[key][ix])
    eff = g + cfg.weight_decay * w
    if cfg.momentum and cfg.nesterov:
        eff = eff + cfg.momentum * eff        # first step: buffer = g, g + μ·b
    return UpdateTerm(param_name(key, ix, cfg.sizes, convention), key, ix, w, g, eff,
                      float(stepped[key][ix]), float(w_t[key][ix]))


def _gradient_term(key, ix, layers: dict, a, cfg, order, g_t, convention) -> GradientTerm:
    """One parameter's chain rule from the traced layers (``manual.LayerTrace``)."""
    l, j, N, sizes = int(key.split(".")[1]) + 1, ix[0], a[0].shape[0], cfg.sizes
    names = neuron_names(sizes, convention)        # the parameter feeds unit j of layer l

    def d_out(layer, unit):                        # ∂E/∂out and ∂out/∂net of one unit
        out = symbol("out", layer, unit, sizes, convention)
        net = symbol("net", layer, unit, sizes, convention)
        return (Factor(f"∂E/∂{out}", layers[layer].dA[:, unit]),
                Factor(f"∂{out}/∂{net}", layers[layer].fprime[:, unit]))

    upstream = []
    if l < len(a) - 1:                             # hidden: ∂E/∂out_h through layer l + 1
        up = layers[l + 1]
        for k in range(sizes[l + 1]):
            wname = param_name(f"layers.{l}.weight", (k, j), sizes, convention)
            w = Factor(wname + ("⁺" if order == "sequential" else ""), np.full(N, up.W[k, j]))
            parts = ((*d_out(l + 1, k), w) if l + 2 == len(a) else
                     (Factor(f"∂E/∂{symbol('net', l + 1, k, sizes, convention)}",
                             up.delta[:, k]), w))
            upstream.append(Upstream(parts, up.delta[:, k] * w.values))
    name = param_name(key, ix, sizes, convention)
    wrt = name if is_222(sizes) else ("w" if key.endswith("weight") else "b")
    if key.endswith("weight"):
        source, values = symbol("out", l - 1, ix[1], sizes, convention), a[l - 1][:, ix[1]]
        edge = f"{names[l - 1][ix[1]]} → {names[l][j]}"
    else:
        source, values, edge = "1", np.ones(N, a[0].dtype), f"bias → {names[l][j]}"
    factors = (*d_out(l, j), Factor(f"∂{symbol('net', l, j, sizes, convention)}/∂{wrt}",
                                    values))
    products = layers[l].delta[:, j] * values      # (∂E/∂out · ∂out/∂net) · ∂net/∂w  (N,)
    return GradientTerm(key=key, index=tuple(ix), name=name, edge=edge, layer=l,
                        upstream=tuple(upstream), factors=factors, products=products,
                        value=float(np.sum(products)), autograd=float(g_t[key][ix]),
                        wrt=wrt, source=source)
