"""sparse-features: sparse inputs give exactly-zero gradients, and the weights of rare
features barely move.

The `sparse` data set (200 rows × 20 binary features; feature j is 1 with probability
from 0.3 for j = 0 down to 0.02 for j = 19), a 20-8-1 sigmoid network, bce, one init
(seed 0), 10 epochs (2 with quick) in every arm (the same examples seen), synced mode,
over the grid lr ∈ {0.1, 1} × batch ∈ {1, 16, full = 200}.

∂E/∂W₁[i, j] = Σ_n δ₁[n, i] x[n, j]: a first-layer weight's gradient is exactly 0 on every
step whose batch has feature j off in every row, so that weight moves only on the steps
that contain its feature. The replay counts, at every step, the exactly-zero entries of
the gradients the manual side computes, and which features the batch contains; movement
of feature j = ‖W₁[:, j] after − before‖₂.

    zeros.csv     ``SPARSE_ZERO_COLUMNS``, one row per step per arm
    movement.csv  ``SPARSE_MOVE_COLUMNS``, one row per feature per arm
    arms.csv      ``SPARSE_ARMS_COLUMNS``, one row per arm
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import seaborn as sns

from experiments.core.config import RunConfig, replace
from experiments.core.runner import run_experiment
from experiments.core.schema import SPARSE_ARMS_COLUMNS, SPARSE_MOVE_COLUMNS, SPARSE_ZERO_COLUMNS
from experiments.output.style import figure, save, style, title

from .common import Frames, Replay, agreement, agreement_line, essay, fmt, log_400

CSVS = ("zeros", "movement", "arms")
N_EDGE = 5   # "rare" = the 5 least frequent features, "common" = the 5 most frequent


def base(quick: bool) -> RunConfig:
    return RunConfig(name="sparse-features", dataset="sparse", hidden=(8,),
                     activation="sigmoid", output_activation="sigmoid", loss="bce",
                     epochs=2 if quick else 10, seed=0, mode="synced")


def run(quick: bool, folder: Path, progress: bool = False) -> Frames:
    cfg0 = base(quick)
    parts = [_arm(log_400(replace(cfg0, name=f"sparse-{lr:g}-{b}", lr=lr, batch_size=b)),
                  progress) for lr in (0.1, 1.0) for b in (1, 16, "full")]
    zeros, moves, rows = zip(*parts, strict=True)
    arms = pd.DataFrame(list(rows))[SPARSE_ARMS_COLUMNS]
    return {"zeros": pd.concat(zeros, ignore_index=True)[SPARSE_ZERO_COLUMNS],
            "movement": pd.concat(moves, ignore_index=True)[SPARSE_MOVE_COLUMNS], "arms": arms}


def _arm(cfg: RunConfig, progress: bool) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    """One (lr, batch): zero counts per step, movement per feature, and its arms.csv row."""
    result = run_experiment(cfg, progress=progress)
    rp = Replay(cfg)
    D = rp.X.shape[1]
    touched = np.zeros(D, dtype=np.int64)                  # (D,) steps with gradient
    per_step = np.zeros((rp.total, 5), dtype=np.int64)     # (steps, 5) SPARSE_ZERO_COLUMNS[3:]

    def visit(step, idx, E, g, net):
        g0 = g["layers.0.weight"]                           # (H, D)
        xb = rp.X if idx is None else rp.X[idx]             # (B, D)
        touched[:] += (g0 != 0).any(axis=0)
        per_step[step] = (int((xb != 0).any(axis=0).sum()), int((g0 == 0).sum()), g0.size,
                          sum(int((v == 0).sum()) for v in g.values()),
                          sum(v.size for v in g.values()))

    rp.run(visit)
    W0 = rp.params0["layers.0.weight"]                      # (H, D)
    delta = np.linalg.norm(rp.net.params["layers.0.weight"] - W0, axis=0)   # (D,)
    freq = rp.X.mean(axis=0)                                # (D,)
    order = np.argsort(freq, kind="stable")
    rare, common = order[:N_EDGE], order[-N_EDGE:]
    per_touch = delta / np.maximum(touched, 1)              # (D,)
    arm = {"lr": cfg.lr, "batch_size": rp.B}
    zeros = pd.DataFrame({**arm, "step": np.arange(rp.total),
                          **dict(zip(SPARSE_ZERO_COLUMNS[3:], per_step.T, strict=True))})
    moves = pd.DataFrame({**arm, "feature": np.arange(D), "frequency": freq,
                          "steps_touched": touched, "delta_norm": delta})
    return zeros, moves, {
        **arm, "steps": rp.total,
        "zero_frac_first_layer": per_step[:, 1].sum() / per_step[:, 2].sum(),
        "zero_frac_all": per_step[:, 3].sum() / per_step[:, 4].sum(),
        "rare_move": delta[rare].mean(), "common_move": delta[common].mean(),
        "rare_common_ratio": delta[rare].mean() / delta[common].mean(),
        "rank_corr": float(np.corrcoef(pd.Series(freq).rank(), pd.Series(delta).rank())[0, 1]),
        "rare_move_per_touch": per_touch[rare].mean(),
        "common_move_per_touch": per_touch[common].mean(), **agreement(result, rp.losses)}


def figures(frames: Frames, folder: Path) -> list[str]:
    zeros, moves = frames["zeros"], frames["movement"]
    data = zeros.assign(zero_frac=zeros["zeros_first_layer"] / zeros["entries_first_layer"])
    with style():
        fig, (ax_t, ax_b) = figure(2, 5.0, 3.8)
        lr0 = data[data["lr"] == data["lr"].min()]
        first = lr0[lr0["step"] < 200]   # the first 200 steps: one epoch of batch 1
        sns.lineplot(data=first, x="step", y="zero_frac", hue="batch_size", ax=ax_t,
                     palette="tab10", errorbar=None, linewidth=0.8, drawstyle="steps-post")
        ax_t.set(ylabel="fraction of entries exactly 0", xlabel="step")
        ax_t.set_title(f"per step (lr {lr0['lr'].iloc[0]:g}, first 200 steps)", fontsize=9)
        # under the axes: inside, it covered the steps it describes
        sns.move_legend(ax_t, "upper center", bbox_to_anchor=(0.5, -0.18), frameon=False,
                        ncols=3, fontsize=7, title_fontsize=7)
        sns.barplot(data=data, x="batch_size", y="zero_frac", hue="lr", ax=ax_b,
                    palette="Set2", errorbar="sd")
        ax_b.set_ylabel("mean fraction exactly 0 (bar: ± 1 sd)")
        ax_b.set_title("all steps, by batch size and lr", fontsize=9)
        sns.move_legend(ax_b, "upper left", bbox_to_anchor=(1.01, 1), frameon=False)
        title(fig, "sparse-features: first-layer gradient entries that are exactly 0")
        names = [save(fig, folder / "zero_gradients.png")]
    steps = moves.groupby(["lr", "batch_size"])["steps_touched"].transform("max")
    data = moves.assign(touched_frac=moves["steps_touched"] / steps)
    with style():
        fig, (ax_m, ax_t) = figure(2, 5.0, 4.0)
        sns.scatterplot(data=data, x="frequency", y="delta_norm", hue="batch_size",
                        style="lr", ax=ax_m, palette="tab10", s=35)
        ax_m.set(xscale="log", yscale="log", ylabel="‖ΔW₁[:, j]‖₂ over training (log)",
                 xlabel="feature frequency: fraction of rows with x_j = 1 (log)")
        ax_m.set_title("how far each feature's first-layer weights moved", fontsize=9)
        sns.scatterplot(data=data[data["lr"] == data["lr"].min()], x="frequency",
                        y="touched_frac", hue="batch_size", ax=ax_t, palette="tab10", s=35)
        ax_t.set(xscale="log", yscale="log", xlabel="feature frequency (log)",
                 ylabel="fraction of steps with a non-zero gradient (log)")
        ax_t.set_title("why: a column gets gradient only when its feature is in the batch",
                       fontsize=9)
        # legends beside the panels: inside, they sat on the points
        sns.move_legend(ax_m, "upper left", bbox_to_anchor=(1.01, 1), frameon=False,
                        fontsize=7, title_fontsize=7)
        sns.move_legend(ax_t, "upper left", bbox_to_anchor=(1.01, 1), frameon=False,
                        fontsize=7, title_fontsize=7)
        title(fig, "sparse-features: rare features' weights move less")
        return [*names, save(fig, folder / "movement.png")]


def text(frames: Frames) -> list[str]:
    arms, moves = frames["arms"], frames["movement"]
    table = arms[["lr", "batch_size", "steps", "zero_frac_first_layer", "zero_frac_all",
                  "rare_move", "common_move", "rare_common_ratio", "rank_corr", "rel_err",
                  "worst_ratio", "verdict"]]
    one = arms[arms["batch_size"] == 1]
    full = arms[arms["batch_size"] == arms["batch_size"].max()]
    feats = moves[(moves["lr"] == moves["lr"].min()) & (moves["batch_size"] == 1)]
    f_rare = feats.loc[feats["frequency"].idxmin()]
    f_common = feats.loc[feats["frequency"].idxmax()]
    legend = [
        "`zero_frac_*`: exactly-zero gradient entries over all steps (first-layer weights; "
        f"all parameters). `rare_move` / `common_move`: mean ‖ΔW₁[:, j]‖ over the {N_EDGE} "
        f"least / most frequent features; `rank_corr`: Spearman correlation between feature "
        "frequency and movement (1 = movement ordered exactly by frequency)."]
    sees = [
        f"- Exact zeros: with batch 1, {fmt(100 * one['zero_frac_first_layer'].mean())}% of "
        "the first-layer gradient entries are exactly 0 at a step (every column whose "
        "feature is off in that row); "
        f"{fmt(100 * one['zero_frac_all'].mean())}% of all gradient entries; with batch 16, "
        f"{fmt(100 * arms.loc[arms['batch_size'] == 16, 'zero_frac_first_layer'].mean())}%; "
        f"with the full batch {fmt(100 * full['zero_frac_first_layer'].mean())}% (a column "
        "is 0 there only when its feature is absent from the whole data set). The counts "
        "are the same at both learning rates: which entries are exactly 0 depends only on "
        "which features the batch contains, not on the weights.",
        f"- Feature {int(f_rare['feature'])} (in {fmt(100 * f_rare['frequency'])}% of rows) "
        f"got a non-zero gradient on {int(f_rare['steps_touched'])} of "
        f"{int(one['steps'].iloc[0])} batch-1 steps at lr {moves['lr'].min():g}; feature "
        f"{int(f_common['feature'])} ({fmt(100 * f_common['frequency'])}%) on "
        f"{int(f_common['steps_touched'])}. A weight moves only when its feature shows up.",
        f"- Rare features' weights move less in every arm: rare/common movement ratio "
        f"{fmt(arms['rare_common_ratio'].min())}–{fmt(arms['rare_common_ratio'].max())}, rank "
        f"correlation of movement with frequency {fmt(arms['rank_corr'].min())}–"
        f"{fmt(arms['rank_corr'].max())} (movement also depends on how much a feature "
        "tells about the label, so the order is not strict).",
        f"- Two mechanisms. Full batch: every column is updated at every step, but its "
        f"gradient is a mean over all rows, diluted in proportion to how often the feature is "
        f"on — per step rare features' columns moved {fmt(full['rare_move_per_touch'].mean())} "
        f"against {fmt(full['common_move_per_touch'].mean())} for common ones (means over "
        f"the two lrs). Batch 1: a rare feature's update is not diluted — per step it is "
        f"touched, its net movement was {fmt(one['rare_move_per_touch'].mean())} against "
        f"{fmt(one['common_move_per_touch'].mean())} for common ones (whose many updates "
        "partly cancel) — but it is touched on few steps.",
        "- Learning rate and batch size: "
        + "; ".join(f"lr {r.lr:g} batch {r.batch_size}: common {fmt(r.common_move)}, rare "
                    f"{fmt(r.rare_move)}" for r in arms.itertuples())
        + ". A larger lr scales every step; smaller batches make more steps per epoch. "
        "Neither changes *which* weights get gradient: a rare feature's weights are updated "
        "on few steps (or by diluted amounts) whatever the settings — the problem "
        "per-parameter step sizes such as AdaGrad (Duchi et al., 2011) were designed for.",
        agreement_line(arms) + "."]
    return essay(__doc__, [table], legend, sees)
