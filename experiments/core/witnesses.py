"""The runner's witnesses beside the plain manual-vs-torch comparison, one per question:

    float64_reference   float32 runs: each side's gradient against a float64 one at that
                        side's weights (ref_rel_err_manual, ref_rel_err_torch)
    finite_differences  central differences in float64 at the torch side's weights
                        (fd_rel_err: the worse side's rel_err to them)
    same_weights        free runs: the manual code evaluated at the torch side's weights, so
                        the gradient and loss code are judged apart from the drift of the
                        weights (gradient_rel_err, gradient_rel_tol; loss.csv's probe_loss,
                        loss_rel_diff, loss_rel_tol)
    UpdateCheck         the manual side's SGD step against torch.optim.SGD's step taken on the
                        same weights, gradients and momentum buffers (update_max_abs_diff), held
                        to a one-update rounding bound (update_tol)

Each fills columns of one logged step's row (parameters × ``GRAD_METRICS``; same_weights
also the step's loss row, ``LOSS_COLUMNS``); ``rec`` is the runner's Recorder (config,
data, sides).
"""

from __future__ import annotations

import functools
import math

import numpy as np
import torch
from torch.optim.sgd import sgd as sgd_step

import manual
from experiments.core.engine import ManualSide, to_numpy
from experiments.core.metrics import TINY, compare_many, rel_err
from experiments.core.schema import GRAD_INDEX as COL
from experiments.core.schema import LOSS_INDEX as LCOL
from experiments.core.tolerance import step_bounds, unit_roundoff

#: rounded operations per element in one SGD update (weight decay, momentum buffer, Nesterov,
#: lr·g, the subtraction), each side: torch.optim.SGD's documented algorithm
UPDATE_OPS = 8


def float64_reference(rec, row, g_np, idx) -> None:
    xb, yb = rec.batch64(idx)
    rec.ref.set_params(rec.tor.params)
    g_ref_t = rec.ref.gradients(xb, yb)
    if rec.cfg.mode != "synced":
        rec.ref.set_params(rec.man.params)
        g_ref_m = rec.ref.gradients(xb, yb)
    else:
        g_ref_m = g_ref_t
    for j, k in enumerate(rec.keys):
        row[j, COL["ref_rel_err_manual"]] = rel_err(g_np[k][0], g_ref_m[k])
        row[j, COL["ref_rel_err_torch"]] = rel_err(g_np[k][1], g_ref_t[k])


def finite_differences(rec, row, g_np, idx) -> None:
    xb, yb = rec.batch64(idx)
    probe = manual.MLP(rec.cfg.sizes, **rec.cfg.spec(dtype="float64"), params=rec.tor.params)
    fd = manual.finite_difference_gradients(probe, xb, yb)
    for j, k in enumerate(rec.keys):
        row[j, COL["fd_rel_err"]] = max(rel_err(g_np[k][0], fd[k]),
                                           rel_err(g_np[k][1], fd[k]))


def same_weights(rec, row, lrow, g_np, idx) -> None:
    """gradient_rel_err / gradient_rel_tol, and loss.csv's probe_loss / loss_rel_diff /
    loss_rel_tol. Synced: the sides started the step on the same weights, so these are the
    step's own comparison (rel_err / rel_tol; loss_manual, rel_diff, rel_tol). Free: a
    probe of the side's manual.MLP class at the torch side's weights, in the run's dtype:
    its loss against torch's for any side whose loss is its ``net``'s (the standard manual
    side, a learner's side: a learner writes gradients, never the loss), its gradients
    against torch's for the standard manual side only (another side's gradient code, a
    learner's say, is not called twice per step)."""
    cfg = rec.cfg
    if cfg.mode == "synced":
        row[:, COL["gradient_rel_err"]] = row[:, COL["rel_err"]]
        row[:, COL["gradient_rel_tol"]] = row[:, COL["rel_tol"]]
        lrow[[LCOL["probe_loss"], LCOL["loss_rel_diff"], LCOL["loss_rel_tol"]]] = \
            lrow[[LCOL["loss_manual"], LCOL["rel_diff"], LCOL["rel_tol"]]]
        return
    net = getattr(rec.man, "net", None)
    if not isinstance(net, manual.MLP):
        return
    if rec.probe is None:
        rec.probe = type(net)(cfg.sizes, **cfg.spec(), params=rec.tor.params)
    probe = rec.probe
    t_np = rec.t_np if rec.t_np is not None else {k: to_numpy(v) for k, v in
                                                    rec.tor.arrays.items()}
    for k, v in t_np.items():                  # the torch side's weights, as they are now
        np.copyto(probe.param_arrays[k], v)
    xb, yb = rec.batch64(idx)
    yb = yb if yb.dtype.kind == "i" else yb.astype(cfg.dtype, copy=False)
    acts = probe.forward_cache(xb.astype(cfg.dtype, copy=False))          # [a_0 … a_L]
    Et = float(lrow[LCOL["loss_torch"]])
    Ep = float(probe.loss_value(acts[-1], probe.encode_targets(acts[-1], yb)))
    lrow[LCOL["probe_loss"]] = Ep
    lrow[LCOL["loss_rel_diff"]] = abs(Ep - Et) / max(abs(Ep), abs(Et), TINY)
    judge_gradients = type(rec.man) is ManualSide
    metrics = []
    if judge_gradients:
        gp = probe.backward(acts, yb)
        metrics = compare_many([gp[k] for k in rec.keys], [g_np[k][1] for k in rec.keys])
        row[:, COL["gradient_rel_err"]] = [m.rel_err for m in metrics]
    if _parted(rec, t_np) <= _sqrt_u(cfg.dtype):
        # The bound at the torch side's weights differs from the one at the manual side's
        # (rel_tol, this step) in proportion to how far the weights parted: under √u
        # relative, by less than one part in 1e8 (float64) of it, so it serves as is.
        lrow[LCOL["loss_rel_tol"]] = lrow[LCOL["rel_tol"]]
        if judge_gradients:
            row[:, COL["gradient_rel_tol"]] = row[:, COL["rel_tol"]]
        return
    tols, lrow[LCOL["loss_rel_tol"]] = step_bounds(
        probe, probe.params, acts, rec.targets64(idx), metrics, cfg.dtype, losses=(Ep, Et))
    if judge_gradients:
        row[:, COL["gradient_rel_tol"]] = tols


@functools.cache
def _sqrt_u(dtype: str) -> float:
    return math.sqrt(unit_roundoff(dtype))


def _parted(rec, t_np) -> float:
    """max |w_m − w_t| / max |w_t| over the trainable tensors, before this step's update
    (``t_np``: the torch side's weights as numpy), in the weights' dtype."""
    keys = rec.keys
    W = np.empty((2, rec.w_starts[-1] + t_np[keys[-1]].size), t_np[keys[0]].dtype)
    np.concatenate([to_numpy(rec.man.arrays[k]).reshape(-1) for k in keys], out=W[0])
    np.concatenate([t_np[k].reshape(-1) for k in keys], out=W[1])
    np.subtract(W[0], W[1], out=W[0])
    gap, top = np.maximum.reduceat(np.abs(W, out=W), rec.w_starts, axis=1).tolist()  # (P,) each
    # Python's max passes a nan ratio over, as the check has always done
    return max([0.0, *(g / max(t, 1e-300) for g, t in zip(gap, top, strict=True))])


class UpdateCheck:
    """Before the update: ``before`` keeps the manual side's weights, gradients and momentum
    buffers; after it: ``after`` replays that step with torch.optim.SGD and compares.

    Everything lives in flat arrays allocated once, one segment per parameter tensor (the
    tensors torch steps are views of them): a logged step copies into them and reduces
    them segment by segment, whatever the number of parameters.
    """

    def __init__(self, rec):
        self.rec, self.keys, sgd = rec, list(rec.keys), rec.cfg.sgd
        shapes = [tuple(rec.man.arrays[k].shape) for k in self.keys]
        sizes = [math.prod(s) for s in shapes]
        dtype = to_numpy(rec.man.arrays[self.keys[0]]).dtype
        self.starts = np.cumsum([0, *sizes[:-1]])
        bounds = list(zip(self.starts.tolist(), (self.starts + sizes).tolist(), strict=True))
        # W, G, B: weights, gradients, momentum buffers before the step, flat (Σ sizes,)
        self.W, self.G, self.B = (np.zeros(sum(sizes), dtype) for _ in range(3))
        #: per tensor, the segments of W, G, B reshaped: numpy views and torch views
        self.arrays = [[F[a:b].reshape(s) for (a, b), s in zip(bounds, shapes, strict=True)]
                       for F in (self.W, self.G, self.B)]
        self.tensors = [[torch.from_numpy(v) for v in F] for F in self.arrays]
        self.has_buffer = [False] * len(self.keys)
        self.lr, self.mu, self.wd = sgd["lr"], sgd["momentum"], sgd["weight_decay"]
        self.sgd = dict(weight_decay=self.wd, momentum=self.mu, lr=self.lr,
                        dampening=sgd["dampening"], nesterov=sgd["nesterov"], maximize=False)
        u = unit_roundoff(rec.cfg.dtype)
        self.gamma = 2 * UPDATE_OPS * u / (1 - UPDATE_OPS * u)  # both sides round independently

    def before(self, g_np) -> None:
        man = self.rec.man
        buffers = getattr(getattr(man, "opt", None), "momentum_buffer", {})
        for k, w, g, b, j in zip(self.keys, *self.arrays, range(len(self.keys)), strict=True):
            np.copyto(w, to_numpy(man.arrays[k]))
            np.copyto(g, g_np[k][0], casting="same_kind")
            buf = buffers.get(k)
            self.has_buffer[j] = buf is not None and self.mu != 0
            if self.mu != 0:   # (with no momentum B stays 0: its term is 0 either way)
                # an absent buffer reads 0 in the bound (adds nothing, bit for bit)
                np.copyto(b, 0 if buf is None else to_numpy(buf))

    def after(self, row) -> None:
        W, G, B, lr, mu = self.W, self.G, self.B, self.lr, self.mu
        # the bound first: the replay below overwrites W and B in place
        step = (np.abs(G) + self.wd * np.abs(W) + mu * np.abs(B)) * (1 + mu)
        tol = self.gamma * np.maximum.reduceat(np.abs(W) + lr * step, self.starts)
        # torch.optim.SGD.step's own arithmetic (torch.optim.sgd.sgd, the function it
        # calls), without the optimizer object's per-call bookkeeping; foreach=False is
        # what torch.optim.SGD picks for CPU tensors
        w, g, b = self.tensors
        sgd_step(w, g, [bj if has else None for bj, has in zip(b, self.has_buffer, strict=True)],
                 foreach=False, **self.sgd)
        man = self.rec.man
        new = np.concatenate([to_numpy(man.arrays[k]).reshape(-1) for k in self.keys])
        diff = np.abs(new.astype(np.float64) - W.astype(np.float64))
        row[:, COL["update_max_abs_diff"]] = np.maximum.reduceat(diff, self.starts)
        row[:, COL["update_tol"]] = tol
