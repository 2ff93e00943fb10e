"""``handgrad bugs``: a gallery of hand-derivation mistakes and their signatures against autograd.

Each bug is injected into a *copy* of ``manual.MLP.backward`` (``BuggyMLP`` below; manual/
itself is never touched), then the buggy manual side and torch_impl train in lockstep for a
few steps from one initialisation. Every step's gradients are compared (rel_err, the fitted
ratio c = ⟨g_m, g_t⟩/⟨g_t, g_t⟩) and diagnosed by ``experiments.core.diagnose``. The unmodified
``manual.MLP`` runs alongside as the control and must come out "agree".

The network makes every bug visible: sizes 3-4-4-3 (layers.0 non-square, layers.1 square,
layers.2 non-square), sigmoid everywhere, biases on, loss ``mse`` (mean over M = N·K
elements), a batch of N = 5, plain SGD. K = 3 and N = 5 keep the reduction constants
apart: a ratio of 2, N, K or M = N·K = 15 names one cause (with K = 2, a factor ½ could be
a missing 2 or an extra 1/K). Mode ``synced`` (default) resets the manual side to
the torch side's weights after each step, so each step shows the bug's own signature at the
same point; ``free`` lets the buggy side drift, as a real buggy training run would.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

import manual
from experiments.core.schema import BUGS_COLUMNS as COLUMNS
from manual.activations import sigmoid, sigmoid_prime
from manual.losses import targets_for

CONTROL = "control"


@dataclass(frozen=True)
class Bug:
    name: str
    what: str        # the mistake, in one line
    expect: str      # the signature it should leave


BUGS = {b.name: b for b in (
    Bug("sigma_prime_of_activation",
        "hidden layers' σ′ taken of the activation: σ′(a) = σ(a)(1 − σ(a)) instead of a(1 − a) "
        "(a σ′(z)-style helper handed the stored a)",
        "layers below the output differ, no constant ratio: layer_confined, enters at the last "
        "hidden layer's delta"),
    Bug("missing_output_sigma_prime",
        "output delta δ_L = ∂E/∂A, the factor σ′(z_L) = A(1 − A) missing",
        "every layer differs from step 0, no constant ratio: the error enters at the output delta"),
    Bug("missing_mean",
        "mse's 1/M missing: ∂E/∂A = 2(A − Y) instead of 2(A − Y)/M, M = N·K",
        "constant_ratio c = M = N·K on every parameter"),
    Bug("missing_factor_2",
        "mse's factor 2 missing: ∂E/∂A = (A − Y)/M instead of 2(A − Y)/M",
        "constant_ratio c = 1/2 on every parameter"),
    Bug("transposed_weight_gradient",
        "∂E/∂W computed as a_{l-1}ᵀ δ (in, out) and reshaped to (out, in): a plain transpose "
        "for square layers, scrambled entries for non-square ones",
        "transposed on every weight with both dimensions > 1; biases agree"),
    Bug("accumulated_gradients",
        "gradients summed across steps instead of reset (+= without zeroing)",
        "agree at step 0, differ from step 1: accumulated"),
)}


class BuggyMLP(manual.MLP):
    """``manual.MLP`` with one hand-derivation mistake injected into a copy of its backward.

    ``bug=None`` runs the copy unmodified (bit-identical to ``manual.MLP``: tested), so each
    bug's difference is exactly its injected line.
    """

    def __init__(self, *args, bug: str | None, **kwargs):
        super().__init__(*args, **kwargs)
        if bug is not None and bug not in BUGS:
            raise ValueError(f"unknown bug {bug!r}; choose one of {sorted(BUGS)}")
        if bug in ("missing_mean", "missing_factor_2") and self.loss_name != "mse":
            raise ValueError(f"bug {bug!r} is a mistake in mse's derivative; use loss='mse'")
        if bug == "sigma_prime_of_activation" and self.activation != "sigmoid":
            raise ValueError(f"bug {bug!r} needs activation='sigmoid'")
        self.bug = bug
        self._accumulated: dict | None = None   # accumulated_gradients: the running sum

    def backward(self, a: list, Y) -> dict:
        """``manual.MLP.backward`` line for line, with ``self.bug`` switched in."""
        xp, p, bug = self.xp, self.param_arrays, self.bug
        A = a[-1]                                                        # (N, K)
        T = targets_for(self.loss_name, A, self._as_target(Y), xp)       # (N, K)
        M = A.shape[0] * A.shape[1]
        if bug == "missing_mean":
            dA = 2 * (A - T)                              # BUG: no 1/M   (N, K)
        elif bug == "missing_factor_2":
            dA = (A - T) / M                              # BUG: no 2     (N, K)
        else:
            dA = self._loss_grad(A, T, xp)                                # ∂E/∂A   (N, K)
        grads = {}
        L = len(self._f)
        for l in range(L - 1, -1, -1):                                   # L-1 ... 0
            _, f_prime = self._f[l]
            if bug == "missing_output_sigma_prime" and l == L - 1:
                delta = dA                                # BUG: no f′(z_L)  (N, n_out)
            elif bug == "sigma_prime_of_activation" and l < L - 1:
                delta = dA * sigmoid_prime(sigmoid(a[l + 1], xp), xp)  # BUG: σ′(a)  (N, n_out)
            else:
                delta = dA * f_prime(a[l + 1], xp)                       # δ = ∂E/∂z (N, n_out)
            if bug == "transposed_weight_gradient":
                n_out, n_in = p[f"layers.{l}.weight"].shape
                gW = xp.reshape(a[l].T @ delta, (n_out, n_in))   # BUG: (n_in, n_out) reshaped
            else:
                gW = delta.T @ a[l]                                      # (n_out, n_in) like W
            grads[f"layers.{l}.weight"] = gW
            if self.bias is True:
                grads[f"layers.{l}.bias"] = xp.sum(delta, axis=0)        # (n_out,) like b
            if l > 0:
                dA = delta @ p[f"layers.{l}.weight"]                     # ∂E/∂a_l  (N, n_in)
        grads = {k: grads[k] for k in self.trainable}                    # in key order
        if bug == "accumulated_gradients":                # BUG: += across steps, never reset
            acc = self._accumulated
            self._accumulated = grads if acc is None else {k: acc[k] + grads[k] for k in grads}
            grads = {k: v + 0 for k, v in self._accumulated.items()}     # copies, like p
        return grads


def _problem(sizes, batch: int, seed: int):
    """One seeded init (torch.nn.Linear's distribution: non-zero biases, no symmetry), inputs
    N(0, 1) and targets in (0.05, 0.95), all from one generator."""
    from experiments.core.init import uniform_params
    rng = np.random.default_rng(seed)
    params = uniform_params(sizes, True, rng)
    X = rng.normal(size=(batch, sizes[0]))                               # (N, D)
    Y = rng.uniform(0.05, 0.95, size=(batch, sizes[-1]))                 # (N, K)
    return params, X, Y


def run_gallery(bugs=None, *, sizes=(3, 4, 4, 3), batch: int = 5, steps: int = 4,
                lr: float = 1.0, seed: int = 0, mode: str = "synced") -> pd.DataFrame:
    """Train each buggy manual side (and the unmodified control) against torch_impl in
    lockstep; return the long-form comparison, one row per bug × step × parameter
    (``COLUMNS``): rel_err, the rounding tolerance rel_tol = 2γ_m·cond (as the runner),
    the fitted ratio c and its residual, the verdict, and the diagnosis kind and text."""
    import torch_impl
    from experiments.core.diagnose import diagnose, fit_ratio, param_kinds
    from experiments.core.metrics import compare_many, verdict
    from experiments.core.tolerance import step_tolerances

    names = list(BUGS) if bugs is None else list(bugs)
    unknown = [b for b in names if b not in BUGS]
    if unknown:
        raise ValueError(f"unknown bug(s) {unknown}; choose from {sorted(BUGS)}")
    if mode not in ("synced", "free"):
        raise ValueError(f"mode must be 'synced' or 'free', got {mode!r}")
    sizes = tuple(sizes)
    params, X, Y = _problem(sizes, batch, seed)
    spec = dict(activation="sigmoid", bias=True, loss="mse", dtype="float64")
    rows = []
    for name in [CONTROL, *names]:
        man = (manual.MLP(sizes, **spec, params=params) if name == CONTROL
               else BuggyMLP(sizes, **spec, params=params, bug=name))
        tor = torch_impl.MLP(sizes, **spec, params=params)
        opt_m, opt_t = manual.SGD(man.param_arrays, lr=lr), tor.optimizer(lr=lr)
        keys = list(tor.trainable)
        previous = None          # the reference's gradients summed over the earlier steps
        for step in range(steps):
            _, gm = man.loss_and_gradients(X, Y)
            _, gt = tor.loss_and_gradients(X, Y)
            metrics = compare_many([gm[k] for k in keys], [gt[k] for k in keys])
            tols = dict(zip(keys, step_tolerances(man, man.params, man.last_activations, Y,
                                                  metrics, "float64"), strict=True))
            findings = diagnose(gm, gt, rel_tol=tols, batch=batch, previous=previous)
            kinds = param_kinds(findings, keys)
            detail = {k: f.detail for f in reversed(findings) for k in f.params}
            for k, (mad, rel, cos, _, _) in zip(keys, metrics, strict=True):
                c, res = fit_ratio(gm[k], gt[k])
                rows.append([name, step, k, rel, tols[k], mad, cos, c, res,
                             verdict(mad, rel, tols[k]), kinds[k], detail.get(k, "")])
            previous = ({k: v.copy() for k, v in gt.items()} if previous is None
                        else {k: previous[k] + gt[k] for k in keys})
            opt_m.step(gm)
            opt_t.step()
            if mode == "synced":
                man.set_params(tor.params)
    return pd.DataFrame(rows, columns=COLUMNS)


def short_name(key: str) -> str:
    """layers.1.weight -> W1, layers.1.bias -> b1 (table columns)."""
    _, i, kind = key.split(".")
    return f"{'W' if kind == 'weight' else 'b'}{i}"


def gallery_table(df: pd.DataFrame) -> pd.DataFrame:
    """One row per bug: the first step anything differs, the fitted ratio c per parameter
    at that step ('=' where it agrees), the worst rel_err there, and the diagnosis kinds."""
    keys = list(dict.fromkeys(df["param"]))
    out = []
    for name, g in df.groupby("bug", sort=False):
        differ = g[g["verdict"] == "differ"]
        step = int(differ["step"].min()) if not differ.empty else int(g["step"].max())
        at = g[g["step"] == step].set_index("param")
        cells = {short_name(k): ("=" if at.loc[k, "verdict"] != "differ"
                                 else f"{at.loc[k, 'ratio']:.3g}") for k in keys}
        kinds = list(dict.fromkeys(at["diagnosis"]))
        shown = [kd for kd in kinds if kd != "agree"] or ["agree"]
        out.append({"bug": name, "from_step": step if not differ.empty else "-", **cells,
                    "rel_err": at["rel_err"].max(), "diagnosis": " + ".join(shown)})
    return pd.DataFrame(out)


def gallery_details(df: pd.DataFrame) -> list[str]:
    """For each bug, the distinct diagnosis sentences at its first differing step."""
    lines = []
    for name, g in df.groupby("bug", sort=False):
        differ = g[g["verdict"] == "differ"]
        step = int(differ["step"].min()) if not differ.empty else 0
        at = g[g["step"] == step]
        texts = [t for t in dict.fromkeys(at["detail"]) if t]
        what = BUGS[name].what if name in BUGS else "unmodified manual.MLP"
        lines.append(f"{name} — {what}")
        for kind, t in dict.fromkeys(zip(at["diagnosis"], at["detail"], strict=True)):
            if t in texts:
                lines.append(f"    step {step}, {kind}: {t}")
        if not texts:
            lines.append(f"    every step: agree (worst rel_err {g['rel_err'].max():.2g}, within "
                         f"rel_tol)")
    return lines


def plot_gallery(df: pd.DataFrame, path: Path, step: int = 1) -> Path:
    """Heatmap bug × parameter of rel_err at ``step`` (colour, log), the fitted ratio c
    written in each differing cell, '=' in agreeing ones, '0' where bit-identical."""
    import seaborn as sns
    from matplotlib import colormaps
    from matplotlib.colors import LogNorm
    from matplotlib.figure import Figure

    step = min(step, int(df["step"].max()))
    at = df[df["step"] == step]
    bugs = list(dict.fromkeys(at["bug"]))
    keys = list(dict.fromkeys(at["param"]))
    rel = at.pivot(index="bug", columns="param", values="rel_err").loc[bugs, keys]
    ratio = at.pivot(index="bug", columns="param", values="ratio").loc[bugs, keys]
    ver = at.pivot(index="bug", columns="param", values="verdict").loc[bugs, keys].to_numpy()
    kind = at.pivot(index="bug", columns="param", values="diagnosis").loc[bugs, keys].to_numpy()
    values = rel.to_numpy(dtype=float)
    positive = values[values > 0]
    vmin = min(positive.min(), 1e-16) if positive.size else 1e-16
    vmax = max(positive.max(), 10 * vmin) if positive.size else 1.0
    # a fitted c says nothing about a transposed or accumulated gradient: name those instead
    annot = np.where(ver != "differ", np.where(values == 0, "0", "="),
                     np.where(kind == "transposed", "transposed",
                              np.where(kind == "accumulated", "Σ steps",
                                       np.char.add("c=", np.char.mod(
                                           "%.3g", ratio.to_numpy(dtype=float))))))
    labels = []
    for b, row in zip(bugs, kind, strict=True):
        shown = [k for k in dict.fromkeys(row) if k != "agree"] or ["agree"]
        labels.append(f"{b}\n({' + '.join(shown)})")
    cmap = colormaps["rocket_r"].with_extremes(under="0.9")
    fig = Figure(figsize=(1.1 * len(keys) + 3.5, 0.6 * len(bugs) + 1.6), layout="constrained")
    ax = fig.subplots()
    with sns.axes_style("white"), sns.plotting_context("notebook", font_scale=0.8):
        sns.heatmap(np.where(values == 0, vmin / 10, values), ax=ax, cmap=cmap,
                    norm=LogNorm(vmin=vmin, vmax=vmax), annot=annot, fmt="",
                    annot_kws={"fontsize": 8}, xticklabels=keys, yticklabels=labels,
                    linewidths=0.5, linecolor="white",
                    cbar_kws={"label": "rel_err vs autograd (log)", "extend": "min"})
    ax.set_xlabel("parameter")
    ax.set_ylabel("")
    ax.tick_params(axis="x", rotation=30, labelsize=8)
    ax.tick_params(axis="y", labelsize=8)
    ax.set_title(f"Hand-derivation bugs vs autograd at step {step} (row: diagnosis). Colour: "
                 "rel_err. Text: the fitted ratio c = ⟨g_m,g_t⟩/⟨g_t,g_t⟩,\nor 'transposed' / "
                 "'Σ steps' (accumulated) where c means nothing; '=' within the rounding "
                 "tolerance", fontsize=9)
    fig.savefig(path, format="png", dpi=100, bbox_inches="tight")
    return path


# -- CLI --------------------------------------------------------------------------------------

def _write_atomic(path: Path, write) -> None:
    """Write via a temporary name renamed into place: never a half-written file."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _sizes(text: str) -> tuple[int, ...]:
    from experiments.core.config import ConfigError
    try:
        sizes = tuple(int(s) for s in text.replace("-", ",").split(","))
    except ValueError:
        raise ConfigError(f"--sizes must be widths like 3,4,4,3, got {text!r}") from None
    if len(sizes) < 3 or min(sizes) < 1:
        raise ConfigError(f"--sizes needs at least one hidden layer and widths >= 1 (the "
                          f"hidden-σ′ bug lives there), got {text!r}")
    return sizes


def cmd_bugs(args) -> int:
    from experiments.core.config import ConfigError
    if args.steps < 2:
        raise ConfigError(f"--steps must be >= 2 (accumulated gradients show from step 1), "
                          f"got {args.steps}")
    if args.batch < 2:
        raise ConfigError(f"--batch must be >= 2 (with N = 1 a missing 1/N is invisible), "
                          f"got {args.batch}")
    if not (args.lr > 0 and math.isfinite(args.lr)):
        raise ConfigError(f"--lr must be a finite number > 0, got {args.lr}")
    sizes = _sizes(args.sizes)
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} exists and is not a directory; choose another --out")
    df = run_gallery(sizes=sizes, batch=args.batch, steps=args.steps, lr=args.lr,
                     seed=args.seed, mode=args.mode)
    out.mkdir(parents=True, exist_ok=True)
    _write_atomic(out / "bugs.csv", lambda p: df.to_csv(p, index=False, lineterminator="\n"))
    table = gallery_table(df)
    with pd.option_context("display.float_format", "{:.2g}".format, "display.width", 200,
                           "display.max_colwidth", 80):
        print(f"Bug gallery: sizes {'-'.join(map(str, sizes))}, sigmoid, biases, mse, N = "
              f"{args.batch}, {args.steps} steps, lr {args.lr}, mode {args.mode}. Cells: the "
              f"fitted ratio c = <g_m,g_t>/<g_t,g_t> per parameter\n(W_i = layers.i.weight, "
              f"b_i = layers.i.bias) at the first step anything differs; '=' within the "
              f"rounding tolerance.\n")
        print(table.to_string(index=False))
    print()
    print("\n".join(gallery_details(df)))
    written = [out / "bugs.csv"]
    if not args.no_plots:
        _write_atomic(out / "bugs.png", lambda p: plot_gallery(df, p))
        written.append(out / "bugs.png")
    print("\nwrote " + ", ".join(str(p) for p in written))
    control = df[df["bug"] == CONTROL]
    if (control["verdict"] == "differ").any():
        print("handgrad: the unmodified manual side differs from autograd (control row): "
              "a real bug in manual/", file=sys.stderr)
        return 1
    return 0


def register(subparsers, formatter_class=argparse.HelpFormatter) -> None:
    """Add ``handgrad bugs`` (experiments.cli's feature-module protocol)."""
    p = subparsers.add_parser(
        "bugs", formatter_class=formatter_class,
        help="a gallery of hand-derivation bugs and their signatures against autograd",
        description="Inject known backprop mistakes into a copy of the manual backward pass, "
                    "train each against autograd in lockstep, and show each one's signature: "
                    "which parameters differ, by what ratio, from which step, and the "
                    "automatic diagnosis. Writes bugs.csv and bugs.png into --out.\n\nbugs:\n"
                    + "\n".join(f"  {b.name}: {b.what}" for b in BUGS.values()))
    p.add_argument("--out", type=Path, default=Path("bugs"), help="folder for bugs.csv, bugs.png")
    p.add_argument("--steps", type=int, default=4, help="lockstep steps per bug")
    p.add_argument("--batch", type=int, default=5, help="batch size N")
    p.add_argument("--sizes", default="3,4,4,3", help="layer widths")
    p.add_argument("--lr", type=float, default=1.0, help="SGD learning rate")
    p.add_argument("--seed", type=int, default=0, help="seed for init, inputs and targets")
    p.add_argument("--mode", choices=("synced", "free"), default="synced",
                   help="synced: reset the manual side to torch's weights after each step")
    p.add_argument("--no-plots", action="store_true", help="skip bugs.png")
    p.set_defaults(func=cmd_bugs)
