"""Automatic diagnosis of a gradient mismatch: what kind of mistake makes g_m differ from g_t?

Input: two gradient dicts, ``manual`` (g_m) and ``reference`` (g_t, e.g. autograd), numpy
arrays with the shared keys ``layers.{i}.weight`` (out, in) / ``layers.{i}.bias`` (out,).
Output: a list of ``Finding`` (kind, params, detail text, numbers). Kinds:

    agree           every parameter agrees (nothing to report)
    rounding        rel_err exceeds the rounding tolerance ``rel_tol`` but stays below the
                    bug level: a rounding effect (docs/tolerance.md), not a derivation bug
    constant_ratio  g_m = c·g_t with c ≠ 1 (least squares c = ⟨g_m, g_t⟩ / ⟨g_t, g_t⟩,
                    residual at rounding level): a reduction or factor mismatch; the likely
                    causes are named from c (½ or 2, N or 1/N, K, M = N·K, −1)
    transposed      g_m = g_tᵀ (square weight), or g_tᵀ reshaped to g_t's shape (non-square:
                    a_{l-1}ᵀ δ computed and reshaped into (out, in))
    accumulated     g_m = g_t + the reference's gradients of the earlier steps (only tested
                    when ``previous`` is given): gradients summed across steps, never reset
    layer_confined  the unexplained differences sit in one layer, or in layers 0 … l with the
                    layers above agreeing: the error enters at layers.{l}'s delta
    other           anything else (e.g. every layer differs with no constant ratio: the error
                    enters at the output delta — the loss derivative or the output f′)
    onset           (``diagnose_run`` only) the first logged step at which parameters stopped
                    agreeing, from grads.csv's rel_err and rel_tol
    drift           (``diagnose_run`` only) a ``free``-mode run that disagreed at bug level
                    before its last step: from then on the two sides train on different
                    weights, so the last step's findings mix the mistake with that drift;
                    or a free run whose weights parted by far more than rounding (> √u
                    relative to the largest weight)
    stuck           (``diagnose_run`` only) training that cannot move, whatever the
                    gradients' agreement: every gradient exactly 0 from some step on, the
                    loss exactly unchanged over the last quarter of the logged steps, or
                    outputs saturated to within 1e-30 of 0 or 1 (σ′ passes back nothing)
    loss_only       (``diagnose_run`` only, about ``loss``) the loss value differs while
                    every gradient agrees: the mistake is in the loss formula, not in
                    backprop. The loss also gets ``constant_ratio`` (E_manual = c·E_torch,
                    its causes named as the gradients'), ``rounding`` or ``other``

Two thresholds, both relative (rel_err = ‖g_m − g_t‖ / max(‖g_m‖, ‖g_t‖)):

* ``rel_tol`` — the rounding tolerance a correct implementation is held to (the runner's
  per-step 2γ_m·cond, grads.csv's ``rel_tol``); a parameter within it agrees.
* ``bug_tol`` = max(√u, rel_tol), u the unit roundoff of the dtype (1.05e-8 in float64,
  2.4e-4 in float32): "half the significant digits". Honest rounding differences in the
  reference runs stay below 1e-12 (float64) and 7e-4 against a tolerance of 1.4e-2
  (float32, where rel_tol takes over); derivation mistakes change gradients by O(1e-2 … 1)
  (a factor 2, a missing σ′ ≤ ¼, a transpose). So a difference above bug_tol is a bug, and
  an explanation (c·g_t, g_tᵀ, …) whose residual is below bug_tol explains it.
"""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from experiments.core.metrics import TINY, rel_err
from experiments.core.tolerance import unit_roundoff

KINDS = ("agree", "rounding", "constant_ratio", "transposed", "accumulated", "layer_confined",
         "other", "onset", "drift", "stuck", "loss_only")
_LAYER = re.compile(r"^layers\.(\d+)\.")


@dataclass(frozen=True)
class Finding:
    """One diagnosis: ``kind`` (see ``KINDS``), the parameters it is about, a sentence, and the
    numbers behind it (e.g. ``c``, ``residual``, ``rel_err``, ``layer``, ``step``)."""

    kind: str
    params: tuple[str, ...]
    detail: str
    numbers: Mapping[str, float] = field(default_factory=dict)

    def __str__(self) -> str:
        return f"{self.kind} [{', '.join(self.params)}]: {self.detail}"


# -- numbers -------------------------------------------------------------------------------

def bug_tolerance(dtype: str = "float64") -> float:
    """√u: a relative difference above it is a derivation bug, not rounding (module doc)."""
    return math.sqrt(unit_roundoff(dtype))


def fit_ratio(gm: np.ndarray, gt: np.ndarray) -> tuple[float, float]:
    """Least-squares c with g_m ≈ c·g_t, and the relative residual ‖g_m − c g_t‖ / ‖g_m‖.

    c = ⟨g_m, g_t⟩ / ⟨g_t, g_t⟩ (nan when g_t = 0); residual 0 when g_m = 0 = g_t.
    """
    m = np.asarray(gm, dtype=np.float64).ravel()
    t = np.asarray(gt, dtype=np.float64).ravel()
    tt = float(t @ t)
    nm = math.sqrt(float(m @ m))
    if tt <= TINY:
        return math.nan, (0.0 if nm == 0 else 1.0)
    c = float(m @ t) / tt
    r = m - c * t
    return c, math.sqrt(float(r @ r)) / max(nm, TINY)


def _layer(key: str) -> int | None:
    m = _LAYER.match(key)
    return int(m.group(1)) if m else None


def _outputs(keys, shapes) -> int | None:
    """K, the width of the last layer, from the shared key convention."""
    layers = [(_layer(k), k) for k in keys if _layer(k) is not None and k.endswith(".weight")]
    if not layers:
        return None
    return int(shapes[max(layers)[1]][0])


def _near(a: float, b: float, tol: float) -> bool:
    return b != 0 and abs(a / b - 1) <= tol


def _fmt(x: float) -> str:
    return f"{x:.6g}"


def ratio_causes(c: float, *, batch: int | None = None, outputs: int | None = None,
                 tol: float = 1e-8) -> list[str]:
    """Likely causes of g_manual = c·g_reference, from the reduction constants of the losses.

    Candidates are products (factor 2) × (reduction) × (sign): factor ∈ {1, 2, ½} (the 2 of
    d(A − Y)²/dA, the ½ of ½·SSE), reduction ∈ {1, N^±1, K^±1, M^±1} (M = N·K: torch's
    ``reduction='mean'`` over all elements of MSELoss/BCELoss), sign ∈ {+1, −1}. Every
    candidate whose value matches c within ``tol`` is named (N = 2 and the factor 2
    coincide, for example).
    """
    if not math.isfinite(c):
        return []
    factors = [(1.0, ""), (2.0, "an extra factor 2 (2(A − Y) where the loss has ½, or "
                                "½ dropped from the loss but not from ∂E/∂A)"),
               (0.5, "the factor 2 of the squared error missing (∂(A − Y)²/∂A = 2(A − Y))")]
    reductions = [(1.0, "")]
    if batch and batch > 1:
        reductions += [(float(batch), f"the 1/N of a mean over the batch missing (N = {batch}: "
                                      "sum instead of mean)"),
                       (1.0 / batch, f"an extra 1/N (N = {batch}: mean where the loss sums)")]
    if outputs and outputs > 1:   # (N or K = 1 would name a factor 1 as a cause)
        reductions += [(float(outputs), f"the 1/K of a mean over the outputs missing (K = "
                                        f"{outputs})"),
                       (1.0 / outputs, f"an extra 1/K (K = {outputs})")]
    if batch and outputs and outputs > 1:
        M = batch * outputs
        reductions += [(float(M), f"the 1/M of a mean over all M = N·K = {M} elements missing "
                                  "(torch MSELoss/BCELoss reduction='mean')"),
                       (1.0 / M, f"an extra 1/M (M = N·K = {M}: mean where the loss sums)")]
    signs = [(1.0, ""), (-1.0, "the sign flipped (Y − A instead of A − Y)")]
    matches = []   # (number of ingredients, text): the simplest explanations first
    for (f, ft), (r, rt), (s, st) in itertools.product(factors, reductions, signs):
        value = f * r * s
        if value == 1.0 or not _near(c, value, tol):
            continue
        parts = [t for t in (st, ft, rt) if t]
        matches.append((len(parts), " and ".join(parts)))
    return list(dict.fromkeys(text for _, text in sorted(matches, key=lambda m: m[0])))


# -- diagnosis ------------------------------------------------------------------------------

def diagnose(manual: Mapping[str, np.ndarray], reference: Mapping[str, np.ndarray], *,
             rel_tol: float | Mapping[str, float] | None = None,
             bug_tol: float | None = None, batch: int | None = None,
             outputs: int | None = None,
             previous: Mapping[str, np.ndarray] | None = None) -> list[Finding]:
    """Findings about g_m = ``manual`` against g_t = ``reference`` (same keys; module doc).

    ``rel_tol``: rounding tolerance, one number or one per key (default: none — then only
    the bug level separates agree from differ). ``bug_tol``: default √u of the arrays'
    dtype. ``batch`` (N) and ``outputs`` (K, default: the last layer's width) name the
    reduction constants in a constant ratio. ``previous``: the reference's gradients summed
    over the earlier steps since the last reset, to test for accumulation.
    """
    keys = list(reference)
    if set(manual) != set(keys):
        raise ValueError(f"gradient dicts have different keys: {sorted(manual)} vs {sorted(keys)}")
    if not keys:
        return []
    gm = {k: np.asarray(manual[k]) for k in keys}
    gt = {k: np.asarray(reference[k]) for k in keys}
    dtype = "float32" if any(g.dtype == np.float32 for g in (*gm.values(), *gt.values())) \
        else "float64"
    base_bug = bug_tolerance(dtype) if bug_tol is None else bug_tol
    tols = {k: base_bug if rel_tol is None   # no rounding tolerance: the bug level decides
            else float(rel_tol[k] if isinstance(rel_tol, Mapping) else rel_tol) for k in keys}
    K = outputs if outputs is not None else _outputs(keys, {k: g.shape for k, g in gm.items()})
    sorted_: dict[str, list] = {c: [] for c in ("finding", "rounding", "ratio", "accumulated",
                                                "unexplained")}
    errs: dict[str, float] = {}
    for k in keys:
        category, payload = _classify(k, gm[k], gt[k], tols[k], max(base_bug, tols[k]),
                                      None if previous is None else previous.get(k))
        if isinstance(payload, float):
            errs[k] = payload
        if category != "agree":
            sorted_[category].append(payload if category == "finding" else k)
    findings, rounding = sorted_["finding"], sorted_["rounding"]
    if not any(sorted_.values()):
        worst = max(errs.values(), default=0.0)
        return [Finding("agree", tuple(keys), "every parameter agrees with the reference "
                        f"(rel_err up to {worst:.2g} in the last logged step's gradients)",
                        {"rel_err": worst})]
    # transposed parameters come after the ratio findings, as they always have
    transposed = [f for f in findings if f.kind == "transposed"]
    findings = [f for f in findings if f.kind != "transposed"]
    if rounding:
        findings.append(_rounding(rounding, errs, tols, base_bug))
    ratios = {k: (*fit_ratio(gm[k], gt[k]), errs[k]) for k in sorted_["ratio"]}
    findings += _ratio_findings(keys, ratios, base_bug, batch, K) + transposed
    if sorted_["accumulated"]:
        findings.append(Finding(
            "accumulated", tuple(sorted_["accumulated"]),
            "manual = this step's reference gradient + the reference gradients of the earlier "
            "steps: gradients are accumulated across steps instead of reset (zero them, or "
            "assign instead of +=, before each backward pass)",
            {"rel_err": max(errs[k] for k in sorted_["accumulated"])}))
    if sorted_["unexplained"]:
        fits = {k: fit_ratio(gm[k], gt[k]) for k in sorted_["unexplained"]}
        findings.append(_structure(keys, sorted_["unexplained"], errs, fits))
    return findings


def _rounding(keys, errs, tols, base_bug) -> Finding:
    worst = max(errs[k] for k in keys)
    return Finding(
        "rounding", tuple(keys),
        f"rel_err up to {worst:.2g} exceeds the rounding tolerance but stays below the "
        f"bug level {max(base_bug, *(tols[k] for k in keys)):.2g}: a rounding "
        "effect the bound does not model (docs/tolerance.md), not a derivation mistake",
        {"rel_err": worst})


def _classify(k: str, m: np.ndarray, t: np.ndarray, tol: float, bug: float, previous):
    """One parameter's category and payload: ``("finding", Finding)`` for non-finite,
    misshapen or transposed gradients, else the category (agree, rounding, ratio,
    accumulated, unexplained) with its rel_err."""
    if not (np.all(np.isfinite(m)) and np.all(np.isfinite(t))):
        bad_m, bad_t = int(np.sum(~np.isfinite(m))), int(np.sum(~np.isfinite(t)))
        return "finding", Finding("other", (k,), f"non-finite values (manual {bad_m}, "
                                  f"reference {bad_t} elements): the run diverged",
                                  {"nonfinite_manual": bad_m, "nonfinite_reference": bad_t})
    if m.shape != t.shape:
        if m.ndim == 2 and m.shape == t.T.shape:
            c, res = fit_ratio(m, t.T)
            if res <= bug and _near(c, 1.0, bug):
                return "finding", Finding(
                    "transposed", (k,), f"{k} has the transposed shape {m.shape} and "
                    f"equals the reference's transpose: a_{{l-1}}ᵀ δ (in, out) instead "
                    f"of δᵀ a_{{l-1}} (out, in)", {"c": c, "residual": res})
        return "finding", Finding("other", (k,), f"shape {m.shape} differs from the "
                                  f"reference's {t.shape}", {})
    e = rel_err(m, t)
    if e == 0 or e <= tol:
        return "agree", e
    if e <= bug:
        return "rounding", e
    if fit_ratio(m, t)[1] <= bug:
        return "ratio", e
    if m.ndim == 2 and min(m.shape) > 1:
        tc, tres = fit_ratio(m, t.T.reshape(m.shape))
        if tres <= bug:
            return "finding", _transposed(k, m, tc, tres, e, bug)
    if previous is not None:
        p = np.asarray(previous, dtype=np.float64)
        if np.any(p != 0) and rel_err(m, t + p) <= bug:
            return "accumulated", e
    return "unexplained", e


def _transposed(k, m, tc, tres, e, bug) -> Finding:
    how = (f"{k} is the reference's transpose: the gradient was computed as "
           f"a_{{l-1}}ᵀ δ instead of δᵀ a_{{l-1}}" if m.shape[0] == m.shape[1] else
           f"{k} is the reference's transpose {m.shape[::-1]} reshaped to "
           f"{m.shape}: a_{{l-1}}ᵀ δ (in, out) computed and reshaped into "
           f"(out, in), which hid the shape error")
    if not _near(tc, 1.0, bug):
        how += f", and scaled by c = {_fmt(tc)}"
    return Finding("transposed", (k,), how, {"c": tc, "residual": tres, "rel_err": e})


def _ratio_findings(keys, ratios, bug, batch, K) -> list[Finding]:
    """Group constant-ratio parameters by c; name the likely causes of each c."""
    groups: list[list[str]] = []
    for k in ratios:
        for g in groups:
            if _near(ratios[k][0], ratios[g[0]][0], bug):
                g.append(k)
                break
        else:
            groups.append([k])
    out = []
    for g in groups:
        c = ratios[g[0]][0]
        res = max(ratios[k][1] for k in g)
        worst = max(ratios[k][2] for k in g)
        causes = ratio_causes(c, batch=batch, outputs=K, tol=bug)
        if len(g) == len(keys):
            where = (f"the same c = {_fmt(c)} on every parameter: a reduction or factor "
                     "mismatch in the loss derivative ∂E/∂A (it scales the output delta, "
                     "hence every gradient below it)")
        else:
            layers = sorted({_layer(k) for k in g} - {None})
            where = (f"g_manual = c·g_reference with c = {_fmt(c)} on {', '.join(g)} only"
                     + (f" (layers {layers})" if layers else "")
                     + ": a factor that enters below the output, or in these parameters' "
                       "own formulas")
        why = ("; likely: " + "; or ".join(causes)) if causes else (
            "; c is none of ½, 2, N, K, M = N·K or their products: look for another constant "
            "(a learning rate folded into the gradient, a hand-written scale)")
        out.append(Finding("constant_ratio", tuple(g), where + why,
                           {"c": c, "residual": res, "rel_err": worst}))
    return out


def _near_constant(fits) -> str:
    """A hint when the fitted ratios are close but not constant (residual well above the
    bug level, yet small): an elementwise factor that varies little over the samples."""
    cs = [c for c, _ in fits.values()]
    res = max(r for _, r in fits.values())
    if not all(math.isfinite(c) and c > 0 for c in cs) or max(cs) > 1.5 * min(cs) or res > 0.25:
        return ""
    lo, hi = min(cs), max(cs)
    text = (f"; the fitted ratios are nearly constant (c from {_fmt(lo)} to {_fmt(hi)}, "
            f"residual up to {res:.2g}): an elementwise factor that varies little over the "
            "samples is missing or extra")
    if lo >= 3.5:
        text += " — c ≈ 4 or more is what a missing sigmoid σ′ = A(1 − A) ≤ ¼ leaves"
    elif hi <= 0.3:
        text += " — c ≈ ¼ or less is what an extra sigmoid σ′ ≤ ¼ leaves"
    return text


def _structure(keys, unexplained, errs, fits) -> Finding:
    """Where the unexplained differences sit in the layer stack, read as backprop's flow:
    a wrong delta at layer l propagates to every layer below it, never above."""
    layers_all = sorted({_layer(k) for k in keys} - {None})
    bad = sorted({_layer(k) for k in unexplained} - {None})
    worst = max(errs.get(k, math.nan) for k in unexplained)
    params = tuple(unexplained)
    hint = _near_constant(fits)
    if not layers_all or len(bad) != len({_layer(k) for k in unexplained}):
        return Finding("other", params, f"{', '.join(params)} differ (rel_err up to "
                       f"{worst:.2g}) with no constant ratio, transpose or accumulation",
                       {"rel_err": worst})
    top = layers_all[-1]
    lo, hi = bad[0], bad[-1]
    contiguous = bad == list(range(lo, hi + 1))
    if bad == layers_all:
        return Finding(
            "other", params,
            f"every layer differs (rel_err up to {worst:.2g}) with no constant ratio: the error "
            f"enters at the output delta (layers.{top}: the loss derivative ∂E/∂A or the output "
            "f′) and backpropagation carries it into every layer below — or the gradients are "
            "not this step's" + hint,
            {"rel_err": worst, "enters_at": top})
    if contiguous and lo == 0:
        where = ("only layers.0 differs" if hi == 0 else
                 f"layers 0 … {hi} differ while the layers above agree")
        return Finding(
            "layer_confined", params,
            f"{where} (rel_err up to {worst:.2g}): the error enters at layers.{hi}'s delta "
            f"δ = ∂E/∂z (its f′, or ∂E/∂a passed down to it) or in its own gradient formula; "
            "a wrong delta reaches every layer below, never above" + hint,
            {"rel_err": worst, "layer": hi, "enters_at": hi})
    if lo == hi:
        return Finding(
            "layer_confined", params,
            f"only layers.{lo} differs (rel_err up to {worst:.2g}) while the layers below, "
            f"which receive the delta through it, agree: the delta is right, the error is in "
            f"layers.{lo}'s own gradient formula (∂E/∂W = δᵀ a_{{l-1}}, ∂E/∂b = Σ_n δ)",
            {"rel_err": worst, "layer": lo})
    return Finding("other", params, f"layers {bad} differ (rel_err up to {worst:.2g}) while "
                   "others agree, in no pattern backpropagation explains",
                   {"rel_err": worst})


def param_kinds(findings: list[Finding], keys) -> dict[str, str]:
    """The diagnosis kind for each parameter ("agree" where no finding names it)."""
    kinds = {k: "agree" for k in keys}
    for f in findings:
        if f.kind == "onset":
            continue
        for k in f.params:
            if k in kinds and kinds[k] == "agree":
                kinds[k] = f.kind
    return kinds


# -- presentation ----------------------------------------------------------------------------

def findings_frame(findings: list[Finding]) -> pd.DataFrame:
    """kind, params (space-separated), detail, and the main numbers, one row per finding."""
    cols = ["c", "residual", "rel_err", "layer", "enters_at", "step"]
    rows = [[f.kind, " ".join(f.params), f.detail, *(f.numbers.get(c, np.nan) for c in cols)]
            for f in findings]
    return pd.DataFrame(rows, columns=["kind", "params", "detail", *cols])


def format_findings(findings: list[Finding]) -> str:
    """One line per finding, for the terminal."""
    return "\n".join(f"- {f}" for f in findings)


def findings_markdown(findings: list[Finding]) -> str:
    """A bullet list for report.md: **kind** `params`: detail."""
    lines = []
    for f in findings:
        params = ", ".join(f"`{p}`" for p in f.params)
        lines.append(f"- **{f.kind}**{' ' + params if params else ''}: {f.detail}")
    return "\n".join(lines) if lines else "- nothing to diagnose"
