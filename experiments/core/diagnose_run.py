"""The diagnosis of a whole run: its last logged step's gradients (``diagnose``), when each
parameter first stopped agreeing (``onset``) and, in free mode, whether the weights had
drifted apart by then (``drift``). Works on a run directory or an in-memory RunResult."""

from __future__ import annotations

import math
import tomllib
from pathlib import Path

import numpy as np
import pandas as pd

from experiments.core.diagnose import Finding, bug_tolerance, diagnose


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
                    mode: str = "synced") -> list[Finding]:
    """Diagnose the last logged step of a run from its frames, plus when each parameter
    first stopped agreeing (``onset``) and, for ``free`` runs, whether the weights had
    drifted apart by then (``drift``). ``final_grads`` and ``grads`` as in the run
    directory; ``batch`` = N of the last step (predictions.csv's sample count); ``mode``
    the run's (config key ``mode``)."""
    findings: list[Finding] = []
    if final_grads is None or final_grads.empty:
        return [Finding("other", (), "no final gradients to diagnose (the run stopped "
                        "before its first logged step)", {})]
    gm, gt = _arrays(final_grads)
    rel_tol = None
    if grads is not None and not grads.empty and "rel_tol" in grads:
        last = grads[grads["step"] == grads["step"].max()].set_index("param")["rel_tol"]
        if last.notna().all() and set(gm) <= set(last.index):
            rel_tol = {k: float(last[k]) for k in gm}
    findings += diagnose(gm, gt, rel_tol=rel_tol, bug_tol=bug_tolerance(dtype), batch=batch)
    if grads is not None and not grads.empty and {"rel_err", "rel_tol"} <= set(grads):
        onsets = _onsets(grads, bug_tolerance(dtype))
        findings += onsets
        last = int(grads["step"].max())
        early = [f for f in onsets if f.numbers["step"] < last
                 and f.numbers["worst_rel_err"] > bug_tolerance(dtype)]
        if mode == "free" and early:
            step = min(int(f.numbers["step"]) for f in early)
            drift = (float(grads.loc[grads["step"] >= step, "weight_max_abs_diff"].max())
                     if "weight_max_abs_diff" in grads else math.nan)
            # first: in a free run this is the likelier explanation, and the one to act on
            findings.insert(0, Finding(
                "drift", tuple(dict.fromkeys(k for f in early for k in f.params)),
                f"mode free: the sides have trained on different weights since step {step} "
                f"(weight_max_abs_diff up to {drift:.2g}), so the last step compares gradients "
                "at different points and the findings above mix the mistake with that drift; "
                "rerun with --set mode=synced for its own signature at every step",
                {"step": step, "weight_max_abs_diff": drift}))
    return findings


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
    return diagnose_frames(final, grads, batch=batch, dtype=dtype, mode=mode)


def diagnose_result(result) -> list[Finding]:
    """Diagnose an in-memory ``experiments.core.runner.RunResult`` (same as ``diagnose_run`` on
    the directory it would write)."""
    preds = result.predictions
    batch = int(preds["sample"].max()) + 1 if not preds.empty else None
    return diagnose_frames(result.final_grads, result.grads, batch=batch,
                           dtype=result.config.dtype, mode=result.config.mode)


