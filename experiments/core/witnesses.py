"""The runner's witnesses beside the plain manual-vs-torch comparison, one per question:

    float64_reference   float32 runs: each side's gradient against a float64 one at that
                        side's weights (ref_rel_err_manual, ref_rel_err_torch)
    finite_differences  central differences in float64 at the torch side's weights
                        (fd_rel_err: the worse side's rel_err to them)
    same_weights        free runs: the manual code evaluated at the torch side's weights, so
                        the gradient code is judged apart from the drift of the weights
                        (gradient_rel_err, gradient_rel_tol)
    UpdateCheck         the manual side's SGD step against torch.optim.SGD's step taken on the
                        same weights, gradients and momentum buffers (update_max_abs_diff), held
                        to a one-update rounding bound (update_tol)

Each fills columns of one logged step's row (parameters × ``GRAD_METRICS``); ``rec`` is the
runner's Recorder (config, data, sides).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch.optim.sgd import sgd as sgd_step

import manual
from experiments.core.engine import ManualSide, to_numpy
from experiments.core.metrics import compare_many, rel_err
from experiments.core.schema import GRAD_INDEX as COL
from experiments.core.tolerance import step_tolerances, unit_roundoff

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


def same_weights(rec, row, g_np, idx) -> None:
    """gradient_rel_err / gradient_rel_tol. Synced: the sides started the step on the same
    weights, so these are rel_err / rel_tol. Free: a manual probe at the torch side's
    weights, in the run's dtype, against torch's gradient (for the standard manual side
    only: another side's code, a learner's say, is not called twice per step)."""
    cfg = rec.cfg
    if cfg.mode == "synced":
        row[:, COL["gradient_rel_err"]] = row[:, COL["rel_err"]]
        row[:, COL["gradient_rel_tol"]] = row[:, COL["rel_tol"]]
        return
    if type(rec.man) is not ManualSide:
        return
    if rec.probe is None:
        rec.probe = manual.MLP(cfg.sizes, **cfg.spec(), params=rec.tor.params)
    xb, yb = rec.batch64(idx)
    rec.probe.set_params({k: to_numpy(v) for k, v in rec.tor.arrays.items()})
    yb = yb if yb.dtype.kind == "i" else yb.astype(cfg.dtype)
    acts = rec.probe.forward_cache(xb.astype(cfg.dtype))                  # [a_0 … a_L]
    gp = rec.probe.backward(acts, yb)
    metrics = compare_many([gp[k] for k in rec.keys], [g_np[k][1] for k in rec.keys])
    row[:, COL["gradient_rel_err"]] = [m.rel_err for m in metrics]
    if _parted(rec) <= math.sqrt(unit_roundoff(cfg.dtype)):
        # The bound at the torch side's weights differs from the one at the manual side's
        # (rel_tol, this step) in proportion to how far the weights parted: under √u
        # relative, by less than one part in 1e8 (float64) of it, so it serves as is.
        row[:, COL["gradient_rel_tol"]] = row[:, COL["rel_tol"]]
        return
    row[:, COL["gradient_rel_tol"]] = step_tolerances(
        rec.probe, rec.probe.params, acts, rec.targets64(idx), metrics, cfg.dtype)


def _parted(rec) -> float:
    """max |w_m − w_t| / max |w_t| over the trainable tensors, before this step's update."""
    worst = 0.0
    for k in rec.keys:
        wm, wt = to_numpy(rec.man.arrays[k]), to_numpy(rec.tor.arrays[k])
        worst = max(worst, float(np.max(np.abs(wm - wt))) / max(float(np.max(np.abs(wt))),
                                                                 1e-300))
    return worst


class UpdateCheck:
    """Before the update: ``before`` keeps the manual side's weights, gradients and momentum
    buffers; after it: ``after`` replays that step with torch.optim.SGD and compares."""

    def __init__(self, rec):
        self.rec, self.saved = rec, None

    def before(self, g_np) -> None:
        rec = self.rec
        buffers = getattr(getattr(rec.man, "opt", None), "momentum_buffer", {})
        self.saved = {k: (to_numpy(rec.man.arrays[k]).copy(), g_np[k][0],
                          None if buffers.get(k) is None else to_numpy(buffers[k]).copy())
                      for k in rec.keys}

    def after(self, row) -> None:
        rec, sgd = self.rec, self.rec.cfg.sgd
        # torch.optim.SGD.step's own arithmetic (torch.optim.sgd.sgd, the function it calls),
        # without the optimizer object's per-call bookkeeping
        tensors = {k: torch.tensor(w) for k, (w, _, _) in self.saved.items()}
        sgd_step(
            list(tensors.values()),
            [torch.tensor(g, dtype=tensors[k].dtype) for k, (_, g, _) in self.saved.items()],
            [None if b is None or not sgd["momentum"] else torch.tensor(b)
             for _, _, b in self.saved.values()],
            weight_decay=sgd["weight_decay"], momentum=sgd["momentum"], lr=sgd["lr"],
            dampening=sgd["dampening"], nesterov=sgd["nesterov"], maximize=False)
        u = unit_roundoff(rec.cfg.dtype)
        gamma = 2 * UPDATE_OPS * u / (1 - UPDATE_OPS * u)   # both sides round independently
        lr, mu, wd = sgd["lr"], sgd["momentum"], sgd["weight_decay"]
        for j, (k, (w, g, b)) in enumerate(self.saved.items()):
            new = to_numpy(rec.man.arrays[k]).astype(np.float64)
            ref = tensors[k].detach().numpy().astype(np.float64)
            step = (np.abs(g) + wd * np.abs(w) + (0 if b is None else mu * np.abs(b))) * (1 + mu)
            row[j, COL["update_max_abs_diff"]] = float(np.max(np.abs(new - ref)))
            row[j, COL["update_tol"]] = float(gamma * np.max(np.abs(w) + lr * step))
