"""experiments.output.plots: figures from synthetic run directories (no training involved).

Two params as in a 2-3 network's first layer: layers.0.weight (3, 2) and layers.0.bias (3,).
The float64-like run has exact zeros (bit-identical steps) and an all-empty reference column;
the float32-like run has no zeros and both reference columns filled.
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest
from matplotlib.image import imread

from experiments.output.plots import plot_compare, plot_run

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
SHAPES = {"layers.0.weight": (3, 2), "layers.0.bias": (3,)}
STEPS = 6


def write_run(run_dir, *, dtype: str, with_final: bool = True):
    """Write loss.csv, grads.csv, final_grads.csv (optional) with the runner's schemas."""
    run_dir.mkdir(parents=True)
    rng = np.random.default_rng(0 if dtype == "float64" else 1)
    scale = 1e-16 if dtype == "float64" else 1e-7
    step = np.arange(STEPS)
    loss_manual = 0.7 * np.exp(-0.3 * step)
    loss_torch = loss_manual + scale * rng.random(STEPS)
    if dtype == "float64":
        loss_torch[:2] = loss_manual[:2]  # bit-identical early steps
    pd.DataFrame(
        {
            "step": step,
            "epoch": step // 3,
            "examples_seen": (step + 1) * 4,
            "loss_manual": loss_manual,
            "loss_torch": loss_torch,
            "abs_diff": np.abs(loss_manual - loss_torch),
            "rel_diff": np.abs(loss_manual - loss_torch) / loss_manual,
        }
    ).to_csv(run_dir / "loss.csv", index=False)

    params = list(SHAPES)
    n = STEPS * len(params)
    max_abs = scale * rng.random(n) * np.repeat(1.0 + step, len(params))
    weight = scale * rng.random(n)
    if dtype == "float64":
        max_abs[:3] = 0.0  # step 0 both params, step 1 weight: identical gradients
        weight[:2] = 0.0
    grads = pd.DataFrame(
        {
            "step": np.repeat(step, len(params)),
            "epoch": np.repeat(step // 3, len(params)),
            "param": np.tile(params, STEPS),
            "max_abs_diff": max_abs,
            "rel_err": max_abs * 10,
            "cosine": 1.0 - max_abs,
            "norm_manual": 1.0,
            "norm_torch": 1.0,
            "weight_max_abs_diff": weight,
            "fd_rel_err": 1e-9,
            "ref_rel_err_manual": np.nan,
            "ref_rel_err_torch": np.nan,
        }
    )
    if dtype == "float32":
        grads["ref_rel_err_manual"] = 3e-8 * rng.random(n) + 1e-8
        grads["ref_rel_err_torch"] = 5e-8 * rng.random(n) + 1e-8
    grads.to_csv(run_dir / "grads.csv", index=False)

    if with_final:
        frames = []
        for param, shape in SHAPES.items():
            rows, cols = np.indices(shape if len(shape) == 2 else (*shape, 1))
            g = rng.normal(size=rows.size)
            diff = scale * rng.random(rows.size)
            if dtype == "float64":
                diff[::2] = 0.0
            frames.append(
                pd.DataFrame(
                    {
                        "param": param,
                        "row": rows.ravel(),
                        "col": cols.ravel(),
                        "grad_manual": g,
                        "grad_torch": g + diff,
                        "abs_diff": diff,
                    }
                )
            )
        pd.concat(frames).to_csv(run_dir / "final_grads.csv", index=False)
    return run_dir


def assert_real_png(path):
    """A non-empty PNG that decodes to an image with more than one colour."""
    assert path.is_file(), path
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC, f"{path.name} is not a PNG"
    image = imread(path)  # (H, W, 4) floats
    assert image.ndim == 3 and image.shape[0] > 50 and image.shape[1] > 50, image.shape
    flat = image.reshape(-1, image.shape[-1])
    assert (flat != flat[0]).any(), f"{path.name} is a single colour"


def test_plot_run_float64_like(tmp_path):
    run = write_run(tmp_path / "float64", dtype="float64")
    paths = plot_run(run)
    names = [p.name for p in paths]
    # ref columns entirely empty -> no float64_reference.png
    assert names == ["loss.png", "grad_diff.png", "weight_drift.png", "grad_heatmap.png"]
    assert not (run / "float64_reference.png").exists()
    for path in paths:
        assert path.parent == run
        assert_real_png(path)


def test_plot_run_float32_like_writes_reference_plot(tmp_path):
    run = write_run(tmp_path / "float32", dtype="float32")
    paths = plot_run(str(run))  # str accepted as well as Path
    assert [p.name for p in paths][-1] == "float64_reference.png"
    assert len(paths) == 5
    for path in paths:
        assert_real_png(path)


def test_plot_run_all_zero_differences(tmp_path):
    """Bit-identical everywhere: every log plot still draws (at the floor), nothing crashes."""
    run = write_run(tmp_path / "identical", dtype="float64")
    for name, cols in [
        ("loss.csv", ["abs_diff", "rel_diff"]),
        ("grads.csv", ["max_abs_diff", "rel_err", "weight_max_abs_diff"]),
        ("final_grads.csv", ["abs_diff"]),
    ]:
        frame = pd.read_csv(run / name)
        frame[cols] = 0.0
        frame.to_csv(run / name, index=False)
    for path in plot_run(run):
        assert_real_png(path)


def test_plot_run_skips_missing_final_grads(tmp_path):
    run = write_run(tmp_path / "run", dtype="float64", with_final=False)
    names = [p.name for p in plot_run(run)]
    assert "grad_heatmap.png" not in names
    assert not (run / "grad_heatmap.png").exists()
    assert names == ["loss.png", "grad_diff.png", "weight_drift.png"]


@pytest.mark.parametrize("missing", ["loss.csv", "grads.csv"])
def test_plot_run_missing_csv_names_directory(tmp_path, missing):
    run = write_run(tmp_path / "broken", dtype="float64")
    (run / missing).unlink()
    with pytest.raises(FileNotFoundError, match=re.escape(missing)) as info:
        plot_run(run)
    assert str(run) in str(info.value)
    assert not list(run.glob("*.png")), "no figures written for an unreadable run"


def test_plot_run_missing_column_is_value_error(tmp_path):
    run = write_run(tmp_path / "run", dtype="float64")
    pd.read_csv(run / "grads.csv").drop(columns="max_abs_diff").to_csv(
        run / "grads.csv", index=False
    )
    with pytest.raises(ValueError, match="max_abs_diff"):
        plot_run(run)


def test_plot_compare(tmp_path):
    run_a = write_run(tmp_path / "float64", dtype="float64")
    run_b = write_run(tmp_path / "float32", dtype="float32")
    out = tmp_path / "compare" / "nested"  # created if absent
    paths = plot_compare(run_a, run_b, out)
    assert [p.name for p in paths] == ["compare_loss.png", "compare_grads.png"]
    for path in paths:
        assert path.parent == out
        assert_real_png(path)


def test_plot_compare_missing_run(tmp_path):
    run_a = write_run(tmp_path / "a", dtype="float64")
    with pytest.raises(FileNotFoundError, match=re.escape("loss.csv")):
        plot_compare(run_a, tmp_path / "nope", tmp_path / "out")
