"""What a reference check says and writes: the diagnosis in the learner's names, the text
``handgrad check`` prints, and the check folder.

    check.md            the explanation, as printed
    report.html         the same page as a config check's: the verdict, the figure, the
                        explanation (self-contained: the figure inside it)
    initial.csv         the initial point: one row per call and parameter or intermediate
                        (``check.COLUMNS``)
    steps.csv           training: one row per step and parameter (``check.STEP_COLUMNS``)
    initial.png         initial.csv drawn at the last call made: rel_err against rel_tol,
                        per parameter and intermediate (not with ``plots=False``)
    steps.png           steps.csv drawn: rel_err against each step's rel_tol, per parameter
                        (when training ran; not with ``plots=False``)
    intermediates.csv   the intermediates at the point diagnosed (``intermediates.COLUMNS``)
    learner_output.txt  what the learner's code printed, if anything
"""

from __future__ import annotations

import itertools
import math
import re
from pathlib import Path

import numpy as np

from experiments.core.diagnose import param_kinds
from experiments.core.metrics import rel_err
from experiments.core.reference import FLOOR_ULPS, SAFETY, Reference
from experiments.output.rundir import atomic_folder, write_csv
from experiments.teaching.reference import intermediates as inter_report
from experiments.teaching.reference.check import NOISE_TOL


def _names(ref: Reference, keys) -> str:
    names = [ref.learner_name(k) for k in keys]
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


def _factor(c: float, N: int) -> str:
    """The usual cause of a gradient c times autograd's."""
    named = {-1.0: "the sign is flipped (a residual written the wrong way round, or a "
                   "minus lost)",
             2.0: "an extra factor 2", 0.5: "a factor 2 missing (the 2 of a square's "
                                             "derivative)"}
    if N > 1:
        named[float(N)] = (f"the 1/N of the loss's mean over the batch is missing (N = {N}: "
                           f"summed where it averages)")
        named[1.0 / N] = f"an extra 1/N (N = {N}: averaged where the loss sums, or twice)"
        named[-float(N)] = f"the sign is flipped and the 1/N of the mean missing (N = {N})"
        named[-1.0 / N] = f"the sign is flipped and an extra 1/N (N = {N})"
    if N > 2:
        named[(N - 1) / N] = (f"(N − 1)/N with N = {N}: a 1/N where the forward pass divides by "
                              f"N − 1 (Bessel's correction of a variance)")
        named[N / (N - 1)] = (f"N/(N − 1) with N = {N}: a 1/(N − 1) where the forward pass "
                              f"divides by N (a biased variance)")
    for value, why in named.items():
        if math.isfinite(c) and abs(c / value - 1) <= 1e-6:
            return why
    if c == 0:
        return "all zeros: never computed, or nothing propagated back to it"
    for m in (abs(c), 1 / abs(c) if c else math.inf):
        if 1.5 < m < 1e6 and abs(m - round(m)) <= 1e-6 * m:
            sign = "the sign flipped and " if c < 0 else ""
            return (f"{sign}a factor {round(m)} too large: {round(m)} terms summed where the "
                    f"loss averages them" if m == abs(c) else
                    f"{sign}an extra 1/{round(m)}: a mean over {round(m)} terms where the "
                    f"gradient sums them (a sum over samples and positions, say)")
    return "a constant factor: look for a scale written by hand (a learning rate, a 1/N)"


def flipped_axes(yours: np.ndarray, autograd: np.ndarray) -> tuple[int, ...]:
    """The axes along which ``yours`` is autograd's reversed (() if none): a kernel flipped,
    a sequence taken backwards."""
    for r in range(1, yours.ndim + 1):
        for axes in itertools.combinations(range(yours.ndim), r):
            flipped = np.flip(autograd, axis=axes)
            if not np.array_equal(flipped, autograd) and rel_err(yours, flipped) <= 1e-8:
                return axes
    return ()


def sentences(ref: Reference, j) -> list[str]:
    """The diagnosis of one point ``j`` (``check.Judged``), most telling first."""
    keys = list(j.autograd)
    N = _batch(ref, j)
    out, unexplained = [], False
    if j.call == "update":
        for f in j.findings:
            if f.kind == "constant_ratio":
                out.append(f"your update(params, grads, lr) moves {_names(ref, f.params)} "
                           f"{f.numbers['c']:.6g} times as far as SGD's w − lr·g "
                           f"(lr = {ref.lr:g}): apply lr exactly once, and subtract")
        return out or ["your update(params, grads, lr) differs from SGD's w − lr·g "
                       f"(lr = {ref.lr:g}) on {_names(ref, j.differ)}"]
    for f in j.findings:
        if f.kind in ("agree",) or not set(f.params) & set(j.differ):
            continue
        ks = [k for k in f.params if k in j.differ]
        if f.kind == "constant_ratio":
            c = f.numbers["c"]
            scope = "every parameter" if len(ks) == len(keys) else _names(ref, ks)
            out.append(f"your gradients are {c:.6g} times autograd's on {scope}: "
                       f"{_factor(c, N)}")
        elif f.kind == "transposed":
            out.append(f"your {_names(ref, ks)} gradient is autograd's transposed: a matrix "
                       f"product taken in the other order (it has {_names(ref, ks)}'s shape "
                       f"only because the matrix is square)")
        elif f.kind == "accumulated":
            out.append(f"your gradients keep growing from call to call: the 2nd call returned "
                       f"autograd's gradient plus the 1st call's on {_names(ref, ks)} (assign, "
                       f"do not +=, each call: nothing may carry over)")
        elif f.kind == "rounding":
            out.append(f"your {_names(ref, ks)} gradient is off by rel_err "
                       f"{f.numbers['rel_err']:.2g}: small, but beyond rounding (tolerance "
                       f"{max(j.tols[k] for k in ks):.2g}): a constant slightly off, an "
                       f"epsilon in the wrong place, or float32 somewhere")
        else:
            flips = {k: flipped_axes(j.yours[k], j.autograd[k]) for k in ks}
            for k in [k for k in ks if flips[k]]:
                axes = " and ".join(map(str, flips[k]))
                kernel = (" (a kernel flipped: the derivative of a true convolution, where the "
                          "forward pass is a cross-correlation, as in torch)"
                          if j.yours[k].ndim == 4 and flips[k] == (2, 3) else "")
                out.append(f"your {ref.learner_name(k)} gradient is autograd's reversed along "
                           f"{'axes' if len(flips[k]) > 1 else 'axis'} {axes}{kernel}")
            ks = [k for k in ks if not flips[k]]
            if not ks:
                continue
            unexplained = True
            worst = max(_rel(j, k) for k in ks)
            zero = [k for k in ks if not j.yours[k].any() and j.autograd[k].any()]
            out.append(f"your gradient of {_names(ref, ks)} differs from autograd's (rel_err "
                       f"up to {worst:.2g}); no constant factor, sign or transpose explains it"
                       + (f" ({_names(ref, zero)} all zeros)" if zero else ""))
    first = inter_report.first_wrong(j.inter)
    if first:
        c = float(j.inter.loc[j.inter["name"] == first, "ratio"].iloc[0])
        ratio_said = any(f.kind == "constant_ratio" for f in j.findings)
        how = (f" ({c:.6g} times autograd's: {_factor(c, N)})"
               if math.isfinite(c) and not ratio_said else "")
        names = list(j.inter["name"])
        later = ("" if names.index(first) == len(names) - 1 else
                 " (every one after it in the forward pass agrees)")
        said = (f"the first wrong intermediate on the way back from the loss is {first}: "
                f"your ∂E/∂{first} differs from autograd's{how}{later}, so the mistake enters "
                f"in the step that computes ∂E/∂{first}")
        out.insert(0 if unexplained or not out else 1, said)
    elif unexplained and not j.inter.empty:
        out.append("every intermediate you returned agrees: the mistake is in the parameters' "
                   "own formulas (∂E/∂param from the intermediate's gradient)")
    return out or [f"your gradients differ from autograd's on {_names(ref, j.differ)}"]


def _rel(j, k) -> float:
    return rel_err(j.yours[k], j.autograd[k])


def _batch(ref: Reference, j) -> int:
    return ref.N if ref.batch_size is None else ref.batch_size


def describe(ref: Reference) -> str:
    shapes = ", ".join(f"{ref.learner_name(k)} {tuple(v.shape)}" for k, v in ref.params.items())
    batch = "full batch" if ref.batch_size is None else f"batches of {ref.batch_size}"
    return (f"reference {ref.name} ({ref.source}): params {shapes}; N = {ref.N}, {batch}, "
            f"lr {ref.lr:g}, {ref.steps} steps (synced), {ref.dtype}")


def tolerance_line(ref: Reference) -> str:
    how = ("the batch's rows reversed and the weights moved by 2u" if ref.row_invariant else
           "the weights moved by 2u (the loss is not a function of its rows alone)")
    return (f"tolerance: ‖yours − autograd‖ ≤ max({FLOOR_ULPS}·u·‖autograd‖, {SAFETY} × the "
            f"rounding noise of autograd recomputed with {how}), per gradient and step")


def explanation(result, mc) -> str:
    """Everything ``handgrad check FILE reference.py`` prints."""
    ref = mc.ref
    out = [f"{result.file}: {result.status} — {result.message}", describe(ref),
           tolerance_line(ref)]
    t = mc.table
    if not t.empty:
        out += ["", "initial point (the first batch):",
                "  call                 name             rel_err   rel_tol  fd_rel_err  verdict"]
        for r in t[t["kind"] != "intermediate"].itertuples():
            noise = ("  (rounding noise: zero in exact arithmetic)"
                     if r.rel_tol > NOISE_TOL and r.verdict != "differ" else "")
            out.append(f"  {r.call:<20} {r.name:<15} {r.rel_err:9.2g} {r.rel_tol:9.2g} "
                       f"{r.fd_rel_err:11.2g}  {r.verdict}{noise}")
    shown = mc.judged if mc.judged is not None else mc.first
    if shown is not None and not shown.inter.empty:
        where = "the initial point" if shown.call == "gradients" else shown.call
        out += ["", f"intermediates at {where} (forward order, makemore's cmp):",
                *inter_report.lines(shown.inter)]
    if not mc.steps.empty:
        s = mc.steps
        bad = s[s["verdict"] == "differ"]
        real = s[s["rel_tol"] <= NOISE_TOL]
        worst = f"{real['rel_err'].max():.2g}" if not real.empty else "n/a"
        out += ["", f"training: {s['step'].nunique()} steps in lockstep; worst rel_err "
                    f"{worst} ({(s['rel_err'] / s['rel_tol']).max():.2g} of the tolerance)"
                + (f"; first differs at step {int(bad['step'].iloc[0])}" if len(bad) else "")]
    if result.sentences:
        out += ["", "diagnosis:", *(f"  - {s}" for s in result.sentences)]
    if result.details:
        out += ["", result.details]
    return "\n".join(out)


def kinds(j) -> dict:
    return param_kinds(j.findings, list(j.autograd))


def write_check(result, mc, out: Path, *, force: bool = False, plots: bool = True) -> None:
    """The check folder (module docstring), written whole or not at all; ``plots=False``:
    no steps.png (grading many files)."""
    from experiments.output.html import write_report_html

    with atomic_folder(Path(out), force, "check", legacy=False) as tmp:
        (tmp / "check.md").write_text(result.explanation + "\n", encoding="utf-8")
        write_csv(mc.table, tmp / "initial.csv")
        write_csv(mc.steps, tmp / "steps.csv")
        if mc.judged is not None:
            write_csv(mc.judged.inter, tmp / "intermediates.csv")
        if result.output:
            (tmp / "learner_output.txt").write_text(result.output, encoding="utf-8")
        figures = []
        if plots:
            from experiments.output.reference_plots import (
                plot_reference_initial,
                plot_reference_steps,
            )
            if not mc.table.empty:
                figures.append(plot_reference_initial(mc.table, tmp / "initial.png").name)
            if not mc.steps.empty:
                figures.append(plot_reference_steps(mc.steps, tmp / "steps.png").name)
        write_report_html(tmp, report_markdown(result, mc, figures))


def report_markdown(result, mc, figures=()) -> str:
    """report.html's source: the verdict, the figures, the explanation as printed, and
    the folder's tables."""
    # a fence longer than any run of backticks in the text, which is partly the learner's
    fence = "`" * max(3, 1 + max(map(len, re.findall("`+", result.explanation)), default=0))
    md = [f"# handgrad check: {result.file} against {mc.ref.name}", "",
          f"- status: **{result.status}** (exit {result.exit_code}) — {result.message}",
          f"- {result.seconds:.2f} s", ""]
    alt = {"initial.png": "the initial point: rel_err against rel_tol",
           "steps.png": "training: rel_err against rel_tol"}
    md += [line for f in figures for line in (f"![{alt.get(f, f)}]({f})", "")]
    md += [f"{fence}text", result.explanation, fence, "",
           "Tables: initial.csv (the initial point), steps.csv (training)"
           + (", intermediates.csv (the point diagnosed)" if mc.judged is not None else "")
           + ".", ""]
    return "\n".join(md)
