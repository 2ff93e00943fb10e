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

from experiments.core.config import RunConfig, replace
from experiments.core.runner import run_experiment
from experiments.core.schema import LR_ARMS_COLUMNS, LR_CURVE_COLUMNS
from experiments.output.style import figure, save, style

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

DESCRIPTION = ("lr sweep from too small to divergent: slow, good, oscillating, diverged "
               "(marked), sharpness 2/λ_max")
CSVS = ("curves", "arms")
#: regimes, decided from the measured run (thresholds are this study's definitions)
REGIMES = {
    "diverged": "the runner stopped it: a non-finite loss or gradient (status diverged)",
    "stuck": "finite, but the final loss is not below the initial one",
    "oscillating": "converging or not, ≥ 5% of the updates raised the loss",
    "slow": "monotone enough, but the loss fell by less than 100× in the steps given",
    "good": "the loss fell by at least 100×, with < 5% of updates raising it",
}
LOSS_CAP = 1e6   # the figure's top: a diverging loss runs to 1e308 before it overflows


def _regime(status: str, initial: float, final: float, frac_up: float) -> str:
    if status == "diverged":
        return "diverged"
    if not final < initial:
        return "stuck"
    if frac_up >= 0.05:
        return "oscillating"
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
    curves, rows = [], []
    for output, lr in [("identity", lr) for lr in lrs] + [("sigmoid", lr) for lr in (1.0, 1e4)]:
        cfg = replace(cfg0, name=f"learning-rate-{output}-{lr:g}", lr=lr,
                      output_activation=output)
        curve, row = _arm(cfg, progress)
        curves.append(curve)
        rows.append(row)
    rp0 = Replay(replace(cfg0, lr=0.1))
    arms = pd.DataFrame(rows)[LR_ARMS_COLUMNS]
    arms["diverged_step"] = arms["diverged_step"].astype("Int64")
    arms.attrs["sharpness_initial"] = hessian_eigenvalues(rp0.net, rp0.X, rp0.Y)[-1]
    return {"curves": pd.concat(curves, ignore_index=True)[LR_CURVE_COLUMNS], "arms": arms}


def _arm(cfg: RunConfig, progress: bool) -> tuple[pd.DataFrame, dict]:
    """One (output, lr): its synced loss curve, and its row (with the free run's drift)."""
    result = run_experiment(cfg, progress=progress)
    free = agreement(run_experiment(replace(cfg, mode="free")))
    rp = Replay(cfg)
    rp.run()
    loss = result.loss
    finite = loss[np.isfinite(loss["loss_manual"])]
    initial, final = loss["loss_manual"].iloc[0], loss["loss_manual"].iloc[-1]
    frac_up = float(np.mean(np.diff(finite["loss_manual"].to_numpy()) > 0))
    diverged = result.status == "diverged"
    curve = loss.assign(output_activation=cfg.output_activation, lr=cfg.lr)
    return curve, {
        "output_activation": cfg.output_activation, "lr": cfg.lr,
        "regime": _regime(result.status, initial, final, frac_up),
        "diverged_step": int(loss["step"].iloc[-1]) if diverged else pd.NA,
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
    # A diverging loss runs to ~1e308 before it overflows: above LOSS_CAP the line leaves
    # the top of the axis, and an X on the top edge marks the step the runner stopped.
    data = curves.assign(label=label, loss=curves["loss_manual"].where(
        curves["loss_manual"] <= LOSS_CAP))
    with style():
        fig, axes = figure(2, 5.5, 4.4, gridspec_kw={"width_ratios": [2, 1]})
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
            ax.set(xlabel="step (full-batch updates)", ylabel="½·SSE loss, log scale")
            ax.legend(fontsize=7, loc="lower left")
        axes[0].set_title("linear output; X on the top edge = the step each diverging lr "
                          f"overflowed (lines leave at {LOSS_CAP:.0e})", fontsize=8, pad=10)
        axes[1].set_title("sigmoid output (the seed case)", fontsize=8)
        return [save(fig, folder / "learning_rate.png")]


def text(frames: Frames) -> list[str]:
    arms = frames["arms"]
    sharp0 = arms.attrs["sharpness_initial"]
    table = arms[["output_activation", "lr", "regime", "diverged_step", "final_loss",
                  "frac_updates_up", "sharpness_final", "rel_err", "worst_ratio", "verdict",
                  "free_weight_max_abs_diff", "free_verdict"]].astype({"diverged_step": object})
    legend = ["`sharpness_final` = λ_max of the loss Hessian at the weights the arm ends on "
              "(central differences of the hand-derived gradient); `free_*` come from the "
              "free-mode run of the same lr. `regime`, decided from each run (thresholds are "
              "this study's definitions):", "", *[f"- `{k}`: {v}" for k, v in REGIMES.items()]]
    return essay(__doc__, [table.fillna({"diverged_step": ""})], legend, _sees(arms, sharp0))


def _sees(arms: pd.DataFrame, sharp0: float) -> list[str]:
    ident = arms[arms["output_activation"] == "identity"]
    done = ident[ident["status"] == "completed"]
    monotone = done[done["frac_updates_up"] == 0]
    shaky = done[done["regime"] == "oscillating"]
    sig = arms[arms["output_activation"] == "sigmoid"]
    lrs = {r: listed(ident.loc[ident["regime"] == r, "lr"], "g") or "none" for r in REGIMES}
    stops = listed(ident.loc[ident["regime"] == "diverged", "diverged_step"], "")
    lines = [
        f"- Linear output: slow at lr {lrs['slow']}; good at {lrs['good']}; oscillating at "
        f"{lrs['oscillating']}; diverged at {lrs['diverged']}"
        + (f" (the runner stopped at step {stops} respectively: larger steps overflow "
           "sooner)." if stops else "."),
        f"- The quadratic model: gradient descent on ½ wᵀHw is stable iff lr < 2/λ_max. "
        f"λ_max is {fmt(sharp0)} at the initial weights (2/λ_max = {fmt(2 / sharp0)})"
        + (f"; at the weights reached with the largest monotone lr "
           f"({monotone['lr'].max():g}) it is {fmt(monotone.iloc[-1]['sharpness_final'])} "
           f"(2/λ_max = {fmt(2 / monotone.iloc[-1]['sharpness_final'])})."
           if not monotone.empty else ".")]
    if not shaky.empty:
        lines.append(
            f"- Above that limit the network does not blow up at once: the arms at lr "
            f"{listed(shaky['lr'], 'g')} raise the loss on "
            f"{', '.join(map(pct, shaky['frac_updates_up']))} of their updates and end "
            f"where the sharpness is {listed(shaky['sharpness_final'])}, i.e. 2/λ_max = "
            f"{listed(2 / shaky['sharpness_final'])}: training moves to flatter regions "
            "until 2/λ_max is about the lr (the \"edge of stability\", Cohen et al. 2021). "
            "Only a larger lr overflows.")
    stable = done.loc[done["regime"].isin(["good", "slow"]), "free_weight_max_abs_diff"]
    return [*lines,
            f"- Sigmoid output (the seed case): lr {listed(sig['lr'], 'g')} end at loss "
            f"{listed(sig['final_loss'])} ({', '.join(sig['regime'])}). A sigmoid output bounds "
            "the loss (½·SSE ≤ 2 on 4 samples), so a huge step cannot overflow it: it drives "
            "the units into saturation, where σ' ≈ 0 and the gradient vanishes — training "
            "stops instead of diverging.",
            agreement_line(arms, ", synced (both sides' gradients at the same weights every "
                           "step, up to the step before a divergence)", replay=False) + ".",
            f"- Free mode (each side its own weights): at a stable lr the weights stay within "
            f"{fmt(stable.max())}; in the oscillating arms rounding differences are amplified "
            "step after step to "
            f"{fmt(shaky['free_weight_max_abs_diff'].max()) if not shaky.empty else 'n/a'} — "
            "then the two sides' gradients are taken at different weights and their "
            f"comparison reads {verdicts(shaky, 'free_verdict') or 'n/a'}: not a bug in "
            "either side, the dynamics' sensitivity to rounding."]
