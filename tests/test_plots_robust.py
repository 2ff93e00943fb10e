"""Run plots that do not lie or crash: a diverged run's inf/NaN and values up to 1e300 are
drawn (failed before: OverflowError inside matplotlib, no folder), exact zeros are marked
off the curves rather than joined into them as tiny numbers, and grad_diff.png shows what
the verdict reads (rel_err against each step's tolerance)."""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.collections import PathCollection

from experiments.cli import EXIT_DIVERGED, main
from experiments.output import plots

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def test_a_diverging_run_writes_its_plots_and_exits_3(tmp_path):
    out = tmp_path / "xor"
    assert main(["run", "xor", "--set", "output_activation=identity", "--set", "lr=100",
                 "--out", str(out), "--quiet"]) == EXIT_DIVERGED
    for name in ("loss.png", "grad_diff.png", "weight_drift.png"):
        assert (out / name).read_bytes().startswith(PNG_MAGIC), name


def _run_dir(tmp_path, loss_values, errs):
    steps = np.arange(len(loss_values))
    pd.DataFrame({"step": steps, "loss_manual": loss_values, "loss_torch": loss_values,
                  "abs_diff": np.abs(errs)}).to_csv(tmp_path / "loss.csv", index=False)
    rows = [{"step": s, "param": p, "max_abs_diff": e, "rel_err": e, "rel_tol": 1e-14,
             "weight_max_abs_diff": e} for s, e in zip(steps, errs, strict=True)
            for p in ("layers.0.weight", "layers.1.weight")]
    pd.DataFrame(rows).to_csv(tmp_path / "grads.csv", index=False)
    return tmp_path


def test_inf_nan_and_1e300_are_plotted(tmp_path):
    loss = [1.0, 1e100, 1e300, np.inf, np.nan]
    errs = [0.0, 1e-16, 1e300, np.inf, np.nan]
    written = plots.plot_run(_run_dir(tmp_path, loss, errs))
    assert [p.name for p in written] == ["loss.png", "grad_diff.png", "weight_drift.png"]


def test_exact_zeros_break_the_curve_and_sit_on_the_floor():
    """A curve is broken at every exact 0 (seaborn alone joins the points either side, and
    a synced run's drift, 0 at most steps, read as a constant); a value alone between
    zeros is a dot; the zeros are x marks on the floor a decade below."""
    data = pd.DataFrame({"step": [0, 1, 2, 3, 4, 5, 6], "param": "w",
                         "abs_diff": [1e-17, 0.0, 2e-17, 3e-17, 0.0, 0.0, 4e-17]})
    fig = plots._log_line_figure(data, y="abs_diff", hue="param", title="t", ylabel="y")
    ax = fig.axes[0]
    floor = 1e-18                                    # a decade below the smallest non-zero

    def on_floor(y):
        return np.allclose(np.asarray(y, float), floor, rtol=1e-9, atol=0)
    pieces = [list(line.get_xdata()) for line in ax.get_lines()      # not the floor line
              if len(line.get_xdata()) > 1 and not on_floor(line.get_ydata())]
    assert pieces == [[2, 3]], pieces                # the one stretch without a zero
    points = [c.get_offsets() for c in ax.collections if isinstance(c, PathCollection)]
    dots = [p for p in points if not on_floor(p[:, 1])]
    zeros = [p for p in points if on_floor(p[:, 1])]
    assert len(dots) == 1 and sorted(dots[0][:, 0]) == [0, 6]
    assert len(zeros) == 1 and sorted(zeros[0][:, 0]) == [1, 4, 5]
    assert "3 of 7 values exactly 0" in ax.get_title()


def test_grad_diff_shows_rel_err_against_its_tolerance(tmp_path):
    d = _run_dir(tmp_path, [1.0, 0.9, 0.8], [1e-16, 2e-16, 3e-16])
    grads = pd.read_csv(d / "grads.csv")
    ax = plots._verdict_figure(grads).axes[0]
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert "rel_err" in labels and "rel_tol" in labels
    heights = {round(float(np.nanmax(line.get_ydata())), 30) for line in ax.get_lines()
               if len(line.get_xdata()) == 3}
    assert 1e-14 in heights and 3e-16 in heights


def test_grad_diff_counts_zeros_among_rel_err_only(tmp_path):
    """grad_diff.png says how many rel_err values are exactly 0 out of the rel_err values:
    rel_tol, drawn beside them, is never 0 and is not counted (it was: "3 of 4004")."""
    d = _run_dir(tmp_path, [1.0, 0.9, 0.8], [0.0, 2e-16, 3e-16])
    ax = plots._verdict_figure(pd.read_csv(d / "grads.csv")).axes[0]
    assert "2 of 6 rel_err values exactly 0" in ax.get_title(), ax.get_title()
