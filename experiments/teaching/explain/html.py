"""``handgrad explain --format html``: the chain rule in the browser, one self-contained file.

The page holds the network as SVG (net and out on every neuron; w and ∂E/∂w on every
edge, coloured by sign — blue solid positive, red dashed negative — and as thick as
|∂E/∂w| is large), a panel with the selected weight's chain rule (the rows of
``explain --param KEY --format csv`` and the text's written-out product, both from
render.py's formatters), a control over the first K steps of gradient descent on the
explained batch and, on the 2-2-2 worked example, the two update orders beside the
published figures. Networks over ``BLOCK_UNITS`` units are drawn as layer blocks, with a
search box for a parameter by key.

Nothing is computed here: step k is ``explain`` on the weights after k steps
(``Explanation.params_after`` of step k − 1), every number is formatted by render.py, and
all of it goes into one JSON blob that page.py's script only displays.
"""

from __future__ import annotations

import html
import json
import math

import numpy as np

from experiments.core.config import RunConfig
from experiments.output.html import page

from . import page as assets
from . import render
from .model import (
    MAX_PARAMS,
    ORDERS,
    Explanation,
    explain,
    is_222,
    n_params,
    param_name,
    plain,
    prepare,
)
from .render import DISPLAY_SAMPLES, _d, _f, _gradient_text, _header, explanation_rows
from .worked import update_order_notes

BLOCK_UNITS = 60        # above this many neurons the layers are drawn as blocks
MAX_PAGE_STEPS = 50     # steps the page holds (each is one full explanation)
LABELLED_EDGES = 40     # up to this many edges carry their numbers on the drawing
MID = 'text-anchor="middle"'


def explain_steps(cfg: RunConfig, param, order: str, steps: int, convention: str | None = None
                  ) -> dict[str, list[Explanation]]:
    """Per update order, the explanations of the first ``steps`` steps: step k explains
    the weights the previous step produced. Both orders on a plain 2-2-2 (the page's
    switch), else ``order`` only; one step where momentum makes the next ones differ
    from a fresh first step."""
    first = explain(cfg, param, order, convention=convention)
    orders = ORDERS if first.problem.worked and plain(first.config) else (order,)
    if not plain(first.config):
        steps = 1
        first.notes.append("one step only: with momentum or weight decay a later step is not "
                           "a fresh first step of explain")
    out = {}
    for o in orders:
        seq = [first if o == order else explain(cfg, param, o, convention=first.convention)]
        for _ in range(1, steps):
            seq.append(explain(cfg, param, o, params=seq[-1].params_after,
                               convention=first.convention))
        out[o] = seq
    return out


def default_params(cfg: RunConfig, param):
    """``--param`` as given, or on a network over ``MAX_PARAMS`` parameters each weight
    tensor's first entry (the search box reaches the others' gradients)."""
    if param:
        return param
    resolved = prepare(cfg).config               # the dataset fixes D and K
    if n_params(resolved) <= MAX_PARAMS:
        return param
    return [f"layers.{i}.weight[0,0]" for i in range(len(resolved.sizes) - 1)]


def render_html(runs: dict[str, list[Explanation]], order: str, table=None) -> str:
    """The page: the JSON blob of every step, the SVG, the panel, the controls."""
    first = runs[order][0]
    sizes = first.config.sizes
    blocks = sum(sizes) > BLOCK_UNITS
    data = {"order": order, "initial": first.gradients[0].name if first.gradients else "",
            "steps": {o: [_step(e) for e in seq] for o, seq in runs.items()}}
    if blocks:
        data["lookup"] = {o: [_lookup(e) for e in seq] for o, seq in runs.items()}
    blob = json.dumps(data, ensure_ascii=False, allow_nan=False).replace("</", "<\\/")
    drawing = _blocks_svg(first) if blocks else _network_svg(first)
    body = "\n".join([
        f"<h1>handgrad explain: {html.escape(first.config.name)}</h1>",
        "<ul>" + "".join(f"<li>{html.escape(x)}</li>" for x in _header(first) + first.notes)
        + "</ul>",
        _controls(runs, order),
        '<p><strong id="E-line" aria-live="polite"></strong></p>',
        drawing, _legend(blocks), _param_list(first, blocks), _panel(),
        _order_section(table) if table is not None else ""])
    script = (f'<script type="application/json" id="data">{blob}</script>'
              f"<script>{assets.JS}</script>")
    return page(f"handgrad explain: {first.config.name}", body, assets.CSS, script)


def _num(x) -> float | None:
    return None if x is None or (isinstance(x, float) and math.isnan(x)) else float(x)


def _step(expl: Explanation) -> dict:
    """One step's numbers as strings to show (and the exact floats, for checking)."""
    rows = explanation_rows(expl)
    shown = list(range(min(expl.n_samples, DISPLAY_SAMPLES)))
    upd = {u.name: u for u in expl.updates}
    params = {}
    for g in expl.gradients:
        mine = rows[(rows.param == g.name) & rows.section.isin(["gradient", "update"])]
        u = upd[g.name]
        params[g.name] = {
            "title": f"{g.name}   ({g.edge})",
            "text": "\n".join(_gradient_text(g, expl.n_samples, shown)).strip("\n") + "\n\n"
                    + f"  update: w⁺ = {_f(u.w)} − {expl.config.lr:g} · ({_f(u.effective)}) "
                      f"= {_f(u.w_new)}   torch.optim.SGD {_f(u.autograd)}   diff {_d(u.diff)}",
            "rows": [[r.section, r.term, _f(r.value), _f(r.autograd), _d(r.diff),
                      _num(r.value), _num(r.autograd)] for r in mine.itertuples(index=False)]}
    return {"E": render.e_line(expl)
                 + ("   (network values: sample 0)" if expl.n_samples > 1 else ""),
            # short on the drawing (4 digits); the panel's chain rule has all 9
            "units": [[["" if expl.net[l] is None else f"{expl.net[l][0, j]:.4g}",
                        f"{expl.out[l][0, j]:.4g}"] for j in range(n)]
                      for l, n in enumerate(expl.config.sizes)],
            "edges": _edges(expl), "bundles": _bundles(expl), "params": params}


def _bundles(expl: Explanation) -> dict:
    """Per weight matrix (a large network's drawing shows each as one bundle): the mean
    |∂E/∂w| over its entries, as text and as a shade relative to the largest this step."""
    means = {k: float(np.mean(np.abs(g))) for k, g in expl.grads_all.items()
             if k.endswith("weight")}
    top = max(means.values(), default=0.0) or 1.0
    return {k: {"text": f"mean |∂E/∂w| {m:.3g}", "level": round(m / top, 3)}
            for k, m in means.items()}


def _edges(expl: Explanation) -> dict:
    """Per explained weight: the sign and width the drawing shows, its label, its name."""
    weights = [g for g in expl.gradients if g.key.endswith("weight")]
    top = max((abs(g.value) for g in weights), default=0.0) or 1.0
    w = {u.name: u.w for u in expl.updates}
    out = {}
    for g in weights:
        s = int(np.sign(g.value))
        sign, word = {1: ("+", "positive"), -1: ("−", "negative"), 0: ("±", "zero")}[s]
        short = g.name if is_222(expl.config.sizes) else f"w[{g.index[0]},{g.index[1]}]"
        out[g.name] = {"sign": s,
                       "width": round(1 + 5 * abs(g.value) / top, 2),
                       # short numbers on the drawing; the panel has every digit
                       "label": f"{short} {w[g.name]:.3g} │ ∂ {sign}{abs(g.value):.3g}",
                       "aria": f"{g.name}, {g.edge}: w = {_f(w[g.name])}, ∂E/∂w = "
                               f"{_f(g.value)} ({word})"}
    return out


def _lookup(expl: Explanation) -> dict:
    """Every trainable entry's w, gradient, autograd's and the difference, by key[i,j] (and,
    in the W1b1 convention, by the learner's name too: W2[3,0])."""
    out, before = {}, expl.problem.params
    sizes = expl.config.sizes
    for key, g in expl.grads_all.items():
        a = np.asarray(expl.grads_autograd[key])
        for ix in np.ndindex(*g.shape):
            line = (f"w {_f(before[key][ix])}   ∂E/∂w {_f(g[ix])}   autograd "
                    f"{_f(a[ix])}   diff {_d(g[ix] - a[ix])}")
            out[f"{key}[{','.join(map(str, ix))}]"] = line
            if expl.convention == "W1b1":
                out[param_name(key, ix, sizes, "W1b1")] = line
    return out


def _controls(runs: dict, order: str) -> str:
    K = len(runs[order])
    radios = "".join(
        f'<label><input type="radio" name="order" value="{o}"{" checked" if o == order else ""}>'
        f" {o}</label> " for o in runs) if len(runs) > 1 else ""
    return (f'<div class="controls no-print" role="group" aria-label="steps">'
            f'<button id="prev" type="button">◀ previous step</button>'
            f'<input id="step-range" type="range" min="0" max="{K - 1}" value="0" '
            f'aria-label="step">'
            f'<button id="next" type="button">next step ▶</button>'
            f'<span id="step-label" aria-live="polite"></span>'
            + (f'<fieldset><legend>update order</legend>{radios}</fieldset>' if radios else "")
            + "</div>")


def _legend(blocks: bool) -> str:
    if blocks:
        return ('<p class="legend"><span>bundles: one per weight matrix, shaded by its mean '
                '|∂E/∂w| at this step (darkest = the largest of the network)</span></p>')
    return ('<p class="legend"><span>edges: <strong>solid blue</strong> ∂E/∂w &gt; 0</span>'
            '<span><strong>dashed red</strong> ∂E/∂w &lt; 0</span>'
            '<span>thicker = larger |∂E/∂w|</span>'
            '<span>select a weight: click, or Tab to it and press Enter</span></p>')


def _param_list(expl: Explanation, blocks: bool) -> str:
    buttons = "".join(f'<li><button type="button" data-param="{html.escape(g.name)}" '
                      f'aria-pressed="false">{html.escape(g.name)}</button></li>'
                      for g in expl.gradients)
    search = ('<p class="no-print"><label for="search">find a parameter by key</label> '
              '<input id="search" type="search" placeholder="layers.0.weight[3,5]" '
              'autocomplete="off"> <span id="search-result" aria-live="polite"></span></p>'
              if blocks else "")
    return (f'<h2>Parameters with their chain rule</h2>{search}'
            f'<ul class="params" aria-label="parameters">{buttons}</ul>')


def _panel() -> str:
    return ('<section id="panel" aria-live="polite" aria-labelledby="panel-title">'
            '<h2 id="panel-title"></h2><pre id="panel-text"></pre>'
            '<div class="table-wrap"><table><caption>the rows of explain --param … '
            '--format csv at this step</caption><thead><tr><th scope="col">section</th>'
            '<th scope="col">term</th><th scope="col">value</th><th scope="col">autograd'
            '</th><th scope="col">diff</th></tr></thead><tbody id="panel-rows"></tbody>'
            '</table></div></section><section class="print-only" aria-hidden="true">'
            '<h2>Every parameter at <span id="print-step"></span></h2>'
            '<div id="print-all"></div></section>')


def _order_section(table) -> str:
    """The update-order table (worked.update_order_table), one column per order."""
    rows = [f"<tr><th scope=\"row\">{html.escape(fig)}</th><td class=\"num\">{pub}</td>"
            f"<td class=\"num\" data-order=\"simultaneous\">{sim}</td>"
            f"<td class=\"num\" data-order=\"sequential\">{seq}</td>"
            f"<td class=\"num\">{tor}</td><td>{html.escape(match)}</td></tr>"
            for fig, pub, sim, seq, tor, match in render.order_rows(table)]
    notes = "".join(f"<li>{html.escape(n)}</li>" for n in update_order_notes(table))
    return (f"<h2>Update order: simultaneous vs sequential, {table.attrs.get('steps', 1):,} "
            f"update(s)</h2><p>The switch above chooses the order the steps show; that order's "
            f"column is highlighted and bold. matches = agreement to the published digits "
            f"(|x − pub| ≤ ½·10^−d).</p>"
            f'<div class="table-wrap"><table class="order-table"><thead><tr>'
            f'<th scope="col">figure</th><th scope="col">published</th>'
            f'<th scope="col" data-order="simultaneous">simultaneous</th>'
            f'<th scope="col" data-order="sequential">sequential</th>'
            f'<th scope="col">autograd+SGD</th><th scope="col">matches</th></tr></thead>'
            f"<tbody>{''.join(rows)}</tbody></table></div><ul>{notes}</ul>")


def _network_svg(expl: Explanation) -> str:
    """Neurons as circles (name, net, out), weights as focusable edges (line + label)."""
    sizes, names = expl.config.sizes, expl.neurons
    W, gap_y = 1000, 110           # a 3-4-1 fits a 1366×768 screen (the CSS caps the height)
    H = max(sizes) * gap_y + 40
    xs = [160 + i * (W - 360) / (len(sizes) - 1) for i in range(len(sizes))]

    def pos(l, j):
        return xs[l], 40 + (H - 40) * (j + 0.5) / sizes[l]

    edges, units, tags = [], [], []
    labels = sum(1 for g in expl.gradients if g.key.endswith("weight")) <= LABELLED_EDGES
    for g in expl.gradients:
        if not g.key.endswith("weight"):
            continue
        (x1, y1), (x2, y2) = pos(g.layer - 1, g.index[1]), pos(g.layer, g.index[0])
        # the script moves each label along its edge until it overlaps no other label
        # and no neuron (page.py, placeLabels); it starts at the middle
        lx, ly = (x1 + x2) / 2, (y1 + y2) / 2
        xy = f'x1="{x1:.0f}" y1="{y1:.0f}" x2="{x2:.0f}" y2="{y2:.0f}"'
        name = html.escape(g.name)
        edges.append(f'<g class="edge" tabindex="0" role="button" data-param="{name}">'
                     f'<title></title><line class="vis" {xy}/><line class="hit" {xy}/></g>')
        # labels in a layer of their own, above every line and neuron, on a background
        tags.append(f'<g class="tag" data-for="{name}" data-line="{x1:.0f} {y1:.0f} '
                    f'{x2:.0f} {y2:.0f}"><rect class="label-bg" rx="3"/><text class="label" '
                    f'x="{lx:.0f}" y="{ly:.0f}" {MID}>{name}</text></g>')
    for l, n in enumerate(sizes):
        # net and out beside the neuron, clear of the edges: left of the inputs, right of
        # the outputs, above the hidden neurons (below the lowest)
        for j in range(n):
            side = {0: (-30, -3, "end"), len(sizes) - 1: (30, -3, "start")}.get(
                l, (0, 40 if j == n - 1 else -48, "middle"))
            x, y = pos(l, j)
            label = names[l][j] if len(names[l][j]) < 6 else f"{l},{j}"
            tx, ty = x + side[0], y + side[1]
            units.append(f'<g class="unit"><circle cx="{x:.0f}" cy="{y:.0f}" r="24"/>'
                         f'<text x="{x:.0f}" y="{y + 4:.0f}" {MID}>{label}</text>'
                         f'<text id="net-{l}-{j}" x="{tx:.0f}" y="{ty:.0f}" '
                         f'text-anchor="{side[2]}"></text><text id="out-{l}-{j}" x="{tx:.0f}" '
                         f'y="{ty + 14:.0f}" text-anchor="{side[2]}"></text></g>')
    desc = (f"The {'-'.join(map(str, sizes))} network: neurons with net and out, weights as "
            f"edges with w and ∂E/∂w (solid = positive gradient, dashed = negative).")
    return (f'<svg class="net{" labels" if labels else ""}" viewBox="0 0 {W} {H + 30}" '
            f'role="group" aria-label="{html.escape(desc)}"><desc>{html.escape(desc)}</desc>'
            + "".join(edges) + "".join(units) + '<g class="tags" aria-hidden="true">'
            + "".join(tags) + "</g></svg>")


def _blocks_svg(expl: Explanation) -> str:
    """A large network: one block per layer (its height grows with its width, on a log
    scale) and, between two blocks, the weight matrix as one bundle shaded by its mean
    |∂E/∂w| at the step (darker = larger; the number is written on it)."""
    sizes = expl.config.sizes
    W, H, bw = 1000, 300, 110
    xs = [40 + i * (W - 80 - bw) / (len(sizes) - 1) for i in range(len(sizes))]
    top = math.log10(max(sizes)) or 1.0
    hs = [70 + 150 * math.log10(n) / top for n in sizes]           # 70 … 220 px
    ys = [(H - h) / 2 + 10 for h in hs]
    parts = []
    for l in range(1, len(sizes)):
        key = f"layers.{l - 1}.weight"
        x0, x1 = xs[l - 1] + bw, xs[l]
        poly = (f"{x0:.0f},{ys[l - 1]:.0f} {x1:.0f},{ys[l]:.0f} {x1:.0f},{ys[l] + hs[l]:.0f} "
                f"{x0:.0f},{ys[l - 1] + hs[l - 1]:.0f}")
        mid = (x0 + x1) / 2
        parts.append(f'<g class="bundle" data-key="{key}"><polygon points="{poly}"/>'
                     f'<text x="{mid:.0f}" y="{H / 2 + 4:.0f}" {MID}>{key} '
                     f'({sizes[l]}×{sizes[l - 1]})</text>'
                     f'<text class="mean" x="{mid:.0f}" y="{H / 2 + 22:.0f}" {MID}></text></g>')
    for l, n in enumerate(sizes):
        cy = ys[l] + hs[l] / 2
        parts.append(f'<g class="block"><rect x="{xs[l]:.0f}" y="{ys[l]:.0f}" width="{bw}" '
                     f'height="{hs[l]:.0f}"/><text x="{xs[l] + bw / 2:.0f}" y="{cy - 4:.0f}" '
                     f'{MID}>layer {l}</text><text x="{xs[l] + bw / 2:.0f}" y="{cy + 14:.0f}" '
                     f'{MID}>{n} units</text></g>')
    desc = (f"The {'-'.join(map(str, sizes))} network as layer blocks ({sum(sizes)} neurons); "
            f"each weight matrix is one bundle, darker where its mean |∂E/∂w| is larger; "
            f"find a parameter with the search box.")
    return (f'<svg class="net blocks" viewBox="0 0 {W} {H + 20}" role="img" '
            f'aria-label="{html.escape(desc)}"><desc>{html.escape(desc)}</desc>'
            + "".join(parts) + "</svg>")
