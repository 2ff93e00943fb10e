"""Gradient-descent lessons: named studies built from lockstep runs.

Each study trains the network with ``experiments.core.runner.run_experiment`` (so manual and
torch are compared at every logged step of every arm: the runner's mode, the worst
``rel_err``, the worst ``rel_err / rel_tol`` ratio and the verdict are columns of the
study's per-arm table, ``AGREEMENT_COLUMNS``), measures one gradient-descent phenomenon,
and writes one folder:

    report.md      what ran, the numbers, the figures embedded
    *.csv          long-form results (fixed columns per study, listed in each docstring)
    *.png          seaborn figures drawn from those tables (dpi 100)

Like a run directory, the folder is written into ``.NAME.tmp-PID`` next to ``out`` and
renamed into place at the end; an existing folder is refused, before any work, unless
``force``. The CSVs are deterministic (no timings in them); report.md quotes timings.

Every arm of a study shares one data set and one initialisation (the same ``seed``),
except where the initialisation is the thing studied (``convex-vs-nonconvex``), which
varies only the initial weights, drawn from seeds of their own. The arms run in
``synced`` mode, so each step's gradients are compared at the same weights
(``float32-drift-lesson`` runs free and synced: that contrast is its subject).

Per-step quantities the runner does not record (the full-data loss at every step, the
weights themselves, exact-zero counts) come from ``Replay``: the manual side's training
loop re-run on its own with the runner's initialisation and batch order. Column
``replay_max_abs_diff`` says how far its losses are from the runner's ``loss_manual``:
0 (bit for bit) against a free run; against a synced run, whose manual side follows
torch's weights, the rounding drift between the two trajectories.
"""

from __future__ import annotations

import contextlib
import difflib
import itertools
import math
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure

import manual
from experiments.core.config import ConfigError, RunConfig, replace
from experiments.core.runner import RunResult, batches, initial_state, run_experiment, summarize
from experiments.core.schema import (
    BATCH_ARMS_COLUMNS,
    CURVE_COLUMNS,
    CV_INITS_COLUMNS,
    CV_PAIRS_COLUMNS,
    DRIFT_ARMS_COLUMNS,
    DRIFT_COLUMNS,
    LR_ARMS_COLUMNS,
    LR_CURVE_COLUMNS,
    SPARSE_ARMS_COLUMNS,
    SPARSE_MOVE_COLUMNS,
    SPARSE_ZERO_COLUMNS,
)
from experiments.output.plots import DPI
from experiments.output.report import markdown_table
from experiments.output.rundir import atomic_folder, check_out, write_csv

#: columns every study's arms.csv ends with: how the two sides compared in that arm


# ------------------------------------------------------------------ shared machinery


class Replay:
    """The manual side's training loop alone, with the runner's init and batch order.

    ``experiments.core.runner`` draws the initial weights from the first child of
    ``SeedSequence(seed)`` and the batch order (a permutation per epoch, mini-batches
    only, when ``shuffle``) from the second; this does the same, so the loss it sees at
    every step equals the runner's ``loss_manual`` bit for bit (checked by each study).
    ``run(visit)`` calls ``visit(step, idx, loss, grads, net)`` before each update, with
    ``net`` holding the weights that step starts from; ``idx`` is None for a full batch.
    """

    def __init__(self, cfg: RunConfig):
        self.cfg, self.data, self.params0, self._order_rng, _ = initial_state(cfg)
        cfg = self.cfg
        self.net = manual.MLP(cfg.sizes, cfg.activation, cfg.resolved_output_activation,
                              cfg.bias, cfg.loss, cfg.dtype, params=self.params0)
        self.X = self.data.X.astype(cfg.dtype)                        # (N, D)
        Y = self.data.Y
        self.Y = Y if Y.dtype.kind == "i" else Y.astype(cfg.dtype)    # (N, K) or (N,)
        self.N = self.X.shape[0]
        self.B = self.N if cfg.batch_size == "full" else cfg.batch_size
        self.steps_per_epoch = math.ceil(self.N / self.B)
        self.total = cfg.steps or cfg.epochs * self.steps_per_epoch

    def run(self, visit: Callable | None = None) -> int:
        """Train; return the number of updates made (stops early at a non-finite loss)."""
        cfg, net = self.cfg, self.net
        opt = manual.SGD(net.param_arrays, lr=cfg.lr, momentum=cfg.momentum,
                         dampening=cfg.dampening, weight_decay=cfg.weight_decay,
                         nesterov=cfg.nesterov)
        with np.errstate(all="ignore"):
            for step, _, idx in batches(self.N, self.B, cfg.shuffle, self._order_rng,
                                        self.total):
                xb = self.X if idx is None else self.X[idx]           # (B, D)
                yb = self.Y if idx is None else self.Y[idx]           # (B, K)
                E, g = net.loss_and_gradients(xb, yb)
                if visit is not None:
                    visit(step, idx, E, g, net)
                if not math.isfinite(E):
                    return step
                opt.step(g)
        return self.total


def _finite_grads(result: RunResult) -> pd.DataFrame:
    """The logged steps whose every tensor had finite gradients on both sides: a
    diverged run's last row (non-finite by definition) says nothing about agreement."""
    g = result.grads
    ok = np.isfinite(g[["norm_manual", "norm_torch", "rel_err", "rel_tol"]]).all(axis=1)
    good_steps = g.loc[ok, "step"]
    bad_steps = set(g.loc[~ok, "step"])
    return g[g["step"].isin(good_steps) & ~g["step"].isin(bad_steps)]


def agreement(result: RunResult, replay_loss: np.ndarray | None = None) -> dict:
    """One arm's manual-vs-torch record: the runner's mode (free/synced), its status,
    the worst rel_err, worst rel_err / rel_tol and the verdict over the logged steps with
    finite gradients (as ``runner.summarize``), the worst weight and loss differences,
    and how far a replay's losses are from ``loss_manual``."""
    grads = _finite_grads(result)
    keys = list(dict.fromkeys(result.grads["param"]))
    row = {"lockstep_mode": result.config.mode, "status": result.status,
           "steps_done": result.steps_done, "rel_err": np.nan,
           "worst_ratio": np.nan, "verdict": "none", "weight_max_abs_diff": np.nan,
           "loss_abs_diff": np.nan, "replay_max_abs_diff": np.nan}
    if not grads.empty:
        s = summarize(grads, keys).iloc[-1]
        row.update(rel_err=s["rel_err"], worst_ratio=s["worst_ratio"], verdict=s["verdict"],
                   weight_max_abs_diff=grads["weight_max_abs_diff"].max())
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


def _figure(ncols: int = 1, width: float = 6.0, height: float = 4.0, **kw):
    fig = Figure(figsize=(width * ncols, height), layout="constrained")
    axes = fig.subplots(1, ncols, squeeze=False, **kw).ravel()
    return fig, axes


def _save(fig: Figure, path: Path) -> str:
    fig.savefig(path, dpi=DPI, bbox_inches="tight")
    return path.name


@contextlib.contextmanager
def _one_torch_thread() -> Iterator[None]:
    """torch on one intra-op thread for the block, restored after. These networks are
    tiny: a second thread buys nothing and, with other processes on the cores, thread
    contention made the runner ~20x slower in a measurement here (as
    benchmarks/runner_overhead.py, which also measures with one thread)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@contextlib.contextmanager
def _style():
    with sns.axes_style("whitegrid"), sns.plotting_context("notebook", font_scale=0.8):
        yield


def _report(folder: Path, title: str, lines: list[str], figures: list[str]) -> None:
    text = [f"# handgrad study: {title}", "", *lines, ""]
    if figures:
        text += ["## Figures", "", *[f"![{f}]({f})" for f in figures], ""]
    (folder / "report.md").write_text("\n".join(text), encoding="utf-8")


def _fmt(x: float) -> str:
    return f"{x:.3g}"


# ------------------------------------------------------------------ batch-modes



def batch_modes(out: Path, *, quick: bool = False, force: bool = False,
                progress: bool = False) -> Path:
    """Full-batch gradient descent vs mini-batches vs stochastic (batch 1), same data, init
    and learning rate, the same number of epochs (= examples seen) for each.

    moons (200 points, standardised), 2-8-1 sigmoid network, bce (a mean over the batch,
    so one step's size does not grow with the batch), lr 0.5, 25 epochs (3 with quick),
    synced mode. The loss the runner records is the loss on that step's batch; the
    replay adds ``full_loss``, the loss on all 200 points at the weights the step starts
    from, which is what training is minimising.

    curves.csv  mode, batch_size, step, epoch, examples_seen, loss_manual, loss_torch,
                full_loss — one row per logged step per arm
    arms.csv    one row per arm (``BATCH_ARMS_COLUMNS``)
    """
    out = Path(out)
    check_out(out, force)
    epochs = 3 if quick else 25
    base = RunConfig(name="batch-modes", dataset="moons", standardize=True, hidden=(8,),
                     activation="sigmoid", output_activation="sigmoid", loss="bce", lr=0.5,
                     epochs=epochs, seed=0, mode="synced")
    arms = [("full-batch", "full"), ("mini-batch", 20), ("stochastic", 1)]
    curves, rows, seconds = [], [], {}
    with _one_torch_thread():
        for mode, batch in arms:
            cfg = replace(base, name=f"batch-modes-{mode}", batch_size=batch)
            total = Replay(cfg).total
            cfg = replace(cfg, log_every=max(1, total // 400))   # ≤ ~400 logged steps
            result = run_experiment(cfg, progress=progress)
            rp = Replay(cfg)
            batch_loss = np.full(rp.total, np.nan)                  # (steps,)
            full_loss = np.full(rp.total + 1, np.nan)               # (steps + 1,) incl. final

            def visit(step, idx, E, grads, net, rp=rp, batch_loss=batch_loss,
                      full_loss=full_loss):
                batch_loss[step] = E
                full_loss[step] = E if idx is None else net.loss(rp.X, rp.Y)

            rp.run(visit)
            full_loss[-1] = rp.net.loss(rp.X, rp.Y)
            t0 = time.perf_counter()
            Replay(cfg).run()                     # the bare manual loop, timed alone
            # wall time goes to the report only: the CSVs stay byte-identical across runs
            seconds[mode] = (time.perf_counter() - t0) / epochs
            logged = result.loss
            curves.append(pd.DataFrame({
                "mode": mode, "batch_size": rp.B, "step": logged["step"],
                "epoch": logged["epoch"], "examples_seen": logged["examples_seen"],
                "loss_manual": logged["loss_manual"], "loss_torch": logged["loss_torch"],
                "full_loss": full_loss[logged["step"].to_numpy()]}))
            noise = np.abs(batch_loss - full_loss[:-1])
            rows.append({"mode": mode, "batch_size": rp.B, "lr": cfg.lr, "epochs": epochs,
                         "steps": rp.total, "steps_per_epoch": rp.steps_per_epoch,
                         "final_full_loss": full_loss[-1],
                         "full_loss_at_equal_steps": full_loss[min(epochs, rp.total)],
                         "frac_updates_up": float(np.mean(np.diff(full_loss) > 0)),
                         "batch_loss_noise": float(np.mean(noise)),
                         **agreement(result, batch_loss)})
    curves_df = pd.concat(curves, ignore_index=True)[CURVE_COLUMNS]
    arms_df = pd.DataFrame(rows)[BATCH_ARMS_COLUMNS]
    with atomic_folder(out, force) as tmp:
        write_csv(curves_df, tmp / "curves.csv")
        write_csv(arms_df, tmp / "arms.csv")
        figures = [_batch_modes_figure(curves_df, tmp / "batch_modes.png")]
        _report(tmp, "batch-modes", _batch_modes_text(arms_df, base, epochs, seconds), figures)
    return out


def _batch_modes_figure(curves: pd.DataFrame, path: Path) -> str:
    # x = examples consumed by the updates made so far: the loss at step s is taken at the
    # weights *before* update s, so its own batch is not counted (every curve starts at 0).
    data = curves.assign(examples_used=curves["examples_seen"] - curves["batch_size"])
    order = ["stochastic", "mini-batch", "full-batch"]   # the 25-point curve drawn last
    palette = dict(zip(order, sns.color_palette(n_colors=3), strict=True))
    with _style():
        fig, (ax_s, ax_e) = _figure(2, 5.5, 4.0, sharey=True)
        for ax, x in ((ax_s, "step"), (ax_e, "examples_used")):
            sns.lineplot(data=data, x=x, y="loss_manual", hue="mode", hue_order=order,
                         palette=palette, ax=ax, alpha=0.25, linewidth=0.6, legend=False,
                         errorbar=None)
            sns.lineplot(data=data, x=x, y="full_loss", hue="mode", hue_order=order,
                         palette=palette, ax=ax, linewidth=2, errorbar=None)
            ax.set_yscale("log")
            ax.set_ylabel("bce loss, log scale")
        ax_s.set_xscale("symlog", linthresh=1)
        ax_s.set_xlim(left=0)
        ax_s.set_xlabel("updates made (symlog scale)")
        ax_s.set_title("against updates")
        ax_e.set_xlabel("examples used by those updates (gradient cost)")
        ax_e.set_title("against examples seen")
        fig.suptitle("thick: loss on all 200 points; faint: loss on the step's own batch")
        return _save(fig, path)


def _batch_modes_text(arms: pd.DataFrame, cfg: RunConfig, epochs: int,
                      seconds: dict[str, float]) -> list[str]:
    by = arms.set_index("mode")
    full, mini, sgd = by.loc["full-batch"], by.loc["mini-batch"], by.loc["stochastic"]
    table = arms[["mode", "batch_size", "steps", "final_full_loss", "full_loss_at_equal_steps",
                  "frac_updates_up", "batch_loss_noise", "rel_err",
                  "worst_ratio", "verdict", "replay_max_abs_diff"]]
    return [
        "## What ran", "",
        f"`{cfg.dataset}` (200 points, standardised), sizes 2-8-1, sigmoid, `{cfg.loss}` "
        f"(mean over the batch), SGD lr {cfg.lr}, {epochs} epochs for every arm, one init "
        f"(seed {cfg.seed}), `{cfg.mode}` mode. Each arm sees the same {200 * epochs} "
        "examples; what differs is how many updates they are spread over.", "",
        "## Numbers", "",
        markdown_table(table), "",
        "- `final_full_loss`: loss on all 200 points after the last update; "
        f"`full_loss_at_equal_steps`: the same after {epochs} updates in every arm.",
        "- `frac_updates_up`: fraction of updates after which the full-data loss was *higher*"
        " — 0 for exact gradient descent at a small enough lr, large for noisy gradients.",
        "- `batch_loss_noise`: mean |loss on the step's batch − loss on all points|: how far "
        "the number a mini-batch run prints is from the loss it is minimising.",
        "",
        "## What one sees", "",
        f"- After the same {epochs} updates (full batch's whole run; batch 1 has then seen "
        f"{epochs} examples) the full-data loss is {_fmt(full['full_loss_at_equal_steps'])} "
        f"(full batch), {_fmt(mini['full_loss_at_equal_steps'])} (batch {int(mini['batch_size'])})"
        f" and {_fmt(sgd['full_loss_at_equal_steps'])} (batch 1): per update, "
        + ("full batch is ahead." if full["full_loss_at_equal_steps"]
           < sgd["full_loss_at_equal_steps"] else
           "batch 1 is not behind: a one-example gradient is an unbiased estimate of the full "
           "one (its mean over the data is the full gradient) and, far from a minimum, its "
           "noise costs little — at 1/200 of the work."),
        f"- After the same {epochs} epochs (the same gradient work) batch 1 reaches "
        f"{_fmt(sgd['final_full_loss'])}, batch {int(mini['batch_size'])} "
        f"{_fmt(mini['final_full_loss'])}, full batch {_fmt(full['final_full_loss'])}: "
        f"batch 1 made {int(sgd['steps'])} updates with that work, full batch "
        f"{int(full['steps'])}.",
        f"- The price is noise: the full-data loss went *up* after "
        f"{_fmt(100 * full['frac_updates_up'])}% of full-batch updates, "
        f"{_fmt(100 * mini['frac_updates_up'])}% of batch-{int(mini['batch_size'])} ones and "
        f"{_fmt(100 * sgd['frac_updates_up'])}% of batch-1 ones; the loss printed on a "
        f"one-example batch is on average {_fmt(sgd['batch_loss_noise'])} away from the "
        "full-data loss (the faint lines).",
        f"- Cost per epoch: the same 200 example-gradients in every arm, but "
        f"{int(sgd['steps_per_epoch'])} updates instead of 1; in wall time (the bare manual "
        f"loop, no metrics, this run) {_fmt(seconds['stochastic'])} s against "
        f"{_fmt(seconds['full-batch'])} s per epoch "
        f"({_fmt(seconds['stochastic'] / seconds['full-batch'])}×): with 200×2 inputs "
        "the per-update overhead (Python calls, tiny matrix products), not the arithmetic, "
        "sets the price.",
        f"- Manual vs torch: worst rel_err over all arms {_fmt(arms['rel_err'].max())} "
        f"({_fmt(arms['worst_ratio'].max())} of the per-step tolerance), verdicts "
        f"{', '.join(sorted(set(arms['verdict'])))}. The replay (manual alone, see "
        "`experiments.teaching.studies.Replay`) reproduces the runner's `loss_manual` to "
        f"{_fmt(arms['replay_max_abs_diff'].max())} (synced mode follows torch's weights, "
        "the replay its own: they differ by rounding only).", "",
    ]


# ------------------------------------------------------------------ learning-rate

#: regimes, decided from the measured run (thresholds are this study's definitions)
REGIMES = {
    "diverged": "the runner stopped it: a non-finite loss or gradient (status diverged)",
    "stuck": "finite, but the final loss is not below the initial one",
    "oscillating": "converging or not, ≥ 5% of the updates raised the loss",
    "slow": "monotone enough, but the loss fell by less than 100× in the steps given",
    "good": "the loss fell by at least 100×, with < 5% of updates raising it",
}


def _regime(status: str, initial: float, final: float, frac_up: float) -> str:
    if status == "diverged":
        return "diverged"
    if not final < initial:
        return "stuck"
    if frac_up >= 0.05:
        return "oscillating"
    return "good" if final <= initial / 100 else "slow"


def learning_rate(out: Path, *, quick: bool = False, force: bool = False,
                  progress: bool = False) -> Path:
    """A learning-rate sweep from too small through good to divergent.

    The seed data (4 samples × 3 inputs), a 3-4-1 network with sigmoid hidden units,
    biases, ½·SSE, full-batch gradient descent, one init (seed 0), 500 steps (100 with
    quick). The output unit is linear (``identity``): the loss is then unbounded in the
    output weights and a too-large step really overflows; the seed case proper (sigmoid
    output, loss ≤ ½ per sample) is run at two rates for contrast — it saturates instead.
    Each lr runs twice: ``synced`` (curves, per-step agreement) and ``free`` (how far the
    two sides' weights part when each follows its own rounding). The sharpness λ_max (top
    Hessian eigenvalue, ``hessian_eigenvalues``) at the weights each arm ends on, from the
    replay, gives the quadratic model's stability limit 2/λ_max.

    curves.csv  output_activation, lr, step, loss_manual, loss_torch (synced runs)
    arms.csv    one row per (output_activation, lr) (``LR_ARMS_COLUMNS``)
    """
    out = Path(out)
    check_out(out, force)
    steps = 100 if quick else 500
    base = RunConfig(name="learning-rate", dataset="seed", hidden=(4,), activation="sigmoid",
                     output_activation="identity", bias=True, loss="half_sse",
                     batch_size="full", steps=steps, seed=0, log_every=1, mode="synced")
    lrs = ([0.01, 0.1, 0.3, 100.0] if quick else
           [0.01, 0.03, 0.1, 0.2, 0.3, 0.4, 1.0, 10.0, 100.0, 1e4])
    arms = [("identity", lr) for lr in lrs] + [("sigmoid", lr) for lr in (1.0, 1e4)]
    curves, rows = [], []
    with _one_torch_thread():
        for output, lr in arms:
            cfg = replace(base, name=f"learning-rate-{output}-{lr:g}", lr=lr,
                          output_activation=output)
            result = run_experiment(cfg, progress=progress)
            free = agreement(run_experiment(replace(cfg, mode="free")))
            rp = Replay(cfg)
            losses = np.full(rp.total, np.nan)                      # (steps,)
            rp.run(lambda step, idx, E, g, net, losses=losses: losses.__setitem__(step, E))
            loss = result.loss
            finite = loss[np.isfinite(loss["loss_manual"])]
            initial, final = loss["loss_manual"].iloc[0], loss["loss_manual"].iloc[-1]
            frac_up = float(np.mean(np.diff(finite["loss_manual"].to_numpy()) > 0))
            sharp = (hessian_eigenvalues(rp.net, rp.X, rp.Y)[-1]
                     if result.status == "completed" else np.nan)
            curves.append(pd.DataFrame({"output_activation": output, "lr": lr,
                                        "step": loss["step"],
                                        "loss_manual": loss["loss_manual"],
                                        "loss_torch": loss["loss_torch"]}))
            rows.append({"output_activation": output, "lr": lr,
                         "regime": _regime(result.status, initial, final, frac_up),
                         "diverged_step": (int(loss["step"].iloc[-1])
                                           if result.status == "diverged" else pd.NA),
                         "initial_loss": initial, "final_loss": final,
                         "min_loss": finite["loss_manual"].min(),
                         "frac_updates_up": frac_up, "sharpness_final": sharp,
                         "free_weight_max_abs_diff": free["weight_max_abs_diff"],
                         "free_worst_ratio": free["worst_ratio"],
                         "free_verdict": free["verdict"],
                         **agreement(result, losses)})
        rp0 = Replay(replace(base, lr=0.1))
        sharp0 = hessian_eigenvalues(rp0.net, rp0.X, rp0.Y)[-1]
    curves_df = pd.concat(curves, ignore_index=True)[LR_CURVE_COLUMNS]
    arms_df = pd.DataFrame(rows)[LR_ARMS_COLUMNS]
    arms_df["diverged_step"] = arms_df["diverged_step"].astype("Int64")
    with atomic_folder(out, force) as tmp:
        write_csv(curves_df, tmp / "curves.csv")
        write_csv(arms_df, tmp / "arms.csv")
        figures = [_lr_figure(curves_df, arms_df, tmp / "learning_rate.png")]
        _report(tmp, "learning-rate", _lr_text(arms_df, base, sharp0), figures)
    return out


LOSS_CAP = 1e6   # the figure's top: a diverging loss runs to 1e308 before it overflows


def _lr_figure(curves: pd.DataFrame, arms: pd.DataFrame, path: Path) -> str:
    regime = {(a.output_activation, a.lr): a.regime for a in arms.itertuples()}
    label = [f"lr={lr:g} ({regime[(o, lr)]})"
             for o, lr in zip(curves["output_activation"], curves["lr"], strict=True)]
    # A diverging loss runs to ~1e308 before it overflows: above LOSS_CAP the line leaves
    # the top of the axis, and an X on the top edge marks the step the runner stopped.
    loss = curves["loss_manual"].where(curves["loss_manual"] <= LOSS_CAP)
    data = curves.assign(label=label, loss=loss)
    with _style():
        fig, axes = _figure(2, 5.5, 4.4, gridspec_kw={"width_ratios": [2, 1]})
        for ax, output in zip(axes, ("identity", "sigmoid"), strict=True):
            part = data[data["output_activation"] == output]
            labels = list(dict.fromkeys(part["label"]))
            palette = dict(zip(labels, sns.color_palette("tab10", len(labels)), strict=True))
            sns.lineplot(data=part, x="step", y="loss", hue="label", hue_order=labels,
                         palette=palette, ax=ax, errorbar=None, linewidth=1.2)
            ax.set_yscale("log")
            diverged = arms[(arms["output_activation"] == output)
                            & (arms["regime"] == "diverged")]
            for arm in diverged.itertuples():
                color = palette[f"lr={arm.lr:g} (diverged)"]
                ax.scatter([arm.diverged_step], [LOSS_CAP], marker="X", s=80, color=color,
                           edgecolor="black", zorder=5, clip_on=False)
                ax.annotate(f"lr {arm.lr:g}", (arm.diverged_step, LOSS_CAP), fontsize=6,
                            xytext=(0, -13 - 8 * (arm.Index % 2)), textcoords="offset points",
                            ha="center")
            if not diverged.empty:
                ax.set_ylim(top=LOSS_CAP)
            ax.set_xlabel("step (full-batch updates)")
            ax.set_ylabel("½·SSE loss, log scale")
            ax.legend(fontsize=7, loc="lower left")
        axes[0].set_title("linear output; X on the top edge = the step each diverging lr "
                          f"overflowed (lines leave at {LOSS_CAP:.0e})", fontsize=8, pad=10)
        axes[1].set_title("sigmoid output (the seed case)", fontsize=8)
        return _save(fig, path)


def _lr_text(arms: pd.DataFrame, cfg: RunConfig, sharp0: float) -> list[str]:
    ident = arms[arms["output_activation"] == "identity"]
    table = arms[["output_activation", "lr", "regime", "diverged_step", "final_loss",
                  "frac_updates_up", "sharpness_final", "rel_err", "worst_ratio", "verdict",
                  "free_weight_max_abs_diff", "free_verdict"]].astype({"diverged_step": object})
    table.loc[table["diverged_step"].isna(), "diverged_step"] = ""

    def lrs(regime, frame=ident):
        got = frame.loc[frame["regime"] == regime, "lr"]
        return ", ".join(f"{v:g}" for v in got) or "none"

    done = ident[ident["status"] == "completed"]
    monotone = done[done["frac_updates_up"] == 0]
    shaky = done[done["regime"] == "oscillating"]
    sig = arms[arms["output_activation"] == "sigmoid"]
    lines = [
        "## What ran", "",
        f"The seed data (4 samples, 3 inputs), sizes 3-4-1, sigmoid hidden units, biases, "
        f"`{cfg.loss}`, full-batch gradient descent for {cfg.steps} steps from one init (seed "
        f"{cfg.seed}), once per learning rate, in `synced` mode (curves and agreement) and "
        "again in `free` mode (weight drift). Main sweep: a *linear* output unit, so the "
        "loss is unbounded and a too-large step can overflow. Contrast: the seed case's "
        "sigmoid output.", "",
        "Regimes (decided from each run; thresholds are this study's definitions):", "",
        *[f"- `{k}`: {v}" for k, v in REGIMES.items()], "",
        "## Numbers", "",
        markdown_table(table), "",
        "`sharpness_final` = λ_max of the loss Hessian at the weights the arm ends on "
        "(central differences of the hand-derived gradient); `free_*` come from the free-mode "
        "run of the same lr.", "",
        "## What one sees", "",
        f"- Linear output: slow at lr {lrs('slow')}; good at {lrs('good')}; oscillating at "
        f"{lrs('oscillating')}; diverged at {lrs('diverged')}"
        + (f" (the runner stopped at step "
           f"{', '.join(str(v) for v in ident.loc[ident['regime'] == 'diverged', 'diverged_step'])}"
           " respectively: larger steps overflow sooner)."
           if (ident["regime"] == "diverged").any() else "."),
        f"- The quadratic model: gradient descent on ½ wᵀHw is stable iff lr < 2/λ_max. "
        f"λ_max is {_fmt(sharp0)} at the initial weights (2/λ_max = {_fmt(2 / sharp0)})"
        + (f"; at the weights reached with the largest monotone lr "
           f"({monotone['lr'].max():g}) it is {_fmt(monotone.iloc[-1]['sharpness_final'])} "
           f"(2/λ_max = {_fmt(2 / monotone.iloc[-1]['sharpness_final'])})."
           if not monotone.empty else "."),
    ]
    if not shaky.empty:
        lines.append(
            f"- Above that limit the network does not blow up at once: the arms at lr "
            f"{', '.join(f'{v:g}' for v in shaky['lr'])} raise the loss on "
            f"{', '.join(_fmt(100 * v) + '%' for v in shaky['frac_updates_up'])} of their "
            f"updates and end where the sharpness is "
            f"{', '.join(_fmt(v) for v in shaky['sharpness_final'])}, i.e. 2/λ_max = "
            f"{', '.join(_fmt(2 / v) for v in shaky['sharpness_final'])}: training moves to "
            "flatter regions until 2/λ_max is about the lr (the \"edge of stability\", Cohen "
            "et al. 2021). Only a larger lr overflows.")
    lines += [
        f"- Sigmoid output (the seed case): lr {', '.join(f'{v:g}' for v in sig['lr'])} "
        f"end at loss {', '.join(_fmt(v) for v in sig['final_loss'])} "
        f"({', '.join(sig['regime'])}). A sigmoid output bounds the loss (½·SSE ≤ 2 on 4 "
        "samples), so a huge step cannot overflow it: it drives the units into saturation, "
        "where σ' ≈ 0 and the gradient vanishes — training stops instead of diverging.",
        f"- Manual vs torch, synced (both sides' gradients at the same weights every step, "
        f"up to the step before a divergence): worst rel_err {_fmt(arms['rel_err'].max())}, "
        f"worst {_fmt(arms['worst_ratio'].max())} of the tolerance, verdicts "
        f"{', '.join(sorted(set(arms['verdict'])))}.",
        f"- Free mode (each side its own weights): at a stable lr the weights stay within "
        f"{_fmt(done.loc[done['regime'].isin(['good', 'slow']), 'free_weight_max_abs_diff'].max())}"
        f"; in the oscillating arms rounding differences are amplified step after step to "
        f"{_fmt(shaky['free_weight_max_abs_diff'].max()) if not shaky.empty else 'n/a'} — "
        "then the two sides' gradients are taken at different weights and their comparison "
        f"reads {', '.join(sorted(set(shaky['free_verdict']))) or 'n/a'}: not a bug in "
        "either side, the dynamics' sensitivity to rounding.", "",
    ]
    return lines


# ------------------------------------------------------------------ convex-vs-nonconvex

WEIGHT_DECAY = 1e-2   # makes every minimum finite; see convex_vs_nonconvex's docstring


def objective(net: manual.MLP, X, Y, weight_decay: float) -> float:
    """F(w) = E(w) + (λ/2)‖w‖² over the trainable parameters: what SGD with
    ``weight_decay = λ`` minimises (torch adds λw to every gradient, as manual.SGD)."""
    w = flat(net.params, net.trainable)
    return net.loss(X, Y) + 0.5 * weight_decay * float(w @ w)


def _objective_at(net, like, keys, X, Y, weight_decay, w: np.ndarray) -> float:
    net.set_params(unflat(w, like, keys))
    return objective(net, X, Y, weight_decay)


def _objective_grad(net, like, keys, X, Y, weight_decay, w: np.ndarray) -> np.ndarray:
    net.set_params(unflat(w, like, keys))
    return flat(net.gradients(X, Y), keys) + weight_decay * w                 # (P,)


def permutations_of_hidden(w: np.ndarray, sizes) -> np.ndarray:
    """Every relabelling of the hidden units of a D-H-1 net (flat, ``flat`` key order
    layers.0.weight, layers.0.bias, layers.1.weight, layers.1.bias): (H!, P). These
    leave E *and* the weight-decay term unchanged. (Flipping a sigmoid unit's sign,
    W → −W, w_out → −w_out, b_out += w_out, leaves E unchanged but not ‖w‖²: not a
    symmetry of F.)"""
    import itertools

    D, H, _ = sizes
    W1 = w[:H * D].reshape(H, D)                                  # (H, D)
    b1 = w[H * D:H * D + H]                                       # (H,)
    w2 = w[H * D + H:H * D + 2 * H]                               # (H,)
    b2 = w[H * D + 2 * H:]                                        # (1,)
    perms = [list(p) for p in itertools.permutations(range(H))]
    return np.array([np.concatenate([W1[p].ravel(), b1[p], w2[p], b2]) for p in perms])


def _rounding_of_gradient(net: manual.MLP, X, Y, T) -> float:
    """A bound on the rounding error of one computed ‖∇E‖: γ_m‖G̃‖ (Higham's bound used
    by the runner, ``experiments.core.metrics``), summed over the tensors in quadrature."""
    from experiments.core.tolerance import gradient_tolerance, magnitude_gradients

    net.loss_and_gradients(X, Y)
    acts = net.last_activations
    G = magnitude_gradients(net, net.params, acts, T)
    gamma = gradient_tolerance(net.dtype, net.sizes, X.shape[0]) / 2
    return gamma * math.sqrt(sum(v * v for v in G.values()))


def _unit(rng: np.random.Generator, n: int, against: list[np.ndarray] = ()) -> np.ndarray:
    """A random unit vector of length n, orthogonal to the (unit) vectors ``against``."""
    v = rng.standard_normal(n)
    for u in against:
        v -= (v @ u) * u
    return v / np.linalg.norm(v)


def _gd_on_line(phi, dphi, t0: float, eta: float, steps: int) -> list[float]:
    """Gradient descent on the 1-D restriction φ(t): t ← t − η φ'(t)."""
    ts = [t0]
    for _ in range(steps):
        ts.append(ts[-1] - eta * dphi(ts[-1]))
    return ts


def convex_vs_nonconvex(out: Path, *, quick: bool = False, force: bool = False,
                        progress: bool = False) -> Path:
    """Logistic regression (convex) against a network with a hidden layer (not convex).

    Both: moons (200 points, standardised), sigmoid output, bce, full-batch gradient
    descent, lr 2, ``weight_decay`` λ = 0.01, 3000 steps (600 with quick), from 5
    initialisations drawn with torch's default U(±1/√fan_in) from seeds 1000..1004 (the
    data keep seed 0: only the init changes). Sizes [2, 1] (no hidden layer) and [2, 4, 1].

    Why weight decay: without it neither problem has a finite minimum to compare —
    the hidden net fits moons almost perfectly, so its loss keeps falling as its weights
    grow (measured while designing this study: ‖w‖ 22 → 33 between steps 3000 and 10000,
    loss still falling). With it, the objective is F(w) = E(w) + (λ/2)‖w‖²; for logistic
    regression E is convex, so F is λ-strongly convex: one minimiser w*, and for any w,
    ‖w − w*‖ ≤ ‖∇F(w)‖ / λ. That bound, with the computed gradient's rounding error added,
    is the tolerance two inits' final weights are held to (``tolerance`` in pairs.csv).

    Slices: F(w_A + t·d) for a random unit direction d around init 0's end point w_A,
    with gradient descent run on that 1-D restriction (η = 1/max φ'' over the slice, so
    each step descends), F along the segment from w_A to another end point (t = 0 at
    w_A, 1 at the other), and F over 2-D planes (random directions; for the hidden net
    also the plane through two minima). The objective is evaluated with manual.MLP.loss
    at the perturbed weights, one grid point at a time (≤ 41 × 41 points).

    inits.csv   one row per (model, init) (``CV_INITS_COLUMNS``)
    pairs.csv   one row per pair of inits (``CV_PAIRS_COLUMNS``)
    weights.csv model, init, index, param, initial, final: every weight, start and end
    slices_1d.csv model, slice, t, objective;  gd_1d.csv model, slice, start, k, t, objective
    slice_2d.csv model, plane, a, b, objective
    """
    from experiments.core.init import uniform_params

    out = Path(out)
    check_out(out, force)
    steps = 600 if quick else 3000
    n_1d, n_2d = (81, 21) if quick else (201, 41)
    seeds = [1000 + k for k in range(5)]
    models = {"logistic": (), "hidden": (4,)}
    base = RunConfig(name="convex-vs-nonconvex", dataset="moons", standardize=True,
                     activation="sigmoid", output_activation="sigmoid", loss="bce", lr=2.0,
                     weight_decay=WEIGHT_DECAY, batch_size="full", steps=steps, seed=0,
                     log_every=max(1, steps // 200), mode="synced")
    rng = np.random.default_rng(2024)   # the slice directions
    init_rows, pair_rows, weight_rows = [], [], []
    slices, gd_rows, planes = [], [], []
    with atomic_folder(out, force) as tmp, _one_torch_thread():
        (tmp / "inits").mkdir()
        for model, hidden in models.items():
            finals, nets = [], []
            for k, s in enumerate(seeds):
                sizes = (2, *hidden, 1)
                p0 = uniform_params(sizes, True, np.random.default_rng(s))
                path = tmp / "inits" / f"{model}-{k}.npz"
                np.savez(path, **p0)
                cfg = replace(base, name=f"cvx-{model}-{k}", hidden=hidden, init=str(path))
                result = run_experiment(cfg, progress=progress)
                rp = Replay(cfg)
                losses = np.full(rp.total, np.nan)
                rp.run(lambda step, idx, E, g, net, losses=losses:
                       losses.__setitem__(step, E))
                net, keys = rp.net, rp.net.trainable
                w = flat(net.params, keys)
                grad = flat(net.gradients(rp.X, rp.Y), keys) + WEIGHT_DECAY * w
                init_rows.append({
                    "model": model, "init": k, "init_seed": s,
                    "objective": objective(net, rp.X, rp.Y, WEIGHT_DECAY),
                    "loss": net.loss(rp.X, rp.Y), "grad_norm": float(np.linalg.norm(grad)),
                    "grad_rounding": _rounding_of_gradient(net, rp.X, rp.Y, rp.Y),
                    "weight_norm": float(np.linalg.norm(w)),
                    "hessian_min_eig": hessian_eigenvalues(net, rp.X, rp.Y)[0] + WEIGHT_DECAY,
                    **agreement(result, losses)})
                w0 = flat(rp.params0, keys)
                weight_rows.append(pd.DataFrame({
                    "model": model, "init": k, "index": np.arange(w.size),
                    "param": np.repeat(keys, [rp.params0[key].size for key in keys]),
                    "initial": w0, "final": w}))
                finals.append(w)
                nets.append(rp)
            rows = [r for r in init_rows if r["model"] == model]
            _label_minima(rows, len(nets[0].X))
            _pairs(model, rows, finals, nets, pair_rows)
            slices_m, gd_m, planes_m = _cv_slices(model, rows, finals, nets[0], rng, n_1d, n_2d)
            slices += slices_m
            gd_rows += gd_m
            planes += planes_m
        inits_df = pd.DataFrame(init_rows)[CV_INITS_COLUMNS]
        pairs_df = pd.DataFrame(pair_rows)[CV_PAIRS_COLUMNS]
        slices_df = pd.DataFrame(slices, columns=["model", "slice", "t", "objective"])
        gd_df = pd.DataFrame(gd_rows, columns=["model", "slice", "start", "k", "t",
                                               "objective"])
        planes_df = pd.DataFrame(planes, columns=["model", "plane", "a", "b", "objective"])
        write_csv(inits_df, tmp / "inits.csv")
        write_csv(pairs_df, tmp / "pairs.csv")
        write_csv(pd.concat(weight_rows, ignore_index=True), tmp / "weights.csv")
        write_csv(slices_df, tmp / "slices_1d.csv")
        write_csv(gd_df, tmp / "gd_1d.csv")
        write_csv(planes_df, tmp / "slice_2d.csv")
        figures = [_cv_1d_figure(slices_df, gd_df, tmp / "slices_1d.png"),
                   _cv_2d_figure(planes_df, tmp / "slice_2d.png"),
                   _cv_inits_figure(inits_df, pairs_df, tmp / "inits.png")]
        _report(tmp, "convex-vs-nonconvex",
                _cv_text(inits_df, pairs_df, slices_df, base), figures)
    return out


def _label_minima(rows: list[dict], n_samples: int) -> None:
    """Number the distinct minima reached (0 = lowest F). Near a strict minimum w* with
    smallest Hessian eigenvalue μ, F(w) − F(w*) ≤ ‖∇F(w)‖² / 2μ (quadratic model), so two
    end points lie in the same minimum's basin level when their F differ by at most the
    sum of those gaps, plus the rounding of F itself (a mean of N terms: ≤ 4·N·u·F)."""
    n = len(rows)
    group = list(range(n))

    def find(i):
        while group[i] != i:
            i = group[i]
        return i

    def gap(r):
        mu = r["hessian_min_eig"]
        return r["grad_norm"] ** 2 / (2 * mu) if mu > 0 else math.inf

    u = np.finfo(np.float64).eps / 2
    for i in range(n):
        for j in range(i + 1, n):
            a, b = rows[i], rows[j]
            slack = gap(a) + gap(b) + 4 * n_samples * u * max(a["objective"], b["objective"])
            if abs(a["objective"] - b["objective"]) <= slack:
                group[find(j)] = find(i)
    roots = sorted({find(i) for i in range(n)}, key=lambda i: rows[i]["objective"])
    for i, r in enumerate(rows):
        r["minimum"] = roots.index(find(i))


def _pairs(model, rows, finals, nets, pair_rows) -> None:
    X = nets[0].X
    sizes = nets[0].cfg.sizes
    outputs = [rp.net.forward(X) for rp in nets]                       # each (N, 1)
    for i, j in itertools.combinations(range(len(finals)), 2):
        ri, rj = rows[i], rows[j]
        wi, wj = finals[i], finals[j]
        aligned = (np.linalg.norm(permutations_of_hidden(wj, sizes) - wi, axis=1).min()
                   if len(sizes) == 3 else np.linalg.norm(wj - wi))
        # λ-strong convexity: ‖w − w*‖ ≤ ‖∇F(w)‖ / λ, with the computed gradient's own
        # rounding error added to its norm; only a bound where F is convex (logistic).
        tol = ((ri["grad_norm"] + ri["grad_rounding"] + rj["grad_norm"] + rj["grad_rounding"])
               / WEIGHT_DECAY if model == "logistic" else np.nan)
        pair_rows.append({
            "model": model, "init_a": i, "init_b": j,
            "same_minimum": ri["minimum"] == rj["minimum"],
            "objective_diff": abs(ri["objective"] - rj["objective"]),
            "weight_distance": float(np.linalg.norm(wi - wj)),
            "aligned_distance": float(aligned),
            "function_distance": float(np.abs(outputs[i] - outputs[j]).max()),
            "tolerance": tol})


def _cv_slices(model, rows, finals, rp, rng, n_1d, n_2d):
    """1-D slices (with GD on the restriction) and 2-D planes around init 0's end point."""
    net, keys, like = rp.net, rp.net.trainable, rp.net.params
    X, Y = rp.X, rp.Y
    F = lambda w: _objective_at(net, like, keys, X, Y, WEIGHT_DECAY, w)   # noqa: E731
    dF = lambda w: _objective_grad(net, like, keys, X, Y, WEIGHT_DECAY, w)  # noqa: E731
    wA = finals[0]
    T = max(1.0, float(np.linalg.norm(wA)))       # reach about as far as w* from the origin
    slices, gd, planes = [], [], []

    d = _unit(rng, wA.size)
    ts = np.linspace(-T, T, n_1d)
    phi = np.array([F(wA + t * d) for t in ts])
    slices += [(model, "random", t, v) for t, v in zip(ts, phi, strict=True)]
    # η = 1/L with L = max φ'' on the slice (second differences): the descent lemma then
    # guarantees φ decreases at every step wherever the slice's curvature is ≤ L.
    h = ts[1] - ts[0]
    L = float(np.max((phi[2:] - 2 * phi[1:-1] + phi[:-2]) / h**2))
    for start in (-0.9 * T, 0.9 * T):
        path = _gd_on_line(lambda t: F(wA + t * d), lambda t: float(dF(wA + t * d) @ d),
                           start, 1.0 / L, 12)
        gd += [(model, "random", start, k, t, F(wA + t * d)) for k, t in enumerate(path)]

    # segments from w_A to other end points: the nearest symmetric copy (same minimum,
    # largest raw distance) and the nearest other minimum, when there are such points.
    others = {}
    for j in range(1, len(finals)):
        kind = "to-copy" if rows[j]["minimum"] == rows[0]["minimum"] else "to-other-minimum"
        dist = np.linalg.norm(finals[j] - wA)
        if kind == "to-copy" and dist < 1e-6:   # the same weights: no segment to show
            continue
        if kind not in others or dist < others[kind][1]:
            others[kind] = (j, dist)
    for kind, (j, _) in sorted(others.items()):
        for t in np.linspace(-0.25, 1.25, n_1d):
            slices.append((model, f"{kind} (init {j})", t, F(wA + t * (finals[j] - wA))))

    d1 = _unit(rng, wA.size)
    d2 = _unit(rng, wA.size, [d1])
    grid = np.linspace(-T, T, n_2d)
    planes += [(model, "random", a, b, F(wA + a * d1 + b * d2)) for a in grid for b in grid]
    if "to-other-minimum" in others:   # the plane through two minima: a = 1 is the other
        j = others["to-other-minimum"][0]
        u = finals[j] - wA
        v = _unit(rng, wA.size, [u / np.linalg.norm(u)]) * np.linalg.norm(u)
        ga = np.linspace(-0.5, 1.5, n_2d)
        gb = np.linspace(-1.0, 1.0, n_2d)
        planes += [(model, f"through init 0 and {j}", a, b, F(wA + a * u + b * v))
                   for a in ga for b in gb]
    net.set_params(like)
    return slices, gd, planes


ZERO_FLOOR = 1e-17   # exact zeros on a log axis are drawn here, and the figure says so


def _cv_1d_figure(slices: pd.DataFrame, gd: pd.DataFrame, path: Path) -> str:
    panels = list(dict.fromkeys(zip(slices["model"], slices["slice"], strict=True)))
    with _style():
        fig, axes = _figure(len(panels), 3.6, 3.4)
        for ax, (model, name) in zip(axes, panels, strict=True):
            part = slices[(slices["model"] == model) & (slices["slice"] == name)]
            sns.lineplot(data=part, x="t", y="objective", ax=ax, color="0.3", errorbar=None)
            steps = gd[(gd["model"] == model) & (gd["slice"] == name)]
            for (start, run), color in zip(steps.groupby("start"), ("C0", "C3"), strict=False):
                ax.plot(run["t"], run["objective"], "o-", color=color, markersize=3.5,
                        linewidth=0.8, label=f"GD from t = {start:.2g}")
            if name == "random":
                ax.set_xlabel("t along a random unit direction d")
                ax.legend(fontsize=7)
            else:
                ax.set_xlabel("t (0 = init 0's end point, 1 = the other)")
                for t in (0, 1):
                    ax.axvline(t, color="0.6", linestyle=":", linewidth=1)
            ax.set_ylabel("F = bce + (λ/2)‖w‖²")
            ax.set_title(f"{model}: {name}", fontsize=9)
        return _save(fig, path)


def _cv_2d_figure(planes: pd.DataFrame, path: Path) -> str:
    panels = list(dict.fromkeys(zip(planes["model"], planes["plane"], strict=True)))
    with _style():
        fig, axes = _figure(len(panels), 3.8, 3.4)
        for ax, (model, name) in zip(axes, panels, strict=True):
            part = planes[(planes["model"] == model) & (planes["plane"] == name)]
            grid = part.pivot(index="b", columns="a", values="objective")   # (n_b, n_a)
            cs = ax.contourf(grid.columns, grid.index, np.log10(grid.to_numpy()), levels=16,
                             cmap="viridis")
            fig.colorbar(cs, ax=ax, label="log10 F")
            ax.plot([0], [0], marker="*", color="red", markersize=10, linestyle="")
            if name != "random":
                ax.plot([1], [0], marker="*", color="orange", markersize=10, linestyle="")
                ax.set_xlabel("a: 0 = init 0's minimum, 1 = the other")
            else:
                ax.set_xlabel("a along d₁")
            ax.set_ylabel("b along d₂")
            ax.set_title(f"{model}: {name}", fontsize=9)
        return _save(fig, path)


def _cv_inits_figure(inits: pd.DataFrame, pairs: pd.DataFrame, path: Path) -> str:
    dist = pairs.melt(id_vars=["model"], value_vars=["weight_distance", "aligned_distance"],
                      var_name="distance", value_name="value")
    n_zero = int((dist["value"] == 0).sum())
    dist["value"] = dist["value"].where(dist["value"] > 0, ZERO_FLOOR)
    with _style():
        fig, (ax_f, ax_d) = _figure(2, 4.5, 3.6)
        gap = inits.assign(excess=inits["objective"]
                           - inits.groupby("model")["objective"].transform("min"))
        gap["excess"] = gap["excess"].where(gap["excess"] > 0, ZERO_FLOOR)
        sns.stripplot(data=gap, x="model", y="excess", hue="init", ax=ax_f, size=7,
                      jitter=0.15, palette="tab10")
        ax_f.set_yscale("log")
        ax_f.set_ylabel("F − min F of the model (log; 0 at 1e-17)")
        ax_f.set_title("final objective per init", fontsize=9)
        ax_f.legend(fontsize=7, title="init", title_fontsize=7)
        sns.stripplot(data=dist, x="model", y="value", hue="distance", dodge=True, ax=ax_d,
                      size=6, jitter=0.15)
        tol = pairs.loc[pairs["model"] == "logistic", "tolerance"]
        if tol.notna().any():
            ax_d.axhline(tol.max(), color="C3", linestyle="--", linewidth=1,
                         label="logistic tolerance ‖∇F‖/λ")
        ax_d.set_yscale("log")
        ax_d.set_ylabel("‖w_a − w_b‖, final weights (log"
                        + (f"; {n_zero} exact 0s at 1e-17)" if n_zero else ")"))
        ax_d.set_title("pairs of inits: raw and permutation-aligned", fontsize=9)
        ax_d.legend(fontsize=7)
        return _save(fig, path)


def _barrier(part: pd.DataFrame) -> float:
    """max F on the segment t ∈ [0, 1] minus the higher of its two ends."""
    seg = part[(part["t"] >= 0) & (part["t"] <= 1)]
    ends = max(seg["objective"].iloc[0], seg["objective"].iloc[-1])
    return float(seg["objective"].max() - ends)


def _min_second_difference(part: pd.DataFrame) -> float:
    """min over the slice of φ'' by second differences (negative = not convex there)."""
    v, t = part["objective"].to_numpy(), part["t"].to_numpy()
    h = t[1] - t[0]
    return float(np.min((v[2:] - 2 * v[1:-1] + v[:-2]) / h**2))


def _cv_text(inits, pairs, slices, cfg: RunConfig) -> list[str]:
    lo, hi = inits[inits["model"] == "logistic"], inits[inits["model"] == "hidden"]
    plo, phi = pairs[pairs["model"] == "logistic"], pairs[pairs["model"] == "hidden"]
    same, diff = phi[phi["same_minimum"]], phi[~phi["same_minimum"]]
    minima = hi.groupby("minimum")["objective"].agg(["first", "size"])
    curv = {(m, s): _min_second_difference(g) for (m, s), g in slices.groupby(["model", "slice"])}
    barriers = {s: _barrier(g) for (m, s), g in slices.groupby(["model", "slice"])
                if m == "hidden" and s != "random"}
    init_table = inits[["model", "init", "objective", "grad_norm", "weight_norm",
                        "hessian_min_eig", "minimum", "rel_err", "worst_ratio", "verdict"]]
    pair_table = pairs[["model", "init_a", "init_b", "same_minimum", "objective_diff",
                        "weight_distance", "aligned_distance", "function_distance",
                        "tolerance"]]
    lines = [
        "## What ran", "",
        f"moons (200 points, standardised), sigmoid output, `{cfg.loss}`, full-batch gradient "
        f"descent, lr {cfg.lr}, weight decay λ = {cfg.weight_decay}, {cfg.steps} steps, "
        f"`{cfg.mode}` mode, from {len(lo)} initialisations (torch's default uniform, seeds "
        f"{lo['init_seed'].min()}–{lo['init_seed'].max()}; the data keep seed {cfg.seed}). "
        "Logistic regression: sizes [2, 1] — bce is convex in its weights and the decay "
        "term makes F = bce + (λ/2)‖w‖² λ-strongly convex. Hidden layer: sizes [2, 4, 1]. "
        "The initial weights are in `inits/*.npz` (`handgrad run` accepts them as `init`).",
        "",
        "Without weight decay there would be no finite minimum to compare: the hidden net "
        "fits moons almost perfectly and its loss keeps falling as its weights grow.", "",
        "## Numbers", "",
        markdown_table(init_table), "",
        markdown_table(pair_table), "",
        "`hessian_min_eig` = smallest eigenvalue of ∇²F at the end point (> 0: a strict local "
        "minimum); `aligned_distance` = the smallest distance over the 4! relabellings of the "
        "hidden units (exact symmetries of F); `function_distance` = max over the 200 points "
        "of |output_a − output_b|; `tolerance` (logistic) = (‖∇F(w_a)‖ + ‖∇F(w_b)‖ + their "
        "rounding bounds) / λ, which strong convexity guarantees ≥ ‖w_a − w_b‖.", "",
        "## What one sees", "",
        f"- Logistic regression: all {len(lo)} inits end at F = "
        f"{float(lo['objective'].min()):.12g} (spread "
        f"{_fmt(lo['objective'].max() - lo['objective'].min())}), final weights at most "
        f"{_fmt(plo['weight_distance'].max())} apart — within the "
        f"convergence bound {_fmt(plo['tolerance'].max())} (final ‖∇F‖ ≤ "
        f"{_fmt(lo['grad_norm'].max())}, λ = {cfg.weight_decay}). One minimum, found from "
        "everywhere.",
        f"- Hidden layer: {len(minima)} distinct minima, F = "
        + ", ".join(f"{r.first:.6f} (reached by {r.size} init{'s' if r.size > 1 else ''})"
                    for r in minima.itertuples())
        + f"; every end point has ‖∇F‖ ≤ {_fmt(hi['grad_norm'].max())} and a positive "
        f"definite Hessian (smallest eigenvalue ≥ {_fmt(hi['hessian_min_eig'].min())}): each "
        "sits at (or, while ‖∇F‖ > 0, next to) a strict local minimum.",
    ]
    if not same.empty:
        lines.append(
            f"- Inits that reach the same F: raw weights {_fmt(same['weight_distance'].min())}–"
            f"{_fmt(same['weight_distance'].max())} apart, but after relabelling the hidden "
            f"units at most {_fmt(same['aligned_distance'].max())}: the same minimum in "
            "another order (hidden-unit permutation symmetry), the same function "
            f"(outputs differ by ≤ {_fmt(same['function_distance'].max())}).")
    if not diff.empty:
        lines.append(
            f"- Inits that reach different minima: aligned distance "
            f"{_fmt(diff['aligned_distance'].min())}–{_fmt(diff['aligned_distance'].max())}, "
            f"outputs differ by up to {_fmt(diff['function_distance'].max())}: different "
            "functions, not relabellings.")
    lines += [
        f"- Slices: along a random direction the logistic F has smallest curvature "
        f"{_fmt(curv[('logistic', 'random')])} (≥ λ = {cfg.weight_decay}: convex), the hidden "
        f"net's {_fmt(curv[('hidden', 'random')])}"
        + (" (negative: not convex along that line)." if curv[("hidden", "random")] < 0
           else " (this line happens to be convex; the segments below are not).")]
    for name, b in sorted(barriers.items()):
        lines.append(f"- Hidden net, segment {name}: F rises {_fmt(b)} above the higher end "
                     f"(smallest curvature {_fmt(curv[('hidden', name)])}) — a convex function "
                     "cannot rise between two points where it is minimal.")
    lines += [
        "- Gradient descent on the 1-D slice (left figure, η = 1/max φ''): from either end "
        "it walks down the curve to the bottom of the slice.",
        f"- Manual vs torch: worst rel_err {_fmt(inits['rel_err'].max())} "
        f"({_fmt(inits['worst_ratio'].max())} of the tolerance), verdicts "
        f"{', '.join(sorted(set(inits['verdict'])))}; replay vs runner ≤ "
        f"{_fmt(inits['replay_max_abs_diff'].max())}.", "",
    ]
    return lines


# ------------------------------------------------------------------ sparse-features

N_EDGE = 5   # "rare" = the 5 least frequent features, "common" = the 5 most frequent


def _rank_corr(x: np.ndarray, y: np.ndarray) -> float:
    """Spearman's rank correlation (no ties expected in y; ties in x get their mean rank)."""
    rx = pd.Series(x).rank().to_numpy()
    ry = pd.Series(y).rank().to_numpy()
    return float(np.corrcoef(rx, ry)[0, 1])


def sparse_features(out: Path, *, quick: bool = False, force: bool = False,
                    progress: bool = False) -> Path:
    """Sparse inputs: exact-zero gradients, and weights of rare features that barely move.

    The ``sparse`` data set (200 × 20 binary features, P(x_j = 1) from 0.3 down to 0.02),
    a 20-8-1 sigmoid network, bce, one init (seed 0), 10 epochs (2 with quick) for every
    arm of the grid lr ∈ {0.1, 1} × batch ∈ {1, 16, full}, synced mode.

    ∂E/∂W₁[i, j] = Σ_n δ₁[n, i] x[n, j]: a first-layer weight's gradient is exactly 0 on
    every step whose batch has feature j off in every row, so that weight moves only on
    the steps that contain its feature. The replay counts, at every step, the exactly-zero
    entries of the gradients the manual side computes, and which features the batch
    contains; movement of feature j = ‖W₁[:, j] after − before‖₂.

    zeros.csv     ``SPARSE_ZERO_COLUMNS``, one row per step per arm
    movement.csv  ``SPARSE_MOVE_COLUMNS``, one row per feature per arm
    arms.csv      ``SPARSE_ARMS_COLUMNS``, one row per arm
    """
    out = Path(out)
    check_out(out, force)
    epochs = 2 if quick else 10
    base = RunConfig(name="sparse-features", dataset="sparse", hidden=(8,),
                     activation="sigmoid", output_activation="sigmoid", loss="bce",
                     epochs=epochs, seed=0, mode="synced")
    zeros, moves, rows = [], [], []
    with _one_torch_thread():
        for lr in (0.1, 1.0):
            for batch in (1, 16, "full"):
                cfg = replace(base, name=f"sparse-{lr:g}-{batch}", lr=lr, batch_size=batch)
                total = Replay(cfg).total
                cfg = replace(cfg, log_every=max(1, total // 400))
                result = run_experiment(cfg, progress=progress)
                rp = Replay(cfg)
                D = rp.X.shape[1]
                losses = np.full(rp.total, np.nan)
                touched = np.zeros(D, dtype=np.int64)                  # (D,)
                per_step = np.zeros((rp.total, 5), dtype=np.int64)     # step, counts

                def visit(step, idx, E, g, net, rp=rp, losses=losses, touched=touched,
                          per_step=per_step):
                    losses[step] = E
                    g0 = g["layers.0.weight"]                           # (H, D)
                    xb = rp.X if idx is None else rp.X[idx]             # (B, D)
                    touched[:] += (g0 != 0).any(axis=0)
                    per_step[step] = (
                        int((xb != 0).any(axis=0).sum()), int((g0 == 0).sum()), g0.size,
                        sum(int((v == 0).sum()) for v in g.values()),
                        sum(v.size for v in g.values()))

                rp.run(visit)
                W0 = rp.params0["layers.0.weight"]                      # (H, D)
                delta = np.linalg.norm(rp.net.params["layers.0.weight"] - W0, axis=0)  # (D,)
                freq = rp.X.mean(axis=0)                                # (D,)
                order = np.argsort(freq, kind="stable")
                rare, common = delta[order[:N_EDGE]].mean(), delta[order[-N_EDGE:]].mean()
                per_touch = delta / np.maximum(touched, 1)              # (D,)
                zeros.append(pd.DataFrame({"lr": lr, "batch_size": rp.B,
                                           "step": np.arange(rp.total),
                                           **dict(zip(SPARSE_ZERO_COLUMNS[3:], per_step.T,
                                                      strict=True))}))
                moves.append(pd.DataFrame({"lr": lr, "batch_size": rp.B,
                                           "feature": np.arange(D), "frequency": freq,
                                           "steps_touched": touched, "delta_norm": delta}))
                rows.append({"lr": lr, "batch_size": rp.B, "steps": rp.total,
                             "zero_frac_first_layer": per_step[:, 1].sum() / per_step[:, 2].sum(),
                             "zero_frac_all": per_step[:, 3].sum() / per_step[:, 4].sum(),
                             "rare_move": rare, "common_move": common,
                             "rare_common_ratio": rare / common,
                             "rank_corr": _rank_corr(freq, delta),
                             "rare_move_per_touch": per_touch[order[:N_EDGE]].mean(),
                             "common_move_per_touch": per_touch[order[-N_EDGE:]].mean(),
                             **agreement(result, losses)})
    zeros_df = pd.concat(zeros, ignore_index=True)[SPARSE_ZERO_COLUMNS]
    moves_df = pd.concat(moves, ignore_index=True)[SPARSE_MOVE_COLUMNS]
    arms_df = pd.DataFrame(rows)[SPARSE_ARMS_COLUMNS]
    with atomic_folder(out, force) as tmp:
        write_csv(zeros_df, tmp / "zeros.csv")
        write_csv(moves_df, tmp / "movement.csv")
        write_csv(arms_df, tmp / "arms.csv")
        figures = [_sparse_zeros_figure(zeros_df, tmp / "zero_gradients.png"),
                   _sparse_move_figure(moves_df, tmp / "movement.png")]
        _report(tmp, "sparse-features", _sparse_text(arms_df, moves_df, base), figures)
    return out


def _arm_label(frame: pd.DataFrame) -> list[str]:
    return [f"lr {lr:g}, batch {b}" for lr, b in zip(frame["lr"], frame["batch_size"],
                                                       strict=True)]


def _sparse_zeros_figure(zeros: pd.DataFrame, path: Path) -> str:
    data = zeros.assign(
        arm=_arm_label(zeros),
        zero_frac=zeros["zeros_first_layer"] / zeros["entries_first_layer"],
        epoch_pos=zeros["step"])
    with _style():
        fig, (ax_t, ax_b) = _figure(2, 5.0, 3.8)
        lr0 = data[data["lr"] == data["lr"].min()]
        first = lr0[lr0["step"] < 200]   # the first 200 steps: one epoch of batch 1
        sns.lineplot(data=first, x="step", y="zero_frac", hue="batch_size", ax=ax_t,
                     palette="tab10", errorbar=None, linewidth=0.8, drawstyle="steps-post")
        ax_t.set_ylabel("fraction of first-layer gradient entries exactly 0")
        ax_t.set_xlabel("step")
        ax_t.set_title(f"per step (lr {lr0['lr'].iloc[0]:g}, first 200 steps)", fontsize=9)
        sns.barplot(data=data, x="batch_size", y="zero_frac", hue="lr", ax=ax_b,
                    palette="Set2", errorbar="sd")
        ax_b.set_ylabel("fraction exactly 0: mean over steps (bar: ± 1 sd)")
        ax_b.set_title("all steps, by batch size and lr", fontsize=9)
        return _save(fig, path)


def _sparse_move_figure(moves: pd.DataFrame, path: Path) -> str:
    steps = moves.groupby(["lr", "batch_size"])["steps_touched"].transform("max")
    data = moves.assign(touched_frac=moves["steps_touched"] / steps)
    with _style():
        fig, (ax_m, ax_t) = _figure(2, 5.0, 4.0)
        sns.scatterplot(data=data, x="frequency", y="delta_norm", hue="batch_size",
                        style="lr", ax=ax_m, palette="tab10", s=35)
        ax_m.set_xscale("log")
        ax_m.set_yscale("log")
        ax_m.set_xlabel("feature frequency: fraction of rows with x_j = 1 (log)")
        ax_m.set_ylabel("‖ΔW₁[:, j]‖₂ over training (log)")
        ax_m.set_title("how far each feature's first-layer weights moved", fontsize=9)
        lr0 = data[data["lr"] == data["lr"].min()]
        sns.scatterplot(data=lr0, x="frequency", y="touched_frac", hue="batch_size",
                        ax=ax_t, palette="tab10", s=35)
        ax_t.set_xscale("log")
        ax_t.set_yscale("log")
        ax_t.set_xlabel("feature frequency (log)")
        ax_t.set_ylabel("fraction of steps with a non-zero gradient (log)")
        ax_t.set_title("why: a column gets gradient only when its feature is in the batch",
                       fontsize=9)
        return _save(fig, path)


def _sparse_text(arms: pd.DataFrame, moves: pd.DataFrame, cfg: RunConfig) -> list[str]:
    table = arms[["lr", "batch_size", "steps", "zero_frac_first_layer", "zero_frac_all",
                  "rare_move", "common_move", "rare_common_ratio", "rank_corr", "rel_err",
                  "worst_ratio", "verdict"]]
    one = arms[arms["batch_size"] == 1]
    full = arms[arms["batch_size"] == arms["batch_size"].max()]
    feats = moves[(moves["lr"] == moves["lr"].min()) & (moves["batch_size"] == 1)]
    f_rare = feats.loc[feats["frequency"].idxmin()]
    f_common = feats.loc[feats["frequency"].idxmax()]
    return [
        "## What ran", "",
        f"`{cfg.dataset}`: 200 rows × 20 binary features, feature j is 1 with probability "
        "from 0.3 (j = 0) down to 0.02 (j = 19); a 20-8-1 sigmoid network, bce, one init "
        f"(seed {cfg.seed}), {cfg.epochs} epochs in every arm (the same examples seen), "
        f"`{cfg.mode}` mode; lr ∈ {{0.1, 1}} × batch ∈ {{1, 16, full = 200}}.", "",
        "## Numbers", "",
        markdown_table(table), "",
        "`zero_frac_*`: exactly-zero gradient entries over all steps (first-layer weights; "
        f"all parameters). `rare_move` / `common_move`: mean ‖ΔW₁[:, j]‖ over the {N_EDGE} "
        f"least / most frequent features; `rank_corr`: Spearman correlation between feature "
        "frequency and movement (1 = movement ordered exactly by frequency).", "",
        "## What one sees", "",
        f"- Exact zeros: with batch 1, {_fmt(100 * one['zero_frac_first_layer'].mean())}% of "
        "the first-layer gradient entries are exactly 0 at a step (every column whose "
        "feature is off in that row); "
        f"{_fmt(100 * one['zero_frac_all'].mean())}% of all gradient entries; with batch 16, "
        f"{_fmt(100 * arms.loc[arms['batch_size'] == 16, 'zero_frac_first_layer'].mean())}%; "
        f"with the full batch {_fmt(100 * full['zero_frac_first_layer'].mean())}% (a column "
        "is 0 there only when its feature is absent from the whole data set). The counts "
        "are the same at both learning rates: which entries are exactly 0 depends only on "
        "which features the batch contains, not on the weights.",
        f"- Feature {int(f_rare['feature'])} (in {_fmt(100 * f_rare['frequency'])}% of rows) "
        f"got a non-zero gradient on {int(f_rare['steps_touched'])} of "
        f"{int(one['steps'].iloc[0])} batch-1 steps at lr {moves['lr'].min():g}; feature "
        f"{int(f_common['feature'])} ({_fmt(100 * f_common['frequency'])}%) on "
        f"{int(f_common['steps_touched'])}. A weight moves only when its feature shows up.",
        f"- Rare features' weights move less in every arm: rare/common movement ratio "
        f"{_fmt(arms['rare_common_ratio'].min())}–{_fmt(arms['rare_common_ratio'].max())}, rank "
        f"correlation of movement with frequency {_fmt(arms['rank_corr'].min())}–"
        f"{_fmt(arms['rank_corr'].max())} (movement also depends on how much a feature "
        "tells about the label, so the order is not strict).",
        f"- Two mechanisms. Full batch: every column is updated at every step, but its "
        f"gradient is a mean over all rows, diluted in proportion to how often the feature is "
        f"on — per step rare features' columns moved {_fmt(full['rare_move_per_touch'].mean())} "
        f"against {_fmt(full['common_move_per_touch'].mean())} for common ones (means over "
        f"the two lrs). Batch 1: a rare feature's update is not diluted — per step it is "
        f"touched, its net movement was {_fmt(one['rare_move_per_touch'].mean())} against "
        f"{_fmt(one['common_move_per_touch'].mean())} for common ones (whose many updates "
        "partly cancel) — but it is touched on few steps.",
        "- Learning rate and batch size: "
        + "; ".join(f"lr {r.lr:g} batch {r.batch_size}: common {_fmt(r.common_move)}, rare "
                    f"{_fmt(r.rare_move)}" for r in arms.itertuples())
        + ". A larger lr scales every step; smaller batches make more steps per epoch. "
        "Neither changes *which* weights get gradient: a rare feature's weights are updated "
        "on few steps (or by diluted amounts) whatever the settings — the problem "
        "per-parameter step sizes such as AdaGrad (Duchi et al., 2011) were designed for.",
        f"- Manual vs torch: worst rel_err {_fmt(arms['rel_err'].max())} "
        f"({_fmt(arms['worst_ratio'].max())} of the tolerance), verdicts "
        f"{', '.join(sorted(set(arms['verdict'])))}; replay vs runner ≤ "
        f"{_fmt(arms['replay_max_abs_diff'].max())}.", "",
    ]


# ------------------------------------------------------------------ float32-drift-lesson



def float32_drift_lesson(out: Path, *, quick: bool = False, force: bool = False,
                         progress: bool = False) -> Path:
    """The named experiment ``float32-drift`` in free and in synced mode, explained.

    moons, 2-16-16-1 tanh network, sigmoid output, bce, float32, full batch, lr 0.5,
    3000 steps (300 with quick), metrics every 10 steps. Free: each side trains its own
    float32 weights; synced: after every step the manual side is reset to torch's
    weights. In float32 runs the runner also measures each side's gradient against a
    float64 gradient at that side's own weights (``ref_rel_err_manual`` / ``_torch``).

    ``rounding_ratio`` = rel_err / (ref_rel_err_manual + ref_rel_err_torch): how far apart
    the two sides' gradients are, in units of how far each is from exact. By the triangle
    inequality it is ≲ 1 when both are evaluated at the same weights (synced); in free
    mode it stays ≲ 1 only while the drift of the weights moves the gradient less than
    float32 rounding does. Unlike ``rel_tol`` (a worst-case bound, which becomes ≥ 1 —
    vacuous: no relative error can exceed it meaningfully — once tanh units saturate and
    the gradient is a small sum of large terms), it stays informative all run long.

    drift.csv  ``DRIFT_COLUMNS``, one row per logged step × parameter × mode
    arms.csv   ``DRIFT_ARMS_COLUMNS``, one row per mode
    """
    from experiments.core.config import load_config

    out = Path(out)
    check_out(out, force)
    base = load_config("float32-drift")
    if quick:
        base = replace(base, steps=300)
    frames, rows = [], []
    with _one_torch_thread():
        for mode in ("free", "synced"):
            cfg = replace(base, mode=mode)
            result = run_experiment(cfg, progress=progress)
            rp = Replay(cfg)
            losses = np.full(rp.total, np.nan)
            rp.run(lambda step, idx, E, g, net, losses=losses: losses.__setitem__(step, E))
            g = result.grads
            ref_m, ref_t = g["ref_rel_err_manual"], g["ref_rel_err_torch"]
            g = g.assign(mode=mode, rounding_ratio=g["rel_err"] / (ref_m + ref_t))
            frames.append(g[DRIFT_COLUMNS])
            by_step = g.groupby("step")["weight_max_abs_diff"].max()
            vacuous = g.loc[g["rel_tol"] >= 1, "step"]
            rows.append({
                "mode": mode, "steps": result.steps_done,
                "first_weight_diff": by_step.iloc[0], "final_weight_diff": by_step.iloc[-1],
                "max_weight_scale": float(max(np.abs(v).max() for v in rp.net.params.values())),
                "median_rel_err": g["rel_err"].median(), "max_rel_err": g["rel_err"].max(),
                "median_rounding_ratio": g["rounding_ratio"].median(),
                "max_rounding_ratio": g["rounding_ratio"].max(),
                "frac_rounding_exceeded": float((g["rounding_ratio"] > 1).mean()),
                "median_ref_manual": ref_m.median(), "median_ref_torch": ref_t.median(),
                "frac_manual_closer": float((ref_m < ref_t).mean()),
                "frac_torch_closer": float((ref_t < ref_m).mean()),
                "first_vacuous_step": int(vacuous.min()) if len(vacuous) else pd.NA,
                "frac_vacuous": float((g["rel_tol"] >= 1).mean()),
                "final_loss_abs_diff": result.loss["abs_diff"].iloc[-1],
                **agreement(result, losses)})
    drift = pd.concat(frames, ignore_index=True)
    arms = pd.DataFrame(rows)[DRIFT_ARMS_COLUMNS]
    arms["first_vacuous_step"] = arms["first_vacuous_step"].astype("Int64")
    with atomic_folder(out, force) as tmp:
        write_csv(drift, tmp / "drift.csv")
        write_csv(arms, tmp / "arms.csv")
        figures = [_drift_figure(drift, tmp / "float32_drift.png")]
        _report(tmp, "float32-drift-lesson", _drift_text(arms, base), figures)
    return out


def _drift_figure(drift: pd.DataFrame, path: Path) -> str:
    per_step = drift.groupby(["mode", "step"], as_index=False).agg(
        weight=("weight_max_abs_diff", "max"), rounding=("rounding_ratio", "max"),
        rel_err=("rel_err", "max"), rel_tol=("rel_tol", "min"))
    ref = drift.melt(id_vars=["mode", "step"],
                     value_vars=["ref_rel_err_manual", "ref_rel_err_torch"],
                     var_name="side", value_name="ref_rel_err")
    ref["side"] = ref["side"].str.removeprefix("ref_rel_err_")
    ref = ref.groupby(["mode", "step", "side"], as_index=False)["ref_rel_err"].median()
    for frame, col in ((per_step, "weight"), (per_step, "rounding"), (ref, "ref_rel_err")):
        frame[col] = frame[col].where(frame[col] > 0, ZERO_FLOOR)
    tol = per_step.melt(id_vars=["mode", "step"], value_vars=["rel_err", "rel_tol"],
                        var_name="quantity", value_name="value")
    with _style():
        fig = Figure(figsize=(9.0, 6.0), layout="constrained")
        (ax_w, ax_r), (ax_f, ax_t) = fig.subplots(2, 2)
        sns.lineplot(data=per_step, x="step", y="weight", hue="mode", ax=ax_w, errorbar=None)
        ax_w.set_ylabel("max |W_m − W_t| after the step (0 at 1e-17)")
        ax_w.set_title("weights: free mode parts ways, synced does not", fontsize=9)
        sns.lineplot(data=per_step, x="step", y="rounding", hue="mode", ax=ax_r,
                     errorbar=None)
        ax_r.axhline(1.0, color="C3", linestyle="--", linewidth=1)
        ax_r.set_ylabel("rel_err / (ref_m + ref_t), worst tensor")
        ax_r.set_title("gradient gap in units of rounding (≤ 1: rounding)", fontsize=9)
        sns.lineplot(data=ref, x="step", y="ref_rel_err", hue="side", style="mode", ax=ax_f,
                     errorbar=None)
        ax_f.set_ylabel("rel. error vs float64 (median tensor)")
        ax_f.set_title("each side against float64 (lower = closer)", fontsize=9)
        sns.lineplot(data=tol, x="step", y="value", hue="quantity", style="mode", ax=ax_t,
                     errorbar=None)
        ax_t.axhline(1.0, color="0.4", linestyle=":", linewidth=1)
        ax_t.set_ylabel("rel_err (worst), rel_tol (tightest)")
        ax_t.set_title("the per-step bound rel_tol: vacuous once it passes 1", fontsize=9)
        for ax in (ax_w, ax_r, ax_f, ax_t):
            ax.set_yscale("log")
            ax.set_xlabel("step")
        return _save(fig, path)


def _drift_text(arms: pd.DataFrame, cfg: RunConfig) -> list[str]:
    from experiments.core.tolerance import unit_roundoff

    by = arms.set_index("mode")
    free, synced = by.loc["free"], by.loc["synced"]
    u = unit_roundoff("float32")
    table = arms[["mode", "first_weight_diff", "final_weight_diff", "median_rel_err",
                  "max_rel_err", "median_rounding_ratio", "max_rounding_ratio",
                  "frac_rounding_exceeded",
                  "median_ref_manual", "median_ref_torch", "frac_manual_closer",
                  "worst_ratio", "verdict", "first_vacuous_step", "frac_vacuous"]]
    table = table.astype({"first_vacuous_step": object})
    table.loc[table["first_vacuous_step"].isna(), "first_vacuous_step"] = ""
    closer = ("manual" if free["median_ref_manual"] < free["median_ref_torch"] else "torch")
    lines = [
        "## What ran", "",
        f"The named experiment `float32-drift` ({' '.join(cfg.description.split())}) for "
        f"{cfg.steps or cfg.epochs} steps, metrics every {cfg.log_every}, once in `free` mode "
        "(each side its own float32 weights) and once in `synced` mode (the manual side reset "
        "to torch's weights after every step).", "",
        "## Numbers", "",
        markdown_table(table), "",
        "`first_weight_diff` / `final_weight_diff`: max |W_manual − W_torch| after the first "
        "and the last logged step. `median_ref_*`: median relative error of each side's "
        "gradient against a float64 gradient at that side's own weights; "
        "`frac_manual_closer`: fraction of (step, tensor) rows where manual is the closer. "
        "`rounding_ratio` = rel_err / (ref_rel_err_manual + ref_rel_err_torch): the gap "
        "between the sides in units of their own distance from exact (≲ 1 = explained by "
        "rounding). `first_vacuous_step` / `frac_vacuous`: where the runner's per-step "
        f"tolerance rel_tol reaches 1 and how often. Float32 unit roundoff u = {u:.3g}.", "",
        "## What one sees", "",
        f"- Free mode, the weights part ways: max |W_m − W_t| grows from "
        f"{_fmt(free['first_weight_diff'])} after the first step to "
        f"{_fmt(free['final_weight_diff'])} after step {int(free['steps']) - 1} "
        f"({_fmt(free['final_weight_diff'] / max(free['first_weight_diff'], 1e-300))}×; the "
        f"weights themselves reach |w| ≈ {_fmt(free['max_weight_scale'])}, so that is "
        f"{_fmt(free['final_weight_diff'] / (u * free['max_weight_scale']))} units of "
        "float32 rounding at that size). Each side rounds its own updates differently, and "
        "nothing pulls the two trajectories back together.",
        f"- Synced mode, one step's rounding only: the weights differ by at most "
        f"{_fmt(synced['weight_max_abs_diff'])} after any step, because both start every step "
        "from the same values.",
        f"- Synced, each step's gradients agree to float32 rounding: the gap between the "
        f"sides is at most {_fmt(synced['max_rounding_ratio'])} times the sum of their "
        f"distances from a float64 gradient (median {_fmt(synced['median_rounding_ratio'])}) "
        "— as the triangle inequality requires of two roundings of one exact gradient.",
        f"- Free, at weights that have drifted apart: median ratio "
        f"{_fmt(free['median_rounding_ratio'])}, median rel_err {_fmt(free['median_rel_err'])} "
        f"against {_fmt(synced['median_rel_err'])} synced: at most steps the drift moves the "
        "gradient by less than rounding does"
        + (f"; in {_fmt(100 * free['frac_rounding_exceeded'])}% of the (step, tensor) rows "
           f"the ratio exceeds 1 (worst {_fmt(free['max_rounding_ratio'])}): there the drifted "
           "weights add a visible part, still a relative error of at most "
           f"{_fmt(free['max_rel_err'])}." if free["frac_rounding_exceeded"] > 0 else "."),
        f"- Against float64 neither side is 'the exact one': median relative error "
        f"{_fmt(free['median_ref_manual'])} (manual) and {_fmt(free['median_ref_torch'])} "
        f"(torch) in free mode ({_fmt(free['median_ref_manual'] / u)} u); manual is closer in "
        f"{_fmt(100 * free['frac_manual_closer'])}% of the rows, torch in "
        f"{_fmt(100 * free['frac_torch_closer'])}% ({closer} slightly closer overall).",
    ]
    if free["frac_vacuous"] > 0:
        lines.append(
            f"- The runner's verdict ({free['verdict']}, worst {_fmt(free['worst_ratio'])} of "
            f"rel_tol) needs care here: rel_tol, a worst-case bound that grows with the "
            f"cancellation in the gradient (cond = ‖G̃‖/‖g‖), first reaches 1 (for some "
            f"tensor) at step "
            f"{free['first_vacuous_step']} and is ≥ 1 in {_fmt(100 * free['frac_vacuous'])}% "
            f"of the rows: from there on no difference could fail it, so 'agree' rests on "
            "the early steps and on the float64 comparison above, not on those rows. The "
            f"measured rel_err never exceeds {_fmt(free['max_rel_err'])}.")
    else:
        lines.append(f"- The runner's verdicts: {free['verdict']} (free, worst "
                     f"{_fmt(free['worst_ratio'])} of rel_tol), {synced['verdict']} (synced, "
                     f"worst {_fmt(synced['worst_ratio'])}); rel_tol stays below 1 throughout.")
    lines += [
        f"- The loss differs by {_fmt(free['final_loss_abs_diff'])} at the last step in free "
        f"mode, {_fmt(synced['final_loss_abs_diff'])} in synced mode.",
        f"- Replay check: the manual side alone, replayed in float32, reproduces the free "
        f"run's `loss_manual` to {_fmt(free['replay_max_abs_diff'])} (0 = bit for bit).", "",
    ]
    return lines


# ------------------------------------------------------------------ registry

StudyFn = Callable[..., Path]   # fn(out, *, quick=False, force=False, progress=False) -> out

#: name -> (one-line description, function)
STUDIES: dict[str, tuple[str, StudyFn]] = {
    "batch-modes": ("full-batch GD vs mini-batch vs batch 1 on one init: loss per update "
                    "and per example, noise, cost per epoch", batch_modes),
    "learning-rate": ("lr sweep from too small to divergent: slow, good, oscillating, "
                      "diverged (marked), sharpness 2/λ_max", learning_rate),
    "convex-vs-nonconvex": ("logistic regression vs a hidden layer: 1-D/2-D loss slices, "
                            "GD on a slice, 5 inits -> one minimum vs several",
                            convex_vs_nonconvex),
    "sparse-features": ("sparse binary inputs: exactly-zero gradients per step, rare "
                        "features' weights barely move, by lr and batch", sparse_features),
    "float32-drift-lesson": ("float32-drift in free and synced mode: weights part ways, "
                             "gradients agree to rounding, vs float64", float32_drift_lesson),
}


def run_study(name: str, out: str | Path, quick: bool = False, force: bool = False,
              progress: bool = False) -> Path:
    """Run the study ``name`` into the folder ``out``; return ``out``.

    Raises ``ConfigError`` for an unknown name or an existing ``out`` without ``force``
    (before any work is done).
    """
    if name not in STUDIES:
        close = difflib.get_close_matches(name, STUDIES, n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise ConfigError(f"unknown study {name!r}: {hint}the studies are "
                          f"{', '.join(STUDIES)}")
    return STUDIES[name][1](Path(out), quick=quick, force=force, progress=progress)
