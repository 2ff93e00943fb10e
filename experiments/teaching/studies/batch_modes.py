"""batch-modes: full-batch gradient descent vs mini-batches vs stochastic (batch 1), with
the same data, init and learning rate and the same number of epochs (= examples seen).

moons (200 points, standardised), 2-8-1 sigmoid network, bce (a mean over the batch, so
one step's size does not grow with the batch), lr 0.5, 25 epochs (3 with quick), synced
mode. The loss the runner records is the loss on that step's batch; the replay adds
``full_loss``, the loss on all 200 points at the weights the step starts from, which is
what training is minimising. Each arm sees the same examples; what differs is how many
updates they are spread over.

    curves.csv  ``CURVE_COLUMNS``, one row per logged step per arm
    arms.csv    ``BATCH_ARMS_COLUMNS``, one row per arm
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pandas as pd
import seaborn as sns

from experiments.core.config import RunConfig, replace
from experiments.core.runner import run_experiment
from experiments.core.schema import BATCH_ARMS_COLUMNS, CURVE_COLUMNS
from experiments.output.style import figure, save, style, title

from .common import Frames, Replay, agreement, agreement_line, essay, fmt, log_400, pct

CSVS = ("curves", "arms")
ARMS = [("full-batch", "full"), ("mini-batch", 20), ("stochastic", 1)]


def base(quick: bool) -> RunConfig:
    return RunConfig(name="batch-modes", dataset="moons", standardize=True, hidden=(8,),
                     activation="sigmoid", output_activation="sigmoid", loss="bce", lr=0.5,
                     epochs=3 if quick else 25, seed=0, mode="synced")


def run(quick: bool, folder: Path, progress: bool = False) -> Frames:
    cfg0 = base(quick)
    curves, rows, seconds = [], [], {}
    for mode, batch in ARMS:
        cfg = log_400(replace(cfg0, name=f"batch-modes-{mode}", batch_size=batch))
        curve, row = _arm(cfg, mode, progress)
        curves.append(curve)
        rows.append(row)
        t0 = time.perf_counter()
        Replay(cfg).run()                     # the bare manual loop, timed alone
        # wall time goes to the report only: the CSVs stay byte-identical across runs
        seconds[mode] = (time.perf_counter() - t0) / cfg.epochs
    arms = pd.DataFrame(rows)[BATCH_ARMS_COLUMNS]
    arms.attrs["seconds"] = seconds
    return {"curves": pd.concat(curves, ignore_index=True)[CURVE_COLUMNS], "arms": arms}


def _arm(cfg: RunConfig, mode: str, progress: bool) -> tuple[pd.DataFrame, dict]:
    """One batch size: the runner's logged curve with the full-data loss added, and its row."""
    result = run_experiment(cfg, progress=progress)
    rp = Replay(cfg)
    full_loss = np.full(rp.total + 1, np.nan)               # (steps + 1,) incl. final

    def visit(step, idx, E, grads, net):
        full_loss[step] = E if idx is None else net.loss(rp.X, rp.Y)

    rp.run(visit)
    full_loss[-1] = rp.net.loss(rp.X, rp.Y)
    logged = result.loss
    curve = logged.assign(mode=mode, batch_size=rp.B,
                          full_loss=full_loss[logged["step"].to_numpy()])
    epochs = cfg.epochs
    return curve, {
        "mode": mode, "batch_size": rp.B, "lr": cfg.lr, "epochs": epochs, "steps": rp.total,
        "steps_per_epoch": rp.steps_per_epoch, "final_full_loss": full_loss[-1],
        "full_loss_at_equal_steps": full_loss[min(epochs, rp.total)],
        "frac_updates_up": float(np.mean(np.diff(full_loss) > 0)),
        "batch_loss_noise": float(np.mean(np.abs(rp.losses - full_loss[:-1]))),
        **agreement(result, rp.losses)}


def figures(frames: Frames, folder: Path) -> list[str]:
    curves = frames["curves"]
    # x = examples consumed by the updates made so far: the loss at step s is taken at the
    # weights *before* update s, so its own batch is not counted (every curve starts at 0).
    data = curves.assign(examples_used=curves["examples_seen"] - curves["batch_size"])
    order = ["stochastic", "mini-batch", "full-batch"]   # the 25-point curve drawn last
    palette = dict(zip(order, sns.color_palette(n_colors=3), strict=True))
    with style():
        fig, (ax_s, ax_e) = figure(2, 5.5, 4.0, sharey=True)
        for ax, x in ((ax_s, "step"), (ax_e, "examples_used")):
            common = dict(data=data, x=x, hue="mode", hue_order=order, palette=palette, ax=ax,
                          errorbar=None)
            sns.lineplot(y="loss_manual", alpha=0.25, linewidth=0.6, legend=False, **common)
            sns.lineplot(y="full_loss", linewidth=2, **common)
            ax.set_yscale("log")
            ax.set_ylabel("bce loss, log scale")
        ax_s.set_xscale("symlog", linthresh=1)
        ax_s.set_xlim(left=0)
        ax_s.set(xlabel="updates made (symlog scale)", title="against updates")
        ax_e.set(xlabel="examples used by those updates (gradient cost)",
                 title="against examples seen")
        # one legend for both panels, right of them: inside, it sat on the early curves
        ax_s.get_legend().remove()
        sns.move_legend(ax_e, "upper left", bbox_to_anchor=(1.01, 1), frameon=False)
        title(fig, "batch-modes: full batch, mini-batch and batch 1 from one init",
              "thick: loss on all 200 points; faint: loss on the step's own batch")
        return [save(fig, folder / "batch_modes.png")]


def text(frames: Frames) -> list[str]:
    arms = frames["arms"]
    seconds, epochs = arms.attrs["seconds"], int(arms["epochs"].iloc[0])
    by = arms.set_index("mode")
    full, mini, sgd = by.loc["full-batch"], by.loc["mini-batch"], by.loc["stochastic"]
    b_mini = int(mini["batch_size"])
    table = arms[["mode", "batch_size", "steps", "final_full_loss", "full_loss_at_equal_steps",
                  "frac_updates_up", "batch_loss_noise", "rel_err",
                  "worst_ratio", "verdict", "replay_max_abs_diff"]]
    legend = [
        "- `final_full_loss`: loss on all 200 points after the last update; "
        f"`full_loss_at_equal_steps`: the same after {epochs} updates in every arm.",
        "- `frac_updates_up`: fraction of updates after which the full-data loss was *higher*"
        " — 0 for exact gradient descent at a small enough lr, large for noisy gradients.",
        "- `batch_loss_noise`: mean |loss on the step's batch − loss on all points|: how far "
        "the number a mini-batch run prints is from the loss it is minimising."]
    sees = [
        f"- After the same {epochs} updates (full batch's whole run; batch 1 has then seen "
        f"{epochs} examples) the full-data loss is {fmt(full['full_loss_at_equal_steps'])} "
        f"(full batch), {fmt(mini['full_loss_at_equal_steps'])} (batch {b_mini})"
        f" and {fmt(sgd['full_loss_at_equal_steps'])} (batch 1): per update, "
        + ("full batch is ahead." if full["full_loss_at_equal_steps"]
           < sgd["full_loss_at_equal_steps"] else
           "batch 1 is not behind: a one-example gradient is an unbiased estimate of the full "
           "one (its mean over the data is the full gradient) and, far from a minimum, its "
           "noise costs little — at 1/200 of the work."),
        f"- After the same {epochs} epochs (the same gradient work) batch 1 reaches "
        f"{fmt(sgd['final_full_loss'])}, batch {b_mini} {fmt(mini['final_full_loss'])}, full "
        f"batch {fmt(full['final_full_loss'])}: batch 1 made {int(sgd['steps'])} updates with "
        f"that work, full batch {int(full['steps'])}.",
        f"- The price is noise: the full-data loss went *up* after "
        f"{pct(full['frac_updates_up'])} of full-batch updates, "
        f"{pct(mini['frac_updates_up'])} of batch-{b_mini} ones and "
        f"{pct(sgd['frac_updates_up'])} of batch-1 ones; the loss printed on a "
        f"one-example batch is on average {fmt(sgd['batch_loss_noise'])} away from the "
        "full-data loss (the faint lines).",
        f"- Cost per epoch: the same 200 example-gradients in every arm, but "
        f"{int(sgd['steps_per_epoch'])} updates instead of 1; in wall time (the bare manual "
        f"loop, no metrics, this run) {fmt(seconds['stochastic'])} s against "
        f"{fmt(seconds['full-batch'])} s per epoch "
        f"({fmt(seconds['stochastic'] / seconds['full-batch'])}×): with 200×2 inputs "
        "the per-update overhead (Python calls, tiny matrix products), not the arithmetic, "
        "sets the price.",
        agreement_line(arms) + " (synced mode follows torch's weights, the replay its own: "
        "they differ by rounding only).",
    ]
    return essay(__doc__, [table], legend, sees)
