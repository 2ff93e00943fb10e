"""report.md: what ran, the verdict table, the loss comparison, predictions and plots."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from experiments.core.diagnose import findings_markdown
from experiments.core.runner import RunResult
from experiments.core.verdict import run_verdict

DEFINITIONS = """\
- `max_abs_diff` = max |g_m − g_t| over the tensor's elements (g_m manual, g_t torch).
- `rel_err` = ‖g_m − g_t‖₂ / max(‖g_m‖₂, ‖g_t‖₂, tiny); 0 when both are zero.
- `cosine` = ⟨g_m, g_t⟩ / (‖g_m‖₂‖g_t‖₂); 1 when both are zero.
- `weight_max_abs_diff` = max |w_m − w_t| after the step's update.
- `fd_rel_err` = the worse side's `rel_err` to central finite differences (float64).
- `ref_rel_err_*` (float32 runs) = each side's `rel_err` to a float64 gradient at its weights.
- `rel_tol` (grads.csv): each step's own bound on `rel_err` (docs/tolerance.md).
- `gradient_rel_err`, `gradient_rel_tol` (grads.csv): the gradient code judged at the same
  weights as torch: the same as `rel_err`, `rel_tol` in synced mode; in free mode the
  manual code evaluated at the torch side's weights.
- `update_max_abs_diff`, `update_tol` (grads.csv): the manual SGD step against
  torch.optim.SGD's step on the same weights, gradients and momentum buffers, and the
  rounding bound of one update.
- `rel_diff` = |E_m − E_t| / max(|E_m|, |E_t|, tiny) (loss.csv), held to its own bound
  `rel_tol` = 2γ_{m_E}·cond (the rounding of the loss's sum over N·K elements; docs/tolerance.md);
  `probe_loss`, `loss_rel_diff`, `loss_rel_tol`: the loss code at the same weights as torch
  (the manual loss at the torch side's weights in free mode; `loss_manual`, `rel_diff`,
  `rel_tol` in synced mode).
- verdict: `exact` every gradient and update bit-identical; `agree` every logged step's
  gradient within its bound and every update within its bound; `differ` otherwise. The
  `loss` row judges the loss value the same way (`loss_rel_diff` against `loss_rel_tol`);
  the `all` row's verdict is the run's: `differ` when the loss or any parameter differs.
  `worst_step` is the step closest to (or furthest past) its bound; `rel_err`,
  `tolerance` and `worst_ratio` are that step's (the gradient code at the same weights).
  Labelled extremes over all steps: `max_abs_diff`, `max_rel_err` (the sides at their own
  weights), `min_cosine`, `weight_max_abs_diff`, `fd_rel_err`; `drift_ratio` = the largest
  `rel_err / rel_tol` at the sides' own weights (in free mode it includes the drift);
  `update_ratio` = the largest `update_max_abs_diff / update_tol`.
"""


def markdown_table(df: pd.DataFrame) -> str:
    """A GitHub-markdown table; floats in 3 significant digits, ``|`` in a cell escaped."""
    def cell(v):
        if isinstance(v, float | np.floating):
            return "" if np.isnan(v) else f"{v:.3g}"
        return str(v).replace("|", "\\|")
    head = "| " + " | ".join(cell(c) for c in df.columns) + " |"
    rule = "|" + "|".join("---" for _ in df.columns) + "|"
    body = ["| " + " | ".join(cell(v) for v in row) + " |" for row in df.itertuples(index=False)]
    return "\n".join([head, rule, *body])


def predictions_text(result: RunResult) -> str | None:
    """numpy's default print of both sides' last forward pass, for small full-batch runs."""
    p = result.predictions
    if p.empty or result.loss.empty or result.config.batch_size != "full":
        return None   # a mini-batch's outputs would need their sample ids to mean anything
    n, k = p["sample"].max() + 1, p["output"].max() + 1
    if n > 16:
        return None
    m = p["manual"].to_numpy().reshape(n, k)
    t = p["torch"].to_numpy().reshape(n, k)
    step = int(result.loss["step"].iloc[-1])
    return (f"Last forward pass (at step {step}, i.e. made before update {step + 1}, with the "
            f"weights after {step} updates):\nmanual:\n{m}\ntorch:\n{t}")


def write_report(result: RunResult, folder: Path, figures: list[str]) -> Path:
    cfg, data = result.config, result.dataset
    loss = result.loss
    lines = [f"# handgrad run: {cfg.name}", ""]
    if cfg.description:
        lines += [cfg.description, ""]
    opt = f"SGD lr={cfg.lr}"
    for key in ("momentum", "dampening", "weight_decay"):
        if getattr(cfg, key):
            opt += f", {key}={getattr(cfg, key)}"
    if cfg.nesterov:
        opt += ", nesterov"
    lines += [
        "## What ran", "",
        f"- status: **{result.status}** — {result.message}",
        f"- data: `{cfg.dataset}`, {data.X.shape[0]} examples × {data.X.shape[1]} features"
        f"{', standardised' if cfg.standardize else ''}",
        f"- network: sizes {list(cfg.sizes)}, hidden `{cfg.activation}`, output "
        f"`{cfg.resolved_output_activation}`, bias `{cfg.bias}`, init `{cfg.init}`",
        f"- loss `{cfg.loss}`, dtype `{cfg.dtype}`, device `{cfg.device}`, "
        + (f"manual backend `{cfg.manual_backend}`" if result.side_name == "manual" else
           f"compared side `{result.side_name}` (its numbers are the `*_manual` columns)"),
        f"- {opt}; batch `{cfg.batch_size}`, {result.total_steps} steps, shuffle {cfg.shuffle}, "
        f"seed {cfg.seed}",
        f"- mode `{cfg.mode}`; metrics logged every {cfg.log_every} step(s)"
        f"{f', finite differences every {cfg.fd_every}' if cfg.fd_every else ''}",
        f"- wall time {result.seconds:.2f} s", "",
        "## Verdict", "",
        f"Each step's `rel_err` is held to its own bound `rel_tol` = 2γ_m·cond for "
        f"`{cfg.dtype}` (unit roundoff × length of the rounding chain × how much the "
        "gradient's terms cancel; docs/tolerance.md). The verdict judges the gradient code at "
        "the same weights and each update against torch.optim.SGD's; `rel_err`, `tolerance` "
        "and `worst_ratio` are taken at `worst_step`, the step closest to its bound; the "
        "other columns are extremes over the steps (Definitions below). The `loss` row "
        "judges the loss value the same way, against the rounding bound of its own sum; "
        f"`all` is every parameter together, its verdict the run's: "
        f"**{run_verdict(result.summary)}**.",
        "",
        markdown_table(result.summary), "",
        "## Diagnosis", "",
        findings_markdown(result.findings), "",
    ]
    if not loss.empty:
        lines += [
            "## Loss", "",
            f"- first logged step: manual {float(loss['loss_manual'].iloc[0])!r}, "
            f"torch {float(loss['loss_torch'].iloc[0])!r}",
            f"- last logged step ({int(loss['step'].iloc[-1])}): manual "
            f"{float(loss['loss_manual'].iloc[-1])!r}, "
            f"torch {float(loss['loss_torch'].iloc[-1])!r}",
            f"- worst |E_m − E_t| = {loss['abs_diff'].max():.3g}, worst relative "
            f"{loss['rel_diff'].max():.3g}", "",
        ]
    preds = predictions_text(result)
    if preds:
        lines += ["## Predictions", "", "```", preds, "```", ""]
    if figures:
        lines += ["## Plots", ""] + [f"![{f}]({f})" for f in figures] + [""]
    lines += ["## Definitions", "", DEFINITIONS]
    path = folder / "report.md"
    path.write_text("\n".join(lines), encoding="utf-8")
    return path
