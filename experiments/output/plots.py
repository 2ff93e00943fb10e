"""Seaborn figures read from a run directory's CSVs; plotting never runs inside training.

Files read (schemas in docs/csv-schema.md; extra columns are ignored):
    loss.csv         step, loss_manual, loss_torch, abs_diff, ...        one row per step
    grads.csv        step, param, max_abs_diff, rel_err, weight_max_abs_diff,
                     ref_rel_err_manual, ref_rel_err_torch, ...          one row per step x param
    final_grads.csv  param, row, col, grad_manual, grad_torch, abs_diff  one row per element
    grad_entries.csv step, param, row, col, w1b1, grad_manual, grad_torch, abs_diff
                                                                         step x element

Exact zeros on a log axis. A difference of exactly 0 means the two sides were bit-identical;
log axes cannot show it, and dropping those points would hide the best possible result. So
zeros are drawn at a floor one decade below the smallest non-zero value (1e-18 when every
value is 0), marked with an ``x`` on a dotted line, and the legend and title say so. The
final-step heatmap (``experiments.output.heatmap``) draws zero cells light grey instead.

Figures are made with ``matplotlib.figure.Figure`` (never pyplot), so nothing is displayed,
no global figure state is touched, and nothing is left open; PNGs use the Agg renderer.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from experiments.output.heatmap import heatmap_figure
from experiments.output.style import save, style, zero_floor

__all__ = ["plot_compare", "plot_run"]

LINE_FIGSIZE = (9.0, 4.5)  # inches; the legend sits outside, to the right
ALL_ZERO_FLOOR = 1e-18  # where exact zeros go when there is no non-zero value to sit under
STEP_LABEL = "step (optimizer updates)"
SIDE_DASHES = {"manual": "", "torch": (4, 2)}  # manual solid, torch dashed: overlap stays visible

LOSS_COLUMNS = ("step", "loss_manual", "loss_torch", "abs_diff")
GRADS_COLUMNS = ("step", "param", "max_abs_diff", "rel_err")
FINAL_COLUMNS = ("param", "row", "col", "abs_diff")
ENTRY_COLUMNS = ("step", "param", "row", "col", "w1b1", "grad_manual", "grad_torch",
                 "abs_diff")
REF_COLUMNS = ("ref_rel_err_manual", "ref_rel_err_torch")


# ---------------------------------------------------------------------------- public API


def plot_run(run_dir: str | Path) -> list[Path]:
    """Write the run's figures into ``run_dir``; return the PNG paths written, in this order.

    loss.png               loss_manual and loss_torch over steps (log y when all > 0)
    grad_diff.png          rel_err per param over steps against each step's rel_tol (log y)
    weight_drift.png       max |W_manual − W_torch| per param over steps (log y)
    grad_heatmap.png       |g_manual − g_torch| per element at the final step, one panel/param
    grad_entry.png         one weight's gradient on both sides over steps, and |difference|
                           (the entry that differed most; needs grad_entries.csv)
    float64_reference.png  ratio of the two sides' errors against a float64 gradient (log y)

    A figure whose source is absent is skipped: no ``final_grads.csv`` -> no heatmap; an
    empty or missing ``weight_max_abs_diff`` / ``ref_rel_err_*`` column -> no such figure.
    Raises FileNotFoundError if ``loss.csv`` or ``grads.csv`` is missing, ValueError if
    either lacks a required column or has no rows.
    """
    run_dir = Path(run_dir)
    loss = _read_csv(run_dir, "loss.csv", LOSS_COLUMNS)
    grads = _read_csv(run_dir, "grads.csv", GRADS_COLUMNS)
    final_path = run_dir / "final_grads.csv"
    final = _read_csv(run_dir, "final_grads.csv", FINAL_COLUMNS) if final_path.is_file() else None

    written = []
    with style():
        written.append(save_listed(_loss_figure(loss), run_dir / "loss.png"))
        written.append(save_listed(_verdict_figure(grads), run_dir / "grad_diff.png"))
        if _has_values(grads, "weight_max_abs_diff"):
            written.append(
                save_listed(
                    _log_line_figure(
                        grads,
                        y="weight_max_abs_diff",
                        hue="param",
                        title="Weight drift per parameter after each update: "
                        "max |W_manual − W_torch|",
                        ylabel="max |W_manual − W_torch| (absolute, per tensor)",
                    ),
                    run_dir / "weight_drift.png",
                )
            )
        if final is not None and len(final):
            written.append(save_listed(heatmap_figure(final), run_dir / "grad_heatmap.png"))
        if (run_dir / "grad_entries.csv").is_file():
            entries = _read_csv(run_dir, "grad_entries.csv", ENTRY_COLUMNS)
            written.append(save_listed(_entry_figure(entries), run_dir / "grad_entry.png"))
        if all(c in grads.columns for c in REF_COLUMNS) and _has_values(grads, REF_COLUMNS[0]):
            written.append(save_listed(_reference_figure(grads), run_dir / "float64_reference.png"))
    return written


def plot_compare(run_a: str | Path, run_b: str | Path, out: str | Path) -> list[Path]:
    """Two runs side by side (e.g. float32 vs float64); write into ``out`` and return paths.

    compare_loss.png   |loss_manual − loss_torch| over steps, one colour per run
    compare_grads.png  rel_err = ‖g_m − g_t‖₂ / max(‖g_m‖₂, ‖g_t‖₂) over steps,
                       colour = run, line style = param

    Runs are labelled by their directory names (parent/name if the names clash).
    Raises FileNotFoundError / ValueError as ``plot_run`` for either run.
    """
    run_a, run_b, out = Path(run_a), Path(run_b), Path(out)
    label_a, label_b = _run_labels(run_a, run_b)
    loss = pd.concat(
        [
            _read_csv(run_a, "loss.csv", LOSS_COLUMNS).assign(run=label_a),
            _read_csv(run_b, "loss.csv", LOSS_COLUMNS).assign(run=label_b),
        ],
        ignore_index=True,
    )
    grads = pd.concat(
        [
            _read_csv(run_a, "grads.csv", GRADS_COLUMNS).assign(run=label_a),
            _read_csv(run_b, "grads.csv", GRADS_COLUMNS).assign(run=label_b),
        ],
        ignore_index=True,
    )
    out.mkdir(parents=True, exist_ok=True)
    with style():
        loss_fig = _log_line_figure(
            loss,
            y="abs_diff",
            hue="run",
            title="Loss difference between the sides: |loss_manual − loss_torch|",
            ylabel="|loss_manual − loss_torch| (absolute)",
        )
        grads_fig = _log_line_figure(
            grads,
            y="rel_err",
            hue="run",
            style="param",
            title="Gradient relative error: ‖g_manual − g_torch‖₂ / max(‖g_manual‖₂, ‖g_torch‖₂)",
            ylabel="relative error (dimensionless)",
        )
        return [
            save_listed(loss_fig, out / "compare_loss.png"),
            save_listed(grads_fig, out / "compare_grads.png"),
        ]


# ---------------------------------------------------------------------------- reading


def _read_csv(run_dir: Path, name: str, required: tuple[str, ...]) -> pd.DataFrame:
    """Read ``run_dir/name``; one clear error when it is missing, columnless or empty."""
    path = run_dir / name
    if not path.is_file():
        raise FileNotFoundError(
            f"{name} not found in run directory {run_dir} "
            "(plots read a finished run: run `handgrad run ...` first, or check the path)"
        )
    frame = pd.read_csv(path)
    missing = [c for c in required if c not in frame.columns]
    if missing:
        raise ValueError(f"{path} lacks column(s) {', '.join(missing)}; has {list(frame.columns)}")
    if name != "final_grads.csv" and frame.empty:
        raise ValueError(f"{path} has a header but no rows; nothing to plot")
    return frame


def _has_values(frame: pd.DataFrame, column: str) -> bool:
    return column in frame.columns and bool(frame[column].notna().any())


def _run_labels(run_a: Path, run_b: Path) -> tuple[str, str]:
    """Directory names, made distinct when two runs share a name (e.g. a/run and b/run)."""
    a, b = run_a.resolve(), run_b.resolve()
    if a.name != b.name:
        return a.name, b.name
    if a.parent.name != b.parent.name:
        return f"{a.parent.name}/{a.name}", f"{b.parent.name}/{b.name}"
    return f"A: {a.name}", f"B: {b.name}"


# ---------------------------------------------------------------------------- figures


def save_listed(fig: Figure, path: Path) -> Path:
    """The one style's ``save``; run plots list the paths they wrote."""
    save(fig, path)
    return path


def _loss_figure(loss: pd.DataFrame) -> Figure:
    """Both sides' loss over steps, overlaid (manual solid, torch dashed on top), and below
    it what the overlay cannot show: |E_manual − E_torch| per step on a log axis, exact
    zeros on the floor (two curves that agree to 1e-16 look identical)."""
    long = loss.melt(
        id_vars="step",
        value_vars=["loss_manual", "loss_torch"],
        var_name="side",
        value_name="loss",
    )
    long["side"] = long["side"].str.removeprefix("loss_")  # (2 * steps, 3): step, side, loss
    bad = _first_nonfinite(long, "loss")
    long = long[np.isfinite(long["loss"])]
    fig = Figure(figsize=(LINE_FIGSIZE[0], LINE_FIGSIZE[1] * 1.5), layout="constrained")
    ax, diff_ax = fig.subplots(2, 1, sharex=True, height_ratios=[3, 2])
    if len(long) and (long["loss"] > 0).all() and _too_wide(long["loss"]):
        long = long.assign(loss=np.log10(long["loss"]))
    sns.lineplot(
        data=long,
        x="step",
        y="loss",
        hue="side",
        style="side",
        hue_order=list(SIDE_DASHES),
        style_order=list(SIDE_DASHES),
        dashes=SIDE_DASHES,
        errorbar=None,
        ax=ax,
    )
    log = len(long) > 0 and bool((long["loss"] > 0).all())
    scale = _log_scale(ax, long["loss"]) if log else ""
    ax.set_title("Training loss per step, manual vs torch")
    _mark_nonfinite(ax, bad)
    ax.set_ylabel("loss (the run's loss function" + scale + ")")
    sns.move_legend(ax, "upper left", bbox_to_anchor=(1.01, 1), frameon=False)
    gap = loss.assign(pair="|E_manual − E_torch|")
    diff_scale = log_lineplot(diff_ax, gap, y="abs_diff", hue="pair",
                               title="Their difference |E_manual − E_torch| per step")
    diff_ax.set_xlabel(STEP_LABEL)
    diff_ax.set_ylabel("|ΔE| (absolute" + diff_scale + ")")
    return fig


def _log_line_figure(
    data: pd.DataFrame,
    *,
    y: str,
    hue: str,
    title: str,
    ylabel: str,
    style: str | None = None,
) -> Figure:
    """``y`` over steps on a log axis, one line per ``hue`` (and ``style``); zeros at a floor."""
    fig = Figure(figsize=LINE_FIGSIZE, layout="constrained")
    ax = fig.add_subplot()
    scale = log_lineplot(ax, data, y=y, hue=hue, style=style, title=title)
    ax.set_xlabel(STEP_LABEL)
    ax.set_ylabel(ylabel + scale)
    return fig


def log_lineplot(
    ax,
    data: pd.DataFrame,
    *,
    y: str,
    hue: str,
    title: str,
    style: str | None = None,
    dashes=True,
    style_order=None,
    zeros_of: str | None = None,
) -> str:
    """Draw ``y`` against step on a log axis; exact zeros at a visible, labelled floor.
    Returns the axis label's suffix (", log scale", or log10 for too wide a range).

    A curve is broken where its value is exactly 0: its pieces are drawn as separate
    lines (seaborn would join the points either side of a gap, and a synced run's drift,
    zero at almost every step, would read as a constant), and a non-zero value alone
    between zeros as a dot. ``zeros_of``: count exact zeros in the title only among the
    rows whose ``style`` is this (the measured line, not its tolerance)."""
    bad = _first_nonfinite(data, y)
    data = data[np.isfinite(data[y])].sort_values("step", kind="stable")
    if data.empty:  # say so on the figure rather than fail or write a blank axis
        ax.text(0.5, 0.5, f"no {y} values recorded", transform=ax.transAxes, ha="center")
        ax.set_title(title)
        return ""
    values = data[y].to_numpy(dtype=float)
    zero = values <= 0  # non-negative by definition; 0 means bit-identical
    positive = values[~zero & np.isfinite(values)]
    floor = zero_floor(values, ALL_ZERO_FLOOR)
    # zeros are marked on the floor line below, never drawn as tiny numbers in the curves:
    # a curve is broken where its value is exactly 0
    wide = positive.size and _too_wide(positive)
    shown = np.log10 if wide else (lambda v: v)
    zeros = data[zero].assign(**{y: shown(floor)})
    counted = (data[style] == zeros_of).to_numpy() if zeros_of else np.ones(len(data), bool)
    series = [hue, *([style] if style else [])]
    order = list(dict.fromkeys(data[hue]))  # first-seen order: layers.0.weight, layers.0.bias ...
    # a new piece after every zero: (series, piece) is one unbroken stretch of the curve
    piece = pd.Series(zero, index=data.index).groupby([data[c] for c in series]).cumsum()
    data = data.assign(**{y: shown(np.where(zero, 1.0, values)), "_piece": piece})[~zero]
    palette = dict(zip(order, sns.color_palette(n_colors=len(order)), strict=True))
    if len(data):    # (every value 0: the floor alone)
        sns.lineplot(data=data, x="step", y=y, hue=hue, hue_order=order, palette=palette,
                     style=style, style_order=style_order, dashes=dashes, units="_piece",
                     estimator=None, ax=ax)
    alone = data.groupby([*series, "_piece"])[y].transform("size") == 1
    if alone.any():     # a piece of one point draws no line: a dot instead
        ax.scatter(data.loc[alone, "step"], data.loc[alone, y], s=9,
                   c=data.loc[alone, hue].map(palette).tolist(), zorder=3)
    scale = _log_scale(ax, positive)
    if not positive.size:  # one value on a log axis gives degenerate limits: set them
        ax.set_ylim(floor / 10, floor * 10)
    n_zero = int(zero[counted].sum())
    if zero.any():
        _mark_zeros(ax, zeros, y, hue, palette, shown(floor))
        what = f"{zeros_of} values" if zeros_of else "values"
        title += (f"\n{n_zero} of {int(counted.sum())} {what} exactly 0 (bit-identical), "
                  f"drawn at {floor:.0e}")
    ax.set_title(title)
    _mark_nonfinite(ax, bad)
    _legend_outside(ax, extra=_zero_handle(floor) if zero.any() else None)
    return scale


WIDE = 1e100   # beyond this matplotlib's log locator overflows (it computes 10**decade)


def _too_wide(values) -> bool:
    v = np.asarray(values, dtype=float)
    return bool(v.size) and (v.max() > WIDE or v.min() < 1 / WIDE)


def _log_scale(ax, values) -> str:
    """A log y axis, or, for values a log axis cannot hold (up to 1e308), their log10 on
    a linear one (the caller plotted log10 then); returns the label's suffix."""
    if _too_wide(values):
        return ", log10 of the value: the range is too wide for a log axis"
    ax.set_yscale("log")
    ax.grid(True, which="minor", axis="y", linewidth=0.4, alpha=0.5)  # short ranges: few majors
    return ", log scale"


def _mark_zeros(ax, zeros: pd.DataFrame, y: str, hue: str, palette: dict, at: float) -> None:
    """Exact zeros: an x on a dotted floor line, in each series' colour, off the curves."""
    ax.axhline(at, color="0.5", linestyle=":", linewidth=1, zorder=1)
    ax.scatter(zeros["step"], zeros[y], c=zeros[hue].map(palette).tolist(), marker="x", s=25,
               linewidths=1, zorder=3)


def _first_nonfinite(data: pd.DataFrame, y: str) -> float | None:
    """The first step whose ``y`` is inf or NaN (a diverged run), or None."""
    bad = data.loc[~np.isfinite(data[y].to_numpy(dtype=float)), "step"]
    return float(bad.min()) if len(bad) else None


def _mark_nonfinite(ax, step: float | None) -> None:
    """A diverged run: its inf/NaN values are left out and the step is marked."""
    if step is None:
        return
    ax.axvline(step, color="tab:red", linestyle="--", linewidth=1)
    ax.annotate(f"non-finite from step {step:g}", xy=(step, 1), xycoords=("data", "axes fraction"),
                xytext=(-4, -4), textcoords="offset points", ha="right", va="top",
                color="tab:red", fontsize=8)


def _zero_handle(floor: float) -> tuple[Line2D, str]:
    handle = Line2D([], [], color="0.5", linestyle=":", marker="x", markersize=6)
    return handle, f"exact 0, drawn at {floor:.0e}"


def _legend_outside(ax, extra: tuple[Line2D, str] | None = None) -> None:
    """Seaborn's legend, moved right of the axes, with an optional extra entry appended."""
    legend = ax.get_legend()
    handles = list(legend.legend_handles) if legend else []
    labels = [t.get_text() for t in legend.get_texts()] if legend else []
    if extra is not None:
        handles.append(extra[0])
        labels.append(extra[1])
    if handles:
        ax.legend(handles, labels, loc="upper left", bbox_to_anchor=(1.01, 1), frameon=False)


def _verdict_figure(grads: pd.DataFrame) -> Figure:
    """What the verdict reads: each parameter's rel_err (solid) against that step's own
    tolerance rel_tol (dotted, same colour); the gradient code at the same weights where
    recorded (gradient_rel_err; rel_err itself in synced mode)."""
    judged = "gradient_rel_err" in grads and grads["gradient_rel_err"].notna().any()
    err, tol = (("gradient_rel_err", "gradient_rel_tol") if judged else ("rel_err", "rel_tol"))
    lines = {err: "rel_err ", tol: "rel_tol "} if tol in grads else {err: "rel_err "}
    long = grads.rename(columns=lines).melt(
        id_vars=["step", "param"], value_vars=list(lines.values()), var_name="line",
        value_name="value")
    long["line"] = long["line"].str.strip()
    fig = Figure(figsize=LINE_FIGSIZE, layout="constrained")
    ax = fig.add_subplot()
    scale = log_lineplot(
        ax, long, y="value", hue="param", style="line",
        style_order=[v.strip() for v in lines.values()],
        dashes={"rel_err": "", "rel_tol": (1, 2)}, zeros_of="rel_err",
        title="Gradient relative error per parameter (solid) against each step's tolerance "
              "(dotted)\n‖g_manual − g_torch‖₂ / max(‖g_manual‖₂, ‖g_torch‖₂)"
              + ("; the manual code at the torch side's weights" if judged else ""))
    ax.set_xlabel(STEP_LABEL)
    ax.set_ylabel("relative error (dimensionless)" + scale)
    return fig


def _entry_figure(entries: pd.DataFrame) -> Figure:
    """One gradient entry followed over training: both sides' ∂E/∂w (manual solid, torch
    dashed on top) and, below, |difference| on a log axis (exact zeros on the floor). The
    entry is the one whose difference was largest at some step (the first when none
    differed): where the sides agree least, they still agree."""
    worst = entries.loc[entries["abs_diff"].fillna(np.inf).idxmax()]
    key = (worst["param"], worst["row"], worst["col"])
    one = entries[(entries["param"] == key[0]) & (entries["row"] == key[1])
                  & (entries["col"] == key[2])]
    name = f"{key[0]}[{key[1]},{key[2]}]" + (f" (= {worst['w1b1']})"
                                               if isinstance(worst["w1b1"], str) else "")
    long = one.melt(id_vars="step", value_vars=["grad_manual", "grad_torch"], var_name="side",
                    value_name="gradient")
    long["side"] = long["side"].str.removeprefix("grad_")      # (2 * steps, 3)
    fig = Figure(figsize=(LINE_FIGSIZE[0], LINE_FIGSIZE[1] * 1.5), layout="constrained")
    top, bottom = fig.subplots(2, 1, sharex=True, height_ratios=[3, 2])
    sns.lineplot(data=long[np.isfinite(long["gradient"])], x="step", y="gradient", hue="side",
                 style="side", hue_order=list(SIDE_DASHES), style_order=list(SIDE_DASHES),
                 dashes=SIDE_DASHES, errorbar=None, ax=top)
    top.set_title(f"One weight over training: ∂E/∂{name}, manual vs torch\n(the entry whose "
                  f"|∂E/∂w_manual − ∂E/∂w_torch| was largest, {worst['abs_diff']:.3g} at step "
                  f"{worst['step']})")
    size = one[["grad_manual", "grad_torch"]].abs().to_numpy()
    size = size[np.isfinite(size) & (size > 0)]
    if size.size and size.max() > 100 * size.min():   # a gradient that fades: keep it seen
        top.set_yscale("symlog", linthresh=float(size.max()) * 1e-4)
    top.set_ylabel("∂E/∂w" + (", symlog scale" if top.get_yscale() == "symlog" else ""))
    _legend_outside(top)
    scale = log_lineplot(bottom, one.assign(entry=name), y="abs_diff", hue="entry",
                          title="|∂E/∂w_manual − ∂E/∂w_torch| at each logged step")
    bottom.set_xlabel(STEP_LABEL)
    bottom.set_ylabel("|difference|" + scale)
    return fig


def _reference_figure(grads: pd.DataFrame) -> Figure:
    """Which side is closer to a float64 gradient: ref_rel_err_manual / ref_rel_err_torch
    per parameter, one line per parameter against 1 (above: torch closer, below: manual)."""
    ratio = grads.assign(ratio=grads["ref_rel_err_manual"] / grads["ref_rel_err_torch"])
    fig = Figure(figsize=LINE_FIGSIZE, layout="constrained")
    ax = fig.add_subplot()
    scale = log_lineplot(
        ax, ratio, y="ratio", hue="param",
        title="Which side is closer to a float64 gradient: ref_rel_err_manual / "
              "ref_rel_err_torch\nabove 1: torch closer; below 1: manual closer")
    ax.axhline(1.0, color="0.3", linewidth=1, zorder=1)
    ax.set_xlabel(STEP_LABEL)
    ax.set_ylabel("manual's error / torch's error" + scale)
    return fig
