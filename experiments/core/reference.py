"""A reference: any model written in torch, as the reference side of the lockstep engine.

A ``Reference`` is what a teacher's reference file defines (``experiments.teaching.
reference.load``) or what a built-in config describes (``from_config``, through
``mlp_reference``: torch_impl's network):

    params          {name: initial array}, float; the trainable parameters, in order
    X, Y            the data: X (N, ...), Y (N, ...), one sample per leading row; float
                    arrays in ``dtype``, integer ones (class labels, token ids) as int64
    loss            loss(params, X, Y) -> E, a torch scalar, or (E, {name: tensor}) with
                    intermediate tensors of the forward pass, in forward order
    lr, steps       torch.optim.SGD with learning rate ``lr``, for ``steps`` updates
    batch_size      rows per step (None: the full batch), reshuffled each epoch
    intermediates   the intermediates whose gradients are compared, in forward order
    names           {reference name: the learner's name} where a course names them otherwise

and, for a config's MLP (a teacher's reference leaves them empty):

    sgd             torch.optim.SGD's further settings (momentum, dampening, weight_decay,
                    nesterov), the non-default ones; empty: plain SGD
    fixed           {name: array}: parameters the loss reads and training leaves alone
                    (frozen biases); ``loss`` gets them in ``params`` with the trained ones
    output          the name under which ``loss`` also returns the model's output (the
                    runner's predictions); "": none
    device          the torch device the side's tensors live on

``ReferenceSide`` is the engine's one autograd ``Side``: autograd on ``loss`` (the
intermediates' gradients kept with ``retain_grad``) and ``torch.optim.SGD``. A teacher's
reference and every built-in config train through it: ``handgrad run`` (and through it a
check or grade against a config, sweeps, the studies), the bug gallery and explain's
witness step a ``ReferenceSide`` of ``mlp_reference``, bit for bit the gradients of
torch_impl.MLP called directly (tests/test_reference_models.py).

The tolerance (``noise`` and ``allowed``). A general model has no closed-form rounding
bound like the MLP's (experiments.core.tolerance), so each step measures one. Autograd's
gradient g is computed again twice at the same point, in ways that change its rounding and
not its exact value (to first order):

* with the batch's rows in reverse order, which reorders every sum over the batch and
  every reduction torch makes over it (for a loss that is a function of its rows alone:
  its value unchanged when they are reversed, checked at load);
* at the weights perturbed by ±2u relative, entry by entry (a fixed random sign): the
  gradient moves by its condition times u, as any other rounding of the inputs would
  move it; this also reaches reductions within a row (a softmax's sum, a max).

The noise of a gradient (a parameter's or an intermediate's) is the largest distance
‖g − g'‖ between g and these recomputations; a learner's gradient a is then allowed

    ‖a − g‖ ≤ max(FLOOR_ULPS · u · ‖g‖, SAFETY · noise)

FLOOR_ULPS = 1000 (about 1.1e-13 relative in float64: a chain of a thousand rounded
operations, for points where the recomputations happen to round alike) and SAFETY = 100
(a learner's code rounds in its own order, not torch's). As a relative tolerance,
rel_tol = that bound / max(‖a‖, ‖g‖). The absolute form keeps a gradient that is zero in
exact arithmetic (a bias before a batchnorm, a max's input in a stable softmax) honest:
autograd's is rounding noise there, and so may the learner's be, but nothing larger.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import numpy as np
import torch

from experiments.core.config import ConfigError
from experiments.core.engine import finite, to_numpy
from experiments.core.metrics import rel_err
from experiments.core.tolerance import unit_roundoff

FLOOR_ULPS = 1000
SAFETY = 100
DTYPES = {"float64": torch.float64, "float32": torch.float32}


class ReferenceError(ConfigError):
    """A reference that cannot be used: one line saying what, where and what to do."""


class NonFinite(Exception):
    """Raised by a loss whose forward pass left the finite numbers where its criterion
    refuses them instead of returning NaN (torch.nn.BCELoss on NaN outputs): the side
    reports E = NaN and NaN gradients, which is divergence. ``output``: that forward
    pass's output (None: the loss has none)."""

    def __init__(self, output=None):
        super().__init__("the forward pass is not finite")
        self.output = output


@dataclass
class Reference:
    """A model in torch with its data and training settings (module docstring)."""

    name: str
    params: dict[str, np.ndarray]
    X: np.ndarray
    Y: np.ndarray
    loss: Callable
    lr: float
    steps: int
    batch_size: int | None = None
    intermediates: list[str] = field(default_factory=list)
    names: dict[str, str] = field(default_factory=dict)
    dtype: str = "float64"
    source: str = ""                   # where it was defined (for messages)
    row_invariant: bool = True         # the loss is a function of its rows, in any order
    sgd: dict = field(default_factory=dict)              # momentum, ... (non-default only)
    fixed: dict[str, np.ndarray] = field(default_factory=dict)   # not trained (frozen)
    output: str = ""                   # the loss's returned name for the model's output
    device: str = "cpu"

    @property
    def N(self) -> int:
        return int(self.X.shape[0])

    def learner_name(self, key: str) -> str:
        return self.names.get(key, key)

    @property
    def plain(self) -> bool:
        """Plain SGD, w − lr·g: no momentum, dampening, weight decay or Nesterov."""
        return not self.sgd

    def tensor(self, a, *, grad: bool = False) -> torch.Tensor:
        """``a`` as a torch tensor on the reference's device: floats in its dtype, integers
        as int64."""
        a = np.asarray(a)
        if a.dtype.kind in "iub":
            return torch.as_tensor(a.astype(np.int64), device=self.device)
        t = torch.tensor(a, dtype=DTYPES[self.dtype], device=self.device)
        return t.requires_grad_(grad)

    def forward(self, params: Mapping, X, Y, finite: bool = False
                ) -> tuple[torch.Tensor, dict, torch.Tensor | None]:
        """``(E, {name: intermediate}, output)`` from the reference's loss, vetted: E a scalar
        that depends on the parameters (with ``finite``, a finite one: at the initial
        weights), every named intermediate there; ``output`` the model's output where the
        reference names one (``output``), else None."""
        out = self.loss(params, X, Y)
        inter = {}
        if isinstance(out, tuple) and len(out) == 2 and isinstance(out[1], Mapping):
            out, inter = out
        where = f"{self.source}: loss(params, X, Y)"
        if not isinstance(out, torch.Tensor):
            raise ReferenceError(f"{where} returned {type(out).__name__}; it must return a "
                                 f"torch scalar (or (scalar, {{name: tensor}}))")
        if out.numel() != 1 or out.ndim > 1:
            raise ReferenceError(f"{where} returned a tensor of shape {tuple(out.shape)}; it "
                                 f"must return a scalar: reduce it with .sum() or .mean()")
        if not out.requires_grad:
            raise ReferenceError(f"{where} does not depend on the parameters (no autograd "
                                 f"graph): compute it from params, in torch")
        if finite and not math.isfinite(float(out.detach())):
            raise ReferenceError(f"{where} is {float(out.detach())} at the initial weights; "
                                 f"it must be finite (check the init and the data)")
        missing = [n for n in self.intermediates if n not in inter]
        if missing:
            raise ReferenceError(f"{where} returned no intermediate {missing[0]!r} "
                                 f"(INTERMEDIATES names {self.intermediates}; it returned "
                                 f"{list(inter)})")
        for n in self.intermediates:
            t = inter[n]
            if not isinstance(t, torch.Tensor) or not t.requires_grad:
                raise ReferenceError(f"{where}: intermediate {n!r} is not a torch tensor that "
                                     f"depends on the parameters")
        return (out if out.ndim == 0 else out.reshape(()),
                {n: inter[n] for n in self.intermediates},
                inter.get(self.output) if self.output else None)


def from_config(cfg, data=None, params=None) -> Reference:
    """The MLP a RunConfig describes, as a Reference (``mlp_reference``): its data, its
    initial weights, its SGD settings and length, on its device. ``data`` and ``params``:
    the resolved config's Dataset and initial weights where the caller has them (the
    runner), else drawn as every run draws them (``runner.initial_state``). Mini-batches
    are drawn by the caller: the runner's own order, or the reference check's
    (``teaching.reference.check.order``)."""
    import torch_impl

    if data is None or params is None:
        from experiments.core.runner import initial_state
        cfg, data, params, _, _ = initial_state(cfg)
    X = data.X.astype(cfg.dtype)                                         # (N, D)
    Y = data.Y if data.Y.dtype.kind == "i" else data.Y.astype(cfg.dtype)
    B = None if cfg.batch_size == "full" else int(cfg.batch_size)
    steps = cfg.steps or cfg.epochs * math.ceil(len(X) / (B or len(X)))
    tor = torch_impl.MLP(cfg.sizes, **cfg.spec(), params=params, device=cfg.device)
    return mlp_reference(tor, X, Y, cfg.sgd, name=cfg.name, steps=steps, batch_size=B)


def mlp_reference(tor, X, Y, sgd: Mapping, *, name: str = "mlp", steps: int = 1,
                  batch_size: int | None = None) -> Reference:
    """torch_impl's network ``tor`` (a torch_impl.MLP: its spec, device and weights now) on
    the data X (N, D), Y (N, K) or (N,) class labels, trained by torch.optim.SGD with
    ``sgd`` (lr, momentum, dampening, weight_decay, nesterov), as a Reference. Its loss is
    torch_impl's module and criterion through ``torch.func.functional_call``: the same
    operations as ``tor.loss_and_gradients``, so the same gradients, bit for bit. A frozen
    bias is ``fixed``; the network's output is returned as ``"output"``."""
    module, criterion = tor.module, tor.criterion
    labels = tor.loss_name == "cross_entropy"

    def loss(p, X, Y):
        out = torch.func.functional_call(module, p, (X,), tie_weights=False)   # (N, K)
        Y = Y.long() if labels and Y.ndim == 1 else Y
        try:
            E = criterion(out, Y)
        except RuntimeError:
            # torch.nn.BCELoss refuses NaN outputs instead of returning NaN: with
            # non-finite weights, or finite ones (1e300, say) whose forward pass
            # overflowed to NaN, that is divergence; anything else is a real error
            if finite(p) and bool(torch.isfinite(out).all()):
                raise
            raise NonFinite(out) from None
        return E, {"output": out}

    w = tor.params                                   # numpy, in the network's dtype
    trained = list(tor.trainable)
    extra = {k: v for k, v in sgd.items() if k != "lr" and v}
    Y = np.asarray(Y)
    return Reference(name, {k: w[k] for k in trained}, np.asarray(X, tor.dtype),
                     Y if Y.dtype.kind in "iub" else Y.astype(tor.dtype), loss,
                     float(sgd["lr"]), steps, batch_size, dtype=tor.dtype, source=name,
                     sgd=extra, fixed={k: v for k, v in w.items() if k not in trained},
                     output="output", device=str(tor.device))


class ReferenceSide:
    """Autograd on a Reference's loss + torch.optim.SGD (``engine.Side``): the engine's one
    autograd side, for a teacher's reference and for every config's MLP alike.

    ``tensors`` are the live trained weights (leaf tensors on the reference's device,
    updated in place by ``opt``), ``fixed`` the untrained ones, ``arrays`` both, detached.
    After each ``evaluate``: ``last_grads`` the parameters' gradients (native tensors),
    ``intermediate_grads`` ∂E/∂t of each named intermediate t (numpy; zeros for one the
    loss does not reach), ``last_output`` the model's output (detached; None for a
    reference that names none)."""

    def __init__(self, ref: Reference, name: str = "autograd"):
        self.ref, self.name = ref, name
        self.keys = list(ref.params)
        self.device = torch.device(ref.device)
        self.tensors = {k: ref.tensor(v, grad=True) for k, v in ref.params.items()}
        self.fixed = {k: ref.tensor(v) for k, v in ref.fixed.items()}
        self.every = {**self.tensors, **self.fixed}      # what the loss is given
        #: the live weights, detached (updated in place by the optimizer)
        self.arrays = {k: v.detach() for k, v in self.every.items()}
        self.opt = torch.optim.SGD(list(self.tensors.values()), lr=ref.lr, **ref.sgd)
        self.X, self.Y = ref.tensor(ref.X), ref.tensor(ref.Y)
        self.intermediate_grads: dict[str, np.ndarray] = {}
        self.last_grads: dict = {}       # the last evaluate's gradients (native tensors)
        self.last_output = None

    def bind(self, X=None, Y=None) -> ReferenceSide:
        """The data is the reference's (``X``, ``Y`` are accepted as other sides take them)."""
        return self

    def batch(self, idx, reverse: bool = False):
        """The rows ``idx`` of the data (None: all of it), in reverse order with ``reverse``."""
        if idx is None and not reverse:
            return self.X, self.Y
        if idx is None:
            idx = np.arange(self.ref.N)
        it = torch.as_tensor(np.asarray(idx)[::-1].copy() if reverse else idx,
                             device=self.device)
        return self.X[it], self.Y[it]

    def gradients_at(self, idx, reverse: bool = False) -> tuple[float, dict, dict]:
        """``(E, {key: ∂E/∂param}, {name: ∂E/∂intermediate})`` at the current weights,
        numpy; the rows in reverse order with ``reverse``."""
        E, grads = self._backward(idx, reverse)
        return E, {k: to_numpy(g).copy() for k, g in grads.items()}, \
            dict(self.intermediate_grads)

    def _backward(self, idx, reverse: bool = False):
        for p in self.tensors.values():
            p.grad = None
        E, inter, out = self.ref.forward(self.every, *self.batch(idx, reverse))
        if out is not None:
            self.last_output = out.detach()
        for t in inter.values():
            t.retain_grad()
        E.backward()
        self.intermediate_grads = {n: (to_numpy(t.grad).copy() if t.grad is not None
                                       else np.zeros(tuple(t.shape)))
                                   for n, t in inter.items()}
        unused = [k for k, p in self.tensors.items() if p.grad is None]
        if unused:
            raise ReferenceError(f"{self.ref.source}: the loss does not use the parameter "
                                 f"{unused[0]!r}: remove it from params, or use it")
        self.last_grads = {k: p.grad for k, p in self.tensors.items()}
        return float(E.detach()), self.last_grads

    def evaluate(self, idx) -> tuple[float, dict]:
        try:
            return self._backward(idx)
        except NonFinite as err:   # divergence: E and every gradient NaN
            if err.output is not None:
                self.last_output = err.output.detach()
            return math.nan, {k: torch.full_like(p, math.nan) for k, p in self.tensors.items()}

    def loss_at(self, params: Mapping, idx) -> float:
        """E at the weights ``params`` (numpy), without gradients."""
        with torch.no_grad():
            E, _ = _plain(self.ref, {**self.fixed, **{k: self.ref.tensor(v)
                                                       for k, v in params.items()}},
                          *self.batch(idx))
        return E

    def noise(self, idx) -> dict[str, float]:
        """The rounding noise of each parameter's and intermediate's gradient at the
        current weights on rows ``idx`` (module docstring), from the last ``evaluate``
        there; the state ``update`` uses is kept."""
        kept = ({k: p.grad for k, p in self.tensors.items()}, self.intermediate_grads,
                self.last_grads, self.last_output)
        g = {k: to_numpy(v).copy() for k, v in self.last_grads.items()}
        inter = dict(self.intermediate_grads)
        n = self.ref.N if idx is None else len(idx)
        out = dict.fromkeys([*g, *inter], 0.0)
        samples = []
        if self.ref.row_invariant:
            _, rg, ri = self.gradients_at(idx, reverse=True)
            samples.append((rg, {k: v[::-1] if v.ndim and v.shape[0] == n else v
                                 for k, v in ri.items()}))
        w = {k: p.detach().clone() for k, p in self.tensors.items()}
        rng = np.random.default_rng(0)
        u = unit_roundoff(self.ref.dtype)
        with torch.no_grad():
            for p in self.tensors.values():
                sign = torch.as_tensor(rng.choice([-1.0, 1.0], size=tuple(p.shape)))
                p.mul_(1 + 2 * u * sign.to(p.dtype).to(p.device))
        samples.append(self.gradients_at(idx)[1:])
        with torch.no_grad():
            for k, p in self.tensors.items():
                p.copy_(w[k])
        for pg, pi in samples:
            for k in g:
                out[k] = max(out[k], float(np.linalg.norm(g[k] - pg[k])))
            for k in inter:
                out[k] = max(out[k], float(np.linalg.norm(inter[k] - pi[k])))
        for k, p in self.tensors.items():   # the update still takes this point's gradients
            p.grad = kept[0][k]
        self.intermediate_grads, self.last_grads, self.last_output = kept[1:]
        return out

    def update(self, grads: Mapping) -> None:
        self.opt.step()   # autograd left the gradients in each parameter's .grad

    @property
    def params(self) -> dict[str, np.ndarray]:
        """Every parameter (fixed ones included), as numpy copies."""
        return {k: to_numpy(v).copy() for k, v in self.arrays.items()}

    def load(self, other) -> None:
        """Copy ``other``'s weights and momentum buffers into this side, in place.

        torch.optim.SGD keeps a parameter's buffer in ``opt.state[p]["momentum_buffer"]``
        and starts one (b = g) on the step that finds none: a buffer absent on ``other``
        is removed here, so the next step is such a first step again."""
        with torch.no_grad():
            for k, v in other.params.items():
                if k in self.arrays:
                    self.arrays[k].copy_(torch.as_tensor(v))
        for k in self.keys:
            p, buf = self.tensors[k], other.momentum_buffer(k)
            if buf is None:
                self.opt.state.get(p, {}).pop("momentum_buffer", None)
                continue
            self.opt.state[p]["momentum_buffer"] = torch.tensor(
                to_numpy(buf), dtype=p.dtype, device=p.device)        # a copy

    def momentum_buffer(self, key):
        return self.opt.state.get(self.tensors[key], {}).get("momentum_buffer")


def _plain(ref: Reference, params, X, Y) -> tuple[float, dict]:
    out = ref.loss(params, X, Y)
    if isinstance(out, tuple):
        out = out[0]
    return float(out), {}


def allowed(yours: np.ndarray, autograd: np.ndarray, noise: float, dtype: str) -> float:
    """rel_tol for ``yours`` against ``autograd`` (module docstring):
    max(FLOOR_ULPS·u·‖g‖, SAFETY·noise) / max(‖a‖, ‖g‖)."""
    ng, na = float(np.linalg.norm(autograd)), float(np.linalg.norm(yours))
    bound = max(FLOOR_ULPS * unit_roundoff(dtype) * ng, SAFETY * noise)
    return bound / max(na, ng, 1e-300) if bound else FLOOR_ULPS * unit_roundoff(dtype)


def row_invariant(ref: Reference) -> bool:
    """Whether the loss at the initial weights is the same (to 1e3·u relative) with the
    rows of the data reversed: a loss that is a sum or mean over independent rows."""
    p = {k: ref.tensor(v) for k, v in {**ref.params, **ref.fixed}.items()}
    rev = np.arange(ref.N)[::-1].copy()
    with torch.no_grad():
        E, _ = _plain(ref, p, ref.tensor(ref.X), ref.tensor(ref.Y))
        Er, _ = _plain(ref, p, ref.tensor(ref.X[rev]), ref.tensor(ref.Y[rev]))
    return abs(E - Er) <= FLOOR_ULPS * unit_roundoff(ref.dtype) * max(abs(E), 1e-300)


FD_STEP = 1e-6
FD_ENTRIES = 16   # entries of each parameter central differences are taken for, at most


def finite_differences(ref: Reference, params: Mapping, X, Y, h: float = FD_STEP
                       ) -> dict[str, np.ndarray]:
    """Central-difference ∂E/∂param (float64, two loss evaluations per entry) on the rows
    ``X``, ``Y`` (tensors) at ``params`` (numpy), for at most ``FD_ENTRIES`` entries of
    each parameter, evenly spread over its flat index (NaN elsewhere). Its own error is
    about h² + u·|E|/h, far above rounding: a witness, not the bound."""
    live = {k: torch.tensor(np.asarray(v, np.float64)) for k, v in params.items()}
    if X.is_floating_point():
        X = X.double()
    if Y.is_floating_point():
        Y = Y.double()
    out = {}
    with torch.no_grad():
        for k, theta in live.items():
            flat, g = theta.view(-1), np.full(theta.numel(), np.nan)
            picks = np.unique(np.linspace(0, flat.numel() - 1, FD_ENTRIES).round().astype(int))
            for i in picks:
                orig = float(flat[i])
                flat[i] = orig + h
                e_plus, _ = _plain(ref, live, X, Y)
                flat[i] = orig - h
                e_minus, _ = _plain(ref, live, X, Y)
                flat[i] = orig
                g[i] = (e_plus - e_minus) / (2 * h)
            out[k] = g.reshape(tuple(theta.shape))
    return out


def fd_rel_err(g: np.ndarray, fd: np.ndarray) -> float:
    """rel_err of ``g`` against the finite differences, on the entries they were taken for."""
    taken = ~np.isnan(fd)
    return rel_err(np.asarray(g, np.float64)[taken], fd[taken])
