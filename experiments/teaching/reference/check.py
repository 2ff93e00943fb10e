"""A learner's gradients checked against a reference model (any model in torch).

The same three parts as the MLP's check (experiments.teaching.check.api):

1. the initial point, on the first batch: the learner's gradients against autograd (each
   parameter held to the measured tolerance, ``experiments.core.reference``) and against
   central finite differences; a second call after one SGD step (a function that
   accumulates across calls shows there); the learner's ``update`` against SGD's; and the
   intermediates the learner returns, against autograd's (``intermediates``);
2. training: the learner's side (``side.ModelSide``) in lockstep with the reference's
   autograd side (``reference.ReferenceSide``) through the one engine (``engine.Lockstep``,
   synced: each step judges the learner's code at autograd's weights);
3. the verdict: agree, or differ with the first differing parameter, the generic
   diagnosis (``experiments.core.diagnose``: a constant ratio, a sign, a transpose,
   accumulation) in the learner's names, and the first wrong intermediate.

The result is the MLP check's ``CheckResult`` (same statuses and exit codes), so grading
treats both alike.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from experiments.core.config import ConfigError
from experiments.core.diagnose import diagnose, fit_ratio, param_kinds
from experiments.core.engine import Lockstep, Observer, batches, finite
from experiments.core.metrics import TINY, compare_many, verdict
from experiments.core.reference import (
    Reference,
    ReferenceSide,
    allowed,
    fd_rel_err,
    finite_differences,
)
from experiments.core.runner import Diverged
from experiments.core.threads import limited_threads
from experiments.core.tolerance import unit_roundoff
from experiments.teaching.boundary.learner import BadLearner, LearnerError
from experiments.teaching.check.api import CheckResult, failed
from experiments.teaching.reference import intermediates as inter_report
from experiments.teaching.reference.side import GRADIENTS, ModelSide, from_learner, to_learner

#: initial.csv for a reference: one row per call and parameter (or intermediate)
COLUMNS = ["call", "name", "key", "rel_err", "rel_tol", "fd_rel_err", "max_abs_diff",
           "ratio", "verdict", "kind"]
#: steps.csv: one row per training step and parameter
STEP_COLUMNS = ["step", "name", "key", "rel_err", "rel_tol", "max_abs_diff", "verdict"]


@dataclass
class Judged:
    """One comparison of the learner's gradients with autograd's, at one point."""

    call: str                          # "gradients", "gradients, 2nd call", "step 12"
    yours: dict                        # the learner's parameter gradients (reference keys)
    autograd: dict
    tols: dict
    findings: list
    inter: pd.DataFrame                # intermediates.COLUMNS
    differ: list = field(default_factory=list)   # differing keys, reference order


@dataclass
class ModelCheck:
    """What ``check_model`` found, besides the CheckResult."""

    ref: Reference
    table: pd.DataFrame                # COLUMNS
    steps: pd.DataFrame                # STEP_COLUMNS
    judged: Judged | None = None       # the point diagnosed (the first that differs)
    first: Judged | None = None        # the first call at the initial point


def order(ref: Reference):
    """The run's batch order: (step, epoch, idx); mini-batches reshuffled from seed 0."""
    B = ref.N if ref.batch_size is None else ref.batch_size
    return list(batches(ref.N, B, True, np.random.default_rng(0), ref.steps))


def _judge(call, ref, auto: ReferenceSide, learner_grads, learner_inter, idx, previous=None):
    g_t = {k: v.detach().numpy().copy() for k, v in auto.last_grads.items()}
    noise = auto.noise(idx)
    tols = {k: allowed(learner_grads[k], g_t[k], noise[k], ref.dtype) for k in g_t}
    N = ref.N if idx is None else len(idx)
    findings = diagnose(learner_grads, g_t, rel_tol=tols, batch=N, previous=previous)
    metrics = compare_many([learner_grads[k] for k in g_t], [g_t[k] for k in g_t])
    differ = [k for k, m in zip(g_t, metrics, strict=True)
              if verdict(m.max_abs_diff, m.rel_err, tols[k]) == "differ"]
    inter = inter_report.compare(ref, learner_inter, auto.intermediate_grads, noise)
    return Judged(call, learner_grads, g_t, tols, findings, inter, differ)


def _rows(j: Judged, ref: Reference, fd=None) -> list[list]:
    kinds = param_kinds(j.findings, list(j.autograd))
    rows = []
    for k, g_t in j.autograd.items():
        g = j.yours[k]
        m = compare_many([g], [g_t])[0]
        fd_err = fd_rel_err(g, fd[k]) if fd is not None else math.nan
        rows.append([j.call, ref.learner_name(k), k, m.rel_err, j.tols[k], fd_err,
                     m.max_abs_diff, fit_ratio(g, g_t)[0],
                     verdict(m.max_abs_diff, m.rel_err, j.tols[k]), kinds[k]])
    for r in j.inter.itertuples():
        rows.append([j.call, r.name, r.key, r.rel_err, r.rel_tol, math.nan, r.max_abs_diff,
                     math.nan, {"close": "agree", "wrong": "differ"}.get(r.verdict, r.verdict),
                     "intermediate"])
    return rows


class _Recorder(Observer):
    """Each step: the learner's gradients and intermediates against autograd's."""

    def __init__(self, ref, side: ModelSide, auto: ReferenceSide):
        self.ref, self.side, self.auto = ref, side, auto
        self.rows, self.first = [], None

    def compare(self, step, epoch, idx, r, evals) -> None:
        if not (math.isfinite(r[0]) and finite(r[1])):
            raise Diverged(f"autograd's loss or gradients are not finite at step {step} (E = "
                           f"{r[0]:.6g}): the reference's training diverged (LR = "
                           f"{self.ref.lr:g} too large for this model?)")
        j = _judge(f"step {step}", self.ref, self.auto, evals[0][1], self.side.intermediates,
                   idx)
        for k in j.autograd:
            m = compare_many([j.yours[k]], [j.autograd[k]])[0]
            self.rows.append([step, self.ref.learner_name(k), k, m.rel_err, j.tols[k],
                              m.max_abs_diff, verdict(m.max_abs_diff, m.rel_err, j.tols[k])])
        if self.first is None and (j.differ or (j.inter["verdict"] == "wrong").any()):
            self.first = j


def check_model(learner, ref: Reference) -> tuple[CheckResult, ModelCheck]:
    """The three parts of the module docstring, with a loaded learner (``Learner`` or
    ``LearnerProcess``); the learner's failures become the result's status. A reference
    that does not train with plain SGD (a config's with momentum, say) raises
    ``ConfigError``: the learner's side steps w − lr·g."""
    plain_sgd(ref)
    t0 = time.perf_counter()
    mc = ModelCheck(ref, pd.DataFrame(columns=COLUMNS), pd.DataFrame(columns=STEP_COLUMNS))
    try:
        with limited_threads(1):   # small tensors: a second thread only contends
            result = _check(learner, ref, mc)
    except LearnerError as err:
        result = failed(learner.name, err)
    result.seconds = time.perf_counter() - t0
    result.convention = "reference"
    from experiments.teaching.reference.report import explanation
    result.explanation = explanation(result, mc)
    return result, mc


def plain_sgd(ref: Reference) -> None:
    """``ConfigError`` for a reference that trains with more than plain SGD."""
    if not ref.plain:
        k, v = next(iter(ref.sgd.items()))
        raise ConfigError(f"{ref.source}: {k} = {v}; a learner is checked against a reference "
                          f"that trains with plain SGD (--set {k}=0)")


def _check(learner, ref: Reference, mc: ModelCheck) -> CheckResult:
    runs = order(ref)
    idx = runs[0][2]
    auto = ReferenceSide(ref)
    learner.bind(ref.X, ref.Y)
    w0 = {k: auto.params[k] for k in ref.params}     # the trained parameters
    # 1. the initial point
    auto.evaluate(idx)
    Xb, Yb = auto.batch(idx)
    fd = finite_differences(ref, w0, Xb, Yb)
    shapes = {k: v.shape for k, v in auto.intermediate_grads.items()}
    raw = learner.gradients(to_learner(ref, w0), idx)
    g, gi = from_learner(ref, raw, GRADIENTS, shapes)
    j = mc.first = _judge("gradients", ref, auto, g, gi, idx)
    rows = _rows(j, ref, fd)
    if not _wrong(j):
        g0 = j.autograd
        auto.update(None)                                  # torch.optim.SGD's first step
        w1 = {k: auto.params[k] for k in ref.params}
        auto.evaluate(idx)
        g, gi = from_learner(ref, learner.gradients(to_learner(ref, w1), idx), GRADIENTS,
                             shapes)
        j = _judge("gradients, 2nd call", ref, auto, g, gi, idx, previous=g0)
        rows += _rows(j, ref)
        if not _wrong(j) and learner.has_update:
            j, update_rows = _check_update(learner, ref, w0, g0, w1)
            rows += update_rows
    mc.table = pd.DataFrame(rows, columns=COLUMNS)
    if _wrong(j):
        mc.judged = j
        return _differ(learner.name, ref, j, mc)
    # 2. training, in lockstep through the one engine
    side = ModelSide(ref, learner, ReferenceSide(ref))
    auto = ReferenceSide(ref)
    rec = _Recorder(ref, side, auto)
    engine = Lockstep([side], reference=auto, mode="synced")
    try:
        engine.run(runs, rec)
    except Diverged as err:
        mc.steps = pd.DataFrame(rec.rows, columns=STEP_COLUMNS)
        return CheckResult(learner.name, "diverged", 3, str(err), **_worst(mc))
    mc.steps = pd.DataFrame(rec.rows, columns=STEP_COLUMNS)
    if rec.first is not None:
        mc.judged = rec.first
        return _differ(learner.name, ref, rec.first, mc)
    worst = _worst(mc)
    return CheckResult(learner.name, "agree", 0,
                       f"every gradient agrees with autograd at the initial point and over "
                       f"{ref.steps} training steps (worst rel_err {worst['worst_rel_err']:.2g}, "
                       f"{worst['worst_ratio']:.2g} of the tolerance)", "agree", **worst)


def _wrong(j: Judged) -> bool:
    return bool(j.differ) or bool((j.inter["verdict"] == "wrong").any())


def _check_update(learner, ref, w0, g0, w1):
    """The learner's update from autograd's gradients against torch.optim.SGD's (w1)."""
    raw = learner.update(to_learner(ref, w0), to_learner(ref, g0), ref.lr)
    new, _ = from_learner(ref, raw, "update(params, grads, lr)", params_only=True)
    u = unit_roundoff(ref.dtype)
    tols = {k: 4 * u * (float(np.linalg.norm(w0[k])) + float(np.linalg.norm(ref.lr * g0[k])))
            / max(float(np.linalg.norm(w1[k])), TINY) for k in w0}
    findings = diagnose({k: new[k] - w0[k] for k in w0}, {k: w1[k] - w0[k] for k in w0},
                        rel_tol=tols)
    j = Judged("update", new, w1, tols, findings, inter_report.compare(ref, {}, {}, {}))
    rows = []
    for k in w0:
        m = compare_many([new[k]], [w1[k]])[0]
        v = verdict(m.max_abs_diff, m.rel_err, tols[k])
        if v == "differ":
            j.differ.append(k)
        rows.append(["update", ref.learner_name(k), k, m.rel_err, tols[k], math.nan,
                     m.max_abs_diff, fit_ratio(new[k] - w0[k], w1[k] - w0[k])[0], v,
                     "update" if v == "differ" else "agree"])
    return j, rows


NOISE_TOL = 0.01   # a rel_tol above this: autograd's gradient is itself rounding noise


def _worst(mc: ModelCheck) -> dict:
    """The worst rel_err (over gradients that are not rounding noise: exactly zero in exact
    arithmetic, where any rel_err is noise over noise) and the worst rel_err / rel_tol."""
    rel, ratio = [], []
    for t in (mc.table[mc.table["kind"] != "intermediate"], mc.steps):
        if not t.empty and t["rel_err"].notna().any():
            real = t[t["rel_tol"] <= NOISE_TOL]
            if not real.empty:
                rel.append(float(real["rel_err"].max()))
            ratio.append(float((t["rel_err"] / t["rel_tol"]).max()))
    return {"worst_rel_err": max(rel, default=math.nan),
            "worst_ratio": max(ratio, default=math.nan)}


def _differ(name: str, ref: Reference, j: Judged, mc: ModelCheck) -> CheckResult:
    from experiments.teaching.reference.report import sentences

    said = sentences(ref, j)
    first = j.differ[-1] if j.differ else ""   # backprop reaches the last parameter first
    kind = ("update" if j.call == "update" else
            param_kinds(j.findings, list(j.autograd))[first] if first else "intermediate")
    return CheckResult(name, "differ", 1, said[0], kind,
                       ref.learner_name(first) if first else inter_report.first_wrong(j.inter),
                       sentences=said, **_worst(mc))


def check_reference(gradients, ref: Reference, *, update=None, name: str | None = None
                    ) -> CheckResult:
    """Check function objects against ``ref`` in this process (a test, a notebook)."""
    from experiments.teaching.boundary.learner import Learner

    name = name or getattr(gradients, "__name__", "gradients")
    try:
        learner = Learner(gradients, update, "torch", name)
    except LearnerError as err:
        return failed(name, err)
    return check_model(learner, ref)[0]


__all__ = ["BadLearner", "check_model", "check_reference", "check_reference_file"]


def check_reference_file(path, reference, *, steps: int | None = None,
                         timeout: float = 60.0, memory_mb: int = 1024, out=None,
                         force: bool = False, plots: bool = True, helpers=None,
                         follow: bool = True, definitions_only: bool = False) -> CheckResult:
    """Check a learner's file, in its own sandboxed process, against ``reference`` (a
    reference file's path or a loaded Reference), as ``handgrad check FILE reference.py``
    does; with ``out``, the check folder is written there unless the input was bad
    (``plots=False``: without its figure). A bad reference raises ``ReferenceError``
    before anything runs."""
    from pathlib import Path

    from experiments.output.rundir import check_out
    from experiments.teaching.boundary.process import LearnerProcess, check_limits
    from experiments.teaching.reference.load import load_reference
    from experiments.teaching.reference.report import write_check

    ref = reference if isinstance(reference, Reference) else load_reference(reference, steps)
    plain_sgd(ref)
    check_limits(timeout, memory_mb)
    if out is not None:
        check_out(Path(out), force, "check", legacy=False)
    path = Path(path)
    if helpers is None:
        helpers = sorted(p for p in path.parent.glob("*.py") if p.name != path.name
                         and p.is_file() and not p.is_symlink())
    t0 = time.perf_counter()
    mc = None
    try:
        learner = LearnerProcess(path, timeout=timeout, memory_mb=memory_mb, helpers=helpers,
                                 follow=follow, definitions_only=definitions_only)
    except LearnerError as err:
        result = failed(path.name, err)
    else:
        try:
            result, mc = check_model(learner, ref)
            result.autograd_runs = learner.autograd_runs() or 0
        finally:
            output = learner.close()
        result.output, result.sha256 = output, learner.sha256
        result.sandbox_missing = learner.sandbox_missing
        result.notes, result.mode = list(learner.notes), learner.mode
    result.seconds = time.perf_counter() - t0
    if out is not None and result.exit_code != 2 and mc is not None:
        write_check(result, mc, Path(out), force=force, plots=plots)
    return result
