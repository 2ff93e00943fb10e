"""The learner's side against a reference: their gradients, vetted against its names and shapes.

The learner's ``gradients(params, X, Y)`` receives the reference's parameters under the
learner's names (``Reference.names`` renames keys), as numpy float arrays, and returns a
dict: every parameter's gradient, and optionally the gradients of the reference's named
intermediates. Shapes must match exactly; a 2-D array with the transposed shape is named
as such. ``ModelSide`` trains that code in lockstep (``engine.Side``): its gradients are
the learner's, its update the learner's ``update`` when the file has one, else plain SGD
w − lr·g; its loss is the reference's at the learner's weights.
"""

from __future__ import annotations

import numpy as np

from experiments.core.reference import Reference, ReferenceSide
from experiments.teaching.boundary.learner import BadLearner

GRADIENTS = "gradients(params, X, Y)"


def expected(ref: Reference, keys) -> str:
    """``W (3, 2), b (2,)``: names and shapes, the learner's names."""
    return ", ".join(f"{ref.learner_name(k)} {tuple(ref.params[k].shape)}" if k in ref.params
                     else ref.learner_name(k) for k in keys)


def to_learner(ref: Reference, arrays) -> dict[str, np.ndarray]:
    """Fresh copies under the learner's names: the learner may change them freely."""
    return {ref.learner_name(k): np.array(v) for k, v in arrays.items()}


def from_learner(ref: Reference, value: dict, what: str, inter_shapes: dict | None = None,
                 params_only: bool = False, finite: bool = True) -> tuple[dict, dict]:
    """``(param grads, intermediate grads)`` under the reference's keys from the learner's
    vetted dict, or ``BadLearner`` (one line) for a missing or unknown key, a wrong or
    transposed shape, or (with ``finite``) NaN/inf. ``inter_shapes``: the intermediates'
    shapes on this batch (None: not checked here)."""
    keys = list(ref.params)
    inter = [] if params_only else list(ref.intermediates)
    back = {ref.learner_name(k): k for k in keys + inter}
    missing = [ref.learner_name(k) for k in keys if ref.learner_name(k) not in value]
    extra = sorted(n for n in value if n not in back)
    if missing or extra:
        text = (f"{what} returned the keys {sorted(value)}"
                + (f" (missing {missing})" if missing else "")
                + (f" (unexpected {extra})" if extra else "")
                + f"; expected {expected(ref, keys)}")
        if inter and not params_only:
            text += f", and optionally {expected(ref, inter)}"
        raise BadLearner(text, output=True)
    grads, inters = {}, {}
    for name, a in value.items():
        k = back[name]
        want = (tuple(ref.params[k].shape) if k in ref.params
                else a.shape if inter_shapes is None else inter_shapes[k])
        if a.shape != want:
            why = (f", the transpose of {name}'s: return ∂E/∂{name} with {name}'s own shape"
                   if a.ndim == 2 and a.shape == want[::-1] else "")
            raise BadLearner(f"{what}[{name!r}] has shape {a.shape}; expected {want}{why}",
                             output=True)
        if finite and not np.all(np.isfinite(a)):
            raise BadLearner(f"{what}[{name!r}] holds NaN or inf in "
                             f"{int(np.sum(~np.isfinite(a)))} of {a.size} entries (autograd's "
                             f"are finite)", output=True)
        (grads if k in ref.params else inters)[k] = a.astype(ref.dtype, copy=False)
    return {k: grads[k] for k in keys}, {k: inters[k] for k in inter if k in inters}


class ModelSide:
    """A learner's code trained in lockstep against a reference (module docstring)."""

    def __init__(self, ref: Reference, learner, evaluator: ReferenceSide):
        self.ref, self.learner, self.name = ref, learner, learner.name
        self.keys = list(ref.params)
        self.w = {k: v.copy() for k, v in ref.params.items()}
        self.evaluator = evaluator       # the reference's loss at this side's weights
        self.intermediates: dict = {}    # the last evaluate's intermediate gradients

    def bind(self, X, Y) -> ModelSide:
        self.learner.bind(X, Y)
        return self

    def evaluate(self, idx) -> tuple[float, dict]:
        raw = self.learner.gradients(to_learner(self.ref, self.w), idx)
        # training: a non-finite gradient is judged (diverged, or differ), not refused
        grads, self.intermediates = from_learner(self.ref, raw, GRADIENTS, finite=False)
        return self.evaluator.loss_at(self.w, idx), grads

    def update(self, grads) -> None:
        if not self.learner.has_update:
            for k in self.keys:
                self.w[k] = self.w[k] - self.ref.lr * grads[k]
            return
        new = self.learner.update(to_learner(self.ref, self.w), to_learner(self.ref, grads),
                                  self.ref.lr)
        self.w, _ = from_learner(self.ref, new, "update(params, grads, lr)", params_only=True)

    @property
    def params(self) -> dict[str, np.ndarray]:
        return {k: v.copy() for k, v in self.w.items()}

    def load(self, other) -> None:
        self.w = other.params

    def momentum_buffer(self, key):
        return None   # plain SGD
