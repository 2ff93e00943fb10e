"""What a check says: the text ``handgrad check`` prints (``explanation``) and the check
folder it writes (``write_check``).

The text: the network checked; the initial-point table; for a difference, the diagnosis
in the learner's terms, the entries of the first differing parameter (yours, autograd,
central differences, their ratio; which are off) and, for the worst of them, the chain
rule with numbers exactly as ``handgrad explain --param KEY[i,j]`` prints it, next to the
learner's number; then the training summary and the verdict.

The check folder (written through ``experiments.output.rundir.atomic_folder``: complete
or absent)::

    check.md              the text above, with the status
    initial.csv           CHECK_COLUMNS: one row per call × parameter at the initial point
    learner_output.txt    what the learner's code printed (only when it printed)
    training/             the lockstep run, as `handgrad run` writes it (rundir.write_run):
                          the learner's numbers are the *_manual columns, its parameters
                          in the learner's names and layout (``names.learner_view``)
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import pandas as pd

from experiments.core.diagnose import bug_tolerance
from experiments.core.loss_formula import loss_formula, network_text
from experiments.core.metrics import TINY

SHOWN_ENTRIES = 8


def _fmt(x) -> str:
    return "" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.9g}"


def _frame_text(df: pd.DataFrame) -> str:
    with pd.option_context("display.float_format", "{:.3g}".format, "display.width", 160,
                           "display.max_columns", 20):
        return df.to_string(index=False)


def header(result) -> str:
    """Who is checked against what: the network, then the loss spelled out (its reduction
    is what a missing 1/N or an extra ½ turns on)."""
    cfg = result.config
    conv = result.convention or "not read: the file did not load"   # failed at load time
    return (f"handgrad check: {result.file} (convention {conv}) against "
            f"autograd on {cfg.name}: sizes {network_text(cfg)}, {cfg.loss}, {cfg.dtype}\n"
            f"loss: {loss_formula(cfg.loss)}")


# -- entries and the chain rule --------------------------------------------------------------

def _entry(conv, key: str, index: tuple) -> str:
    return f"{conv.name_of(key)}[{','.join(map(str, conv.index_of(key, index)))}]"


def entries(init, key: str, fine: bool = False) -> tuple[list[str], tuple]:
    """The entries of ``key`` in the diagnosed call, worst first; and the worst's index.
    An entry is off above the bug level √u; with ``fine`` (a near miss that stays below it:
    float32 arrays, finite differences) above the rounding bound rel_tol of its parameter."""
    conv = init.convention
    y, t = init.yours[key], init.reference[key]
    misplaced = y.shape != t.shape
    y = y.T if misplaced else y                       # back in autograd's layout
    fd = init.fd[key] if init.call == "gradients" else None
    diff = np.abs(y - t)
    scale = max(float(np.abs(y).max()), float(np.abs(t).max()), TINY)
    rows = init.table[(init.table["call"] == init.call) & (init.table["key"] == key)]
    level = float(rows["rel_tol"].iloc[0]) if fine else bug_tolerance(init.config.dtype)
    off = np.ones(t.shape, bool) if misplaced else diff > level * scale
    order = np.argsort(-(np.abs(t) if misplaced else diff), axis=None, kind="stable")
    ref = "SGD w⁺" if init.call.startswith("update") else "autograd"
    cols = ["entry", "yours", ref] + (["finite diff"] if fd is not None else []) + ["ratio", ""]
    rows = []
    for flat in order[:SHOWN_ENTRIES]:
        ix = np.unravel_index(flat, t.shape)
        ratio = y[ix] / t[ix] if t[ix] != 0 else math.nan
        rows.append([_entry(conv, key, ix), _fmt(float(y[ix])), _fmt(float(t[ix]))]
                    + ([_fmt(float(fd[ix]))] if fd is not None else [])
                    + [f"{ratio:.4g}", "misplaced" if misplaced else ("off" if off[ix] else "")])
    what = ("misplaced: your array is the transpose" if misplaced else
            "off beyond rounding (rel_tol)" if fine else "off")
    lines = [f"{conv.name_of(key)}: {int(off.sum())} of {off.size} entries {what} "
             f"({init.call}; largest differences first)"]
    lines += ["  " + line for line in pd.DataFrame(rows, columns=cols).to_string(
        index=False).splitlines()]
    return lines, tuple(int(i) for i in np.unravel_index(order[0], t.shape))


def _section(text: str, title: str) -> str:
    """The part of explain's text under the heading starting with ``title`` (heading line
    plus a line of dashes); the whole text if no such heading."""
    lines = text.splitlines()
    heads = [i for i in range(len(lines) - 1)
             if lines[i + 1] and set(lines[i + 1]) == {"-"} and lines[i].strip()]
    for n, i in enumerate(heads):
        if lines[i].startswith(title):
            end = heads[n + 1] if n + 1 < len(heads) else len(lines)
            return "\n".join(lines[i:end]).rstrip()
    return text.rstrip()


def chain_rule(init, key: str, index: tuple) -> list[str]:
    """``handgrad explain --param KEY[i,j]``'s chain rule (or update) for one entry, next to
    the learner's number."""
    from experiments.core.config import ConfigError
    from experiments.teaching.explain import explain, render

    name = _entry(init.convention, key, index)         # the learner's name: W2[3,0]
    spec = name.replace(" ", "")
    y = init.yours[key]
    mine = float((y.T if y.shape != init.reference[key].shape else y)[index])
    ref = float(init.reference[key][index])
    try:
        text = render(explain(init.config, param=spec, convention=init.convention.name),
                      "text")
    except (ConfigError, ValueError) as err:
        return [f"(handgrad explain could not run here: {err})"]
    part = _section(text, "Update" if init.call.startswith("update") else "Gradients")
    what = "The update" if init.call.startswith("update") else "The chain rule"
    if y.shape != init.reference[key].shape:
        where = init.convention.index_of(key, index)[::-1]
        raw = y.T if init.convention.names[key][1] else y     # the array as they returned it
        yours = (f"{_fmt(mine)}, at [{','.join(map(str, where))}] of your {raw.shape} "
                 f"array: the right number in the transposed place")
    else:
        ratio = f"{mine / ref:.4g}" if ref else "nan"
        yours = (f"{_fmt(mine)}   (expected {_fmt(ref)}; yours/"
                 f"{'SGD' if init.call.startswith('update') else 'autograd'} = {ratio})")
    return ([f"{what} for {name}, as `handgrad explain --param '{spec}'` prints it for this "
             f"config:"]
            + ["  " + line for line in part.splitlines()] + [f"  >>> yours: {yours}"])


# -- the whole text ------------------------------------------------------------------------------

def _initial_lines(init) -> list[str]:
    t = init.table.drop(columns=["key"])
    n = len(init.X)
    if t.empty:   # the first call never returned: nothing to compare
        return [f"At the initial point (step 0's batch, N = {n}): nothing to compare — the "
                f"first call of gradients() did not finish"]
    return [f"At the initial point (step 0's batch, N = {n}): yours against autograd, "
            f"rel_err held to the rounding bound rel_tol; fd_rel_err against central "
            f"differences (a witness with its own error, ~h² + u·|E|/h at h = 1e-6: far "
            f"above rounding)", _frame_text(t)]


def _difference_lines(result) -> list[str]:
    init = result.initial
    lines = [f"diagnosis ({result.kind}), first parameter that differs: {result.first_param}"]
    lines += [f"- {s}" for s in result.sentences]
    if not init.differs:
        return lines   # found in training: its report and grads.csv say where
    key = init.convention.keys[result.first_param]
    table, worst = entries(init, key, fine=result.kind in ("float32", "numerical"))
    lines += ["", *table, ""]
    if init.call == "gradients, 2nd call":
        lines.append("(your first call agreed at the initial point; this is the second, at "
                     "the weights after one step)")
    elif init.call == "update, lr/2":
        lines.append(f"(your update agreed at the config's lr = {init.config.lr:g}; this call "
                     f"passed lr = {init.config.lr / 2:g} and expected w − lr·∂E/∂w with it)")
    else:
        lines += chain_rule(init, key, worst)
    return lines


def _training_lines(run, conv) -> list[str]:
    c = run.config
    s = run.summary.copy()
    s["param"] = [p if p in ("all", "loss") else conv.name_of(p) for p in s["param"]]
    lines = [f"Training: {run.steps_done} of {run.total_steps} steps in lockstep with torch "
             f"(mode {c.mode}, lr {c.lr:g}); status {run.status}" + (f": {run.message}"
                                                                     if run.status != "completed"
                                                                     else "")]
    if not s.empty:
        lines.append(_frame_text(s[["param", "max_abs_diff", "rel_err", "worst_step",
                                    "worst_ratio", "weight_max_abs_diff", "verdict"]]))
    return lines


def explanation(result) -> str:
    """Everything ``handgrad check`` prints about ``result`` (an ``api.CheckResult``)."""
    lines = [header(result), ""]
    if result.mode == "definitions only" or result.notes:
        lines += [f"ran: {result.mode}" + (f"; left out: {len(result.notes)} "
                                            f"line{'s' if len(result.notes) > 1 else ''} "
                                            f"of IPython or top-level code" if result.notes
                                            else ""),
                  *(f"  - {n}" for n in result.notes[:20]),
                  *([f"  - ... and {len(result.notes) - 20} more"]
                    if len(result.notes) > 20 else []), ""]
    if result.initial is not None:
        lines += [*_initial_lines(result.initial), ""]
    if result.status == "differ":
        lines += [*_difference_lines(result), ""]
    elif result.status != "agree":
        lines += [f"{result.status}: {result.message}"]
        lines += [result.details, ""] if result.details else [""]
    if result.run is not None:
        lines += [*_training_lines(result.run, result.initial.convention), ""]
    lines.append(f"result: {result.status} (exit {result.exit_code}): {result.message}")
    return "\n".join(lines)


def write_check(result, out: Path, *, force: bool = False, plots: bool = True,
                source: str = "") -> Path:
    """The check folder (module docstring), atomically; ``source`` (the learner's file,
    resolved) goes on its marker, so that the next check of that file replaces it."""
    from experiments.output.html import check_lead, write_report_html
    from experiments.output.rundir import atomic_folder, write_csv, write_run
    from experiments.teaching.check.names import learner_view

    with atomic_folder(out, force, kind="check", legacy=False, source=source) as tmp:
        md = [f"# handgrad check: {result.file}", "",
              f"- status: **{result.status}** (exit {result.exit_code}) — {result.message}",
              f"- {result.seconds:.2f} s"]
        if result.run is not None:
            md.append("- training: [training/report.md](training/report.md)")
        # a fence longer than any run of backticks in the text, which is partly the learner's
        fence = "`" * max(3, 1 + max(map(len, re.findall("`+", result.explanation)),
                                     default=0))
        md += ["", f"{fence}text", result.explanation, fence, ""]
        (tmp / "check.md").write_text("\n".join(md), encoding="utf-8")
        write_report_html(tmp, "\n".join(md), lead=check_lead(result.explanation))
        if result.initial is not None:
            write_csv(result.initial.table, tmp / "initial.csv")
        if result.output:
            (tmp / "learner_output.txt").write_text(result.output, encoding="utf-8")
        if result.run is not None:   # in the learner's names (check.names)
            write_run(learner_view(result.run, result.initial.convention), tmp / "training",
                      plots=plots)
    return out
