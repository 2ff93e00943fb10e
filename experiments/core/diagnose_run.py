"""The diagnosis of a whole run: its last logged step's gradients (``diagnose``), when each
parameter first stopped agreeing (``onset``), in free mode whether the weights had drifted
apart by then (``drift``), and the loss value (``loss_only`` and a constant ratio of the
loss, from loss.csv). Works on a run directory or an in-memory RunResult."""

from __future__ import annotations

import tomllib
from pathlib import Path

import numpy as np
import pandas as pd

from experiments.core.diagnose import Finding, bug_tolerance, diagnose, fit_ratio, ratio_causes


def _arrays(final_grads: pd.DataFrame) -> tuple[dict, dict]:
    """final_grads.csv (param, row, col, grad_manual, grad_torch) back to (out, in) / (out,)."""
    gm, gt = {}, {}
    for k, g in final_grads.groupby("param", sort=False):
        rows, cols = int(g["row"].max()) + 1, int(g["col"].max()) + 1
        shape = (rows,) if k.endswith("bias") else (rows, cols)
        order = np.lexsort((g["col"].to_numpy(), g["row"].to_numpy()))
        gm[k] = g["grad_manual"].to_numpy(dtype=np.float64)[order].reshape(shape)
        gt[k] = g["grad_torch"].to_numpy(dtype=np.float64)[order].reshape(shape)
    return gm, gt


def diagnose_frames(final_grads: pd.DataFrame, grads: pd.DataFrame | None = None, *,
                    batch: int | None = None, dtype: str = "float64",
                    mode: str = "synced", loss: pd.DataFrame | None = None,
                    predictions: pd.DataFrame | None = None) -> list[Finding]:
    """Diagnose the last logged step of a run from its frames, plus when each parameter
    first stopped agreeing (``onset``) and, for ``free`` runs, whether the weights had
    drifted apart by then (``drift``). ``final_grads`` and ``grads`` as in the run
    directory; ``batch`` = N of the last step (predictions.csv's sample count); ``mode``
    the run's (config key ``mode``); ``loss`` loss.csv's frame, for the loss's findings."""
    if final_grads is None or final_grads.empty:
        return [Finding("other", (), "no final gradients to diagnose (the run stopped "
                        "before its first logged step)", {})]
    has_grads = grads is not None and not grads.empty and {"rel_err", "rel_tol"} <= set(grads)
    judged = _judged(grads) if has_grads else None
    findings = _last_step(final_grads, judged, batch, dtype, mode)
    if has_grads:
        onsets = _onsets(judged, bug_tolerance(dtype))
        findings += onsets
        drift = _drift(grads, onsets, dtype) if mode == "free" else None
        if drift is not None:   # first: in a free run the likelier explanation, to act on
            findings.insert(0, drift)
    outputs = (int(predictions["output"].max()) + 1 if predictions is not None
               and not predictions.empty else None)
    grads_agree = has_grads and not (judged["rel_err"] > judged["rel_tol"]).any()
    return (findings + _loss(loss, grads_agree, dtype, batch, outputs)
            + _stuck(grads, loss, predictions))


def _judged(frame: pd.DataFrame, err: str = "rel_err", tol: str = "rel_tol",
            code: str = "gradient") -> pd.DataFrame:
    """``frame`` with ``err`` / ``tol`` of the code at the same weights where recorded
    (``{code}_rel_err`` / ``{code}_rel_tol`` or, for loss.csv, ``loss_rel_diff`` /
    ``loss_rel_tol``: a free run's comparison without the drift)."""
    code_err, code_tol = f"{code}_{err}", f"{code}_{tol}"
    if code_err not in frame:
        return frame
    ok = frame[code_err].notna()
    return frame.assign(**{err: frame[code_err].where(ok, frame[err]),
                           tol: frame[code_tol].where(ok, frame[tol])})


def _loss(loss: pd.DataFrame | None, grads_agree: bool, dtype: str, batch: int | None,
          outputs: int | None) -> list[Finding]:
    """The loss value, judged as the runner's verdict judges it (loss.csv's loss_rel_diff
    against loss_rel_tol, the loss code at the same weights). Where it differs beyond the
    bug level: ``loss_only`` when every gradient agrees at every logged step (the mistake
    is in the loss formula, not in backprop), and ``constant_ratio`` when E_manual =
    c·E_torch over the steps that differ, c's likely causes named in the gradients' words
    (``ratio_causes``: ½ missing, mean against sum, 1/K, ...); ``other`` when neither
    applies. Below the bug level: ``rounding``. Nothing for an older loss.csv without the
    bound's columns."""
    if loss is None or "loss_rel_tol" not in loss:
        return []
    finite = np.isfinite(loss["loss_manual"]) & np.isfinite(loss["loss_torch"])
    L = _judged(loss[finite], "rel_diff", "rel_tol", "loss")
    over = L[L["rel_diff"] > L["rel_tol"]]
    if over.empty:
        return []
    worst, first = float(over["rel_diff"].max()), int(over["step"].iloc[0])
    bug = max(bug_tolerance(dtype), float(over["rel_tol"].max()))
    numbers = {"rel_err": worst, "step": first}
    if worst <= bug:
        return [Finding("rounding", ("loss",), f"the loss's rel_diff up to {worst:.2g} exceeds "
                        f"its rounding tolerance but stays below the bug level {bug:.2g}: a "
                        "rounding effect the bound does not model (docs/tolerance.md), not a "
                        "mistake in the loss formula", numbers)]
    E_m = over["probe_loss"].where(over["probe_loss"].notna(), over["loss_manual"])
    c, residual = fit_ratio(E_m.to_numpy(), over["loss_torch"].to_numpy())
    out = []
    if grads_agree:
        out.append(Finding(
            "loss_only", ("loss",), "your loss value is off, your gradients are right: the "
            f"mistake is in the loss formula, not in backprop (E_manual differs from E_torch "
            f"from step {first} on, rel_diff up to {worst:.2g}, while every gradient agrees "
            "at every logged step)", numbers))
    if residual <= bug:
        causes = ratio_causes(c, batch=batch, outputs=outputs, tol=bug)
        why = ("; likely: " + "; or ".join(causes) if causes else "; c is none of ½, 2, N, "
               "K, M = N·K or their products: look for another constant in the loss")
        out.append(Finding(
            "constant_ratio", ("loss",), f"E_manual = c·E_torch with c = {c:.6g} at every "
            f"logged step that differs (from step {first}): a reduction or factor mismatch "
            "in the loss value E" + why, {**numbers, "c": c, "residual": residual}))
    elif not grads_agree:
        out.append(Finding("other", ("loss",), f"the loss value differs from step {first} on "
                           f"(rel_diff up to {worst:.2g}) with no constant ratio E_manual = "
                           "c·E_torch", numbers))
    return out


def _last_step(final_grads, judged, batch, dtype, mode) -> list[Finding]:
    """The diagnosis of the last logged step's gradients (final_grads.csv). In a free run
    whose gradient code agrees at the same weights there, the sides' own gradients differ
    by the drift alone: that is said, not diagnosed as a mistake."""
    gm, gt = _arrays(final_grads)
    rel_tol = None
    if judged is not None:
        last = judged[judged["step"] == judged["step"].max()].set_index("param")
        if last["rel_tol"].notna().all() and set(gm) <= set(last.index):
            rel_tol = {k: float(last.loc[k, "rel_tol"]) for k in gm}
            if mode == "free" and (last["rel_err"] <= last["rel_tol"]).all():
                return [Finding(
                    "agree", tuple(gm), "at the same weights every parameter agrees with the "
                    f"reference (rel_err up to {float(last['rel_err'].max()):.2g} at the last "
                    "logged step); the sides' own gradients differ only through the drift "
                    "of their weights", {"rel_err": float(last["rel_err"].max())})]
    return diagnose(gm, gt, rel_tol=rel_tol, bug_tol=bug_tolerance(dtype), batch=batch)


def _drift(grads: pd.DataFrame, onsets: list[Finding], dtype: str) -> Finding | None:
    """A free run's weights parted: from a bug-level disagreement before the last step, or
    by more than √u relative to the largest weight (far beyond rounding)."""
    bug = bug_tolerance(dtype)
    last = int(grads["step"].max())
    early = [f for f in onsets if f.numbers["step"] < last and f.numbers["worst_rel_err"] > bug]
    parted = (grads["weight_max_abs_diff"] / grads["weight_max_abs"]
              if "weight_max_abs" in grads else pd.Series(0.0, index=grads.index))
    # beyond rounding: weights parted by more than √u, or the gradients at the sides' own
    # weights past their tolerance while the code agrees at the same weights
    over = parted > bug
    if "gradient_rel_err" in grads:
        over |= (grads["rel_err"] > grads["rel_tol"]) & (
            grads["gradient_rel_err"] <= grads["gradient_rel_tol"])
    far = grads.loc[over, "step"]
    if not early and far.empty:
        return None
    step = min([int(f.numbers["step"]) for f in early] + [int(s) for s in far])
    diff = float(grads.loc[grads["step"] >= step, "weight_max_abs_diff"].max())
    params = (tuple(dict.fromkeys(k for f in early for k in f.params)) if early
              else tuple(dict.fromkeys(grads.loc[over, "param"])))
    return Finding(
        "drift", params,
        f"mode free: the sides have trained on different weights since step {step} "
        f"(weight_max_abs_diff up to {diff:.2g}, {float(parted.max()):.2g} of the largest "
        "weight), so their gradients are compared at different points and differ by more "
        "than one evaluation's rounding; the verdict judges the gradient code at the same "
        "weights "
        "(gradient_rel_err); rerun with --set mode=synced for its own signature at every step",
        {"step": step, "weight_max_abs_diff": diff})


def _run_start(flags: pd.Series, value: bool) -> int:
    """The first index (step) of the final run of ``flags`` equal to ``value``."""
    other = flags.index[flags != value]
    return int(flags.index[flags.index > other.max()][0] if len(other) else flags.index[0])


def _stuck(grads, loss, predictions) -> list[Finding]:
    """Training that cannot move, whatever the agreement (module diagnose: ``stuck``)."""
    if grads is None or grads.empty:
        return []
    why = []
    norms = ["norm_manual", "norm_torch"]
    zero = (grads.groupby("step")[norms].max().max(axis=1) == 0 if set(norms) <= set(grads)
            else pd.Series([False]))
    if zero.iloc[-1]:
        why.append(f"every gradient is exactly 0 from step {_run_start(zero, True)} on")
    if loss is not None and len(loss) >= 8:
        last = loss[["loss_manual", "loss_torch"]].iloc[-1]
        same = (loss[["loss_manual", "loss_torch"]] == last).all(axis=1).set_axis(loss["step"])
        if same.iloc[-(len(loss) // 4):].all():
            why.append(f"the loss has stayed exactly {float(last['loss_manual']):.6g} since "
                       f"step {_run_start(same, True)}")
    if predictions is not None and "manual" in predictions and not predictions.empty:
        out = predictions["manual"].to_numpy(dtype=float)
        if np.all(np.minimum(np.abs(out), np.abs(1 - out)) < 1e-30):
            why.append("every output is within 1e-30 of 0 or 1 (saturated: σ′ ≈ 0 passes "
                       "back almost nothing)")
    if not why:
        return []
    params = (*dict.fromkeys(grads["param"]), *(("loss",) if loss is not None else ()))
    return [Finding("stuck", params,
                    "training is stuck: " + "; ".join(why) + ". The sides may agree exactly "
                    "and still learn nothing: lower lr (saturated or dead units) or change the "
                    "initialisation", {})]


def _onsets(grads: pd.DataFrame, bug: float) -> list[Finding]:
    """The first logged step at which rel_err > rel_tol, per parameter, grouped by step."""
    by_step: dict[int, list[tuple[str, float, float, float, bool]]] = {}
    last_step = grads["step"].max()
    for k, g in grads.groupby("param", sort=False):
        bad = g[g["rel_err"] > g["rel_tol"]]
        if bad.empty:
            continue
        first = bad.iloc[0]
        still = bool((g[g["step"] == last_step]["rel_err"] > g[g["step"] == last_step]["rel_tol"])
                     .any())
        by_step.setdefault(int(first["step"]), []).append(
            (k, float(first["rel_err"]), float(first["rel_tol"]), float(g["rel_err"].max()),
             still))
    out = []
    for step, items in sorted(by_step.items()):
        params = tuple(i[0] for i in items)
        worst = max(i[3] for i in items)
        level = "at rounding level" if worst <= bug else "at bug level"
        recovered = [i[0] for i in items if not i[4]]
        text = (f"{', '.join(params)} stopped agreeing at step {step} (rel_err "
                f"{max(i[1] for i in items):.2g} > rel_tol {min(i[2] for i in items):.2g}; "
                f"worst over the run {worst:.2g}, {level})")
        if step > int(grads["step"].min()):
            text += "; every earlier logged step agreed"
        if recovered:
            text += (f"; {', '.join(recovered)} agree{'s' if len(recovered) == 1 else ''} "
                     "again at the last logged step")
        out.append(Finding("onset", params, text,
                           {"step": step, "rel_err": max(i[1] for i in items),
                            "rel_tol": min(i[2] for i in items), "worst_rel_err": worst}))
    return out


def diagnose_run(run_dir: str | Path) -> list[Finding]:
    """Diagnose a run directory: final_grads.csv (the last logged step) with grads.csv's
    rel_tol there, the onset of each disagreement from grads.csv, N from predictions.csv,
    the dtype and mode from config.toml."""
    run_dir = Path(run_dir)
    final_path, grads_path = run_dir / "final_grads.csv", run_dir / "grads.csv"
    if not grads_path.is_file():
        raise FileNotFoundError(f"{run_dir} is not a handgrad run directory (no grads.csv)")
    final = pd.read_csv(final_path) if final_path.is_file() else pd.DataFrame()
    grads = pd.read_csv(grads_path)
    dtype, batch, mode = "float64", None, "synced"
    cfg_path = run_dir / "config.toml"
    if cfg_path.is_file():
        cfg = tomllib.loads(cfg_path.read_text(encoding="utf-8"))
        dtype, mode = cfg.get("dtype", dtype), cfg.get("mode", "synced")
        if isinstance(cfg.get("batch_size"), int):
            batch = cfg["batch_size"]
    pred_path = run_dir / "predictions.csv"
    if pred_path.is_file():   # the last step's batch: its size, even for a short last batch
        batch = int(pd.read_csv(pred_path, usecols=["sample"])["sample"].max()) + 1
    loss = pd.read_csv(run_dir / "loss.csv") if (run_dir / "loss.csv").is_file() else None
    preds = pd.read_csv(pred_path) if pred_path.is_file() else None
    return diagnose_frames(final, grads, batch=batch, dtype=dtype, mode=mode, loss=loss,
                           predictions=preds)


def diagnose_result(result) -> list[Finding]:
    """Diagnose an in-memory ``experiments.core.runner.RunResult`` (same as ``diagnose_run`` on
    the directory it would write)."""
    preds = result.predictions
    batch = int(preds["sample"].max()) + 1 if not preds.empty else None
    return diagnose_frames(result.final_grads, result.grads, batch=batch,
                           dtype=result.config.dtype, mode=result.config.mode,
                           loss=result.loss, predictions=result.predictions)


