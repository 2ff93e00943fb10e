"""The check at the initial point: the learner's code against autograd, before any training.

On the run's first batch (the batch step 0 trains on, and the one ``handgrad explain``
explains), at the initial weights:

    gradients           the learner's gradients against autograd (torch_impl) and central
                        finite differences (manual.finite_difference_gradients, float64),
                        each parameter held to the runner's rounding bound rel_tol =
                        2γ_m·cond (experiments.core.tolerance) and diagnosed by
                        experiments.core.diagnose
    gradients, 2nd call the next call, as training makes it: same batch, the weights after
                        torch.optim.SGD's first step. A correct function agrees again; one
                        that accumulates across calls returns autograd's gradient there plus
                        the first call's (diagnose's ``accumulated``, with ``previous`` =
                        autograd's first gradient). At the same weights that sum would be a
                        plain factor 2, which diagnose would read as a constant ratio.
    update              (files with ``update``) the learner's step from the initial weights
                        with autograd's gradients against torch.optim.SGD's, held to the rounding of
                        w − lr·g on both sides: 4u(‖w‖ + ‖lr·g‖) / ‖w⁺‖
    update, lr/2        the same at half the config's lr, against w − (lr/2)·g: an update
                        that never reads its lr argument agrees at lr = 1 and differs here

The second call is made only when the first agrees, so a diagnosis always reads one
call. ``table`` has one row per call and parameter (``CHECK_COLUMNS``: initial.csv).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

import manual
import torch_impl
from experiments.core.config import RunConfig
from experiments.core.diagnose import Finding, diagnose, fit_ratio, param_kinds
from experiments.core.engine import batches
from experiments.core.metrics import TINY, compare_many, verdict
from experiments.core.reference import ReferenceSide, mlp_reference
from experiments.core.runner import initial_state
from experiments.core.schema import CHECK_COLUMNS
from experiments.core.tolerance import step_tolerances, unit_roundoff
from experiments.teaching.boundary.learner import LearnerError
from experiments.teaching.check.side import Convention

CALLS = ("gradients", "gradients, 2nd call", "update", "update, lr/2")


@dataclass
class Initial:
    """The initial-point check: the calls made, their table, the diagnosed call."""

    config: RunConfig                 # resolved (sizes filled in)
    convention: Convention
    params: dict                      # the initial weights (torch keys)
    X: np.ndarray                     # the first batch (N, D)
    Y: np.ndarray
    autograd: dict                    # torch_impl's gradients there
    fd: dict                          # central differences there (float64; the 1st call)
    table: pd.DataFrame               # CHECK_COLUMNS
    call: str = ""                    # the first call that differs ("" = none)
    yours: dict = field(default_factory=dict)     # that call's result (torch keys)
    reference: dict = field(default_factory=dict) # what it is compared with
    weights: dict = field(default_factory=dict)   # the weights that call was made at
    findings: list = field(default_factory=list)  # experiments.core.diagnose.Finding
    dtypes: dict = field(default_factory=dict)    # that call's arrays' dtypes as returned

    @property
    def differs(self) -> bool:
        return bool(self.call)

    @property
    def shape_transposed(self) -> list[str]:
        """Keys whose gradient came back with the transposed shape (training cannot use it)."""
        return [k for k, v in self.yours.items() if v.shape != self.reference[k].shape]


def first_batch(cfg: RunConfig):
    """``(cfg, X, Y, params, idx)``: the resolved config, the run's data in its dtype (as the
    runner binds it), the initial weights and step 0's rows (None: the full batch)."""
    cfg, data, params, order_rng, _ = initial_state(cfg)
    X = data.X.astype(cfg.dtype)                                         # (N, D)
    Y = data.Y if data.Y.dtype.kind == "i" else data.Y.astype(cfg.dtype)
    N = X.shape[0]
    B = N if cfg.batch_size == "full" else cfg.batch_size
    _, _, idx = next(batches(N, B, cfg.shuffle, order_rng, 1))
    return cfg, X, Y, params, idx


def check_initial(cfg: RunConfig, learner) -> Initial:
    """Run the calls of the module docstring; stop at the first that differs."""
    cfg, X, Y, w0, idx = first_batch(cfg)
    conv = Convention(learner.convention, cfg.sizes, cfg.bias, f"`{cfg.name}`")
    Xb, Yb = (X, Y) if idx is None else (X[idx], Y[idx])
    net = manual.MLP(cfg.sizes, **cfg.spec(), params=w0)
    tor = ReferenceSide(mlp_reference(torch_impl.MLP(cfg.sizes, **cfg.spec(), params=w0),
                                      X, Y, cfg.sgd))    # the run's autograd side, at w0
    _, g0, _ = tor.gradients_at(idx)
    tor.update(g0)                           # autograd left its gradients in .grad
    w1 = tor.params                          # torch.optim.SGD's step: the 2nd call's point
    fd = manual.finite_difference_gradients(net, Xb, Yb)
    init = Initial(cfg, conv, w0, Xb, Yb, g0, fd, pd.DataFrame(columns=CHECK_COLUMNS))
    learner.bind(X, Y)
    rows: list[list] = []
    try:
        _calls(init, learner, net, tor, w0, w1, g0, fd, Xb, Yb, idx, rows)
    except LearnerError as err:   # a later call failed: what the earlier ones showed stays
        init.table = pd.DataFrame(rows, columns=CHECK_COLUMNS)
        err.initial = init
        raise
    init.table = pd.DataFrame(rows, columns=CHECK_COLUMNS)
    return init


def _calls(init, learner, net, tor, w0, w1, g0, fd, Xb, Yb, idx, rows: list) -> None:
    """The calls of the module docstring, their rows appended to ``rows`` as made."""
    cfg, conv = init.config, init.convention
    for call, w, previous in ((CALLS[0], w0, None), (CALLS[1], w1, g0)):
        net.set_params(w)
        g_t = g0 if previous is None else tor.gradients_at(idx)[1]
        raw = learner.gradients(conv.to_learner(w), idx)
        g = conv.from_learner(raw, "gradients(params, X, Y)", dtype=cfg.dtype,
                              trained=net.trainable, transposed_ok=True, finite=True,
                              batch=len(Xb))
        tols = _tolerances(net, w, Xb, Yb, g, g_t, cfg.dtype)
        findings = diagnose(g, g_t, rel_tol=tols, batch=len(Xb), previous=previous)
        rows += _gradient_rows(call, conv, g, g_t, fd if previous is None else None, tols,
                               findings)
        if _differs(rows):
            init.call, init.yours, init.reference, init.findings = call, g, g_t, findings
            init.weights = w
            init.dtypes = {k: str(raw[conv.name_of(k)].dtype) for k in g}   # before the cast
            break
    if not init.differs and learner.has_update:
        rows += _check_update(init, learner, w1)


def _differs(rows) -> bool:
    return any(r[CHECK_COLUMNS.index("verdict")] == "differ" for r in rows)


def _tolerances(net, params, X, Y, g, g_t, dtype) -> dict[str, float]:
    """Each parameter's rel_tol at this point, as the runner computes it at step 0."""
    keys = net.trainable
    acts = net.forward_cache(X)                                          # [a_0 … a_L]
    T = net.encode_targets(acts[-1], Y)                                  # (N, K)
    aligned = [g[k] if g[k].shape == g_t[k].shape else g[k].T for k in keys]  # transposed back
    metrics = compare_many(aligned, [g_t[k] for k in keys])
    return dict(zip(keys, step_tolerances(net, params, acts, T, metrics, dtype), strict=True))


def _gradient_rows(call, conv, g, g_t, fd, tols, findings) -> list[list]:
    kinds = param_kinds(findings, list(g_t))
    rows = []
    for k in g_t:
        if g[k].shape != g_t[k].shape:   # transposed shape: no entry-by-entry comparison
            rows.append([call, conv.name_of(k), k, math.nan, tols[k], math.nan, math.nan,
                         math.nan, "differ", kinds[k]])
            continue
        m = compare_many([g[k]], [g_t[k]])[0]
        fd_err = compare_many([g[k]], [fd[k]])[0].rel_err if fd is not None else math.nan
        rows.append([call, conv.name_of(k), k, m.rel_err, tols[k], fd_err,
                     m.max_abs_diff, fit_ratio(g[k], g_t[k])[0],
                     verdict(m.max_abs_diff, m.rel_err, tols[k]), kinds[k]])
    return rows


def _check_update(init: Initial, learner, sgd: dict) -> list[list]:
    """The learner's update from the initial weights with autograd's gradients against
    torch.optim.SGD's (``sgd``) at the config's lr; when that agrees, once more at lr/2
    against w − (lr/2)·g, so an update that never reads its ``lr`` (one that hard-codes
    lr = 1, on a config whose lr is 1) differs there."""
    cfg, w = init.config, init.params
    probe = {k: w[k] - (cfg.lr / 2) * init.autograd[k] for k in init.autograd}
    rows = []
    for call, lr, ref in ((CALLS[2], cfg.lr, sgd), (CALLS[3], cfg.lr / 2, probe)):
        rows += _update_rows(init, learner, call, lr, ref)
        if init.differs:
            break
    return rows


def _update_rows(init: Initial, learner, call: str, lr: float, ref: dict) -> list[list]:
    """One call of the learner's update at ``lr``, against ``ref`` (w⁺ of plain SGD)."""
    cfg, conv, w = init.config, init.convention, init.params
    keys = list(init.autograd)
    raw = learner.update(conv.to_learner(w), conv.to_learner(init.autograd), lr)
    new = conv.from_learner(raw, "update(params, grads, lr)", dtype=cfg.dtype, trained=keys,
                            finite=True)
    u = unit_roundoff(cfg.dtype)
    rows, ratios = [], {}
    for k in keys:
        m = compare_many([new[k]], [ref[k]])[0]
        step = float(np.linalg.norm(lr * init.autograd[k]))
        tol = 4 * u * (float(np.linalg.norm(w[k])) + step) / max(m.norm_manual, m.norm_torch,
                                                                  TINY)
        c = fit_ratio(new[k] - w[k], ref[k] - w[k])[0]
        v = verdict(m.max_abs_diff, m.rel_err, tol)
        ratios[k] = c
        rows.append([call, conv.name_of(k), k, m.rel_err, tol, math.nan, m.max_abs_diff,
                     c, v, "update" if v == "differ" else "agree"])
    if _differs(rows):
        bad = tuple(k for k, r in zip(keys, rows, strict=True) if r[-2] == "differ")
        init.call, init.yours, init.reference, init.weights = call, new, ref, w
        init.findings = [Finding("update", bad, "the update differs from torch.optim.SGD's",
                                 {"c": ratios[bad[0]], "lr": lr})]
    return rows
