"""``handgrad bugs``: a gallery of hand-derivation mistakes and their signatures against autograd.

Each bug (``experiments.teaching.bugs.mistakes``) is a ``manual.MLP`` subclass that
overrides ONE public factor of its backward pass, so its difference is exactly that one
method; manual/ is untouched. The control (the unmodified ``manual.MLP``, which must come
out "agree") and every buggy side train in lockstep (``experiments.core.engine``) against
one torch_impl reference, whose trajectory does not depend on the bugs. Each step's
gradients are compared (rel_err, the fitted ratio c = ⟨g_m, g_t⟩/⟨g_t, g_t⟩) and diagnosed
by ``experiments.core.diagnose``.

The network makes every bug visible: sizes 3-4-4-3 (layers.0 non-square, layers.1 square,
layers.2 non-square), sigmoid everywhere, biases on, loss ``mse`` (mean over M = N·K
elements), a batch of N = 5, plain SGD. K = 3 and N = 5 keep the reduction constants
apart: a ratio of 2, N, K or M = N·K = 15 names one cause (with K = 2, a factor ½ could be
a missing 2 or an extra 1/K). Mode ``synced`` (default) resets every manual side to the
torch side's weights after each step, so each step shows the bug's own signature at the
same point; ``free`` lets the buggy sides drift, as a real buggy training run would.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import tomli_w

from experiments.core.config import ConfigError
from experiments.core.diagnose import diagnose, fit_ratio, param_kinds
from experiments.core.engine import Lockstep, ManualSide, Observer, batches, to_numpy
from experiments.core.metrics import compare_many, verdict
from experiments.core.reference import ReferenceSide, mlp_reference
from experiments.core.schema import BUGS_COLUMNS as COLUMNS
from experiments.core.tolerance import step_tolerances
from experiments.output.html import write_table_report
from experiments.output.rundir import atomic_folder, check_out, write_csv
from experiments.teaching.bugs.mistakes import BUGS, CONTROL, buggy_mlp, what

__all__ = ["BUGS", "COLUMNS", "CONTROL", "buggy_mlp", "gallery_details", "gallery_table",
           "plot_gallery", "redraw", "register", "run_gallery", "shown_steps", "what",
           "write_gallery"]


# -- the gallery ---------------------------------------------------------------------------

def _problem(sizes, batch: int, seed: int):
    """One seeded init (torch.nn.Linear's distribution: non-zero biases, no symmetry), inputs
    N(0, 1) and targets in (0.05, 0.95), all from one generator."""
    from experiments.core.init import uniform_params
    rng = np.random.default_rng(seed)
    params = uniform_params(sizes, True, rng)
    X = rng.normal(size=(batch, sizes[0]))                               # (N, D)
    Y = rng.uniform(0.05, 0.95, size=(batch, sizes[-1]))                 # (N, K)
    return params, X, Y


class Signatures(Observer):
    """Each step, every side against the reference as bugs.csv rows: rel_err, the rounding
    tolerance rel_tol = 2γ_m·cond (as the runner's), the fitted ratio c and its residual,
    the verdict, and the diagnosis kind and text."""

    def __init__(self, sides: list[ManualSide], Y, batch: int):
        self.sides, self.Y, self.batch = sides, Y, batch
        self.rows: dict[str, list] = {side.name: [] for side in sides}
        self.previous = None      # the reference's gradients summed over the earlier steps

    def compare(self, step, epoch, idx, ref, evals) -> None:
        gt = {k: to_numpy(g) for k, g in ref[1].items()}
        keys = list(gt)
        for side, (_, gm) in zip(self.sides, evals, strict=True):
            net = side.net
            metrics = compare_many([gm[k] for k in keys], [gt[k] for k in keys])
            tols = dict(zip(keys, step_tolerances(net, net.params, net.last_activations,
                                                  self.Y, metrics, "float64"), strict=True))
            findings = diagnose(gm, gt, rel_tol=tols, batch=self.batch, previous=self.previous)
            kinds = param_kinds(findings, keys)
            detail = {k: f.detail for f in reversed(findings) for k in f.params}
            for k, (mad, rel, cos, _, _) in zip(keys, metrics, strict=True):
                self.rows[side.name].append([side.name, step, k, rel, tols[k], mad, cos,
                                             *fit_ratio(gm[k], gt[k]), verdict(mad, rel, tols[k]),
                                             kinds[k], detail.get(k, "")])
        self.previous = ({k: v.copy() for k, v in gt.items()} if self.previous is None
                         else {k: self.previous[k] + gt[k] for k in keys})


def run_gallery(bugs=None, *, sizes=(3, 4, 4, 3), batch: int = 5, steps: int = 4,
                lr: float = 1.0, seed: int = 0, mode: str = "synced") -> pd.DataFrame:
    """Train the control and each buggy manual side against one torch_impl reference in
    lockstep; return one row per bug × step × parameter (``COLUMNS``, see ``Signatures``)."""
    import torch_impl

    names = list(BUGS) if bugs is None else list(bugs)
    if unknown := [b for b in names if b not in BUGS]:
        raise ValueError(f"unknown bug(s) {unknown}; choose from {sorted(BUGS)}")
    params, X, Y = _problem(tuple(sizes), batch, seed)
    spec = dict(sizes=tuple(sizes), activation="sigmoid", bias=True, loss="mse", params=params)
    sides = [ManualSide(buggy_mlp(name, **spec), {"lr": lr}, name).bind(X, Y)
             for name in [CONTROL, *names]]
    reference = ReferenceSide(mlp_reference(torch_impl.MLP(**spec), X, Y, {"lr": lr},
                                            steps=steps), name="torch")
    table = Signatures(sides, Y, batch)
    Lockstep(sides, reference, mode).run(batches(batch, batch, False, None, steps), table)
    return pd.DataFrame([r for rows in table.rows.values() for r in rows], columns=COLUMNS)


def short_name(key: str) -> str:
    """layers.1.weight -> W1, layers.1.bias -> b1 (table columns)."""
    _, i, kind = key.split(".")
    return f"{'W' if kind == 'weight' else 'b'}{i}"


def shown_steps(df: pd.DataFrame) -> dict[str, int]:
    """The step the gallery shows for each bug (table, details and figure alike): the first
    step anything differs, or the last step where nothing does."""
    steps = {}
    for name, g in df.groupby("bug", sort=False):
        differ = g.loc[g["verdict"] == "differ", "step"]
        steps[name] = int(differ.min() if not differ.empty else g["step"].max())
    return steps


def _kinds(kinds) -> str:
    """The distinct diagnosis kinds of a row, 'agree' only when nothing else is there."""
    return " + ".join([k for k in dict.fromkeys(kinds) if k != "agree"] or ["agree"])


def gallery_table(df: pd.DataFrame) -> pd.DataFrame:
    """One row per bug: the first step anything differs, the fitted ratio c per parameter
    at that step ('=' where it agrees), the worst rel_err there, and the diagnosis kinds."""
    keys = list(dict.fromkeys(df["param"]))
    out = []
    for (name, g), step in zip(df.groupby("bug", sort=False), shown_steps(df).values(),
                               strict=True):
        at = g[g["step"] == step].set_index("param")
        cells = {short_name(k): ("=" if at.loc[k, "verdict"] != "differ"
                                 else f"{at.loc[k, 'ratio']:.3g}") for k in keys}
        out.append({"bug": name, "from_step": step if (at["verdict"] == "differ").any()
                    else "-", **cells,
                    "rel_err": at["rel_err"].max(), "diagnosis": _kinds(at["diagnosis"])})
    return pd.DataFrame(out)


def gallery_details(df: pd.DataFrame) -> list[str]:
    """For each bug, the distinct diagnosis sentences at the step the table shows
    (``shown_steps``)."""
    lines = []
    for (name, g), step in zip(df.groupby("bug", sort=False), shown_steps(df).values(),
                               strict=True):
        at = g[g["step"] == step]
        lines.append(f"{name} — {what(name)}")
        lines += [f"    step {step}, {kind}: {t}" for kind, t in
                  dict.fromkeys(zip(at["diagnosis"], at["detail"], strict=True)) if t]
        if not any(at["detail"]):
            lines.append(f"    every step: agree (worst rel_err {g['rel_err'].max():.2g}, within "
                         f"rel_tol)")
    return lines


def _steps_title(steps: dict[str, int], agreeing: set[str]) -> str:
    """'at step 0, except b (step 1), control (step 3: nothing differs)': the step of every
    row, the most common one once."""
    common = max(set(steps.values()), key=list(steps.values()).count)
    others = [f"{b} (step {s}{': nothing differs' if b in agreeing else ''})"
              for b, s in steps.items() if s != common]
    return f"at step {common}" + (f", except {', '.join(others)}" if others else "")


def plot_gallery(df: pd.DataFrame, path: Path) -> Path:
    """Heatmap bug × parameter of rel_err (colour, log), the fitted ratio c written in each
    differing cell, '=' in agreeing ones, '0' where bit-identical. Each row is drawn at the
    step the table shows for it (``shown_steps``), named in its label and in the title."""
    import seaborn as sns
    from matplotlib import colormaps
    from matplotlib.colors import LogNorm

    from experiments.output.style import figure, save, style

    bugs = list(dict.fromkeys(df["bug"]))
    steps = shown_steps(df)
    at = df[df["step"] == df["bug"].map(steps)]
    keys = list(dict.fromkeys(at["param"]))
    rel, ratio, ver, kind = (at.pivot(index="bug", columns="param", values=c).loc[bugs, keys]
                             .to_numpy() for c in ("rel_err", "ratio", "verdict", "diagnosis"))
    rel = rel.astype(float)
    positive = rel[rel > 0]
    vmin = min(positive.min(), 1e-16) if positive.size else 1e-16
    vmax = max(positive.max(), 10 * vmin) if positive.size else 1.0
    # a fitted c says nothing about a transposed or accumulated gradient: name those instead
    fitted = np.char.add("c=", np.char.mod("%.3g", ratio.astype(float)))
    named = np.where(kind == "transposed", "transposed",
                     np.where(kind == "accumulated", "Σ steps", fitted))
    labels = [f"{b} · step {steps[b]}\n({_kinds(row)})"
              for b, row in zip(bugs, kind, strict=True)]
    agreeing = {b for b, row in zip(bugs, ver, strict=True) if (row != "differ").all()}
    with style(grid=False):
        fig, (ax,) = figure(1, 1.1 * len(keys) + 3.5, 0.6 * len(bugs) + 1.6)
        sns.heatmap(np.where(rel == 0, vmin / 10, rel), ax=ax, fmt="",
                    cmap=colormaps["rocket_r"].with_extremes(under="0.9"),
                    norm=LogNorm(vmin=vmin, vmax=vmax), annot_kws={"fontsize": 8},
                    annot=np.where(ver != "differ", np.where(rel == 0, "0", "="), named),
                    xticklabels=keys, yticklabels=labels, linewidths=0.5, linecolor="white",
                    cbar_kws={"label": "rel_err vs autograd (log)", "extend": "min"})
        ax.set(xlabel="parameter", ylabel="")
        ax.tick_params(axis="x", rotation=30, labelsize=8)
        ax.tick_params(axis="y", labelsize=8)
        ax.set_title(f"Hand-derivation bugs vs autograd {_steps_title(steps, agreeing)} "
                     "(row: the step the table shows, diagnosis).\nColour: rel_err. Text: the "
                     "fitted ratio c = ⟨g_m,g_t⟩/⟨g_t,g_t⟩, or 'transposed' / 'Σ steps' "
                     "(accumulated) where c means nothing; '=' within the rounding tolerance",
                     fontsize=9)
        save(fig, path)
    return Path(path)


def write_gallery(df: pd.DataFrame, out: Path, config: dict, *, force: bool = False,
                  plots: bool = True) -> list[Path]:
    """bugs.csv, config.toml (``kind = "bugs"``, then ``run_gallery``'s keyword arguments)
    and bugs.png, all written into ``out`` at once (``rundir.atomic_folder``)."""
    with atomic_folder(out, force, kind="bugs") as tmp:
        write_csv(df, tmp / "bugs.csv")
        (tmp / "config.toml").write_text(tomli_w.dumps({"kind": "bugs", **config}), "utf-8")
        if plots:
            plot_gallery(df, tmp / "bugs.png")
        write_table_report(tmp, "handgrad bugs: hand-derivation mistakes against autograd",
                           ["bugs.csv"], ["bugs.png"] if plots else [])
    return [Path(out) / n for n in ("bugs.csv", "config.toml", "bugs.png")[:3 if plots else 2]]


def redraw(folder: Path) -> list[str]:
    """Redraw bugs.png from the gallery folder's bugs.csv; return the path written."""
    return [str(plot_gallery(pd.read_csv(Path(folder) / "bugs.csv"), Path(folder) / "bugs.png"))]


# -- CLI --------------------------------------------------------------------------------------

def _config(args) -> dict:
    """``run_gallery``'s arguments from the command line; ``ConfigError`` for bad ones."""
    if args.steps < 2:
        raise ConfigError(f"--steps must be >= 2 (accumulated gradients show from step 1), "
                          f"got {args.steps}")
    if args.batch < 2:
        raise ConfigError(f"--batch must be >= 2 (with N = 1 a missing 1/N is invisible), "
                          f"got {args.batch}")
    if not (args.lr > 0 and math.isfinite(args.lr)):
        raise ConfigError(f"--lr must be a finite number > 0, got {args.lr}")
    try:
        sizes = [int(s) for s in args.sizes.replace("-", ",").split(",")]
    except ValueError:
        raise ConfigError(f"--sizes must be widths like 3,4,4,3, got {args.sizes!r}") from None
    if len(sizes) < 3 or min(sizes) < 1:
        raise ConfigError(f"--sizes needs at least one hidden layer and widths >= 1 (the "
                          f"hidden-σ′ bug lives there), got {args.sizes!r}")
    return dict(bugs=list(BUGS), sizes=sizes, batch=args.batch, steps=args.steps, lr=args.lr,
                seed=args.seed, mode=args.mode)


def cmd_bugs(args) -> int:
    config = _config(args)
    check_out(args.out, args.force, "bugs")
    df = run_gallery(**config)
    written = write_gallery(df, args.out, config, force=args.force, plots=not args.no_plots)
    with pd.option_context("display.float_format", "{:.2g}".format, "display.width", 200,
                           "display.max_colwidth", 80):
        print(f"Bug gallery: sizes {'-'.join(map(str, config['sizes']))}, sigmoid, biases, "
              f"mse, N = {args.batch}, {args.steps} steps, lr {args.lr}, mode {args.mode}. "
              f"Cells: the fitted ratio c = <g_m,g_t>/<g_t,g_t> per parameter\n(W_i = "
              f"layers.i.weight, b_i = layers.i.bias) at the first step anything differs; '=' "
              f"within the rounding tolerance.\n")
        print(gallery_table(df).to_string(index=False))
    print("\n" + "\n".join(gallery_details(df)))
    print("\nwrote " + ", ".join(str(p) for p in written))
    if (df[df["bug"] == CONTROL]["verdict"] == "differ").any():
        print("handgrad: the unmodified manual side differs from autograd (control row): "
              "a real bug in manual/", file=sys.stderr)
        return 1
    return 0


def register(subparsers, formatter_class=argparse.HelpFormatter, help: str = "") -> None:
    """Add ``handgrad bugs`` (experiments.cli's feature-module protocol)."""
    p = subparsers.add_parser(
        "bugs", formatter_class=formatter_class,
        help=help,
        description="Inject known backprop mistakes into the manual backward pass (one "
                    "overridden method each), train each against autograd in lockstep, and "
                    "show each one's signature: which parameters differ, by what ratio, from "
                    "which step, and the automatic diagnosis. Writes bugs.csv, config.toml and "
                    "bugs.png into --out.\n\nbugs:\n"
                    + "\n".join(f"  {name}: {what(name)}" for name in BUGS))
    p.add_argument("--out", type=Path, default=Path("bugs"),
                   help="folder for bugs.csv, config.toml, bugs.png")
    p.add_argument("--force", action="store_true", help="replace an existing --out folder")
    p.add_argument("--steps", type=int, default=4, help="lockstep steps per bug")
    p.add_argument("--batch", type=int, default=5, help="batch size N")
    p.add_argument("--sizes", default="3,4,4,3", help="layer widths")
    p.add_argument("--lr", type=float, default=1.0, help="SGD learning rate")
    p.add_argument("--seed", type=int, default=0, help="seed for init, inputs and targets")
    p.add_argument("--mode", choices=("synced", "free"), default="synced",
                   help="synced: reset the manual sides to torch's weights after each step")
    p.add_argument("--no-plots", action="store_true", help="skip bugs.png")
    p.set_defaults(func=cmd_bugs)
