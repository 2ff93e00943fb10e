"""``handgrad explain --figure``: the network drawn with the explanation's numbers.

Neurons show net and out (sample 0), edges the weight, the hand-derived ∂E/∂w and
autograd's; biases are small boxes. Edge labels sit on their edge: each is placed, in turn,
at the point along the edge (12 % … 88 % of its length) nearest its preferred spot where
it overlaps no neuron, bias box or label placed before it (measured with the Agg renderer).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from experiments.core.config import ConfigError
from experiments.output.style import figure, save, style

from .model import MAX_PARAMS, Explanation, is_222, n_params, param_name

COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2",
          "#17becf", "#7f7f7f", "#bcbd22"]
R = 0.95                 # neuron radius (data units)


def draw_network(expl: Explanation, path: str | Path) -> Path:
    """The network as a PNG diagram at ``path`` (see the module docstring)."""
    path = Path(path)
    if not path.parent.is_dir():
        raise ConfigError(f"--figure {path}: folder {path.parent} does not exist; create it "
                          f"or choose another path")
    if n_params(expl.config) > MAX_PARAMS:
        raise ConfigError(f"--figure draws the whole network: {n_params(expl.config)} "
                          f"parameters is too many to label (limit {MAX_PARAMS})")
    with style(grid=False):
        d = _Diagram(expl)
        d.neurons()
        if expl.config.bias is not False:
            d.biases()
        d.edges()
        save(d.fig, path, tight=False)
    return path


def _short(x) -> str:
    x = float(x)
    return "0" if x == 0 else f"{x:.6g}"


def _overlap(a, b) -> float:
    w = min(a.x1, b.x1) - max(a.x0, b.x0)
    h = min(a.y1, b.y1) - max(a.y0, b.y0)
    return w * h if w > 0 and h > 0 else 0.0


class _Diagram:
    """One figure being drawn; ``obstacles`` are the display-space boxes labels avoid."""

    def __init__(self, expl: Explanation):
        from matplotlib.backends.backend_agg import FigureCanvasAgg

        self.expl, sizes = expl, expl.config.sizes
        self.L, self.is222, vs = len(sizes) - 1, is_222(sizes), 3.2   # vs: unit spacing
        # column gaps grow with the number of edges they hold, so the labels have room
        gaps = [6.0 + max(0, sizes[l] * sizes[l + 1] - 4) * 0.55 for l in range(self.L)]
        self.xs = np.concatenate([[0.0], np.cumsum(gaps)])
        top = max(sizes)
        self.pos = [[(self.xs[l], (n - 1) / 2 * vs - j * vs) for j in range(n)]
                    for l, n in enumerate(sizes)]
        self.x0, self.x1 = -1.6, self.xs[-1] + 3.2
        self.y0, self.y1 = -(top - 1) / 2 * vs - 1.9, (top - 1) / 2 * vs + 2.3
        scale, title_in = 0.62, 0.55          # inches per data unit; title band (inches)
        height = (self.y1 - self.y0) * scale
        self.fig, (ax,) = figure(width=(self.x1 - self.x0) * scale, height=height + title_in)
        self.fig.set_layout_engine("none")    # the axes fill the figure below the title band
        ax.set_position((0, 0, 1, height / (height + title_in)))
        ax.set_xlim(self.x0, self.x1)
        ax.set_ylim(self.y0, self.y1)
        ax.set_aspect("equal")
        ax.axis("off")
        self.ax, self.obstacles = ax, []
        self.renderer = FigureCanvasAgg(self.fig).get_renderer()   # measures labels
        N = expl.n_samples
        sample = f"sample 0 of {N}" if N > 1 else "the one sample"
        self.fig.suptitle(f"{expl.config.name}: neurons show net and out for {sample}; edges "
                          f"show the weight, ∂E/∂w by hand ({expl.order} order) and autograd's"
                          + (f", summed over the batch of {N}" if N > 1 else ""), fontsize=10,
                          y=0.985)

    def box(self, artist):
        return artist.get_window_extent(self.renderer).expanded(1.06, 1.12)

    def text(self, *args, obstacle: bool = True, **kw):
        t = self.ax.text(*args, **kw)
        if obstacle:
            self.obstacles.append(self.box(t))
        return t

    def neurons(self) -> None:
        from matplotlib.patches import Circle
        from matplotlib.transforms import Bbox

        expl, ax = self.expl, self.ax
        for l, column in enumerate(self.pos):
            for j, (x, y) in enumerate(column):
                ax.add_patch(Circle((x, y), R, facecolor="#f3f6fb", edgecolor="black", lw=1.2,
                                    zorder=3))
                name = expl.neurons[l][j] if self.is222 else f"[{l},{j}]"
                text = (f"{name}\n{_short(expl.out[0][0, j])}" if l == 0 else
                        f"{name}\nnet {_short(expl.net[l][0, j])}\nout {_short(expl.out[l][0, j])}")
                self.text(x, y, text, ha="center", va="center", fontsize=8.5, zorder=4,
                          linespacing=1.3, obstacle=False)
                self.obstacles.append(Bbox(ax.transData.transform([(x - R, y - R),
                                                                   (x + R, y + R)])))
        for j, (x, y) in enumerate(self.pos[self.L]):
            self.text(x + R + 0.25, y, f"target {_short(expl.problem.T[0, j])}\n"
                      f"E term {_short(expl.error_terms[:, j].sum())}", ha="left", va="center",
                      fontsize=7.5, zorder=4)
        titles = ["input"] + ["hidden"] * (self.L - 1) + ["output"]
        for l in range(self.L + 1):
            self.text(self.xs[l], self.y0 + 0.25, f"{titles[l]} (layer {l})", ha="center",
                      va="bottom", fontsize=9, color="#444444", obstacle=False)
        self.text(self.x1 - 0.2, self.y1 - 0.2, f"E_total {_short(expl.E_total)}\n"
                  f"autograd {_short(expl.E_autograd)}", ha="right", va="top", fontsize=8.5)
        if not self.is222:
            self.text(self.x0 + 0.2, self.y1 - 0.2, "[l,j] = layer l, unit j\nWl[j,i] = "
                      "layers.l.weight[j,i]: unit i of layer l → unit j of layer l+1",
                      ha="left", va="top", fontsize=8, color="#444444")

    def biases(self) -> None:
        """A small box above each neuron, a little right: clear of the inputs' edges."""
        expl, cfg = self.expl, self.expl.config
        for l in range(1, self.L + 1):
            key = f"layers.{l - 1}.bias"
            b = expl.problem.params[key]
            bname = f"b{l}" if self.is222 else "b"    # the worked example's b1 (hidden), b2
            for j, (x, y) in enumerate(self.pos[l]):
                label = (f"{bname} = {_short(b[j])}\n∂E/∂b {_short(expl.grads_all[key][j])}"
                         f"\nautograd {_short(expl.grads_autograd[key][j])}"
                         if cfg.bias is True else f"{bname} = {_short(b[j])} (frozen)")
                bx, by = x + 0.45, y + R + 0.12
                self.ax.plot([bx, x + 0.3 * R], [by, y + 0.95 * R], color="#777777", lw=0.8,
                             zorder=1)
                self.text(bx, by, label, ha="center", va="bottom", fontsize=7, zorder=5,
                          bbox=dict(boxstyle="square,pad=0.25", fc="#fff8e6", ec="#aa8800",
                                    lw=0.8))

    def edges(self) -> None:
        """Every weight as an arrow, then its label placed greedily (module docstring)."""
        expl, sizes, edges = self.expl, self.expl.config.sizes, []
        for l in range(1, self.L + 1):
            key = f"layers.{l - 1}.weight"
            for j, i in np.ndindex(sizes[l], sizes[l - 1]):
                (xa, ya), (xb, yb) = self.pos[l - 1][i], self.pos[l][j]
                d = math.hypot(xb - xa, yb - ya)
                dx, dy = (xb - xa) * R / d, (yb - ya) * R / d
                ua, ub = (xa + dx, ya + dy), (xb - dx, yb - dy)     # on the circles' rims
                color = COLORS[(i * sizes[l] + j) % len(COLORS)]
                self.ax.annotate("", xy=ub, xytext=ua, zorder=2, arrowprops=dict(
                    arrowstyle="-|>", color=color, lw=1.1, shrinkA=0, shrinkB=0,
                    mutation_scale=9))
                name = param_name(key, (j, i), sizes) if self.is222 else f"W{l - 1}[{j},{i}]"
                edges.append((ua, ub, color, f"{name} = {_short(expl.problem.params[key][j, i])}"
                               f"\n∂E/∂w {_short(expl.grads_all[key][j, i])}\nautograd "
                               f"{_short(expl.grads_autograd[key][j, i])}"))
        n = len(edges)
        for e, (ua, ub, color, label) in enumerate(edges):
            prefer = 0.5 if n == 1 else 0.3 + 0.4 * ((e * 7) % n) / (n - 1)
            best = None     # (overlap, text, box): the least overlap so far, nearest prefer
            for t in sorted(np.linspace(0.12, 0.88, 39), key=lambda t, p=prefer: abs(t - p)):
                txt = self.ax.text(ua[0] + t * (ub[0] - ua[0]), ua[1] + t * (ub[1] - ua[1]),
                                   label, ha="center", va="center", fontsize=7, color=color,
                                   zorder=6, bbox=dict(boxstyle="round,pad=0.2", fc="white",
                                                       ec=color, lw=0.6, alpha=0.92))
                bb = self.box(txt)
                overlap = sum(_overlap(bb, o) for o in self.obstacles)
                if best is not None and overlap >= best[0]:
                    txt.remove()
                    continue
                if best is not None:
                    best[1].remove()
                best = (overlap, txt, bb)
                if overlap == 0:
                    break
            self.obstacles.append(best[2])
