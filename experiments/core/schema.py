"""Every CSV handgrad writes: its file name and its columns, in order.

One module so that a new column is added in one place; tests/test_schema.py pins each
list against a literal copy. Columns are only ever added, never renamed or reordered.
"""

# run directory (experiments.core.runner): loss.csv, grads.csv, summary.csv
LOSS_COLUMNS = ["step", "epoch", "loss_manual", "loss_torch", "abs_diff", "rel_diff",
                "examples_seen",
                # rel_diff's rounding bound; the loss code judged at the same weights (the
                # manual loss at the torch side's weights, = loss_manual when synced), its
                # rel_diff against loss_torch and that one's bound
                "rel_tol", "probe_loss", "loss_rel_diff", "loss_rel_tol"]
#: loss.csv column -> its index in the runner's preallocated rows (steps × columns)
LOSS_INDEX = {name: i for i, name in enumerate(LOSS_COLUMNS)}
GRAD_METRICS = ["max_abs_diff", "rel_err", "cosine", "norm_manual", "norm_torch",
                "weight_max_abs_diff", "fd_rel_err", "ref_rel_err_manual", "ref_rel_err_torch",
                "rel_tol",
                # the gradient code judged at the same weights (= rel_err, rel_tol when synced;
                # in free mode the manual code evaluated at the torch side's weights)
                "gradient_rel_err", "gradient_rel_tol",
                # the update judged: manual's step against torch.optim.SGD's on the same
                # weights, gradients and momentum buffers, and its one-update rounding bound
                "update_max_abs_diff", "update_tol", "weight_max_abs"]
GRAD_COLUMNS = ["step", "epoch", "param", *GRAD_METRICS]
#: grads.csv metric -> its index in the runner's preallocated rows (steps × params × metrics)
GRAD_INDEX = {name: i for i, name in enumerate(GRAD_METRICS)}
#: rel_err, tolerance and worst_ratio are taken at worst_step (gradient_rel_err and
#: gradient_rel_tol there); every other column is a maximum (minimum) over the logged steps.
#: Rows: each trainable parameter, then ``loss`` (loss.csv's loss_rel_diff / loss_rel_tol
#: in place of the gradient's columns), then ``all``
SUMMARY_COLUMNS = ["param", "max_abs_diff", "rel_err", "worst_step", "min_cosine",
                   "weight_max_abs_diff", "fd_rel_err", "tolerance", "verdict", "worst_ratio",
                   "max_rel_err", "drift_ratio", "update_ratio"]

#: grad_entries.csv: every gradient entry of both sides at every logged step (small
#: networks, or on request): the config's key and (row, col) index, and the course
#: notebooks' name of the same entry (W{i+1} = layers.{i}.weightᵀ, b{i+1})
GRAD_ENTRY_COLUMNS = ["step", "epoch", "param", "row", "col", "w1b1", "grad_manual",
                      "grad_torch", "abs_diff"]
#: grad_entries.csv is written by default when it has at most this many rows (gradient
#: entries × logged steps): the seed case's 16 weights at all 10,001 steps fit (160,016
#: rows, about 17 MB of CSV); the digits network's 2,260 entries at 229 steps do not
GRAD_ENTRIES_MAX_ROWS = 200_000

# bug gallery: bugs.csv
BUGS_COLUMNS = ["bug", "step", "param", "rel_err", "rel_tol", "max_abs_diff", "cosine", "ratio",
                "ratio_residual", "verdict", "diagnosis", "detail"]

# explain: explain --format csv, update orders
EXPLAIN_COLUMNS = ["section", "param", "term", "value", "autograd", "diff"]
UPDATE_ORDER_COLUMNS = ["figure", "published", "digits", "step", "simultaneous", "sequential",
                        "autograd_sgd", "matches", "note"]

# studies: arms.csv of every study ends with AGREEMENT_COLUMNS
AGREEMENT_COLUMNS = ["lockstep_mode", "status", "steps_done", "rel_err", "worst_ratio",
                     "verdict", "weight_max_abs_diff", "loss_abs_diff", "replay_max_abs_diff",
                     "loss_worst_ratio"]
CURVE_COLUMNS = ["mode", "batch_size", "step", "epoch", "examples_seen", "loss_manual",
                 "loss_torch", "full_loss"]
BATCH_ARMS_COLUMNS = ["mode", "batch_size", "lr", "epochs", "steps", "steps_per_epoch",
                      "final_full_loss", "full_loss_at_equal_steps", "frac_updates_up",
                      "batch_loss_noise", *AGREEMENT_COLUMNS]
LR_CURVE_COLUMNS = ["output_activation", "lr", "step", "loss_manual", "loss_torch"]
LR_ARMS_COLUMNS = ["output_activation", "lr", "regime", "diverged_step", "initial_loss",
                   "final_loss", "min_loss", "frac_updates_up", "sharpness_final",
                   "free_weight_max_abs_diff", "free_worst_ratio", "free_verdict",
                   *AGREEMENT_COLUMNS]
CV_INITS_COLUMNS = ["model", "init", "init_seed", "objective", "loss", "grad_norm",
                    "grad_rounding", "weight_norm", "hessian_min_eig", "minimum",
                    *AGREEMENT_COLUMNS]
CV_PAIRS_COLUMNS = ["model", "init_a", "init_b", "same_minimum", "objective_diff",
                    "weight_distance", "aligned_distance", "function_distance", "tolerance"]
SPARSE_ZERO_COLUMNS = ["lr", "batch_size", "step", "active_features", "zeros_first_layer",
                       "entries_first_layer", "zeros_all", "entries_all"]
SPARSE_MOVE_COLUMNS = ["lr", "batch_size", "feature", "frequency", "steps_touched",
                       "delta_norm"]
SPARSE_ARMS_COLUMNS = ["lr", "batch_size", "steps", "zero_frac_first_layer", "zero_frac_all",
                       "rare_move", "common_move", "rare_common_ratio", "rank_corr",
                       "rare_move_per_touch", "common_move_per_touch",
                       *AGREEMENT_COLUMNS]
DRIFT_COLUMNS = ["mode", "step", "param", "weight_max_abs_diff", "rel_err", "rel_tol",
                 "ref_rel_err_manual", "ref_rel_err_torch", "rounding_ratio"]
DRIFT_ARMS_COLUMNS = ["mode", "steps", "first_weight_diff", "final_weight_diff",
                      "max_weight_scale", "median_rel_err", "max_rel_err",
                      "median_rounding_ratio", "max_rounding_ratio", "frac_rounding_exceeded",
                      "median_ref_manual",
                      "median_ref_torch", "frac_manual_closer", "frac_torch_closer",
                      "first_vacuous_step", "frac_vacuous", "final_loss_abs_diff",
                      *AGREEMENT_COLUMNS]

# sweep: sweep.csv
SWEEP_COLUMNS = ["point", "status", "final_loss_manual", "final_loss_torch", "worst_rel_err",
                 "worst_ratio", "verdict", "steps_done", "seconds", "message", "loss_worst_ratio"]

# bench: bench.csv
BENCH_COLUMNS = ("case", "impl", "library", "device", "dtype", "batch", "sizes", "flops",
                 "seconds_per_step", "seconds_q25", "seconds_q75", "seconds_min", "seconds_max",
                 "us_per_step", "gflops_per_s", "ratio_to_floor", "ratio_to_floor_q25",
                 "ratio_to_floor_q75", "ratio_to_autograd", "numpy_calls_per_step",
                 "numpy_calls_per_layer", "numpy_call_us", "repeats", "steps_per_repeat",
                 "threads", "clock")

# check: initial.csv (one row per call × parameter at the initial point); grade: grades.csv
CHECK_COLUMNS = ["call", "param", "key", "rel_err", "rel_tol", "fd_rel_err", "max_abs_diff",
                 "ratio", "verdict", "kind"]
GRADE_COLUMNS = ["student", "file", "config", "status", "score", "max_score", "diagnosis",
                 "mistake", "first_param", "worst_rel_err", "worst_ratio", "seconds",
                 "message", "flags", "sha256", "grad_sha256"]
