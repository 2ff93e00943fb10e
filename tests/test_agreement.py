"""manual/ (hand backprop) vs torch_impl/ (autograd): loss and every gradient agree.

Tolerances are derived, not tuned (see ``experiments.core.tolerance.gradient_tolerance``): each
gradient entry is the end of a chain of m rounded operations, so each side's componentwise
error is ≤ γ_m·G̃ (Higham, *Accuracy and Stability of Numerical Algorithms*, §3.1,
γ_m = m u / (1 − m u)), where G̃ is the gradient recomputed with every quantity replaced by
its magnitude (``experiments.core.tolerance.magnitude_gradients``). The sides round independently,
so ‖g_m − g_t‖ ≤ 2 γ_m ‖G̃‖, i.e. rel_err ≤ 2 γ_m · cond with cond = max(1, ‖G̃‖ / ‖g‖):
exactly what the runner holds a run to.

Beside that derived bound, every float64 comparison also holds a fixed one, rel_err ≤ 1e-12
(``F64_REL``), which does not come from the tolerance code under test: a mistake in that
code cannot loosen it.

Inputs are chosen so a bug cannot hide: non-zero biases, random non-symmetric weights, a
batch (13) that is not a power of two, 1-3 hidden layers.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import manual
import torch_impl
from experiments.core.metrics import TINY, compare
from experiments.core.tolerance import (
    gradient_tolerance,
    loss_tolerance,
    magnitude_gradients,
    magnitude_loss,
)

ACTS = ("sigmoid", "tanh", "relu", "identity")
LOSSES = ("half_sse", "mse", "bce", "cross_entropy")
BIASES = (True, False, "frozen")
HIDDEN = {1: (5,), 2: (5, 4), 3: (5, 4, 6)}     # widths of the hidden layers per depth
D, K = 3, 3                                      # inputs, outputs
N_BATCH = 13                                     # not a power of two, not a divisor of 2^k

#: The fixed float64 bound. u ≈ 1.1e-16, and every gradient entry here ends a chain of at
#: most ~10^3 rounded operations (m = N + Σ sizes + 5L + 5 ≤ 60 in these tests, times the
#: cancellation the random problems show), so two correct sides stay within ~1e-13;
#: 1e-12 leaves a decade and is still 10^10 below a derivation mistake (O(1e-2 … 1)).
F64_REL = 1e-12

#: worst rel_err seen per dtype across this module (printed at teardown with -s), and the
#: worst loss rel_diff / its derived bound
WORST = {"float64": 0.0, "float32": 0.0, "loss_ratio": 0.0}


@pytest.fixture(scope="module", autouse=True)
def _report_worst():
    yield
    print(f"\n[test_agreement] worst manual-vs-torch rel_err: float64 {WORST['float64']:.3e}, "
          f"float32 {WORST['float32']:.3e}; worst loss rel_diff / loss bound "
          f"{WORST['loss_ratio']:.3g}")


# --- building blocks ---------------------------------------------------------------------


def output_activation(loss: str, activation: str) -> str:
    """bce needs sigmoid outputs, cross_entropy takes logits; the rest use the hidden one."""
    return {"bce": "sigmoid", "cross_entropy": "identity"}.get(loss, activation)


def make_params(sizes, bias, rng: np.random.Generator, scale: float = 1.5) -> dict:
    """Weights U(−s, s)/√fan_in (random, hence non-symmetric); biases of magnitude
    U(0.1, 0.8) with random signs, so no bias is zero. The 1/√fan_in keeps sigmoid
    outputs away from exact saturation, where bce's 1 − A loses relative precision (a
    conditioning the magnitude bound does not model; see test_numerics for saturation)."""
    params = {}
    for key, shape in manual.parameter_shapes(sizes, bias).items():
        fan_in = sizes[int(key.split(".")[1])]
        if key.endswith("weight"):
            params[key] = rng.uniform(-scale, scale, shape) / math.sqrt(fan_in)
        else:
            params[key] = rng.uniform(0.1, 0.8, shape) * rng.choice([-1.0, 1.0], shape)
    return params


def make_targets(loss: str, N: int, K: int, rng: np.random.Generator, onehot: bool = False):
    """Targets as each loss takes them: labels (N,) or one-hot for cross_entropy, values in
    [0, 1] for bce, N(0, 1) for the squared errors."""
    if loss == "cross_entropy":
        labels = rng.integers(0, K, N)
        return np.eye(K)[labels] if onehot else labels
    if loss == "bce":
        return rng.uniform(0.0, 1.0, (N, K))
    return rng.normal(size=(N, K))


def encoded(Y, K: int) -> np.ndarray:
    """Targets as a float (N, K) array (labels -> one-hot), for the magnitude bounds."""
    Y = np.asarray(Y)
    return np.eye(K)[Y] if Y.ndim == 1 else Y.astype(np.float64)


#: |∂E/∂A| with every difference A − T replaced by |A| + |T| (a magnitude, as in the
#: componentwise bound). Restated here from the loss definitions in docs/design.md ("The
#: contract shared by the two implementations").
_DLOSS_MAG = {
    "half_sse": lambda A, T, P: np.abs(A) + np.abs(T),
    "mse": lambda A, T, P: 2 * (np.abs(A) + np.abs(T)) / A.size,
    "bce": lambda A, T, P: (np.abs(A) + np.abs(T)) / np.maximum(A * (1 - A), 1e-12) / A.size,
    "cross_entropy": lambda A, T, P: (P * np.abs(T).sum(1, keepdims=True) + np.abs(T)) / len(A),
}
_FPRIME = {"sigmoid": lambda a: a * (1 - a), "tanh": lambda a: 1 - a * a,
           "relu": lambda a: (a > 0).astype(float), "identity": np.ones_like}


def loss_scale(net: manual.MLP, weights: dict, acts: list, T: np.ndarray, E: float) -> float:
    """Ẽ ≥ |E| such that |Ê − E| ≤ γ_m Ẽ (first order): the loss analogue of ‖G̃‖.

    Forward, the rounding error of each activation is bounded componentwise by γ_m times
    F_l = |f'_l|·(|W_l| (|a_{l−1}| + F_{l−1}) + |b_l|) + |a_l|  (F_0 = 0; the affine sum's
    own error, its propagation, and the activation's own rounding). The loss then moves by
    ≤ Σ |∂E/∂A|·F_L; its final reduction is a sum of non-negative terms (squares, −T log P,
    −[T log A + (1 − T) log(1 − A)]), which cannot cancel. Ẽ = max(|E|, Σ|∂E/∂A|·F_L);
    the relative condition is κ_E = Ẽ/|E| (an absolute bound, so E = 0 is fine).
    """
    L = len(acts) - 1
    names = [net.activation] * (L - 1) + [net.output_activation]
    F = np.zeros_like(acts[0], dtype=np.float64)
    for l in range(L):
        z_mag = (np.abs(acts[l]) + F) @ np.abs(weights[f"layers.{l}.weight"]).T     # (N, n)
        if f"layers.{l}.bias" in weights:
            z_mag = z_mag + np.abs(weights[f"layers.{l}.bias"])                      # (N, n)
        F = np.abs(_FPRIME[names[l]](acts[l + 1])) * z_mag + np.abs(acts[l + 1])      # (N, n)
    A = acts[-1].astype(np.float64)
    S = A - A.max(axis=1, keepdims=True)
    P = np.exp(S) / np.exp(S).sum(axis=1, keepdims=True)
    dE = _DLOSS_MAG[net.loss_name](A, T, P)                                           # (N, K)
    return max(abs(E), float(np.sum(dE * F)))


def spec_of(sizes, activation, loss, bias) -> dict:
    return dict(sizes=list(sizes), activation=activation,
                output_activation=output_activation(loss, activation), bias=bias, loss=loss)


def check_pair(spec: dict, params: dict, X, Y, dtype: str = "float64"):
    """Both sides on one batch: same keys, loss and every gradient within the derived
    bound (and, in float64, within the fixed F64_REL as well). Returns
    (E_m, g_m, E_t, g_t, {key: rel_tol}) for further checks."""
    man = manual.MLP(**spec, dtype=dtype, params=params)
    tor = torch_impl.MLP(**spec, dtype=dtype, params=params)
    Em, gm = man.loss_and_gradients(X, Y)
    Et, gt = tor.loss_and_gradients(X, Y)
    assert list(gm) == list(gt) == man.trainable, (list(gm), list(gt))
    sizes, N = spec["sizes"], np.shape(X)[0]
    base = gradient_tolerance(dtype, sizes, N)
    acts = [np.asarray(a, dtype=np.float64) for a in man.last_activations]
    T = encoded(Y, sizes[-1])
    G = magnitude_gradients(man, man.params, acts, T)
    tols = {}
    for key in gm:
        assert gm[key].shape == gt[key].shape == man.shapes[key]
        assert gm[key].dtype == gt[key].dtype == np.dtype(dtype), (gm[key].dtype, gt[key].dtype)
        mad, rel, _cos, nm, nt = compare(gm[key], gt[key])
        # (as Python floats: a zero-norm gradient with a rounding difference gives inf)
        cond = 1.0 if mad == 0 else max(1.0, float(G[key]) / max(nm, nt, TINY))
        tols[key] = base * cond
        WORST[dtype] = max(WORST[dtype], rel)
        # rel_err ≤ 2γ_m·cond: the two sides' independent rounding chains of length m,
        # each ≤ γ_m‖G̃‖ componentwise (Higham §3.1); cond = ‖G̃‖/‖g‖ covers cancellation.
        assert rel <= base * cond, (
            f"{key}: rel_err {rel:.3e} > 2γ_m·cond = {base:.3e}·{cond:.3g} "
            f"(max_abs_diff {mad:.3e}, ‖g_m‖ {nm:.3e}, ‖g_t‖ {nt:.3e})")
        if dtype == "float64":
            # the fixed bound beside the derived one (F64_REL: u·chain length, not rel_tol)
            assert rel <= F64_REL, f"{key}: float64 rel_err {rel:.3e} > {F64_REL}"
    # Loss: |E_m − E_t| ≤ 2γ_m Ẽ = 2γ_m κ_E |E|, the forward half of the same chain.
    scale = loss_scale(man, man.params, acts, T, Em)
    dE = abs(Em - Et)
    assert dE <= base * scale, (
        f"loss: |E_m − E_t| = {dE:.3e} > 2γ_m·Ẽ = {base:.3e}·{scale:.6g} (E = {Em:.6g})")
    # ... and the bound the runner's verdict holds the loss row to: rel_diff ≤ 2γ_{m_E}·
    # max(1, Ẽ/|E|), m_E counting the loss's sum over all N·K elements (loss_tolerance)
    size = max(abs(Em), abs(Et), TINY)
    loss_tol = loss_tolerance(dtype, sizes, N) * max(
        1.0, magnitude_loss(man, man.params, acts, T) / size)
    WORST["loss_ratio"] = max(WORST["loss_ratio"], dE / size / loss_tol)
    assert dE / size <= loss_tol, (
        f"loss: rel_diff {dE / size:.3e} > the runner's loss bound {loss_tol:.3e} (E = {Em:.6g})")
    if dtype == "float64":   # the fixed bound beside it, as for the gradients
        assert dE / size <= F64_REL, f"loss: float64 rel_diff {dE / size:.3e} > {F64_REL}"
    return Em, gm, Et, gt, tols


def problem(act, loss, bias, depth, N, seed, onehot=False):
    rng = np.random.default_rng(seed)
    sizes = (D, *HIDDEN[depth], K)
    params = make_params(sizes, bias, rng)
    X = rng.normal(size=(N, D))
    Y = make_targets(loss, N, K, rng, onehot)
    return spec_of(sizes, act, loss, bias), params, X, Y


# --- float64: the full grid ------------------------------------------------------------

GRID = list(itertools.product(ACTS, LOSSES, BIASES, (1, 2, 3), (1, N_BATCH)))


@pytest.mark.parametrize(("act", "loss", "bias", "depth", "N"), GRID,
                         ids=[f"{a}-{lo}-bias{b}-d{d}-N{n}" for a, lo, b, d, n in GRID])
def test_float64_loss_and_gradients_agree(act, loss, bias, depth, N):
    start = 100 * GRID.index((act, loss, bias, depth, N))
    for seed in range(start, start + 100):   # relu nets can be dead (all-zero gradients)
        spec, params, X, Y = problem(act, loss, bias, depth, N, seed)
        g = manual.MLP(**spec, params=params).gradients(X, Y)
        if all(np.any(v != 0) for v in g.values()):
            break
    _, gm, _, gt, _ = check_pair(spec, params, X, Y)
    # every gradient tensor is non-zero on both sides (zeros would pass any comparison)
    assert all(np.any(v != 0) for v in gm.values()) and all(np.any(v != 0) for v in gt.values())


@pytest.mark.parametrize("bias", BIASES)
@pytest.mark.parametrize("N", [1, N_BATCH])
@pytest.mark.parametrize("act", ACTS)
def test_cross_entropy_onehot_targets_agree_and_match_labels(act, N, bias):
    """One-hot targets: both sides agree, and give the gradients integer labels give."""
    rng = np.random.default_rng(1000 + N)
    sizes = (D, 5, 4, K)
    params = make_params(sizes, bias, rng)
    X = rng.normal(size=(N, D))
    labels = rng.integers(0, K, N)
    spec = spec_of(sizes, act, "cross_entropy", bias)
    E1, g1, *_ = check_pair(spec, params, X, np.eye(K)[labels])
    E2, g2, *_ = check_pair(spec, params, X, labels)
    base = gradient_tolerance("float64", sizes, N)
    for key in g1:
        # same side, same arithmetic except the target encoding: labels are one-hot encoded
        # exactly, so only summation order can differ; bound it like two implementations.
        np.testing.assert_allclose(g1[key], g2[key], rtol=base, atol=base * np.abs(g1[key]).max())
    assert abs(E1 - E2) <= base * abs(E1)


def test_frozen_bias_has_no_gradient_and_false_has_no_parameter():
    spec, params, X, Y = problem("sigmoid", "half_sse", "frozen", 2, N_BATCH, 7)
    for side in (manual.MLP, torch_impl.MLP):
        net = side(**spec, params=params)
        g = net.gradients(X, Y)
        assert set(g) == {"layers.0.weight", "layers.1.weight", "layers.2.weight"}
        # frozen biases are still parameters (present, used in the forward pass)
        assert {k for k in net.params if k.endswith("bias")} == {
            "layers.0.bias", "layers.1.bias", "layers.2.bias"}
        np.testing.assert_array_equal(net.params["layers.1.bias"], params["layers.1.bias"])
    spec, params, X, Y = problem("sigmoid", "half_sse", False, 2, N_BATCH, 7)
    assert not any(k.endswith("bias") for k in params)
    for side in (manual.MLP, torch_impl.MLP):
        net = side(**spec, params=params)
        assert not any(k.endswith("bias") for k in net.params)
        assert not any(k.endswith("bias") for k in net.gradients(X, Y))
    tor = torch_impl.MLP(**spec, params=params)
    assert all(layer.bias is None for layer in tor.module.layers)


def test_frozen_bias_changes_the_forward_pass():
    """A frozen bias is not the same as no bias: a test that ignored it would pass both."""
    spec, params, X, _ = problem("sigmoid", "half_sse", "frozen", 1, N_BATCH, 3)
    no_bias = {k: v for k, v in params.items() if k.endswith("weight")}
    spec_nb = {**spec, "bias": False}
    for side in (manual.MLP, torch_impl.MLP):
        assert not np.allclose(side(**spec, params=params).forward(X),
                               side(**spec_nb, params=no_bias).forward(X))


# --- finite differences ------------------------------------------------------------------

H = 1e-6


def pre_activations(params, X, bias) -> list[np.ndarray]:
    """z_l for every layer, recomputed here (relu's kink is at z = 0)."""
    zs, a = [], X
    L = sum(k.endswith("weight") for k in params)
    for l in range(L):
        z = a @ params[f"layers.{l}.weight"].T
        if bias is not False:
            z = z + params[f"layers.{l}.bias"]
        zs.append(z)
        a = np.maximum(z, 0)
    return zs


def fd_tolerance(net, X, Y, E: float, gmax: float) -> float:
    """max |g_fd − g| allowed for a central difference with step H.

    Truncation: (E(θ+h) − E(θ−h))/2h = E' + h²E'''/6 + ...; for these O(1) networks
    |E'''| is O(‖g‖), so h²/6 ≈ 1.7e-13 relative; we allow 1e-6·max|g| (the "about 1e-6
    relative" of a smooth loss), far below any real bug, which is O(1) relative.
    Rounding: each loss evaluation is off by ≤ γ_m Ẽ (``loss_scale``), the difference of
    two over 2h: ≤ γ_m Ẽ / h; we allow 2γ_m Ẽ / h (≈ 6e-9·Ẽ at h = 1e-6).
    """
    N = np.shape(X)[0]
    acts = [np.asarray(a) for a in net.forward_cache(X)]
    scale = loss_scale(net, net.params, acts, encoded(Y, net.sizes[-1]), E)
    return 1e-6 * gmax + gradient_tolerance("float64", net.sizes, N) * scale / H


# (activation, seed) per loss: for relu the seed is one where no pre-activation lies within
# 1e-3 of the kink (asserted below), so a ±1e-6 step cannot straddle it.
FD_CASES = [(a, lo) for a in ACTS for lo in LOSSES]


@pytest.mark.parametrize(("act", "loss"), FD_CASES)
def test_both_sides_match_finite_differences(act, loss):
    for seed in range(500, 600):   # deterministic search for a kink-free problem (relu)
        spec, params, X, Y = problem(act, loss, True, 2, N_BATCH, seed)
        zmin = min(np.abs(z).min() for z in pre_activations(params, X, True))
        if act != "relu" or zmin > 1e-3:
            break
    if act == "relu":
        # precondition, so the test cannot silently pass on a straddled kink
        assert zmin > 1e-3, zmin
    man = manual.MLP(**spec, params=params)
    tor = torch_impl.MLP(**spec, params=params)
    E, gm = man.loss_and_gradients(X, Y)
    gt = tor.gradients(X, Y)
    fd = manual.finite_difference_gradients(man, X, Y, h=H)
    assert list(fd) == man.trainable
    gmax = max(np.abs(g).max() for g in gm.values())
    tol = fd_tolerance(man, X, Y, E, gmax)
    for side, g in (("manual", gm), ("torch", gt)):
        for key in fd:
            err = np.abs(fd[key] - g[key]).max()
            assert err <= tol, f"{side} {key}: max|g − g_fd| = {err:.3e} > {tol:.3e}"


def test_finite_differences_on_a_parameter_subset_and_unknown_keys():
    spec, params, X, Y = problem("tanh", "mse", True, 2, N_BATCH, 42)
    man = manual.MLP(**spec, params=params)
    E, g = man.loss_and_gradients(X, Y)
    before = man.params
    keys = ["layers.1.bias", "layers.0.weight"]
    fd = manual.finite_difference_gradients(man, X, Y, keys=keys, h=H)
    assert list(fd) == keys                                 # only those, in that order
    tol = fd_tolerance(man, X, Y, E, max(np.abs(v).max() for v in g.values()))
    for key in keys:
        assert fd[key].shape == g[key].shape
        assert np.abs(fd[key] - g[key]).max() <= tol, key
    for k, v in man.params.items():                          # the probe did not touch net
        np.testing.assert_array_equal(v, before[k])
    with pytest.raises(ValueError, match="unknown parameter keys"):
        manual.finite_difference_gradients(man, X, Y, keys=["layers.9.weight"])
    frozen = manual.MLP(**{**spec, "bias": "frozen"}, params=params)
    with pytest.raises(ValueError, match="unknown parameter keys"):
        manual.finite_difference_gradients(frozen, X, Y, keys=["layers.0.weights"])


def test_finite_differences_catch_a_wrong_gradient():
    """The FD bound is tight enough to see a factor-2 slip (½ vs 1 in half_sse)."""
    spec, params, X, Y = problem("sigmoid", "half_sse", True, 1, N_BATCH, 3)
    man = manual.MLP(**spec, params=params)
    E, g = man.loss_and_gradients(X, Y)
    fd = manual.finite_difference_gradients(man, X, Y, h=H)
    tol = fd_tolerance(man, X, Y, E, max(np.abs(v).max() for v in g.values()))
    assert max(np.abs(fd[k] - 2 * g[k]).max() for k in g) > 100 * tol


# --- float32 -------------------------------------------------------------------------------


@pytest.mark.parametrize("loss", LOSSES)
@pytest.mark.parametrize("act", ACTS)
def test_float32_sides_agree_and_track_float64(act, loss):
    rng = np.random.default_rng(3200 + ACTS.index(act) * 4 + LOSSES.index(loss))
    sizes = (D, 5, 4, K)
    # Round params and data to float32 first, so the float64 reference sees exactly the
    # same inputs and only arithmetic rounding is compared.
    params = {k: v.astype(np.float32) for k, v in make_params(sizes, True, rng).items()}
    X = rng.normal(size=(N_BATCH, D)).astype(np.float32)
    Y = make_targets(loss, N_BATCH, K, rng)
    Y = Y if Y.ndim == 1 else Y.astype(np.float32)
    spec = spec_of(sizes, act, loss, True)
    _, gm, _, gt, tols = check_pair(spec, params, X, Y, "float32")   # side vs side
    ref = manual.MLP(**spec, dtype="float64", params=params).gradients(X, Y)
    for key in gm:
        for side, g in (("manual", gm[key]), ("torch", gt[key])):
            rel = compare(g.astype(np.float64), ref[key])[1]
            # Each float32 side is within γ_m(f32)·‖G̃‖ of the exact gradient, the float64
            # result within γ_m(f64)·‖G̃‖ ≈ 1e-9 of that; so their distance is ≤ half the
            # pair bound tols[key] = 2γ_m·cond (plus a negligible float64 part). Asserting
            # ≤ tols[key] therefore leaves a factor 2 and still fails at ~1e-5 slips.
            assert rel <= tols[key], f"{side} {key}: rel_err vs float64 {rel:.3e} > {tols[key]:.3e}"


# --- Array API path: manual on torch tensors ----------------------------------------------


def _manual_on_tensors(device: str):
    spec, params, X, Y = problem("tanh", "bce", True, 2, N_BATCH, 77)
    on_np = manual.MLP(**spec, params=params)
    tparams = {k: torch.as_tensor(v, device=device) for k, v in params.items()}
    on_t = manual.MLP(**spec, params=tparams)
    assert on_t.xp is not np
    assert all(v.device.type == torch.device(device).type for v in on_t.param_arrays.values())
    Em, gm = on_np.loss_and_gradients(X, Y)
    Et, gt = on_t.loss_and_gradients(X, Y)
    A = on_t.forward(X)
    assert isinstance(A, np.ndarray) and A.dtype == np.float64
    assert all(isinstance(v, np.ndarray) for v in on_t.gradients(X, Y).values())
    assert all(isinstance(v, np.ndarray) for v in on_t.params.values())
    assert isinstance(on_t.loss(X, Y), float)
    native = on_t.loss_and_gradients(X, Y, native=True)[1]
    assert all(torch.is_tensor(v) and v.device.type == torch.device(device).type
               for v in native.values())
    base = gradient_tolerance("float64", spec["sizes"], N_BATCH)
    acts = [np.asarray(a) for a in on_np.last_activations]
    G = magnitude_gradients(on_np, on_np.params, acts, encoded(Y, K))
    for key in gm:
        _, rel, _, nm, nt = compare(gm[key], gt[key])
        # the same formulas on two backends (numpy vs torch matmul/exp): two independent
        # rounding chains, so the same 2γ_m·cond bound as manual vs torch_impl.
        cond = max(1.0, G[key] / max(nm, nt, TINY))
        assert rel <= base * cond, f"{key}: numpy vs torch-backed manual rel_err {rel:.3e}"
        assert rel <= F64_REL, f"{key}: numpy vs torch-backed manual rel_err {rel:.3e}"
    np.testing.assert_allclose(A, on_np.forward(X), rtol=base, atol=0)
    assert abs(Em - Et) <= base * abs(Em)


def test_manual_runs_on_torch_cpu_tensors():
    _manual_on_tensors("cpu")


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_manual_runs_on_torch_cuda_tensors():
    _manual_on_tensors("cuda")


# --- a known gap in the derived bound ------------------------------------------------------


def test_magnitude_bound_covers_forward_cancellation():
    # A 6→1 relu unit whose z cancels (|z| = 0.002 from terms of size 3.1): its activation
    # carries the error of those terms, which the forward pass of magnitude_gradients
    # (F_l) now carries into G̃. Before it did, rel_err 5.4e-14 exceeded the bound 1.2e-14.
    sizes, N = (2, 6, 1, 6), 1
    rng = np.random.default_rng(555)
    params = make_params(sizes, True, rng)
    X = rng.normal(size=(N, sizes[0]))
    Y = rng.normal(size=(N, sizes[-1]))
    # the mechanism, asserted so the reproducer keeps its meaning: layer 1 cancels
    a1 = np.maximum(X @ params["layers.0.weight"].T + params["layers.0.bias"], 0)
    z1 = a1 @ params["layers.1.weight"].T + params["layers.1.bias"]
    mag1 = np.abs(a1) @ np.abs(params["layers.1.weight"]).T + np.abs(params["layers.1.bias"])
    assert float(mag1[0, 0] / abs(z1[0, 0])) > 1000
    check_pair(spec_of(sizes, "relu", "half_sse", True), params, X, Y)


# --- property test ------------------------------------------------------------------------


@st.composite
def random_problems(draw):
    depth = draw(st.integers(1, 3))
    loss = draw(st.sampled_from(LOSSES))
    k_min = 2 if loss == "cross_entropy" else 1
    sizes = (draw(st.integers(1, 6)), *[draw(st.integers(1, 6)) for _ in range(depth)],
             draw(st.integers(k_min, 6)))
    act = draw(st.sampled_from(ACTS))
    bias = draw(st.sampled_from(BIASES))
    N = draw(st.integers(1, 8))
    seed = draw(st.integers(0, 2**32 - 1))
    onehot = draw(st.booleans())
    rng = np.random.default_rng(seed)
    params = make_params(sizes, bias, rng)
    X = rng.normal(size=(N, sizes[0]))
    Y = make_targets(loss, N, sizes[-1], rng, onehot)
    return spec_of(sizes, act, loss, bias), params, X, Y


# derandomize: the same 60 examples on every run, so CI never depends on luck. Unseeded
# exploration is done by hand: 6,000 random problems passed once the bound carried the
# forward-pass errors (see test_magnitude_bound_covers_forward_cancellation; before, about
# 1 in 4,000 failed).
@settings(max_examples=60, deadline=None, derandomize=True)
@given(random_problems())
def test_random_networks_agree(case):
    spec, params, X, Y = case
    check_pair(spec, params, X, Y)      # the derived bound and the fixed F64_REL
