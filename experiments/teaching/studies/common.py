"""What the studies share: the manual side replayed on the engine, one arm's manual-vs-torch
record, parameters as one flat vector, the loss Hessian, and the pieces of a report.

A study's tables travel as ``Frames``, {CSV stem: DataFrame}: exactly what its CSVs hold.
What a report needs beyond them (wall times) rides in the per-arm frame's ``attrs``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np
import pandas as pd

import manual
from experiments.core.config import RunConfig, replace
from experiments.core.engine import Lockstep, ManualSide, Observer, batches
from experiments.core.runner import RunResult, initial_state
from experiments.core.verdict import summarize
from experiments.output.report import markdown_table

Frames = dict[str, pd.DataFrame]
ZERO_FLOOR = 1e-17   # exact zeros on a log axis are drawn here, and the figure says so
ZERO_MARKER = "v"    # exact zeros drawn at ``zero_floor``: a marker no measured value uses


class _NonFinite(Exception):
    pass


class _Visit(Observer):
    """Records each step's loss and calls ``visit`` before the update; a non-finite loss
    stops the replay there, as the runner stops a diverging run."""

    def __init__(self, replay: Replay, visit: Callable | None):
        self.replay, self.visit = replay, visit

    def compare(self, step, epoch, idx, ref, evals) -> None:
        E, grads = evals[0]
        self.replay.losses[step] = E
        if self.visit is not None:
            self.visit(step, idx, E, grads, self.replay.net)
        if not math.isfinite(E):
            raise _NonFinite


class Replay:
    """The manual side alone, with the runner's init and batch order, on the engine.

    ``runner.initial_state`` draws the initial weights and the batch order (a permutation
    per epoch, mini-batches only, when ``shuffle``) from two children of
    ``SeedSequence(seed)``; this starts from the same state and steps one ``ManualSide``
    through ``Lockstep`` in free mode, so the loss it sees at every step equals a free
    run's ``loss_manual`` bit for bit; against a synced run, whose manual side follows
    torch's weights, it differs by the rounding drift between the two trajectories (each
    study records it: ``replay_max_abs_diff``). ``run(visit)``
    calls ``visit(step, idx, loss, grads, net)`` before each update, ``net`` holding the
    weights that step starts from (``idx`` None: the full batch), and fills ``losses``.
    """

    def __init__(self, cfg: RunConfig):
        self.cfg, self.data, self.params0, self._order_rng, _ = initial_state(cfg)
        cfg = self.cfg
        self.net = manual.MLP(cfg.sizes, **cfg.spec(), params=self.params0)
        self.X = self.data.X.astype(cfg.dtype)                        # (N, D)
        Y = self.data.Y
        self.Y = Y if Y.dtype.kind == "i" else Y.astype(cfg.dtype)    # (N, K) or (N,)
        self.N = self.X.shape[0]
        self.B = self.N if cfg.batch_size == "full" else cfg.batch_size
        self.steps_per_epoch = math.ceil(self.N / self.B)
        self.total = cfg.steps or cfg.epochs * self.steps_per_epoch
        self.losses = np.full(self.total, np.nan)                     # (steps,)

    def run(self, visit: Callable | None = None) -> int:
        """Train; return the number of updates made (stops early at a non-finite loss)."""
        side = ManualSide(self.net, self.cfg.sgd).bind(self.X, self.Y)
        engine = Lockstep([side], mode="free")
        order = batches(self.N, self.B, self.cfg.shuffle, self._order_rng, self.total)
        with np.errstate(all="ignore"):
            try:
                return engine.run(order, _Visit(self, visit))
            except _NonFinite:
                return engine.step


def log_400(cfg: RunConfig) -> RunConfig:
    """``cfg`` logging every k-th step, k chosen for about 400 logged steps."""
    return replace(cfg, log_every=max(1, Replay(cfg).total // 400))


def agreement(result: RunResult, replay_loss: np.ndarray | None = None) -> dict:
    """One arm's manual-vs-torch record (``AGREEMENT_COLUMNS``): the runner's mode, its
    status, the worst rel_err, worst rel_err / rel_tol and the verdict over the logged
    steps with finite gradients (as ``verdict.summarize``: the verdict is the ``all`` row's,
    ``differ`` when the loss or any parameter differs), the worst weight and loss
    differences, how far a replay's losses are from ``loss_manual``, and the loss row's
    worst_ratio."""
    g = result.grads
    # a step with any non-finite gradient (a diverged run's last row) says nothing
    ok = np.isfinite(g[["norm_manual", "norm_torch", "rel_err", "rel_tol"]]).all(axis=1)
    bad = g.loc[~ok, "step"]
    grads = g[~g["step"].isin(bad)]
    keys = list(dict.fromkeys(g["param"]))
    row = {"lockstep_mode": result.config.mode, "status": result.status,
           "steps_done": result.steps_done, "rel_err": np.nan,
           "worst_ratio": np.nan, "verdict": "none", "weight_max_abs_diff": np.nan,
           "loss_abs_diff": np.nan, "replay_max_abs_diff": np.nan, "loss_worst_ratio": np.nan}
    if not grads.empty:
        summary = summarize(grads, keys, result.loss[~result.loss["step"].isin(bad)])
        s = summary.iloc[-1]
        row.update(rel_err=s["rel_err"], worst_ratio=s["worst_ratio"], verdict=s["verdict"],
                   weight_max_abs_diff=grads["weight_max_abs_diff"].max(),
                   loss_worst_ratio=summary.set_index("param")["worst_ratio"].get("loss",
                                                                                   np.nan))
    loss = result.loss[np.isfinite(result.loss["abs_diff"])]
    if not loss.empty:
        row["loss_abs_diff"] = loss["abs_diff"].max()
    if replay_loss is not None:
        steps = result.loss["step"].to_numpy()
        mine = replay_loss[steps[steps < len(replay_loss)]]
        theirs = result.loss["loss_manual"].to_numpy()[: len(mine)]
        same = (mine == theirs) | (np.isnan(mine) & np.isnan(theirs))
        with np.errstate(invalid="ignore"):
            diff = np.where(same, 0.0, np.abs(mine - theirs))
        row["replay_max_abs_diff"] = float(np.nan_to_num(diff, nan=np.inf).max())
    return row


def flat(params: dict, keys: list[str]) -> np.ndarray:
    """The parameters named by ``keys`` as one float64 vector, in key order."""
    return np.concatenate([np.asarray(params[k], dtype=np.float64).ravel() for k in keys])


def unflat(vector: np.ndarray, like: dict, keys: list[str]) -> dict:
    """``like`` with the tensors named by ``keys`` replaced from ``vector`` (as ``flat``)."""
    out, start = dict(like), 0
    for k in keys:
        n = like[k].size
        out[k] = vector[start:start + n].reshape(like[k].shape)
        start += n
    return out


def hessian_eigenvalues(net: manual.MLP, X, Y, h: float = 1e-5) -> np.ndarray:
    """Eigenvalues (ascending) of the loss Hessian over the trainable parameters at the
    net's current weights, by central differences of the hand-derived gradient:
    H[:, i] = (g(w + h e_i) − g(w − h e_i)) / 2h, symmetrised. The error is O(h²) from
    the third derivative plus ~u‖G̃‖/h from rounding: ~1e-10 for the small networks
    here, far below the eigenvalues used (the largest, the sharpness λ_max, sets the
    quadratic model's stable step lr < 2/λ_max; the smallest, > 0, marks a strict minimum).
    """
    keys, p = net.trainable, net.params
    w = flat(p, keys)                                              # (P,)
    H = np.empty((w.size, w.size))                                 # (P, P)
    for i in range(w.size):
        cols = []
        for sign in (1.0, -1.0):
            v = w.copy()
            v[i] += sign * h
            net.set_params(unflat(v, p, keys))
            cols.append(flat(net.gradients(X, Y), keys))           # (P,)
        H[:, i] = (cols[0] - cols[1]) / (2 * h)
    net.set_params(p)
    return np.linalg.eigvalsh((H + H.T) / 2)


# ------------------------------------------------------------------ figures and reports

def zero_floor(values) -> float:
    """Where exact zeros go on a log axis: a decade below the smallest non-zero value, so a
    zero is never drawn above a real (if tiny) number; ``ZERO_FLOOR`` if all are zero."""
    from experiments.output.style import zero_floor as floor

    return floor(values, ZERO_FLOOR)


def fmt(x: float) -> str:
    return f"{x:.3g}"


def pct(fraction: float) -> str:
    return f"{100 * fraction:.3g}%"


def span(values: pd.Series) -> str:
    return f"{values.min():.3g}–{values.max():.3g}"


def listed(values: Iterable, spec: str = ".3g") -> str:
    return ", ".join(f"{v:{spec}}" for v in values)


def verdicts(frame: pd.DataFrame, column: str = "verdict") -> str:
    return ", ".join(sorted(set(frame[column])))


def agreement_line(arms: pd.DataFrame, note: str = "", replay: bool = True) -> str:
    """The report's manual-vs-torch bullet (no final stop): worst rel_err over the arms, its
    share of the per-step tolerance, the verdicts and (``replay``) the replay's distance to
    the runner's losses; ``note`` follows "Manual vs torch"."""
    line = (f"- Manual vs torch{note}: worst rel_err {fmt(arms['rel_err'].max())} "
            f"({fmt(arms['worst_ratio'].max())} of the per-step tolerance), verdicts "
            f"{verdicts(arms)}")
    if replay:
        line += (f"; the replay (`experiments.teaching.studies.Replay`, the manual side "
                 f"alone) reproduces the runner's `loss_manual` to "
                 f"{fmt(arms['replay_max_abs_diff'].max())}")
    return line


def essay(doc: str, tables: list[pd.DataFrame], legend: list[str],
          sees: list[str]) -> list[str]:
    """A report's body: what ran (``doc``, the study module's docstring, up to its indented
    list of CSVs), the numbers (tables, then what their columns mean), what one sees."""
    numbers = [line for t in tables for line in (markdown_table(t), "")]
    return ["## What ran", "", doc.split("\n\n    ")[0].strip(), "", "## Numbers", "",
            *numbers, *legend, "", "## What one sees", "", *sees, ""]


def write_report(folder: Path, title: str, quick: bool, lines: list[str],
                 figures: list[str]) -> None:
    text = [f"# handgrad study: {title}", ""]
    if quick:
        text += ["The quick version (`--quick`: fewer steps); config.toml holds every setting.",
                 ""]
    text += [*lines, "", "## Figures", "", *[f"![{f}]({f})" for f in figures], ""]
    (folder / "report.md").write_text("\n".join(text), encoding="utf-8")
