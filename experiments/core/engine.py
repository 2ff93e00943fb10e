"""The lockstep engine: sides stepped side by side over one batch order, from one init.

A *side* is one implementation being trained (the ``Side`` protocol below): it gives the
loss and gradients at its current weights, takes an SGD step with them, shows its
parameters and can take another side's weights. The standard sides:

    ManualSide      manual.MLP (hand-derived backprop) + manual.SGD (hand-written update)
    ReferenceSide   autograd + torch.optim.SGD on a reference's loss
                    (``experiments.core.reference``): a config's torch_impl.MLP
                    (``reference.from_config``) or a teacher's model in torch alike

A bugged manual side from the gallery, a learner's side or a side that trains in another
update order are further sides: anything with these five members.

Per step s (0-based), on the mini-batch chosen for that step (``batches``):
    1. the reference and every side evaluate loss and gradients at their own weights;
    2. ``observer.compare(step, epoch, idx, ref, evals)`` (metrics, tolerance, divergence);
    3. each side applies its own SGD update;
    4. ``observer.updated(step)`` (weights after the update);
    5. ``synced`` mode then loads the reference's weights (and momentum buffers) into
       every side, so the next step's gradients are evaluated at the same point.
This is the one training loop of ``experiments``: the runner, the bug gallery, the
studies' replay and explain's trajectories all step through ``Lockstep.run``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Mapping
from typing import Protocol, runtime_checkable

import numpy as np

import manual

MODES = ("synced", "free")


def to_numpy(x) -> np.ndarray:
    """A numpy view (CPU) or copy (device) of a numpy array or torch tensor."""
    if isinstance(x, np.ndarray):
        return x
    return x.detach().cpu().numpy()


def finite(arrays: Mapping) -> bool:
    """Every entry of every array finite."""
    return all(math.isfinite(float(to_numpy(v).sum())) for v in arrays.values())


@runtime_checkable
class Side(Protocol):
    """One implementation trained in lockstep."""

    name: str
    keys: list[str]        # the trainable parameter keys, in state_dict order

    def evaluate(self, idx) -> tuple[float, dict]:
        """Loss E and {key: ∂E/∂param} (native arrays) on the bound data's rows ``idx``
        (None: the full batch), at the side's current weights."""

    def update(self, grads: Mapping) -> None:
        """One SGD step with the gradients ``evaluate`` returned."""

    @property
    def params(self) -> dict[str, np.ndarray]:
        """Every parameter (frozen ones included), as numpy copies."""

    def load(self, other: Side) -> None:
        """Take ``other``'s weights and optimizer state (synced mode)."""


def batches(N: int, B: int, shuffle: bool, order_rng, total: int) -> Iterator[tuple]:
    """Yield ``(step, epoch, idx)`` for ``total`` steps: ``idx`` is None for the full batch,
    else the step's slice of this epoch's order (reshuffled from ``order_rng`` at each
    epoch start when ``shuffle``; the last batch of an epoch may be smaller)."""
    per_epoch = math.ceil(N / B)
    order = np.arange(N)
    for step in range(total):
        pos = step % per_epoch
        if B >= N:
            yield step, step // per_epoch, None
            continue
        if pos == 0 and shuffle:
            order = order_rng.permutation(N)
        yield step, step // per_epoch, order[pos * B:(pos + 1) * B]


class ManualSide:
    """manual.MLP + manual.SGD over data bound once (numpy, or tensors for the torch
    backend: the same hand code then runs on ``device``)."""

    def __init__(self, net: manual.MLP, sgd: Mapping, name: str = "manual"):
        self.net, self.name = net, name
        self.opt = manual.SGD(net.param_arrays, **sgd)
        self.keys = list(net.trainable)
        self.X = self.Y = None

    def bind(self, X, Y) -> ManualSide:
        self.X, self.Y = X, Y
        return self

    def batch(self, idx):
        if idx is None:
            return self.X, self.Y
        return self.X[idx], self.Y[idx]

    def evaluate(self, idx) -> tuple[float, dict]:
        return self.net.loss_and_gradients(*self.batch(idx), native=True)

    def update(self, grads: Mapping) -> None:
        self.opt.step(grads)

    @property
    def params(self) -> dict[str, np.ndarray]:
        return self.net.params

    @property
    def arrays(self) -> dict:
        """The live parameter arrays (native)."""
        return self.net.param_arrays

    @property
    def last_output(self):
        """The output of the last ``evaluate`` (native), before its update."""
        return self.net.last_output

    def load(self, other) -> None:
        """Copy ``other``'s weights and momentum buffers into this side, in place."""
        for k, v in other.arrays.items():
            dst = self.net.param_arrays[k]
            dst[...] = to_numpy(v) if isinstance(dst, np.ndarray) else v
        for k in self.keys:
            buf = other.momentum_buffer(k)
            if buf is None:   # the source has not stepped: the next step is a first step
                self.opt.momentum_buffer.pop(k, None)
                continue
            b = self.net.param_arrays[k]
            self.opt.momentum_buffer[k] = (to_numpy(buf).copy() if isinstance(b, np.ndarray)
                                           else buf.clone())

    def momentum_buffer(self, key):
        return self.opt.momentum_buffer.get(key)


class Observer:
    """What the engine reports to; every hook is optional. ``compare`` may raise to stop
    (e.g. ``Diverged``); the caller catches it."""

    def compare(self, step: int, epoch: int, idx, ref: tuple | None, evals: list) -> None:
        pass

    def updated(self, step: int) -> None:
        pass


class Lockstep:
    """Steps ``sides`` (and the ``reference``, when given) over one batch order.

    ``step`` is the step in progress (after ``run`` returns: the number of updates made),
    so a caller that catches an exception knows where the run stopped.
    """

    def __init__(self, sides: list, reference=None, mode: str = "free"):
        if mode not in MODES:
            raise ValueError(f"mode must be one of {list(MODES)}, got {mode!r}")
        if mode == "synced" and reference is None:
            raise ValueError("synced mode needs a reference side to sync to")
        self.sides, self.reference, self.mode = list(sides), reference, mode
        self.step = 0

    def run(self, order: Iterable[tuple], observer: Observer | None = None,
            progress=None) -> int:
        """Train over ``order`` (``batches(...)``); return the number of updates made."""
        obs = observer or Observer()
        ref, sides, synced = self.reference, self.sides, self.mode == "synced"
        done = 0
        for step, epoch, idx in order:
            self.step = step
            evals = [side.evaluate(idx) for side in sides]
            r = ref.evaluate(idx) if ref is not None else None
            obs.compare(step, epoch, idx, r, evals)
            for side, (_, g) in zip(sides, evals, strict=True):
                side.update(g)
            if ref is not None:
                ref.update(r[1])
            obs.updated(step)
            if synced:
                for side in sides:
                    side.load(ref)
            if progress is not None:
                progress.update(1)
            done = step + 1
        self.step = done
        return done
