"""experiments.teaching.studies: every gradient-descent lesson runs (quick) and writes its folder;
the lessons' claims hold in the numbers they write.

Each study runs once per module (quick=True, a few seconds each) into a tmp folder; the
tests then read the CSVs back, as a user would.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from matplotlib.image import imread

import experiments.teaching.studies as studies
from experiments.core import schema
from experiments.core.config import ConfigError
from experiments.teaching.studies import STUDIES, run_study

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

# name -> {csv file: columns it must have, in this order}
EXPECTED_CSVS = {
    "batch-modes": {"curves.csv": schema.CURVE_COLUMNS,
                    "arms.csv": schema.BATCH_ARMS_COLUMNS},
    "learning-rate": {"curves.csv": schema.LR_CURVE_COLUMNS,
                      "arms.csv": schema.LR_ARMS_COLUMNS},
    "convex-vs-nonconvex": {"inits.csv": schema.CV_INITS_COLUMNS,
                            "pairs.csv": schema.CV_PAIRS_COLUMNS,
                            "weights.csv": ["model", "init", "index", "param", "initial",
                                            "final"],
                            "slices_1d.csv": ["model", "slice", "t", "objective"],
                            "gd_1d.csv": ["model", "slice", "start", "k", "t", "objective"],
                            "slice_2d.csv": ["model", "plane", "a", "b", "objective"]},
    "sparse-features": {"zeros.csv": schema.SPARSE_ZERO_COLUMNS,
                        "movement.csv": schema.SPARSE_MOVE_COLUMNS,
                        "arms.csv": schema.SPARSE_ARMS_COLUMNS},
    "float32-drift-lesson": {"drift.csv": schema.DRIFT_COLUMNS,
                             "arms.csv": schema.DRIFT_ARMS_COLUMNS},
}
# every study's per-arm table records how manual and torch compared
AGREEMENT_CSV = {"batch-modes": "arms.csv", "learning-rate": "arms.csv",
                 "convex-vs-nonconvex": "inits.csv", "sparse-features": "arms.csv",
                 "float32-drift-lesson": "arms.csv"}


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    """Every study, quick, each into its own folder (run once for the whole module)."""
    root = tmp_path_factory.mktemp("studies")
    return {name: run_study(name, root / name, quick=True) for name in STUDIES}


def read(folder, name) -> pd.DataFrame:
    return pd.read_csv(folder / name)


def assert_real_png(path):
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC, f"{path.name} is not a PNG"
    image = imread(path)                                     # (H, W, 4) floats
    assert image.shape[0] > 50 and image.shape[1] > 50, image.shape
    flat = image.reshape(-1, image.shape[-1])
    assert (flat != flat[0]).any(), f"{path.name} is a single colour"


def test_registry_lists_the_five_studies():
    assert list(STUDIES) == ["batch-modes", "learning-rate", "convex-vs-nonconvex",
                             "sparse-features", "float32-drift-lesson"]
    for name, (description, fn) in STUDIES.items():
        assert description and "\n" not in description, name
        assert callable(fn)


@pytest.mark.parametrize("name", list(EXPECTED_CSVS))
def test_study_writes_csvs_pngs_and_report(folders, name):
    folder = folders[name]
    assert folder.is_dir()
    assert not list(folder.parent.glob(f".{name}.tmp-*")), "temporary folder left behind"
    for csv, columns in EXPECTED_CSVS[name].items():
        frame = read(folder, csv)
        assert list(frame.columns) == list(columns), csv
        assert len(frame) > 0, csv
    pngs = sorted(folder.glob("*.png"))
    assert pngs, "no figures"
    report = (folder / "report.md").read_text(encoding="utf-8")
    assert report.startswith(f"# handgrad study: {name}")
    for section in ("## What ran", "## Numbers", "## What one sees"):
        assert section in report
    for png in pngs:
        assert_real_png(png)
        assert f"![{png.name}]({png.name})" in report, f"{png.name} not embedded"


@pytest.mark.parametrize("name", list(AGREEMENT_CSV))
def test_every_arm_records_manual_vs_torch_agreement(folders, name):
    arms = read(folders[name], AGREEMENT_CSV[name])
    assert set(schema.AGREEMENT_COLUMNS) <= set(arms.columns)
    # Every arm was compared at some step; the verdicts are the runner's own words.
    assert set(arms["verdict"]) <= {"exact", "agree", "differ"}
    assert arms["rel_err"].notna().all()
    # The studies run in synced mode (float32-drift-lesson: one free, one synced), so each
    # step's gradients are compared at the same weights: they must agree in every arm.
    synced = arms[arms["lockstep_mode"] == "synced"]
    assert len(synced) > 0
    assert (synced["verdict"] != "differ").all(), synced[["verdict", "worst_ratio"]]


def test_learning_rate_has_a_converged_and_a_diverged_arm(folders):
    arms = read(folders["learning-rate"], "arms.csv")
    diverged = arms[arms["status"] == "diverged"]
    converged = arms[(arms["status"] == "completed")
                     & (arms["final_loss"] < arms["initial_loss"] / 100)]
    assert len(diverged) >= 1 and len(converged) >= 1, arms[["lr", "status", "final_loss"]]
    # divergence is recorded with its step, and the curve stops there (not a crash)
    assert diverged["regime"].eq("diverged").all()
    assert diverged["diverged_step"].notna().all()
    curves = read(folders["learning-rate"], "curves.csv")
    for arm in diverged.itertuples():
        curve = curves[(curves["lr"] == arm.lr)
                       & (curves["output_activation"] == arm.output_activation)]
        assert curve["step"].max() == arm.diverged_step
    assert arms.loc[arms["status"] == "completed", "diverged_step"].isna().all()


def test_convex_logistic_inits_agree_hidden_inits_do_not(folders):
    folder = folders["convex-vs-nonconvex"]
    pairs = read(folder, "pairs.csv")
    inits = read(folder, "inits.csv")
    logistic = pairs[pairs["model"] == "logistic"]
    hidden = pairs[pairs["model"] == "hidden"]
    # Logistic regression + weight decay λ is λ-strongly convex, so any end point w lies
    # within ‖∇F(w)‖/λ of the one minimiser; two end points within the sum of those radii
    # (each gradient norm taken with its own rounding bound added). That is `tolerance`,
    # computed by the study from the measured final gradients — not a chosen number.
    assert (logistic["weight_distance"] <= logistic["tolerance"]).all(), logistic
    assert logistic["tolerance"].max() < 1e-6   # the bound is tight: GD has converged
    assert inits.loc[inits["model"] == "logistic", "minimum"].eq(0).all()
    # The hidden-layer net: final weights differ far beyond that bound, and not only by
    # relabelling the hidden units: at least two minima with different objective values.
    assert hidden["weight_distance"].max() > 1e6 * logistic["tolerance"].max()
    assert inits.loc[inits["model"] == "hidden", "minimum"].nunique() >= 2
    other = hidden[~hidden["same_minimum"]]
    assert (other["aligned_distance"] > 1e6 * logistic["tolerance"].max()).all()
    # ... and its slices are not convex: F rises between two minima.
    slices = read(folder, "slices_1d.csv")
    seg = slices[(slices["model"] == "hidden") & slices["slice"].str.startswith("to-")
                 & slices["t"].between(0, 1)]
    for _, part in seg.groupby("slice"):
        ends = max(part["objective"].iloc[0], part["objective"].iloc[-1])
        assert part["objective"].max() > ends


def test_convex_gd_on_a_slice_descends(folders):
    gd = read(folders["convex-vs-nonconvex"], "gd_1d.csv")
    for _, run in gd.groupby(["model", "slice", "start"]):
        values = run.sort_values("k")["objective"].to_numpy()
        # η = 1/max φ'': the descent lemma gives φ(t_{k+1}) ≤ φ(t_k) on the slice; allow
        # rounding of F (a mean of 200 terms ~0.3: ≤ 1e-13).
        assert np.all(np.diff(values) <= 1e-13), values


def test_sparse_rare_features_move_less(folders):
    folder = folders["sparse-features"]
    moves = read(folder, "movement.csv")
    for (lr, batch), arm in moves.groupby(["lr", "batch_size"]):
        arm = arm.sort_values("frequency", kind="stable")
        rare = arm["delta_norm"].iloc[:studies.N_EDGE].mean()
        common = arm["delta_norm"].iloc[-studies.N_EDGE:].mean()
        assert rare < common, (lr, batch, rare, common)
    arms = read(folder, "arms.csv")
    assert (arms["rare_common_ratio"] < 1).all()


def test_sparse_zero_gradients_are_counted_exactly(folders):
    folder = folders["sparse-features"]
    zeros = read(folder, "zeros.csv")
    moves = read(folder, "movement.csv")
    H = 8
    # A first-layer column is exactly 0 iff its feature is off in every row of the batch:
    # zeros = H × (D − active features), at every step (sigmoid deltas are never 0 here).
    assert (zeros["zeros_first_layer"]
            == H * (20 - zeros["active_features"])).all()
    one = zeros[zeros["batch_size"] == 1]
    full = zeros[zeros["batch_size"] == zeros["batch_size"].max()]
    assert (one["zeros_first_layer"] / one["entries_first_layer"]).mean() > 0.5
    absent = int((moves.groupby("feature")["frequency"].first() == 0).sum())
    assert (full["zeros_first_layer"] == H * absent).all()


def test_float32_drift_lesson_free_parts_ways_synced_does_not(folders):
    arms = read(folders["float32-drift-lesson"], "arms.csv").set_index("mode")
    free, synced = arms.loc["free"], arms.loc["synced"]
    assert free["final_weight_diff"] > free["first_weight_diff"]
    assert free["weight_max_abs_diff"] > synced["weight_max_abs_diff"]
    # synced: both sides round one float64 gradient r at the same weights, so
    # ‖g_m − g_t‖ ≤ ‖g_m − r‖ + ‖r − g_t‖ (triangle inequality). rel_err divides by
    # max(‖g_m‖, ‖g_t‖), each ref error by max(‖g_side‖, ‖r‖), which is larger by at most
    # a factor 1 + (that side's ref error): so rounding_ratio ≤ 1 + max ref error, per row.
    drift = read(folders["float32-drift-lesson"], "drift.csv")
    rows = drift[drift["mode"] == "synced"].dropna(subset=["rounding_ratio"])
    bound = 1 + rows[["ref_rel_err_manual", "ref_rel_err_torch"]].max(axis=1)
    assert (rows["rounding_ratio"] <= bound * (1 + 1e-12)).all()
    assert synced["max_rounding_ratio"] == rows["rounding_ratio"].max()
    # the replay of the manual side reproduces the free run's loss bit for bit
    assert free["replay_max_abs_diff"] == 0.0


def test_existing_folder_is_refused_without_force(tmp_path):
    out = tmp_path / "taken"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    for name in STUDIES:   # refused before any work is done
        with pytest.raises(ConfigError, match="already exists"):
            run_study(name, out, quick=True)
    assert (out / "keep.txt").read_text() == "mine"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["taken"]


def test_force_replaces_the_folder(tmp_path):
    out = tmp_path / "sparse"
    out.mkdir()
    (out / "old.txt").write_text("old")
    run_study("sparse-features", out, quick=True, force=True)
    assert not (out / "old.txt").exists()
    assert (out / "report.md").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sparse"]


def test_failure_leaves_nothing_behind(tmp_path, monkeypatch):
    def boom(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(studies, "run_experiment", boom)
    with pytest.raises(RuntimeError, match="boom"):
        run_study("convex-vs-nonconvex", tmp_path / "cv", quick=True)
    assert list(tmp_path.iterdir()) == []


def test_unknown_study_name_is_one_clear_error(tmp_path):
    with pytest.raises(ConfigError, match="did you mean 'batch-modes'"):
        run_study("batch-mode", tmp_path / "x")
    assert list(tmp_path.iterdir()) == []
