"""A learner's parameter convention, and the learner's side of the lockstep engine.

Two conventions (a learner's file names its own with ``CONVENTION = "..."``):

    torch   layers.{i}.weight (out, in), layers.{i}.bias (out,)   z = a Wᵀ + b   handgrad's own
    W1b1    W{i+1} (in, out),            b{i+1} (out,)            z = a W + b    course notebooks

so ``W{i+1} = layers.{i}.weightᵀ``. ``Convention`` translates parameter dicts both ways
and vets what the learner returns against the network: exactly the expected names, each
with its expected shape (a frozen bias — config ``bias = "frozen"`` — may be returned or
left out: it is never trained).

``LearnerSide`` is ``engine.ManualSide`` with the learner's code in place of the hand
backward pass: its loss and forward pass are manual.MLP's (the loss at the learner's
weights, for loss.csv), its gradients the learner's, its update the learner's own
``update`` when the file has one, else manual.SGD (torch.optim.SGD's rule by hand).
"""

from __future__ import annotations

import numpy as np

import manual
from experiments.core.engine import ManualSide
from experiments.teaching.boundary.learner import BadLearner


class Convention:
    """How a learner names and lays out the parameters of the network ``sizes``/``bias``."""

    def __init__(self, name: str, sizes, bias, config: str = "this config"):
        self.name, self.sizes, self.bias = name, tuple(sizes), bias
        self.config = config             # the config's name in messages: "`seed`"
        shapes = manual.parameter_shapes(sizes, bias)
        self.frozen = {k for k in shapes if bias == "frozen" and k.endswith("bias")}
        #: torch key -> (the learner's name, whether the learner's array is the transpose)
        self.names = {k: self._learner_name(k) for k in shapes}
        self.keys = {name: k for k, (name, _) in self.names.items()}
        self.shapes = {name: (shapes[k][::-1] if t else shapes[k])
                       for k, (name, t) in self.names.items()}

    def _learner_name(self, key: str) -> tuple[str, bool]:
        if self.name == "torch":
            return key, False
        _, i, kind = key.split(".")
        return (f"W{int(i) + 1}", True) if kind == "weight" else (f"b{int(i) + 1}", False)

    def name_of(self, key: str) -> str:
        """The learner's name of the torch key ``key``."""
        return self.names[key][0]

    def index_of(self, key: str, index: tuple) -> tuple:
        """The learner's index of entry ``index`` of the torch key ``key``."""
        return tuple(index[::-1]) if self.names[key][1] else tuple(index)

    def expected(self) -> str:
        """``W1 (3, 4), W2 (4, 1)``: the names and shapes the learner must return."""
        return ", ".join(f"{n} {self.shapes[n]}" for k, (n, _) in self.names.items()
                         if k not in self.frozen)

    def to_learner(self, arrays) -> dict[str, np.ndarray]:
        """Fresh copies in the learner's layout: the learner may change them freely."""
        return {self.names[k][0]: np.array(np.asarray(v).T if self.names[k][1] else v)
                for k, v in arrays.items()}

    def from_learner(self, value: dict, what: str, *, dtype: str, trained: list[str],
                     transposed_ok: bool = False, finite: bool = False,
                     batch: int | None = None) -> dict:
        """The learner's dict (already ``learner.vet_dict``-ed) as torch keys, for the keys
        ``trained``, in ``dtype``; ``BadLearner`` (a one-line message naming the expected
        keys and shapes) for a wrong key or shape, or, with ``finite``, a NaN or inf.
        ``transposed_ok`` lets a 2-D gradient come back with its shape transposed (kept as
        it is, for the diagnosis to name). ``batch`` (N) lets a wrong shape be read as a
        per-sample bias gradient (``shape_hint``)."""
        wanted = {self.name_of(k) for k in trained}
        allowed = wanted | {self.name_of(k) for k in self.frozen}
        got = set(value)
        if not wanted <= got or not got <= allowed:
            hint = self.network_hint(list(value), config=self.config)
            if hint:   # the keys of another network: a file for another assignment
                raise BadLearner(f"{hint[2:]} ({what} returned the keys {sorted(value)}; "
                                 f"expected {self.expected()})", status="wrong_assignment")
            raise BadLearner(self._keys_message(value, what, wanted, allowed), output=True)
        out = {}
        for k in trained:
            name, transposed = self.names[k]
            a, shape = value[name], self.shapes[name]
            if a.shape != shape and not (transposed_ok and a.ndim == 2 and a.shape == shape[::-1]
                                         and k.endswith("weight")):
                raise BadLearner(f"{what}[{name!r}] has shape {a.shape}; expected {shape} "
                                 f"(all: {self.expected()})"
                                 + self.shape_hint(name, value, batch), output=True)
            if finite and not np.all(np.isfinite(a)):
                bad = int(np.sum(~np.isfinite(a)))
                raise BadLearner(f"{what}[{name!r}] holds NaN or inf in {bad} of {a.size} "
                                 f"entries (autograd's are finite)", output=True)
            a = a.T if transposed else a
            out[k] = a.astype(dtype, copy=False)
        return out

    def shape_hint(self, name: str, value: dict, batch: int | None = None) -> str:
        """What a wrong shape of ``value[name]`` most likely means ("" when nothing fits):
        two weights returned under each other's names (each has the other's shape), or a
        bias gradient not reduced to (out,) — a row (1, out) from ``keepdims=True``, one
        row per sample (N, out), a column (out, 1)."""
        got = value[name].shape
        for other, shape in self.shapes.items():
            if (other != name and other in value and got == shape
                    and value[other].shape == self.shapes[name]):
                return (f": your {name} and {other} are swapped — {name} has {other}'s shape "
                        f"{shape} and {other} has {name}'s {self.shapes[name]}; return each "
                        f"gradient under its own name")
        want = self.shapes[name]
        if len(want) != 1 or len(got) != 2 or want[0] not in got:
            return ""
        if got == (1, want[0]):
            return (f": drop keepdims — ∂E/∂{name} = Σ_n δ_n is a vector like {name}, "
                    f"np.sum(δ, axis=0) without keepdims=True")
        if got[1] == want[0] and (batch is None or got[0] == batch):
            return (f": sum over the samples (axis 0) — δ has one row per sample, and "
                    f"∂E/∂{name} = Σ_n δ_n = δ.sum(axis=0)")
        if got == (want[0], 1):
            return f": a column; ∂E/∂{name} is a vector like {name}: reshape it to {want}"
        return ""

    def _keys_message(self, value, what, wanted, allowed) -> str:
        missing = sorted(wanted - set(value))
        extra = sorted(set(value) - allowed)
        text = (f"{what} returned the keys {sorted(value)}"
                + (f" (missing {missing})" if missing else "")
                + (f" (unexpected {extra})" if extra else "")
                + f"; expected {self.expected()}")
        other = "W1b1" if self.name == "torch" else "torch"
        if extra and set(extra) <= set(Convention(other, self.sizes, self.bias).shapes):
            text += (f". These are the {other} convention's names: put CONVENTION = "
                     f"\"{other}\" at the top of the file")
        return text + self.network_hint(list(value))

    def network_hint(self, names, verb: str = "returns", config: str | None = None) -> str:
        """A hint when ``names`` (the learner's keys, returned or read) belong to another
        network of this convention: biases on a network without, none on one with, other
        layers. "" when nothing says so."""
        ours = Convention(self.name, (1,) * 64, True).names.values()   # any depth, biases
        known = {n for n, _ in ours}
        extra = sorted(n for n in names if n not in self.shapes and n in known)
        biases = [n for k, (n, _) in self.names.items() if k.endswith("bias")
                  and k not in self.frozen]
        listed = ", ".join(sorted(names))
        config = config or self.config
        if extra and self.bias is False and all(n in _bias_names(ours) for n in extra):
            return (f". Your code {verb} {listed}: written for a network with biases; "
                    f"{config} has none (bias = false)")
        if biases and names and set(names) <= known and not set(biases) & set(names):
            return (f". Your code {verb} no bias gradient: written for a network without "
                    f"biases; {config} has them ({', '.join(biases)})")
        if extra:
            return (f". Your code {verb} {', '.join(extra)}: written for another network; "
                    f"{config} ({'-'.join(map(str, self.sizes))}) has {self.expected()}")
        return ""


def _bias_names(names) -> set[str]:
    """The learner's names of biases among a convention's ``(name, transposed)`` pairs."""
    return {n for n, t in names if not t and (n.startswith("b") or n.endswith(".bias"))}


class LearnerSide(ManualSide):
    """The learner's code trained in lockstep (``engine.Side``); ``learner`` is a
    ``learner.Learner`` (in-process) or a ``process.LearnerProcess``."""

    def __init__(self, net: manual.MLP, sgd: dict, learner, convention: Convention,
                 name: str):
        super().__init__(net, sgd, name=name)
        self.learner, self.conv, self.lr = learner, convention, sgd["lr"]
        self.steps_done = 0   # updates made: training steps the learner's code got through

    def bind(self, X, Y) -> LearnerSide:
        super().bind(X, Y)
        self.learner.bind(X, Y)
        return self

    def evaluate(self, idx) -> tuple[float, dict]:
        # manual's forward pass and loss at the learner's weights: loss.csv's loss_manual,
        # the rounding bound's activations and predictions.csv; the gradients are theirs
        E, _ = self.net.loss_and_gradients(*self.batch(idx), native=True)
        raw = self.learner.gradients(self.conv.to_learner(self.net.param_arrays), idx)
        return E, self.conv.from_learner(raw, "gradients(params, X, Y)", dtype=self.net.dtype,
                                         trained=self.keys)

    def update(self, grads) -> None:
        if not self.learner.has_update:
            super().update(grads)       # manual.SGD: torch.optim.SGD's rule by hand
        else:
            new = self.learner.update(self.conv.to_learner(self.net.param_arrays),
                                      self.conv.to_learner(grads), self.lr)
            new = self.conv.from_learner(new, "update(params, grads, lr)",
                                         dtype=self.net.dtype, trained=self.keys)
            for k in self.keys:
                self.net.param_arrays[k][...] = new[k]
        self.steps_done += 1


def side_factory(learner):
    """``run_experiment``'s ``side=``: ``(cfg, params) -> LearnerSide`` for ``learner``."""
    def make(cfg, params) -> LearnerSide:
        net = manual.MLP(cfg.sizes, **cfg.spec(), params=params)
        conv = Convention(learner.convention, cfg.sizes, cfg.bias, f"`{cfg.name}`")
        side = LearnerSide(net, cfg.sgd, learner, conv, learner.name)
        made.append(side)
        return side
    made: list[LearnerSide] = []
    make.made = made   # the side made: how many steps it trained, when a check stops early
    return make
