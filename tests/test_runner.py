"""experiments.core.runner: lockstep semantics through ``run_experiment`` (free vs synced,
mini-batches, the logged steps), the summary, divergence, the finite-difference and
float64 witnesses, and exactness where every operation is exact.
Every run here is tiny (a few hundred steps at most). The engine's own loop is
test_engine's; files on disk are test_rundir's and test_schema's.
"""

from __future__ import annotations

import json
import re
from fractions import Fraction

import numpy as np
import pandas as pd
import pytest
import torch

import manual
from experiments.core.config import load_config, named_experiments
from experiments.core.metrics import VERDICTS
from experiments.core.reference import ReferenceSide
from experiments.core.runner import run_experiment
from experiments.output.rundir import write_run

U32 = 2.0**-24  # unit roundoff of float32
#: The fixed float64 bound on manual-vs-autograd rel_err, beside the runner's own rel_tol:
#: u ≈ 1.1e-16 and chains of at most ~10^3 rounded operations in these runs give ≲ 1e-13.
F64_REL = 1e-12


def run(name: str, *overrides: str):
    return run_experiment(load_config(name, list(overrides)))


# -- free vs synced ----------------------------------------------------------------------
#
# XOR, float32, lr 2, 300 full-batch steps, logged every step. In float32 the two sides'
# gradients differ by rounding at every step, so the weights differ after every update.

XOR32 = ("xor", "dtype=float32", "steps=300", "log_every=1", "fd_every=0")


@pytest.fixture(scope="module")
def xor32_synced():
    return run(*XOR32, "mode=synced")


@pytest.fixture(scope="module")
def xor32_free():
    return run(*XOR32, "mode=free")


def one_update_bound(result) -> pd.Series:
    """The most weight_max_abs_diff one SGD update from common weights w can produce.

    Both sides start the step at the same w (synced mode) and apply w' = w − lr·g with their
    own g, each rounded (manual: fl(w − fl(lr·g)); torch: add_ with alpha, fused or not):
        |w'_m − w'_t| ≤ lr·|g_m − g_t| + 2u·|w| + 4u·lr·|g|   (to first order in u),
    so per tensor  ≤ lr·max_abs_diff·(1 + 2u) + 4u·(W + lr·G)  with G = max(‖g_m‖, ‖g_t‖)
    and W ≥ max|w| before the update: |w_s| ≤ max|w_0| + lr·Σ_{t≤s} ‖g_t‖₂, where
    max|w_0| ≤ 1/√fan_in ≤ 1 for the uniform init. The bound holds whatever happened at
    earlier steps: it contains no earlier difference.
    """
    lr = result.config.lr
    g = result.grads
    assert (np.diff(g["step"].unique()) == 1).all(), "needs every step logged"
    G = np.maximum(g["norm_manual"], g["norm_torch"])
    W = 1.0 + lr * g.groupby("param")["norm_torch"].cumsum()
    return lr * g["max_abs_diff"] * (1 + 2 * U32) + 4 * U32 * (W + lr * G)


def test_synced_weight_gap_is_one_update_never_accumulated(xor32_synced):
    r = xor32_synced
    assert r.status == "completed"
    g = r.grads
    bound = one_update_bound(r)
    ratio = g["weight_max_abs_diff"] / bound
    assert (ratio <= 1).all(), (
        f"synced weight gap above one update's rounding at step "
        f"{int(g.loc[ratio.idxmax(), 'step'])}: ratio {ratio.max():.3g}")
    # float32 rounding is real here: the sides are not bit-identical (else the test is moot)
    assert g["weight_max_abs_diff"].max() > 0


def test_free_weight_gap_carries_earlier_differences(xor32_free, xor32_synced):
    # Free mode: e_{s+1} = e_s + lr·(g_m(w_m) − g_t(w_t)) + rounding: each side keeps its own
    # weights, so earlier differences stay in the weights and feed later gradients. The gap
    # is then no longer bounded by a single update (the bound above), and it grows. This is
    # the phenomenon free mode exists to show, not a rounding bound; XOR at lr 2 amplifies
    # it (the network crosses the XOR plateau), which keeps the margins wide.
    g = xor32_free.grads
    ratio = g["weight_max_abs_diff"] / one_update_bound(xor32_free)
    assert ratio.max() > 1
    per_step = g.groupby("step")["weight_max_abs_diff"].max()
    assert per_step.iloc[-100:].max() > per_step.iloc[:10].max()
    assert per_step.max() > xor32_synced.grads["weight_max_abs_diff"].max()


def test_synced_and_free_agree_on_first_step(xor32_free, xor32_synced):
    # Step 0 starts from the one shared init in both modes: identical numbers.
    a = xor32_free.grads[xor32_free.grads["step"] == 0].reset_index(drop=True)
    b = xor32_synced.grads[xor32_synced.grads["step"] == 0].reset_index(drop=True)
    pd.testing.assert_frame_equal(a, b)


# -- the summary ---------------------------------------------------------------------------

def test_summary_rows_and_verdicts():
    r = run("worked-2-2-2", "steps=5", "log_every=1")   # frozen biases: not trainable
    s = r.summary
    assert list(s["param"]) == ["layers.0.weight", "layers.1.weight", "loss", "all"]
    assert set(r.grads["param"]) == {"layers.0.weight", "layers.1.weight"}
    assert set(s["verdict"]) <= set(VERDICTS)
    per = s[~s["param"].isin(["loss", "all"])].set_index("param")
    for k, g in r.grads.groupby("param"):
        assert per.loc[k, "max_abs_diff"] == g["max_abs_diff"].max()
        assert per.loc[k, "rel_err"] == g["rel_err"].max()
        assert per.loc[k, "min_cosine"] == g["cosine"].min()
        assert per.loc[k, "weight_max_abs_diff"] == g["weight_max_abs_diff"].max()
        # the worst step is the one closest to (or furthest past) its own rel_tol
        ratio = g["rel_err"] / g["rel_tol"]
        worst = g.loc[ratio.idxmax()]
        assert per.loc[k, "worst_ratio"] == ratio.max()
        assert per.loc[k, "worst_step"] == worst["step"]
        assert per.loc[k, "tolerance"] == worst["rel_tol"]
        want = ("exact" if g["max_abs_diff"].max() == 0
                else "agree" if ratio.max() <= 1 else "differ")
        assert per.loc[k, "verdict"] == want
    all_row = s[s["param"] == "all"].iloc[0]
    assert all_row["max_abs_diff"] == per["max_abs_diff"].max()
    assert all_row["worst_ratio"] == per["worst_ratio"].max()
    # the loss row: loss.csv's loss value at the same weights against its own bound
    loss_row = s[s["param"] == "loss"].iloc[0]
    ratio = r.loss["loss_rel_diff"] / r.loss["loss_rel_tol"]
    assert loss_row["worst_ratio"] == ratio.max()
    assert loss_row["worst_step"] == r.loss.loc[ratio.idxmax(), "step"]
    assert loss_row["max_abs_diff"] == r.loss["abs_diff"].max()
    # the all row's verdict is the run's: the worst of every parameter's and the loss's
    rank = {v: i for i, v in enumerate(VERDICTS)}          # exact < agree < differ
    assert rank[all_row["verdict"]] == max(rank[v] for v in [*per["verdict"],
                                                             loss_row["verdict"]])


@pytest.mark.parametrize("name", sorted(named_experiments()))
def test_float64_named_experiments_agree(name):
    # 20 steps of each named experiment in float64 on the CPU: both sides round differently
    # (BLAS, summation order, exp), but each gradient within the runner's own rounding
    # bound rel_tol (experiments.core.tolerance.gradient_tolerance, widened by the condition
    # number where terms cancel).
    r = run(name, "steps=20", "dtype=float64", "device=cpu", "log_every=1", "fd_every=0")
    assert r.status == "completed", r.message
    bad = r.summary[~r.summary["verdict"].isin(["exact", "agree"])]
    assert bad.empty, bad.to_string()
    # and the fixed bound, which does not come from the tolerance code under test
    worst = r.grads.loc[r.grads["rel_err"].idxmax()]
    assert worst["rel_err"] <= F64_REL, worst.to_dict()


DYADIC = {   # multiples of 2^-3, all |w| < 1, non-symmetric, non-zero biases
    "layers.0.weight": [[0.5, -0.25], [0.75, 0.125]],
    "layers.0.bias": [0.25, -0.5],
    "layers.1.weight": [[-0.5, 0.375]],
    "layers.1.bias": [0.125],
}


def exact_identity_net(X, Y, params, lr, steps):
    """The 2-2-1 identity network with ½·SSE in exact rational arithmetic: the loss of each
    step and the gradients of the last one, as Fractions (no rounding anywhere). Gradients
    are laid out as final_grads.csv: weights (out, in), biases as (out, 1) columns."""
    W1 = [[Fraction(v) for v in row] for row in params["layers.0.weight"]]   # (2, 2)
    b1 = [Fraction(v) for v in params["layers.0.bias"]]                      # (2,)
    W2 = [Fraction(v) for v in params["layers.1.weight"][0]]                 # (2,) one output
    b2 = Fraction(params["layers.1.bias"][0])
    losses = []
    for _ in range(steps):
        z1 = [[sum(W1[j][i] * x[i] for i in range(2)) + b1[j] for j in range(2)] for x in X]
        D = [sum(W2[j] * h[j] for j in range(2)) + b2 - y for h, y in zip(z1, Y, strict=True)]
        losses.append(sum(d * d for d in D) / 2)
        g = {"layers.1.weight": [[sum(d * h[j] for d, h in zip(D, z1, strict=True))
                                  for j in range(2)]],
             "layers.1.bias": [[sum(D)]],
             "layers.0.weight": [[sum(d * W2[j] * x[i] for d, x in zip(D, X, strict=True))
                                  for i in range(2)] for j in range(2)],
             "layers.0.bias": [[sum(d * W2[j] for d in D)] for j in range(2)]}
        W1 = [[W1[j][i] - lr * g["layers.0.weight"][j][i] for i in range(2)] for j in range(2)]
        b1 = [b1[j] - lr * g["layers.0.bias"][j][0] for j in range(2)]
        W2 = [W2[j] - lr * g["layers.1.weight"][0][j] for j in range(2)]
        b2 = b2 - lr * g["layers.1.bias"][0][0]
    return losses, g


def test_exact_when_every_operation_is_exact(tmp_path):
    # A 2-2-1 identity network on XOR (inputs and targets 0/1), weights multiples of 2^-3,
    # half_sse, lr 2^-3, two steps. Every intermediate is a dyadic rational: step 0's
    # values are multiples of 2^-9, the weights after it of 2^-12, step 1's outputs of
    # 2^-24, its squares and gradients of 2^-48 / 2^-36, all of magnitude < 2, so every
    # product and sum needs ≤ 50 significant bits < 53 and is exact in float64 in any
    # order. Both sides must then return the exact rational values, bit for bit: checked
    # against the same two steps in Fractions. (A third step would need ~100 bits.)
    init = tmp_path / "dyadic.json"
    init.write_text(json.dumps(DYADIC), encoding="utf-8")
    r = run("xor", f"init={init}", "activation=identity", "output_activation=identity",
            "hidden=[2]", "bias=true", "loss=half_sse", "lr=0.125", "steps=2", "log_every=1",
            "momentum=0", "dtype=float64", "fd_every=0")
    X = [[Fraction(int(v)) for v in x] for x in r.dataset.X]
    Y = [Fraction(int(y)) for y in r.dataset.Y[:, 0]]
    losses, g = exact_identity_net(X, Y, DYADIC, Fraction(1, 8), steps=2)
    for E in [*losses, *(v for rows in g.values() for row in rows for v in row)]:
        assert Fraction(float(E)) == E                  # representable: nothing to round
    assert list(r.loss["loss_manual"]) == [float(E) for E in losses]
    assert list(r.loss["loss_torch"]) == [float(E) for E in losses]
    fg = r.final_grads                                  # the gradients of step 1
    assert len(fg) == 9                                 # 4 + 2 + 2 + 1 parameters
    for _, row in fg.iterrows():
        want = float(g[row["param"]][row["row"]][row["col"]])
        assert row["grad_manual"] == want and row["grad_torch"] == want, row.to_dict()
    assert set(r.summary["verdict"]) == {"exact"}, r.summary.to_string()
    assert (r.grads["max_abs_diff"] == 0).all() and (r.grads["weight_max_abs_diff"] == 0).all()
    assert (r.loss["abs_diff"] == 0).all()


# -- the logged steps ----------------------------------------------------------------------

def test_loss_rows_are_the_logged_steps(iris_run):
    r, _ = iris_run
    loss = r.loss
    assert list(loss["step"]) == [0, 4, 8, 9]          # log_every 4; the last step always
    assert list(loss["epoch"]) == [0, 0, 1, 1]          # 5 steps per epoch
    # batches of 32, 32, 32, 32, 22 per epoch: seen after steps 0, 4, 8, 9
    assert list(loss["examples_seen"]) == [32, 150, 150 + 4 * 32, 300]
    lm, lt = loss["loss_manual"], loss["loss_torch"]
    assert (loss["abs_diff"] == (lm - lt).abs()).all()
    np.testing.assert_array_equal(loss["rel_diff"],
                                  loss["abs_diff"] / np.maximum(lm.abs(), lt.abs()))


def test_grads_are_long_form_one_row_per_step_and_parameter(iris_run):
    r, _ = iris_run
    grads, loss = r.grads, r.loss
    keys = ["layers.0.weight", "layers.0.bias", "layers.1.weight", "layers.1.bias"]
    assert len(grads) == len(loss) * len(keys)
    assert list(grads["step"]) == list(np.repeat(loss["step"], len(keys)))
    assert list(grads["epoch"]) == list(np.repeat(loss["epoch"], len(keys)))
    assert list(grads["param"]) == keys * len(loss)
    filled = ["max_abs_diff", "rel_err", "cosine", "norm_manual", "norm_torch",
              "weight_max_abs_diff", "rel_tol"]
    assert grads[filled].notna().all().all()
    # fd_every 0 and float64: no finite-difference or float64-reference witness
    assert grads[["fd_rel_err", "ref_rel_err_manual", "ref_rel_err_torch"]].isna().all().all()
    # float64 sides agree to rel_err r ~ 1e-16, so cosine = 1 − O(r²) up to the rounding of
    # its own dot products over ≤ 16 elements (≲ 16·3u ≈ 5e-15): |1 − cosine| ≤ 1e-13.
    assert ((grads["cosine"] - 1).abs() <= 1e-13).all()
    assert (grads["rel_err"] <= F64_REL).all()


def test_grad_entries_hold_every_entry_of_every_logged_step(iris_run):
    """grad_entries: one row per logged step × gradient entry; a step's rows are the two
    sides' gradients entry by entry (the last step's equal final_grads), named in the
    config's (out, in) index and in the course notebooks' W1b1 one (W1 = layers.0.weightᵀ)."""
    r, _ = iris_run
    e, final = r.grad_entries, r.final_grads
    n_entries = 4 * 4 + 4 + 3 * 4 + 3                    # iris, hidden [4]: W0, b0, W1, b1
    assert len(e) == len(r.loss) * n_entries
    assert list(e["step"].unique()) == list(r.loss["step"])
    last = e[e["step"] == r.loss["step"].iloc[-1]].reset_index(drop=True)
    pd.testing.assert_frame_equal(last[final.columns], final)
    np.testing.assert_array_equal(e["abs_diff"], (e["grad_manual"] - e["grad_torch"]).abs())
    names = dict(zip(zip(e["param"], e["row"], e["col"], strict=True), e["w1b1"],
                     strict=True))
    assert names[("layers.0.weight", 2, 3)] == "W1[3,2]"       # (out, in) -> (in, out)
    assert names[("layers.1.bias", 1, 0)] == "b2[1]"
    assert e["grad_manual"].notna().all() and e["grad_torch"].notna().all()


def test_grad_entries_are_kept_for_small_networks_or_on_request(monkeypatch):
    """By default only while entries × logged steps ≤ GRAD_ENTRIES_MAX_ROWS; True and
    False override. The seed case (16 entries, 1,001 logged steps) is small."""
    from experiments.core import runner
    small = run("seed", "steps=3", "log_every=1")
    assert len(small.grad_entries) == 3 * 16
    # step 0, full batch: the hand gradient at the initial weights, entry by entry
    cfg, data, params, _, _ = runner.initial_state(small.config)
    g = manual.MLP(cfg.sizes, **cfg.spec(), params=params).gradients(data.X, data.Y)
    step0 = small.grad_entries[small.grad_entries["step"] == 0]
    np.testing.assert_array_equal(step0["grad_manual"],
                                  np.concatenate([g[k].ravel() for k in g]))
    monkeypatch.setattr(runner, "GRAD_ENTRIES_MAX_ROWS", 3 * 16 - 1)
    assert run("seed", "steps=3", "log_every=1").grad_entries.empty
    cfg = load_config("seed", ["steps=3", "log_every=1"])
    assert len(run_experiment(cfg, grad_entries=True).grad_entries) == 3 * 16
    monkeypatch.undo()
    assert run_experiment(cfg, grad_entries=False).grad_entries.empty


def test_summary_of_the_logged_steps(iris_run):
    r, _ = iris_run
    s = r.summary
    assert list(s["param"]) == [*r.grads["param"].unique(), "loss", "all"]
    assert set(s["verdict"]) <= set(VERDICTS)
    assert set(s["worst_step"]) <= set(r.loss["step"])
    assert (s["diagnosis"] == "agree").all()


def test_log_every_larger_than_run_logs_first_and_last():
    r = run("seed", "steps=7", "log_every=100")
    assert list(r.loss["step"]) == [0, 6]


# -- mini-batches ---------------------------------------------------------------------------

@pytest.fixture
def batches(monkeypatch):
    """Record the inputs X each side is handed at every step, in order."""
    seen = {"manual": [], "torch": []}
    orig_m, orig_t = manual.MLP.loss_and_gradients, ReferenceSide.evaluate

    def spy_m(self, X, Y, *, native=False):
        seen["manual"].append(np.array(X, dtype=np.float64, copy=True))
        return orig_m(self, X, Y, native=native)

    def spy_t(self, idx):
        X = self.batch(idx)[0]
        seen["torch"].append(torch.as_tensor(X).detach().cpu().double().numpy().copy())
        return orig_t(self, idx)

    monkeypatch.setattr(manual.MLP, "loss_and_gradients", spy_m)
    monkeypatch.setattr(ReferenceSide, "evaluate", spy_t)

    def take():
        out = {k: list(v) for k, v in seen.items()}
        seen["manual"].clear()
        seen["torch"].clear()
        return out
    return take


def sorted_rows(A: np.ndarray) -> np.ndarray:
    return A[np.lexsort(A.T[::-1])]


IRIS_MB = ("iris", "batch_size=32", "epochs=2", "steps=0", "log_every=1", "fd_every=0",
           "dtype=float64")


def test_batch_size_that_does_not_divide_n(batches):
    r = run(*IRIS_MB, "seed=0")
    b = batches()
    X = r.dataset.X                                       # (150, 4)
    # 150 = 4·32 + 22: 5 steps per epoch, the last batch holds 22
    assert r.total_steps == r.steps_done == 10
    assert [len(x) for x in b["manual"]] == [32, 32, 32, 32, 22] * 2
    assert list(r.loss["epoch"]) == [0] * 5 + [1] * 5
    assert list(r.loss["examples_seen"]) == list(np.cumsum([32, 32, 32, 32, 22] * 2))
    assert r.loss["examples_seen"].iloc[-1] == 2 * len(X)
    # one batch order for both sides (one RNG), bit for bit
    assert len(b["torch"]) == len(b["manual"]) == 10
    for m, t in zip(b["manual"], b["torch"], strict=True):
        np.testing.assert_array_equal(m, t)
    # each epoch visits every example exactly once
    for e in range(2):
        epoch = np.concatenate(b["manual"][5 * e:5 * e + 5])
        np.testing.assert_array_equal(sorted_rows(epoch), sorted_rows(X))
    # reshuffled each epoch (two equal permutations of 150: probability 1/150!)
    assert not np.array_equal(b["manual"][0], b["manual"][5])


def test_shuffle_is_seeded(batches):
    run(*IRIS_MB, "seed=0")
    first = batches()["manual"]
    run(*IRIS_MB, "seed=0")
    again = batches()["manual"]
    run(*IRIS_MB, "seed=1")
    other = batches()["manual"]
    for a, b in zip(first, again, strict=True):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(first[0], other[0])


def test_no_shuffle_walks_the_data_in_order(batches):
    r = run(*IRIS_MB, "shuffle=false")
    X = r.dataset.X
    got = batches()["manual"]
    want = [X[i:i + 32] for i in range(0, 150, 32)] * 2
    for a, b in zip(got, want, strict=True):
        np.testing.assert_array_equal(a, b)


def test_steps_overrides_epochs():
    r = run(*IRIS_MB, "steps=7")
    assert r.total_steps == r.steps_done == 7
    assert list(r.loss["epoch"]) == [0] * 5 + [1] * 2
    assert r.loss["examples_seen"].iloc[-1] == 150 + 64


def test_full_batch_sees_everything_each_step():
    r = run("seed", "steps=3", "log_every=1")
    assert list(r.loss["examples_seen"]) == [4, 8, 12]
    assert list(r.loss["epoch"]) == [0, 1, 2]


# -- divergence ------------------------------------------------------------------------------

DIVERGE = ("iris", "standardize=true", "activation=relu", "output_activation=identity",
           "loss=mse", "lr=1e6", "batch_size=full", "steps=50", "log_every=10",
           "momentum=0", "fd_every=0")


@pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning")
@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")
# final_grads.csv of a diverged run holds the non-finite gradients of the diverged step,
# so seaborn's heatmap of their differences sees only NaN
@pytest.mark.filterwarnings("ignore:All-NaN slice encountered:RuntimeWarning")
def test_divergence_stops_cleanly(tmp_path):
    # lr 1e6: the first update multiplies the weights' scale by ~1e6·‖g‖; a relu/identity
    # network's gradient grows like the product of its weights, so each step roughly
    # cubes the scale and float64 overflows within a few of the 50 steps.
    r = run(*DIVERGE)
    assert r.status == "diverged"
    m = re.fullmatch(r"diverged at step (\d+): (manual|torch|both) sides? .*", r.message)
    assert m, r.message
    step = int(m.group(1))
    assert 0 < step < r.total_steps == 50
    assert r.steps_done == step
    loss = r.loss
    assert loss["step"].iloc[-1] == step               # the diverged step is recorded...
    assert loss["step"].is_monotonic_increasing and loss["step"].iloc[-2] < step
    last = loss.iloc[-1]
    assert not (np.isfinite(last["loss_manual"]) and np.isfinite(last["loss_torch"]))
    assert np.isfinite(loss.iloc[:-1][["loss_manual", "loss_torch"]]).all().all()
    assert r.grads["step"].max() == step                # ...and nothing after it
    # the run directory is written, CSVs included, with plots of finite parts
    out = write_run(r, tmp_path / "div")
    for name in ("loss.csv", "grads.csv"):
        df = pd.read_csv(out / name)
        assert df["step"].notna().all() and df["step"].dtype.kind == "i", name
        assert df["step"].max() == step, name
    summary = pd.read_csv(out / "summary.csv")
    assert list(summary["param"]) == [*r.grads["param"].unique(), "loss", "all"]
    assert (summary["worst_step"] < step).all()          # the diverged step is left out
    assert "diverged" in (out / "report.md").read_text(encoding="utf-8")
    prov = json.loads((out / "provenance.json").read_text(encoding="utf-8"))
    assert prov["status"] == "diverged" and prov["steps_done"] == step


# -- finite differences and the float64 reference ------------------------------------------

def test_fd_every_fills_fd_rel_err_at_those_steps_only():
    r = run("seed", "steps=10", "log_every=5", "fd_every=3", "dtype=float64")
    g = r.grads
    assert sorted(g["step"].unique()) == [0, 3, 5, 6, 9]   # logged ∪ fd steps ∪ last
    at_fd = g["step"] % 3 == 0
    assert g.loc[at_fd, "fd_rel_err"].notna().all()
    assert g.loc[~at_fd, "fd_rel_err"].isna().all()
    # Central differences with h = 1e-6 (manual.gradcheck): truncation h²·|E'''|/6 ~ 1e-13
    # and rounding ε·|E|/h ~ 2e-16·0.7/1e-6 ~ 1.5e-10 per element, against gradient
    # norms ≥ 1e-2 here: rel_err ≲ 1e-7 for ≤ 12 elements. 1e-5 leaves two decades of room
    # and is still 1e10 times the float64 disagreement the test would catch if the FD
    # column were filled with a copy of the gradient (0) or with nonsense (~1).
    assert g["norm_torch"].min() > 1e-2
    assert g.loc[at_fd, "fd_rel_err"].max() < 1e-5
    assert g.loc[at_fd, "fd_rel_err"].min() > 0       # a real, independent witness
    all_row = r.summary[r.summary["param"] == "all"].iloc[0]
    assert all_row["fd_rel_err"] == g["fd_rel_err"].max()


def test_float32_reference_columns():
    r = run("seed", "steps=20", "log_every=1", "dtype=float32", "fd_every=0")
    g = r.grads
    cols = ["ref_rel_err_manual", "ref_rel_err_torch"]
    assert g[cols].notna().all().all()
    # Each side's float32 gradient against float64 at the same weights (the seed data 0/1
    # and float32 weights are exact in float64): Higham's bound gives γ_m·cond per side,
    # rel_tol is 2γ_m·cond (the runner's bound for two float32 sides), so rel_tol bounds
    # each side's error to the reference. It must also be > 0: float32 is not float64.
    for c in cols:
        assert (g[c] <= g["rel_tol"]).all(), g.loc[(g[c] / g["rel_tol"]).idxmax()]
        assert g[c].max() > 0


def test_float64_run_leaves_reference_columns_empty():
    r = run("seed", "steps=3", "dtype=float64")
    assert r.grads[["ref_rel_err_manual", "ref_rel_err_torch"]].isna().all().all()
