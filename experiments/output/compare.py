"""Two run directories side by side: config differences, verdicts, first differing step."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pandas as pd

from experiments.output.report import markdown_table


def _config(run: Path) -> dict:
    path = run / "config.toml"
    return tomllib.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}


def first_difference(a: pd.DataFrame, b: pd.DataFrame, on: list[str], cols: list[str]):
    """The first (by ``on``) common row where any of ``cols`` differs bit for bit, or None."""
    m = a.merge(b, on=on, suffixes=("_a", "_b"))
    if m.empty:
        return None
    diff = pd.Series(False, index=m.index)
    for c in cols:
        x, y = m[f"{c}_a"], m[f"{c}_b"]
        diff |= ~((x == y) | (x.isna() & y.isna()))
    hits = m[diff]
    return None if hits.empty else hits.iloc[0]


def compare_runs(run_a: str | Path, run_b: str | Path, out: str | Path) -> str:
    """Write comparison figures into ``out`` and return a text report."""
    from experiments.output.plots import plot_compare

    run_a, run_b = Path(run_a), Path(run_b)
    ca, cb = _config(run_a), _config(run_b)
    changed = sorted(k for k in set(ca) | set(cb) if ca.get(k) != cb.get(k) and k != "out")
    lines = [f"A = {run_a}", f"B = {run_b}"]
    lines.append("config differences: " + (", ".join(f"{k}: {ca.get(k)!r} -> {cb.get(k)!r}"
                                                       for k in changed) or "none"))
    sa = pd.read_csv(run_a / "summary.csv")
    sb = pd.read_csv(run_b / "summary.csv")
    cols = ["param", "max_abs_diff", "rel_err", "verdict"]
    table = sa[cols].merge(sb[cols], on="param", how="outer", suffixes=("_A", "_B"), sort=False)
    table = pd.concat([table[table["param"] != "all"], table[table["param"] == "all"]])
    lines += ["", markdown_table(table), ""]
    la, lb = pd.read_csv(run_a / "loss.csv"), pd.read_csv(run_b / "loss.csv")
    ga, gb = pd.read_csv(run_a / "grads.csv"), pd.read_csv(run_b / "grads.csv")
    first_loss = first_difference(la, lb, ["step"], ["loss_manual", "loss_torch"])
    first_grad = first_difference(ga, gb, ["step", "param"],
                                  ["max_abs_diff", "rel_err", "norm_manual", "norm_torch"])
    if first_loss is None and first_grad is None:
        lines.append(f"identical losses and gradient metrics at all "
                     f"{len(la.merge(lb, on='step'))} common logged steps")
    else:
        if first_loss is not None:
            f = {k: float(v) for k, v in first_loss.items() if k.startswith("loss_")}
            lines.append(f"losses first differ at step {int(first_loss['step'])}: manual "
                         f"{f['loss_manual_a']!r} (A) vs {f['loss_manual_b']!r} (B), torch "
                         f"{f['loss_torch_a']!r} (A) vs {f['loss_torch_b']!r} (B)")
        if first_grad is not None:
            lines.append(f"gradient metrics first differ at step {int(first_grad['step'])} "
                         f"({first_grad['param']})")
    figures = plot_compare(run_a, run_b, out)
    lines.append("figures: " + ", ".join(str(f) for f in figures))
    return "\n".join(lines)
