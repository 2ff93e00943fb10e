"""experiments.core.schema and the CSV headers a run directory really has.

Every column list is pinned against a literal copy written here (docs/csv-schema.md): a
renamed, dropped or reordered column fails here first, and a new column must be added to
both places on purpose. Headers of real files are compared with literal lists too, never
with the module's own constants.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from experiments.core import schema
from experiments.core.config import load_config
from experiments.core.runner import run_experiment
from experiments.output.rundir import write_run

AGREEMENT = ["lockstep_mode", "status", "steps_done", "rel_err", "worst_ratio", "verdict",
             "weight_max_abs_diff", "loss_abs_diff", "replay_max_abs_diff", "loss_worst_ratio"]

LOSS = ["step", "epoch", "loss_manual", "loss_torch", "abs_diff", "rel_diff", "examples_seen",
        "rel_tol", "probe_loss", "loss_rel_diff", "loss_rel_tol"]
GRAD_METRICS = ["max_abs_diff", "rel_err", "cosine", "norm_manual", "norm_torch",
                "weight_max_abs_diff", "fd_rel_err", "ref_rel_err_manual", "ref_rel_err_torch",
                "rel_tol", "gradient_rel_err", "gradient_rel_tol", "update_max_abs_diff",
                "update_tol", "weight_max_abs"]
GRADS = ["step", "epoch", "param", "max_abs_diff", "rel_err", "cosine", "norm_manual",
         "norm_torch", "weight_max_abs_diff", "fd_rel_err", "ref_rel_err_manual",
         "ref_rel_err_torch", "rel_tol", "gradient_rel_err", "gradient_rel_tol",
         "update_max_abs_diff", "update_tol", "weight_max_abs"]
SUMMARY = ["param", "max_abs_diff", "rel_err", "worst_step", "min_cosine",
           "weight_max_abs_diff", "fd_rel_err", "tolerance", "verdict", "worst_ratio",
           "max_rel_err", "drift_ratio", "update_ratio"]

#: every list in experiments.core.schema, copied by hand
PINNED = {
    "LOSS_COLUMNS": LOSS,
    "GRAD_METRICS": GRAD_METRICS,
    "GRAD_COLUMNS": GRADS,
    "GRAD_ENTRY_COLUMNS": ["step", "epoch", "param", "row", "col", "w1b1", "grad_manual",
                           "grad_torch", "abs_diff"],
    "SUMMARY_COLUMNS": SUMMARY,
    "BUGS_COLUMNS": ["bug", "step", "param", "rel_err", "rel_tol", "max_abs_diff", "cosine",
                     "ratio", "ratio_residual", "verdict", "diagnosis", "detail"],
    "EXPLAIN_COLUMNS": ["section", "param", "term", "value", "autograd", "diff"],
    "UPDATE_ORDER_COLUMNS": ["figure", "published", "digits", "step", "simultaneous",
                             "sequential", "autograd_sgd", "matches", "note"],
    "AGREEMENT_COLUMNS": AGREEMENT,
    "CURVE_COLUMNS": ["mode", "batch_size", "step", "epoch", "examples_seen", "loss_manual",
                      "loss_torch", "full_loss"],
    "BATCH_ARMS_COLUMNS": ["mode", "batch_size", "lr", "epochs", "steps", "steps_per_epoch",
                           "final_full_loss", "full_loss_at_equal_steps", "frac_updates_up",
                           "batch_loss_noise", *AGREEMENT],
    "LR_CURVE_COLUMNS": ["output_activation", "lr", "step", "loss_manual", "loss_torch"],
    "LR_ARMS_COLUMNS": ["output_activation", "lr", "regime", "diverged_step", "initial_loss",
                        "final_loss", "min_loss", "frac_updates_up", "sharpness_final",
                        "free_weight_max_abs_diff", "free_worst_ratio", "free_verdict",
                        *AGREEMENT],
    "CV_INITS_COLUMNS": ["model", "init", "init_seed", "objective", "loss", "grad_norm",
                         "grad_rounding", "weight_norm", "hessian_min_eig", "minimum",
                         *AGREEMENT],
    "CV_PAIRS_COLUMNS": ["model", "init_a", "init_b", "same_minimum", "objective_diff",
                         "weight_distance", "aligned_distance", "function_distance",
                         "tolerance"],
    "CHECK_COLUMNS": ["call", "param", "key", "rel_err", "rel_tol", "fd_rel_err",
                      "max_abs_diff", "ratio", "verdict", "kind"],
    "GRADE_COLUMNS": ["student", "file", "config", "status", "score", "max_score",
                      "diagnosis", "mistake", "first_param", "worst_rel_err", "worst_ratio",
                      "seconds", "message", "flags", "sha256", "grad_sha256"],
    "SPARSE_ZERO_COLUMNS": ["lr", "batch_size", "step", "active_features",
                            "zeros_first_layer", "entries_first_layer", "zeros_all",
                            "entries_all"],
    "SPARSE_MOVE_COLUMNS": ["lr", "batch_size", "feature", "frequency", "steps_touched",
                            "delta_norm"],
    "SPARSE_ARMS_COLUMNS": ["lr", "batch_size", "steps", "zero_frac_first_layer",
                            "zero_frac_all", "rare_move", "common_move", "rare_common_ratio",
                            "rank_corr", "rare_move_per_touch", "common_move_per_touch",
                            *AGREEMENT],
    "DRIFT_COLUMNS": ["mode", "step", "param", "weight_max_abs_diff", "rel_err", "rel_tol",
                      "ref_rel_err_manual", "ref_rel_err_torch", "rounding_ratio"],
    "DRIFT_ARMS_COLUMNS": ["mode", "steps", "first_weight_diff", "final_weight_diff",
                           "max_weight_scale", "median_rel_err", "max_rel_err",
                           "median_rounding_ratio", "max_rounding_ratio",
                           "frac_rounding_exceeded", "median_ref_manual", "median_ref_torch",
                           "frac_manual_closer", "frac_torch_closer", "first_vacuous_step",
                           "frac_vacuous", "final_loss_abs_diff", *AGREEMENT],
    "SWEEP_COLUMNS": ["point", "status", "final_loss_manual", "final_loss_torch",
                      "worst_rel_err", "worst_ratio", "verdict", "steps_done", "seconds",
                      "message", "loss_worst_ratio"],
    "BENCH_COLUMNS": ["case", "impl", "library", "device", "dtype", "batch", "sizes", "flops",
                      "seconds_per_step", "seconds_q25", "seconds_q75", "seconds_min",
                      "seconds_max", "us_per_step", "gflops_per_s", "ratio_to_floor",
                      "ratio_to_floor_q25", "ratio_to_floor_q75", "ratio_to_autograd",
                      "numpy_calls_per_step", "numpy_calls_per_layer", "numpy_call_us",
                      "repeats", "steps_per_repeat", "threads", "clock"],
}

#: a run directory's CSVs, header by header
RUN_CSVS = {
    "loss.csv": LOSS,
    "grads.csv": GRADS,
    "summary.csv": [*SUMMARY, "diagnosis"],
    "final_grads.csv": ["param", "row", "col", "grad_manual", "grad_torch", "abs_diff"],
    "grad_entries.csv": ["step", "epoch", "param", "row", "col", "w1b1", "grad_manual",
                         "grad_torch", "abs_diff"],        # a small network: written
    "predictions.csv": ["sample", "output", "manual", "torch", "abs_diff"],
    "diagnosis.csv": ["kind", "params", "detail", "c", "residual", "rel_err", "layer",
                      "enters_at", "step"],
}


def test_every_schema_list_is_pinned():
    # a list added to the module without a pinned copy here fails this test
    lists = {name for name, v in vars(schema).items()
             if name.isupper() and isinstance(v, list | tuple)}
    assert lists == set(PINNED)


@pytest.mark.parametrize("name", sorted(PINNED))
def test_schema_list_equals_its_literal_copy(name):
    got = getattr(schema, name)
    assert list(got) == PINNED[name]
    assert len(set(got)) == len(got), f"{name} repeats a column"


def header(path) -> list[str]:
    return path.read_text(encoding="utf-8").splitlines()[0].split(",")


@pytest.mark.parametrize("name", sorted(RUN_CSVS))
def test_run_directory_csv_headers(iris_run, name):
    _, out = iris_run
    assert header(out / name) == RUN_CSVS[name]


def test_the_run_directory_writes_exactly_these_csvs(iris_run):
    _, out = iris_run
    assert sorted(p.name for p in out.glob("*.csv")) == sorted(RUN_CSVS)


def test_a_diverged_run_writes_the_same_headers(tmp_path):
    # weights 100 on an identity network at lr 1e307: step 0's update overflows
    init = tmp_path / "w100.json"
    init.write_text(json.dumps({"layers.0.weight": np.full((4, 3), 100.0).tolist(),
                                "layers.1.weight": np.full((1, 4), 100.0).tolist()}))
    r = run_experiment(load_config("seed", ["steps=2", "lr=1e307", "activation=identity",
                                            f"init={init}"]))
    assert r.status == "diverged"
    out = write_run(r, tmp_path / "D", plots=False)
    assert sorted(p.name for p in out.glob("*.csv")) == sorted(RUN_CSVS)
    for name, columns in RUN_CSVS.items():
        assert header(out / name) == columns, name
