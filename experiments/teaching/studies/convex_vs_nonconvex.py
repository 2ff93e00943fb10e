"""convex-vs-nonconvex: logistic regression (convex) against a network with a hidden layer.

Both: moons (200 points, standardised), sigmoid output, bce, full-batch gradient descent,
lr 2, ``weight_decay`` λ = 0.01, 3000 steps (600 with quick), from 5 initialisations
drawn with torch's default U(±1/√fan_in) from seeds 1000..1004 (the data keep seed 0:
only the init changes). Sizes [2, 1] (no hidden layer) and [2, 4, 1]. The initial weights
are written to `inits/MODEL-K.npz`, where the runs read them (`handgrad run` takes them
as `init`).

Why weight decay: without it neither problem has a finite minimum to compare — the hidden
net fits moons almost perfectly, so its loss keeps falling as its weights grow (measured
while designing this study: ‖w‖ 22 → 33 between steps 3000 and 10000, loss still
falling). With it, the objective is F(w) = E(w) + (λ/2)‖w‖²; for logistic regression E is
convex, so F is λ-strongly convex: one minimiser w*, and for any w, ‖w − w*‖ ≤ ‖∇F(w)‖ / λ.
That bound, with the computed gradient's rounding error added, is the tolerance two
inits' final weights are held to (``tolerance`` in pairs.csv).

Slices: F(w_A + t·d) for a random unit direction d around init 0's end point w_A, with
gradient descent run on that 1-D restriction (η = 1/max φ'' over the slice, so each step
descends), F along the segment from w_A to another end point (t = 0 at w_A, 1 at the
other), and F over 2-D planes (random directions; for the hidden net also the plane
through two minima). The objective is evaluated with manual.MLP.loss at the perturbed
weights, one grid point at a time (≤ 41 × 41 points).

    inits.csv      ``CV_INITS_COLUMNS``, one row per (model, init)
    pairs.csv      ``CV_PAIRS_COLUMNS``, one row per pair of inits
    weights.csv    model, init, index, param, initial, final: every weight, start and end
    slices_1d.csv  model, slice, t, objective
    gd_1d.csv      model, slice, start, k, t, objective
    slice_2d.csv   model, plane, a, b, objective
"""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.lines import Line2D

import manual
from experiments.core.config import RunConfig, replace
from experiments.core.init import uniform_params
from experiments.core.runner import run_experiment
from experiments.core.schema import CV_INITS_COLUMNS, CV_PAIRS_COLUMNS
from experiments.core.tolerance import gradient_tolerance, magnitude_gradients
from experiments.output.style import figure, save, style, title

from .common import (
    ZERO_MARKER,
    Frames,
    Replay,
    agreement,
    agreement_line,
    essay,
    flat,
    fmt,
    hessian_eigenvalues,
    span,
    unflat,
    zero_floor,
)

CSVS = ("inits", "pairs", "weights", "slices_1d", "gd_1d", "slice_2d")
WEIGHT_DECAY = 1e-2   # makes every minimum finite; see the module docstring
SEEDS = [1000 + k for k in range(5)]
MODELS = {"logistic": (), "hidden": (4,)}


def permutations_of_hidden(w: np.ndarray, sizes) -> np.ndarray:
    """Every relabelling of the hidden units of a D-H-1 net (flat, ``flat`` key order
    layers.0.weight, layers.0.bias, layers.1.weight, layers.1.bias): (H!, P). These
    leave E *and* the weight-decay term unchanged. (Flipping a sigmoid unit's sign,
    W → −W, w_out → −w_out, b_out += w_out, leaves E unchanged but not ‖w‖²: not a
    symmetry of F.)"""
    D, H, _ = sizes
    W1, b1, w2, b2 = np.split(w, np.cumsum([H * D, H, H]))       # (H·D,) (H,) (H,) (1,)
    W1 = W1.reshape(H, D)                                        # (H, D)
    return np.array([np.concatenate([W1[p].ravel(), b1[p], w2[p], b2])
                     for p in map(list, itertools.permutations(range(H)))])


def _rounding_of_gradient(net: manual.MLP, X, Y) -> float:
    """A bound on the rounding error of one computed ‖∇E‖: γ_m‖G̃‖ (Higham's bound used
    by the runner, ``experiments.core.tolerance``), summed over the tensors in quadrature."""
    net.loss_and_gradients(X, Y)
    G = magnitude_gradients(net, net.params, net.last_activations, Y)
    gamma = gradient_tolerance(net.dtype, net.sizes, X.shape[0]) / 2
    return gamma * math.sqrt(sum(v * v for v in G.values()))


def _unit(rng: np.random.Generator, n: int, against: list[np.ndarray] = ()) -> np.ndarray:
    """A random unit vector of length n, orthogonal to the (unit) vectors ``against``."""
    v = rng.standard_normal(n)
    for u in against:
        v -= (v @ u) * u
    return v / np.linalg.norm(v)


def base(quick: bool) -> RunConfig:
    steps = 600 if quick else 3000
    return RunConfig(name="convex-vs-nonconvex", dataset="moons", standardize=True,
                     activation="sigmoid", output_activation="sigmoid", loss="bce", lr=2.0,
                     weight_decay=WEIGHT_DECAY, batch_size="full", steps=steps, seed=0,
                     log_every=max(1, steps // 200), mode="synced")


def run(quick: bool, folder: Path, progress: bool = False) -> Frames:
    cfg0 = base(quick)
    n_1d, n_2d = (81, 21) if quick else (201, 41)
    rng = np.random.default_rng(2024)   # the slice directions
    (folder / "inits").mkdir()
    inits, pairs, weights, slices, gd, planes = [], [], [], [], [], []
    for model, hidden in MODELS.items():
        runs = [_init_run(cfg0, model, hidden, k, s, folder, progress)
                for k, s in enumerate(SEEDS)]
        rows, model_weights, finals, reps = zip(*runs, strict=True)
        _label_minima(rows, len(reps[0].X))
        inits += rows
        weights += model_weights
        pairs += _pairs(model, rows, finals, reps)
        F, dF = _objective_on(reps[0])
        s1, g1, others, T = _slices_1d(model, rows, finals, F, dF, rng, n_1d)
        slices += s1
        gd += g1
        planes += _planes(model, finals, others, F, T, rng, n_2d)
    return {"inits": pd.DataFrame(inits)[CV_INITS_COLUMNS],
            "pairs": pd.DataFrame(pairs)[CV_PAIRS_COLUMNS],
            "weights": pd.concat(weights, ignore_index=True),
            "slices_1d": pd.DataFrame(slices, columns=["model", "slice", "t", "objective"]),
            "gd_1d": pd.DataFrame(gd, columns=["model", "slice", "start", "k", "t", "objective"]),
            "slice_2d": pd.DataFrame(planes, columns=["model", "plane", "a", "b", "objective"])}


def _init_run(cfg0: RunConfig, model: str, hidden: tuple, k: int, seed: int, folder: Path,
              progress: bool):
    """Init k of ``model``: (its inits.csv row, its weights.csv rows, final w, replay)."""
    path = folder / "inits" / f"{model}-{k}.npz"
    np.savez(path, **uniform_params((2, *hidden, 1), True, np.random.default_rng(seed)))
    cfg = replace(cfg0, name=f"cvx-{model}-{k}", hidden=hidden, init=str(path))
    result = run_experiment(cfg, progress=progress)
    rp = Replay(cfg)
    rp.run()
    net, keys, X, Y = rp.net, rp.net.trainable, rp.X, rp.Y
    F, dF = _objective_on(rp)
    w = flat(net.params, keys)                                                # (P,)
    row = {"model": model, "init": k, "init_seed": seed, "objective": F(w),
           "loss": net.loss(X, Y), "grad_norm": float(np.linalg.norm(dF(w))),
           "grad_rounding": _rounding_of_gradient(net, X, Y),
           "weight_norm": float(np.linalg.norm(w)),
           "hessian_min_eig": hessian_eigenvalues(net, X, Y)[0] + WEIGHT_DECAY,
           **agreement(result, rp.losses)}
    weights = pd.DataFrame({
        "model": model, "init": k, "index": np.arange(w.size),
        "param": np.repeat(keys, [rp.params0[key].size for key in keys]),
        "initial": flat(rp.params0, keys), "final": w})
    return row, weights, w, rp


def _label_minima(rows: list[dict], n_samples: int) -> None:
    """Number the distinct minima reached (0 = lowest F). Near a strict minimum w* with
    smallest Hessian eigenvalue μ, F(w) − F(w*) ≤ ‖∇F(w)‖² / 2μ (quadratic model), so two
    end points lie in the same minimum's basin level when their F differ by at most the
    sum of those gaps, plus the rounding of F itself (a mean of N terms: ≤ 4·N·u·F)."""
    group = list(range(len(rows)))

    def find(i):
        while group[i] != i:
            i = group[i]
        return i

    def gap(r):
        mu = r["hessian_min_eig"]
        return r["grad_norm"] ** 2 / (2 * mu) if mu > 0 else math.inf

    u = np.finfo(np.float64).eps / 2
    for i, j in itertools.combinations(range(len(rows)), 2):
        a, b = rows[i], rows[j]
        slack = gap(a) + gap(b) + 4 * n_samples * u * max(a["objective"], b["objective"])
        if abs(a["objective"] - b["objective"]) <= slack:
            group[find(j)] = find(i)
    roots = sorted({find(i) for i in range(len(rows))}, key=lambda i: rows[i]["objective"])
    for i, r in enumerate(rows):
        r["minimum"] = roots.index(find(i))


def _pairs(model, rows, finals, reps) -> list[dict]:
    X, sizes = reps[0].X, reps[0].cfg.sizes
    outputs = [rp.net.forward(X) for rp in reps]                       # each (N, 1)
    out = []
    for i, j in itertools.combinations(range(len(finals)), 2):
        ri, rj = rows[i], rows[j]
        wi, wj = finals[i], finals[j]
        aligned = (np.linalg.norm(permutations_of_hidden(wj, sizes) - wi, axis=1).min()
                   if len(sizes) == 3 else np.linalg.norm(wj - wi))
        # λ-strong convexity: ‖w − w*‖ ≤ ‖∇F(w)‖ / λ, with the computed gradient's own
        # rounding error added to its norm; only a bound where F is convex (logistic).
        tol = ((ri["grad_norm"] + ri["grad_rounding"] + rj["grad_norm"] + rj["grad_rounding"])
               / WEIGHT_DECAY if model == "logistic" else np.nan)
        out.append({
            "model": model, "init_a": i, "init_b": j,
            "same_minimum": ri["minimum"] == rj["minimum"],
            "objective_diff": abs(ri["objective"] - rj["objective"]),
            "weight_distance": float(np.linalg.norm(wi - wj)),
            "aligned_distance": float(aligned),
            "function_distance": float(np.abs(outputs[i] - outputs[j]).max()),
            "tolerance": tol})
    return out


def _objective_on(rp: Replay):
    """F(w) = E(w) + (λ/2)‖w‖² over the trainable parameters (what SGD with
    ``weight_decay = λ`` minimises: torch adds λw to every gradient, as manual.SGD) and ∇F,
    as functions of a flat weight vector, evaluated by loading it into the replay's net
    (which is left at whatever vector came last)."""
    net, keys, like, X, Y = rp.net, rp.net.trainable, rp.net.params, rp.X, rp.Y

    def F(w):
        net.set_params(unflat(w, like, keys))
        return net.loss(X, Y) + 0.5 * WEIGHT_DECAY * float(w @ w)

    def dF(w):
        net.set_params(unflat(w, like, keys))
        return flat(net.gradients(X, Y), keys) + WEIGHT_DECAY * w            # (P,)

    return F, dF


def _slices_1d(model, rows, finals, F, dF, rng, n):
    """F along a random line through init 0's end point w_A (with 12 steps of gradient
    descent on it from either end) and along segments from w_A to other end points."""
    wA = finals[0]
    T = max(1.0, float(np.linalg.norm(wA)))       # reach about as far as w* from the origin
    d = _unit(rng, wA.size)
    ts = np.linspace(-T, T, n)
    phi = np.array([F(wA + t * d) for t in ts])
    slices = [(model, "random", t, v) for t, v in zip(ts, phi, strict=True)]
    # η = 1/L with L = max φ'' on the slice: the descent lemma then guarantees φ
    # decreases at every step wherever the slice's curvature is ≤ L.
    eta, gd = 1.0 / float(np.max(_curvature(phi, ts))), []
    for start in (-0.9 * T, 0.9 * T):
        path = [start]                                  # t ← t − η φ'(t)
        for _ in range(12):
            path.append(path[-1] - eta * float(dF(wA + path[-1] * d) @ d))
        gd += [(model, "random", start, k, t, F(wA + t * d)) for k, t in enumerate(path)]
    # segments from w_A to other end points: the nearest symmetric copy (same minimum,
    # largest raw distance) and the nearest other minimum, when there are such points.
    others = {}
    for j in range(1, len(finals)):
        kind = "to-copy" if rows[j]["minimum"] == rows[0]["minimum"] else "to-other-minimum"
        dist = np.linalg.norm(finals[j] - wA)
        if kind == "to-copy" and dist < 1e-6:   # the same weights: no segment to show
            continue
        if kind not in others or dist < others[kind][1]:
            others[kind] = (j, dist)
    for kind, (j, _) in sorted(others.items()):
        slices += [(model, f"{kind} (init {j})", t, F(wA + t * (finals[j] - wA)))
                   for t in np.linspace(-0.25, 1.25, n)]
    return slices, gd, others, T


def _planes(model, finals, others, F, T, rng, n) -> list[tuple]:
    """F over a random plane through w_A and, given another minimum, the plane through both."""
    wA = finals[0]
    d1 = _unit(rng, wA.size)
    d2 = _unit(rng, wA.size, [d1])
    grid = np.linspace(-T, T, n)
    planes = [(model, "random", a, b, F(wA + a * d1 + b * d2)) for a in grid for b in grid]
    if "to-other-minimum" in others:   # the plane through two minima: a = 1 is the other
        j = others["to-other-minimum"][0]
        u = finals[j] - wA
        v = _unit(rng, wA.size, [u / np.linalg.norm(u)]) * np.linalg.norm(u)
        planes += [(model, f"through init 0 and {j}", a, b, F(wA + a * u + b * v))
                   for a in np.linspace(-0.5, 1.5, n) for b in np.linspace(-1.0, 1.0, n)]
    return planes


def figures(frames: Frames, folder: Path) -> list[str]:
    return [_slices_figure(frames["slices_1d"], frames["gd_1d"], folder / "slices_1d.png"),
            _planes_figure(frames["slice_2d"], folder / "slice_2d.png"),
            _inits_figure(frames["inits"], frames["pairs"], folder / "inits.png")]


def _panels(frame: pd.DataFrame, by: str, width: float):
    """One axis per (model, ``by``) in order of appearance, with that part of ``frame``."""
    panels = list(dict.fromkeys(zip(frame["model"], frame[by], strict=True)))
    fig, axes = figure(len(panels), width, 3.4)
    parts = [frame[(frame["model"] == m) & (frame[by] == name)] for m, name in panels]
    for ax, (model, name) in zip(axes, panels, strict=True):
        ax.set_title(f"{model}: {name}", fontsize=9)
    return fig, zip(axes, panels, parts, strict=True)


def _slices_figure(slices: pd.DataFrame, gd: pd.DataFrame, path: Path) -> str:
    with style():
        fig, panels = _panels(slices, "slice", 3.6)
        for ax, (model, name), part in panels:
            sns.lineplot(data=part, x="t", y="objective", ax=ax, color="0.3", errorbar=None)
            steps = gd[(gd["model"] == model) & (gd["slice"] == name)]
            for (start, run), color in zip(steps.groupby("start"), ("C0", "C3"), strict=False):
                ax.plot(run["t"], run["objective"], "o-", color=color, markersize=3.5,
                        linewidth=0.8, label=f"GD from t = {start:.2g}")
            if name == "random":
                ax.set_xlabel("t along a random unit direction d")
                # under the axes: inside, it covered the descent it labels
                ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.2),
                          frameon=False)
            else:
                ax.set_xlabel("t (0 = init 0's end point, 1 = the other)")
                for t in (0, 1):
                    ax.axvline(t, color="0.6", linestyle=":", linewidth=1)
            ax.set_ylabel("F = bce + (λ/2)‖w‖²")
        title(fig, "convex-vs-nonconvex: the objective along 1-D slices, and gradient "
                   "descent on them")
        return save(fig, path)


def _planes_figure(planes: pd.DataFrame, path: Path) -> str:
    with style():
        fig, panels = _panels(planes, "plane", 3.8)
        for ax, (_, name), part in panels:
            grid = part.pivot(index="b", columns="a", values="objective")   # (n_b, n_a)
            cs = ax.contourf(grid.columns, grid.index, np.log10(grid.to_numpy()), levels=16,
                             cmap="viridis")
            fig.colorbar(cs, ax=ax, label="log10 F")
            ax.plot([0], [0], marker="*", color="red", markersize=10, linestyle="")
            if name != "random":
                ax.plot([1], [0], marker="*", color="orange", markersize=10, linestyle="")
                ax.set_xlabel("a: 0 = init 0's minimum, 1 = the other")
            else:
                ax.set_xlabel("a along d₁")
            ax.set_ylabel("b along d₂")
        title(fig, "convex-vs-nonconvex: the objective on 2-D slices (log10 F; stars: minima)")
        return save(fig, path)


def _inits_figure(inits: pd.DataFrame, pairs: pd.DataFrame, path: Path) -> str:
    dist = pairs.melt(id_vars=["model"], value_vars=["weight_distance", "aligned_distance"],
                      var_name="distance", value_name="value")
    excess = inits["objective"] - inits.groupby("model")["objective"].transform("min")
    with style():
        fig, (ax_f, ax_d) = figure(2, 4.5, 3.6)
        _swarm_with_zeros(ax_f, inits.assign(excess=excess), "excess", "init",
                          palette="tab10", size=7)
        ax_f.set(ylabel="F − min F of the model (log)")
        ax_f.set_title("final objective per init", fontsize=9)
        tol = pairs.loc[pairs["model"] == "logistic", "tolerance"]
        if tol.notna().any():
            ax_d.axhline(tol.max(), color="C3", linestyle="--", linewidth=1,
                         label="logistic tolerance ‖∇F‖/λ")
        _swarm_with_zeros(ax_d, dist, "value", "distance", dodge=True, size=6)
        ax_d.set(ylabel="‖w_a − w_b‖, final weights (log)")
        ax_d.set_title("pairs of inits: raw and permutation-aligned", fontsize=9)
        title(fig, "convex-vs-nonconvex: where five inits end (one minimum or several)")
        return save(fig, path)


def _swarm_with_zeros(ax, data: pd.DataFrame, y: str, hue: str, **swarm) -> None:
    """A log-axis swarm plot per model of ``y`` coloured by ``hue`` (a strip plot's
    jitter draws from numpy's global random state, so the committed figure changed from
    run to run; a swarm spreads equal values the same way each time). Exact zeros have no
    place on a log axis: they are drawn with ``ZERO_MARKER`` on a dotted line a decade below
    the smallest non-zero value (``zero_floor``), and the legend says so."""
    order, hue_order = list(dict.fromkeys(data["model"])), list(dict.fromkeys(data[hue]))
    zero = data[y] == 0
    floor = zero_floor(data[y])
    kw = dict(x="model", hue=hue, order=order, hue_order=hue_order, ax=ax, **swarm)
    if (~zero).any():
        sns.swarmplot(data=data[~zero], y=y, **kw)
    if zero.any():
        sns.swarmplot(data=data[zero].assign(**{y: floor}), y=y, marker=ZERO_MARKER,
                      edgecolor="black", linewidth=0.5, legend=False, **kw)
        ax.axhline(floor, color="0.5", linestyle=":", linewidth=1, zorder=0)
    ax.set_yscale("log")
    handles, labels = ax.get_legend_handles_labels()
    if zero.any():
        handles.append(Line2D([], [], marker=ZERO_MARKER, linestyle="", color="0.5",
                              markeredgecolor="black", markeredgewidth=0.5))
        labels.append(f"exact 0 ({int(zero.sum())}), drawn at {floor:.0e}")
    # under the axes: inside, it sat on the points
    ax.legend(handles, labels, fontsize=7, title=hue, title_fontsize=7, loc="upper center",
              bbox_to_anchor=(0.5, -0.3), frameon=False)


def _curvature(v, t) -> np.ndarray:
    """φ'' along a slice sampled at evenly spaced t, by second differences."""
    v, t = np.asarray(v), np.asarray(t)
    return (v[2:] - 2 * v[1:-1] + v[:-2]) / (t[1] - t[0])**2


def text(frames: Frames) -> list[str]:
    inits, pairs = frames["inits"], frames["pairs"]
    tables = [inits[["model", "init", "objective", "grad_norm", "weight_norm",
                     "hessian_min_eig", "minimum", "rel_err", "worst_ratio", "verdict"]],
              pairs[["model", "init_a", "init_b", "same_minimum", "objective_diff",
                     "weight_distance", "aligned_distance", "function_distance", "tolerance"]]]
    legend = [
        "`hessian_min_eig` = smallest eigenvalue of ∇²F at the end point (> 0: a strict local "
        "minimum); `aligned_distance` = the smallest distance over the 4! relabellings of the "
        "hidden units (exact symmetries of F); `function_distance` = max over the 200 points "
        "of |output_a − output_b|; `tolerance` (logistic) = (‖∇F(w_a)‖ + ‖∇F(w_b)‖ + their "
        "rounding bounds) / λ, which strong convexity guarantees ≥ ‖w_a − w_b‖."]
    sees = [*_minima(inits, pairs), *_slice_lines(frames["slices_1d"]),
            "- Gradient descent on the 1-D slice (left figure, η = 1/max φ''): from either end "
            "it walks down the curve to the bottom of the slice.",
            agreement_line(inits) + "."]
    return essay(__doc__, tables, legend, sees)


def _minima(inits: pd.DataFrame, pairs: pd.DataFrame) -> list[str]:
    lo, hi = inits[inits["model"] == "logistic"], inits[inits["model"] == "hidden"]
    plo, phi = pairs[pairs["model"] == "logistic"], pairs[pairs["model"] == "hidden"]
    same, diff = phi[phi["same_minimum"]], phi[~phi["same_minimum"]]
    minima = hi.groupby("minimum")["objective"].agg(["first", "size"])
    lines = [
        f"- Logistic regression: all {len(lo)} inits end at F = "
        f"{lo['objective'].min():.12g} (spread "
        f"{fmt(lo['objective'].max() - lo['objective'].min())}), final "
        f"weights at most {fmt(plo['weight_distance'].max())} apart — within the convergence "
        f"bound {fmt(plo['tolerance'].max())} (final ‖∇F‖ ≤ {fmt(lo['grad_norm'].max())}, "
        f"λ = {WEIGHT_DECAY}). One minimum, found from everywhere.",
        f"- Hidden layer: {len(minima)} distinct minima, F = "
        + ", ".join(f"{r.first:.6f} (reached by {r.size} init{'s' if r.size > 1 else ''})"
                    for r in minima.itertuples())
        + f"; every end point has ‖∇F‖ ≤ {fmt(hi['grad_norm'].max())} and a positive "
        f"definite Hessian (smallest eigenvalue ≥ {fmt(hi['hessian_min_eig'].min())}): each "
        "sits at (or, while ‖∇F‖ > 0, next to) a strict local minimum."]
    if not same.empty:
        lines.append(
            f"- Inits that reach the same F: raw weights {span(same['weight_distance'])} "
            f"apart, but after relabelling the hidden units at most "
            f"{fmt(same['aligned_distance'].max())}: the same minimum in another order "
            "(hidden-unit permutation symmetry), the same function (outputs differ by ≤ "
            f"{fmt(same['function_distance'].max())}).")
    if not diff.empty:
        lines.append(
            f"- Inits that reach different minima: aligned distance "
            f"{span(diff['aligned_distance'])}, outputs differ by up to "
            f"{fmt(diff['function_distance'].max())}: different functions, not relabellings.")
    return lines


def _slice_lines(slices: pd.DataFrame) -> list[str]:
    parts = slices.groupby(["model", "slice"])
    curv = {k: _curvature(g["objective"], g["t"]).min() for k, g in parts}
    lines = [
        f"- Slices: along a random direction the logistic F has smallest curvature "
        f"{fmt(curv[('logistic', 'random')])} (≥ λ = {WEIGHT_DECAY}: convex), the hidden "
        f"net's {fmt(curv[('hidden', 'random')])}"
        + (" (negative: not convex along that line)." if curv[("hidden", "random")] < 0
           else " (this line happens to be convex; the segments below are not).")]
    for (model, name), part in parts:
        seg = part.loc[part["t"].between(0, 1), "objective"]
        if model == "hidden" and name != "random":   # max F on t ∈ [0, 1] above its ends
            lines.append(f"- Hidden net, segment {name}: F rises "
                         f"{fmt(seg.max() - max(seg.iloc[0], seg.iloc[-1]))} above the higher "
                         f"end (smallest curvature {fmt(curv[(model, name)])}) — a convex "
                         "function cannot rise between two points where it is minimal.")
    return lines
