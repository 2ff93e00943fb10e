"""Slips in manual/ that the agreement grid cannot see, and the tests that catch them.

Each section aims at one plausible mistake in the hand derivation. Written into manual/,
each one leaves test_agreement, test_numerics, test_optim and test_reference_cases
passing, because their random problems never reach the inputs where it shows:

1. relu'(0) = 1 (say f' written from z as [z ≥ 0]); torch's relu backward gives 0 there.
   Random weights and inputs never make a pre-activation exactly 0; zero biases and an
   all-zero input row do (Σ 0·w is exactly +0 in any dtype).
2. ∂E/∂A = (P − T)/N for cross-entropy instead of (P·Σ_k T − T)/N. The two agree on
   one-hot and probability rows (Σ_k T = 1), and differ on target rows that do not sum to
   1, which manual.MLP and torch.nn.CrossEntropyLoss both accept.
3. log-softmax without the max shift. exp(A) overflows above ln(max float) (709.8 in
   float64, 88.7 in float32) and underflows below −745: the loss turns inf or NaN and P
   turns 0 (or NaN), so ∂E/∂A is finite but wrong (−T/N) or NaN.

The witness is torch autograd: torch_impl (``test_agreement.check_pair``: the derived
2γ_m·cond bound, and in float64 the fixed rel ≤ 1e-12 too), or
torch.nn.functional.cross_entropy on the same logits. Each slip is also run through
``run_experiment``, so a run's own verdict is shown to flag it.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from test_agreement import F64_REL, N_BATCH, check_pair, make_params, pre_activations, spec_of

import manual
from experiments.core import runner
from experiments.core.config import RunConfig
from experiments.core.datasets import Dataset
from experiments.core.metrics import compare
from manual.losses import cross_entropy, cross_entropy_grad

DTYPES = ("float64", "float32")
#: the runs check both backends of the hand code: numpy, and the same code on torch tensors
BACKENDS = pytest.mark.parametrize("backend", ["numpy", "torch"])


def assert_run_agrees(r: runner.RunResult) -> None:
    """A float64 lockstep run that completed with every gradient and loss in agreement:
    the run's own verdict, its derived per-step bound rel_tol, and the fixed F64_REL."""
    assert r.status == "completed", r.message
    verdicts = dict(zip(r.summary["param"], r.summary["verdict"], strict=True))
    assert set(verdicts.values()) <= {"exact", "agree"}, verdicts
    worst = r.grads.loc[r.grads["rel_err"].idxmax()]
    # the runner's bound: rel_err ≤ 2γ_m·cond per step and parameter (what the verdict uses)
    assert (r.grads["rel_err"] <= r.grads["rel_tol"]).all(), worst
    # the fixed float64 bound beside it (u·chain length, not from the tolerance code)
    assert r.grads["rel_err"].max() <= F64_REL, worst
    assert r.loss["rel_diff"].max() <= F64_REL, r.loss.loc[r.loss["rel_diff"].idxmax()]


# --- 1. relu'(0) ---------------------------------------------------------------------------


def test_relu_derivative_is_zero_at_exact_zero_preactivation():
    """relu'(0) = 0 as torch: a relu net whose hidden pre-activations are exactly 0 on
    whole rows, with a non-zero error arriving there, so f'(0) decides δ."""
    rng = np.random.default_rng(11)
    sizes = (3, 5, 4, 3)
    params = make_params(sizes, True, rng)
    X = rng.normal(size=(N_BATCH, 3))
    X[[0, 6]] = 0.0                                  # rows 0 and 6: a_0 = 0
    params["layers.0.bias"][:] = 0.0                 # so layer 0 has z = 0 on them,
    params["layers.1.bias"][:] = [0.5, 0.0, 0.3, -0.4]   # and layer 1 z = b: unit 1 at 0,
    #                                                  units 0, 2 pass the error down
    Y = rng.normal(size=(N_BATCH, 3))
    spec = {**spec_of(sizes, "relu", "half_sse", True), "output_activation": "identity"}
    zs = pre_activations(params, X, True)
    for l in (0, 1):
        assert np.any(zs[l] == 0.0), f"layer {l} never reaches z = 0"  # the case's point
    # ... and the error arriving at those units is not 0 (else any f'(0) would pass)
    trace = []
    net = manual.MLP(**spec, params=params)
    net.backward(net.forward_cache(X), Y, trace=trace)
    for t in trace[1:]:                                   # hidden layers, last first
        assert np.any(t.dA[zs[t.layer] == 0.0] != 0), t.layer
    for dtype in DTYPES:   # the derived 2γ_m·cond bound; in float64 also rel ≤ 1e-12
        check_pair(spec, params, X, Y, dtype)


@BACKENDS
def test_relu_zero_preactivation_run_agrees(backend):
    """The same through the lockstep runner: ``sparse`` has all-zero rows and legacy-rand
    gives zero biases, so z = 0 exactly at step 0 (asserted), and the verdict must agree."""
    cfg = RunConfig(dataset="sparse", hidden=(4,), activation="relu",
                    output_activation="identity", loss="cross_entropy", init="legacy-rand",
                    lr=0.5, steps=2, manual_backend=backend)
    _, data, params, _, _ = runner.initial_state(cfg)
    z = data.X @ params["layers.0.weight"].T + params["layers.0.bias"]     # (N, 4)
    assert np.any(np.all(data.X == 0, axis=1)) and np.any(z == 0.0)      # the kink is reached
    assert_run_agrees(runner.run_experiment(cfg))


# --- 2. cross-entropy targets that do not sum to 1 ---------------------------------------


def soft_targets(rng: np.random.Generator, N: int, K: int) -> np.ndarray:
    """(N, K) non-negative rows summing to 0, 0.25, 0.5, 2 or 3.5, never 1."""
    sums = rng.choice([0.0, 0.25, 0.5, 2.0, 3.5], size=(N, 1))
    sums[:5, 0] = [0.0, 0.25, 0.5, 2.0, 3.5]                 # each kind at least once
    T = rng.dirichlet(np.ones(K), size=N) * sums             # (N, K)
    # the slip P − T is off by |Σ_k T − 1|·P ≥ P/2 on every row
    assert np.all(np.abs(T.sum(axis=1) - 1) >= 0.5)
    return T


@pytest.mark.parametrize("act", ["tanh", "relu"])
@pytest.mark.parametrize("dtype", DTYPES)
def test_cross_entropy_targets_not_summing_to_one_agree(act, dtype):
    """∂E/∂A = (P·Σ_k T − T)/N: torch.nn.CrossEntropyLoss with probability targets takes
    rows as given (no normalisation), E = −(1/N) Σ T log P."""
    rng = np.random.default_rng(21)
    sizes = (3, 5, 4)
    params = make_params(sizes, True, rng)
    X = rng.normal(size=(N_BATCH, 3))
    T = soft_targets(rng, N_BATCH, sizes[-1])
    # the derived 2γ_m·cond bound on every gradient and the loss; float64 also rel ≤ 1e-12
    check_pair(spec_of(sizes, act, "cross_entropy", True), params, X, T, dtype)


@BACKENDS
def test_cross_entropy_soft_target_run_agrees(monkeypatch, backend):
    """Through the lockstep runner. No data set yields such rows (cross_entropy takes class
    labels, encoded one-hot), so the runner is handed a Dataset made here."""
    rng = np.random.default_rng(22)
    N, D, K = 9, 3, 4
    data = Dataset(name="soft", X=rng.normal(size=(N, D)), Y=soft_targets(rng, N, K),
                   n_outputs=K, description="soft targets whose rows do not sum to 1")
    monkeypatch.setattr(runner, "load_dataset", lambda name, **kw: data)
    cfg = RunConfig(dataset="seed",   # any valid name: the loader above ignores it
                    hidden=(5,), activation="tanh", output_activation="identity",
                    loss="cross_entropy", lr=0.5, steps=3, manual_backend=backend)
    assert_run_agrees(runner.run_experiment(cfg))


# --- 3. log-softmax at logits near ±1e3 ---------------------------------------------------


def softmax_bounds(A: np.ndarray, T: np.ndarray, eps: float) -> tuple[np.ndarray, float]:
    """(componentwise bound on |g_m − g_t|, bound on |E_m − E_t|) for two implementations of
    cross-entropy on the same logits A (N, K), each in the shifted form out = S − lse,
    S = A − max (exact: A and its row max are within a factor 2, Sterbenz), lse =
    log Σ exp S ∈ [0, log K], P = exp(out).

    Per side, with each exp, log, sum term, product and quotient ≤ ε relative (vectorised
    exp can take 1-2 ulp, so ε rather than u): Σ exp S is off by ≤ (K + 1)ε relative, so
    lse by ≤ (K + 1)ε + ε·lse absolute, out by c_ij ε = (K + 2 + lse + |out_ij|)ε absolute,
    and P by (c_ij + 1)ε relative. g = (P·Σ_k T − T)/N adds Σ_k T (K ε), the product,
    the difference and /N (3ε), so |ĝ − g| ≤ (c_ij + K + 4)ε·(P Σ_k T + T)/N; the loss
    −(1/N) Σ T·out is a sum of non-negative terms: ≤ Σ T·c ε/N + N K ε |E|. Two sides
    round independently: twice each.
    """
    N, K = A.shape
    S = A - A.max(axis=1, keepdims=True)                                 # (N, K)
    lse = np.log(np.exp(S).sum(axis=1, keepdims=True))                   # (N, 1)
    out = S - lse                                                        # (N, K)
    c = K + 2 + lse + np.abs(out)                                        # (N, K)
    P, sT = np.exp(out), T.sum(axis=1, keepdims=True)
    g_tol = 2 * (c + K + 4) * eps * (P * sT + T) / N                     # (N, K)
    E = -np.sum(T * out) / N
    E_tol = 2 * (np.sum(T * c) * eps / N + N * K * eps * abs(E))
    return g_tol, E_tol


@pytest.mark.parametrize("dtype", DTYPES)
def test_cross_entropy_at_logits_near_1e3_matches_torch(dtype):
    """Rows of logits near +1e3 (exp overflows) and −1e3 (exp underflows to 0) against
    torch.nn.functional.cross_entropy's autograd on the very same logits."""
    rng = np.random.default_rng(31)
    N, K = 8, 4
    centre = np.where(np.arange(N)[:, None] % 2 == 0, 1000.0, -1000.0)     # (N, 1)
    A = (centre + rng.uniform(-3, 3, (N, K))).astype(dtype)                # (N, K)
    T = np.eye(K)[rng.integers(0, K, N)].astype(dtype)                     # (N, K)
    with np.errstate(over="ignore", under="ignore"):   # the case's point: unshifted, every
        e = np.exp(A)                                    # exp is inf or exactly 0 here
    assert np.all(np.isinf(e) | (e == 0)), A
    Em, gm = float(cross_entropy(A, T, np)), cross_entropy_grad(A, T, np)
    At = torch.tensor(A, requires_grad=True)
    Et = torch.nn.functional.cross_entropy(At, torch.tensor(T))   # probability targets
    Et.backward()
    gt = At.grad.numpy()
    assert gm.dtype == gt.dtype == np.dtype(dtype)
    g_tol, E_tol = softmax_bounds(A.astype(np.float64), T.astype(np.float64),
                                  float(np.finfo(dtype).eps))
    diff = np.abs(gm.astype(np.float64) - gt)
    # the derived componentwise bound (docstring of softmax_bounds)
    assert np.all(diff <= g_tol), f"worst |Δg|/bound {np.max(diff / g_tol):.3g}"
    assert abs(Em - Et.item()) <= E_tol, (Em, Et.item(), E_tol)
    if dtype == "float64":   # the fixed bound beside the derived one
        assert compare(gm, gt).rel_err <= F64_REL
        assert abs(Em - Et.item()) <= F64_REL * abs(Et.item())


@pytest.mark.parametrize("dtype", DTYPES)
def test_network_with_logits_near_1e3_agrees(dtype):
    """The same on a network: output biases ±1e3 put every logit there, the tanh hidden
    layer (|a| ≤ 1) and 1/√fan_in weights keep them within a few units of it."""
    rng = np.random.default_rng(32)
    sizes = (3, 5, 4)
    params = make_params(sizes, True, rng)
    params["layers.1.bias"] = params["layers.1.bias"] + np.array([1000.0, 1000.0, 1001.0, 999.0])
    X = rng.normal(size=(N_BATCH, 3))
    Y = rng.integers(0, sizes[-1], N_BATCH)
    spec = spec_of(sizes, "tanh", "cross_entropy", True)
    A = manual.MLP(**spec, dtype=dtype, params=params).forward(X)
    assert np.all(A > np.log(np.finfo(dtype).max)), A.min()      # exp(A) overflows
    check_pair(spec, params, X, Y, dtype)   # derived 2γ_m·cond; float64 also rel ≤ 1e-12


@BACKENDS
def test_logits_near_1e3_run_agrees(tmp_path, backend):
    """Through the lockstep runner, from an init file whose output biases are about 1e3:
    every logit of the compared forward passes exceeds ln(max float64) (asserted)."""
    rng = np.random.default_rng(33)
    params = {"layers.0.weight": rng.normal(size=(4, 4)), "layers.0.bias": rng.normal(size=4),
              "layers.1.weight": rng.normal(size=(3, 4)),
              "layers.1.bias": 1000 + rng.uniform(-1, 1, 3)}
    np.savez(tmp_path / "big.npz", **params)
    cfg = RunConfig(dataset="iris", standardize=True, hidden=(4,), activation="tanh",
                    output_activation="identity", loss="cross_entropy",
                    init=str(tmp_path / "big.npz"), lr=0.1, steps=3, manual_backend=backend)
    r = runner.run_experiment(cfg)
    assert_run_agrees(r)
    logits = r.predictions[["manual", "torch"]].to_numpy()
    assert logits.min() > math.log(np.finfo(np.float64).max), logits.min()
