"""An ``Explanation`` (and the update-order table) as text, markdown or long-form csv.

A renderer computes nothing: every number comes from the ``Explanation`` or the table,
and only formatting happens here (9 significant digits, differences as 1.2e-17, negative
factors in brackets). Text and markdown share one writer, ``_Doc``.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence

import pandas as pd

from experiments.core.config import ConfigError
from experiments.core.schema import EXPLAIN_COLUMNS as CSV_COLUMNS

from .model import ORDERS, Explanation, Factor, GradientTerm, is_222
from .worked import update_order_notes

FORMATS = ("text", "markdown", "csv")
DISPLAY_SAMPLES = 8     # text/markdown show this many samples per sum (csv shows all)

LOSS_RULES = {  # ∂E/∂out, as manual.losses writes it (M = N·K)
    "half_sse": "∂E/∂out = out − target   (E = ½ Σ_n Σ_o (target − out)²)",
    "mse": "∂E/∂out = 2 (out − target) / M   (E = (1/M) Σ (target − out)², M = N·K)",
    "bce": "∂E/∂out = (out − target) / (out (1 − out)) / M   (mean binary cross-entropy)",
    "cross_entropy": "∂E/∂out = (softmax(out) − target) / N   (out are the logits)",
}
ACTIVATION_RULES = {  # f'(net) through the stored out = f(net), as manual.activations
    "sigmoid": "∂out/∂net = out (1 − out)",
    "tanh": "∂out/∂net = 1 − out²",
    "relu": "∂out/∂net = 1 if out > 0 else 0",
    "identity": "∂out/∂net = 1",
}


def _f(x, spec: str = ".9g") -> str:
    """A value to 9 significant digits ("" for a missing one, "0" for zero)."""
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return ""
    return "0" if x == 0 else format(float(x), spec)


def _d(x) -> str:
    """A difference: 1.2e-17."""
    return _f(x, ".1e")


def _bracket(x) -> str:
    """A number for a sum or product: negative ones in brackets, (-0.19)."""
    x = float(x)
    return f"({_f(x)})" if x < 0 else _f(x)


def _prod_text(factors: Sequence[Factor], n: int) -> str:
    """a · b · c with negative factors in brackets: 0.74 · 0.19 · (-0.5)."""
    return " · ".join(_bracket(f.values[n]) for f in factors)


def _sum_text(g: GradientTerm, n: int) -> str:
    """∂E/∂out_h's terms for sample n: a · b · c + d · e · f."""
    return " + ".join(_prod_text(u.factors, n) for u in g.upstream)


def _text_table(headers: list[str], rows: list[list[str]], markdown: bool) -> str:
    if markdown:
        esc = [[c.replace("|", "\\|") for c in r] for r in [headers, *rows]]
        lines = ["| " + " | ".join(esc[0]) + " |", "|" + "|".join("---" for _ in headers) + "|"]
        lines += ["| " + " | ".join(r) + " |" for r in esc[1:]]
        return "\n".join(lines)
    widths = [max(len(r[i]) for r in [headers, *rows]) for i in range(len(headers))]
    return "\n".join("  " + "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
                     for r in [headers, *rows])


class _Doc:
    """The lines of a text or a markdown document: the few places where they differ."""

    def __init__(self, md: bool):
        self.md, self.lines = md, []

    def heading(self, title: str) -> None:
        self.lines.append(f"\n## {title}\n" if self.md else f"\n{title}\n{'-' * len(title)}")

    def para(self, text: str, gap: bool = True) -> None:
        """Indented in text; in markdown a paragraph, after a blank line when ``gap``."""
        self.lines.append(("\n" if gap else "") + text if self.md else "  " + text)

    def table(self, headers: list[str], rows: list[list[str]]) -> None:
        self.lines.append(_text_table(headers, rows, self.md))


def render(expl: Explanation, fmt: str = "text", table: pd.DataFrame | None = None) -> str:
    """The explanation (and the update-order table) as text, markdown or csv."""
    if fmt not in FORMATS:
        raise ConfigError(f"--format {fmt!r}: choose one of {list(FORMATS)}")
    if fmt == "csv":
        buf = io.StringIO()
        explanation_rows(expl, table).to_csv(buf, index=False)   # repr: exact round trip
        return buf.getvalue()
    doc = _Doc(fmt == "markdown")
    if doc.md:
        doc.lines.append(f"# handgrad explain: {expl.config.name}\n")
    doc.lines.extend(("- " if doc.md else "") + line for line in _header(expl))
    doc.lines.extend(("- " if doc.md else "note: ") + n for n in expl.notes)
    shown = list(range(min(expl.n_samples, DISPLAY_SAMPLES)))
    _forward(doc, expl, shown)
    _error(doc, expl, shown)
    _gradients(doc, expl, shown)
    _update(doc, expl)
    if table is not None:
        _order_table(doc, table)
    return "\n".join(doc.lines).lstrip("\n") + "\n"


def _header(expl: Explanation) -> list[str]:
    c = expl.config
    act = (c.activation if c.resolved_output_activation == c.activation
           else f"{c.activation} → {c.resolved_output_activation}")
    bias = {True: "trainable biases", False: "no biases", "frozen": "frozen biases"}[c.bias]
    order_text = {
        "simultaneous": "simultaneous (every δ at the weights the step starts from: the "
                        "derivation, and autograd + torch.optim.SGD)",
        "sequential": "sequential (output weights updated first; hidden deltas go through "
                      "the NEW output weights)",
    }[expl.order]
    return [
        f"{c.name}: sizes {'-'.join(map(str, c.sizes))}, {act}, {bias}, {c.loss}, lr {c.lr:g}, "
        f"{c.dtype}; {expl.problem.batch}",
        f"update order: {order_text}",
        "hand side: manual/'s forward cache and backward arithmetic; autograd: torch_impl "
        "(loss.backward(), torch.optim.SGD); diff = hand − autograd",
    ]


def _forward(doc: _Doc, expl: Explanation, shown: list[int]) -> None:
    N, c = expl.n_samples, expl.config
    doc.heading("Forward pass" + (f" (samples {shown[0]}–{shown[-1]} shown of {N}; sums run "
                                  f"over all {N}, --format csv lists every sample)"
                                  if N > len(shown) else ""))
    if doc.md:
        doc.lines.append("")
    units, rows = expl.forward_units(), []
    for n in shown:
        for l, names in enumerate(expl.neurons):
            for j in sorted(units[l]):
                row = [str(n)] if N > 1 else []
                if l == 0:
                    row += [names[j], "", _f(expl.out[0][n, j]), "", ""]
                else:
                    d = max(abs(expl.net[l][n, j] - expl.net_autograd[l][n, j]),
                            abs(expl.out[l][n, j] - expl.out_autograd[l][n, j]))
                    row += [names[j], _f(expl.net[l][n, j]), _f(expl.out[l][n, j]),
                            _f(expl.out_autograd[l][n, j]), _d(d)]
                rows.append(row)
    doc.table((["n"] if N > 1 else []) + ["neuron", "net", "out", "autograd out", "max diff"],
              rows)
    doc.para("net = Σ w·out(previous layer)" + (" + b" if c.bias is not False else "")
             + f"; out = {c.activation}(net)"
             + (f", {c.resolved_output_activation} in the output layer"
                if c.resolved_output_activation != c.activation else "")
             + ("; in your names a unit of layer l is a_l[j] = out, z_l[j] = net (a0 = X)"
                if expl.convention == "W1b1" and not is_222(c.sizes) else ""))


def e_line(expl: Explanation) -> str:
    """E_total by hand next to autograd's (the text's, the markdown's and the page's)."""
    return (f"E_total = {_f(expl.E_total)}   autograd {_f(expl.E_autograd)}   "
            f"diff {_d(expl.E_total - expl.E_autograd)}")


def _error(doc: _Doc, expl: Explanation, shown: list[int]) -> None:
    N, c = expl.n_samples, expl.config
    doc.heading("Error")
    rows = [([str(n)] if N > 1 else []) + [name, _f(expl.problem.T[n, k]),
                                            _f(expl.out[-1][n, k]), _f(expl.error_terms[n, k])]
            for n in shown for k, name in enumerate(expl.neurons[-1])]
    doc.table((["n"] if N > 1 else []) + ["output", "target", "out", "E term"], rows)
    line = e_line(expl)
    doc.para(f"**{line}**" if doc.md else line)
    doc.para("E term = ½ (target − out)²" if c.loss == "half_sse" else
             f"E terms: each output's share of the {c.loss} sum (they add up to E_total)")


def _gradients(doc: _Doc, expl: Explanation, shown: list[int]) -> None:
    N, c = expl.n_samples, expl.config
    doc.heading("Gradients by the chain rule" + (f", summed over the batch of {N} samples"
                                                 if N > 1 else ""))
    same = c.activation == c.resolved_output_activation
    doc.para(f"{LOSS_RULES[c.loss]};  {ACTIVATION_RULES[c.resolved_output_activation]}"
             + (" (every layer)" if same else
                f" (output layer), {ACTIVATION_RULES[c.activation]} (hidden)"), gap=False)
    if expl.order == "sequential":
        doc.para("sequential order: a weight marked ⁺ is already updated (w⁺ = w − "
                 "lr·∂E/∂w) when the hidden deltas go through it, so the hidden gradients "
                 "differ from autograd's by O(lr·∂E/∂w), not by rounding")
    for g in expl.gradients:
        doc.lines.extend((_gradient_markdown if doc.md else _gradient_text)(g, N, shown))


def _formulas(g: GradientTerm) -> tuple[str, str, str]:
    """The section title, ∂E/∂w as a product of symbols, ∂E/∂out_h as a sum of them."""
    title = (g.name + (f" = {g.key}[{','.join(map(str, g.index))}]"
                       if not g.name.startswith("layers") else "") + f"   ({g.edge})")
    product = " · ".join(f.symbol for f in g.factors)
    upstream = " + ".join(" · ".join(f.symbol for f in u.factors) for u in g.upstream)
    return title, product, upstream


def _gradient_markdown(g: GradientTerm, N: int, shown: list[int]) -> list[str]:
    """One parameter's chain rule as a table: ∂E/∂out_h (hidden layers), then the product."""
    title, product, upstream = _formulas(g)
    lhs, f0 = f"∂E/∂{g.wrt}", g.factors[0]
    pre = [f"n={n}: " if N > 1 else "" for n in range(N)]
    rows = [[f"{pre[n]}{f0.symbol} = {upstream}", _sum_text(g, n), _f(f0.values[n]), "", ""]
            for n in (shown if g.upstream else ())]
    rows += [[f"{pre[n]}{lhs} = {product}", _prod_text(g.factors, n), _f(g.products[n]), "",
              ""] for n in shown]
    rows.append([f"**{lhs}**" + (" = Σ_n" if N > 1 else ""), "", f"**{_f(g.value)}**",
                 _f(g.autograd), _d(g.diff)])
    return [f"\n### {title}\n", f"∂net/∂{g.wrt} = {g.source}\n",
            _text_table(["term", "product", "value", "autograd", "diff"], rows, True)]


def _gradient_text(g: GradientTerm, N: int, shown: list[int]) -> list[str]:
    """One parameter's chain rule written out: ∂E/∂out_h (hidden layers), the product."""
    title, product, upstream = _formulas(g)
    lhs, f0 = f"∂E/∂{g.wrt}", g.factors[0]
    lines = [f"\n  {title}"]
    if g.upstream:
        head = f"    {f0.symbol} = "
        pad = " " * (len(head) - 2)
        lines.append(head + upstream)
        for n in shown:
            parts = [_sum_text(g, n)]
            if len(g.upstream) > 1:
                parts.append(" + ".join(_bracket(u.values[n]) for u in g.upstream))
            parts.append(_f(f0.values[n]))
            if N > 1:
                lines.append(f"      n={n}: " + " = ".join(parts))
            else:
                lines.extend(f"{pad}= {p}" for p in parts)
    pad = " " * len(f"    {lhs} ")
    lines.append(f"    {lhs} = " + ("Σ_n " if N > 1 else "")
                 + f"{product}   (∂net/∂{g.wrt} = {g.source})")
    for n in shown:
        if N > 1:
            lines.append(f"      n={n}: {_prod_text(g.factors, n)} = {_f(g.products[n])}")
        else:
            lines += [f"{pad}= {_prod_text(g.factors, n)}", f"{pad}= {_f(g.products[n])}"]
    if N > 1:
        if N > len(shown):
            lines.append(f"      … {N - len(shown)} more samples (--format csv lists them)")
        lines.append(f"      Σ_n = {_f(g.value)}")
    lines.append(f"    autograd {_f(g.autograd)}   diff {_d(g.diff)}")
    return lines


def _update(doc: _Doc, expl: Explanation) -> None:
    doc.heading("Update")
    doc.para(expl.update_rule + ("\n" if doc.md else ""), gap=False)
    rows = [[u.name, _f(u.w), _f(u.grad), f"{_f(u.w)} − {expl.config.lr:g} · "
             f"{_bracket(u.effective)}", _f(u.w_new), _f(u.autograd), _d(u.diff)]
            for u in expl.updates]
    doc.table(["param", "w", "∂E/∂w", "w − lr·(…)", "w⁺", "autograd+SGD w⁺", "diff"], rows)


def order_rows(table: pd.DataFrame) -> list[list[str]]:
    """The update-order table's cells: figure, published (to its printed digits), both
    orders and autograd+SGD (weight distances as differences), matches."""
    rows = []
    for r in table.itertuples(index=False):
        fmt = _d if r.figure.startswith("max |w") else _f
        pub = "" if math.isnan(r.published) else f"{r.published:.{int(r.digits)}f}"
        rows.append([r.figure, pub, fmt(r.simultaneous), fmt(r.sequential),
                     _f(r.autograd_sgd), r.matches])
    return rows


def _order_table(doc: _Doc, table: pd.DataFrame) -> None:
    doc.heading(f"Update order: simultaneous vs sequential, {table.attrs.get('steps', 1):,} "
                f"update(s)")
    doc.para("both orders trained on the explained batch with plain gradient descent; "
             "autograd+SGD = torch_impl + torch.optim.SGD; a match is agreement to the "
             "published digits (|x − pub| ≤ ½·10^−d)" + ("\n" if doc.md else ""), gap=False)
    doc.table(["figure", "published", "simultaneous", "sequential", "autograd+SGD",
               "matches"], order_rows(table))
    notes = update_order_notes(table)
    if notes:
        doc.lines.append("")
        doc.lines.extend(("- " if doc.md else "  * ") + n for n in notes)


def explanation_rows(expl: Explanation, table: pd.DataFrame | None = None) -> pd.DataFrame:
    """The long form (``CSV_COLUMNS``): one row per number the explanation shows."""
    N, nan = expl.n_samples, float("nan")

    def pre(n):
        return f"n={n}: " if N > 1 else ""

    units, rows = expl.forward_units(), []
    for n in range(N):
        for l, names in enumerate(expl.neurons):
            for j in sorted(units[l]):
                if l == 0:
                    rows.append(["forward", names[j], f"{pre(n)}out", float(expl.out[0][n, j]),
                                 nan, nan])
                    continue
                for term, mine, theirs in (("net", expl.net[l], expl.net_autograd[l]),
                                           ("out", expl.out[l], expl.out_autograd[l])):
                    v, t = float(mine[n, j]), float(theirs[n, j])
                    rows.append(["forward", names[j], f"{pre(n)}{term}", v, t, v - t])
    for n in range(N):
        for k, name in enumerate(expl.neurons[-1]):
            rows.append(["error", name, f"{pre(n)}target", float(expl.problem.T[n, k]), nan, nan])
            rows.append(["error", name, f"{pre(n)}E term", float(expl.error_terms[n, k]),
                         nan, nan])
    rows.append(["error", "total", "E_total", expl.E_total, expl.E_autograd,
                 expl.E_total - expl.E_autograd])
    for g in expl.gradients:
        for n in range(N):
            rows += [["gradient", g.name, pre(n) + " · ".join(f.symbol for f in u.factors),
                      float(u.values[n]), nan, nan] for u in g.upstream]
            rows += [["gradient", g.name, pre(n) + f.symbol, float(f.values[n]), nan, nan]
                     for f in g.factors]
            if N > 1:
                rows.append(["gradient", g.name, f"{pre(n)}product", float(g.products[n]),
                             nan, nan])
        rows.append(["gradient", g.name, f"∂E/∂{g.wrt}", g.value, g.autograd, g.diff])
    for u in expl.updates:
        rows += [["update", u.name, "w", u.w, nan, nan], ["update", u.name, "∂E/∂w", u.grad,
                 nan, nan], ["update", u.name, "lr", expl.config.lr, nan, nan],
                 ["update", u.name, "w⁺", u.w_new, u.autograd, u.diff]]
    for r in (table.itertuples(index=False) if table is not None else ()):
        t = r.autograd_sgd
        if not math.isnan(r.published):
            rows.append(["update_order", r.figure, "published", r.published, t, r.published - t])
        rows += [["update_order", r.figure, order, getattr(r, order), t, getattr(r, order) - t]
                 for order in ORDERS]
    return pd.DataFrame(rows, columns=CSV_COLUMNS)
