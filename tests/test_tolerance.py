"""experiments.core.tolerance: the rounding bound rel_tol = 2γ_m · max(1, ‖G̃‖/‖g‖), and the
loss value's 2γ_{m_E} · max(1, Ẽ/|E|).

The formulas are README.md "Tolerances" and docs/tolerance.md; here each piece is pinned
against numbers worked out by hand (the constants of the bound are part of what every
run's verdict means), and the bound's defining property — G̃ dominates g entry by entry —
is checked on random networks. That the bound holds for real manual-vs-autograd pairs is
test_agreement's job.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

import manual
from experiments.core.metrics import Comparison
from experiments.core.tolerance import (
    gradient_tolerance,
    loss_tolerance,
    magnitude_gradients,
    magnitude_loss,
    step_bounds,
    step_tolerances,
    unit_roundoff,
)

U64, U32 = 2.0**-53, 2.0**-24


def test_unit_roundoff():
    assert unit_roundoff("float64") == U64
    assert unit_roundoff("float32") == U32


@pytest.mark.parametrize(("bound", "dtype", "sizes", "batch", "m"), [
    # gradients: m = N + Σ sizes + 5L + 5 (batch sum, dot products, 5 elementwise ops per
    # layer and 5 for the loss)
    (gradient_tolerance, "float64", (3, 4, 1), 4, 4 + 8 + 10 + 5),     # the seed case: 27
    (gradient_tolerance, "float32", (64, 30, 10), 32, 32 + 104 + 10 + 5),   # digits: 151
    (gradient_tolerance, "float64", (2, 2), 1, 1 + 4 + 5 + 5),   # one layer, one sample
    # the loss value: m_E = N·K + Σ sizes + 5L + 5, the gradient's chain with its batch sum
    # (N) replaced by the loss's sum over every element of its reduction (M = N·K)
    (loss_tolerance, "float64", (3, 4, 1), 4, 4 + 8 + 10 + 5),         # seed, K = 1: 27
    (loss_tolerance, "float64", (4, 8, 3), 16, 48 + 15 + 10 + 5),      # iris: N·K = 48
    (loss_tolerance, "float32", (64, 30, 10), 32, 320 + 104 + 10 + 5),  # digits: 439
])
def test_tolerance_is_two_gamma_m(bound, dtype, sizes, batch, m):
    # 2γ_m = 2mu / (1 − mu)
    u = U64 if dtype == "float64" else U32
    assert bound(dtype, sizes, batch) == 2 * m * u / (1 - m * u)


def test_tolerance_documented_figures():
    # the figures the docstrings, README and docs/tolerance.md quote
    assert f"{gradient_tolerance('float64', (3, 4, 1), 4):.1e}" == "6.0e-15"
    assert f"{gradient_tolerance('float32', (64, 30, 10), 32):.1e}" == "1.8e-05"
    assert f"{loss_tolerance('float64', (3, 4, 1), 4):.1e}" == "6.0e-15"
    assert f"{loss_tolerance('float64', (4, 8, 3), 16):.1e}" == "1.7e-14"


def one_weight_net(w, x, y, activation="identity"):
    net = manual.MLP([1, 1], activation=activation, bias=False, loss="half_sse",
                     params={"layers.0.weight": np.array([[w]])})
    acts = net.forward_cache(np.array([[x]]))
    return net, acts


def test_magnitude_of_a_one_weight_identity_net_by_hand():
    # a_1 = w x, E = ½(a_1 − y)², g = (a_1 − y) x. m = N + Σ sizes + 5L + 5 = 1 + 2 + 5 + 5
    # = 13. Backward on magnitudes: (|a_1| + |y|)|x|. Forward error of a_1, in units of
    # γ_m: the dot product's own (n_0 + 1)/m · |x||w| plus the 5 elementwise ops' 5/m·|a_1|,
    # so (2 + 5)|w x|/13, carried to the gradient times |x|:
    #     G̃ = (|w x| + |y|)|x| + 7|w x||x|/13
    w, x, y = 0.5, 2.0, 3.0
    net, acts = one_weight_net(w, x, y)
    G = magnitude_gradients(net, net.params, acts, np.array([[y]]))
    assert list(G) == ["layers.0.weight"]
    assert G["layers.0.weight"] == pytest.approx((1 + 3) * 2 + 7 * 1 * 2 / 13, rel=1e-15, abs=0)


def test_magnitude_of_a_saturating_sigmoid_counts_the_derivative_error():
    # sigmoid output a: δ = (a − y)·a(1 − a); on magnitudes (|a| + |y|)(f' + |1 − 2a|·|a|/m)
    # with f' = a(1 − a) — the second term charges σ' = a(1 − a) for the error of a near
    # saturation. Plus the forward error carried through: the forward error of a is
    # E_1 = f'·(2/m)|x||w| + (5/m)|a|; it moves ∂E/∂A by E_1 (half_sse) and σ' by
    # |1 − 2a| E_1, so e = E_1 f' + (|a| + |y|)|1 − 2a| E_1, times |x|.
    w, x, y = 3.0, 2.0, 0.0
    net, acts = one_weight_net(w, x, y, "sigmoid")
    a = float(acts[1][0, 0])
    m = 13
    fp, fpp = a * (1 - a), abs(1 - 2 * a)
    d = (a + y) * (fp + fpp * a / m)
    E1 = fp * (2 / m) * x * w + 5 / m * a
    e = E1 * fp + (a + y) * fpp * E1
    G = magnitude_gradients(net, net.params, acts, np.array([[y]]))
    assert G["layers.0.weight"] == pytest.approx(d * x + e * x, rel=1e-14, abs=0)
    # a ≈ 0.9975, σ' ≈ 2.5e-3: the charge for σ' itself (|1 − 2a|·|a|/m ≈ 0.077) puts
    # the bound far above the gradient, cond ≈ 30
    g = (a - y) * fp * x
    assert G["layers.0.weight"] / abs(g) > 10


@pytest.mark.parametrize("loss", ["half_sse", "mse", "bce", "cross_entropy"])
@pytest.mark.parametrize("activation", ["sigmoid", "tanh", "relu", "identity"])
def test_magnitude_dominates_the_gradient(activation, loss):
    # Every difference A − T is measured as |A| + |T| and every product on magnitudes, so
    # ‖G̃‖ ≥ ‖g‖ for every parameter, on any network: cond = ‖G̃‖/‖g‖ ≥ 1 by construction.
    rng = np.random.default_rng(len(activation) * 100 + len(loss))
    sizes = (3, 5, 4, 3)
    out = {"bce": "sigmoid", "cross_entropy": "identity"}.get(loss, activation)
    params = {k: rng.uniform(-1.5, 1.5, s) for k, s in manual.parameter_shapes(sizes, True).items()}
    net = manual.MLP(sizes, activation=activation, output_activation=out, bias=True, loss=loss,
                     params=params)
    X = rng.normal(size=(9, 3))
    if loss == "cross_entropy":
        Y = rng.integers(0, 3, 9)
        T = np.eye(3)[Y]
    else:
        Y = T = rng.uniform(0, 1, (9, 3))
    g = net.gradients(X, Y)
    G = magnitude_gradients(net, net.params, net.last_activations, T)
    assert sorted(G) == sorted(net.trainable)          # (built last layer first)
    for k in g:
        assert G[k] >= np.linalg.norm(g[k]), (k, G[k], np.linalg.norm(g[k]))


def test_magnitude_grows_where_per_sample_gradients_cancel():
    # Two samples whose gradients cancel in the sum while G̃ adds their magnitudes.
    # Identity net, w = 1, x = (1, −1), y = (1.5, −0.5): residuals a − y = (−0.5, −0.5),
    # per-sample gradients (a − y) x = −0.5 and +0.5, g = 0 exactly; on magnitudes
    # Σ (|a| + |y|)|x| = 2.5 + 1.5 = 4, plus the forward errors.
    net, _ = one_weight_net(1.0, 1.0, 0.0)
    X = np.array([[1.0], [-1.0]])
    Y = np.array([[1.5], [-0.5]])
    g = net.gradients(X, Y)["layers.0.weight"]
    assert g[0, 0] == 0.0
    G = magnitude_gradients(net, net.params, net.last_activations, Y)
    assert G["layers.0.weight"] >= 4


def fake_metrics(norms):
    return [Comparison(1e-17, 1e-16, 1.0, nm, nt) for nm, nt in norms]


def test_step_tolerances_scale_the_base_by_cond_at_least_one():
    net, acts = one_weight_net(0.5, 2.0, 3.0)
    T = np.array([[3.0]])
    base = gradient_tolerance("float64", (1, 1), 1)
    G = (1 + 3) * 2 + 7 * 1 * 2 / 13                              # hand value above
    # cond = G̃ / max(‖g_m‖, ‖g_t‖): the larger norm of the two sides
    tol = step_tolerances(net, net.params, acts, T, fake_metrics([(1.0, 2.0)]), "float64")
    assert tol == [pytest.approx(base * G / 2.0, rel=1e-15, abs=0)]
    tol = step_tolerances(net, net.params, acts, T, fake_metrics([(2.0, 1.0)]), "float64")
    assert tol == [pytest.approx(base * G / 2.0, rel=1e-15, abs=0)]
    # a gradient larger than G̃ (not a real one) still gets the plain 2γ_m: cond ≥ 1
    tol = step_tolerances(net, net.params, acts, T, fake_metrics([(100.0, 100.0)]), "float64")
    assert tol == [base]


def test_step_tolerances_use_the_dtype_and_the_batch_of_the_activations():
    net, acts = one_weight_net(0.5, 2.0, 3.0)
    T = np.array([[3.0]])
    t64 = step_tolerances(net, net.params, acts, T, fake_metrics([(100.0, 100.0)]), "float64")
    t32 = step_tolerances(net, net.params, acts, T, fake_metrics([(100.0, 100.0)]), "float32")
    assert t64 == [gradient_tolerance("float64", (1, 1), 1)]
    assert t32 == [gradient_tolerance("float32", (1, 1), 1)]
    X = np.array([[2.0], [1.0], [-1.0]])
    acts3 = net.forward_cache(X)
    t = step_tolerances(net, net.params, acts3, np.array([[3.0], [1.0], [0.0]]),
                        fake_metrics([(1e9, 1e9)]), "float64")
    assert t == [gradient_tolerance("float64", (1, 1), 3)]


def test_step_tolerance_of_an_overflowed_magnitude_is_inf():
    with np.errstate(all="ignore"):
        net, acts = one_weight_net(1e300, 1e10, 0.0)    # w x overflows: a_1 = inf
        tol = step_tolerances(net, net.params, acts, np.array([[0.0]]),
                              fake_metrics([(1.0, 1.0)]), "float64")
    assert tol == [math.inf]


# -- the loss value ------------------------------------------------------------------------

def test_magnitude_loss_of_a_one_weight_identity_net_by_hand():
    # a = w x = 1, y = 0.25, E = ½(a − y)² = ½·0.75². m = m_E = 13 (N = K = 1). The loss's
    # own rounding: its term ½(a − y)². The output's forward error, in units of γ_13: the
    # dot product's (n_0 + 1)/m·|x||w| + the 5 elementwise ops' 5/m·|a| = 7/13, through
    # the slope |a − y| plus half the curvature (1) times γ_13·7/13 (½δA², exact):
    #     Ẽ = ½·0.75² + (0.75 + ½·γ_13·7/13)·7/13
    net, acts = one_weight_net(0.5, 2.0, 0.25)
    g13 = 13 * U64 / (1 - 13 * U64)
    want = 0.5 * 0.75**2 + (0.75 + 0.5 * g13 * 7 / 13) * 7 / 13
    assert magnitude_loss(net, net.params, acts, np.array([[0.25]])) == pytest.approx(
        want, rel=1e-15, abs=0)


def test_magnitude_loss_of_cross_entropy_by_hand():
    # Two logits (identity output, one input x = 1, W = (w0, w1)ᵀ): A = (w0, w1), label 0.
    # Own rounding: |T|(|log P| + 1) = −log P_0 + 1 (the 1: the log's absolute error from
    # the rounded Σ exp S). Forward error of each logit (7/m_E)|A_k| in units of γ_{m_E}
    # (m = 1 + 3 + 5 + 5 = 14, m_E = 2 + 3 + 5 + 5 = 15: F scales by m/m_E, so
    # (2/m·|A| + 5/m·|A|)·m/m_E = 7|A|/15), through the slope |P − T| (N = 1).
    w = np.array([[0.5], [-1.5]])
    net = manual.MLP([1, 2], activation="identity", bias=False, loss="cross_entropy",
                     params={"layers.0.weight": w})
    acts = net.forward_cache(np.array([[1.0]]))
    A = np.array([0.5, -1.5])
    P = np.exp(A) / np.exp(A).sum()
    T = np.array([1.0, 0.0])
    want = -math.log(P[0]) + 1 + float(np.abs(P - T) @ (7 * np.abs(A) / 15))
    assert magnitude_loss(net, net.params, acts, T[None, :]) == pytest.approx(
        want, rel=1e-14, abs=0)


def test_the_loss_bound_does_not_read_the_code_it_judges(monkeypatch):
    # The bound restates each loss itself: a slip planted in manual's loss value must not
    # move the tolerance it is judged against.
    net, acts = one_weight_net(0.5, 2.0, 0.25)
    T = np.array([[0.25]])
    before = magnitude_loss(net, net.params, acts, T)
    monkeypatch.setattr(manual.MLP, "loss_value", lambda self, A, T: 100 * (A - T).sum())
    assert magnitude_loss(net, net.params, acts, T) == before


def test_step_bounds_give_the_loss_two_gamma_m_E_times_cond():
    net, acts = one_weight_net(0.5, 2.0, 0.25)
    T = np.array([[0.25]])
    base = loss_tolerance("float64", (1, 1), 1)
    mag = magnitude_loss(net, net.params, acts, T)
    tols, loss_tol = step_bounds(net, net.params, acts, T, fake_metrics([(1.0, 1.0)]),
                                 "float64", losses=(0.28125, 0.5))
    assert tols == step_tolerances(net, net.params, acts, T, fake_metrics([(1.0, 1.0)]),
                                   "float64")
    # cond = Ẽ / max(|E_m|, |E_t|), the larger loss of the two sides
    assert loss_tol == pytest.approx(base * mag / 0.5, rel=1e-15, abs=0)
    # a loss larger than Ẽ still gets the plain 2γ_{m_E}; no losses, no loss bound
    assert step_bounds(net, net.params, acts, T, [], "float64", losses=(1e3, 1e3))[1] == base
    assert math.isnan(step_bounds(net, net.params, acts, T, [], "float64")[1])
    with np.errstate(all="ignore"):
        big, big_acts = one_weight_net(1e300, 1e10, 0.0)
        assert step_bounds(big, big.params, big_acts, np.array([[0.0]]), [], "float64",
                           losses=(1.0, 1.0))[1] == math.inf
