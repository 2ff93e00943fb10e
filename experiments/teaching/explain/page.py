"""The explain page's own CSS and JavaScript (the shared style is experiments.output.html.CSS).

The script only displays: it reads the JSON blob (``<script id="data">``), and on a
selection, a step or an order switch writes the blob's pre-formatted strings into the
SVG and the panel. It computes no number.
"""

CSS = """
.controls { display: flex; flex-wrap: wrap; gap: .75rem; align-items: center; margin: .5rem 0; }
button { font: inherit; padding: .2rem .6rem; }
svg.net { display: block; width: 100%; height: auto; max-height: calc(100vh - 2rem);
          border: 1px solid var(--line); background: #fff; }
svg .unit circle { fill: #fff; stroke: #333; stroke-width: 1.5; }
svg .unit text, svg .edge text, svg .block text { font: 12px ui-monospace, monospace; }
svg .edge line.hit { stroke: transparent; stroke-width: 14; }
svg .edge line.vis { stroke: #999; }
svg .edge.pos line.vis { stroke: var(--pos); }
svg .edge.neg line.vis { stroke: var(--neg); stroke-dasharray: 6 4; }
svg .tag { display: none; pointer-events: none; }
svg .tag text { font: 11px ui-monospace, monospace; }
svg .tag .label-bg { fill: #fff; fill-opacity: .92; stroke: #bbb; stroke-width: .8; }
svg.labels .tag, svg .tag.selected { display: inline; }
svg .tag.selected .label-bg { stroke: var(--focus); stroke-width: 1.5; }
svg .edge.selected line.vis { stroke: var(--focus) !important; }
svg .edge:focus { outline: none; } svg .edge:focus line.hit { stroke: rgba(138,75,0,.25); }
svg .block rect { fill: #f4f4f4; stroke: #333; }
svg .bundle polygon { fill: var(--pos); stroke: #333; stroke-width: .5; }
svg .bundle text { font: 12px ui-monospace, monospace; paint-order: stroke; stroke: #fff;
                   stroke-width: 4px; }
.legend span { margin-right: 1rem; }
.params { display: flex; flex-wrap: wrap; gap: .25rem; list-style: none; padding: 0; }
.params button[aria-pressed="true"] { outline: 2px solid var(--focus); font-weight: bold; }
#panel { border: 2px solid var(--line); padding: .5rem 1rem; margin: 1rem 0; }
.order-table td.on, .order-table th.on { background: #fff3d6; font-weight: bold; }
.print-only { display: none; }
@media print {
  .print-only { display: block; } .controls, .params, .legend span:last-child { display: none; }
  svg.net { width: 100%; max-height: 24cm; border: 0; break-inside: avoid; }
  #panel { break-inside: avoid; } .print-only pre { break-inside: avoid; } }
"""

JS = r"""
(function () {
  const D = JSON.parse(document.getElementById('data').textContent);
  let order = D.order, k = 0, sel = D.initial;
  const $ = (id) => document.getElementById(id);
  const byParam = (sel_, name) => Array.from(document.querySelectorAll(sel_))
    .filter((el) => el.dataset.param === name);
  const cur = () => D.steps[order][k];
  function text(id, s) { const el = $(id); if (el) el.textContent = s; }
  function showUnits(st) {
    st.units.forEach((layer, l) => layer.forEach((u, j) => {
      text('net-' + l + '-' + j, u[0] ? 'net ' + u[0] : '');
      text('out-' + l + '-' + j, 'out ' + u[1]);
    }));
  }
  function showEdges(st) {
    document.querySelectorAll('svg .edge').forEach((g) => {
      const e = st.edges[g.dataset.param];
      if (!e) return;
      g.classList.toggle('pos', e.sign > 0); g.classList.toggle('neg', e.sign < 0);
      g.classList.toggle('selected', g.dataset.param === sel);
      g.querySelector('line.vis').setAttribute('stroke-width', e.width);
      g.setAttribute('aria-label', e.aria);
      g.querySelector('title').textContent = e.aria;
    });
    document.querySelectorAll('svg .tag').forEach((t) => {
      const e = st.edges[t.dataset.for];
      if (e) t.querySelector('.label').textContent = e.label;
      t.classList.toggle('selected', t.dataset.for === sel);
    });
    placeLabels();
  }
  // Each shown label slides along its edge (and a little off it) to the first spot where
  // its box overlaps no neuron, no net/out text and no label placed before it.
  const T = [0.5, 0.4, 0.6, 0.3, 0.7, 0.35, 0.65, 0.25, 0.75, 0.45, 0.55, 0.2, 0.8, 0.15, 0.85];
  const OFF = [0, -13, 13, -26, 26];
  function overlap(a, b) {
    const w = Math.min(a[2], b[2]) - Math.max(a[0], b[0]);
    const h = Math.min(a[3], b[3]) - Math.max(a[1], b[1]);
    return w > 0 && h > 0 ? w * h : 0;
  }
  function placeLabels() {
    const svg = document.querySelector('svg.net');
    if (!svg) return;
    const vb = svg.viewBox.baseVal, taken = [];
    svg.querySelectorAll('.unit circle').forEach((c) => {
      const x = +c.getAttribute('cx'), y = +c.getAttribute('cy'), r = +c.getAttribute('r') + 3;
      taken.push([x - r, y - r, x + r, y + r]);
    });
    svg.querySelectorAll('.unit text').forEach((t) => {
      if (!t.textContent) return;
      const b = t.getBBox();
      taken.push([b.x - 2, b.y - 1, b.x + b.width + 2, b.y + b.height + 1]);
    });
    svg.querySelectorAll('.tag').forEach((tag) => {
      if (getComputedStyle(tag).display === 'none') return;
      const text = tag.querySelector('.label'), bg = tag.querySelector('.label-bg');
      const [x1, y1, x2, y2] = tag.dataset.line.split(' ').map(Number);
      text.setAttribute('x', 0); text.setAttribute('y', 0);
      const b = text.getBBox(), w = b.width + 8, h = b.height + 2;
      const len = Math.hypot(x2 - x1, y2 - y1) || 1, nx = -(y2 - y1) / len, ny = (x2 - x1) / len;
      let best = null;
      for (const off of OFF) {
        for (const t of T) {
          const cx = x1 + (x2 - x1) * t + nx * off, cy = y1 + (y2 - y1) * t + ny * off;
          const box = [cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2];
          let cost = taken.reduce((sum, o) => sum + overlap(box, o), 0);
          if (box[0] < vb.x || box[1] < vb.y || box[2] > vb.x + vb.width ||
              box[3] > vb.y + vb.height) cost += 1e6;
          if (!best || cost < best.cost) best = { cost, cx, cy, box };
          if (cost === 0) break;
        }
        if (best.cost === 0) break;
      }
      text.setAttribute('x', best.cx.toFixed(1));
      text.setAttribute('y', (best.cy - b.y - b.height / 2).toFixed(1));
      bg.setAttribute('x', best.box[0].toFixed(1)); bg.setAttribute('y', best.box[1].toFixed(1));
      bg.setAttribute('width', w.toFixed(1)); bg.setAttribute('height', h.toFixed(1));
      taken.push(best.box);
    });
  }
  function showBundles(st) {   // a large network: each weight matrix's mean |∂E/∂w|
    document.querySelectorAll('svg .bundle').forEach((g) => {
      const b = (st.bundles || {})[g.dataset.key];
      if (!b) return;
      g.querySelector('polygon').style.fillOpacity = (0.08 + 0.6 * b.level).toFixed(3);
      g.querySelector('.mean').textContent = b.text;
    });
  }
  function row(r) {
    const tr = document.createElement('tr');
    tr.dataset.section = r[0]; tr.dataset.term = r[1];
    [r[0], r[1], r[2], r[3], r[4]].forEach((c, i) => {
      const td = document.createElement(i === 1 ? 'th' : 'td');
      if (i === 1) td.setAttribute('scope', 'row');
      td.textContent = c;
      td.className = ['section', 'term', 'value num', 'autograd num', 'diff num'][i];
      tr.appendChild(td);
    });
    return tr;
  }
  function showPanel(st) {
    const p = st.params[sel];
    text('panel-title', p ? p.title : sel + ' (no chain rule on this page: pick it with --param)');
    text('panel-text', p ? p.text : '');
    const body = $('panel-rows'); body.textContent = '';
    if (p) p.rows.forEach((r) => body.appendChild(row(r)));
    byParam('.params button', sel).forEach((b) => b.setAttribute('aria-pressed', 'true'));
  }
  function showAll(st) {   // print: every parameter's chain rule at this step, not only one
    const all = $('print-all'); all.textContent = '';
    Object.values(st.params).forEach((p) => {
      const h = document.createElement('h3'); h.textContent = p.title;
      const pre = document.createElement('pre'); pre.textContent = p.text;
      all.appendChild(h); all.appendChild(pre);
    });
    text('print-step', $('step-label').textContent);
  }
  function show() {
    const st = cur();
    text('step-label', 'step ' + (k + 1) + ' of ' + D.steps[order].length +
         ' (weights after ' + k + ' update' + (k === 1 ? '' : 's') + ')');
    text('E-line', st.E);
    $('step-range').value = k;
    document.querySelectorAll('.params button')
      .forEach((b) => b.setAttribute('aria-pressed', 'false'));
    showUnits(st); showEdges(st); showBundles(st); showPanel(st); showAll(st);
    document.querySelectorAll('.order-table [data-order]').forEach((c) =>
      c.classList.toggle('on', c.dataset.order === order));
  }
  function select(name) { sel = name; show(); }
  const names = Object.keys(D.steps[order][0].params);
  const ARROWS = { ArrowRight: 1, ArrowDown: 1, ArrowLeft: -1, ArrowUp: -1 };
  document.querySelectorAll('[data-param]').forEach((el) => {
    el.addEventListener('click', () => select(el.dataset.param));
    el.addEventListener('keydown', (ev) => {
      if (ev.key === 'Enter' || ev.key === ' ') { ev.preventDefault(); select(el.dataset.param); }
      if (ev.key in ARROWS && names.length) {   // the next / previous parameter, same kind
        ev.preventDefault();
        const i = (names.indexOf(el.dataset.param) + ARROWS[ev.key] + names.length) % names.length;
        const to = el.tagName.toLowerCase() === 'button' ? '.params button' : 'svg .edge';
        const target = byParam(to, names[i])[0] || byParam('.params button', names[i])[0];
        select(names[i]); target.focus();
      }
    });
  });
  const go = (to) => { k = Math.max(0, Math.min(D.steps[order].length - 1, to)); show(); };
  $('prev').addEventListener('click', () => go(k - 1));
  $('next').addEventListener('click', () => go(k + 1));
  $('step-range').addEventListener('input', (ev) => go(Number(ev.target.value)));
  document.querySelectorAll('input[name=order]').forEach((r) =>
    r.addEventListener('change', () => { order = r.value; go(k); }));
  const search = $('search');
  if (search) search.addEventListener('change', () => {
    const q = search.value.trim(), hit = D.lookup[order][k][q];
    text('search-result', hit ? q + ': ' + hit : 'no parameter ' + q + ' (keys look like ' +
         'layers.0.weight[0,0], or W1[0,0] on a page made with --convention W1b1)');
    if (cur().params[q]) select(q);
  });
  show();
})();
"""
