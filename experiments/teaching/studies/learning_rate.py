"""learning-rate: a learning-rate sweep from too small through good to divergent.

The seed data (4 samples × 3 inputs), a 3-4-1 network with sigmoid hidden units, biases,
½·SSE, full-batch gradient descent, one init (seed 0), 500 steps (100 with quick). The
output unit is linear (``identity``): the loss is then unbounded in the output weights and
a too-large step really overflows; the seed case proper (sigmoid output, loss ≤ ½ per
sample) is run at two rates for contrast — it saturates instead. Each lr runs twice:
``synced`` (curves, per-step agreement) and ``free`` (how far the two sides' weights part
when each follows its own rounding). The sharpness λ_max (top Hessian eigenvalue,
``hessian_eigenvalues``) at the weights each arm ends on, from the replay, gives the
quadratic model's stability limit 2/λ_max.

    curves.csv  ``LR_CURVE_COLUMNS`` (synced runs), one row per step per arm
    arms.csv    ``LR_ARMS_COLUMNS``, one row per (output_activation, lr)
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib import colormaps

from experiments.core.config import RunConfig, replace
from experiments.core.runner import run_experiment
from experiments.core.schema import LR_ARMS_COLUMNS, LR_CURVE_COLUMNS
from experiments.output.style import figure, save, style, title

from .common import (
    Frames,
    Replay,
    agreement,
    agreement_line,
    essay,
    fmt,
    hessian_eigenvalues,
    listed,
    pct,
    verdicts,
)

CSVS = ("curves", "arms")
#: regimes, decided from the measured run in this order (the thresholds are this study's
#: definitions). `good` and `slow` are given only below the quadratic model's stable step
#: 2/λ_max at the initial weights, so no label contradicts the limit the report states.
REGIMES = {
    "diverged": "the runner stopped it: a non-finite loss or gradient (status diverged)",
    "stuck": "finite, but the final loss is not below the initial one",
    "oscillating": "converging or not, ≥ 5% of the updates raised the loss",
    "edge": "lr ≥ 2/λ_max at the initial weights (beyond the quadratic model's stable step), "
            "yet the loss fell, with < 5% of updates raising it",
    "slow": "lr < 2/λ_max at the initial weights, < 5% of updates raising the loss, but it "
            "fell by less than 100× in the steps given",
    "good": "lr < 2/λ_max at the initial weights, the loss fell by at least 100×, with < 5% "
            "of updates raising it",
}
#: the order the report lists regimes in: by lr, small to large
IN_LR_ORDER = ("slow", "good", "edge", "oscillating", "stuck", "diverged")
LOSS_CAP = 1e6   # the figure's top: a diverging loss runs to 1e308 before it overflows


def _regime(status: str, initial: float, final: float, frac_up: float,
            beyond_limit: bool) -> str:
    if status == "diverged":
        return "diverged"
    if not final < initial:
        return "stuck"
    if frac_up >= 0.05:
        return "oscillating"
    if beyond_limit:
        return "edge"
    return "good" if final <= initial / 100 else "slow"


def base(quick: bool) -> RunConfig:
    return RunConfig(name="learning-rate", dataset="seed", hidden=(4,), activation="sigmoid",
                     output_activation="identity", bias=True, loss="half_sse",
                     batch_size="full", steps=100 if quick else 500, seed=0, log_every=1,
                     mode="synced")


def run(quick: bool, folder: Path, progress: bool = False) -> Frames:
    cfg0 = base(quick)
    lrs = ([0.01, 0.1, 0.3, 100.0] if quick else
           [0.01, 0.03, 0.1, 0.2, 0.3, 0.4, 1.0, 10.0, 100.0, 1e4])
    # λ_max at the shared init, per output unit: 2/λ_max is the stable step the regimes and
    # the report hold every lr against
    sharp0 = {}
    for output in ("identity", "sigmoid"):
        rp0 = Replay(replace(cfg0, output_activation=output))
        sharp0[output] = hessian_eigenvalues(rp0.net, rp0.X, rp0.Y)[-1]
    grid = [("identity", lr) for lr in lrs] + [("sigmoid", lr) for lr in (1.0, 1e4)]
    curves, rows = zip(*[_arm(replace(cfg0, name=f"learning-rate-{o}-{lr:g}", lr=lr,
                                      output_activation=o), 2 / sharp0[o], progress)
                         for o, lr in grid], strict=True)
    arms = pd.DataFrame(list(rows))[LR_ARMS_COLUMNS]
    arms["diverged_step"] = arms["diverged_step"].astype("Int64")
    arms.attrs["sharpness_initial"] = sharp0
    return {"curves": pd.concat(curves, ignore_index=True)[LR_CURVE_COLUMNS], "arms": arms}


def _arm(cfg: RunConfig, limit: float, progress: bool) -> tuple[pd.DataFrame, dict]:
    """One (output, lr): its synced loss curve, and its row (with the free run's drift);
    ``limit`` = 2/λ_max at the initial weights, which decides `edge` against `good`."""
    result = run_experiment(cfg, progress=progress)
    free = agreement(run_experiment(replace(cfg, mode="free")))
    rp = Replay(cfg)
    rp.run()
    loss = result.loss
    finite = loss[np.isfinite(loss["loss_manual"])]
    initial, final = loss["loss_manual"].iloc[0], loss["loss_manual"].iloc[-1]
    frac_up = float(np.mean(np.diff(finite["loss_manual"].to_numpy()) > 0))
    curve = loss.assign(output_activation=cfg.output_activation, lr=cfg.lr)
    return curve, {
        "output_activation": cfg.output_activation, "lr": cfg.lr,
        "regime": _regime(result.status, initial, final, frac_up, cfg.lr >= limit),
        "diverged_step": int(loss["step"].iloc[-1]) if result.status == "diverged" else pd.NA,
        "initial_loss": initial, "final_loss": final, "min_loss": finite["loss_manual"].min(),
        "frac_updates_up": frac_up,
        "sharpness_final": (hessian_eigenvalues(rp.net, rp.X, rp.Y)[-1]
                            if result.status == "completed" else np.nan),
        "free_weight_max_abs_diff": free["weight_max_abs_diff"],
        "free_worst_ratio": free["worst_ratio"], "free_verdict": free["verdict"],
        **agreement(result, rp.losses)}


def figures(frames: Frames, folder: Path) -> list[str]:
    curves, arms = frames["curves"], frames["arms"]
    regime = {(a.output_activation, a.lr): a.regime for a in arms.itertuples()}
    label = [f"lr={lr:g} ({regime[(o, lr)]})"
             for o, lr in zip(curves["output_activation"], curves["lr"], strict=True)]
    # One colour per lr, the same in both panels, ordered along turbo from small to large
    # lr: ten qualitative colours would repeat across the panels.
    lrs = sorted(set(arms["lr"]))
    colour = dict(zip(lrs, colormaps["turbo"](np.linspace(0.05, 0.95, len(lrs))), strict=True))
    # A diverging loss runs to ~1e308 before it overflows: above LOSS_CAP the line leaves
    # the top of the axis, and an X on the top edge marks the step the runner stopped.
    data = curves.assign(label=label, loss=curves["loss_manual"].where(
        curves["loss_manual"] <= LOSS_CAP))
    with style():
        fig, axes = figure(2, 5.5, 4.4, gridspec_kw={"width_ratios": [2, 1]})
        for ax, output in zip(axes, ("identity", "sigmoid"), strict=True):
            part = data[data["output_activation"] == output]
            labels = list(dict.fromkeys(part["label"]))
            palette = {lab: colour[lr] for lab, lr in zip(part["label"], part["lr"],
                                                          strict=True)}
            sns.lineplot(data=part, x="step", y="loss", hue="label", hue_order=labels,
                         palette=palette, ax=ax, errorbar=None, linewidth=1.2)
            ax.set_yscale("log")
            _mark_divergence(ax, arms[arms["output_activation"] == output], curves, colour)
            ax.set(xlabel="step (full-batch updates)", ylabel="½·SSE loss, log scale")
            # outside, right of the axes: inside it covered the curves
            ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0),
                      borderaxespad=0)
        axes[0].set_title(f"linear output; X where a diverging lr's line leaves the axes "
                          f"(loss > {LOSS_CAP:.0e}), labelled with the step it overflowed",
                          fontsize=8, pad=10)
        axes[1].set_title("sigmoid output (the seed case)", fontsize=8)
        title(fig, "learning-rate: the loss per step, from too small a step to divergence")
        return [save(fig, folder / "learning_rate.png")]


def _mark_divergence(ax, arms: pd.DataFrame, curves: pd.DataFrame, colour: dict) -> None:
    """An X on the top edge where each diverged arm's line leaves the axes (its first step
    above LOSS_CAP, or its last logged one), labelled with its lr and the step the runner
    stopped it: the loss runs far beyond the axes before it overflows."""
    diverged = arms[arms["regime"] == "diverged"].sort_values("lr")
    for i, arm in enumerate(diverged.itertuples()):
        c = curves[(curves["output_activation"] == arm.output_activation)
                   & (curves["lr"] == arm.lr)]
        off = c.loc[~(c["loss_manual"] <= LOSS_CAP), "step"]     # above the cap, inf, NaN
        leaves = off.min() if len(off) else c["step"].max()
        ax.scatter([leaves], [LOSS_CAP], marker="X", s=80, color=colour[arm.lr],
                   edgecolor="black", zorder=5, clip_on=False)
        # the lines leave within a few steps of each other: one label per line, stacked
        ax.annotate(f"lr {arm.lr:g}: leaves at step {leaves:g}, overflows at step "
                    f"{int(arm.diverged_step)}", (leaves, LOSS_CAP), fontsize=6,
                    xytext=(10, -10 - 9 * i), textcoords="offset points", ha="left",
                    color=colour[arm.lr], fontweight="bold")
    if not diverged.empty:
        ax.set_ylim(top=LOSS_CAP)


def text(frames: Frames) -> list[str]:
    arms = frames["arms"]
    table = arms[["output_activation", "lr", "regime", "diverged_step", "final_loss",
                  "frac_updates_up", "sharpness_final", "rel_err", "worst_ratio", "verdict",
                  "free_weight_max_abs_diff", "free_verdict"]].astype({"diverged_step": object})
    legend = ["`sharpness_final` = λ_max of the loss Hessian at the weights the arm ends on "
              "(central differences of the hand-derived gradient); `free_*` come from the "
              "free-mode run of the same lr. `regime`, decided from each run in this order "
              "(thresholds are this study's definitions; `good` and `slow` only below the "
              "stable step 2/λ_max at the initial weights, so no arm beyond it is called "
              "good):", "", *[f"- `{k}`: {v}" for k, v in REGIMES.items()]]
    sharp0 = arms.attrs["sharpness_initial"]
    return essay(__doc__, [table.fillna({"diverged_step": ""})], legend,
                 [*_linear_lines(arms, sharp0["identity"]),
                  *_contrast_lines(arms, sharp0["sigmoid"])])


def _series(items: list[str]) -> str:
    """'a', 'a and b', 'a, b and c'."""
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def _stops(diverged: pd.DataFrame) -> str:
    """Where the runner stopped the diverged arms, as a parenthesis ('' when none did)."""
    if diverged.empty:
        return ""
    if len(diverged) == 1:
        return f" (the runner stopped it at step {diverged['diverged_step'].iloc[0]})"
    steps = diverged.sort_values("lr")["diverged_step"].to_numpy()
    sooner = ": larger steps overflow sooner" if (np.diff(steps) <= 0).all() else ""
    return f" (the runner stopped them at steps {listed(steps, '')} respectively{sooner})"


def _linear_lines(arms: pd.DataFrame, sharp0: float) -> list[str]:
    """The main sweep: which lr fell in which regime, the stable step, what lies beyond."""
    ident = arms[arms["output_activation"] == "identity"]
    done = ident[ident["status"] == "completed"]
    monotone = done[done["frac_updates_up"] == 0]
    beyond = done[done["regime"].isin(["edge", "oscillating"])]
    clauses = [f"{r} at lr {listed(ident.loc[ident['regime'] == r, 'lr'], 'g')}"
               for r in IN_LR_ORDER if (ident["regime"] == r).any()]
    lines = [
        f"- Linear output: {'; '.join(clauses)}"
        f"{_stops(ident[ident['regime'] == 'diverged'])}.",
        f"- The quadratic model: gradient descent on ½ wᵀHw is stable iff lr < 2/λ_max. "
        f"λ_max is {fmt(sharp0)} at the initial weights (2/λ_max = {fmt(2 / sharp0)}): the "
        "regimes call an arm good or slow only below that lr; a converging arm above it is "
        "edge (oscillating if ≥ 5% of its updates raise the loss)"
        + (f"; at the weights reached with the largest monotone lr "
           f"({monotone['lr'].max():g}) λ_max is {fmt(monotone.iloc[-1]['sharpness_final'])} "
           f"(2/λ_max = {fmt(2 / monotone.iloc[-1]['sharpness_final'])})."
           if not monotone.empty else ".")]
    if not beyond.empty:
        one = len(beyond) == 1
        lines.append(
            f"- Above that limit the network does not blow up at once: "
            f"{'the arm' if one else 'the arms'} at lr "
            f"{_series([f'{r.lr:g} ({r.regime})' for r in beyond.itertuples()])} "
            f"{'raises' if one else 'raise'} the loss on "
            f"{_series([pct(f) for f in beyond['frac_updates_up']])} of "
            f"{'its' if one else 'their'} updates and {'ends' if one else 'end'} where the "
            f"sharpness is {_series([fmt(x) for x in beyond['sharpness_final']])}, i.e. "
            f"2/λ_max = {_series([fmt(2 / x) for x in beyond['sharpness_final']])}: training "
            "moves to flatter regions until 2/λ_max is about the lr (the \"edge of "
            "stability\", Cohen et al. 2021)"
            + (". Only a larger lr overflows." if (ident["regime"] == "diverged").any()
               else "."))
    return [*lines, _free_line(done, beyond)]


def _free_line(done: pd.DataFrame, beyond: pd.DataFrame) -> str:
    """Free mode: how far the two sides' weights part below and beyond the stable step."""
    stable = done[done["regime"].isin(["good", "slow"])]
    parts = []
    if not stable.empty:
        parts.append(f"below the stable step the weights stay within "
                     f"{fmt(stable['free_weight_max_abs_diff'].max())}")
    if not beyond.empty:
        differ = (beyond["free_verdict"] == "differ").any()
        parts.append(
            f"beyond it (lr {listed(beyond['lr'], 'g')}) rounding differences are amplified "
            f"step after step to {fmt(beyond['free_weight_max_abs_diff'].max())}"
            + (" — then the two sides' gradients are taken at different weights and their "
               f"comparison reads {verdicts(beyond, 'free_verdict')}: not a bug in either "
               "side, the dynamics' sensitivity to rounding" if differ else
               f", and their comparison still reads {verdicts(beyond, 'free_verdict')}"))
    return ("- Free mode (each side its own weights): " + "; ".join(parts) + "."
            if parts else "- Free mode: no arm completed.")


def _contrast_lines(arms: pd.DataFrame, sharp0: float) -> list[str]:
    sig = arms[arms["output_activation"] == "sigmoid"]
    return [
        f"- Sigmoid output (the seed case): λ_max is {fmt(sharp0)} at the initial weights "
        f"(2/λ_max = {fmt(2 / sharp0)}); lr {listed(sig['lr'], 'g')} end at loss "
        f"{listed(sig['final_loss'])} ({', '.join(sig['regime'])}). A sigmoid output bounds "
        "the loss (½·SSE ≤ 2 on 4 samples), so a huge step cannot overflow it: it drives "
        "the units into saturation, where σ' ≈ 0 and the gradient vanishes — training "
        "stops instead of diverging.",
        agreement_line(arms, ", synced (both sides' gradients at the same weights every "
                       "step, up to the step before a divergence)", replay=False) + "."]
